//! Word count, the "hello world" of stream processing, as a weir plugin.
//!
//! - `map:split`: a line of text → `(word, 1)` for every whitespace-separated
//!   word (keys are UTF-8 words, values weir's canonical `i64` count).
//! - `reduce:sum`: adds two `i64` counts.
//! - `update:running_count`: keeps each word's total across batches
//!   (`update_state_by_key`) and emits `(word, total)` for words seen this
//!   batch.
//!
//! Build: `cargo build -p wordcount --release --target wasm32-unknown-unknown`.

use weir_sdk::{map, reduce, update, State, Values};

/// Splits a line into `(word, 1)` pairs.
///
/// The line borrows the call's input (the SDK checks it is UTF-8) and the
/// words are written straight into the output as the iterator yields them:
/// nothing is allocated per line or per word.
#[map]
pub fn split(line: &str) -> impl Iterator<Item = (&str, i64)> {
    line.split_whitespace().map(|w| (w, 1))
}

/// Adds two counts. Declared checked `i64` addition, which it is: the
/// host adds the counts itself and never calls it.
#[reduce(native = "checked_add_i64")]
pub fn sum(a: i64, b: i64) -> Result<i64, String> {
    a.checked_add(b)
        .ok_or_else(|| format!("count overflow adding {a} and {b}"))
}

/// Running total per word; emits the new total of every word that changed.
#[update]
pub fn running_count<'a>(
    word: &'a str,
    counts: Values<'a, i64>,
    total: &mut State<i64>,
) -> Option<(&'a str, i64)> {
    if counts.is_empty() {
        return None;
    }
    let new_total = total.get().copied().unwrap_or(0) + counts.sum::<i64>();
    total.set(new_total);
    Some((word, new_total))
}

/// The hashtags of a line, as unkeyed values (`count_by_value` counts them).
#[map]
pub fn hashtags(line: &str) -> impl Iterator<Item = ((), &str)> {
    line.split_whitespace()
        .filter(|w| w.len() > 1 && w.starts_with('#'))
        .map(|w| ((), w))
}

/// Inverse of [`sum`], for windows with an inverse function.
#[reduce]
pub fn subtract(a: i64, b: i64) -> Result<i64, String> {
    a.checked_sub(b)
        .ok_or_else(|| format!("count overflow subtracting {b} from {a}"))
}

/// Keeps words whose count is not zero (the filter of an incremental window).
#[map]
pub fn nonzero(word: &str, count: i64) -> Option<(&str, i64)> {
    (count != 0).then_some((word, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::abi::{CallHeader, GroupsWriter, RecordBatch, UpdateEntry, UpdateOutput};

    #[test]
    fn split_words() {
        assert_eq!(
            split("  the cat  the\tend ").collect::<Vec<_>>(),
            vec![("the", 1), ("cat", 1), ("the", 1), ("end", 1)]
        );
        assert_eq!(split("").count(), 0);
        assert_eq!(split(" \u{3000}\u{a0} ").count(), 0);
    }

    #[test]
    fn sum_overflow_is_an_error() {
        assert_eq!(sum(2, 3), Ok(5));
        assert!(sum(i64::MAX, 1).is_err());
    }

    /// The bytes the SDK produces equal the document's framing built by hand.
    #[test]
    fn split_through_the_abi_bytes() {
        let mut input = CallHeader {
            batch_time_ms: 1000,
            partition: 0,
            num_partitions: 1,
        }
        .encode()
        .to_vec();
        input.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, b'a', b' ', b'b']);
        let out = weir_sdk::invoke::map_values(&input, split).unwrap();
        let expected: Vec<u8> = [
            &[2u8, 0, 0, 0][..],
            &[1, 0, 0, 0, b'a', 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0, b'b', 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn sum_and_update_through_the_abi() {
        let mut input = CallHeader::default().encode().to_vec();
        let mut groups = GroupsWriter::new();
        let (one, two) = (1i64.to_le_bytes(), 2i64.to_le_bytes());
        groups.push(b"w", [&one[..], &two[..], &two[..]].into_iter());
        input.extend_from_slice(&groups.into_bytes());
        let out = weir_sdk::invoke::reduce(&input, sum).unwrap();
        assert_eq!(
            weir_sdk::abi::read_reduced(&out, 1).unwrap(),
            vec![&5i64.to_le_bytes()[..]]
        );

        let mut input = CallHeader::default().encode().to_vec();
        let ten = 10i64.to_le_bytes();
        let entries = [
            UpdateEntry {
                key: b"old",
                state: Some(&ten),
                timed_out: false,
                values: vec![&one],
            },
            UpdateEntry {
                key: b"idle",
                state: Some(&ten),
                timed_out: false,
                values: vec![],
            },
            UpdateEntry {
                key: b"new",
                state: None,
                timed_out: false,
                values: vec![&two],
            },
        ];
        input.extend_from_slice(&weir_sdk::abi::write_update_entries(&entries));
        let out =
            UpdateOutput::decode(&weir_sdk::invoke::update(&input, running_count).unwrap(), 3)
                .unwrap();
        assert_eq!(
            out.states,
            vec![
                Some(11i64.to_le_bytes().to_vec()),
                Some(ten.to_vec()),
                Some(2i64.to_le_bytes().to_vec())
            ]
        );
        let emitted: RecordBatch = [
            (&b"old"[..], &11i64.to_le_bytes()[..]),
            (b"new", &2i64.to_le_bytes()),
        ]
        .into_iter()
        .collect();
        assert_eq!(out.emitted, emitted);
    }
}
