//! The word count written in JavaScript (`plugins/wordcount-js`: QuickJS in
//! a `wasm32-wasip1` module, through `weir-js`) against the Rust reference
//! (`plugins/wordcount`): byte-identical outputs and error messages on the
//! edges of `docs/abi.md` §6, a JavaScript exception as a guest error, and
//! a whole `weir run` job whose output files equal the Rust plugin's.
//!
//! `cargo test -p weir --test it javascript -- --nocapture` also prints the
//! measurements: per-call cost and split throughput against Rust.

use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use weir::wasm::{CallErrorKind, Invocation, Plugin};
use weir_abi::{
    write_update_entries, CallHeader, FunctionKind, GroupsWriter, RecordBatch, UpdateEntry,
};
use weir_tests::{guest, guests, runtime};

use crate::support::{run_to_end, tree};

/// (Rust reference, JavaScript), loaded once.
static PLUGINS: LazyLock<(Plugin, Plugin)> = LazyLock::new(|| {
    let rt = runtime();
    let rust = rt
        .load_file(guest(guests::WORDCOUNT))
        .unwrap_or_else(|e| panic!("{e}"));
    let js = rt
        .load_file(guest(guests::WORDCOUNT_JS))
        .unwrap_or_else(|e| panic!("{e}"));
    (rust, js)
});

const SPLIT: (FunctionKind, &str) = (FunctionKind::Map, "split");
const SUM: (FunctionKind, &str) = (FunctionKind::Reduce, "sum");
const RUNNING: (FunctionKind, &str) = (FunctionKind::Update, "running_count");

fn inv() -> Invocation {
    Invocation {
        header: CallHeader {
            batch_time_ms: 1000,
            partition: 1,
            num_partitions: 2,
        },
        ..Default::default()
    }
}

/// Output bytes, or the guest's error message; any other failure panics.
fn call(
    plugin: &Plugin,
    (kind, function): (FunctionKind, &str),
    body: &[u8],
) -> Result<Vec<u8>, String> {
    match plugin.call(kind, function, &inv(), body) {
        Ok(out) => Ok(out),
        Err(e) => match e.kind {
            CallErrorKind::Guest { message } => Err(message),
            _ => panic!("{e}"),
        },
    }
}

/// Calls both plugins and requires the same outcome; returns it.
fn same(f: (FunctionKind, &str), body: &[u8]) -> Result<Vec<u8>, String> {
    let (rust, js) = &*PLUGINS;
    let want = call(rust, f, body);
    let got = call(js, f, body);
    assert_eq!(got, want, "{}:{} on body {body:02x?}", f.0, f.1);
    want
}

fn lines(lines: &[&[u8]]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| (&b""[..], *l))
        .collect::<RecordBatch>()
        .into_bytes()
}

fn groups(groups: &[(&[u8], &[&[u8]])]) -> Vec<u8> {
    let mut w = GroupsWriter::new();
    for (k, vs) in groups {
        w.push(k, vs.iter().copied());
    }
    w.into_bytes()
}

#[test]
fn split_is_byte_identical_to_rust() {
    let many: Vec<u8> = (0..2000)
        .map(|i| format!("w{} ", i % 97))
        .collect::<String>()
        .into_bytes();
    let cases: Vec<Vec<u8>> = vec![
        lines(&[]),
        lines(&[b""]),
        lines(&[b"   \t\n "]),
        lines(&[b"the cat  the\tend ", b"", b"a b"]),
        lines(&["a\u{3000}b\u{0085}c\u{00A0}d".as_bytes()]),
        // Every White_Space character splits; U+FEFF and U+180E (which
        // JavaScript's \s or older Unicode treat as space) do not.
        lines(&["x\u{1680}x\u{2000}x\u{200A}x\u{2028}x\u{2029}x\u{202F}x\u{205F}x\u{000B}x\u{000C}x\u{000D}x".as_bytes()]),
        lines(&["a\u{FEFF}b c\u{180E}d e\u{200B}f".as_bytes()]),
        lines(&["héllo wörld 日本語 😀 emoji".as_bytes()]),
        lines(&[&many, b"tail"]),
    ];
    for body in &cases {
        same(SPLIT, body).unwrap_or_else(|e| panic!("{e}"));
    }
    // Keys are ignored.
    let keyed: RecordBatch = [(&b"k"[..], &b"x y"[..])].into_iter().collect();
    same(SPLIT, keyed.as_bytes()).unwrap();
}

#[test]
fn split_fails_on_non_utf8_like_rust() {
    for bad in [
        &b"ok \xff no"[..],
        b"\xe3\x80",
        b"\xc3\x28",
        b"\xed\xa0\x80",
    ] {
        let err = same(SPLIT, &lines(&[b"fine", bad])).unwrap_err();
        assert!(err.starts_with("record 1: value: "), "{err}");
    }
}

#[test]
fn sum_is_byte_identical_to_rust() {
    let one = 1i64.to_le_bytes();
    let two = 2i64.to_le_bytes();
    let max = i64::MAX.to_le_bytes();
    let min = i64::MIN.to_le_bytes();
    let minus = (-1i64).to_le_bytes();
    same(SUM, &groups(&[])).unwrap();
    same(
        SUM,
        &groups(&[
            (b"a", &[&one]),
            (b"b", &[&one, &two, &two]),
            (b"c", &[&max, &minus]),
        ]),
    )
    .unwrap();
    same(SUM, &groups(&[(b"m", &[&min, &one])])).unwrap();
    let overflow = same(SUM, &groups(&[(b"a", &[&one]), (b"x", &[&max, &one])])).unwrap_err();
    assert_eq!(overflow, "count overflow adding 9223372036854775807 and 1");
    let underflow = same(SUM, &groups(&[(b"x", &[&min, &minus])])).unwrap_err();
    assert_eq!(
        underflow,
        "count overflow adding -9223372036854775808 and -1"
    );
    let short = same(SUM, &groups(&[(b"x", &[&one, b"abc"])])).unwrap_err();
    assert!(short.contains("expected 8 bytes, found 3"), "{short}");
}

#[test]
fn running_count_is_byte_identical_to_rust() {
    let (one, two, ten) = (1i64.to_le_bytes(), 2i64.to_le_bytes(), 10i64.to_le_bytes());
    let max = i64::MAX.to_le_bytes();
    let entry = |key: &'static [u8],
                 state: Option<&'static [u8]>,
                 timed_out,
                 values: Vec<&'static [u8]>| UpdateEntry {
        key,
        state,
        timed_out,
        values,
    };
    let leak = |b: [u8; 8]| -> &'static [u8] { Box::leak(Box::new(b)) };
    let (one, two, ten, max) = (leak(one), leak(two), leak(ten), leak(max));
    let bodies = [
        write_update_entries(&[]),
        write_update_entries(&[
            entry(b"old", Some(ten), false, vec![one]),
            entry(b"idle", Some(ten), false, vec![]),
            entry(b"gone", None, false, vec![]),
            entry(b"new", None, false, vec![two, two]),
            entry(b"timeout", Some(ten), true, vec![]),
            // The Rust reference's release build wraps.
            entry(b"wraps", Some(max), false, vec![one]),
        ]),
    ];
    for body in &bodies {
        same(RUNNING, body).unwrap();
    }
    for bad in [
        write_update_entries(&[entry(b"\xff", None, false, vec![one])]),
        write_update_entries(&[entry(b"k", Some(b"abc"), false, vec![one])]),
        write_update_entries(&[entry(b"k", None, false, vec![one, b"x"])]),
    ] {
        same(RUNNING, &bad).unwrap_err();
    }
}

#[test]
fn a_javascript_exception_is_a_guest_error_with_its_message() {
    let (_, js) = &*PLUGINS;
    let max = i64::MAX.to_le_bytes();
    let err = js
        .reduce("sum", &inv(), {
            let mut g = GroupsWriter::new();
            g.push(b"k", [&max[..], &max[..]].into_iter());
            g
        })
        .unwrap_err();
    match &err.kind {
        CallErrorKind::Guest { message } => assert_eq!(
            message,
            "count overflow adding 9223372036854775807 and 9223372036854775807"
        ),
        other => panic!("expected a guest error, got {other}"),
    }
    assert!(err.to_string().contains("count overflow"), "{err}");
}

/// A pipeline over the generator with `plugin` as `wc`: split, sum per
/// batch, running totals; text files under `out`.
fn pipeline(dir: &Path, name: &str, plugin: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let s = |p: &Path| format!("{:?}", p.to_str().expect("UTF-8 path"));
    std::fs::write(
        &path,
        format!(
            r#"[job]
name = "wc"
batch_interval = "1s"
partitions = 2

[plugins]
wc = {plugin}

[[source]]
name = "lines"
type = "generator"
rate = 300
words_per_line = 6
vocabulary = 50

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[stream]]
name = "counts"
op = "reduce_by_key"
input = "words"
function = "wc:sum"

[[stream]]
name = "totals"
op = "update_state_by_key"
input = "words"
function = "wc:running_count"

[[output]]
stream = "counts"
type = "text_files"
prefix = {counts}

[[output]]
stream = "totals"
type = "text_files"
prefix = {totals}
"#,
            plugin = s(plugin),
            counts = s(&dir.join(name).join("counts")),
            totals = s(&dir.join(name).join("totals")),
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_weir_run_job_with_the_javascript_plugin_writes_what_rust_writes() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--batches", "3", "--simulated-clock"];
    let rust = pipeline(dir.path(), "rust", &guest(guests::WORDCOUNT));
    let js = pipeline(dir.path(), "js", &guest(guests::WORDCOUNT_JS));
    run_to_end(&rust, &args);
    run_to_end(&js, &args);
    let (want, got) = (tree(&dir.path().join("rust")), tree(&dir.path().join("js")));
    assert!(want.len() >= 6, "{:?}", want.keys());
    assert_eq!(got, want);
}

/// Median wall time of `f` over `n` runs.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// Not a benchmark, a measurement printed with `--nocapture`: the cost of
/// a call and split's throughput, JavaScript against Rust.
#[test]
fn measure_call_cost_and_split_throughput() {
    let (rust, js) = &*PLUGINS;
    let empty = lines(&[]);
    let one = lines(&[b"a b"]);
    let line = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do";
    let words_per_line = line.split_whitespace().count();
    let big = lines(&vec![line.as_bytes(); 10_000]);
    for (lang, p) in [("rust", rust), ("js", js)] {
        let empty_call = median(21, || {
            call(p, SPLIT, &empty).unwrap();
        });
        let one_line = median(21, || {
            call(p, SPLIT, &one).unwrap();
        });
        let batch = median(5, || {
            call(p, SPLIT, &big).unwrap();
        });
        let words = 10_000 * words_per_line;
        println!(
            "{lang:>4}: empty batch {empty_call:?}/call, one line {one_line:?}/call, \
             10K lines ({words} words) {batch:?} = {:.1} M words/s",
            words as f64 / batch.as_secs_f64() / 1e6
        );
    }
}
