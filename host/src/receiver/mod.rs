//! Sources of input streams.
//!
//! Every source hands the batch clock the records of one batch when the
//! batch is cut, split into blocks (at most one block interval's worth, or
//! [`MAX_BLOCK_RECORDS`]); block `j` of a batch goes to partition
//! `j mod partitions`, so partitions keep arrival order and a batch's layout
//! depends only on its blocks.
//!
//! - [`socket`]: a receiver task on tokio reads TCP text lines into blocks
//!   and sends them through a bounded channel; when processing falls behind,
//!   the channel fills, the task stops reading and TCP pushes back — memory
//!   stays bounded and nothing is dropped.
//! - [`files`]: like Spark's file stream, the directory is listed when a
//!   batch is cut and new files become that batch.
//! - [`generator`]: deterministic synthetic records, a fixed number per
//!   batch (rate × batch interval), the i-th record a function of the seed
//!   and i.
//! - [`queue`]: prepared batches, one per batch time.

use weir_abi::RecordBatch;

use crate::checkpoint::{Recovery, SourceInput, SourcePosition};
use crate::error::EngineError;
use crate::ops::Partitions;

pub mod files;
pub mod generator;
pub mod queue;
pub mod socket;

/// Largest number of records in one block.
pub const MAX_BLOCK_RECORDS: usize = 50_000;

/// A source as the batch clock sees it.
pub trait Source: Send {
    /// Cuts the batch at `batch_time_ms`: what it is made of (logged before
    /// the batch runs) and its records, as blocks.
    fn next_batch(
        &mut self,
        batch_time_ms: i64,
    ) -> Result<(SourceInput, Vec<RecordBatch>), EngineError>;

    /// Rebuilds a logged batch exactly and moves past it.
    fn replay(
        &mut self,
        input: &SourceInput,
        recovery: &Recovery,
    ) -> Result<Vec<RecordBatch>, String>;

    /// Where the source is (saved in checkpoints).
    fn position(&self) -> SourcePosition;

    /// Continues from a checkpointed position; `recovery` holds logged
    /// blocks not yet in any batch, which a receiver delivers first.
    fn restore(&mut self, position: &SourcePosition, recovery: &Recovery, index: u32);
}

/// Lays blocks out over `partitions` partitions: block j → partition j mod n.
pub fn blocks_to_partitions(blocks: Vec<RecordBatch>, partitions: usize) -> Partitions {
    let mut out: Partitions = (0..partitions).map(|_| RecordBatch::new()).collect();
    for (j, block) in blocks.into_iter().enumerate() {
        let slot = &mut out[j % partitions];
        if slot.is_empty() {
            *slot = block;
        } else {
            slot.extend(&block);
        }
    }
    out
}

/// Cuts a sequence of unkeyed text lines into blocks of at most `per_block`.
pub fn lines_to_blocks<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    per_block: usize,
) -> Vec<RecordBatch> {
    let mut blocks = Vec::new();
    let mut current = RecordBatch::new();
    for line in lines {
        current.push(b"", line);
        if current.len() >= per_block {
            blocks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}
