//! `map`, `flat_map`, `filter`, `map_partitions` (`transform`): one plugin
//! call per partition.

use weir_abi::RecordBatch;

use super::{OpContext, Partitions};
use crate::error::EngineError;
use crate::stream::graph::{FunctionRef, MapFlavor};

/// Runs the map function over every partition.
pub fn apply(
    ctx: &OpContext<'_>,
    flavor: MapFlavor,
    func: &FunctionRef,
    input: &[RecordBatch],
) -> Result<Partitions, EngineError> {
    let n = input.len();
    ctx.par_map_batches(input, |p, batch| {
        if batch.is_empty() && flavor != MapFlavor::MapPartitions {
            return Ok(RecordBatch::new());
        }
        let out = func.plugin.map(&func.function, &ctx.invocation(p, n), batch)?;
        match flavor {
            MapFlavor::Map if out.len() != batch.len() => Err(ctx.contract(format!(
                "`{}` returned {} records for {} input records in partition {p}; map must return exactly one per record (use flat_map for zero or more)",
                func.label(),
                out.len(),
                batch.len()
            ))),
            MapFlavor::Filter if out.len() > batch.len() => Err(ctx.contract(format!(
                "`{}` returned {} records for {} input records in partition {p}; filter returns at most one per record",
                func.label(),
                out.len(),
                batch.len()
            ))),
            _ => Ok(out),
        }
    })
}
