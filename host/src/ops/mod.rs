//! Operators, one file each. Every operator takes a batch's input
//! partitions and returns its output partitions; partition-level work runs
//! on the executor's worker pool, and every grouped operator emits keys in
//! first-appearance order (input partitions in index order, records in
//! arrival order), so outputs never depend on thread timing.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

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
        self.pool.install(|| {
            items
                .par_iter()
                .zip(slots.par_iter_mut())
                .enumerate()
                .map(|(i, (t, s))| f(i, t, s))
                .collect()
        })
    }

    /// Runs `f` on every item in parallel on the pool, keeping order.
    pub fn par_map<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(usize, &T) -> Result<R, EngineError> + Sync + Send,
    ) -> Result<Vec<R>, EngineError> {
        self.pool
            .install(|| items.par_iter().enumerate().map(|(i, t)| f(i, t)).collect())
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
        let mut map: HashMap<&[u8], u32, FxBuildHasher> =
            HashMap::with_capacity_and_hasher(batch.len().min(1 << 12), FxBuildHasher);
        let mut index = KeyIndex {
            keys: Vec::new(),
            first: Vec::new(),
            counts: Vec::new(),
            value_bytes: Vec::new(),
            ids: Vec::with_capacity(batch.len()),
        };
        for (k, v) in batch.iter() {
            let id = match map.entry(k) {
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
    let buckets = ctx.par_map(parts, |_, batch| {
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
