//! Every way a module can break the ABI, one small checked-in fixture each
//! (`tests/fixtures/abi/*.wat`): the host must refuse or fail the call with
//! the exact reason, name the plugin and function, and carry on — after
//! each failure the same runtime still runs the good Rust plugin.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use weir::wasm::{
    CallError, CallErrorKind, Invocation, Limits, LoadError, Plugin, Problem, Runtime,
    RuntimeConfig,
};
use weir_abi::{CallHeader, FunctionKind, GroupsWriter, RecordBatch, UpdateEntry};
use weir_tests::{fixture, guest, guests};

static RUNTIME: LazyLock<Runtime> =
    LazyLock::new(|| Runtime::new(&RuntimeConfig::default()).expect("wasm runtime"));

static GOOD: LazyLock<Plugin> = LazyLock::new(|| {
    RUNTIME
        .load_file(guest(guests::WORDCOUNT))
        .expect("Rust wordcount plugin")
});

fn load(name: &str) -> Plugin {
    RUNTIME
        .load_file(fixture(&format!("abi/{name}.wat")))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn load_err(name: &str) -> LoadError {
    match RUNTIME.load_file(fixture(&format!("abi/{name}.wat"))) {
        Ok(p) => panic!("fixture {name} loaded: {p:?}"),
        Err(e) => e,
    }
}

fn lines(ls: &[&str]) -> RecordBatch {
    ls.iter().map(|l| (&b""[..], l.as_bytes())).collect()
}

/// The good plugin still works on the shared runtime.
fn good_plugin_still_works() {
    let out = GOOD
        .map(
            "split",
            &Invocation::default(),
            &lines(&["still  works", "fine"]),
        )
        .expect("the good plugin after a failure");
    let words: Vec<&[u8]> = out.iter().map(|(k, _)| k).collect();
    assert_eq!(words, [&b"still"[..], b"works", b"fine"]);
}

/// Calls `map:function` of `plugin` expecting a failure; checks the message
/// names the plugin and the function, and that the runtime is still fine.
fn map_fails(plugin: &Plugin, function: &str, inv: &Invocation) -> CallError {
    let err = match plugin.map(function, inv, &lines(&["a b"])) {
        Ok(out) => panic!("{}: map:{function} succeeded: {out:?}", plugin.name()),
        Err(e) => e,
    };
    names_site(&err, plugin.name(), &format!("map:{function}"));
    good_plugin_still_works();
    err
}

fn names_site(err: &CallError, plugin: &str, function: &str) {
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("plugin `{plugin}` function `{function}`")),
        "{shown}"
    );
    assert_eq!(&*err.site.plugin, plugin);
    assert_eq!(format!("{}:{}", err.site.kind, err.site.function), function);
}

fn with_limits(f: impl FnOnce(&mut Limits)) -> Invocation {
    let mut inv = Invocation::default();
    f(&mut inv.limits);
    inv
}

// ---- traps and limits -----------------------------------------------------

#[test]
fn unreachable_is_a_trap() {
    let plugin = load("trap");
    let err = map_fails(&plugin, "unreachable", &Invocation::default());
    match &err.kind {
        CallErrorKind::Trap { message, .. } => {
            assert!(message.contains("unreachable"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(err.to_string().contains("trapped: "), "{err}");
}

#[test]
fn out_of_bounds_access_is_a_trap() {
    let plugin = load("trap");
    let err = map_fails(&plugin, "out_of_bounds", &Invocation::default());
    match &err.kind {
        CallErrorKind::Trap { message, .. } => {
            assert!(message.contains("out of bounds"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn endless_loop_runs_out_of_fuel() {
    let plugin = load("endless_loop");
    let inv = with_limits(|l| l.fuel = 200_000);
    let err = map_fails(&plugin, "spin", &inv);
    assert!(
        matches!(err.kind, CallErrorKind::OutOfFuel { budget: 200_000 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ran out of fuel"), "{err}");
    // deterministic: the same budget fails the same way again
    let again = map_fails(&plugin, "spin", &inv);
    assert!(matches!(
        again.kind,
        CallErrorKind::OutOfFuel { budget: 200_000 }
    ));
}

#[test]
fn endless_loop_with_endless_fuel_hits_the_deadline() {
    let plugin = load("endless_loop");
    let inv = with_limits(|l| {
        l.fuel = u64::MAX;
        l.deadline = Duration::from_millis(30);
    });
    let started = Instant::now();
    let err = map_fails(&plugin, "spin", &inv);
    assert!(
        matches!(err.kind, CallErrorKind::Deadline { millis: 30 }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("wall-clock deadline of 30 ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let plugin = load("memory_bomb");
    let limit = 1 << 20;
    let inv = with_limits(|l| l.memory_bytes = limit);
    let err = map_fails(&plugin, "bomb", &inv);
    match err.kind {
        CallErrorKind::MemoryLimit {
            limit: l,
            requested,
        } => {
            assert_eq!(l, limit);
            // one page past the limit
            assert_eq!(requested, limit + 65536);
        }
        ref other => panic!("expected the memory limit, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("hit the memory limit of 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let plugin = load("stack_overflow");
    let err = map_fails(&plugin, "recurse", &Invocation::default());
    assert!(matches!(err.kind, CallErrorKind::StackOverflow), "{err:?}");
    assert!(
        err.to_string().ends_with("overflowed the wasm stack"),
        "{err}"
    );
}

// ---- pointers and sizes ---------------------------------------------------

fn bad_pointer(err: &CallError) -> (&'static str, u64, u64, usize) {
    match err.kind {
        CallErrorKind::BadPointer {
            what,
            ptr,
            len,
            memory_size,
        } => (what, ptr, len, memory_size),
        ref other => panic!("expected a bad pointer, got {other:?}"),
    }
}

#[test]
fn output_pointer_out_of_bounds() {
    let plugin = load("bad_output");
    let err = map_fails(&plugin, "pointer_out_of_bounds", &Invocation::default());
    assert_eq!(bad_pointer(&err), ("output", 0x1000_0000, 4, 65536));
    assert!(
        err.to_string().contains(
            "returned an out-of-range output: pointer 268435456, length 4, but memory is 65536 bytes"
        ),
        "{err}"
    );
}

#[test]
fn output_length_past_the_end_of_memory() {
    let plugin = load("bad_output");
    let err = map_fails(&plugin, "length_past_end", &Invocation::default());
    assert_eq!(bad_pointer(&err), ("output", 65532, 5, 65536));
    // pointer + length wraps in 32 bits: still refused
    let err = map_fails(&plugin, "wraps_around", &Invocation::default());
    assert_eq!(bad_pointer(&err), ("output", 0xffff_fff0, 0x20, 65536));
    // ending exactly at the end of memory is fine (four zero bytes: no records)
    let out = plugin
        .map("ends_at_end", &Invocation::default(), &lines(&["x"]))
        .unwrap();
    assert!(out.is_empty());
}

#[test]
fn weir_alloc_returning_a_bad_pointer() {
    let plugin = load("bad_alloc");
    let err = map_fails(&plugin, "f", &Invocation::default());
    // header + "a b" batch (4 + 4 + 4 + 3 bytes) = 31, rounded to 32, + 8
    assert_eq!(bad_pointer(&err), ("weir_alloc result", 65528, 40, 65536));
    assert!(
        err.to_string().contains("out-of-range weir_alloc result"),
        "{err}"
    );

    let plugin = load("bad_alloc_wrap");
    let err = map_fails(&plugin, "f", &Invocation::default());
    assert_eq!(
        bad_pointer(&err),
        ("weir_alloc result", 0xffff_fff8, 40, 65536)
    );
}

#[test]
fn huge_output_is_refused() {
    let plugin = load("huge_output");
    let inv = with_limits(|l| l.output_bytes = 1000);
    let err = map_fails(&plugin, "huge", &inv);
    assert!(
        matches!(
            err.kind,
            CallErrorKind::OutputTooLarge {
                len: 100_000,
                limit: 1000
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("returned 100000 bytes of output, more than the limit of 1000 bytes"),
        "{err}"
    );
    // error messages are capped at 64 KiB whatever the output limit
    let err = map_fails(&plugin, "huge_error", &Invocation::default());
    assert!(
        matches!(
            err.kind,
            CallErrorKind::OutputTooLarge {
                len: 100_000,
                limit: 65536
            }
        ),
        "{err:?}"
    );
}

// ---- statuses and messages ------------------------------------------------

#[test]
fn unknown_status() {
    let plugin = load("bad_status");
    let err = map_fails(&plugin, "seven", &Invocation::default());
    assert!(matches!(err.kind, CallErrorKind::BadStatus(7)), "{err:?}");
    assert!(
        err.to_string().contains("returned unknown status 7"),
        "{err}"
    );
    // an unknown status is reported as such, whatever the result area holds
    let err = map_fails(&plugin, "minus_one_garbage", &Invocation::default());
    assert!(matches!(err.kind, CallErrorKind::BadStatus(-1)), "{err:?}");
}

#[test]
fn guest_error_message() {
    let plugin = load("guest_error");
    let err = map_fails(&plugin, "fail", &Invocation::default());
    match &err.kind {
        CallErrorKind::Guest { message } => assert_eq!(message, "boom: line 3 is not a number ✗"),
        other => panic!("expected a guest error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "plugin `guest_error` function `map:fail` failed: boom: line 3 is not a number ✗"
    );
    let err = map_fails(&plugin, "fail_not_utf8", &Invocation::default());
    assert!(matches!(err.kind, CallErrorKind::BadMessage), "{err:?}");
}

// ---- malformed output -----------------------------------------------------

fn malformed(err: &CallError) -> (usize, &'static str) {
    match &err.kind {
        CallErrorKind::Malformed(e) => (e.offset, e.expected),
        other => panic!("expected malformed output, got {other:?}"),
    }
}

#[test]
fn malformed_map_output() {
    let plugin = load("malformed_output");
    let err = map_fails(&plugin, "short_key", &Invocation::default());
    assert_eq!(malformed(&err), (8, "record key"));
    assert!(
        err.to_string().contains(
            "returned malformed output: malformed framing at byte 8: expected record key"
        ),
        "{err}"
    );
    let err = map_fails(&plugin, "trailing_byte", &Invocation::default());
    assert_eq!(malformed(&err), (4, "end of buffer (trailing bytes)"));
}

#[test]
fn reduce_returning_the_wrong_number_of_values() {
    let plugin = load("malformed_output");
    let mut groups = GroupsWriter::new();
    groups.push(b"k", [&1i64.to_le_bytes()[..]].into_iter());
    let err = plugin
        .reduce("none", &Invocation::default(), groups)
        .unwrap_err();
    names_site(&err, "malformed_output", "reduce:none");
    assert_eq!(malformed(&err), (0, "one reduced value per input group"));
    good_plugin_still_works();
    // zero groups, zero values: fine
    let out = plugin
        .reduce("none", &Invocation::default(), GroupsWriter::new())
        .unwrap();
    assert!(out.is_empty());
}

#[test]
fn update_returning_the_wrong_number_of_results() {
    let plugin = load("malformed_output");
    let entries = [UpdateEntry {
        key: b"k",
        state: None,
        timed_out: false,
        values: vec![b"v"],
    }];
    let err = plugin
        .update("none", &Invocation::default(), &entries)
        .unwrap_err();
    names_site(&err, "malformed_output", "update:none");
    assert_eq!(malformed(&err), (0, "one update result per input entry"));
    good_plugin_still_works();
}

#[test]
fn calling_a_function_the_module_does_not_export() {
    let plugin = load("trap");
    let err = plugin
        .call(
            FunctionKind::Reduce,
            "unreachable",
            &Invocation::default(),
            &[0; 4],
        )
        .unwrap_err();
    assert!(matches!(err.kind, CallErrorKind::NoSuchFunction), "{err:?}");
    names_site(&err, "trap", "reduce:unreachable");
    good_plugin_still_works();
}

// ---- loading ----------------------------------------------------------------

fn problems(err: LoadError, plugin: &str) -> Vec<Problem> {
    let shown = err.to_string();
    match err {
        LoadError::NotAPlugin {
            plugin: p,
            problems,
        } => {
            assert_eq!(&*p, plugin);
            assert!(
                shown.starts_with(&format!("plugin `{plugin}` is not a weir plugin:")),
                "{shown}"
            );
            // one line per problem
            assert_eq!(shown.lines().count(), problems.len() + 1, "{shown}");
            for problem in &problems {
                assert!(shown.contains(&format!("\n  - {problem}")), "{shown}");
            }
            problems
        }
        other => panic!("expected NotAPlugin, got {other:?}"),
    }
}

#[test]
fn missing_exports_are_all_listed() {
    let listed = problems(load_err("missing_exports"), "missing_exports");
    let missing: Vec<&str> = listed
        .iter()
        .map(|p| match p {
            Problem::MissingExport { export, .. } => *export,
            other => panic!("unexpected problem {other:?}"),
        })
        .collect();
    assert_eq!(missing, ["weir_abi_version", "weir_alloc"]);
    good_plugin_still_works();
}

#[test]
fn several_problems_are_listed_at_once() {
    let listed = problems(load_err("several_problems"), "several_problems");
    assert!(
        matches!(&listed[..], [
            Problem::BadExport { export, .. },
            Problem::MissingExport { export: "weir_alloc", .. },
            Problem::NoFunctions,
            Problem::WrongAbiVersion { found: 7 },
        ] if export == "map:f"),
        "{listed:?}"
    );
    good_plugin_still_works();
}

#[test]
fn wrong_abi_version() {
    let err = load_err("wrong_abi_version");
    let shown = err.to_string();
    assert_eq!(
        problems(err, "wrong_abi_version"),
        [Problem::WrongAbiVersion { found: 2 }]
    );
    assert!(
        shown.contains("exports ABI version 2, this host speaks version 1"),
        "{shown}"
    );
    good_plugin_still_works();
}

#[test]
fn unsupported_imports() {
    let err = load_err("wasi_import");
    let shown = err.to_string();
    let refused: Vec<(String, String)> = problems(err, "wasi_import")
        .into_iter()
        .map(|p| match p {
            Problem::UnsupportedImport { module, name, .. } => (module, name),
            other => panic!("unexpected problem {other}"),
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("wasi_snapshot_preview1".into(), "fd_write".into()),
            ("env".into(), "printf".into()),
        ],
        "proc_exit is offered"
    );
    assert!(
        shown.contains(
            "imports `wasi_snapshot_preview1.fd_write`, which weir does not offer: \
             weir offers it with parameters (iiii)"
        ),
        "{shown}"
    );
    assert!(shown.contains("undefined symbol `printf`"), "{shown}");
    good_plugin_still_works();
}

#[test]
fn no_weir_functions() {
    let err = load_err("no_functions");
    assert_eq!(problems(err, "no_functions"), [Problem::NoFunctions]);
    good_plugin_still_works();
}

#[test]
fn not_wasm_at_all() {
    for bytes in [
        &b"definitely not a wasm module"[..],
        b"\0asm\x01\0\0\0garbage",
        b"",
    ] {
        match RUNTIME.load_bytes("junk", bytes) {
            Err(err @ LoadError::Compile { .. }) => assert!(
                err.to_string()
                    .starts_with("plugin `junk` is not a valid WebAssembly module: "),
                "{err}"
            ),
            other => panic!("expected a compile error, got {other:?}"),
        }
    }
    good_plugin_still_works();
}

#[test]
fn weir_log_is_the_one_allowed_import() {
    let plugin = load("log");
    let out = plugin
        .map("hello", &Invocation::default(), &lines(&["x"]))
        .unwrap();
    assert!(out.is_empty());
    let err = map_fails(&plugin, "log_out_of_bounds", &Invocation::default());
    match &err.kind {
        CallErrorKind::Trap { message, .. } => assert!(message.contains("weir.log"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

// ---- determinism and call sites -----------------------------------------------

#[test]
fn every_call_starts_from_fresh_state() {
    let plugin = load("counter");
    // a second load of the same bytes shares the compiled module
    let twin = load("counter");
    assert_eq!(plugin.hash(), twin.hash());
    let one = 1i64.to_le_bytes();
    for p in [&plugin, &twin, &plugin, &plugin, &twin] {
        let out = p
            .map("count", &Invocation::default(), &lines(&["x"]))
            .unwrap();
        let got: Vec<(&[u8], &[u8])> = out.iter().collect();
        assert_eq!(got, [(&b"global"[..], &one[..]), (b"memory", &one[..])]);
    }
}

#[test]
fn call_site_names_job_operator_batch_and_partition() {
    let plugin = load("trap");
    let inv = Invocation {
        header: CallHeader {
            batch_time_ms: 1_700_000_000_000,
            partition: 3,
            num_partitions: 4,
        },
        job: Some("wordcount".into()),
        operator: Some("split-lines".into()),
        ..Invocation::default()
    };
    let err = map_fails(&plugin, "unreachable", &inv);
    assert_eq!(err.site.job.as_deref(), Some("wordcount"));
    assert_eq!(err.site.batch_time_ms, 1_700_000_000_000);
    assert_eq!(err.site.partition, 3);
    assert_eq!(
        err.site.to_string(),
        "plugin `trap` function `map:unreachable` (job `wordcount`, operator `split-lines`, \
         batch 1700000000000 ms, partition 3)"
    );
    assert!(err.to_string().starts_with(&err.site.to_string()));

    // without a job, no coordinates
    let err = map_fails(&plugin, "unreachable", &Invocation::default());
    assert_eq!(
        err.site.to_string(),
        "plugin `trap` function `map:unreachable`"
    );

    // a job without an operator
    let inv = Invocation {
        operator: None,
        ..inv
    };
    let err = map_fails(&plugin, "unreachable", &inv);
    assert_eq!(
        err.site.to_string(),
        "plugin `trap` function `map:unreachable` (job `wordcount`, batch 1700000000000 ms, partition 3)"
    );
}

#[test]
fn the_input_is_the_header_then_the_body() {
    let plugin = load("echo");
    for (time, partition, partitions) in [
        (0i64, 0u32, 1u32),
        (1000, 1, 2),
        (-5, 7, 8),
        (i64::MAX, u32::MAX - 1, u32::MAX),
    ] {
        let inv = Invocation {
            header: CallHeader {
                batch_time_ms: time,
                partition,
                num_partitions: partitions,
            },
            ..Invocation::default()
        };
        let batch = lines(&["some", "lines"]);
        let out = plugin.map("header", &inv, &batch).unwrap();
        let (_, header) = out.iter().next().unwrap();
        let mut expected = time.to_le_bytes().to_vec();
        expected.extend_from_slice(&partition.to_le_bytes());
        expected.extend_from_slice(&partitions.to_le_bytes());
        assert_eq!(header, &expected[..]);

        let out = plugin.map("input", &inv, &batch).unwrap();
        let (_, input) = out.iter().next().unwrap();
        expected.extend_from_slice(batch.as_bytes());
        assert_eq!(input, &expected[..]);
    }
    // bodies of every length line up (the result area follows the input)
    for len in 0..24 {
        let body = vec![0x5a; len];
        let out = plugin
            .call(FunctionKind::Map, "input", &Invocation::default(), &body)
            .unwrap();
        assert_eq!(out.len(), 12 + 16 + len);
        assert_eq!(&out[12 + 16..], &body[..]);
    }
}
