//! Runs one batch through the graph: every node once, in topological order,
//! each operator's partitions in parallel on the worker pool. Nodes with a
//! slide (windows and what follows them) have a batch only at their slide
//! times; stateful nodes keep their state here between batches.

use std::sync::Arc;

use crate::error::EngineError;
use crate::ops::state::{self, StateStore};
use crate::ops::window::{WindowBuffer, WindowedState};
use crate::ops::{self, OpContext, Partitions};
use crate::stream::graph::{Combiner, Graph, Op};
use crate::wasm::Limits;

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
        })
    }

    /// The graph.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// The state of every node.
    pub fn states(&self) -> &[NodeState] {
        &self.states
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
