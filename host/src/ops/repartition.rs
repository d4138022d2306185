//! `repartition(n)` and `union`.

use weir_abi::RecordBatch;

use super::spec::{Arity, OpDesc, Param, ParamKind, Stage};
use super::{Inputs, OpContext, OpState, Operator, Partitions, Step, ValueKind};
use crate::error::EngineError;

pub(crate) static REPARTITION: OpDesc = OpDesc {
    name: "repartition",
    spark: "repartition",
    arity: Arity::One,
    params: &[Param::required(
        "partitions",
        ParamKind::Partitions,
        "the number of output partitions",
    )],
    shuffles: true,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "same records spread evenly over `partitions`",
    build: |args| {
        let partitions = args.shuffle_partitions();
        Ok(vec![Stage::new(Repartition { partitions }, partitions)])
    },
};

pub(crate) static UNION: OpDesc = OpDesc {
    name: "union",
    spark: "union",
    arity: Arity::AtLeastOne,
    params: &[],
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "records of all inputs",
    build: |args| {
        let partitions = args.inputs.iter().map(|i| i.partitions).sum();
        Ok(vec![Stage::new(Union, partitions)])
    },
};

/// `repartition`.
#[derive(Debug, Clone)]
pub(crate) struct Repartition {
    partitions: usize,
}

impl Operator for Repartition {
    fn desc(&self) -> &'static OpDesc {
        &REPARTITION
    }

    fn describe(&self) -> String {
        format!("partitions {}", self.partitions)
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
        Ok(Step::output(repartition(
            inputs.batches[0],
            self.partitions,
        )))
    }
}

/// `union`.
#[derive(Debug, Clone)]
pub(crate) struct Union;

impl Operator for Union {
    fn desc(&self) -> &'static OpDesc {
        &UNION
    }

    fn describe(&self) -> String {
        String::new()
    }

    fn value_kind(&self, inputs: &[ValueKind]) -> ValueKind {
        if inputs.iter().all(|k| *k == inputs[0]) {
            inputs[0]
        } else {
            ValueKind::Opaque
        }
    }

    fn run(
        &self,
        _: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let slices: Vec<&[RecordBatch]> = inputs.batches.iter().map(|p| p.as_slice()).collect();
        Ok(Step::output(union(&slices)))
    }
}

/// Spreads records evenly over `n` partitions: the i-th record of the batch
/// (partitions read in order) goes to partition `i mod n`.
pub(crate) fn repartition(input: &[RecordBatch], n: usize) -> Partitions {
    let total: usize = input.iter().map(RecordBatch::byte_len).sum();
    let mut out: Partitions = (0..n)
        .map(|_| RecordBatch::with_capacity(total / n))
        .collect();
    let mut i = 0usize;
    for batch in input {
        for (k, v) in batch.iter() {
            out[i % n].push(k, v);
            i += 1;
        }
    }
    out
}

/// The partitions of every input, one after another.
pub(crate) fn union(inputs: &[&[RecordBatch]]) -> Partitions {
    inputs
        .iter()
        .flat_map(|parts| parts.iter().cloned())
        .collect()
}
