//! `update_state_by_key` and `map_with_state`: keyed state kept by the
//! host, one plugin `update` call per partition per batch.
//!
//! State lives in one [`StateStore`] per partition, keyed by the key bytes
//! in sorted order, so the entries handed to the plugin (and a snapshot, or
//! a checkpoint) are in a canonical order that does not depend on history.
//! A batch stages the keys it changes; they are applied when the batch
//! commits, so a failed batch leaves the state untouched without a copy.
//!
//! **Difference from Spark's `mapWithState`.** Spark calls the mapping
//! function once per record, `(key, Option[value], State)`. weir calls the
//! update function once per key per batch with *all* the key's new values
//! of that batch, in arrival order (one crossing per partition, not one per
//! record). A Spark function ports by folding its per-record body over
//! `values`: what it returned per record is what the weir function emits,
//! and the state it left after the last record is the state to keep.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_abi::{FunctionKind, RecordBatch, UpdateEntry};

use super::spec::{function, Args, Arity, OpDesc, Param, ParamKind, Stage, PARTITIONS};
use super::{
    group, merge_sorted, shuffle, FunctionRef, Inputs, MigrationError, OpContext, OpState,
    Operator, Partitions, Snapshot, Staged, Step,
};
use crate::checkpoint::SnapshotError;
use crate::error::EngineError;
use crate::partition::partition_of;
use crate::wasm::{Invocation, Plugin};

const INITIAL_STATE: Param = Param::optional(
    "initial_state",
    ParamKind::StateFile,
    "a file of `key<TAB>value` lines: the state before the first batch",
);
const INITIAL_STATE_FORMAT: Param = Param::optional(
    "initial_state_format",
    ParamKind::Choice(&["text", "i64", "hex"]),
    "how `initial_state` values are written [default: text]",
);

pub(crate) static UPDATE_STATE_BY_KEY: OpDesc = OpDesc {
    name: "update_state_by_key",
    spark: "updateStateByKey",
    arity: Arity::One,
    params: &[
        function(FunctionKind::Update),
        PARTITIONS,
        INITIAL_STATE,
        INITIAL_STATE_FORMAT,
    ],
    shuffles: true,
    windowed: false,
    stateful: true,
    in_pipelines: true,
    result: "every key with state or new values is updated every batch; the stream is the state, `(key, state)` in key order",
    build: |args| build(args, StateMode::UpdateStateByKey),
};

pub(crate) static MAP_WITH_STATE: OpDesc = OpDesc {
    name: "map_with_state",
    spark: "mapWithState",
    arity: Arity::One,
    params: &[
        function(FunctionKind::Update),
        PARTITIONS,
        Param::optional(
            "timeout",
            ParamKind::Duration,
            "a key idle longer than this is called once more, timing out, then removed",
        ),
        INITIAL_STATE,
        INITIAL_STATE_FORMAT,
    ],
    shuffles: true,
    windowed: false,
    stateful: true,
    in_pipelines: true,
    result: "only keys with new values (and keys idle past `timeout`, once) are called; the stream is what the function emits",
    build: |args| build(args, StateMode::MapWithState),
};

fn build(args: &Args, mode: StateMode) -> Result<Vec<Stage>, crate::error::BuildError> {
    let partitions = args.shuffle_partitions();
    let spec = StateSpec {
        func: args.the_function(),
        mode,
        timeout_ms: args.duration_ms("timeout"),
        partitions,
        initial: Arc::new(args.pairs("initial_state")),
    };
    Ok(vec![Stage::new(spec, partitions)])
}

/// Which state operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateMode {
    /// Spark's `updateStateByKey`: every key with state or new values is
    /// updated every batch; the stream is the state.
    UpdateStateByKey,
    /// Spark's `mapWithState`: only keys with new values (or whose idle
    /// timeout expired) are called; the stream is what the function emits.
    MapWithState,
}

/// A state operator.
#[derive(Debug, Clone)]
pub(crate) struct StateSpec {
    /// The plugin update function.
    pub func: FunctionRef,
    /// Which semantics.
    pub mode: StateMode,
    /// Idle timeout (map_with_state).
    pub timeout_ms: Option<i64>,
    /// State partitions.
    pub partitions: usize,
    /// Initial `(key, state)` pairs.
    pub initial: Arc<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// One key's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateEntry {
    /// The state bytes, as the plugin encoded them.
    pub value: Vec<u8>,
    /// Batch time the key last had new values (for idle timeouts).
    pub last_active_ms: i64,
}

/// The state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateStore {
    /// Key → state, sorted by key bytes.
    pub entries: BTreeMap<Vec<u8>, StateEntry>,
}

impl StateStore {
    /// `(key, state)` records in key order.
    pub(crate) fn snapshot(&self) -> RecordBatch {
        self.entries
            .iter()
            .map(|(k, e)| (k.as_slice(), e.value.as_slice()))
            .collect()
    }

    fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|(k, e)| (k.len() + e.value.len()) as u64)
            .sum()
    }
}

/// Kind and version of a [`KeyedState`] snapshot.
const SNAPSHOT_KIND: &str = "keyed_state";
const SNAPSHOT_VERSION: u32 = 1;

/// A state operator's state: one store per partition, created at the first
/// batch (initial state is active from then).
#[derive(Debug, Default)]
pub(crate) struct KeyedState {
    /// The stores; `None` before the first batch.
    pub stores: Option<Vec<StateStore>>,
    /// Bytes of keys and values held.
    bytes: u64,
}

impl KeyedState {
    /// State from stores (after a migration or a restore).
    fn from_stores(stores: Option<Vec<StateStore>>) -> Self {
        let bytes = stores.iter().flatten().map(StateStore::bytes).sum();
        KeyedState { stores, bytes }
    }
}

impl KeyedState {
    /// `(key, state)` of every partition once `staged` (this batch's
    /// changes, if any) is applied.
    pub(crate) fn records_after(&self, staged: Option<&Staged>) -> Partitions {
        let staged = staged.and_then(|s| s.downcast_ref::<KeyedStaged>());
        let stores = staged
            .and_then(|s| s.created.as_ref())
            .or(self.stores.as_ref());
        let Some(stores) = stores else {
            return Vec::new();
        };
        stores
            .iter()
            .enumerate()
            .map(|(p, store)| {
                let changes = staged.and_then(|s| s.changes.get(p));
                merged(store, changes.map_or(&[][..], Vec::as_slice))
            })
            .collect()
    }
}

/// What a batch changes: the stores it created (first batch) and, per
/// partition, each changed key's new state (`None`: removed), in key order.
struct KeyedStaged {
    created: Option<Vec<StateStore>>,
    changes: Vec<Vec<(Vec<u8>, Option<StateEntry>)>>,
}

impl OpState for KeyedState {
    fn commit(&mut self, staged: Staged) {
        let Ok(staged) = staged.downcast::<KeyedStaged>() else {
            return;
        };
        if let Some(created) = staged.created {
            *self = KeyedState::from_stores(Some(created));
        }
        let Some(stores) = &mut self.stores else {
            return;
        };
        for (store, changes) in stores.iter_mut().zip(staged.changes) {
            for (k, entry) in changes {
                let added = entry
                    .as_ref()
                    .map_or(0, |e| (k.len() + e.value.len()) as u64);
                let old = match entry {
                    Some(e) => store.entries.insert(k.clone(), e),
                    None => store.entries.remove(&k),
                };
                let removed = old.map_or(0, |e| (k.len() + e.value.len()) as u64);
                self.bytes = self.bytes + added - removed;
            }
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn keys(&self) -> Option<u64> {
        Some(
            self.stores
                .iter()
                .flatten()
                .map(|store| store.entries.len() as u64)
                .sum(),
        )
    }

    fn bytes_after(&self, staged: Option<&Staged>) -> u64 {
        let Some(staged) = staged.and_then(|s| s.downcast_ref::<KeyedStaged>()) else {
            return self.bytes;
        };
        let (stores, base) = match (&staged.created, &self.stores) {
            (Some(created), _) => (created, created.iter().map(StateStore::bytes).sum()),
            (None, Some(stores)) => (stores, self.bytes),
            (None, None) => return self.bytes,
        };
        let size = |k: &[u8], e: &StateEntry| (k.len() + e.value.len()) as i64;
        let mut delta = 0i64;
        for (store, changes) in stores.iter().zip(&staged.changes) {
            for (k, entry) in changes {
                delta += entry.as_ref().map_or(0, |e| size(k, e));
                delta -= store.entries.get(k).map_or(0, |e| size(k, e));
            }
        }
        base.saturating_add_signed(delta)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::encode(SNAPSHOT_KIND, SNAPSHOT_VERSION, &self.stores)
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        *self = KeyedState::from_stores(snapshot.decode(SNAPSHOT_KIND, SNAPSHOT_VERSION)?);
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Stores holding the initial state, each key in its partition.
fn initial_stores(spec: &StateSpec, active_ms: i64) -> Vec<StateStore> {
    let mut stores = vec![StateStore::default(); spec.partitions];
    for (k, v) in spec.initial.iter() {
        stores[partition_of(k, spec.partitions)].entries.insert(
            k.clone(),
            StateEntry {
                value: v.clone(),
                last_active_ms: active_ms,
            },
        );
    }
    stores
}

/// `(key, state)` of a store with `changes` (sorted by key) applied.
fn merged(store: &StateStore, changes: &[(Vec<u8>, Option<StateEntry>)]) -> RecordBatch {
    merge_sorted(
        store.entries.iter().map(|(k, e)| (k.as_slice(), e)),
        changes.iter().map(|(k, e)| (k.as_slice(), e.as_ref())),
        |e| &e.value,
    )
}

impl Operator for StateSpec {
    fn desc(&self) -> &'static OpDesc {
        match self.mode {
            StateMode::UpdateStateByKey => &UPDATE_STATE_BY_KEY,
            StateMode::MapWithState => &MAP_WITH_STATE,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}, timeout {:?} ms, partitions {}",
            self.func.label(),
            self.timeout_ms,
            self.partitions
        )
    }

    fn functions_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        vec![(&mut self.func, FunctionKind::Update)]
    }

    fn new_state(&self) -> Option<Box<dyn OpState>> {
        Some(Box::<KeyedState>::default())
    }

    fn migrate_state(
        &self,
        state: &dyn OpState,
        name: &str,
        new: &Plugin,
        invocation: &dyn Fn(usize, usize) -> Invocation,
    ) -> Option<Result<(Box<dyn OpState>, u64), MigrationError>> {
        if &**self.func.plugin.name() != name {
            return None;
        }
        let stores = state
            .as_any()
            .downcast_ref::<KeyedState>()?
            .stores
            .as_ref()?;
        Some(migrate(stores, new, invocation))
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        state: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let state = state
            .and_then(|s| s.as_any().downcast_ref::<KeyedState>())
            .expect("a state operator has keyed state");
        let t = cx.batch_time_ms;
        let created = state.stores.is_none().then(|| initial_stores(self, t));
        let stores = created
            .as_ref()
            .or(state.stores.as_ref())
            .expect("stores exist or were just created");
        let (out, changes) = update(cx, self, inputs.batches[0], stores, t)?;
        Ok(Step {
            out: Some(Arc::new(out)),
            staged: Some(Box::new(KeyedStaged { created, changes })),
        })
    }
}

/// Every key's state through `new`'s `migrate:state`, partition by partition.
fn migrate(
    stores: &[StateStore],
    new: &Plugin,
    invocation: &dyn Fn(usize, usize) -> Invocation,
) -> Result<(Box<dyn OpState>, u64), MigrationError> {
    let n = stores.len();
    let mut next = Vec::with_capacity(n);
    let mut migrated_keys = 0;
    for (p, store) in stores.iter().enumerate() {
        let out = RecordBatch::from_bytes(new.call(
            FunctionKind::Migrate,
            weir_abi::MIGRATE_FUNCTION,
            &invocation(p, n),
            store.snapshot().as_bytes(),
        )?)?;
        let mut migrated = StateStore::default();
        for (k, v) in out.iter() {
            let Some(old) = store.entries.get(k) else {
                return Err(MigrationError::UnknownKey { key: k.to_vec() });
            };
            migrated.entries.insert(
                k.to_vec(),
                StateEntry {
                    value: v.to_vec(),
                    last_active_ms: old.last_active_ms,
                },
            );
            migrated_keys += 1;
        }
        next.push(migrated);
    }
    Ok((Box::new(KeyedState::from_stores(Some(next))), migrated_keys))
}

type Changes = Vec<(Vec<u8>, Option<StateEntry>)>;

/// Computes one batch against the state: the operator's output stream (the
/// whole state for `update_state_by_key`, the emitted records for
/// `map_with_state`) and, per partition, the keys whose state changes.
fn update(
    ctx: &OpContext<'_>,
    spec: &StateSpec,
    input: &[RecordBatch],
    stores: &[StateStore],
    batch_time_ms: i64,
) -> Result<(Partitions, Vec<Changes>), EngineError> {
    let n = spec.partitions;
    let shuffled = shuffle(ctx, input, n)?;
    let results = ctx.par_map(&shuffled, |p, batch| {
        let store = &stores[p];
        let groups = group(batch);
        // key → (state, timed out, new values), sorted by key.
        let mut calls: BTreeMap<&[u8], (Option<&[u8]>, bool, Vec<&[u8]>)> = BTreeMap::new();
        for (k, vs) in &groups {
            calls.insert(
                k,
                (
                    store.entries.get(*k).map(|e| e.value.as_slice()),
                    false,
                    vs.clone(),
                ),
            );
        }
        for (k, e) in &store.entries {
            if calls.contains_key(k.as_slice()) {
                continue;
            }
            match spec.mode {
                StateMode::UpdateStateByKey => {
                    calls.insert(k, (Some(&e.value), false, Vec::new()));
                }
                StateMode::MapWithState => {
                    // As Spark: a key times out when its last update is
                    // strictly earlier than `batch time - timeout`.
                    if spec
                        .timeout_ms
                        .is_some_and(|t| e.last_active_ms < batch_time_ms - t)
                    {
                        calls.insert(k, (Some(&e.value), true, Vec::new()));
                    }
                }
            }
        }
        if calls.is_empty() {
            let out = match spec.mode {
                StateMode::UpdateStateByKey => store.snapshot(),
                StateMode::MapWithState => RecordBatch::new(),
            };
            return Ok((out, Vec::new()));
        }
        let entries: Vec<UpdateEntry<'_>> = calls
            .iter()
            .map(|(k, (state, timed_out, values))| UpdateEntry {
                key: k,
                state: *state,
                timed_out: *timed_out,
                values: values.clone(),
            })
            .collect();
        let out = spec
            .func
            .plugin
            .update(&spec.func.function, &ctx.invocation(p, n), &entries)?;
        let mut changes: Changes = Vec::with_capacity(entries.len());
        for (entry, new_state) in entries.iter().zip(out.states) {
            let key = entry.key;
            let old = store.entries.get(key);
            let change = match new_state {
                // A timing-out key's state goes, whatever the function says
                // (as in Spark, its state cannot be updated any more).
                Some(value) if !entry.timed_out => {
                    let last_active_ms = match old {
                        Some(e) if entry.values.is_empty() => e.last_active_ms,
                        _ => batch_time_ms,
                    };
                    let e = StateEntry {
                        value,
                        last_active_ms,
                    };
                    if old == Some(&e) {
                        continue;
                    }
                    Some(e)
                }
                _ if old.is_none() => continue,
                _ => None,
            };
            changes.push((key.to_vec(), change));
        }
        let out = match spec.mode {
            StateMode::UpdateStateByKey => merged(store, &changes),
            StateMode::MapWithState => out.emitted,
        };
        Ok((out, changes))
    })?;
    Ok(results.into_iter().unzip())
}
