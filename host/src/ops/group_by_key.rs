//! `group_by_key`: shuffle by key, then one record per key whose value is
//! the canonical list of its values in arrival order.

use weir_abi::{canonical, RecordBatch};

use super::{group, shuffle, OpContext, Partitions};
use crate::error::EngineError;

/// Runs `group_by_key` into `partitions` output partitions.
pub fn apply(
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
