//! Runs one batch through the graph: every node once, in topological order,
//! each operator's partitions in parallel on the worker pool.

use std::sync::Arc;

use crate::error::EngineError;
use crate::ops::{self, OpContext, Partitions};
use crate::stream::graph::{Graph, Op};
use crate::wasm::Limits;

/// Evaluates a graph batch after batch.
pub struct Executor {
    graph: Arc<Graph>,
    pool: rayon::ThreadPool,
    job: Arc<str>,
    limits: Limits,
    partitions: usize,
}

impl Executor {
    /// An executor with `workers` threads.
    pub fn new(
        graph: Arc<Graph>,
        job: Arc<str>,
        workers: usize,
        partitions: usize,
        limits: Limits,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(|i| format!("weir-worker-{i}"))
            .build()?;
        Ok(Executor {
            graph,
            pool,
            job,
            limits,
            partitions,
        })
    }

    /// The graph.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// Computes every node for the batch at `batch_time_ms`, given each
    /// source node's partitions (indexed like the context's sources).
    pub fn run_batch(
        &self,
        batch_time_ms: i64,
        mut sources: Vec<Option<Partitions>>,
    ) -> Result<Vec<Arc<Partitions>>, EngineError> {
        let mut values: Vec<Arc<Partitions>> = Vec::with_capacity(self.graph.nodes.len());
        for node in &self.graph.nodes {
            let _span =
                tracing::debug_span!("operator", name = %node.name, op = node.op.name()).entered();
            let ctx = OpContext {
                pool: &self.pool,
                job: self.job.clone(),
                operator: node.name.clone(),
                op: node.op.name(),
                batch_time_ms,
                limits: self.limits,
            };
            let input = |i: usize| -> &Partitions { &values[node.inputs[i]] };
            let out = match &node.op {
                Op::Source(s) => sources[*s]
                    .take()
                    .unwrap_or_else(|| vec![Default::default(); self.partitions]),
                Op::Map { flavor, func } => ops::map::apply(&ctx, *flavor, func, input(0))?,
                Op::Repartition { partitions } => {
                    ops::repartition::repartition(input(0), *partitions)
                }
                Op::Union => {
                    let inputs: Vec<&[weir_abi::RecordBatch]> = (0..node.inputs.len())
                        .map(|i| input(i).as_slice())
                        .collect();
                    ops::repartition::union(&inputs)
                }
                Op::Count => ops::count::count(input(0)),
                Op::Reduce { func } => ops::count::reduce(&ctx, func, input(0))?,
                Op::CountByValue { partitions } => {
                    ops::count::count_by_value(&ctx, input(0), *partitions)?
                }
                Op::ReduceByKey { func, partitions } => {
                    ops::reduce_by_key::apply(&ctx, func, input(0), *partitions)?
                }
                Op::GroupByKey { partitions } => {
                    ops::group_by_key::apply(&ctx, input(0), *partitions)?
                }
                Op::Join { kind, partitions } => {
                    ops::join::join(&ctx, *kind, input(0), input(1), *partitions)?
                }
                Op::CoGroup { partitions } => {
                    ops::join::cogroup(&ctx, input(0), input(1), *partitions)?
                }
            };
            values.push(Arc::new(out));
        }
        Ok(values)
    }
}
