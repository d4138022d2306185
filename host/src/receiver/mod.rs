//! Sources of input streams.
//!
//! Every source hands the batch clock the records of one batch when the
//! batch is cut, split into blocks (at most one block interval's worth, or
//! [`MAX_BLOCK_RECORDS`]); block `j` of a batch goes to partition
//! `j mod partitions`, so partitions keep arrival order and a batch's layout
//! depends only on its blocks.
//!
//! - `socket`: a receiver task on tokio reads TCP text lines into blocks
//!   stamped with the time they are sealed and sends them through a bounded
//!   channel; batch `t` takes the blocks sealed by `t`, so a late batch
//!   holds its own interval's data, not everything that arrived since. When
//!   processing falls behind, the channel fills, the task stops reading and
//!   TCP pushes back — memory stays bounded and nothing is dropped. With
//!   backpressure the task also reads no faster than the rate estimator
//!   allows ([`rate::TokenBucket`]).
//! - `files`: like Spark's file stream, the directory is listed when a
//!   batch is cut and new files become that batch.
//! - [`generator`]: deterministic synthetic records, a fixed number per
//!   batch (rate × batch interval), the i-th record a function of the seed
//!   and i; its `nexmark` kind makes the NEXMark auction events
//!   ([`nexmark`]).
//! - `queue`: prepared batches, one per batch time.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weir_abi::RecordBatch;

use crate::checkpoint::{Recovery, ReplayError, Snapshot, SnapshotError};
use crate::error::EngineError;
use crate::ops::Partitions;

/// What one source contributed to one batch: enough to rebuild it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceInput {
    /// Generator records `[start, end)`.
    Generator { start: u64, end: u64 },
    /// These files, read whole.
    Files(Vec<PathBuf>),
    /// Logged blocks, by id.
    Blocks(Vec<u64>),
    /// Queue entry `index` (the library's `queue_stream`).
    Queue(u64),
    /// Kafka offset ranges, one per topic-partition the source knew, in
    /// (topic, partition) order: block `j` of the batch is range `j`.
    Kafka(Vec<kafka::OffsetRange>),
}

/// Where a source is, to continue after a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourcePosition {
    /// Next generator record.
    Generator(u64),
    /// Files already read.
    Files(BTreeSet<PathBuf>),
    /// Highest block id already in a batch (0: none).
    Socket(u64),
    /// Next queue entry.
    Queue(u64),
    /// Next offset per (topic, partition).
    Kafka(Vec<(String, i32, i64)>),
}

const INPUT_SNAPSHOT: (&str, u32) = crate::checkpoint::v1::SOURCE_INPUT;
const POSITION_SNAPSHOT: (&str, u32) = crate::checkpoint::v1::SOURCE_POSITION;

impl SourceInput {
    /// As the batch log keeps it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::encode(INPUT_SNAPSHOT.0, INPUT_SNAPSHOT.1, self)
    }

    /// Back from the batch log.
    pub fn from_snapshot(s: &Snapshot) -> Result<Self, SnapshotError> {
        s.decode(INPUT_SNAPSHOT.0, INPUT_SNAPSHOT.1)
    }
}

impl SourcePosition {
    /// As a checkpoint keeps it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::encode(POSITION_SNAPSHOT.0, POSITION_SNAPSHOT.1, self)
    }

    /// Back from a checkpoint.
    pub fn from_snapshot(s: &Snapshot) -> Result<Self, SnapshotError> {
        s.decode(POSITION_SNAPSHOT.0, POSITION_SNAPSHOT.1)
    }
}

pub(crate) mod files;
pub mod generator;
pub mod kafka;
pub mod nexmark;
pub(crate) mod queue;
pub mod rate;
pub(crate) mod socket;

/// Largest number of records in one block.
pub const MAX_BLOCK_RECORDS: usize = 50_000;

/// Largest block a receiver seals, in bytes (records framed): with
/// `max_pending_blocks`, what bounds the memory of blocks waiting for a
/// batch.
pub const MAX_BLOCK_BYTES: usize = 4 << 20;

/// The batch clock's time (ms), for receivers that stamp blocks with it.
pub type Now = std::sync::Arc<dyn Fn() -> i64 + Send + Sync>;

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
    ) -> Result<Vec<RecordBatch>, ReplayError>;

    /// Where the source is (saved in checkpoints).
    fn position(&self) -> SourcePosition;

    /// Continues from a checkpointed position; `recovery` holds logged
    /// blocks not yet in any batch, which a receiver delivers first.
    fn restore(&mut self, position: &SourcePosition, recovery: &Recovery, index: u32);

    /// The batch this source last gave (or replayed) is complete: its
    /// outputs are written. Sources that adapt their rate or report
    /// progress elsewhere do it here.
    fn completed(&mut self, _done: &BatchDone) {}

    /// Problems met since the last call that the source works through on
    /// its own (a broker out of reach): reported as listener events.
    fn take_errors(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Blocks received and waiting for the next batch, for sources with a
    /// receiver that queues blocks (`None`: none, or it cannot tell).
    fn queued_blocks(&self) -> Option<u64> {
        None
    }

    /// The source as a Kafka source, if it is one (a scaled-out job's
    /// batch loop steers its partitions).
    fn as_kafka(&mut self) -> Option<&mut kafka::KafkaSource> {
        None
    }

    /// Its kind and where it is, for people (the web UI, `/api/v1/sources`).
    fn describe(&self) -> SourceInfo {
        SourceInfo::of(&self.position())
    }
}

/// What a source is and where it is, as the job's status shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceInfo {
    /// `generator`, `files`, `socket`, `queue` or `kafka`.
    pub kind: &'static str,
    /// Where it is, in words (`record 1200`, `3 file(s) read`,
    /// `events/0@1200`); none where it has no position.
    pub position: Option<String>,
}

impl SourceInfo {
    /// Kind and position read from a checkpoint position.
    pub fn of(position: &SourcePosition) -> SourceInfo {
        let (kind, position) = match position {
            SourcePosition::Generator(n) => ("generator", format!("record {n}")),
            SourcePosition::Files(read) => ("files", format!("{} file(s) read", read.len())),
            SourcePosition::Socket(0) => ("socket", "no block yet".to_owned()),
            SourcePosition::Socket(id) => ("socket", format!("block {id}")),
            SourcePosition::Queue(n) => ("queue", format!("entry {n}")),
            SourcePosition::Kafka(offsets) => (
                "kafka",
                offsets
                    .iter()
                    .map(|(topic, p, o)| format!("{topic}/{p}@{o}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        SourceInfo {
            kind,
            position: Some(position),
        }
    }
}

/// How a completed batch went, as a source sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchDone {
    /// The batch's time.
    pub batch_time_ms: i64,
    /// When it completed (clock time).
    pub finished_ms: i64,
    /// Records this source gave it.
    pub records: u64,
    /// Processing time.
    pub processing_ms: f64,
    /// Wait between the batch time and the start of processing.
    pub scheduling_delay_ms: f64,
    /// Recomputed during recovery.
    pub replayed: bool,
}

/// Lays blocks out over `partitions` partitions: block j → partition j mod n.
/// A partition of one block is that block; one of several is allocated
/// once at its final size and each block is freed as soon as it is copied,
/// so the batch is never held twice.
pub fn blocks_to_partitions(blocks: Vec<RecordBatch>, partitions: usize) -> Partitions {
    let partitions = partitions.max(1);
    let mut sizes = vec![(0usize, 0usize); partitions];
    for (j, block) in blocks.iter().enumerate() {
        let (n, bytes) = &mut sizes[j % partitions];
        *n += 1;
        *bytes += block.byte_len();
    }
    let mut out: Partitions = sizes
        .iter()
        .map(|&(n, bytes)| {
            if n > 1 {
                RecordBatch::with_capacity(bytes)
            } else {
                RecordBatch::new()
            }
        })
        .collect();
    for (j, block) in blocks.into_iter().enumerate() {
        let p = j % partitions;
        if sizes[p].0 == 1 {
            out[p] = block;
        } else {
            out[p].extend(&block);
        }
    }
    out
}
