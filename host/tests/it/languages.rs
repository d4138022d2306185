//! The word count plugin in every language weir has one in — Rust (through
//! the SDK), C (freestanding), WAT, Go, Zig, AssemblyScript, C++, C with
//! wasi-libc and JavaScript (QuickJS) — must answer every call exactly as the Rust plugin does: the
//! same output bytes, or the same error message, on a corpus of inputs
//! (empty batches and lines, every Unicode whitespace, invalid UTF-8, many
//! words, a large batch, sums that overflow, values of the wrong width,
//! updates with and without state and values, malformed framing).
//!
//! Each also passes `weir::conformance` (what `weir plugin test` runs).
//!
//! One test per language, so a missing toolchain or a broken port fails
//! alone. The plugins are built by `tests/build.rs`; the Go, C++ and C
//! (wasi-libc) ones are WASI reactors and AssemblyScript imports
//! `env.abort`, so those need the host's WASI support.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::wasm::{CallErrorKind, Invocation, Plugin};
use weir_abi::{
    write_update_entries, CallHeader, FunctionKind, GroupsWriter, RecordBatch, UpdateEntry,
};
use weir_tests::{guests, runtime, shared_plugin};

use crate::support::wat_wordcount;

const SPLIT: (FunctionKind, &str) = (FunctionKind::Map, "split");
const SUM: (FunctionKind, &str) = (FunctionKind::Reduce, "sum");
const RUNNING: (FunctionKind, &str) = (FunctionKind::Update, "running_count");

/// One call: which function, on what body, described for failure messages.
struct Case {
    what: String,
    function: (FunctionKind, &'static str),
    header: CallHeader,
    body: Vec<u8>,
}

/// What a call returned: output bytes or the guest's error message; any
/// other failure (a trap, a missing export, bad output) as `host: ...`,
/// which the Rust plugin never gives, so it shows as a difference.
type Outcome = Result<Vec<u8>, String>;

fn call(plugin: &Plugin, case: &Case) -> Outcome {
    let inv = Invocation {
        header: case.header,
        ..Invocation::default()
    };
    let (kind, name) = case.function;
    plugin
        .call(kind, name, &inv, &case.body)
        .map_err(|e| match e.kind {
            CallErrorKind::Guest { message } => message,
            _ => format!("host: {e}"),
        })
}

/// Calls every case on `plugin` and on the Rust plugin; fails with every
/// difference.
fn check(language: &str, plugin: &Plugin) {
    let reference = shared_plugin(guests::WORDCOUNT);
    let cases = corpus();
    let mut differences = Vec::new();
    for case in &cases {
        let want = call(&reference, case);
        assert!(
            !matches!(&want, Err(m) if m.starts_with("host: ")),
            "the Rust plugin failed on {}: {want:?}",
            case.what
        );
        let got = call(plugin, case);
        if got != want {
            differences.push(format!(
                "{}:{} on {}:\n    want {}\n    got  {}",
                case.function.0,
                case.function.1,
                case.what,
                show(&want),
                show(&got)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "the {language} plugin differs from the Rust plugin in {} of {} calls:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
    // And the conformance suite `weir plugin test` runs.
    let report = weir::conformance::run(plugin, &weir::conformance::Selection::All)
        .unwrap_or_else(|e| panic!("{language}: {e}"));
    assert!(
        report.passed(),
        "{language}: the conformance suite failed:\n{report}"
    );
    assert!(
        report.results.len() >= 30,
        "{language}: {}",
        report.summary()
    );
}

fn show(outcome: &Outcome) -> String {
    match outcome {
        Ok(bytes) if bytes.len() > 64 => {
            format!("ok {} bytes {:02x?}...", bytes.len(), &bytes[..64])
        }
        Ok(bytes) => format!("ok {bytes:02x?}"),
        Err(message) => format!("error {message:?}"),
    }
}

// ---- the corpus -------------------------------------------------------------

fn case(what: impl Into<String>, function: (FunctionKind, &'static str), body: Vec<u8>) -> Case {
    Case {
        what: what.into(),
        function,
        header: CallHeader {
            batch_time_ms: 1_000,
            partition: 1,
            num_partitions: 2,
        },
        body,
    }
}

/// A map body of unkeyed lines.
fn lines<L: AsRef<[u8]>>(lines: &[L]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| (&b""[..], l.as_ref()))
        .collect::<RecordBatch>()
        .into_bytes()
}

/// A reduce body.
fn groups(groups: &[(&str, &[&[u8]])]) -> Vec<u8> {
    let mut w = GroupsWriter::new();
    for (key, values) in groups {
        w.push(key.as_bytes(), values.iter().copied());
    }
    w.into_bytes()
}

fn entry<'a>(key: &'a [u8], state: Option<&'a [u8]>, values: &[&'a [u8]]) -> UpdateEntry<'a> {
    UpdateEntry {
        key,
        state,
        timed_out: false,
        values: values.to_vec(),
    }
}

/// Every character Rust's `char::is_whitespace` accepts.
const WHITESPACE: &[&str] = &[
    "\t", "\n", "\u{b}", "\u{c}", "\r", " ", "\u{85}", "\u{a0}", "\u{1680}", "\u{2000}",
    "\u{2001}", "\u{2002}", "\u{2003}", "\u{2004}", "\u{2005}", "\u{2006}", "\u{2007}", "\u{2008}",
    "\u{2009}", "\u{200a}", "\u{2028}", "\u{2029}", "\u{202f}", "\u{205f}", "\u{3000}",
];

/// Characters that look like whitespace, or are close to it in UTF-8, but
/// are not.
const NOT_WHITESPACE: &[&str] = &[
    "\u{0}",
    "\u{1c}",
    "\u{1f}",
    "\u{7f}",
    "\u{84}",
    "\u{86}",
    "\u{9f}",
    "\u{a1}",
    "\u{180e}",
    "\u{1681}",
    "\u{200b}",
    "\u{200c}",
    "\u{200d}",
    "\u{2027}",
    "\u{202a}",
    "\u{202e}",
    "\u{2030}",
    "\u{205e}",
    "\u{2060}",
    "\u{2fff}",
    "\u{3001}",
    "\u{feff}",
    "\u{e000}",
    "\u{10ffff}",
];

const I64_1: [u8; 8] = 1i64.to_le_bytes();
const I64_2: [u8; 8] = 2i64.to_le_bytes();
const I64_MAX: [u8; 8] = i64::MAX.to_le_bytes();
const I64_MIN: [u8; 8] = i64::MIN.to_le_bytes();
const I64_NEG: [u8; 8] = (-5i64).to_le_bytes();

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut rng = StdRng::seed_from_u64(0x3e1c);

    // map:split
    cases.push(case("an empty batch", SPLIT, lines::<&str>(&[])));
    cases.push(case("an empty line", SPLIT, lines(&[""])));
    cases.push(case("only whitespace", SPLIT, lines(&["  \t\n "])));
    cases.push(case(
        "ASCII lines",
        SPLIT,
        lines(&["the cat sat", "  on the  mat ", "a\tb\nc\rd\u{b}e\u{c}f"]),
    ));
    cases.push(case(
        "the worked example of docs/abi.md",
        SPLIT,
        lines(&["a b"]),
    ));
    let all_ws: String = WHITESPACE
        .iter()
        .enumerate()
        .map(|(i, ws)| format!("w{i}{ws}"))
        .collect();
    cases.push(case("every Unicode whitespace", SPLIT, lines(&[all_ws])));
    cases.push(case(
        "U+3000 and U+0085",
        SPLIT,
        lines(&["日本\u{3000}語\u{85}x\u{3000}\u{3000}y\u{85}"]),
    ));
    let no_ws: String = NOT_WHITESPACE.iter().map(|c| format!("a{c}b ")).collect();
    cases.push(case(
        "characters that are not whitespace",
        SPLIT,
        lines(&[no_ws]),
    ));
    cases.push(case(
        "non-ASCII words",
        SPLIT,
        lines(&["héllo wörld 🦀 ünï\u{a0}cödé"]),
    ));
    cases.push(case(
        "keyed records (keys are ignored, even when not UTF-8)",
        SPLIT,
        [(&b"k"[..], &b"x y"[..]), (b"\xff\xfe", b"z")]
            .into_iter()
            .collect::<RecordBatch>()
            .into_bytes(),
    ));
    for (what, bad) in [
        ("a byte 0xff", &b"ok \xff no"[..]),
        ("a lone continuation byte", b"\x80"),
        ("a sequence cut off at the end", b"abc \xe2\x82"),
        ("a sequence cut off by ASCII", b"\xe2\x82x"),
        ("a cut-off 4-byte sequence", b"\xf0\x9f\x98"),
        ("a 4-byte sequence with a bad last byte", b"\xf0\x9f\x98 "),
        ("an overlong encoding", b"\xc0\x80"),
        ("an overlong 3-byte encoding", b"\xe0\x80\x80"),
        ("a surrogate", b"\xed\xa0\x80"),
        ("a code point above U+10FFFF", b"\xf4\x90\x80\x80"),
        ("a byte 0xf5", b"\xf5\x80\x80\x80"),
        ("a truncated sequence before a valid one", b"\xc3\xc3\xa9"),
    ] {
        cases.push(case(
            format!("a line with {what}"),
            SPLIT,
            lines(&[&b"fine line"[..], bad]),
        ));
    }
    cases.push(case(
        "invalid UTF-8 in two lines (the first one is reported)",
        SPLIT,
        lines(&[&b"a"[..], b"\xff", b"\xc3"]),
    ));
    let many: String = (0..5_000).map(|i| format!("w{} ", i % 97)).collect();
    cases.push(case("many words", SPLIT, lines(&[many])));
    let pieces: Vec<&str> = ["a", "bb", "word", "héllo", "日本語", "🦀", "x\u{200b}y"]
        .into_iter()
        .chain(WHITESPACE.iter().copied())
        .chain(NOT_WHITESPACE.iter().copied())
        .collect();
    let large: Vec<String> = (0..2_000)
        .map(|_| {
            (0..rng.gen_range(0..30))
                .map(|_| pieces[rng.gen_range(0..pieces.len())])
                .collect()
        })
        .collect();
    cases.push(case("a large batch of random lines", SPLIT, lines(&large)));

    // reduce:sum
    cases.push(case("no groups", SUM, groups(&[])));
    cases.push(case("one value", SUM, groups(&[("w", &[&I64_2])])));
    cases.push(case(
        "several groups",
        SUM,
        groups(&[
            ("a", &[&I64_1, &I64_2, &I64_2]),
            ("日本", &[&I64_NEG, &I64_1]),
            ("", &[&I64_MAX]),
            ("m", &[&I64_MIN, &I64_MAX]),
        ]),
    ));
    cases.push(case(
        "an overflow",
        SUM,
        groups(&[("a", &[&I64_1]), ("b", &[&I64_2, &I64_MAX])]),
    ));
    cases.push(case(
        "an underflow",
        SUM,
        groups(&[("a", &[&I64_MIN, &I64_NEG])]),
    ));
    cases.push(case(
        "an overflow back in range (still an error)",
        SUM,
        groups(&[("a", &[&I64_MAX, &I64_1, &I64_NEG])]),
    ));
    cases.push(case(
        "a 7-byte value",
        SUM,
        groups(&[("a", &[&I64_1]), ("b", &[&I64_1, &[1, 0, 0, 0, 0, 0, 0]])]),
    ));
    cases.push(case(
        "a 7-byte first value",
        SUM,
        groups(&[("a", &[&[1, 0, 0, 0, 0, 0, 0], &I64_1])]),
    ));
    cases.push(case("an empty value", SUM, groups(&[("a", &[&[]])])));
    cases.push(case(
        "a 9-byte value after an overflow",
        SUM,
        groups(&[("a", &[&I64_MAX, &I64_1, &[0; 9]])]),
    ));
    let values: Vec<[u8; 8]> = (0..3_000)
        .map(|_| rng.gen_range(-1_000_000i64..1_000_000).to_le_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| &v[..]).collect();
    cases.push(case(
        "many values",
        SUM,
        groups(&[("a", &refs[..1_000]), ("b", &refs[1_000..])]),
    ));

    // update:running_count
    let ten = 10i64.to_le_bytes();
    cases.push(case("no entries", RUNNING, write_update_entries(&[])));
    cases.push(case(
        "with and without state and values",
        RUNNING,
        write_update_entries(&[
            entry(b"old", Some(&ten), &[&I64_1]),
            entry(b"idle", Some(&ten), &[]),
            entry(b"new", None, &[&I64_2, &I64_2]),
            entry(b"gone", None, &[]),
            entry(b"", None, &[&I64_1]),
            entry("日本\u{3000}".as_bytes(), Some(&I64_NEG), &[&I64_1]),
        ]),
    ));
    let mut timed_out = entry(b"late", Some(&ten), &[]);
    timed_out.timed_out = true;
    let mut timed_out_none = entry(b"never", None, &[]);
    timed_out_none.timed_out = true;
    cases.push(case(
        "timed-out keys",
        RUNNING,
        write_update_entries(&[timed_out, timed_out_none]),
    ));
    cases.push(case(
        "a total that wraps (the Rust plugin is built in release mode)",
        RUNNING,
        write_update_entries(&[
            entry(b"w", Some(&I64_MAX), &[&I64_1, &I64_2]),
            entry(b"v", None, &[&I64_MIN, &I64_NEG]),
        ]),
    ));
    cases.push(case(
        "a 7-byte value",
        RUNNING,
        write_update_entries(&[entry(b"a", None, &[&I64_1]), entry(b"b", None, &[&[0; 7]])]),
    ));
    cases.push(case(
        "a 7-byte state",
        RUNNING,
        write_update_entries(&[entry(b"a", Some(&[0; 7]), &[&I64_1])]),
    ));
    cases.push(case(
        "a 9-byte state without values",
        RUNNING,
        write_update_entries(&[entry(b"a", Some(&[0; 9]), &[])]),
    ));
    cases.push(case(
        "an empty state",
        RUNNING,
        write_update_entries(&[entry(b"a", Some(&[]), &[])]),
    ));
    cases.push(case(
        "a bad value and a bad state (the value is reported)",
        RUNNING,
        write_update_entries(&[entry(b"a", Some(&[0; 3]), &[&[0; 2]])]),
    ));
    cases.push(case(
        "a key that is not UTF-8",
        RUNNING,
        write_update_entries(&[
            entry(b"ok", None, &[&I64_1]),
            entry(b"\xe2\x82", None, &[&I64_1]),
        ]),
    ));
    cases.push(case(
        "a key that is not UTF-8 with a bad value",
        RUNNING,
        write_update_entries(&[entry(b"\xff", None, &[&[0; 2]])]),
    ));
    let keys: Vec<String> = (0..500)
        .map(|i| format!("key-{i}-{}", pieces[i % 7]))
        .collect();
    let states: Vec<[u8; 8]> = (0..500)
        .map(|i| (i as i64 * 7 - 100).to_le_bytes())
        .collect();
    let entries: Vec<UpdateEntry<'_>> = keys
        .iter()
        .zip(&states)
        .enumerate()
        .map(|(i, (k, s))| {
            entry(
                k.as_bytes(),
                (i % 3 != 0).then_some(&s[..]),
                &refs[i % 5..(i % 5) + (i % 4)],
            )
        })
        .collect();
    cases.push(case(
        "many entries",
        RUNNING,
        write_update_entries(&entries),
    ));

    // malformed framing: the host never sends it, but the ports report it
    // with the SDK's words
    let body = lines(&["a b"]);
    cases.push(case(
        "a truncated record batch",
        SPLIT,
        body[..body.len() - 1].to_vec(),
    ));
    cases.push(case(
        "trailing bytes after a record batch",
        SPLIT,
        [&body[..], &[0]].concat(),
    ));
    cases.push(case(
        "an implausible record count",
        SPLIT,
        vec![0xff, 0, 0, 0, 0, 0, 0, 0],
    ));
    cases.push(case("an empty map body", SPLIT, vec![]));
    cases.push(case(
        "a group without values",
        SUM,
        vec![1, 0, 0, 0, 1, 0, 0, 0, b'k', 0, 0, 0, 0, 0, 0, 0, 0],
    ));
    cases.push(case(
        "a truncated group",
        SUM,
        groups(&[("a", &[&I64_1])])[..12].to_vec(),
    ));
    let mut flags = write_update_entries(&[entry(b"a", None, &[])]);
    flags[9] = 4;
    cases.push(case("update flags with bit 2", RUNNING, flags));
    let entries = write_update_entries(&[entry(b"a", Some(&ten), &[&I64_1])]);
    cases.push(case(
        "a truncated update entry",
        RUNNING,
        entries[..entries.len() - 3].to_vec(),
    ));

    // the call header is handed through
    for c in cases.iter_mut().step_by(3) {
        c.header = CallHeader {
            batch_time_ms: rng.gen(),
            partition: 0,
            num_partitions: 1,
        };
    }
    cases
}

// ---- one test per language ---------------------------------------------------

#[test]
fn the_reference_gives_the_documented_bytes() {
    let plugin = shared_plugin(guests::WORDCOUNT);
    let out = call(&plugin, &case("", SPLIT, lines(&["a b"]))).unwrap();
    let expected = [
        &[2u8, 0, 0, 0][..],
        &[1, 0, 0, 0, b'a', 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        &[1, 0, 0, 0, b'b', 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    ]
    .concat();
    assert_eq!(out, expected);
    assert_eq!(
        call(
            &plugin,
            &case("", SUM, groups(&[("a", &[&I64_MAX, &I64_1])]))
        ),
        Err("count overflow adding 9223372036854775807 and 1".to_owned())
    );
}

#[test]
fn c() {
    check("C", &shared_plugin(guests::WORDCOUNT_C));
}

#[test]
fn wat() {
    check(
        "WAT",
        &runtime()
            .load_file(wat_wordcount())
            .unwrap_or_else(|e| panic!("{e}")),
    );
}

#[test]
fn go() {
    check("Go", &shared_plugin(guests::WORDCOUNT_GO));
}

#[test]
fn zig() {
    check("Zig", &shared_plugin(guests::WORDCOUNT_ZIG));
}

#[test]
fn assemblyscript() {
    check("AssemblyScript", &shared_plugin(guests::WORDCOUNT_AS));
}

#[test]
fn cpp() {
    check("C++", &shared_plugin(guests::WORDCOUNT_CPP));
}

#[test]
fn c_wasi_libc() {
    check("C (wasi-libc)", &shared_plugin(guests::WORDCOUNT_CWASI));
}

#[test]
fn javascript() {
    check("JavaScript", &shared_plugin(guests::WORDCOUNT_JS));
}
