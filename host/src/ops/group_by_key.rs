//! `group_by_key`: shuffle by key, then one record per key whose value is
//! the canonical list of its values in arrival order.

use weir_abi::{canonical, RecordBatch};

use super::spec::{Arity, OpDesc, Stage, PARTITIONS};
use super::{group, shuffle, Inputs, OpContext, OpState, Operator, Partitions, Step, ValueKind};
use crate::error::EngineError;

pub(crate) static GROUP_BY_KEY: OpDesc = OpDesc {
    name: "group_by_key",
    spark: "groupByKey",
    arity: Arity::One,
    params: &[PARTITIONS],
    shuffles: true,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "`(key, list of values)`",
    build: |args| {
        let partitions = args.shuffle_partitions();
        Ok(vec![Stage::new(GroupByKey { partitions }, partitions)])
    },
};

/// `group_by_key`.
#[derive(Debug, Clone)]
pub(crate) struct GroupByKey {
    partitions: usize,
}

impl Operator for GroupByKey {
    fn desc(&self) -> &'static OpDesc {
        &GROUP_BY_KEY
    }

    fn describe(&self) -> String {
        format!("partitions {}", self.partitions)
    }

    fn value_kind(&self, _: &[ValueKind]) -> ValueKind {
        ValueKind::List
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        apply(cx, inputs.batches[0], self.partitions).map(Step::output)
    }
}

/// Runs `group_by_key` into `partitions` output partitions.
pub(crate) fn apply(
    ctx: &OpContext<'_>,
    input: &[RecordBatch],
    partitions: usize,
) -> Result<Partitions, EngineError> {
    let shuffled = shuffle(ctx, input, partitions)?;
    ctx.par_map(&shuffled, |_, batch| {
        Ok(group(batch)
            .into_iter()
            .map(|(k, vs)| (k, canonical::encode_list(vs.into_iter())))
            .collect::<RecordBatch>())
    })
}
