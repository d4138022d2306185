//! `update_state_by_key` and `map_with_state`: keyed state kept by the
//! host, one plugin `update` call per partition per batch.
//!
//! State lives in one [`StateStore`] per partition, keyed by the key bytes
//! in sorted order, so the entries handed to the plugin (and a snapshot, or
//! a checkpoint) are in a canonical order that does not depend on history.

use std::collections::BTreeMap;

use weir_abi::{RecordBatch, UpdateEntry};

use super::{group, shuffle, OpContext, Partitions};
use crate::error::EngineError;
use crate::partition::partition_of;
use crate::stream::graph::{StateMode, StateSpec};

/// One key's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateEntry {
    /// The state bytes, as the plugin encoded them.
    pub value: Vec<u8>,
    /// Batch time the key last had new values (for idle timeouts).
    pub last_active_ms: i64,
}

/// The state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateStore {
    /// Key → state, sorted by key bytes.
    pub entries: BTreeMap<Vec<u8>, StateEntry>,
}

impl StateStore {
    /// `(key, state)` records in key order.
    pub fn snapshot(&self) -> RecordBatch {
        self.entries
            .iter()
            .map(|(k, e)| (k.as_slice(), e.value.as_slice()))
            .collect()
    }
}

/// Stores holding the initial state, each key in its partition.
pub fn initial_stores(spec: &StateSpec, active_ms: i64) -> Vec<StateStore> {
    let mut stores = vec![StateStore::default(); spec.partitions];
    for (k, v) in &spec.initial {
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

/// Applies one batch to the state; returns the operator's output stream:
/// the whole state for `update_state_by_key`, the emitted records for
/// `map_with_state`.
pub fn update(
    ctx: &OpContext<'_>,
    spec: &StateSpec,
    input: &[RecordBatch],
    stores: &mut [StateStore],
    batch_time_ms: i64,
) -> Result<Partitions, EngineError> {
    let n = spec.partitions;
    let shuffled = shuffle(ctx, input, n)?;
    ctx.par_map_mut(&shuffled, stores, |p, batch, store| {
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
                    if spec
                        .timeout_ms
                        .is_some_and(|t| batch_time_ms - e.last_active_ms >= t)
                    {
                        calls.insert(k, (Some(&e.value), true, Vec::new()));
                    }
                }
            }
        }
        if calls.is_empty() {
            return Ok(match spec.mode {
                StateMode::UpdateStateByKey => store.snapshot(),
                StateMode::MapWithState => RecordBatch::new(),
            });
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
        let changes: Vec<(Vec<u8>, bool, bool)> = entries
            .iter()
            .map(|e| (e.key.to_vec(), e.timed_out, !e.values.is_empty()))
            .collect();
        drop(entries);
        drop(calls);
        for ((key, timed_out, had_values), new_state) in changes.into_iter().zip(out.states) {
            match new_state {
                // A timing-out key's state goes, whatever the function says
                // (as in Spark, its state cannot be updated any more).
                Some(value) if !timed_out => {
                    let last_active_ms = match store.entries.get(&key) {
                        Some(e) if !had_values => e.last_active_ms,
                        _ => batch_time_ms,
                    };
                    store.entries.insert(
                        key,
                        StateEntry {
                            value,
                            last_active_ms,
                        },
                    );
                }
                _ => {
                    store.entries.remove(&key);
                }
            }
        }
        Ok(match spec.mode {
            StateMode::UpdateStateByKey => store.snapshot(),
            StateMode::MapWithState => out.emitted,
        })
    })
}

/// `(key, state)` of every partition.
pub fn snapshots(stores: &[StateStore]) -> Partitions {
    stores.iter().map(StateStore::snapshot).collect()
}
