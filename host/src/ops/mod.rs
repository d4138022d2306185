//! Operators, one file each. Every operator takes a batch's input
//! partitions and returns its output partitions; partition-level work runs
//! on the executor's worker pool, and every grouped operator emits keys in
//! first-appearance order (input partitions in index order, records in
//! arrival order), so outputs never depend on thread timing.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use rayon::prelude::*;
use rustc_hash::FxBuildHasher;
use weir_abi::{CallHeader, RecordBatch};

use crate::error::EngineError;
use crate::partition::partition_of;
use crate::wasm::{Invocation, Limits};

pub mod combine;
pub mod count;
pub mod group_by_key;
pub mod join;
pub mod map;
pub mod reduce_by_key;
pub mod repartition;
pub mod state;
pub mod window;

/// A batch of one stream: its partitions, in order.
pub type Partitions = Vec<RecordBatch>;

/// Keys with their values in first-appearance order.
pub type Groups<'a> = IndexMap<&'a [u8], Vec<&'a [u8]>, FxBuildHasher>;

/// What an operator needs to know about the batch it runs in.
#[derive(Debug, Clone)]
pub struct OpContext<'a> {
    /// The worker pool partitions run on.
    pub pool: &'a rayon::ThreadPool,
    /// Job name, for errors.
    pub job: Arc<str>,
    /// Operator (stream) name, for errors.
    pub operator: Arc<str>,
    /// Operator kind, for errors.
    pub op: &'static str,
    /// Batch time in ms.
    pub batch_time_ms: i64,
    /// Plugin call limits.
    pub limits: Limits,
}

impl OpContext<'_> {
    /// The invocation of a plugin call on partition `p` of `n`.
    pub fn invocation(&self, partition: usize, num_partitions: usize) -> Invocation {
        Invocation {
            header: CallHeader {
                batch_time_ms: self.batch_time_ms,
                partition: partition as u32,
                num_partitions: num_partitions as u32,
            },
            job: Some(self.job.clone()),
            operator: Some(self.operator.clone()),
            limits: self.limits,
        }
    }

    /// An error for an operator whose plugin broke the operator's contract.
    pub fn contract(&self, message: String) -> EngineError {
        EngineError::Contract {
            job: self.job.clone(),
            operator: self.operator.clone(),
            op: self.op,
            batch_time_ms: self.batch_time_ms,
            message,
        }
    }

    /// Runs `f` on every item with mutable access to its slot in `slots`,
    /// in parallel on the pool, keeping order.
    pub fn par_map_mut<T: Sync, S: Send, R: Send>(
        &self,
        items: &[T],
        slots: &mut [S],
        f: impl Fn(usize, &T, &mut S) -> Result<R, EngineError> + Sync + Send,
    ) -> Result<Vec<R>, EngineError> {
        assert_eq!(items.len(), slots.len(), "one slot per item");
        let slots: Vec<Mutex<&mut S>> = slots.iter_mut().map(Mutex::new).collect();
        let order: Vec<usize> = (0..items.len()).collect();
        self.run_dynamic(&order, |i| {
            let mut slot = slots[i].lock().expect("each slot is taken once");
            f(i, &items[i], &mut slot)
        })
    }

    /// Runs `f` on every item in parallel on the pool, keeping order.
    pub fn par_map<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(usize, &T) -> Result<R, EngineError> + Sync + Send,
    ) -> Result<Vec<R>, EngineError> {
        let order: Vec<usize> = (0..items.len()).collect();
        self.run_dynamic(&order, |i| f(i, &items[i]))
    }

    /// [`par_map`](Self::par_map) over partitions, starting the largest
    /// first: with more partitions than workers, the small ones fill in at
    /// the end instead of one worker finishing a large one alone.
    pub fn par_map_batches<R: Send>(
        &self,
        items: &[RecordBatch],
        f: impl Fn(usize, &RecordBatch) -> Result<R, EngineError> + Sync + Send,
    ) -> Result<Vec<R>, EngineError> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(items[i].byte_len()));
        self.run_dynamic(&order, |i| f(i, &items[i]))
    }

    /// Runs `f(i)` for every index, in the given order of starting, each
    /// worker taking the next index as soon as it is free (rayon's static
    /// halving would give one worker the first half of the items however
    /// long they take). Results are in index order; after a failure no new
    /// item starts, and the error of the lowest failed index is returned.
    fn run_dynamic<R: Send>(
        &self,
        order: &[usize],
        f: impl Fn(usize) -> Result<R, EngineError> + Sync,
    ) -> Result<Vec<R>, EngineError> {
        let n = order.len();
        if n <= 1 {
            return self.pool.install(|| order.iter().map(|&i| f(i)).collect());
        }
        let results: Vec<Mutex<Option<Result<R, EngineError>>>> =
            (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let workers = self.pool.current_num_threads().min(n);
        self.pool.install(|| {
            (0..workers).into_par_iter().for_each(|_| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let result = f(i);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *results[i].lock().expect("result slot") = Some(result);
                }
            })
        });
        let mut out = Vec::with_capacity(n);
        for slot in results {
            match slot.into_inner().expect("result slot") {
                Some(Ok(r)) => out.push(r),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        debug_assert!(!failed.load(Ordering::Relaxed) && out.len() == n);
        Ok(out)
    }
}

/// The distinct keys of a partition, first appearance first, with each
/// record's key number: what grouping needs, without collecting values.
#[derive(Debug)]
pub struct KeyIndex<'a> {
    /// Distinct keys in first-appearance order.
    pub keys: Vec<&'a [u8]>,
    /// Per key: its first value.
    pub first: Vec<&'a [u8]>,
    /// Per key: how many records have it.
    pub counts: Vec<u32>,
    /// Per key: total bytes of its values (without length prefixes).
    pub value_bytes: Vec<usize>,
    /// Per record, in order: the number of its key.
    pub ids: Vec<u32>,
}

impl<'a> KeyIndex<'a> {
    /// Indexes `batch`.
    pub fn new(batch: &'a RecordBatch) -> Self {
        let mut map: HashMap<KeyBytes<'a>, u32, FxBuildHasher> =
            HashMap::with_capacity_and_hasher(batch.len().min(1 << 12), FxBuildHasher);
        let mut index = KeyIndex {
            keys: Vec::new(),
            first: Vec::new(),
            counts: Vec::new(),
            value_bytes: Vec::new(),
            ids: Vec::with_capacity(batch.len()),
        };
        for (k, v) in batch.iter() {
            let id = match map.entry(KeyBytes::new(k)) {
                Entry::Occupied(e) => {
                    let id = *e.get();
                    index.counts[id as usize] += 1;
                    index.value_bytes[id as usize] += v.len();
                    id
                }
                Entry::Vacant(e) => {
                    let id = u32::try_from(index.keys.len()).expect("fewer than 2^32 keys");
                    e.insert(id);
                    index.keys.push(k);
                    index.first.push(v);
                    index.counts.push(1);
                    index.value_bytes.push(v.len());
                    id
                }
            };
            index.ids.push(id);
        }
        index
    }
}

/// Key bytes as a hash-map key that carries its bytes inline: keys up to
/// 16 bytes are hashed and compared from two words held in the table, so a
/// lookup never follows a pointer to a stored key (in a large batch, that
/// key sits wherever it first appeared: a cache miss per lookup).
#[derive(Debug, Clone, Copy)]
struct KeyBytes<'a> {
    /// With `hi` and the length, the whole key when it has at most 16
    /// bytes: two overlapping loads (or three bytes), so for a given length
    /// different keys give different words.
    lo: u64,
    hi: u64,
    bytes: &'a [u8],
}

impl<'a> KeyBytes<'a> {
    #[inline]
    fn new(bytes: &'a [u8]) -> Self {
        let n = bytes.len();
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let (lo, hi) = match n {
            0 => (0, 0),
            1..=3 => (
                u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16,
                0,
            ),
            4..=7 => (u64::from(u32_at(0)), u64::from(u32_at(n - 4))),
            _ => (u64_at(0), u64_at(n - 8)),
        };
        KeyBytes { lo, hi, bytes }
    }
}

impl std::hash::Hash for KeyBytes<'_> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if self.bytes.len() <= 16 {
            state.write_u64(self.lo ^ (self.bytes.len() as u64) << 59);
            state.write_u64(self.hi);
        } else {
            state.write(self.bytes);
        }
    }
}

impl PartialEq for KeyBytes<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.lo == other.lo
            && self.hi == other.hi
            && self.bytes.len() == other.bytes.len()
            && (self.bytes.len() <= 16 || self.bytes == other.bytes)
    }
}

impl Eq for KeyBytes<'_> {}

/// Groups a partition's records by key, first appearance first.
pub fn group(batch: &RecordBatch) -> Groups<'_> {
    let mut groups: Groups<'_> =
        IndexMap::with_capacity_and_hasher(batch.len().min(1 << 16), FxBuildHasher);
    for (k, v) in batch.iter() {
        groups.entry(k).or_default().push(v);
    }
    groups
}

/// Hash-partitions records by key into `n` partitions. Each input
/// partition is split in parallel; buckets are then joined in input order.
pub fn shuffle(
    ctx: &OpContext<'_>,
    parts: &[RecordBatch],
    n: usize,
) -> Result<Partitions, EngineError> {
    let buckets = ctx.par_map_batches(parts, |_, batch| {
        let mut out: Vec<RecordBatch> = (0..n)
            .map(|_| RecordBatch::with_capacity(batch.byte_len() / n))
            .collect();
        for (k, v) in batch.iter() {
            out[partition_of(k, n)].push(k, v);
        }
        Ok(out)
    })?;
    let mut result: Partitions = (0..n).map(|_| RecordBatch::new()).collect();
    for per_input in &buckets {
        for (j, b) in per_input.iter().enumerate() {
            result[j].extend(b);
        }
    }
    Ok(result)
}

/// Total records over all partitions.
pub fn total_records(parts: &[RecordBatch]) -> usize {
    parts.iter().map(RecordBatch::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_equality_is_slice_equality() {
        // Every length up to past the inline cases, differing at every position.
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            let copy = a.clone();
            assert!(KeyBytes::new(&a) == KeyBytes::new(&copy));
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(
                    KeyBytes::new(&a) != KeyBytes::new(&b),
                    "length {n}, byte {i}"
                );
            }
            let longer: Vec<u8> = (0..=n as u8).collect();
            assert!(KeyBytes::new(&a) != KeyBytes::new(&longer));
            // Shorter keys padded with zeros are other keys.
            let padded: Vec<u8> = a.iter().copied().chain([0]).collect();
            assert!(KeyBytes::new(&a) != KeyBytes::new(&padded));
        }
    }

    #[test]
    fn key_index_numbers_keys_in_first_appearance_order() {
        let batch: RecordBatch = [
            (&b"b"[..], &b"1"[..]),
            (b"a", b"22"),
            (b"b", b"333"),
            (b"", b""),
            (b"a", b"4"),
        ]
        .into_iter()
        .collect();
        let index = KeyIndex::new(&batch);
        assert_eq!(index.keys, vec![&b"b"[..], b"a", b""]);
        assert_eq!(index.first, vec![&b"1"[..], b"22", b""]);
        assert_eq!(index.counts, vec![2, 2, 1]);
        assert_eq!(index.value_bytes, vec![4, 3, 0]);
        assert_eq!(index.ids, vec![0, 1, 0, 2, 1]);
    }
}
