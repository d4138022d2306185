//! `top(n)`: the records with the largest counts, in one partition.

use weir_abi::{canonical, RecordBatch};

use super::spec::{Arity, OpDesc, Param, ParamKind, Stage};
use super::{Inputs, OpContext, OpState, Operator, Partitions, Step, ValueKind};
use crate::error::{BuildError, EngineError};

pub(crate) static TOP: OpDesc = OpDesc {
    name: "top",
    spark: "top",
    arity: Arity::One,
    params: &[Param::optional("n", ParamKind::Count, "records kept [default: 10]")],
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "the `n` records with the largest counts, largest first (ties by key), after a counting operator",
    build: |args| {
        let input = args.input(0);
        if input.value_kind != ValueKind::Count {
            return Err(BuildError::WrongInput {
                op: "top",
                input: input.name.clone(),
                requirement: "does not hold counts; use it after count_by_value, count_by_value_and_window or count",
            });
        }
        let n = args.number("n").unwrap_or(10);
        Ok(vec![Stage::new(Top { n }, 1)])
    },
};

/// `top`.
#[derive(Debug, Clone)]
pub(crate) struct Top {
    n: usize,
}

impl Operator for Top {
    fn desc(&self) -> &'static OpDesc {
        &TOP
    }

    fn describe(&self) -> String {
        format!("n {}", self.n)
    }

    fn value_kind(&self, inputs: &[ValueKind]) -> ValueKind {
        inputs[0]
    }

    fn run(
        &self,
        _: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        Ok(Step::output(top(inputs.batches[0], self.n)))
    }
}

/// The `n` records with the largest canonical counts, largest first, ties
/// broken by key bytes; one partition.
pub(crate) fn top(input: &[RecordBatch], n: usize) -> Partitions {
    let mut all: Vec<(i64, &[u8], &[u8])> = input
        .iter()
        .flat_map(|b| b.iter())
        .map(|(k, v)| (canonical::decode_count(v).unwrap_or(i64::MIN), k, v))
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    vec![all.into_iter().take(n).map(|(_, k, v)| (k, v)).collect()]
}
