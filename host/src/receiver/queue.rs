//! A queue of prepared batches (Spark's `queueStream` with one batch per
//! interval), for tests and the library API.

use std::collections::VecDeque;

use weir_abi::RecordBatch;

use super::Source;
use crate::error::EngineError;

/// Each batch time takes the next prepared batch; empty batches follow once
/// the queue is drained.
#[derive(Debug, Default)]
pub struct QueueSource {
    batches: VecDeque<Vec<RecordBatch>>,
}

impl QueueSource {
    /// A queue of batches, each given as its blocks.
    pub fn new(batches: impl IntoIterator<Item = Vec<RecordBatch>>) -> Self {
        QueueSource {
            batches: batches.into_iter().collect(),
        }
    }
}

impl Source for QueueSource {
    fn next_batch(&mut self, _batch_time_ms: i64) -> Result<Vec<RecordBatch>, EngineError> {
        Ok(self.batches.pop_front().unwrap_or_default())
    }
}
