//! The word-count functions' corpus and their native reference
//! implementations, written from `docs/abi.md` and the semantics of
//! `plugins/wordcount` (the Rust SDK's):
//!
//! - `map:split`: every record's value must be UTF-8 (else the call fails);
//!   it is split on Unicode White_Space (Rust's `str::split_whitespace`)
//!   into `(word, i64 1)` records; keys are ignored.
//! - `reduce:sum`: every value must be 8 bytes (an `i64`); a group's values
//!   are added left to right, and an overflow fails the call.
//! - `update:running_count`: keys must be UTF-8, values and states 8 bytes.
//!   An entry without new values keeps its state (action 1 with the same
//!   bytes) or, without state, removes it (action 0) and emits nothing; an
//!   entry with values sets `state + sum(values)` (wrapping, as the SDK's
//!   release build does) and emits `(key, total)`.

use weir_abi::{
    put_bytes, put_u32, read_groups, read_update_entries, write_update_entries, CallHeader,
    FunctionKind, GroupsWriter, RecordBatch, UpdateEntry, ACTION_REMOVE, ACTION_SET,
};

use super::{suite_limits, Case, Expect};

fn i64_of(bytes: &[u8]) -> Option<i64> {
    bytes.try_into().ok().map(i64::from_le_bytes)
}

/// Reference `map:split` on a body; `None` when the call must fail.
pub fn split(body: &[u8]) -> Option<Vec<u8>> {
    let batch = RecordBatch::from_slice(body).ok()?;
    let mut out = RecordBatch::new();
    for (_, value) in batch.iter() {
        for word in std::str::from_utf8(value).ok()?.split_whitespace() {
            out.push(word.as_bytes(), &1i64.to_le_bytes());
        }
    }
    Some(out.into_bytes())
}

/// Reference `reduce:sum` on a body; `None` when the call must fail.
pub fn sum(body: &[u8]) -> Option<Vec<u8>> {
    let groups = read_groups(body).ok()?;
    let mut out = Vec::new();
    put_u32(&mut out, groups.len() as u32);
    for g in &groups {
        let mut values = g.values.iter().map(|v| i64_of(v));
        let first = values.next()??;
        let total = values.try_fold(first, |acc, v| acc.checked_add(v?))?;
        put_bytes(&mut out, &total.to_le_bytes());
    }
    Some(out)
}

/// Reference `update:running_count` on a body; `None` when the call must
/// fail.
pub fn running_count(body: &[u8]) -> Option<Vec<u8>> {
    let entries = read_update_entries(body).ok()?;
    let mut out = Vec::new();
    put_u32(&mut out, entries.len() as u32);
    let mut emitted = RecordBatch::new();
    for e in &entries {
        std::str::from_utf8(e.key).ok()?;
        let values = e
            .values
            .iter()
            .map(|v| i64_of(v))
            .collect::<Option<Vec<_>>>()?;
        let state = match e.state {
            Some(s) => Some(i64_of(s)?),
            None => None,
        };
        match (values.is_empty(), state) {
            (true, None) => out.push(ACTION_REMOVE),
            (true, Some(s)) => {
                out.push(ACTION_SET);
                put_bytes(&mut out, &s.to_le_bytes());
            }
            (false, _) => {
                let total = values
                    .iter()
                    .fold(state.unwrap_or(0), |a, &b| a.wrapping_add(b));
                out.push(ACTION_SET);
                put_bytes(&mut out, &total.to_le_bytes());
                emitted.push(e.key, &total.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(emitted.as_bytes());
    Some(out)
}

/// The corpus of a word-count function, or `None` for any other function.
pub fn cases(kind: FunctionKind, function: &str) -> Option<Vec<Case>> {
    match (kind, function) {
        (FunctionKind::Map, "split") => Some(split_cases()),
        (FunctionKind::Reduce, "sum") => Some(sum_cases()),
        (FunctionKind::Update, "running_count") => Some(running_count_cases()),
        _ => None,
    }
}

/// The header every case uses: partition 1 of 2 at 1000 ms, as in the
/// worked example of `docs/abi.md`.
pub(crate) const HEADER: CallHeader = CallHeader {
    batch_time_ms: 1000,
    partition: 1,
    num_partitions: 2,
};

fn case(
    name: &str,
    kind: FunctionKind,
    function: &str,
    body: Vec<u8>,
    reference: fn(&[u8]) -> Option<Vec<u8>>,
) -> Case {
    let expect = reference(&body).map_or(Expect::GuestError, Expect::Output);
    Case {
        name: name.to_owned(),
        kind,
        function: function.to_owned(),
        header: HEADER,
        limits: suite_limits(),
        body,
        expect,
    }
}

fn lines(lines: &[&[u8]]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| (&b""[..], *l))
        .collect::<RecordBatch>()
        .into_bytes()
}

fn split_cases() -> Vec<Case> {
    let c = |name: &str, body: Vec<u8>| case(name, FunctionKind::Map, "split", body, split);
    let many: Vec<String> = (0..200)
        .map(|i| (0..50).map(|j| format!("w{} ", (i * 7 + j) % 97)).collect())
        .collect();
    let many: Vec<&[u8]> = many.iter().map(|l| l.as_bytes()).collect();
    let keyed: RecordBatch = [(&b"key"[..], &b"a b"[..]), (b"", b"c"), (b"\xff", b"d e")]
        .into_iter()
        .collect();
    let mut cases = vec![
        c("empty batch", lines(&[])),
        c("empty line", lines(&[b""])),
        c(
            "whitespace-only lines",
            lines(&[b"   ", b"\t\t", b"\r\n", b"\x0b\x0c"]),
        ),
        c(
            "keys are ignored (empty, text, non-UTF-8)",
            keyed.into_bytes(),
        ),
        c(
            "ASCII words and spaces",
            lines(&[b"to be or not to be", b"  the cat  sat "]),
        ),
        c(
            "tabs and newlines separate words",
            lines(&[b"a\tb\nc\r\nd\x0be\x0cf"]),
        ),
        c(
            "Unicode whitespace separates words",
            lines(&[
                "a\u{3000}b\u{85}c\u{a0}d\u{2003}e\u{1680}f\u{2028}g\u{2029}h\u{202f}i\u{205f}j"
                    .as_bytes(),
            ]),
        ),
        c(
            "look-alikes of whitespace do not separate",
            lines(&["zero\u{200b}width\u{feff}bom\u{180e}mvs\u{2060}wj".as_bytes()]),
        ),
        c("non-ASCII words", lines(&["héllo 日本語 🦀".as_bytes()])),
        c(
            "invalid UTF-8 must fail",
            lines(&[b"fine", b"ok \xff\xfe tail"]),
        ),
        c("truncated UTF-8 sequence must fail", lines(&[b"caf\xc3"])),
        c("many words", lines(&many)),
    ];
    cases.extend(output_limit_cases());
    cases
}

/// A batch whose output is exactly `len` bytes passes under a limit of
/// `len` and fails under `len - 1`, with the output-limit error.
fn output_limit_cases() -> Vec<Case> {
    let text = "word ".repeat(4000);
    let body = lines(&[text.as_bytes(), b"tail"]);
    let out = split(&body).expect("valid input");
    let mut at = case(
        "large batch, output exactly at the limit",
        FunctionKind::Map,
        "split",
        body,
        split,
    );
    at.limits.output_bytes = out.len();
    let mut over = at.clone();
    over.name = "large batch, output one byte over the limit must fail".into();
    over.limits.output_bytes = out.len() - 1;
    over.expect = Expect::OutputTooLarge;
    vec![at, over]
}

fn groups(groups: &[(&[u8], &[&[u8]])]) -> Vec<u8> {
    let mut w = GroupsWriter::new();
    for (key, values) in groups {
        w.push(key, values.iter().copied());
    }
    w.into_bytes()
}

fn sum_cases() -> Vec<Case> {
    let c = |name: &str, body: Vec<u8>| case(name, FunctionKind::Reduce, "sum", body, sum);
    let (one, two, minus) = (
        1i64.to_le_bytes(),
        2i64.to_le_bytes(),
        (-5i64).to_le_bytes(),
    );
    let (max, min) = (i64::MAX.to_le_bytes(), i64::MIN.to_le_bytes());
    let many: Vec<(Vec<u8>, Vec<[u8; 8]>)> = (0..1000i64)
        .map(|i| {
            let values = (0..=(i % 5))
                .map(|j| (i * 1000 + j).to_le_bytes())
                .collect();
            (format!("k{i}").into_bytes(), values)
        })
        .collect();
    let many: Vec<(&[u8], Vec<&[u8]>)> = many
        .iter()
        .map(|(k, vs)| (&k[..], vs.iter().map(|v| &v[..]).collect()))
        .collect();
    let many: Vec<(&[u8], &[&[u8]])> = many.iter().map(|(k, vs)| (*k, &vs[..])).collect();
    vec![
        c("no groups", groups(&[])),
        c("one group, one value", groups(&[(b"w", &[&two])])),
        c(
            "empty and non-UTF-8 keys",
            groups(&[(b"", &[&one, &two]), (b"\xff\xfe", &[&two, &two])]),
        ),
        c(
            "negative values",
            groups(&[(b"w", &[&minus, &one, &minus])]),
        ),
        c(
            "extremes that do not overflow",
            groups(&[(b"w", &[&max, &min, &max])]),
        ),
        c("many groups", groups(&many)),
        c(
            "overflow must fail",
            groups(&[(b"ok", &[&one]), (b"w", &[&max, &one])]),
        ),
        c("underflow must fail", groups(&[(b"w", &[&min, &minus])])),
        c(
            "a 4-byte value must fail",
            groups(&[(b"w", &[&one, &[1, 0, 0, 0]])]),
        ),
        c(
            "a 9-byte value must fail",
            groups(&[(b"w", &[&[1, 0, 0, 0, 0, 0, 0, 0, 0][..]])]),
        ),
        c("an empty value must fail", groups(&[(b"w", &[&one, &[]])])),
    ]
}

fn entry<'a>(key: &'a [u8], state: Option<&'a [u8]>, values: Vec<&'a [u8]>) -> UpdateEntry<'a> {
    UpdateEntry {
        key,
        state,
        timed_out: false,
        values,
    }
}

fn running_count_cases() -> Vec<Case> {
    let c = |name: &str, entries: &[UpdateEntry<'_>]| {
        case(
            name,
            FunctionKind::Update,
            "running_count",
            write_update_entries(entries),
            running_count,
        )
    };
    let (one, two, ten) = (1i64.to_le_bytes(), 2i64.to_le_bytes(), 10i64.to_le_bytes());
    let mut timed_out = entry(b"idle", Some(&ten), vec![]);
    timed_out.timed_out = true;
    let keys: Vec<String> = (0..500).map(|i| format!("key{i}")).collect();
    let mixed: Vec<UpdateEntry<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| match i % 4 {
            0 => entry(k.as_bytes(), None, vec![&one]),
            1 => entry(k.as_bytes(), Some(&ten), vec![&one, &two]),
            2 => entry(k.as_bytes(), Some(&ten), vec![]),
            _ => entry(k.as_bytes(), None, vec![]),
        })
        .collect();
    vec![
        c("no entries", &[]),
        c(
            "new key with values",
            &[entry(b"new", None, vec![&one, &two])],
        ),
        c("state and values", &[entry(b"old", Some(&ten), vec![&one])]),
        c(
            "state, no values: keeps the state",
            &[entry(b"idle", Some(&ten), vec![])],
        ),
        c(
            "no state, no values: removes",
            &[entry(b"gone", None, vec![])],
        ),
        c("timed out: keeps the state", &[timed_out]),
        c("empty key", &[entry(b"", None, vec![&one])]),
        c(
            "Unicode key",
            &[entry("日本語".as_bytes(), Some(&two), vec![&two])],
        ),
        c("many entries, mixed", &mixed),
        c(
            "non-UTF-8 key must fail",
            &[entry(b"\xff", None, vec![&one])],
        ),
        c(
            "a 4-byte value must fail",
            &[entry(b"w", None, vec![&[1, 0, 0, 0]])],
        ),
        c(
            "a 4-byte state must fail",
            &[entry(b"w", Some(&[1, 0, 0, 0]), vec![&one])],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_match_the_document() {
        // docs/abi.md's worked example: "a b" → (a,1), (b,1).
        let out = split(&lines(&[b"a b"])).unwrap();
        let one = [8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        let want = [
            &[2u8, 0, 0, 0, 1, 0, 0, 0, b'a'][..],
            &one,
            &[1, 0, 0, 0, b'b'],
            &one,
        ]
        .concat();
        assert_eq!(out, want);
        assert_eq!(split(&lines(&[b"\xff"])), None);
        let max = i64::MAX.to_le_bytes();
        assert_eq!(sum(&groups(&[(b"w", &[&max, &1i64.to_le_bytes()])])), None);
    }

    #[test]
    fn every_function_has_passing_and_failing_cases() {
        for (kind, f) in [
            (FunctionKind::Map, "split"),
            (FunctionKind::Reduce, "sum"),
            (FunctionKind::Update, "running_count"),
        ] {
            let cases = cases(kind, f).unwrap();
            assert!(cases.iter().any(|c| matches!(c.expect, Expect::Output(_))));
            assert!(cases.iter().any(|c| c.expect == Expect::GuestError));
            let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), cases.len(), "case names are unique");
        }
    }
}
