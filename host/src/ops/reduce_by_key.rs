//! `reduce_by_key`: combine within each input partition (map-side
//! combine), shuffle the partial results by key, combine again.

use weir_abi::RecordBatch;

use super::combine::combine_partition;
use super::{shuffle, OpContext, Partitions};
use crate::error::EngineError;
use crate::stream::graph::Combiner;

/// Runs `reduce_by_key` into `partitions` output partitions.
pub fn apply(
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
