//! `reduce_by_key`: combine within each input partition (map-side
//! combine), shuffle the partial results by key, combine again.

use weir_abi::RecordBatch;

use super::combine::combine_partition;
use weir_abi::FunctionKind;

use super::spec::{function, Arity, OpDesc, Stage, PARTITIONS};
use super::{
    shuffle, Combiner, FunctionRef, Inputs, OpContext, OpState, Operator, Partitions, Step,
};
use crate::error::EngineError;

pub(crate) static REDUCE_BY_KEY: OpDesc = OpDesc {
    name: "reduce_by_key",
    spark: "reduceByKey",
    arity: Arity::One,
    params: &[function(FunctionKind::Reduce), PARTITIONS],
    shuffles: true,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "`(key, combined value)`; combines within partitions before the shuffle",
    build: |args| {
        let partitions = args.shuffle_partitions();
        let op = ReduceByKey {
            func: args.the_function(),
            partitions,
        };
        Ok(vec![Stage::new(op, partitions)])
    },
};

/// `reduce_by_key`.
#[derive(Debug, Clone)]
pub(crate) struct ReduceByKey {
    func: FunctionRef,
    partitions: usize,
}

impl Operator for ReduceByKey {
    fn desc(&self) -> &'static OpDesc {
        &REDUCE_BY_KEY
    }

    fn describe(&self) -> String {
        format!("{}, partitions {}", self.func.label(), self.partitions)
    }

    fn functions_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        vec![(&mut self.func, FunctionKind::Reduce)]
    }

    fn fuses_map(&self) -> bool {
        true
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        inputs
            .reduce_by_key(cx, &Combiner::of(&self.func), self.partitions)
            .map(Step::output)
    }
}

/// Runs `reduce_by_key` into `partitions` output partitions.
pub(crate) fn apply(
    ctx: &OpContext<'_>,
    combiner: &Combiner,
    input: &[RecordBatch],
    partitions: usize,
) -> Result<Partitions, EngineError> {
    let n = input.len();
    let combined = ctx.par_map_batches(input, |p, batch| {
        combine_partition(ctx, combiner, batch, p, n)
    })?;
    let shuffled = shuffle(ctx, &combined, partitions)?;
    ctx.par_map_batches(&shuffled, |p, batch| {
        combine_partition(ctx, combiner, batch, p, partitions)
    })
}
