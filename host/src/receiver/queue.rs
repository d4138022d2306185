//! A queue of prepared batches (Spark's `queueStream` with one batch per
//! interval), for tests and the library API.

use std::collections::VecDeque;

use weir_abi::RecordBatch;

use super::Source;
use super::{SourceInput, SourcePosition};
use crate::checkpoint::{Recovery, ReplayError};
use crate::error::EngineError;

/// Each batch time takes the next prepared batch; empty batches follow once
/// the queue is drained.
#[derive(Debug, Default)]
pub struct QueueSource {
    batches: VecDeque<Vec<RecordBatch>>,
    all: Vec<Vec<RecordBatch>>,
    next: u64,
}

impl QueueSource {
    /// A queue of batches, each given as its blocks.
    pub fn new(batches: impl IntoIterator<Item = Vec<RecordBatch>>) -> Self {
        let all: Vec<Vec<RecordBatch>> = batches.into_iter().collect();
        QueueSource {
            batches: all.clone().into(),
            all,
            next: 0,
        }
    }
}

impl Source for QueueSource {
    fn next_batch(
        &mut self,
        _batch_time_ms: i64,
    ) -> Result<(SourceInput, Vec<RecordBatch>), EngineError> {
        let index = self.next;
        self.next += 1;
        Ok((
            SourceInput::Queue(index),
            self.batches.pop_front().unwrap_or_default(),
        ))
    }

    fn replay(
        &mut self,
        input: &SourceInput,
        _recovery: &Recovery,
    ) -> Result<Vec<RecordBatch>, ReplayError> {
        let SourceInput::Queue(index) = input else {
            return Err(ReplayError::WrongInput {
                source_kind: "queue",
                input: format!("{input:?}"),
            });
        };
        self.restore(&SourcePosition::Queue(index + 1), _recovery, 0);
        Ok(self.all.get(*index as usize).cloned().unwrap_or_default())
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Queue(self.next)
    }

    fn restore(&mut self, position: &SourcePosition, _recovery: &Recovery, _index: u32) {
        if let SourcePosition::Queue(next) = position {
            self.next = *next;
            self.batches = self.all.iter().skip(*next as usize).cloned().collect();
        }
    }
}
