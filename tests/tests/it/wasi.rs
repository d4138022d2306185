//! The virtual WASI preview 1, runtime imports (`env.abort`, `weir.fail`),
//! reactors and the alternative export spelling, through the real runtime
//! with hand-written modules.

use weir::wasm::{CallErrorKind, Invocation, LoadError, Plugin, Problem};
use weir_abi::{CallHeader, RecordBatch};
use weir_tests::{guests, runtime, shared_plugin};

/// A module with the ABI's exports, the given imports and functions. Output
/// is built at 1024: `put_value(len)` frames one record with an empty key
/// whose value is the `len` bytes at 1036.
fn module(imports: &str, body: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "weir_abi_version") (result i32) (i32.const 1))
  (func (export "weir_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func $put_value (param $result i32) (param $len i32) (result i32)
    (i32.store (i32.const 1024) (i32.const 1))
    (i32.store (i32.const 1028) (i32.const 0))
    (i32.store (i32.const 1032) (local.get $len))
    (i32.store (local.get $result) (i32.const 1024))
    (i32.store offset=4 (local.get $result) (i32.add (local.get $len) (i32.const 12)))
    (i32.const 0))
  {body})"#
    )
}

fn load(name: &str, wat: &str) -> Result<Plugin, LoadError> {
    runtime().load_bytes(name, wat.as_bytes())
}

fn inv(batch_time_ms: i64, partition: u32) -> Invocation {
    Invocation {
        header: CallHeader {
            batch_time_ms,
            partition,
            num_partitions: 2,
        },
        job: Some("job".into()),
        operator: Some("op".into()),
        ..Default::default()
    }
}

fn one_line() -> RecordBatch {
    [(&b""[..], &b"x"[..])].into_iter().collect()
}

/// The value of the single record a call returned.
fn value(plugin: &Plugin, function: &str, inv: &Invocation) -> Vec<u8> {
    let out = plugin
        .map(function, inv, &one_line())
        .unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<_> = out.iter().collect();
    assert_eq!(records.len(), 1);
    records[0].1.to_vec()
}

fn u64_at(v: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(v[at..at + 8].try_into().unwrap())
}

const CLOCK_AND_RANDOM: &str = r#"
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))"#;

fn clock_and_random_plugin() -> Plugin {
    load(
        "clocks",
        &module(
            CLOCK_AND_RANDOM,
            r#"(func (export "map:now") (param i32 i32 i32) (result i32)
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 1036)))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 1044)))
    (drop (call $random (i32.const 1052) (i32.const 16)))
    (call $put_value (local.get 2) (i32.const 32)))"#,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn clocks_read_the_batch_time_and_random_numbers_repeat_per_call_site() {
    let plugin = clock_and_random_plugin();
    let v = value(&plugin, "now", &inv(7_000, 1));
    assert_eq!(u64_at(&v, 0), 7_000_000_000, "realtime is the batch time");
    assert_eq!(
        u64_at(&v, 8),
        7_000_001_000,
        "the monotonic clock advances a virtual microsecond per reading"
    );
    // Same call site: the same bytes; any other coordinate: other numbers.
    assert_eq!(v, value(&plugin, "now", &inv(7_000, 1)));
    let other_partition = value(&plugin, "now", &inv(7_000, 0));
    assert_eq!(other_partition[..16], v[..16]);
    assert_ne!(other_partition[16..], v[16..]);
    assert_ne!(value(&plugin, "now", &inv(8_000, 1))[16..], v[16..]);
    assert_ne!(v[16..], [0u8; 16]);
}

#[test]
fn what_weir_does_not_offer_fails_with_the_errno_libraries_expect() {
    let plugin = load(
        "errnos",
        &module(
            r#"
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
  (data (i32.const 2048) "hello from stdout\n")"#,
            r#"(func (export "map:errnos") (param i32 i32 i32) (result i32)
    ;; iovec at 2100: 18 bytes at 2048
    (i32.store (i32.const 2100) (i32.const 2048))
    (i32.store (i32.const 2104) (i32.const 18))
    (i32.store8 (i32.const 1036) (call $open (i32.const 3) (i32.const 0) (i32.const 2048) (i32.const 5) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 2200)))
    (i32.store8 (i32.const 1037) (call $accept (i32.const 3) (i32.const 0) (i32.const 2200)))
    (i32.store8 (i32.const 1038) (call $write (i32.const 1) (i32.const 2100) (i32.const 1) (i32.const 2200)))
    (i32.store8 (i32.const 1039) (i32.load8_u (i32.const 2200)))
    (i32.store8 (i32.const 1040) (call $write (i32.const 7) (i32.const 2100) (i32.const 1) (i32.const 2200)))
    (i32.store8 (i32.const 1041) (call $prestat (i32.const 3) (i32.const 2200)))
    (i32.store (i32.const 2204) (i32.const 99))
    (i32.store8 (i32.const 1042) (call $env (i32.const 2204) (i32.const 2208)))
    (i32.store8 (i32.const 1043) (i32.load8_u (i32.const 2204)))
    (call $put_value (local.get 2) (i32.const 8)))"#,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let v = value(&plugin, "errnos", &inv(0, 0));
    const BADF: u8 = 8;
    const NOSYS: u8 = 52;
    assert_eq!(
        v,
        [BADF, NOSYS, 0, 18, BADF, BADF, 0, 0],
        "path_open, sock_accept, fd_write(1), bytes written, fd_write(7), \
         fd_prestat_get(3), environ_sizes_get, environment count"
    );
}

#[test]
fn proc_exit_ends_the_call_with_its_code_and_stderr() {
    let plugin = load(
        "exits",
        &module(
            r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (data (i32.const 2048) "panic: index out of range\n")"#,
            r#"(func (export "map:exit") (param i32 i32 i32) (result i32)
    (i32.store (i32.const 2100) (i32.const 2048))
    (i32.store (i32.const 2104) (i32.const 26))
    (drop (call $write (i32.const 2) (i32.const 2100) (i32.const 1) (i32.const 2200)))
    (call $exit (i32.const 2))
    (i32.const 0))"#,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let err = plugin.map("exit", &inv(0, 0), &one_line()).unwrap_err();
    match &err.kind {
        CallErrorKind::Exit { code: 2, stderr } => {
            assert_eq!(stderr, "panic: index out of range")
        }
        other => panic!("expected an exit, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("exited with code 2") && text.contains("index out of range"),
        "{text}"
    );
}

#[test]
fn a_reactor_is_initialised_on_every_fresh_instance() {
    let plugin = load(
        "reactor",
        &module(
            "",
            r#"(global $ready (mut i32) (i32.const 0))
  (func (export "_initialize") (global.set $ready (i32.add (global.get $ready) (i32.const 41))))
  (func (export "map:ready") (param i32 i32 i32) (result i32)
    (i32.store (i32.const 1036) (global.get $ready))
    (call $put_value (local.get 2) (i32.const 4)))"#,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        assert_eq!(value(&plugin, "ready", &inv(0, 0)), 41u32.to_le_bytes());
    }
}

#[test]
fn a_command_runs_start_first_and_exit_0_ends_it_normally() {
    let plugin = load(
        "command",
        &module(
            r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#,
            r#"(global $ran (mut i32) (i32.const 0))
  (func (export "_start") (global.set $ran (i32.const 7)) (call $exit (i32.const 0)) (unreachable))
  (func (export "map:ran") (param i32 i32 i32) (result i32)
    (i32.store (i32.const 1036) (global.get $ran))
    (call $put_value (local.get 2) (i32.const 4)))"#,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&plugin, "ran", &inv(0, 0)), 7u32.to_le_bytes());
}

#[test]
fn an_assemblyscript_abort_is_a_guest_error_with_message_and_place() {
    // AssemblyScript strings: UTF-16LE, byte length in the 4 bytes before.
    let plugin = load(
        "as",
        &module(
            r#"
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (data (i32.const 2044) "\04\00\00\00o\00k\00")
  (data (i32.const 2060) "\10\00\00\00a\00.\00t\00s\00\00\00\00\00")"#,
            r#"(func (export "map__check") (param i32 i32 i32) (result i32)
    (call $abort (i32.const 2048) (i32.const 2064) (i32.const 3) (i32.const 7))
    (i32.const 0))"#,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = plugin
        .functions()
        .iter()
        .map(|f| format!("{}:{}", f.kind, f.name))
        .collect();
    assert_eq!(names, ["map:check"], "map__check is map:check");
    let err = plugin.map("check", &inv(0, 0), &one_line()).unwrap_err();
    match &err.kind {
        CallErrorKind::Guest { message } => {
            assert!(message.starts_with("abort: ok at a.ts"), "{message}");
            assert!(message.ends_with(":3:7"), "{message}");
        }
        other => panic!("expected a guest error, got {other}"),
    }
}

#[test]
fn one_function_under_both_spellings_is_refused() {
    let err = load(
        "twice",
        &module(
            "",
            r#"(func (export "map:f") (param i32 i32 i32) (result i32) (i32.const 1))
  (func (export "map__f") (param i32 i32 i32) (result i32) (i32.const 1))"#,
        ),
    )
    .unwrap_err();
    let LoadError::NotAPlugin { problems, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::DuplicateFunction { .. })),
        "{err}"
    );
}

#[test]
fn imports_outside_weirs_set_are_refused_by_name() {
    let err = load(
        "sockets",
        &module(
            r#"(import "wasi_snapshot_preview1" "sock_open" (func (param i32) (result i32)))
  (import "wasi:cli/environment@0.2.0" "get-environment" (func (param i32)))"#,
            r#"(func (export "map:f") (param i32 i32 i32) (result i32) (i32.const 1))"#,
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`wasi_snapshot_preview1.sock_open`")
            && err.contains("not a WASI preview 1 function"),
        "{err}"
    );
    assert!(
        err.contains("`wasi:cli/environment@0.2.0.get-environment`")
            && err.contains("component-model"),
        "{err}"
    );
}

#[test]
fn a_rust_panic_reaches_the_host_with_its_message_and_location() {
    let testkit = shared_plugin(guests::TESTKIT);
    let batch: RecordBatch = [(&b"k"[..], &b"panic"[..])].into_iter().collect();
    let err = testkit
        .map("panic_on_panic", &inv(0, 0), &batch)
        .unwrap_err();
    match &err.kind {
        CallErrorKind::Guest { message } => {
            assert!(message.contains("asked to panic by [107]"), "{message}");
            assert!(message.contains("src/lib.rs:"), "{message}");
        }
        other => panic!("expected a guest error, got {other}"),
    }
}

/// The wasm extensions `docs/abi.md` lists as accepted compile and run;
/// those it lists as refused are refused at load.
#[test]
fn the_documented_wasm_extensions() {
    let accepted = [
        (
            "bulk memory",
            "(memory.copy (i32.const 0) (i32.const 8) (i32.const 4))",
        ),
        ("sign extension", "(drop (i32.extend8_s (i32.const 255)))"),
        (
            "non-trapping float-to-int",
            "(drop (i32.trunc_sat_f32_s (f32.const 1e30)))",
        ),
        (
            "SIMD",
            "(drop (i32x4.extract_lane 0 (v128.const i32x4 1 2 3 4)))",
        ),
        ("multi-value", "(drop (drop (call $two)))"),
        ("reference types", "(drop (ref.is_null (ref.null func)))"),
        ("tail calls", "(drop (call $tail))"),
    ];
    for (name, body) in accepted {
        let wat = module(
            "",
            &format!(
                r#"(func $two (result i32 i32) (i32.const 1) (i32.const 2))
  (func $tail (result i32) (return_call $one))
  (func $one (result i32) (i32.const 1))
  (func (export "map:f") (param i32 i32 i32) (result i32)
    {body}
    (call $put_value (local.get 2) (i32.const 0)))"#
            ),
        );
        let plugin = load(name, &wat).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(value(&plugin, "f", &inv(0, 0)), b"", "{name}");
    }
    let refused = [
        (
            "threads (shared memory)",
            r#"(memory (export "memory") 1 1 shared)"#,
        ),
        ("memory64", r#"(memory (export "memory") i64 1)"#),
    ];
    for (name, memory) in refused {
        let wat = format!(
            r#"(module {memory}
  (func (export "weir_abi_version") (result i32) (i32.const 1))
  (func (export "weir_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "map:f") (param i32 i32 i32) (result i32) (i32.const 1)))"#
        );
        assert!(load(name, &wat).is_err(), "{name} must be refused");
    }
}

#[test]
fn a_guest_sleeping_or_yielding_forever_runs_out_of_fuel_not_time() {
    let plugin = load(
        "sleeper",
        &module(
            r#"
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))"#,
            r#"(func (export "map:sleep") (param i32 i32 i32) (result i32)
    ;; one relative clock subscription of 1 s at 2048, events at 2200
    (i64.store (i32.const 2048) (i64.const 42))
    (i32.store8 (i32.const 2056) (i32.const 0))
    (i32.store (i32.const 2064) (i32.const 1))
    (i64.store (i32.const 2072) (i64.const 1000000000))
    (drop (call $poll (i32.const 2048) (i32.const 2200) (i32.const 1) (i32.const 2300)))
    ;; slept: the event names the subscription, the clock moved a second
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 1036)))
    (i64.store (i32.const 1044) (i64.load (i32.const 2200)))
    (i32.store (i32.const 1052) (i32.load (i32.const 2300)))
    (call $put_value (local.get 2) (i32.const 20)))
  (func (export "map:forever") (param i32 i32 i32) (result i32)
    (loop $l
      (drop (call $poll (i32.const 2048) (i32.const 2200) (i32.const 1) (i32.const 2300)))
      (drop (call $yield))
      (br $l))
    (i32.const 0))"#,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let v = value(&plugin, "sleep", &inv(1_000, 0));
    assert_eq!(u64_at(&v, 0), 2_000_000_000, "one virtual second later");
    assert_eq!(u64_at(&v, 8), 42, "the clock subscription fired");
    assert_eq!(&v[16..20], 1u32.to_le_bytes(), "one event");

    let mut tight = inv(0, 0);
    tight.limits.fuel = 1_000_000;
    let started = std::time::Instant::now();
    let err = plugin.map("forever", &tight, &one_line()).unwrap_err();
    assert!(matches!(err.kind, CallErrorKind::OutOfFuel { .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn stdout_beyond_the_log_budget_is_dropped_without_failing_the_call() {
    let plugin = load(
        "chatty",
        &module(
            r#"(import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))"#,
            r#"(func (export "map:chat") (param i32 i32 i32) (result i32)
    (local $i i32)
    ;; 64 KiB of memory from 65536 as one iovec, written 100 times
    (i32.store (i32.const 2100) (i32.const 65536))
    (i32.store (i32.const 2104) (i32.const 65536))
    (loop $l
      (i32.store (i32.const 1036) (call $write (i32.const 1) (i32.const 2100) (i32.const 1) (i32.const 1040)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))
    (call $put_value (local.get 2) (i32.const 8)))"#,
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let v = value(&plugin, "chat", &inv(0, 0));
    assert_eq!(&v[0..4], 0u32.to_le_bytes(), "fd_write succeeds");
    assert_eq!(&v[4..8], 65536u32.to_le_bytes(), "all of it is taken");
}
