//! A map-kind operator fused into the map-side combine of the
//! `reduce_by_key` that is its only reader: the map's output is never
//! materialised.
//!
//! Each input partition goes to the map function in runs of at most
//! [`RUN_BYTES`] framed bytes. The output of a run is read where it lies in
//! guest memory and folded at once into the partition's combined values:
//! every key of the run that now has more than one value (the one combined
//! so far, then the run's in arrival order) goes through one reduce call
//! per run. So a partition's memory is its distinct keys and one run, not
//! everything the map emits (word count: ten records per line).
//!
//! Keys keep first-appearance order and values arrival order, as in the
//! unfused operators; only the grouping of values into reduce calls
//! differs, which a reduce function, being associative, does not see. Runs
//! are cut by the input's bytes alone, so a replay makes the same calls.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use weir_abi::{canonical, GroupsBody, RecordBatch, RecordIter};

use super::combine::{combine_partition, count_of};
use super::map::{check_output, MapOp};
use super::{shuffle, Combiner, KeyBytes, OpContext, Partitions};
use crate::error::EngineError;

/// Framed input bytes per map call of a fused partition (a record larger
/// than this is a run alone).
pub(crate) const RUN_BYTES: usize = 1 << 20;

/// The fused map, as its reader runs it.
pub(crate) struct Upstream<'a> {
    /// The map operator.
    pub map: &'a MapOp,
    /// Its context: its calls are metered and its errors named as its own.
    pub cx: &'a OpContext<'a>,
    /// Records the map produced (its output, never materialised).
    pub mapped: AtomicU64,
}

/// `reduce_by_key` (combine `combiner`, `partitions` output partitions) over
/// the output of `up` on `input`.
pub(crate) fn apply(
    ctx: &OpContext<'_>,
    up: &Upstream<'_>,
    combiner: &Combiner,
    input: &[RecordBatch],
    partitions: usize,
) -> Result<Partitions, EngineError> {
    let n = input.len();
    let combined = ctx.par_map_batches(input, |p, batch| {
        let mut acc = Combined::default();
        for (run, (records, bytes)) in batch.runs(RUN_BYTES).enumerate() {
            let mut inv = up.cx.invocation(p, n);
            inv.sequence = u32::try_from(run).unwrap_or(u32::MAX);
            let func = &up.map.func;
            func.plugin
                .map_run(&func.function, &inv, records, bytes, |out| {
                    check_output(up.cx, up.map.flavor, func, out.len(), records, p)?;
                    acc.absorb(ctx, combiner, out, p, n, inv.sequence)
                })??;
        }
        Ok((acc.into_batch(), acc.mapped))
    })?;
    let mapped: u64 = combined.iter().map(|(_, m)| m).sum();
    up.mapped.fetch_add(mapped, Ordering::Relaxed);
    let combined: Partitions = combined.into_iter().map(|(b, _)| b).collect();
    let shuffled = shuffle(ctx, &combined, partitions)?;
    ctx.par_map_batches(&shuffled, |p, batch| {
        combine_partition(ctx, combiner, batch, p, partitions)
    })
}

/// One partition's keys, first appearance first, each with its values
/// combined so far.
#[derive(Default)]
struct Combined {
    keys: KeyTable,
    values: Vec<Option<Vec<u8>>>,
    /// Per key, its sum so far (a declared checked `i64` addition only;
    /// see [`Combined::add`]).
    sums: Vec<i64>,
    /// Records the map emitted.
    mapped: u64,
    // Per run, reused: each record's key number; per key, the run's
    // record count, value bytes and place in the reduce call (or
    // `SINGLE`); the keys the run touched, in order.
    ids: Vec<u32>,
    counts: Vec<u32>,
    bytes: Vec<usize>,
    slots: Vec<u32>,
    touched: Vec<u32>,
}

const SINGLE: u32 = u32::MAX;

impl Combined {
    /// Folds one run's map output into the combined values.
    fn absorb(
        &mut self,
        ctx: &OpContext<'_>,
        combiner: &Combiner,
        records: RecordIter<'_>,
        p: usize,
        n: usize,
        sequence: u32,
    ) -> Result<(), EngineError> {
        self.mapped += records.len() as u64;
        if let Combiner::CheckedAddI64(func) = combiner {
            return self.add(ctx, func, records);
        }
        self.index(records.clone());
        let result = match combiner {
            Combiner::Plugin(func) => {
                // Keys with one value in all keep it; the others go to the
                // reduce call, the value combined so far first.
                let mut multi: Vec<u32> = Vec::new();
                let mut singles = 0;
                for &g in &self.touched {
                    let g = g as usize;
                    if self.counts[g] as usize + usize::from(self.values[g].is_some()) > 1 {
                        self.slots[g] = multi.len() as u32;
                        multi.push(g as u32);
                    } else {
                        singles += 1;
                    }
                }
                if singles > 0 {
                    for (&id, (_, v)) in self.ids.iter().zip(records.clone()) {
                        if self.slots[id as usize] == SINGLE {
                            self.values[id as usize] = Some(v.to_vec());
                        }
                    }
                }
                if multi.is_empty() {
                    Ok(())
                } else {
                    self.reduce(ctx, func, &multi, records, p, n, sequence)
                }
            }
            Combiner::CheckedAddI64(_) => unreachable!("combined by `add`"),
            Combiner::SumI64 | Combiner::SubI64 => {
                let sub = matches!(combiner, Combiner::SubI64);
                self.ids.iter().zip(records).try_for_each(|(&id, (_, v))| {
                    let x = count_of(ctx, v)?;
                    // A key's value so far is a count this loop wrote: its
                    // 8 bytes are updated in place.
                    match &mut self.values[id as usize] {
                        Some(acc) => {
                            let old = canonical::decode_count(acc).unwrap_or_default();
                            let new = if sub {
                                old.wrapping_sub(x)
                            } else {
                                old.wrapping_add(x)
                            };
                            acc.copy_from_slice(&canonical::encode_count(new));
                        }
                        slot => *slot = Some(canonical::encode_count(x).to_vec()),
                    }
                    Ok(())
                })
            }
        };
        for &g in &self.touched {
            self.counts[g as usize] = 0;
            self.bytes[g as usize] = 0;
            self.slots[g as usize] = SINGLE;
        }
        result
    }

    /// Folds a run into the sums of a reduce function declared checked
    /// `i64` addition, in one pass: a key's sum so far is in `sums` (its
    /// values so far were 8 bytes each: a first value's bytes are its
    /// encoded sum), or its one value in `values` when that is not 8 bytes
    /// (kept as it came, as the function keeps a key's single value; a
    /// second value then fails, as the function would).
    fn add(
        &mut self,
        ctx: &OpContext<'_>,
        func: &super::FunctionRef,
        records: RecordIter<'_>,
    ) -> Result<(), EngineError> {
        for (k, v) in records {
            let (g, new) = self.keys.number(k);
            if new {
                match canonical::decode_count(v) {
                    Some(x) => {
                        self.sums.push(x);
                        self.values.push(None);
                    }
                    None => {
                        self.sums.push(0);
                        self.values.push(Some(v.to_vec()));
                    }
                }
                continue;
            }
            let sum = match (&self.values[g], canonical::decode_count(v)) {
                (None, Some(x)) => self.sums[g].checked_add(x),
                _ => None,
            };
            match sum {
                Some(sum) => self.sums[g] = sum,
                // The same failure, with the function's message.
                None => {
                    let prior = match &self.values[g] {
                        Some(raw) => raw.clone(),
                        None => canonical::encode_count(self.sums[g]).to_vec(),
                    };
                    return Err(super::combine::checked_add(ctx, func, &prior, v)
                        .err()
                        .unwrap_or_else(|| {
                            ctx.contract(format!("{}: native sums disagree", func.label()))
                        }));
                }
            }
        }
        Ok(())
    }

    /// Key `g`'s combined value.
    fn value(&self, g: usize) -> std::borrow::Cow<'_, [u8]> {
        match (&self.values[g], self.sums.get(g)) {
            (Some(v), _) => v.into(),
            (None, Some(&sum)) => canonical::encode_count(sum).to_vec().into(),
            (None, None) => (&[][..]).into(),
        }
    }

    /// Numbers the run's keys (new keys join the end), counting each key's
    /// records and value bytes in this run.
    fn index(&mut self, records: RecordIter<'_>) {
        self.ids.clear();
        self.touched.clear();
        for (k, v) in records {
            let (g, new) = self.keys.number(k);
            if new {
                self.values.push(None);
                self.counts.push(0);
                self.bytes.push(0);
                self.slots.push(SINGLE);
            }
            if self.counts[g] == 0 {
                self.touched.push(g as u32);
            }
            self.counts[g] += 1;
            self.bytes[g] += v.len();
            self.ids.push(g as u32);
        }
    }

    /// One reduce call over the keys of `multi` (in that order, each at
    /// its slot): each key's value so far, then its values of the run in
    /// order.
    #[allow(clippy::too_many_arguments)]
    fn reduce(
        &mut self,
        ctx: &OpContext<'_>,
        func: &super::FunctionRef,
        multi: &[u32],
        records: RecordIter<'_>,
        p: usize,
        n: usize,
        sequence: u32,
    ) -> Result<(), EngineError> {
        let shape = |&g: &u32| {
            let g = g as usize;
            let prior = self.values[g].as_deref();
            (
                self.keys.key(g),
                self.counts[g] as usize + usize::from(prior.is_some()),
                self.bytes[g] + prior.map_or(0, <[u8]>::len),
            )
        };
        let body_len = GroupsBody::len_of(multi.iter().map(shape).map(|(k, c, b)| (k.len(), c, b)));
        let mut inv = ctx.invocation(p, n);
        inv.sequence = sequence;
        let reduced =
            func.plugin
                .reduce_with(&func.function, &inv, multi.len(), body_len, |buf| {
                    let mut body = GroupsBody::new(buf, multi.iter().map(shape));
                    for (slot, &g) in multi.iter().enumerate() {
                        if let Some(prior) = &self.values[g as usize] {
                            body.push(slot, prior);
                        }
                    }
                    for (&id, (_, v)) in self.ids.iter().zip(records) {
                        let slot = self.slots[id as usize];
                        if slot != SINGLE {
                            body.push(slot as usize, v);
                        }
                    }
                })?;
        for (&g, value) in multi.iter().zip(reduced) {
            self.values[g as usize] = Some(value);
        }
        Ok(())
    }

    /// The combined partition: `(key, value)` in first-appearance order.
    fn into_batch(&self) -> RecordBatch {
        let len = self.keys.arena.len()
            + self
                .values
                .iter()
                .map(|v| 8 + v.as_ref().map_or(8, Vec::len))
                .sum::<usize>();
        let mut out = RecordBatch::with_capacity(len);
        for g in 0..self.values.len() {
            out.push(self.keys.key(g), &self.value(g));
        }
        out
    }
}

/// Distinct keys numbered in first-appearance order, their bytes in one
/// arena. The table holds the two words [`KeyBytes`] makes of a key next
/// to its number, so a lookup compares them in place: keys of at most 16
/// bytes never touch the arena, and no lookup follows a pointer.
#[derive(Default)]
struct KeyTable {
    table: HashTable<Slot>,
    /// Per key: where its bytes start in the arena, and its hash.
    entries: Vec<(usize, u64)>,
    arena: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Slot {
    lo: u64,
    hi: u64,
    id: u32,
    len: u32,
}

impl KeyTable {
    /// The number of key `k`, and whether it is new.
    #[inline]
    fn number(&mut self, k: &[u8]) -> (usize, bool) {
        let words = KeyBytes::new(k);
        let hash = FxBuildHasher.hash_one(words);
        let (entries, arena) = (&self.entries, &self.arena);
        let same = |s: &Slot| {
            s.lo == words.lo
                && s.hi == words.hi
                && s.len as usize == k.len()
                && (k.len() <= 16 || {
                    let start = entries[s.id as usize].0;
                    &arena[start..start + k.len()] == k
                })
        };
        if let Some(s) = self.table.find(hash, same) {
            return (s.id as usize, false);
        }
        let id = self.entries.len();
        let slot = Slot {
            lo: words.lo,
            hi: words.hi,
            id: u32::try_from(id).expect("fewer than 2^32 keys in a partition"),
            len: u32::try_from(k.len()).expect("a key shorter than 4 GiB"),
        };
        self.entries.push((self.arena.len(), hash));
        self.arena.extend_from_slice(k);
        let entries = &self.entries;
        self.table
            .insert_unique(hash, slot, |s| entries[s.id as usize].1);
        (id, true)
    }

    /// Key number `id`.
    fn key(&self, id: usize) -> &[u8] {
        let start = self.entries[id].0;
        let end = self.entries.get(id + 1).map_or(self.arena.len(), |e| e.0);
        &self.arena[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_table_numbers_keys_in_first_appearance_order() {
        let mut keys: Vec<Vec<u8>> = (0..40u8).map(|n| (0..n).collect()).collect();
        // Long keys alike in their first and last 8 bytes and length: only
        // the bytes between tell them apart.
        for middle in [b'x', b'y', b'z'] {
            let mut k = vec![b'a'; 30];
            k[15] = middle;
            keys.push(k);
        }
        keys.push(Vec::new());
        keys.push(vec![0]);
        let mut table = KeyTable::default();
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for k in keys.iter().chain(keys.iter().rev()) {
            let (id, new) = table.number(k);
            match expected.iter().position(|e| e == k) {
                Some(at) => assert_eq!((id, new), (at, false), "{k:?}"),
                None => {
                    assert_eq!((id, new), (expected.len(), true), "{k:?}");
                    expected.push(k.clone());
                }
            }
        }
        for (id, k) in expected.iter().enumerate() {
            assert_eq!(table.key(id), &k[..]);
        }
        assert_eq!(expected.len(), 43);
    }
}
