//! Comparing one stream's batch as the baseline and the candidate computed
//! it: records added, removed and changed, matched by key, with the first
//! few differences rendered as `print` shows records.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ops::{Partitions, ValueKind};
use crate::output::render_record;

/// How one stream's batch differs between the two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamDiff {
    /// The stream (operator) name.
    pub stream: String,
    /// Its operator (`reduce_by_key`, ...).
    pub op: String,
    /// Whether an output (sink) writes this stream.
    pub output: bool,
    /// Records only the candidate produced.
    pub added: u64,
    /// Records only the baseline produced.
    pub removed: u64,
    /// Keys whose value differs (a baseline record and a candidate record
    /// with the same key).
    pub changed: u64,
    /// The same records, in another order or other partitions (bytes
    /// written would differ).
    pub reordered: bool,
    /// The first few differences, in key order.
    pub samples: Vec<Sample>,
}

/// One differing record, rendered as `print` renders records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// `added`, `removed` or `changed`.
    pub change: Change,
    /// The baseline's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// The candidate's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
}

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only the candidate has it.
    Added,
    /// Only the baseline has it.
    Removed,
    /// Both have the key, with different values.
    Changed,
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (b, c) = (
            self.baseline.as_deref().unwrap_or(""),
            self.candidate.as_deref().unwrap_or(""),
        );
        match self.change {
            Change::Added => write!(f, "+ {c}"),
            Change::Removed => write!(f, "- {b}"),
            Change::Changed => write!(f, "~ {b} → {c}"),
        }
    }
}

impl StreamDiff {
    /// True when the stream's batch differs at all.
    pub fn differs(&self) -> bool {
        self.added + self.removed + self.changed > 0 || self.reordered
    }
}

/// Values of each key, baseline first, candidate second.
type ByKey<'a> = BTreeMap<&'a [u8], (Vec<&'a [u8]>, Vec<&'a [u8]>)>;

/// Compares a stream's batch; `None` when both runs produced the same
/// bytes in the same partitions. Keyed records are matched by key (a key
/// whose values differ is `changed`); unkeyed records (empty key) are
/// matched by value, so they are only `added` or `removed`.
pub(crate) fn compare(
    kind: ValueKind,
    baseline: &Partitions,
    candidate: &Partitions,
    max_samples: usize,
) -> Option<(u64, u64, u64, bool, Vec<Sample>)> {
    if baseline == candidate {
        return None;
    }
    let mut by_key: ByKey<'_> = BTreeMap::new();
    for (k, v) in baseline.iter().flat_map(|p| p.iter()) {
        by_key.entry(k).or_default().0.push(v);
    }
    for (k, v) in candidate.iter().flat_map(|p| p.iter()) {
        by_key.entry(k).or_default().1.push(v);
    }
    let (mut added, mut removed, mut changed) = (0u64, 0u64, 0u64);
    let mut samples = Vec::new();
    let render = |k: &[u8], v: &[u8]| {
        let mut s = String::new();
        render_record(kind, k, v, &mut s);
        s
    };
    for (key, (base, cand)) in &by_key {
        let (only_base, only_cand) = multiset_difference(base, cand);
        let pairs = if key.is_empty() {
            0
        } else {
            only_base.len().min(only_cand.len())
        };
        changed += pairs as u64;
        removed += (only_base.len() - pairs) as u64;
        added += (only_cand.len() - pairs) as u64;
        let mut push = |change, b: Option<&[u8]>, c: Option<&[u8]>| {
            if samples.len() < max_samples {
                samples.push(Sample {
                    change,
                    baseline: b.map(|v| render(key, v)),
                    candidate: c.map(|v| render(key, v)),
                });
            }
        };
        for (b, c) in only_base.iter().zip(&only_cand).take(pairs) {
            push(Change::Changed, Some(b), Some(c));
        }
        for b in &only_base[pairs..] {
            push(Change::Removed, Some(b), None);
        }
        for c in &only_cand[pairs..] {
            push(Change::Added, None, Some(c));
        }
    }
    let reordered = added + removed + changed == 0;
    Some((added, removed, changed, reordered, samples))
}

/// The values only in `a` and only in `b`, as multisets, each in its
/// original order.
fn multiset_difference<'a>(a: &[&'a [u8]], b: &[&'a [u8]]) -> (Vec<&'a [u8]>, Vec<&'a [u8]>) {
    if a == b {
        return (Vec::new(), Vec::new());
    }
    let mut unmatched: BTreeMap<&[u8], usize> = BTreeMap::new();
    for v in b {
        *unmatched.entry(v).or_default() += 1;
    }
    let mut only_a = Vec::new();
    for v in a {
        match unmatched.get_mut(v) {
            Some(n) if *n > 0 => *n -= 1,
            _ => only_a.push(*v),
        }
    }
    let mut only_b = Vec::new();
    for v in b.iter().rev() {
        match unmatched.get_mut(v) {
            Some(n) if *n > 0 => {
                *n -= 1;
                only_b.push(*v);
            }
            _ => {}
        }
    }
    only_b.reverse();
    (only_a, only_b)
}

#[cfg(test)]
mod tests {
    use weir_abi::RecordBatch;

    use super::*;

    fn parts(records: &[(&str, i64)]) -> Partitions {
        let batch: RecordBatch = records
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_le_bytes().to_vec()))
            .collect::<Vec<_>>()
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        vec![batch]
    }

    #[test]
    fn keyed_records_are_matched_by_key() {
        let base = parts(&[("a", 1), ("b", 2), ("c", 3)]);
        let cand = parts(&[("a", 1), ("b", 20), ("d", 4)]);
        let (added, removed, changed, reordered, samples) =
            compare(ValueKind::Count, &base, &cand, 10).unwrap();
        assert_eq!((added, removed, changed, reordered), (1, 1, 1, false));
        let shown: Vec<String> = samples.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["~ (b,2) → (b,20)", "- (c,3)", "+ (d,4)"]);
        assert!(compare(ValueKind::Count, &base, &base, 10).is_none());
    }

    #[test]
    fn the_same_records_elsewhere_are_reordered() {
        let base = parts(&[("a", 1), ("b", 2)]);
        let cand = parts(&[("b", 2), ("a", 1)]);
        let (added, removed, changed, reordered, samples) =
            compare(ValueKind::Count, &base, &cand, 10).unwrap();
        assert_eq!((added, removed, changed, reordered), (0, 0, 0, true));
        assert!(samples.is_empty());
    }

    #[test]
    fn unkeyed_records_are_added_or_removed() {
        let base = parts(&[("", 1), ("", 2)]);
        let cand = parts(&[("", 2), ("", 3), ("", 3)]);
        let (added, removed, changed, _, samples) =
            compare(ValueKind::Count, &base, &cand, 2).unwrap();
        assert_eq!((added, removed, changed), (2, 1, 0));
        assert_eq!(samples.len(), 2, "capped");
    }
}
