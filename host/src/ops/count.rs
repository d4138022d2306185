//! `count`, `reduce` and `count_by_value`.

use std::borrow::Cow;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use weir_abi::{canonical, put_bytes, GroupsWriter, RecordBatch};

use super::combine::combine_partition;
use super::{shuffle, OpContext, Partitions};
use crate::error::EngineError;
use crate::stream::graph::{Combiner, FunctionRef};

/// One partition holding one record: empty key, the number of records.
/// Like Spark, an empty batch counts 0.
pub fn count(input: &[RecordBatch]) -> Partitions {
    let n: usize = input.iter().map(RecordBatch::len).sum();
    vec![[(&b""[..], &canonical::encode_count(n as i64)[..])]
        .into_iter()
        .collect()]
}

/// One partition holding one record (empty key) with every value of the
/// batch combined; nothing for an empty batch. Each partition is combined
/// in parallel, then the partial results in one more call.
pub fn reduce(
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
pub fn count_by_value(
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

/// The `n` records with the largest canonical counts, largest first, ties
/// broken by key bytes; one partition.
pub fn top(input: &[RecordBatch], n: usize) -> Partitions {
    let mut all: Vec<(i64, &[u8], &[u8])> = input
        .iter()
        .flat_map(|b| b.iter())
        .map(|(k, v)| (canonical::decode_count(v).unwrap_or(i64::MIN), k, v))
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    vec![all.into_iter().take(n).map(|(_, k, v)| (k, v)).collect()]
}
