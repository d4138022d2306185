//! Runs one batch through the graph: every node once, in topological order,
//! each operator's partitions in parallel on the worker pool. Nodes with a
//! slide (windows and what follows them) have a batch only at their slide
//! times; stateful nodes keep their state here between batches.

use std::sync::Arc;

use crate::error::EngineError;
use crate::ops::state::StateEntry;
use crate::ops::state::{self, StateStore};
use crate::ops::window::{WindowBuffer, WindowedState};
use crate::ops::{self, OpContext, Partitions};
use crate::stream::graph::{Combiner, Graph, Op};
use crate::wasm::{Invocation, Limits, Plugin};
use weir_abi::FunctionKind;

/// What a node keeps between batches (serialised into checkpoints).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub enum NodeState {
    /// Nothing.
    #[default]
    Stateless,
    /// `window`'s recent batches.
    Window(WindowBuffer),
    /// A windowed reduction's per-batch reductions and last window.
    Reduce(WindowedState),
    /// Keyed state, one store per partition (`None` until the first batch).
    Keyed(Option<Vec<StateStore>>),
}

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
    #[error("migrating the state of `{plugin}` failed: {message}")]
    MigrationFailed { plugin: String, message: String },
    /// Nothing to roll back to.
    #[error("`{plugin}` has no previous version to roll back to")]
    NoPrevious { plugin: String },
    /// The job has ended.
    #[error("the job is not running")]
    NotRunning,
    /// The new module does not load.
    #[error("{0}")]
    Load(String),
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
pub struct Executor {
    graph: Arc<Graph>,
    pool: rayon::ThreadPool,
    job: Arc<str>,
    limits: Limits,
    partitions: usize,
    interval_ms: i64,
    /// Time before the first batch: slides count from here (Spark's zero time).
    zero_ms: Option<i64>,
    states: Vec<NodeState>,
    /// The module each swapped plugin ran before its last swap.
    previous: std::collections::HashMap<String, Plugin>,
}

impl Executor {
    /// An executor with `workers` threads.
    pub fn new(
        graph: Arc<Graph>,
        job: Arc<str>,
        workers: usize,
        partitions: usize,
        interval_ms: i64,
        limits: Limits,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(|i| format!("weir-worker-{i}"))
            .build()?;
        let states = graph
            .nodes
            .iter()
            .map(|n| match &n.op {
                Op::Window { .. } => NodeState::Window(WindowBuffer::default()),
                Op::ReduceByKeyAndWindow(_) => NodeState::Reduce(WindowedState::default()),
                Op::State(_) => NodeState::Keyed(None),
                _ => NodeState::Stateless,
            })
            .collect();
        Ok(Executor {
            graph,
            pool,
            job,
            limits,
            partitions,
            interval_ms,
            zero_ms: None,
            states,
            previous: Default::default(),
        })
    }

    /// The job's name.
    pub fn job(&self) -> &Arc<str> {
        &self.job
    }

    /// The state of every node.
    pub fn states(&self) -> &[NodeState] {
        &self.states
    }

    /// Replaces the module behind plugin `name` with `new`, between batches.
    /// The new module must export every function the job calls with the
    /// same kinds; if its state version differs, every key's state of the
    /// state operators it serves is migrated through its `migrate:state`
    /// (with `migrate` false, as when restoring a checkpoint already
    /// migrated, state is left as is). All or nothing: on error nothing
    /// changes.
    pub fn swap(
        &mut self,
        name: &str,
        new: Plugin,
        batch_time_ms: i64,
        migrate: bool,
    ) -> Result<SwapReport, SwapError> {
        let graph = Arc::make_mut(&mut self.graph);
        let current = graph.plugins();
        let Some(old) = current.get(name).cloned() else {
            return Err(SwapError::UnknownPlugin {
                plugin: name.into(),
                known: current.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let used: Vec<(FunctionKind, String)> = graph
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
        let mut migrated: Vec<(usize, Vec<StateStore>)> = Vec::new();
        let mut migrated_keys = 0;
        if migrate && from != to {
            let windows = graph.nodes.iter().any(|n| match &n.op {
                Op::ReduceByKeyAndWindow(w) => [Some(&w.combine), w.inverse.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|c| matches!(c, Combiner::Plugin(f) if &**f.plugin.name() == name)),
                _ => false,
            });
            if windows {
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
            for (id, node) in graph.nodes.iter().enumerate() {
                let Op::State(spec) = &node.op else { continue };
                if &**spec.func.plugin.name() != name {
                    continue;
                }
                let NodeState::Keyed(Some(stores)) = &self.states[id] else {
                    continue;
                };
                let n = stores.len();
                let mut next = Vec::with_capacity(n);
                for (p, store) in stores.iter().enumerate() {
                    let inv = Invocation {
                        header: weir_abi::CallHeader {
                            batch_time_ms,
                            partition: p as u32,
                            num_partitions: n as u32,
                        },
                        job: Some(self.job.clone()),
                        operator: Some(node.name.clone()),
                        limits: self.limits,
                    };
                    let out = new
                        .call(
                            FunctionKind::Migrate,
                            weir_abi::MIGRATE_FUNCTION,
                            &inv,
                            store.snapshot().as_bytes(),
                        )
                        .map_err(|e| e.to_string())
                        .and_then(|b| {
                            weir_abi::RecordBatch::from_bytes(b)
                                .map_err(|e| format!("malformed output: {e}"))
                        })
                        .map_err(|message| SwapError::MigrationFailed {
                            plugin: name.into(),
                            message,
                        })?;
                    let mut migrated_store = StateStore::default();
                    for (k, v) in out.iter() {
                        let Some(old_entry) = store.entries.get(k) else {
                            return Err(SwapError::MigrationFailed {
                                plugin: name.into(),
                                message: format!(
                                    "returned a key that had no state: {}",
                                    String::from_utf8_lossy(k)
                                ),
                            });
                        };
                        migrated_store.entries.insert(
                            k.to_vec(),
                            StateEntry {
                                value: v.to_vec(),
                                last_active_ms: old_entry.last_active_ms,
                            },
                        );
                        migrated_keys += 1;
                    }
                    next.push(migrated_store);
                }
                migrated.push((id, next));
            }
        }
        for (id, stores) in migrated {
            self.states[id] = NodeState::Keyed(Some(stores));
        }
        for (f, _) in graph.function_refs_mut() {
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
    pub fn rollback(&mut self, name: &str, batch_time_ms: i64) -> Result<SwapReport, SwapError> {
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
    pub fn plugins(&mut self) -> std::collections::BTreeMap<String, Plugin> {
        Arc::make_mut(&mut self.graph).plugins()
    }

    /// Total bytes of keys and values held as state (keyed state, window
    /// contents), for the state-size limit.
    pub fn state_bytes(&self) -> u64 {
        let batches = |parts: &[weir_abi::RecordBatch]| {
            parts.iter().map(|b| b.byte_len() as u64).sum::<u64>()
        };
        self.states
            .iter()
            .map(|s| match s {
                NodeState::Stateless | NodeState::Keyed(None) => 0,
                NodeState::Keyed(Some(stores)) => stores
                    .iter()
                    .flat_map(|s| s.entries.iter())
                    .map(|(k, e)| (k.len() + e.value.len()) as u64)
                    .sum(),
                NodeState::Window(w) => w.batches.iter().map(|(_, p)| batches(p)).sum(),
                NodeState::Reduce(r) => {
                    r.batches.iter().map(|(_, p)| batches(p)).sum::<u64>()
                        + r.current
                            .iter()
                            .flatten()
                            .flat_map(|m| m.iter())
                            .map(|(k, v)| (k.len() + v.len()) as u64)
                            .sum::<u64>()
                }
            })
            .sum()
    }

    /// The time slides count from, once the first batch ran.
    pub fn zero_ms(&self) -> Option<i64> {
        self.zero_ms
    }

    /// Restores node state and zero time from a checkpoint.
    pub fn restore(&mut self, zero_ms: i64, states: Vec<NodeState>) {
        self.zero_ms = Some(zero_ms);
        self.states = states;
    }

    /// Sets the zero time (replaying from the first batch).
    pub fn set_zero(&mut self, zero_ms: i64) {
        self.zero_ms.get_or_insert(zero_ms);
    }

    /// Computes every node for the batch at `batch_time_ms`, given each
    /// source's partitions (indexed like the context's sources). A node has
    /// `None` when it has no batch at this time (between window slides).
    pub fn run_batch(
        &mut self,
        batch_time_ms: i64,
        mut sources: Vec<Option<Partitions>>,
    ) -> Result<Vec<Option<Arc<Partitions>>>, EngineError> {
        let t = batch_time_ms;
        let zero = *self.zero_ms.get_or_insert(t - self.interval_ms);
        let mut values: Vec<Option<Arc<Partitions>>> = Vec::with_capacity(self.graph.nodes.len());
        for (id, node) in self.graph.nodes.iter().enumerate() {
            let _span =
                tracing::debug_span!("operator", name = %node.name, op = node.op.name()).entered();
            let ctx = OpContext {
                pool: &self.pool,
                job: self.job.clone(),
                operator: node.name.clone(),
                op: node.op.name(),
                batch_time_ms: t,
                limits: self.limits,
            };
            let due = (t - zero) % node.slide_ms == 0;
            let inputs: Option<Vec<&Arc<Partitions>>> =
                node.inputs.iter().map(|&i| values[i].as_ref()).collect();
            let out: Option<Partitions> = match (&node.op, inputs) {
                (Op::Source(s), _) => Some(
                    sources[*s]
                        .take()
                        .unwrap_or_else(|| vec![Default::default(); self.partitions]),
                ),
                (Op::StateSnapshots { of }, _) => match (&values[*of], &self.states[*of]) {
                    (Some(_), NodeState::Keyed(Some(stores))) => Some(state::snapshots(stores)),
                    _ => None,
                },
                (_, None) => None,
                (Op::Window { length_ms, .. }, Some(inputs)) => {
                    let NodeState::Window(buf) = &mut self.states[id] else {
                        unreachable!("window state")
                    };
                    buf.push(t, inputs[0].clone(), *length_ms);
                    due.then(|| buf.window(t, *length_ms))
                }
                (Op::ReduceByKeyAndWindow(spec), Some(inputs)) => {
                    let NodeState::Reduce(st) = &mut self.states[id] else {
                        unreachable!("reduce state")
                    };
                    st.step(&ctx, spec, t, inputs[0], due)?
                }
                (Op::State(spec), Some(inputs)) => {
                    let NodeState::Keyed(stores) = &mut self.states[id] else {
                        unreachable!("keyed state")
                    };
                    let stores = stores.get_or_insert_with(|| state::initial_stores(spec, t));
                    Some(state::update(&ctx, spec, inputs[0], stores, t)?)
                }
                (op, Some(inputs)) => Some(eval_stateless(&ctx, op, &inputs)?),
            };
            values.push(out.map(Arc::new));
        }
        Ok(values)
    }
}

fn eval_stateless(
    ctx: &OpContext<'_>,
    op: &Op,
    inputs: &[&Arc<Partitions>],
) -> Result<Partitions, EngineError> {
    Ok(match op {
        Op::Map { flavor, func } => ops::map::apply(ctx, *flavor, func, inputs[0])?,
        Op::Repartition { partitions } => ops::repartition::repartition(inputs[0], *partitions),
        Op::Union => {
            let slices: Vec<&[weir_abi::RecordBatch]> =
                inputs.iter().map(|p| p.as_slice()).collect();
            ops::repartition::union(&slices)
        }
        Op::Count => ops::count::count(inputs[0]),
        Op::Top { n } => ops::count::top(inputs[0], *n),
        Op::Reduce { func } => ops::count::reduce(ctx, func, inputs[0])?,
        Op::CountByValue { partitions } => ops::count::count_by_value(ctx, inputs[0], *partitions)?,
        Op::ReduceByKey { func, partitions } => {
            ops::reduce_by_key::apply(ctx, &Combiner::Plugin(func.clone()), inputs[0], *partitions)?
        }
        Op::GroupByKey { partitions } => ops::group_by_key::apply(ctx, inputs[0], *partitions)?,
        Op::Join { kind, partitions } => {
            ops::join::join(ctx, *kind, inputs[0], inputs[1], *partitions)?
        }
        Op::CoGroup { partitions } => ops::join::cogroup(ctx, inputs[0], inputs[1], *partitions)?,
        Op::Source(_)
        | Op::Window { .. }
        | Op::ReduceByKeyAndWindow(_)
        | Op::State(_)
        | Op::StateSnapshots { .. } => {
            unreachable!("handled by the executor")
        }
    })
}
