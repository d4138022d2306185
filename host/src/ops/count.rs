//! `count`, `reduce` and `count_by_value`.

use std::borrow::Cow;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use weir_abi::{canonical, put_bytes, GroupsWriter, RecordBatch};

use weir_abi::FunctionKind;

use super::combine::combine_partition;
use super::spec::{function, Arity, OpDesc, Stage, PARTITIONS};
use super::{
    shuffle, Combiner, FunctionRef, Inputs, OpContext, OpState, Operator, Partitions, Step,
    ValueKind,
};
use crate::error::EngineError;

pub(crate) static COUNT: OpDesc = OpDesc {
    name: "count",
    spark: "count",
    arity: Arity::One,
    params: &[],
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "one record: empty key, `i64` count (also for empty batches)",
    build: |_| Ok(vec![Stage::new(Count { skip_empty: false }, 1)]),
};

pub(crate) static REDUCE: OpDesc = OpDesc {
    name: "reduce",
    spark: "reduce",
    arity: Arity::One,
    params: &[function(FunctionKind::Reduce)],
    shuffles: false,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "one record: all values combined (none for an empty batch)",
    build: |args| {
        let op = Reduce {
            func: args.the_function(),
        };
        Ok(vec![Stage::new(op, 1)])
    },
};

pub(crate) static COUNT_BY_VALUE: OpDesc = OpDesc {
    name: "count_by_value",
    spark: "countByValue",
    arity: Arity::One,
    params: &[PARTITIONS],
    shuffles: true,
    windowed: false,
    stateful: false,
    in_pipelines: true,
    result: "`(element, i64 count)`; the element of an unkeyed record is its value, of a keyed record its key and value framed",
    build: |args| {
        let partitions = args.shuffle_partitions();
        Ok(vec![Stage::new(CountByValue { partitions }, partitions)])
    },
};

/// `count`; with `skip_empty`, an empty batch gives no record (the first
/// stage of `count_by_window`, as Spark's `map(_ => 1L)` before its
/// windowed reduce).
#[derive(Debug, Clone)]
pub(crate) struct Count {
    pub skip_empty: bool,
}

impl Operator for Count {
    fn desc(&self) -> &'static OpDesc {
        &COUNT
    }

    fn describe(&self) -> String {
        // `skip_empty` is not part of the identity: checkpoints of
        // `count_by_window` written before it existed describe this stage
        // as a plain `count` and must still be recognised.
        String::new()
    }

    fn value_kind(&self, _: &[ValueKind]) -> ValueKind {
        ValueKind::Count
    }

    fn run(
        &self,
        _: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        let n: usize = inputs.batches[0].iter().map(RecordBatch::len).sum();
        if n == 0 && self.skip_empty {
            return Ok(Step::output(vec![RecordBatch::new()]));
        }
        Ok(Step::output(count(n)))
    }
}

/// `reduce`.
#[derive(Debug, Clone)]
pub(crate) struct Reduce {
    pub func: FunctionRef,
}

impl Operator for Reduce {
    fn desc(&self) -> &'static OpDesc {
        &REDUCE
    }

    fn describe(&self) -> String {
        self.func.label()
    }

    fn functions_mut(&mut self) -> Vec<(&mut FunctionRef, FunctionKind)> {
        vec![(&mut self.func, FunctionKind::Reduce)]
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        reduce(cx, &self.func, inputs.batches[0]).map(Step::output)
    }
}

/// `count_by_value`.
#[derive(Debug, Clone)]
pub(crate) struct CountByValue {
    pub partitions: usize,
}

impl Operator for CountByValue {
    fn desc(&self) -> &'static OpDesc {
        &COUNT_BY_VALUE
    }

    fn describe(&self) -> String {
        format!("partitions {}", self.partitions)
    }

    fn value_kind(&self, _: &[ValueKind]) -> ValueKind {
        ValueKind::Count
    }

    fn run(
        &self,
        cx: &OpContext<'_>,
        inputs: &Inputs<'_>,
        _: Option<&dyn OpState>,
    ) -> Result<Step, EngineError> {
        count_by_value(cx, inputs.batches[0], self.partitions).map(Step::output)
    }
}

/// One partition holding one record: empty key, the count `n`.
/// Like Spark, an empty batch counts 0.
fn count(n: usize) -> Partitions {
    vec![[(&b""[..], &canonical::encode_count(n as i64)[..])]
        .into_iter()
        .collect()]
}

/// One partition holding one record (empty key) with every value of the
/// batch combined; nothing for an empty batch. Each partition is combined
/// in parallel, then the partial results in one more call.
pub(crate) fn reduce(
    ctx: &OpContext<'_>,
    func: &FunctionRef,
    input: &[RecordBatch],
) -> Result<Partitions, EngineError> {
    let n = input.len();
    let partials = ctx.par_map(input, |p, batch| {
        if batch.is_empty() {
            return Ok(None);
        }
        if batch.len() == 1 {
            return Ok(batch.iter().next().map(|(_, v)| v.to_vec()));
        }
        let mut groups = GroupsWriter::new();
        groups.push(
            b"",
            batch.iter().map(|(_, v)| v).collect::<Vec<_>>().into_iter(),
        );
        let mut out = func
            .plugin
            .reduce(&func.function, &ctx.invocation(p, n), groups)?;
        Ok(out.pop())
    })?;
    let partials: Vec<Vec<u8>> = partials.into_iter().flatten().collect();
    let value = match partials.len() {
        0 => return Ok(vec![RecordBatch::new()]),
        1 => partials.into_iter().next().expect("one partial"),
        _ => {
            let mut groups = GroupsWriter::new();
            groups.push(
                b"",
                partials
                    .iter()
                    .map(Vec::as_slice)
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            func.plugin
                .reduce(&func.function, &ctx.invocation(0, 1), groups)?
                .pop()
                .expect("one group, one value")
        }
    };
    Ok(vec![[(&b""[..], &value[..])].into_iter().collect()])
}

/// The element a record stands for in `count_by_value`: the value of an
/// unkeyed record (empty key), else key and value framed as two byte strings.
/// Borrowed when it is just the value (no allocation per record).
pub fn element<'a>(key: &[u8], value: &'a [u8]) -> Cow<'a, [u8]> {
    if key.is_empty() {
        Cow::Borrowed(value)
    } else {
        let mut e = Vec::with_capacity(key.len() + value.len() + 8);
        put_bytes(&mut e, key);
        put_bytes(&mut e, value);
        Cow::Owned(e)
    }
}

/// `(element, i64 count)` per distinct element: counted per partition,
/// shuffled by element, summed.
pub(crate) fn count_by_value(
    ctx: &OpContext<'_>,
    input: &[RecordBatch],
    partitions: usize,
) -> Result<Partitions, EngineError> {
    let partial = ctx.par_map(input, |_, batch| {
        let mut counts: IndexMap<Cow<'_, [u8]>, i64, FxBuildHasher> = IndexMap::default();
        for (k, v) in batch.iter() {
            *counts.entry(element(k, v)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|(e, c)| (e, canonical::encode_count(c)))
            .collect::<RecordBatch>())
    })?;
    let shuffled = shuffle(ctx, &partial, partitions)?;
    ctx.par_map(&shuffled, |p, batch| {
        combine_partition(ctx, &Combiner::SumI64, batch, p, partitions)
    })
}
