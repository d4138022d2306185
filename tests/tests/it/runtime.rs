//! The Rust wordcount plugin through the real wasm runtime.

use weir::wasm::{Invocation, Runtime, RuntimeConfig};
use weir_abi::{CallHeader, GroupsWriter, RecordBatch};
use weir_tests::{guest, guests};

fn lines(ls: &[&str]) -> RecordBatch {
    ls.iter().map(|l| (&b""[..], l.as_bytes())).collect()
}

#[test]
fn rust_wordcount_split_and_sum() {
    let rt = Runtime::new(&RuntimeConfig::default()).unwrap();
    let plugin = rt.load_file(guest(guests::WORDCOUNT)).unwrap();
    let inv = Invocation {
        header: CallHeader {
            batch_time_ms: 5,
            partition: 0,
            num_partitions: 1,
        },
        ..Default::default()
    };
    let out = plugin.map("split", &inv, &lines(&["a b", "b"])).unwrap();
    let words: Vec<(&[u8], i64)> = out
        .iter()
        .map(|(k, v)| (k, i64::from_le_bytes(v.try_into().unwrap())))
        .collect();
    assert_eq!(words, vec![(&b"a"[..], 1), (b"b", 1), (b"b", 1)]);

    let mut groups = GroupsWriter::new();
    let (two, three) = (2i64.to_le_bytes(), 3i64.to_le_bytes());
    groups.push(b"x", [&two[..], &three[..]].into_iter());
    assert_eq!(
        plugin.reduce("sum", &inv, groups).unwrap(),
        vec![5i64.to_le_bytes().to_vec()]
    );
}
