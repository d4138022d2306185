//! The wordcount plugin in three languages — Rust (through the SDK), C and
//! hand-written WAT (both written from `docs/abi.md` alone) — must be
//! indistinguishable through the host: the same output bytes for the same
//! input, the same error messages, and both equal to an oracle computed
//! here. Inputs are random (fixed seeds), hand-built from the document, and
//! deliberately malformed.

use std::sync::LazyLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::wasm::{CallErrorKind, Invocation, Plugin, Runtime, RuntimeConfig};
use weir_abi::{
    read_groups, read_update_entries, write_update_entries, CallHeader, FunctionKind, GroupsWriter,
    RecordBatch, UpdateEntry,
};
use weir_tests::{guest, guests, workspace_root};

static RUNTIME: LazyLock<Runtime> =
    LazyLock::new(|| Runtime::new(&RuntimeConfig::default()).expect("wasm runtime"));

/// The three implementations, loaded once.
static IMPLS: LazyLock<Vec<(&'static str, Plugin)>> = LazyLock::new(|| {
    vec![
        (
            "rust",
            RUNTIME
                .load_file(guest(guests::WORDCOUNT))
                .expect("Rust plugin"),
        ),
        (
            "c",
            RUNTIME
                .load_file(guest(guests::WORDCOUNT_C))
                .expect("C plugin"),
        ),
        (
            "wat",
            RUNTIME
                .load_file(workspace_root().join("plugins/wordcount-wat/wordcount.wat"))
                .expect("WAT plugin"),
        ),
    ]
});

const SPLIT: (FunctionKind, &str) = (FunctionKind::Map, "split");
const SUM: (FunctionKind, &str) = (FunctionKind::Reduce, "sum");
const RUNNING: (FunctionKind, &str) = (FunctionKind::Update, "running_count");

/// What one call returns: output bytes, or the guest's error message. Any
/// other failure (trap, bad pointer, ...) is a bug in a plugin and panics.
type Outcome = Result<Vec<u8>, String>;

fn call(
    plugin: &Plugin,
    (kind, function): (FunctionKind, &str),
    inv: &Invocation,
    body: &[u8],
) -> Outcome {
    match plugin.call(kind, function, inv, body) {
        Ok(out) => Ok(out),
        Err(e) => match e.kind {
            CallErrorKind::Guest { message } => Err(message),
            _ => panic!("{e}"),
        },
    }
}

/// Calls every implementation and checks each against `expected`.
fn check_all(f: (FunctionKind, &str), inv: &Invocation, body: &[u8], expected: &Outcome) {
    for (lang, plugin) in IMPLS.iter() {
        let got = call(plugin, f, inv, body);
        assert_eq!(
            &got, expected,
            "{lang} plugin, {}:{} on body {body:02x?}",
            f.0, f.1
        );
    }
}

fn header(rng: &mut StdRng) -> Invocation {
    let num_partitions = rng.gen_range(1..=16);
    Invocation {
        header: CallHeader {
            batch_time_ms: rng.gen(),
            partition: rng.gen_range(0..num_partitions),
            num_partitions,
        },
        ..Invocation::default()
    }
}

// ---- the oracle: the Rust plugin's semantics, written independently -----

const STRING: &str = "alloc::string::String";

fn le_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn le_bytes(out: &mut Vec<u8>, b: &[u8]) {
    le_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn decode_i64(bytes: &[u8]) -> Result<i64, String> {
    bytes
        .try_into()
        .map(i64::from_le_bytes)
        .map_err(|_| format!("cannot decode i64: expected 8 bytes, found {}", bytes.len()))
}

fn oracle_split(body: &[u8]) -> Outcome {
    let batch = RecordBatch::from_bytes(body.to_vec())
        .map_err(|e| format!("bad record batch from host: {e}"))?;
    let mut records = Vec::new();
    let mut count = 0u32;
    for (i, (_key, value)) in batch.iter().enumerate() {
        let line = std::str::from_utf8(value)
            .map_err(|e| format!("record {i}: value: cannot decode {STRING}: {e}"))?;
        for word in line.split_whitespace() {
            le_bytes(&mut records, word.as_bytes());
            le_bytes(&mut records, &1i64.to_le_bytes());
            count += 1;
        }
    }
    let mut out = count.to_le_bytes().to_vec();
    out.extend_from_slice(&records);
    Ok(out)
}

fn oracle_sum(body: &[u8]) -> Outcome {
    let groups = read_groups(body).map_err(|e| format!("bad reduce input from host: {e}"))?;
    let mut out = (groups.len() as u32).to_le_bytes().to_vec();
    for (i, g) in groups.iter().enumerate() {
        let value = |v: &[u8]| decode_i64(v).map_err(|e| format!("group {i}: value: {e}"));
        let mut acc = value(g.values[0])?;
        for v in &g.values[1..] {
            let x = value(v)?;
            acc = acc
                .checked_add(x)
                .ok_or_else(|| format!("count overflow adding {acc} and {x}"))?;
        }
        le_bytes(&mut out, &acc.to_le_bytes());
    }
    Ok(out)
}

fn oracle_running_count(body: &[u8]) -> Outcome {
    let entries =
        read_update_entries(body).map_err(|e| format!("bad update input from host: {e}"))?;
    let mut actions = (entries.len() as u32).to_le_bytes().to_vec();
    let mut emitted = Vec::new();
    let mut emitted_count = 0u32;
    for (i, e) in entries.iter().enumerate() {
        let key = std::str::from_utf8(e.key)
            .map_err(|err| format!("entry {i}: key: cannot decode {STRING}: {err}"))?;
        let values = e
            .values
            .iter()
            .map(|v| decode_i64(v))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|err| format!("entry {i}: value: {err}"))?;
        let state = e
            .state
            .map(decode_i64)
            .transpose()
            .map_err(|err| format!("entry {i}: state: {err}"))?;
        if values.is_empty() {
            match state {
                None => actions.push(0),
                Some(s) => {
                    actions.push(1);
                    le_bytes(&mut actions, &s.to_le_bytes());
                }
            }
            continue;
        }
        // The Rust plugin is built in release mode: `+` wraps.
        let total = values
            .iter()
            .fold(state.unwrap_or(0), |a, &b| a.wrapping_add(b));
        actions.push(1);
        le_bytes(&mut actions, &total.to_le_bytes());
        le_bytes(&mut emitted, key.as_bytes());
        le_bytes(&mut emitted, &total.to_le_bytes());
        emitted_count += 1;
    }
    actions.extend_from_slice(&emitted_count.to_le_bytes());
    actions.extend_from_slice(&emitted);
    Ok(actions)
}

// ---- random inputs --------------------------------------------------------

/// Pieces of text lines: words (ASCII and not), every kind of whitespace
/// Rust's `split_whitespace` knows, and characters that look like
/// whitespace but are not.
const PIECES: &[&str] = &[
    "a",
    "bb",
    "word",
    "the",
    "cat",
    "Hello,",
    "42",
    "héllo",
    "日本語",
    "🦀",
    "x\u{200b}y",
    " ",
    " ",
    "  ",
    "   ",
    "\t",
    "\t\t",
    "\n",
    "\r\n",
    "\u{b}",
    "\u{c}",
    "\u{85}",
    "\u{a0}",
    "\u{1680}",
    "\u{2000}",
    "\u{2003}",
    "\u{200a}",
    "\u{2028}",
    "\u{2029}",
    "\u{202f}",
    "\u{205f}",
    "\u{3000}",
    // not whitespace:
    "\u{200b}",
    "\u{180e}",
    "\u{feff}",
    "\u{1f}",
    "\u{1c}",
    "\u{0}",
    "\u{2060}",
    "\u{200c}",
];

fn random_line(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.1) {
        return String::new();
    }
    (0..rng.gen_range(0..14))
        .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
        .collect()
}

fn random_word(rng: &mut StdRng) -> String {
    let words = [
        "a", "the", "cat", "héllo", "日本", "🦀", "", "w1", "w2", "w3",
    ];
    words[rng.gen_range(0..words.len())].to_owned()
}

fn random_count(rng: &mut StdRng) -> i64 {
    match rng.gen_range(0..10) {
        0 => i64::MAX - rng.gen_range(0..3),
        1 => i64::MIN + rng.gen_range(0..3),
        2 => rng.gen(),
        _ => rng.gen_range(-5..100),
    }
}

/// A value that is usually an i64 and sometimes has the wrong width.
fn random_value(rng: &mut StdRng, bad_width: f64) -> Vec<u8> {
    if rng.gen_bool(bad_width) {
        (0..[0, 1, 4, 7, 9, 16][rng.gen_range(0..6)])
            .map(|_| rng.gen())
            .collect()
    } else {
        random_count(rng).to_le_bytes().to_vec()
    }
}

fn random_utf8_or_not(rng: &mut StdRng, text: String, invalid: f64) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    if rng.gen_bool(invalid) {
        let bad = INVALID_UTF8[rng.gen_range(0..INVALID_UTF8.len())];
        let at = rng.gen_range(0..=bytes.len());
        bytes.splice(at..at, bad.iter().copied());
    }
    bytes
}

/// Byte sequences that are not UTF-8, each a different case of the decoder.
const INVALID_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\x80",
    b"\xbf",
    b"\xc0\x80",
    b"\xc1\xbf",
    b"\xc2",
    b"\xc2A",
    b"\xe0\x80\x80",
    b"\xe0\x9f\xbf",
    b"\xe2\x82",
    b"\xe2\x82A",
    b"\xe2(\xa1",
    b"\xed\xa0\x80",
    b"\xef\xbf",
    b"\xf0\x8f\xbf\xbf",
    b"\xf0\x9f\x98",
    b"\xf0\x9f\x98A",
    b"\xf0\x9fA",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xfe",
];

fn random_map_body(rng: &mut StdRng, invalid: f64) -> Vec<u8> {
    let mut batch = RecordBatch::new();
    for _ in 0..rng.gen_range(0..12) {
        // keys are ignored by split, whatever they hold
        let key: Vec<u8> = if rng.gen_bool(0.3) {
            (0..rng.gen_range(0..6)).map(|_| rng.gen()).collect()
        } else {
            Vec::new()
        };
        let line = random_line(rng);
        let value = random_utf8_or_not(rng, line, invalid);
        batch.push(&key, &value);
    }
    batch.into_bytes()
}

fn random_reduce_body(rng: &mut StdRng, bad_width: f64) -> Vec<u8> {
    let mut groups = GroupsWriter::new();
    for _ in 0..rng.gen_range(0..8) {
        let key = random_word(rng);
        let values: Vec<Vec<u8>> = (0..rng.gen_range(1..6))
            .map(|_| random_value(rng, bad_width))
            .collect();
        groups.push(key.as_bytes(), values.iter().map(Vec::as_slice));
    }
    groups.into_bytes()
}

fn random_update_body(rng: &mut StdRng, bad: f64) -> Vec<u8> {
    let n = rng.gen_range(0..8);
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let word = random_word(rng);
            random_utf8_or_not(rng, word, bad)
        })
        .collect();
    let states: Vec<Option<Vec<u8>>> = (0..n)
        .map(|_| rng.gen_bool(0.5).then(|| random_value(rng, bad)))
        .collect();
    let values: Vec<Vec<Vec<u8>>> = (0..n)
        .map(|_| {
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, bad))
                .collect()
        })
        .collect();
    let entries: Vec<UpdateEntry<'_>> = (0..n)
        .map(|i| UpdateEntry {
            key: &keys[i],
            state: states[i].as_deref(),
            timed_out: rng.gen_bool(0.2),
            values: values[i].iter().map(Vec::as_slice).collect(),
        })
        .collect();
    write_update_entries(&entries)
}

// ---- tests ----------------------------------------------------------------

/// The three core functions are in every implementation (the Rust one
/// also has the window helpers `subtract` and `nonzero`).
#[test]
fn all_three_export_the_core_functions() {
    let names = |p: &Plugin| -> Vec<String> {
        p.functions()
            .iter()
            .map(|f| format!("{}:{}", f.kind, f.name))
            .collect()
    };
    let core = ["map:split", "reduce:sum", "update:running_count"];
    for (lang, plugin) in IMPLS.iter() {
        let have = names(plugin);
        for f in core {
            assert!(have.iter().any(|h| h == f), "{lang} lacks {f}: {have:?}");
        }
        if *lang != "rust" {
            assert_eq!(have, core, "{lang}");
        }
        assert_eq!(plugin.abi_version(), 1, "{lang}");
    }
}

/// Section 3 of docs/abi.md, byte for byte: the call input and the answer
/// of `map:split`, written out by hand.
#[test]
fn document_worked_example_bytes() {
    #[rustfmt::skip]
    let input: &[u8] = &[
        0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // batch time 1000
        0x01, 0x00, 0x00, 0x00,                         // partition 1
        0x02, 0x00, 0x00, 0x00,                         // 2 partitions
        0x01, 0x00, 0x00, 0x00,                         // record batch: 1 record
        0x00, 0x00, 0x00, 0x00,                         // key: 0 bytes
        0x03, 0x00, 0x00, 0x00, 0x61, 0x20, 0x62,       // value: 3 bytes "a b"
    ];
    #[rustfmt::skip]
    let answer: &[u8] = &[
        0x02, 0x00, 0x00, 0x00,                                                             // 2 records
        0x01, 0x00, 0x00, 0x00, 0x61, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // "a" -> 1
        0x01, 0x00, 0x00, 0x00, 0x62, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // "b" -> 1
    ];
    let inv = Invocation {
        header: CallHeader {
            batch_time_ms: 1000,
            partition: 1,
            num_partitions: 2,
        },
        ..Invocation::default()
    };
    // The host's header encoding is the document's.
    assert_eq!(inv.header.encode(), input[..16]);
    let body = &input[16..];
    check_all(SPLIT, &inv, body, &Ok(answer.to_vec()));
    assert_eq!(oracle_split(body), Ok(answer.to_vec()));

    // The document's failing call: status 1 and a message.
    #[rustfmt::skip]
    let overflow: &[u8] = &[
        0x01, 0x00, 0x00, 0x00,                         // 1 group
        0x01, 0x00, 0x00, 0x00, 0x61,                   // key "a"
        0x02, 0x00, 0x00, 0x00,                         // 2 values
        0x08, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, // i64::MAX
        0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 1
    ];
    let message = "count overflow adding 9223372036854775807 and 1";
    check_all(SUM, &inv, overflow, &Err(message.into()));

    // An update call by hand: "a" has state 10 and gets 1 and 2; "b" has
    // state 5 and nothing new; "c" has neither.
    #[rustfmt::skip]
    let update: &[u8] = &[
        0x03, 0x00, 0x00, 0x00,                                     // 3 entries
        0x01, 0x00, 0x00, 0x00, 0x61, 0x01,                         // "a", has state
        0x08, 0x00, 0x00, 0x00, 0x0a, 0, 0, 0, 0, 0, 0, 0,          //   state 10
        0x02, 0x00, 0x00, 0x00,                                     //   2 values
        0x08, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0,          //   1
        0x08, 0x00, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0,          //   2
        0x01, 0x00, 0x00, 0x00, 0x62, 0x03,                         // "b", has state, timed out
        0x08, 0x00, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0,          //   state 5
        0x00, 0x00, 0x00, 0x00,                                     //   no values
        0x01, 0x00, 0x00, 0x00, 0x63, 0x00,                         // "c", no state
        0x00, 0x00, 0x00, 0x00,                                     //   no values
    ];
    #[rustfmt::skip]
    let updated: &[u8] = &[
        0x03, 0x00, 0x00, 0x00,                                     // 3 results
        0x01, 0x08, 0x00, 0x00, 0x00, 0x0d, 0, 0, 0, 0, 0, 0, 0,    // "a": set 13
        0x01, 0x08, 0x00, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0,    // "b": keep 5
        0x00,                                                       // "c": remove
        0x01, 0x00, 0x00, 0x00,                                     // 1 record emitted
        0x01, 0x00, 0x00, 0x00, 0x61,                               // "a"
        0x08, 0x00, 0x00, 0x00, 0x0d, 0, 0, 0, 0, 0, 0, 0,          // 13
    ];
    check_all(RUNNING, &inv, update, &Ok(updated.to_vec()));
    assert_eq!(oracle_running_count(update), Ok(updated.to_vec()));
}

#[test]
fn split_matches_the_oracle_on_random_lines() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    for _ in 0..150 {
        let body = random_map_body(&mut rng, 0.0);
        let expected = oracle_split(&body);
        assert!(expected.is_ok());
        check_all(SPLIT, &header(&mut rng), &body, &expected);
    }
}

#[test]
fn split_edge_lines() {
    let inv = Invocation::default();
    let cases: &[&[&str]] = &[
        &[],
        &[""],
        &["", "", ""],
        &["   ", "\t\t", "\r\n", "\u{3000}\u{a0}"],
        &["one"],
        &["  leading", "trailing  ", "  both\t", "in  the\t\tmiddle"],
        &["\u{a0}nbsp\u{a0}split\u{2003}em\u{3000}ideographic"],
        &["zero\u{200b}width stays\u{feff}joined"],
        &["a\u{85}b\u{1680}c\u{2028}d\u{2029}e\u{202f}f\u{205f}g"],
    ];
    for lines in cases {
        let batch: RecordBatch = lines.iter().map(|l| (&b""[..], l.as_bytes())).collect();
        let expected = oracle_split(batch.as_bytes());
        check_all(SPLIT, &inv, batch.as_bytes(), &expected);
        // and through the typed API
        let words: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).collect();
        for (lang, plugin) in IMPLS.iter() {
            let out = plugin.map("split", &inv, &batch).unwrap();
            let got: Vec<(&[u8], &[u8])> = out.iter().collect();
            let want: Vec<(&[u8], &[u8])> = words
                .iter()
                .map(|w| (w.as_bytes(), &[1u8, 0, 0, 0, 0, 0, 0, 0][..]))
                .collect();
            assert_eq!(got, want, "{lang}: {lines:?}");
        }
    }
    // a long line, larger than one wasm page of output
    let long = "w ".repeat(40_000);
    let batch: RecordBatch = [(&b""[..], long.as_bytes())].into_iter().collect();
    let expected = oracle_split(batch.as_bytes());
    assert_eq!(expected.as_ref().unwrap().len(), 4 + 40_000 * 17);
    check_all(SPLIT, &inv, batch.as_bytes(), &expected);
}

#[test]
fn split_rejects_invalid_utf8_with_the_same_message() {
    let inv = Invocation::default();
    for (i, bad) in INVALID_UTF8.iter().enumerate() {
        let mut value = b"ok ".to_vec();
        value.extend_from_slice(bad);
        value.extend_from_slice(b" tail");
        let batch: RecordBatch = [(&b""[..], &b"fine line"[..]), (b"", &value)]
            .into_iter()
            .collect();
        let expected = oracle_split(batch.as_bytes());
        let message = expected.clone().unwrap_err();
        assert!(
            message.starts_with("record 1: value: cannot decode alloc::string::String: "),
            "case {i}: {message}"
        );
        check_all(SPLIT, &inv, batch.as_bytes(), &expected);
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    for _ in 0..100 {
        let body = random_map_body(&mut rng, 0.15);
        check_all(SPLIT, &header(&mut rng), &body, &oracle_split(&body));
    }
}

#[test]
fn sum_matches_the_oracle() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..200 {
        let body = random_reduce_body(&mut rng, 0.02);
        let expected = oracle_sum(&body);
        match &expected {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
        check_all(SUM, &header(&mut rng), &body, &expected);
    }
    // both paths were exercised
    assert!(ok > 20 && failed > 20, "ok {ok}, failed {failed}");
}

#[test]
fn sum_through_the_typed_api() {
    let mut groups = GroupsWriter::new();
    let v = |n: i64| n.to_le_bytes();
    let (a, b, c, d) = (v(2), v(-7), v(40), v(i64::MIN));
    groups.push(b"x", [&a[..], &b[..], &c[..]].into_iter());
    groups.push(b"y", [&d[..]].into_iter());
    for (lang, plugin) in IMPLS.iter() {
        let out = plugin
            .reduce("sum", &Invocation::default(), groups.clone())
            .unwrap();
        assert_eq!(out, vec![v(35).to_vec(), d.to_vec()], "{lang}");
    }
}

#[test]
fn sum_overflow_is_a_guest_error_with_a_message() {
    let cases: &[(i64, i64, &str)] = &[
        (
            i64::MAX,
            1,
            "count overflow adding 9223372036854775807 and 1",
        ),
        (
            i64::MIN,
            -1,
            "count overflow adding -9223372036854775808 and -1",
        ),
        (
            i64::MIN,
            i64::MIN,
            "count overflow adding -9223372036854775808 and -9223372036854775808",
        ),
    ];
    let inv = Invocation {
        job: Some("wc".into()),
        operator: Some("totals".into()),
        header: CallHeader {
            batch_time_ms: 77,
            partition: 2,
            num_partitions: 3,
        },
        ..Invocation::default()
    };
    for &(a, b, message) in cases {
        for (lang, plugin) in IMPLS.iter() {
            let mut groups = GroupsWriter::new();
            let (ab, bb) = (a.to_le_bytes(), b.to_le_bytes());
            groups.push(b"ok", [&bb[..]].into_iter());
            groups.push(b"boom", [&ab[..], &bb[..]].into_iter());
            let err = plugin.reduce("sum", &inv, groups).unwrap_err();
            match &err.kind {
                CallErrorKind::Guest { message: m } => assert_eq!(m, message, "{lang}"),
                other => panic!("{lang}: expected a guest error, got {other}"),
            }
            let shown = err.to_string();
            assert!(
                shown.contains(&format!("plugin `{}` function `reduce:sum`", plugin.name())),
                "{shown}"
            );
            assert!(
                shown.contains("job `wc`, operator `totals`, batch 77 ms, partition 2"),
                "{shown}"
            );
            assert!(shown.ends_with(&format!("failed: {message}")), "{shown}");
        }
    }
}

#[test]
fn sum_rejects_values_of_the_wrong_width() {
    let inv = Invocation::default();
    for width in [0usize, 1, 4, 7, 9, 16] {
        for position in 0..3 {
            let mut values: Vec<Vec<u8>> = vec![1i64.to_le_bytes().to_vec(); 3];
            values[position] = vec![0xab; width];
            let mut groups = GroupsWriter::new();
            groups.push(b"fine", [&5i64.to_le_bytes()[..]].into_iter());
            groups.push(b"bad", values.iter().map(Vec::as_slice));
            let body = groups.into_bytes();
            let expected = Err(format!(
                "group 1: value: cannot decode i64: expected 8 bytes, found {width}"
            ));
            assert_eq!(oracle_sum(&body), expected);
            check_all(SUM, &inv, &body, &expected);
        }
    }
}

#[test]
fn running_count_matches_the_oracle() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0004);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..250 {
        // the first 150 bodies are all well-typed
        let bad = if i < 150 { 0.0 } else { 0.05 };
        let body = random_update_body(&mut rng, bad);
        let expected = oracle_running_count(&body);
        match &expected {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
        check_all(RUNNING, &header(&mut rng), &body, &expected);
    }
    assert!(ok > 100 && failed > 10, "ok {ok}, failed {failed}");
}

#[test]
fn running_count_through_the_typed_api() {
    let (one, two, ten) = (1i64.to_le_bytes(), 2i64.to_le_bytes(), 10i64.to_le_bytes());
    let max = i64::MAX.to_le_bytes();
    let entries = [
        UpdateEntry {
            key: b"old",
            state: Some(&ten),
            timed_out: false,
            values: vec![&one, &two],
        },
        UpdateEntry {
            key: b"idle",
            state: Some(&ten),
            timed_out: true,
            values: vec![],
        },
        UpdateEntry {
            key: b"gone",
            state: None,
            timed_out: false,
            values: vec![],
        },
        UpdateEntry {
            key: "né".as_bytes(),
            state: None,
            timed_out: false,
            values: vec![&two],
        },
        UpdateEntry {
            key: b"wraps",
            state: Some(&max),
            timed_out: false,
            values: vec![&one],
        },
    ];
    for (lang, plugin) in IMPLS.iter() {
        let out = plugin
            .update("running_count", &Invocation::default(), &entries)
            .unwrap();
        assert_eq!(
            out.states,
            vec![
                Some(13i64.to_le_bytes().to_vec()),
                Some(ten.to_vec()),
                None,
                Some(two.to_vec()),
                Some(i64::MIN.to_le_bytes().to_vec()),
            ],
            "{lang}"
        );
        let emitted: Vec<(&[u8], i64)> = out
            .emitted
            .iter()
            .map(|(k, v)| (k, i64::from_le_bytes(v.try_into().unwrap())))
            .collect();
        assert_eq!(
            emitted,
            vec![
                (&b"old"[..], 13),
                ("né".as_bytes(), 2),
                (b"wraps", i64::MIN)
            ],
            "{lang}"
        );
    }
}

/// Bodies the host never sends — truncated, corrupted, padded — must still
/// be refused by all three with the same message (the weir-abi wording),
/// and nothing may trap or read outside the input.
#[test]
fn malformed_host_input_is_refused_alike() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0005);
    let kinds: [(FunctionKind, &str); 3] = [SPLIT, SUM, RUNNING];
    let mut refused = [0; 3];
    for round in 0..360 {
        let which = round % 3;
        let mut body = match which {
            0 => random_map_body(&mut rng, 0.02),
            1 => random_reduce_body(&mut rng, 0.02),
            _ => random_update_body(&mut rng, 0.02),
        };
        match rng.gen_range(0..5) {
            0 => body.truncate(rng.gen_range(0..=body.len())),
            1 if !body.is_empty() => {
                let at = rng.gen_range(0..body.len());
                body[at] = rng.gen();
            }
            2 => body.extend((0..rng.gen_range(1..4)).map(|_| rng.gen::<u8>())),
            3 if body.len() >= 4 => {
                // a huge or off-by-one count at the front
                let n = u32::from_le_bytes(body[..4].try_into().unwrap());
                let n = [n + 1, n.wrapping_sub(1), u32::MAX, 1 << 30][rng.gen_range(0..4)];
                body[..4].copy_from_slice(&n.to_le_bytes());
            }
            _ => {
                if body.len() > 8 {
                    let at = rng.gen_range(4..body.len() - 4);
                    body[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
                }
            }
        }
        let expected = match which {
            0 => oracle_split(&body),
            1 => oracle_sum(&body),
            _ => oracle_running_count(&body),
        };
        if expected
            .as_ref()
            .is_err_and(|m| m.contains("from host: malformed framing"))
        {
            refused[which] += 1;
        }
        check_all(kinds[which], &header(&mut rng), &body, &expected);
    }
    assert!(refused.iter().all(|&n| n > 20), "refused {refused:?}");

    // a reduce group without values is malformed, though GroupsWriter can
    // write one
    let mut groups = GroupsWriter::new();
    groups.push(b"empty", [].into_iter());
    let body = groups.into_bytes();
    let expected = Err(
        "bad reduce input from host: malformed framing at byte 13: expected a value count of at least 1"
            .to_owned(),
    );
    assert_eq!(oracle_sum(&body), expected);
    check_all(SUM, &Invocation::default(), &body, &expected);
    // update flags with unknown bits
    let body = [1, 0, 0, 0, 1, 0, 0, 0, b'k', 4, 0, 0, 0, 0];
    let expected = Err(
        "bad update input from host: malformed framing at byte 9: expected update flags with only bits 0 and 1"
            .to_owned(),
    );
    assert_eq!(oracle_running_count(&body), expected);
    check_all(RUNNING, &Invocation::default(), &body, &expected);
}
