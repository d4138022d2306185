//! {{name}}: a weir plugin (word count).
//!
//! - `map:split`: a line of text → `(word, 1)` for every whitespace-separated word.
//! - `reduce:sum`: adds two counts (an overflow fails the call).
//! - `update:running_count`: keeps each word's total across batches and emits
//!   `(word, total)` for the words seen in this batch.
//!
//! Build: `weir plugin build` (or `cargo build --release --target wasm32-unknown-unknown`).
//! Test natively: `cargo test`; against the host: `weir plugin test <the .wasm>`.

use weir_sdk::{map, reduce, update, State};

/// Splits a line into `(word, 1)` pairs. The line borrows the call's input
/// and the pairs are written to the output as the iterator yields them, so
/// nothing is allocated per word. (`line: String` returning a
/// `Vec<(String, i64)>` works too, and is slower.)
#[map]
pub fn split(line: &str) -> impl Iterator<Item = (&str, i64)> {
    line.split_whitespace().map(|w| (w, 1))
}

/// Adds two counts.
#[reduce]
pub fn sum(a: i64, b: i64) -> Result<i64, String> {
    a.checked_add(b)
        .ok_or_else(|| format!("count overflow adding {a} and {b}"))
}

/// Running total per word; emits the new total of every word seen this batch.
#[update]
pub fn running_count(
    word: String,
    counts: Vec<i64>,
    total: &mut State<i64>,
) -> Option<(String, i64)> {
    if counts.is_empty() {
        return None;
    }
    let new_total = total.get().copied().unwrap_or(0).wrapping_add(counts.iter().sum::<i64>());
    total.set(new_total);
    Some((word, new_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_whitespace() {
        assert_eq!(
            split(" to be\tor ").collect::<Vec<_>>(),
            vec![("to", 1), ("be", 1), ("or", 1)]
        );
        assert_eq!(split("").count(), 0);
    }

    #[test]
    fn sum_fails_on_overflow() {
        assert_eq!(sum(2, 3), Ok(5));
        assert!(sum(i64::MAX, 1).is_err());
    }

    #[test]
    fn running_count_keeps_totals() {
        let mut state = State::new(Some(10), false);
        assert_eq!(running_count("w".into(), vec![1, 2], &mut state), Some(("w".into(), 13)));
        assert_eq!(state.get(), Some(&13));
        assert_eq!(running_count("w".into(), vec![], &mut state), None);
        assert_eq!(state.get(), Some(&13));
    }
}
