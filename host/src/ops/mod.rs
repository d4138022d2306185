//! Operators, one file each. Every operator file owns everything about
//! its operator: its [`OpDesc`] (pipeline name, Spark name, inputs,
//! typed parameters, whether it shuffles, windows or keeps state), how it
//! is built from validated [`Args`], how it runs one batch, and its state
//! with the snapshot of that state. The pipeline parser, the library API,
//! validation, checkpoints and the documentation tables all read the
//! descriptions in `registry::OPERATORS`; adding an operator is one file
//! and one line there.
//!
//! Partition-level work runs on the worker pool, and every grouped
//! operator emits keys in first-appearance order (input partitions in
//! index order, records in arrival order), so outputs never depend on
//! thread timing.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use weir_abi::{CallHeader, FunctionKind, RecordBatch};

use crate::error::EngineError;
use crate::partition::partition_of;
use crate::wasm::{Invocation, Limits, Plugin};

pub(crate) mod combine;
pub(crate) mod count;
pub(crate) mod fused;
pub(crate) mod glom;
pub(crate) mod group_by_key;
pub(crate) mod join;
pub(crate) mod map;
pub(crate) mod reduce_by_key;
pub(crate) mod registry;
pub(crate) mod repartition;
pub(crate) mod slice;
pub(crate) mod spec;
pub(crate) mod state;
pub(crate) mod state_snapshots;
pub(crate) mod top;
pub(crate) mod transform;
pub(crate) mod window;
pub(crate) mod windowed_reduce;

pub use count::element;
pub use registry::markdown_table as operator_table;
pub use spec::{Args, Arity, OpDesc, Param, ParamKind};

/// A batch of one stream: its partitions, in order.
pub type Partitions = Vec<RecordBatch>;

/// Keys with their values in first-appearance order.
pub(crate) type Groups<'a> = IndexMap<&'a [u8], Vec<&'a [u8]>, FxBuildHasher>;

/// A plugin function an operator calls: the loaded plugin and the function
/// name (without its kind prefix).
#[derive(Debug, Clone)]
pub struct FunctionRef {
    /// The plugin.
    pub plugin: Plugin,
    /// Function name (without kind prefix).
    pub function: Arc<str>,
}

impl FunctionRef {
    /// `plugin:function`, for messages.
    pub fn label(&self) -> String {
        format!("{}:{}", self.plugin.name(), self.function)
    }
}

/// How values of a key are combined.
#[derive(Debug, Clone)]
pub(crate) enum Combiner {
    /// A plugin reduce function.
    Plugin(FunctionRef),
    /// Host-native `i64` addition of canonical counts.
    SumI64,
    /// Host-native `i64` subtraction (the inverse of [`Combiner::SumI64`]).
    SubI64,
    /// A plugin reduce function its module declares to be checked `i64`
    /// addition ([`combine::NATIVE_SECTION`]): combined by the host, with
    /// the values and failures the function itself gives.
    CheckedAddI64(FunctionRef),
}

impl Combiner {
    /// For the pipeline description.
    pub(crate) fn label(&self) -> String {
        match self {
            Combiner::Plugin(f) => f.label(),
            Combiner::SumI64 => "native sum".into(),
            Combiner::SubI64 => "native subtract".into(),
            Combiner::CheckedAddI64(f) => {
                format!("{} (declared checked i64 add, native)", f.label())
            }
        }
    }
}

/// How the host renders a stream's values (keys are always opaque bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Bytes from a source or a plugin.
    Opaque,
    /// A canonical `i64` count.
    Count,
    /// A canonical list (`group_by_key`, `glom`).
    List,
    /// A canonical join pair.
    Pair,
    /// Two canonical lists (`cogroup`).
    CoGroup,
}

/// Why a state migration through `migrate:state` failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The call failed.
    #[error(transparent)]
    Call(#[from] crate::wasm::CallError),
    /// Its output is not framed records.
    #[error("malformed output: {0}")]
    Malformed(#[from] weir_abi::FrameError),
    /// It returned state for a key that had none.
    #[error("returned a key that had no state: {}", String::from_utf8_lossy(key))]
    UnknownKey { key: Vec<u8> },
}

/// What one run of an operator gives: its output (`None` when it has no
/// batch at this time, between window slides) and the state it wants after
/// the batch, staged: the executor commits it only once the whole batch
/// succeeded, so a failed or retried batch leaves the state as it was.
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// The operator's batch.
    pub out: Option<Arc<Partitions>>,
    /// Changes to its state, for [`OpState::commit`].
    pub staged: Option<Staged>,
}

impl Step {
    /// A batch and no state change.
    pub(crate) fn output(out: Partitions) -> Self {
        Step {
            out: Some(Arc::new(out)),
            staged: None,
        }
    }
}

/// Staged state changes of one operator: only its own state type reads them.
pub(crate) type Staged = Box<dyn std::any::Any + Send>;

/// A versioned, self-describing snapshot of an operator's (or a source's)
/// state, as checkpoints store it without interpreting it.
pub use crate::checkpoint::{Snapshot, SnapshotError};

/// An operator's state between batches.
pub(crate) trait OpState: Send + Sync + std::fmt::Debug + std::any::Any {
    /// Applies what a successful batch staged.
    fn commit(&mut self, staged: Staged);
    /// Bytes of keys and values held (for the state limit).
    fn bytes(&self) -> u64;
    /// Keys held, for state that is keyed.
    fn keys(&self) -> Option<u64> {
        None
    }
    /// Bytes held once `staged` (this batch's changes) is committed: the
    /// state limit is checked with it before a batch's outputs are written.
    fn bytes_after(&self, staged: Option<&Staged>) -> u64;
    /// The state as a checkpoint keeps it.
    fn snapshot(&self) -> Snapshot;
    /// The state back from a snapshot this operator wrote (any version it
    /// still reads).
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError>;
    /// For operators that read another operator's state.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What an operator sees of one batch.
pub(crate) struct Inputs<'a> {
    /// Each input's batch, in declaration order.
    pub batches: Vec<&'a Arc<Partitions>>,
    /// Each input's state before this batch, when it keeps one.
    pub states: Vec<Option<&'a dyn OpState>>,
    /// What each input staged for its state in this batch.
    pub staged: Vec<Option<&'a Staged>>,
    /// Whether the operator emits at this time (its slide is due).
    pub due: bool,
    /// The map fused into this operator: then `batches[0]` is the map's
    /// input, and [`Inputs::reduce_by_key`] runs the map on the way.
    pub upstream: Option<&'a fused::Upstream<'a>>,
}

impl Inputs<'_> {
    /// The (one) input reduced by key with `combiner` into `partitions`
    /// partitions: map-side combine, shuffle, combine. With a fused map,
    /// the map's output is combined as it comes ([`fused`]).
    pub(crate) fn reduce_by_key(
        &self,
        ctx: &OpContext<'_>,
        combiner: &Combiner,
        partitions: usize,
    ) -> Result<Partitions, EngineError> {
        match self.upstream {
            Some(up) => fused::apply(ctx, up, combiner, self.batches[0], partitions),
            None => reduce_by_key::apply(ctx, combiner, self.batches[0], partitions),
        }
    }
}

/// A copy of an operator, boxed: each task of a scaled-out job runs its
/// own copy of the graph.
pub(crate) trait OperatorClone {
    /// The copy.
    fn clone_box(&self) -> Box<dyn Operator>;
}

impl<T: Operator + Clone + 'static> OperatorClone for T {
    fn clone_box(&self) -> Box<dyn Operator> {
        Box::new(self.clone())
    }
}

/// An operator of the graph, as it runs.
pub(crate) trait Operator: OperatorClone + Send + Sync + std::fmt::Debug {
    /// Its description.
    fn desc(&self) -> &'static OpDesc;
    /// Its parameters in one line, part of the pipeline's identity in a
    /// checkpoint (a changed parameter makes the checkpoint another job's).
    fn describe(&self) -> String;
    /// The kind of the values it emits, given its inputs'.
    fn value_kind(&self, inputs: &[ValueKind]) -> ValueKind {
        let _ = inputs;
        ValueKind::Opaque
    }
    /// Every plugin function it calls, with the kind it is called as.
    fn functions_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        Vec::new()
    }
    /// Fresh state, for operators that keep one.
    fn new_state(&self) -> Option<Box<dyn OpState>> {
        None
    }
    /// Whether its state holds values of plugin `name` that a migration
    /// would have to rewrite but cannot (window contents).
    fn holds_unmigratable_values_of(&self, name: &str) -> bool {
        let _ = name;
        false
    }
    /// Its state migrated through `new`'s `migrate:state`, when it keeps
    /// state encoded by plugin `name` (state operators): the new state and
    /// the number of keys migrated. `invocation(p, n)` is the call context
    /// of partition `p` of `n`. Nothing changes on error.
    fn migrate_state(
        &self,
        state: &dyn OpState,
        name: &str,
        new: &Plugin,
        invocation: &dyn Fn(usize, usize) -> Invocation,
    ) -> Option<Result<(Box<dyn OpState>, u64), MigrationError>> {
        let _ = (state, name, new, invocation);
        None
    }
    /// The batches it remembers, for `slice`.
    fn slicer(&self) -> Option<slice::Slicer> {
        None
    }
    /// The operator as one that maps record by record (`map`, `flat_map`,
    /// `filter`), which can be fused into the combine of its only reader.
    fn as_map(&self) -> Option<&map::MapOp> {
        None
    }
    /// Whether its run begins by reducing its one input by key through
    /// [`Inputs::reduce_by_key`] and reads the input for nothing else
    /// (`reduce_by_key`, the windowed reductions): then a map feeding only
    /// it runs inside that reduction's map-side combine ([`fused`]).
    fn fuses_map(&self) -> bool {
        false
    }
    /// Runs one batch.
    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        state: Option<&dyn OpState>,
    ) -> Result<Step, EngineError>;
}

/// What an operator needs to know about the batch it runs in.
#[derive(Debug, Clone)]
pub(crate) struct OpContext<'a> {
    /// The worker pool partitions run on.
    pub pool: &'a crate::worker_pool::WorkerPool,
    /// How many partitions of this job may run at once (its workers).
    pub share: usize,
    /// Job name, for errors and as part of the seed of plugins' virtual
    /// WASI randomness (so a checkpoint refuses a renamed job).
    pub job: Arc<str>,
    /// Operator (stream) name, for errors.
    pub operator: Arc<str>,
    /// Operator kind, for errors.
    pub op: &'static str,
    /// Batch time in ms.
    pub batch_time_ms: i64,
    /// Plugin call limits.
    pub limits: Limits,
    /// Where the operator's plugin calls add up their cost.
    pub meter: Option<Arc<crate::wasm::CallMeter>>,
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
            meter: self.meter.clone(),
            sequence: 0,
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
    /// of the job's `share` workers taking the next index as soon as it is
    /// free. Results are in index order; after a failure no new item
    /// starts, and the error of the lowest failed index among those that
    /// ran is returned (when several partitions fail, which one is named
    /// may vary; whether the batch fails does not).
    fn run_dynamic<R: Send>(
        &self,
        order: &[usize],
        f: impl Fn(usize) -> Result<R, EngineError> + Sync,
    ) -> Result<Vec<R>, EngineError> {
        self.pool.run(self.share, order, f)
    }
}

/// The distinct keys of a partition, first appearance first, with each
/// record's key number: what grouping needs, without collecting values.
#[derive(Debug)]
pub(crate) struct KeyIndex<'a> {
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
pub(crate) struct KeyBytes<'a> {
    /// With `hi` and the length, the whole key when it has at most 16
    /// bytes: two overlapping loads (or three bytes), so for a given length
    /// different keys give different words.
    pub lo: u64,
    pub hi: u64,
    pub bytes: &'a [u8],
}

impl<'a> KeyBytes<'a> {
    #[inline]
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
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
pub(crate) fn group(batch: &RecordBatch) -> Groups<'_> {
    let mut groups: Groups<'_> =
        IndexMap::with_capacity_and_hasher(batch.len().min(1 << 16), FxBuildHasher);
    for (k, v) in batch.iter() {
        groups.entry(k).or_default().push(v);
    }
    groups
}

/// Hash-partitions records by key into `n` partitions. Each input
/// partition is split in parallel; buckets are then joined in input order.
pub(crate) fn shuffle(
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

/// `(key, value)` records of a key-sorted `base` with key-sorted `changes`
/// laid over it (a change of `None` removes the key), in key order: the
/// state an operator will have after it commits, without changing it.
pub(crate) fn merge_sorted<'a, V: 'a>(
    base: impl Iterator<Item = (&'a [u8], &'a V)>,
    changes: impl Iterator<Item = (&'a [u8], Option<&'a V>)>,
    bytes: impl Fn(&V) -> &[u8],
) -> RecordBatch {
    let mut out = RecordBatch::new();
    let mut base = base.peekable();
    let mut changes = changes.peekable();
    loop {
        let take_base = match (base.peek(), changes.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((bk, _)), Some((ck, _))) => bk < ck,
        };
        if take_base {
            let (k, v) = base.next().expect("peeked");
            out.push(k, bytes(v));
        } else {
            let (k, v) = changes.next().expect("peeked");
            if base.peek().is_some_and(|(bk, _)| *bk == k) {
                base.next();
            }
            if let Some(v) = v {
                out.push(k, bytes(v));
            }
        }
    }
    out
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
