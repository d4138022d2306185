//! Checks for a function the suite has no reference for: whatever it
//! computes, it must answer an empty input and odd bytes cleanly (output
//! framed for its kind, or a guest error — never a trap), and give the same
//! bytes for the same input.

use weir_abi::{write_update_entries, FunctionKind, GroupsWriter, RecordBatch, UpdateEntry};

use super::wordcount::HEADER;
use super::{suite_limits, Case, Expect};

/// Generic cases for `kind:function`.
pub fn cases(kind: FunctionKind, function: &str) -> Vec<Case> {
    let bodies = match kind {
        FunctionKind::Map | FunctionKind::Migrate => map_bodies(),
        FunctionKind::Reduce => reduce_bodies(),
        FunctionKind::Update => update_bodies(),
    };
    bodies
        .into_iter()
        .map(|(name, body, expect)| Case {
            name: name.to_owned(),
            kind,
            function: function.to_owned(),
            header: HEADER,
            limits: suite_limits(),
            body,
            expect,
        })
        .collect()
}

type Body = (&'static str, Vec<u8>, Expect);

const ODD: &str = "empty key and non-UTF-8 bytes do not trap";
const SAME: &str = "two identical calls give identical bytes";

fn map_bodies() -> Vec<Body> {
    let odd: RecordBatch = [
        (&b""[..], &b"\xff\xfe\x00"[..]),
        (b"", b""),
        (b"\xc3", b"text"),
        (b"k", &7i64.to_le_bytes()),
    ]
    .into_iter()
    .collect();
    let text: RecordBatch = [
        (&b""[..], &b"to be or not to be"[..]),
        (b"word", &3i64.to_le_bytes()),
        (b"", "héllo 日本語".as_bytes()),
    ]
    .into_iter()
    .collect();
    vec![
        (
            "empty batch succeeds or fails cleanly",
            RecordBatch::new().into_bytes(),
            Expect::Clean,
        ),
        (ODD, odd.into_bytes(), Expect::Clean),
        (SAME, text.into_bytes(), Expect::Deterministic),
    ]
}

fn reduce_bodies() -> Vec<Body> {
    let (one, two) = (1i64.to_le_bytes(), 2i64.to_le_bytes());
    let mut odd = GroupsWriter::new();
    odd.push(b"", [&b"\xff\xfe"[..], b""].into_iter());
    odd.push(b"\xc3", [&b"text"[..]].into_iter());
    let mut counts = GroupsWriter::new();
    counts.push(b"a", [&one[..], &two[..]].into_iter());
    counts.push(b"b", [&two[..]].into_iter());
    vec![
        (
            "no groups succeed or fail cleanly",
            GroupsWriter::new().into_bytes(),
            Expect::Clean,
        ),
        (ODD, odd.into_bytes(), Expect::Clean),
        (SAME, counts.into_bytes(), Expect::Deterministic),
    ]
}

fn update_bodies() -> Vec<Body> {
    let (one, two) = (1i64.to_le_bytes(), 2i64.to_le_bytes());
    let entry = |key, state, values| UpdateEntry {
        key,
        state,
        timed_out: false,
        values,
    };
    let odd = [
        entry(&b""[..], None, vec![&b"\xff\xfe"[..]]),
        entry(b"\xc3", Some(&b""[..]), vec![]),
    ];
    let counts = [
        entry(&b"a"[..], Some(&two[..]), vec![&one[..]]),
        entry(b"b", None, vec![&two[..], &one[..]]),
        entry(b"c", Some(&one[..]), vec![]),
    ];
    vec![
        (
            "no entries succeed or fail cleanly",
            write_update_entries(&[]),
            Expect::Clean,
        ),
        (ODD, write_update_entries(&odd), Expect::Clean),
        (SAME, write_update_entries(&counts), Expect::Deterministic),
    ]
}
