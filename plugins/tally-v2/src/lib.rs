//! Tally, version 2: state is `(count, updates)` (bincode); emits
//! `(word, count × 10)` so its batches are recognisable. Migrates state
//! from version 1.

use weir_sdk::{map, migrate, update, Bincode, State};

weir_sdk::state_version!(2);

/// line → (word, 1).
#[map]
pub fn split(line: String) -> Vec<(String, i64)> {
    line.split_whitespace().map(|w| (w.to_owned(), 1)).collect()
}

/// Running count and number of batches that updated it.
#[update]
pub fn count(
    word: String,
    ones: Vec<i64>,
    state: &mut State<Bincode<(i64, i64)>>,
) -> Option<(String, i64)> {
    if ones.is_empty() {
        return None;
    }
    let (total, updates) = state.get().map_or((0, 0), |s| s.0);
    let total = total + ones.iter().sum::<i64>();
    state.set(Bincode((total, updates + 1)));
    Some((word, total * 10))
}

/// From version 1's count.
#[migrate]
pub fn from_v1(_word: String, old: i64) -> Option<Bincode<(i64, i64)>> {
    Some(Bincode((old, 0)))
}
