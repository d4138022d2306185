//! `glom`: each partition becomes one record holding all its elements
//! (Spark's `glom`, which turns a partition into an array).

use weir_abi::{canonical, RecordBatch};

use super::count::element;
use super::spec::{Arity, OpDesc, Stage};
use super::{Inputs, OpContext, OpState, Operator, Step, ValueKind};
use crate::error::EngineError;

pub(crate) static GLOM: OpDesc = OpDesc {
    name: "glom",
    spark: "glom",
    arity: Arity::One,
    params: &[],
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "one record per partition: empty key, the canonical list of its elements (as `count_by_value` frames them), also for empty partitions",
    build: |args| Ok(vec![Stage::new(Glom, args.input(0).partitions)]),
};

/// `glom`.
#[derive(Debug, Clone)]
pub(crate) struct Glom;

impl Operator for Glom {
    fn desc(&self) -> &'static OpDesc {
        &GLOM
    }

    fn describe(&self) -> String {
        String::new()
    }

    fn value_kind(&self, _: &[ValueKind]) -> ValueKind {
        ValueKind::List
    }

    fn run(
        &self,
        _: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let out = inputs.batches[0]
            .iter()
            .map(|batch| {
                let elements: Vec<_> = batch.iter().map(|(k, v)| element(k, v)).collect();
                let list = canonical::encode_list(elements.iter().map(|e| e.as_ref()));
                [(&b""[..], &list[..])].into_iter().collect::<RecordBatch>()
            })
            .collect();
        Ok(Step::output(out))
    }
}
