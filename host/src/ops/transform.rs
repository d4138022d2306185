//! `transform` and `transform_with`: a map function over the same
//! partition of several streams' batches at once (Spark's `transform` over
//! several DStreams and `transformWith`).
//!
//! With one input, `transform` is `map_partitions`. With several, the
//! function is called once per partition index `p` (up to the largest
//! input's partition count, even when empty) with partition `p` of every
//! input, input after input; each record's value is prefixed with the
//! number of the input it comes from, a `u32` little-endian (0 for the
//! first input), so the function can tell them apart (`docs/abi.md` §4).

use weir_abi::{FunctionKind, RecordBatch};

use super::map::{MapFlavor, MapOp};
use super::spec::{function, Arity, OpDesc, Stage};
use super::{FunctionRef, Inputs, OpContext, OpState, Operator, Step};
use crate::error::EngineError;

const PARAMS: &[super::Param] = &[function(FunctionKind::Map)];

pub(crate) static TRANSFORM: OpDesc = OpDesc {
    name: "transform",
    spark: "transform",
    arity: Arity::AtLeastOne,
    params: PARAMS,
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "function over whole partitions; over several inputs, partition `p` of each, values tagged with the input's number",
    build,
};

pub(crate) static TRANSFORM_WITH: OpDesc = OpDesc {
    name: "transform_with",
    spark: "transformWith",
    arity: Arity::Two,
    params: PARAMS,
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "function over partition `p` of both inputs, values tagged 0 (left) and 1 (right)",
    build,
};

fn build(args: &super::Args) -> Result<Vec<Stage>, crate::error::BuildError> {
    let func = args.the_function();
    if args.inputs.len() == 1 {
        let op = MapOp {
            flavor: MapFlavor::MapPartitions,
            func,
        };
        return Ok(vec![Stage::new(op, args.input(0).partitions)]);
    }
    let partitions = args.inputs.iter().map(|i| i.partitions).max().unwrap_or(1);
    Ok(vec![Stage::new(
        Transform {
            desc: args.desc,
            func,
        },
        partitions,
    )])
}

/// A function over the same partition of several inputs.
#[derive(Debug, Clone)]
pub(crate) struct Transform {
    desc: &'static OpDesc,
    func: FunctionRef,
}

/// Partition `p` of every input, each value tagged with its input's number.
pub(crate) fn tagged(inputs: &[&[RecordBatch]], p: usize) -> RecordBatch {
    let mut out = RecordBatch::new();
    let mut value = Vec::new();
    for (i, parts) in inputs.iter().enumerate() {
        let Some(batch) = parts.get(p) else { continue };
        for (k, v) in batch.iter() {
            value.clear();
            value.extend_from_slice(&(i as u32).to_le_bytes());
            value.extend_from_slice(v);
            out.push(k, &value);
        }
    }
    out
}

impl Operator for Transform {
    fn desc(&self) -> &'static OpDesc {
        self.desc
    }

    fn describe(&self) -> String {
        self.func.label()
    }

    fn functions_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        vec![(&mut self.func, FunctionKind::Map)]
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let sides: Vec<&[RecordBatch]> = inputs.batches.iter().map(|b| b.as_slice()).collect();
        let n = sides.iter().map(|s| s.len()).max().unwrap_or(0);
        let slots: Vec<usize> = (0..n).collect();
        let out = cx.par_map(&slots, |_, &p| {
            let batch = tagged(&sides, p);
            Ok(self
                .func
                .plugin
                .map(&self.func.function, &cx.invocation(p, n), &batch)?)
        })?;
        Ok(Step::output(out))
    }
}
