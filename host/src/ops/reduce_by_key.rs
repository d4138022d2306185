//! `reduce_by_key`: combine within each input partition (map-side
//! combine), shuffle the partial results by key, combine again.

use weir_abi::{GroupsWriter, RecordBatch};

use super::{group, shuffle, OpContext, Partitions};
use crate::error::EngineError;
use crate::stream::graph::FunctionRef;

/// Combines the values of every key of `batch` with one plugin call for all
/// keys that have more than one value; keys with one value pass through.
pub fn combine(
    ctx: &OpContext<'_>,
    func: &FunctionRef,
    batch: &RecordBatch,
    p: usize,
    n: usize,
) -> Result<RecordBatch, EngineError> {
    let groups = group(batch);
    let mut writer = GroupsWriter::new();
    for (k, vs) in groups.iter().filter(|(_, vs)| vs.len() > 1) {
        writer.push(k, vs.iter().copied());
    }
    let reduced = if writer.is_empty() {
        Vec::new()
    } else {
        func.plugin
            .reduce(&func.function, &ctx.invocation(p, n), writer)?
    };
    let mut reduced = reduced.into_iter();
    let mut out = RecordBatch::with_capacity(batch.byte_len() / 2);
    for (k, vs) in &groups {
        if vs.len() > 1 {
            out.push(
                k,
                &reduced
                    .next()
                    .expect("one reduced value per multi-value group"),
            );
        } else {
            out.push(k, vs[0]);
        }
    }
    Ok(out)
}

/// Runs `reduce_by_key` into `partitions` output partitions.
pub fn apply(
    ctx: &OpContext<'_>,
    func: &FunctionRef,
    input: &[RecordBatch],
    partitions: usize,
) -> Result<Partitions, EngineError> {
    let n = input.len();
    let combined = ctx.par_map(input, |p, batch| combine(ctx, func, batch, p, n))?;
    let shuffled = shuffle(ctx, &combined, partitions)?;
    ctx.par_map(&shuffled, |p, batch| {
        combine(ctx, func, batch, p, partitions)
    })
}
