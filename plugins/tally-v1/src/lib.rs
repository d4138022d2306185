//! Tally, version 1: running count per word; state is the count (`i64`).
//! Emits `(word, count)`. Can take over state from version 2.

use weir_sdk::{map, migrate, update, Bincode, State};

weir_sdk::state_version!(1);

/// line → (word, 1).
#[map]
pub fn split(line: String) -> Vec<(String, i64)> {
    line.split_whitespace().map(|w| (w.to_owned(), 1)).collect()
}

/// Running count; emits `(word, count)` for words seen this batch.
#[update]
pub fn count(word: String, ones: Vec<i64>, state: &mut State<i64>) -> Option<(String, i64)> {
    if ones.is_empty() {
        return None;
    }
    let total = state.get().copied().unwrap_or(0) + ones.iter().sum::<i64>();
    state.set(total);
    Some((word, total))
}

/// From version 2's `(count, updates)` back to a count.
#[migrate]
pub fn from_v2(_word: String, old: Bincode<(i64, i64)>) -> Option<i64> {
    Some(old.0 .0)
}
