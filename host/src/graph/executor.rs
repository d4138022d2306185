//! Runs one batch through the graph: every node once, in topological order,
//! each operator's partitions in parallel on the worker pool. Nodes with a
//! slide (windows and what follows them) have a batch only at their slide
//! times. Stateful operators keep their state here between batches; a
//! batch stages its state changes, which [`Executor::commit`] applies once
//! the batch's outputs are written, so a failed batch is retried from the
//! state before it without a copy.

use std::collections::HashMap;
use std::sync::Arc;

use weir_abi::FunctionKind;

use super::{Graph, NodeId, NodeKind};
use crate::checkpoint::{RestoreError, Snapshot};
use crate::error::EngineError;
use crate::ops::fused::Upstream;
use crate::ops::{total_records, Inputs, MigrationError, OpContext, OpState, Partitions, Staged};
use crate::wasm::{CallMeter, Invocation, Limits, Plugin};

/// Why a plugin swap was refused (the job keeps running the old module).
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The job runs no plugin of that name.
    #[error("the job runs no plugin named `{plugin}`; it runs: {known}")]
    UnknownPlugin { plugin: String, known: String },
    /// The new module lacks functions the job calls.
    #[error("the new module for `{plugin}` lacks functions the job calls: {missing}")]
    MissingFunctions { plugin: String, missing: String },
    /// The state encoding changed and the new module cannot migrate it.
    #[error(
        "`{plugin}` changes its state version from {from} to {to} but exports no `migrate:state` function; \
         add a #[migrate] function (or keep the state version)"
    )]
    NoMigration { plugin: String, from: i32, to: i32 },
    /// Window contents would need a migration, which weir does not do.
    #[error("`{plugin}` changes its state version from {from} to {to}, but windows hold its values, which cannot be migrated")]
    WindowValues { plugin: String, from: i32, to: i32 },
    /// The migration function failed (nothing was changed).
    #[error("migrating the state of `{plugin}` failed: {source}")]
    MigrationFailed {
        plugin: String,
        #[source]
        source: MigrationError,
    },
    /// Nothing to roll back to.
    #[error("`{plugin}` has no previous version to roll back to")]
    NoPrevious { plugin: String },
    /// The job has ended.
    #[error("the job is not running")]
    NotRunning,
    /// Instances of a scaled-out job must run the same modules.
    #[error(
        "a scaled-out job's modules are its group's: stop every instance, then start them all with the new module"
    )]
    ScaledOut,
    /// The new module does not load.
    #[error(transparent)]
    Load(#[from] crate::wasm::LoadError),
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwapReport {
    /// Plugin name.
    pub plugin: String,
    /// Module hash before.
    pub from: String,
    /// Module hash after.
    pub to: String,
    /// Keys whose state went through `migrate:state`.
    pub migrated_keys: u64,
    /// The first batch that runs on the new module.
    pub first_batch_ms: i64,
}

/// Evaluates a graph batch after batch.
pub(crate) struct Executor {
    graph: Graph,
    pool: crate::worker_pool::WorkerPool,
    /// Partitions of this job that may run at once.
    workers: usize,
    job: Arc<str>,
    limits: Limits,
    partitions: usize,
    interval_ms: i64,
    /// Time before the first batch: slides count from here (Spark's zero time).
    zero_ms: Option<i64>,
    /// Per node, its state (stateful operators only).
    states: Vec<Option<Box<dyn OpState>>>,
    /// What the last batch staged, per node, until it is committed.
    pending: Vec<Option<Staged>>,
    /// The module each swapped plugin ran before its last swap.
    previous: HashMap<String, Plugin>,
    /// What each operator did in the last batch, in graph order, and that
    /// batch's time.
    operators: Vec<OperatorStats>,
    operators_at: Option<i64>,
    /// Per node, the plugin and function names its calls go to.
    functions: Vec<(String, String)>,
    /// Fusion and early drops.
    plan: Plan,
}

/// What one operator did in one batch: what the UI's batch detail, the
/// metrics and the listener events show.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OperatorStats {
    /// The stream it computes.
    pub name: String,
    /// The operator (`flat_map`, `reduce_by_key`, ...).
    pub op: String,
    /// Records of its inputs.
    pub records_in: u64,
    /// Records it produced (0 when it had no batch at this time).
    pub records_out: u64,
    /// Wall-clock time of the operator, plugin calls included.
    pub millis: f64,
    /// Plugin calls made.
    pub calls: u64,
    /// Fuel those calls used.
    pub fuel: u64,
    /// Calls that failed (a failed call fails the batch: only a
    /// [`BatchFailed`](crate::stream::events::BatchFailed) event shows them).
    pub failed_calls: u64,
    /// The plugin its calls go to (empty for host-native operators; names
    /// joined by `,` when it calls several plugins).
    #[serde(default)]
    pub plugin: String,
    /// The plugin functions it calls (empty for host-native operators;
    /// joined by `,` when it calls several).
    #[serde(default)]
    pub function: String,
}

/// State one stateful operator holds after a batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateSize {
    /// The stream whose operator keeps the state.
    pub name: String,
    /// The operator.
    pub op: String,
    /// Keys, where the state is keyed.
    pub keys: Option<u64>,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// The plugins and functions a node's operator calls, each list joined by
/// `,` without repeats (empty for sources and host-native operators).
fn node_functions(node: &mut crate::graph::Node) -> (String, String) {
    let NodeKind::Op(op) = &mut node.kind else {
        return Default::default();
    };
    let (mut plugins, mut functions) = (Vec::<String>::new(), Vec::<String>::new());
    for (f, _) in op.functions_mut() {
        let (plugin, function) = (f.plugin.name().to_string(), f.function.to_string());
        if !plugins.contains(&plugin) {
            plugins.push(plugin);
        }
        if !functions.contains(&function) {
            functions.push(function);
        }
    }
    (plugins.join(","), functions.join(","))
}

impl Executor {
    /// An executor running at most `workers` partitions at once on `pool`.
    pub(crate) fn new(
        graph: Graph,
        job: Arc<str>,
        pool: crate::worker_pool::WorkerPool,
        workers: usize,
        partitions: usize,
        interval_ms: i64,
        limits: Limits,
    ) -> Self {
        let mut graph = graph;
        let functions = graph.nodes.iter_mut().map(node_functions).collect();
        let states = graph
            .nodes
            .iter()
            .map(|n| n.op().and_then(|op| op.new_state()))
            .collect();
        Executor {
            pending: graph.nodes.iter().map(|_| None).collect(),
            graph,
            pool,
            workers: workers.max(1),
            job,
            limits,
            partitions,
            interval_ms,
            zero_ms: None,
            states,
            previous: Default::default(),
            operators: Vec::new(),
            operators_at: None,
            functions,
            plan: Plan::default(),
        }
    }

    /// What each operator did in the last batch run (graph order; sources
    /// and operators without a batch at that time are left out).
    pub(crate) fn operator_stats(&self) -> &[OperatorStats] {
        &self.operators
    }

    /// The batch [`Executor::operator_stats`] describe.
    pub(crate) fn operator_stats_at(&self) -> Option<i64> {
        self.operators_at
    }

    /// The names of the job's sources, indexed like its sources.
    pub(crate) fn source_names(&self) -> Vec<String> {
        let mut named: Vec<(usize, String)> = self
            .graph
            .nodes
            .iter()
            .filter_map(|n| match n.kind {
                NodeKind::Source(i) => Some((i, n.name.to_string())),
                NodeKind::Op(_) => None,
            })
            .collect();
        named.sort();
        named.into_iter().map(|(_, name)| name).collect()
    }

    /// The state each stateful operator holds (committed state).
    pub(crate) fn state_sizes(&self) -> Vec<StateSize> {
        self.graph
            .nodes
            .iter()
            .zip(&self.states)
            .filter_map(|(node, state)| {
                let state = state.as_deref()?;
                Some(StateSize {
                    name: node.name.to_string(),
                    op: node.op_name().to_owned(),
                    keys: state.keys(),
                    bytes: state.bytes(),
                })
            })
            .collect()
    }

    /// A fresh executor of the same graph and settings, without state:
    /// a scaled-out job's task.
    pub(crate) fn fresh(&self) -> Executor {
        let mut fresh = Executor::new(
            self.graph.clone(),
            self.job.clone(),
            self.pool.clone(),
            self.workers,
            self.partitions,
            self.interval_ms,
            self.limits,
        );
        fresh.plan = self.plan.clone();
        fresh
    }

    /// The graph it runs.
    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The job's name.
    pub(crate) fn job(&self) -> &Arc<str> {
        &self.job
    }

    /// Replaces the module behind plugin `name` with `new`, between batches.
    /// The new module must export every function the job calls with the
    /// same kinds; if its state version differs, every key's state of the
    /// state operators it serves is migrated through its `migrate:state`
    /// (with `migrate` false, as when restoring a checkpoint already
    /// migrated, state is left as is). All or nothing: on error nothing
    /// changes.
    pub(crate) fn swap(
        &mut self,
        name: &str,
        new: Plugin,
        batch_time_ms: i64,
        migrate: bool,
    ) -> Result<SwapReport, SwapError> {
        let current = self.graph.plugins();
        let Some(old) = current.get(name).cloned() else {
            return Err(SwapError::UnknownPlugin {
                plugin: name.into(),
                known: current.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let used: Vec<(FunctionKind, String)> = self
            .graph
            .function_refs_mut()
            .into_iter()
            .filter(|(f, _)| &**f.plugin.name() == name)
            .map(|(f, k)| (k, f.function.to_string()))
            .collect();
        let missing: Vec<String> = used
            .iter()
            .filter(|(k, f)| !new.has_function(*k, f))
            .map(|(k, f)| format!("{k}:{f}"))
            .collect();
        if !missing.is_empty() {
            return Err(SwapError::MissingFunctions {
                plugin: name.into(),
                missing: missing.join(", "),
            });
        }
        let (from, to) = (old.state_version(), new.state_version());
        let mut migrated: Vec<(usize, Box<dyn OpState>)> = Vec::new();
        let mut migrated_keys = 0;
        if migrate && from != to {
            if self
                .graph
                .nodes
                .iter()
                .filter_map(|n| n.op())
                .any(|op| op.holds_unmigratable_values_of(name))
            {
                return Err(SwapError::WindowValues {
                    plugin: name.into(),
                    from,
                    to,
                });
            }
            if !new.has_function(FunctionKind::Migrate, weir_abi::MIGRATE_FUNCTION) {
                return Err(SwapError::NoMigration {
                    plugin: name.into(),
                    from,
                    to,
                });
            }
            for (id, node) in self.graph.nodes.iter().enumerate() {
                let (Some(op), Some(state)) = (node.op(), self.states[id].as_deref()) else {
                    continue;
                };
                let invocation = |p: usize, n: usize| Invocation {
                    header: weir_abi::CallHeader {
                        batch_time_ms,
                        partition: p as u32,
                        num_partitions: n as u32,
                    },
                    job: Some(self.job.clone()),
                    operator: Some(node.name.clone()),
                    meter: None,
                    sequence: 0,
                    limits: self.limits,
                };
                match op.migrate_state(state, name, &new, &invocation) {
                    None => {}
                    Some(Ok((state, keys))) => {
                        migrated_keys += keys;
                        migrated.push((id, state));
                    }
                    Some(Err(source)) => {
                        return Err(SwapError::MigrationFailed {
                            plugin: name.into(),
                            source,
                        })
                    }
                }
            }
        }
        for (id, state) in migrated {
            self.states[id] = Some(state);
        }
        for (f, _) in self.graph.function_refs_mut() {
            if &**f.plugin.name() == name {
                f.plugin = new.clone();
            }
        }
        self.previous.insert(name.to_string(), old.clone());
        Ok(SwapReport {
            plugin: name.into(),
            from: old.hash_hex(),
            to: new.hash_hex(),
            migrated_keys,
            first_batch_ms: batch_time_ms,
        })
    }

    /// Swaps plugin `name` back to the module it ran before its last swap.
    pub(crate) fn rollback(
        &mut self,
        name: &str,
        batch_time_ms: i64,
    ) -> Result<SwapReport, SwapError> {
        let previous = self
            .previous
            .get(name)
            .cloned()
            .ok_or_else(|| SwapError::NoPrevious {
                plugin: name.into(),
            })?;
        self.swap(name, previous, batch_time_ms, true)
    }

    /// The plugins the job runs now, by name.
    pub(crate) fn plugins(&mut self) -> std::collections::BTreeMap<String, Plugin> {
        self.graph.plugins()
    }

    /// Total bytes of keys and values held as state (keyed state, window
    /// contents).
    #[cfg(test)]
    pub(crate) fn state_bytes(&self) -> u64 {
        self.states.iter().flatten().map(|s| s.bytes()).sum()
    }

    /// [`Executor::state_bytes`] once the last batch is committed.
    pub(crate) fn state_bytes_after(&self) -> u64 {
        self.states
            .iter()
            .zip(&self.pending)
            .filter_map(|(s, staged)| Some(s.as_ref()?.bytes_after(staged.as_ref())))
            .sum()
    }

    /// The time slides count from, once the first batch ran.
    pub(crate) fn zero_ms(&self) -> Option<i64> {
        self.zero_ms
    }

    /// Every stateful node's state, by stream name.
    pub(crate) fn snapshots(&self) -> Vec<(String, Snapshot)> {
        self.graph
            .nodes
            .iter()
            .zip(&self.states)
            .filter_map(|(n, s)| Some((n.name.to_string(), s.as_ref()?.snapshot())))
            .collect()
    }

    /// Restores node state and zero time from a checkpoint. A snapshot is
    /// found by its stream's name, or, `by_index` (format-1 checkpoints,
    /// which had no names), by `#index`.
    pub(crate) fn restore(
        &mut self,
        zero_ms: i64,
        snapshots: &[(String, Snapshot)],
        by_index: bool,
    ) -> Result<(), RestoreError> {
        for (id, node) in self.graph.nodes.iter().enumerate() {
            let Some(state) = self.states[id].as_mut() else {
                continue;
            };
            let key = if by_index {
                format!("#{id}")
            } else {
                node.name.to_string()
            };
            let Some((_, snapshot)) = snapshots.iter().find(|(name, _)| *name == key) else {
                return Err(RestoreError::Missing {
                    owner: node.name.to_string(),
                });
            };
            state
                .restore(snapshot)
                .map_err(|source| RestoreError::Snapshot {
                    owner: node.name.to_string(),
                    source,
                })?;
        }
        self.zero_ms = Some(zero_ms);
        Ok(())
    }

    /// Sets the zero time (replaying from the first batch).
    pub(crate) fn set_zero(&mut self, zero_ms: i64) {
        self.zero_ms.get_or_insert(zero_ms);
    }

    /// Applies the state changes of the last batch.
    pub(crate) fn commit(&mut self) {
        for (state, staged) in self.states.iter_mut().zip(&mut self.pending) {
            if let (Some(state), Some(staged)) = (state, staged.take()) {
                state.commit(staged);
            }
        }
    }

    /// Drops the state changes of the last batch (it failed).
    pub(crate) fn discard(&mut self) {
        self.pending.iter_mut().for_each(|p| *p = None);
    }

    /// Tells the executor which streams are read after a batch (the
    /// outputs'). Then every other stream's batch is dropped as soon as its
    /// last reader ran (unless `keep_all`: a replay compares every stream),
    /// and a map-kind stream that is not an output and is read only by a
    /// reducing operator (`reduce_by_key`, a windowed reduction) is fused
    /// into that operator's map-side combine ([`crate::ops::fused`]): it
    /// never has a batch of its own. Fusion depends on the pipeline and
    /// its outputs alone, so a run, its recovery and its replay fuse alike.
    pub(crate) fn observe(&mut self, outputs: &[NodeId], keep_all: bool) {
        let nodes = &self.graph.nodes;
        let mut readers: Vec<Vec<NodeId>> = vec![Vec::new(); nodes.len()];
        for (id, node) in nodes.iter().enumerate() {
            for &i in &node.inputs {
                if !readers[i].contains(&id) {
                    readers[i].push(id);
                }
            }
        }
        let mut plan = Plan {
            fused_from: vec![None; nodes.len()],
            fused: vec![false; nodes.len()],
            drop_after: vec![Vec::new(); nodes.len()],
        };
        for (m, node) in nodes.iter().enumerate() {
            let fusable = node.op().and_then(|op| op.as_map()).is_some()
                && !outputs.contains(&m)
                && readers[m].len() == 1
                && node.inputs.len() == 1;
            if !fusable {
                continue;
            }
            let r = readers[m][0];
            let reader = &nodes[r];
            if reader.inputs == [m] && reader.op().is_some_and(|op| op.fuses_map()) {
                plan.fused_from[r] = Some(m);
                plan.fused[m] = true;
            }
        }
        if !keep_all {
            for (i, readers) in readers.iter().enumerate() {
                if let (Some(&last), false) = (readers.iter().max(), outputs.contains(&i)) {
                    plan.drop_after[last].push(i);
                }
            }
        }
        self.plan = plan;
    }

    /// Computes every node for the batch at `batch_time_ms`, given each
    /// source's partitions (indexed like the job's sources). A node has
    /// `None` when it has no batch at this time (between window slides),
    /// when it was fused into its reader, or when it was dropped after
    /// use ([`Executor::observe`]). State changes are staged until
    /// [`Executor::commit`].
    pub(crate) fn run_batch(
        &mut self,
        batch_time_ms: i64,
        sources: &[Option<Arc<Partitions>>],
    ) -> Result<Vec<Option<Arc<Partitions>>>, EngineError> {
        let t = batch_time_ms;
        let zero = *self.zero_ms.get_or_insert(t - self.interval_ms);
        self.discard();
        self.operators.clear();
        self.operators_at = Some(t);
        let mut values: Vec<Option<Arc<Partitions>>> = Vec::with_capacity(self.graph.nodes.len());
        for (id, node) in self.graph.nodes.iter().enumerate() {
            let op = match &node.kind {
                NodeKind::Source(s) => {
                    values.push(Some(sources.get(*s).cloned().flatten().unwrap_or_else(
                        || Arc::new(vec![Default::default(); self.partitions]),
                    )));
                    continue;
                }
                NodeKind::Op(op) => op,
            };
            if self.plan.fused.get(id) == Some(&true) {
                // Computed inside its reader.
                values.push(None);
                continue;
            }
            let _span =
                tracing::debug_span!("operator", name = %node.name, op = node.op_name()).entered();
            let fused_from = self.plan.fused_from.get(id).copied().flatten();
            // A fused reader reads what its map reads.
            let read = match fused_from {
                Some(m) => &self.graph.nodes[m].inputs,
                None => &node.inputs,
            };
            let Some(batches) = read
                .iter()
                .map(|&i| values[i].as_ref())
                .collect::<Option<Vec<_>>>()
            else {
                values.push(None);
                continue;
            };
            let map_cx = fused_from.map(|m| self.context(&self.graph.nodes[m], t));
            let upstream = fused_from.zip(map_cx.as_ref()).map(|(m, cx)| Upstream {
                map: self.graph.nodes[m]
                    .op()
                    .and_then(|op| op.as_map())
                    .expect("planned as a map"),
                cx,
                mapped: Default::default(),
            });
            let inputs = Inputs {
                batches,
                states: node
                    .inputs
                    .iter()
                    .map(|&i| self.states[i].as_deref())
                    .collect(),
                staged: node
                    .inputs
                    .iter()
                    .map(|&i| self.pending[i].as_ref())
                    .collect(),
                due: (t - zero) % node.slide_ms == 0,
                upstream: upstream.as_ref(),
            };
            let cx = self.context(node, t);
            let records_in = inputs.batches.iter().map(|b| total_records(b) as u64).sum();
            let started = std::time::Instant::now();
            let result = op.run(&cx, &inputs, self.states[id].as_deref());
            drop(inputs);
            let meter = cx
                .meter
                .clone()
                .expect("the executor meters every operator");
            drop(cx);
            let mut millis = started.elapsed().as_secs_f64() * 1e3;
            let mut records_in = records_in;
            if let (Some(m), Some(up)) = (fused_from, upstream) {
                let map = self.fused_stats(m, &up, records_in, result.is_ok());
                (millis, records_in) = ((millis - map.millis).max(0.0), map.records_out);
                self.operators.push(map);
            }
            // Also for a failed operator: its calls and fuel are reported
            // with the failed attempt.
            self.operators.push(OperatorStats {
                name: node.name.to_string(),
                op: node.op_name().to_owned(),
                records_in,
                records_out: result
                    .as_ref()
                    .ok()
                    .and_then(|step| step.out.as_deref())
                    .map_or(0, |p| total_records(p) as u64),
                millis,
                calls: meter.calls(),
                fuel: meter.fuel(),
                failed_calls: meter.failures(),
                plugin: self.functions[id].0.clone(),
                function: self.functions[id].1.clone(),
            });
            let step = result?;
            self.pending[id] = step.staged;
            values.push(step.out);
            for &i in self.plan.drop_after.get(id).into_iter().flatten() {
                values[i] = None;
            }
        }
        Ok(values)
    }

    /// The context of `node`'s operator in the batch at `t`, with a fresh
    /// meter.
    fn context<'a>(&'a self, node: &crate::graph::Node, t: i64) -> OpContext<'a> {
        OpContext {
            pool: &self.pool,
            share: self.workers,
            job: self.job.clone(),
            operator: node.name.clone(),
            op: node.op_name(),
            batch_time_ms: t,
            limits: self.limits,
            meter: Some(Arc::new(CallMeter::default())),
        }
    }

    /// What map node `m`, fused into its reader, did: its time is that of
    /// its calls.
    fn fused_stats(
        &self,
        m: NodeId,
        up: &Upstream<'_>,
        records_in: u64,
        ok: bool,
    ) -> OperatorStats {
        let meter = up.cx.meter.as_deref().expect("a fresh meter");
        let parts = self.graph.nodes[m].partitions;
        OperatorStats {
            name: self.graph.nodes[m].name.to_string(),
            op: self.graph.nodes[m].op_name().to_owned(),
            records_in,
            records_out: if ok {
                up.mapped.load(std::sync::atomic::Ordering::Relaxed)
            } else {
                0
            },
            // Its calls ran on the workers side by side: their summed time
            // over the workers is its share of the fused stage.
            millis: meter.nanos() as f64 / 1e6 / self.workers.min(parts).max(1) as f64,
            calls: meter.calls(),
            fuel: meter.fuel(),
            failed_calls: meter.failures(),
            plugin: self.functions[m].0.clone(),
            function: self.functions[m].1.clone(),
        }
    }
}

/// How the executor runs the graph beyond node by node: see
/// [`Executor::observe`]. Empty (nothing fused or dropped) until then.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// Per node: the map node fused into it.
    fused_from: Vec<Option<NodeId>>,
    /// Per node: whether it is fused into its reader.
    fused: Vec<bool>,
    /// Per node: the streams to drop once it ran.
    drop_after: Vec<Vec<NodeId>>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weir_abi::RecordBatch;

    use super::*;
    use crate::graph::{Graph, NodeKind};
    use crate::ops::spec::{ArgValue, Args, InputInfo};
    use crate::ops::{registry, ValueKind};
    use crate::worker_pool::WorkerPool;

    /// source → count_by_value_and_window (two stages, the second with
    /// window state), built from the registry as the API builds it.
    fn executor() -> Executor {
        let mut graph = Graph::default();
        let src = graph.add("src".into(), NodeKind::Source(0), vec![], 1000, 2);
        let desc = registry::find("count_by_value_and_window").unwrap();
        let args = Args::check(
            desc,
            [
                ("length", ArgValue::Duration(Duration::from_secs(2))),
                ("partitions", ArgValue::Number(2)),
            ]
            .into_iter()
            .collect(),
            vec![InputInfo {
                name: "src".into(),
                partitions: 2,
                slide_ms: 1000,
                value_kind: ValueKind::Opaque,
                state_partitions: None,
            }],
        )
        .unwrap();
        let mut input = src;
        for (i, stage) in (desc.build)(&args).unwrap().into_iter().enumerate() {
            input = graph.add(
                format!("n{i}").into(),
                NodeKind::Op(stage.op),
                vec![input],
                1000,
                stage.partitions,
            );
        }
        let pool = WorkerPool::new(Duration::from_secs(1), 2);
        Executor::new(graph, "t".into(), pool, 2, 2, 1000, Limits::default())
    }

    fn batch(words: &[&str]) -> Option<Arc<Partitions>> {
        let (a, b) = words.split_at(words.len() / 2);
        let part = |ws: &[&str]| {
            ws.iter()
                .map(|w| (&b""[..], w.as_bytes()))
                .collect::<RecordBatch>()
        };
        Some(Arc::new(vec![part(a), part(b)]))
    }

    fn last(values: &[Option<Arc<Partitions>>]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut recs: Vec<_> = values
            .last()
            .unwrap()
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|p| p.iter().map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect();
        recs.sort();
        recs
    }

    #[test]
    fn a_discarded_batch_leaves_the_state_as_it_was() {
        let mut ex = executor();
        ex.run_batch(1000, &[batch(&["a", "b", "a"])]).unwrap();
        ex.commit();
        let bytes = ex.state_bytes();
        let first = last(&ex.run_batch(2000, &[batch(&["a", "c"])]).unwrap());
        ex.discard();
        assert_eq!(ex.state_bytes(), bytes, "nothing committed");
        let again = last(&ex.run_batch(2000, &[batch(&["a", "c"])]).unwrap());
        assert_eq!(
            first, again,
            "the same batch on the same state, the same output"
        );
        let projected = ex.state_bytes_after();
        ex.commit();
        assert_ne!(ex.state_bytes(), bytes, "committed");
        assert_eq!(
            ex.state_bytes(),
            projected,
            "the limit sees what a commit gives"
        );
        // a:2+1, b:1, c:1 over (0, 2000]
        let count = |n: i64| n.to_le_bytes().to_vec();
        assert_eq!(
            again,
            vec![
                (b"a".to_vec(), count(3)),
                (b"b".to_vec(), count(1)),
                (b"c".to_vec(), count(1)),
            ]
        );
    }

    #[test]
    fn snapshots_restore_into_a_fresh_executor() {
        let mut ex = executor();
        for (i, words) in [&["a", "b"][..], &["b"], &["c", "c"]].iter().enumerate() {
            ex.run_batch(1000 * (i as i64 + 1), &[batch(words)])
                .unwrap();
            ex.commit();
        }
        let snapshots = ex.snapshots();
        assert_eq!(snapshots.len(), 1, "one stateful node: {snapshots:?}");
        let mut restored = executor();
        restored.restore(0, &snapshots, false).unwrap();
        let next = [batch(&["a", "d"])];
        assert_eq!(
            last(&ex.run_batch(4000, &next).unwrap()),
            last(&restored.run_batch(4000, &next).unwrap())
        );
        let mut wrong = snapshots.clone();
        wrong[0].1.kind = "keyed_state".into();
        let err = executor()
            .restore(0, &wrong, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`keyed_state` snapshot") && err.contains("n1"),
            "{err}"
        );
    }
}
