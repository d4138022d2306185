//! Format 1, read for compatibility: checkpoints and batch-log entries
//! written by weir before operator state became [`Snapshot`]s stored the
//! executor's structures directly. The types here are frozen copies of
//! those structures' shapes (their bincode encoding is the format); a
//! format-1 record is decoded with them and converted to format 2 by
//! re-encoding each part as the snapshot its owner writes at version 1,
//! which has the same bytes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_abi::RecordBatch;

use super::log::decode;
use super::{BatchEntry, CheckpointData, Snapshot};

/// Snapshot kinds and versions the format-1 parts convert to; the owners
/// (sources, `window`, windowed reductions, state operators) read them.
pub(crate) const SOURCE_INPUT: (&str, u32) = ("source_input", 1);
pub(crate) const SOURCE_POSITION: (&str, u32) = ("source_position", 1);
const WINDOW: (&str, u32) = ("window", 1);
const WINDOWED_REDUCE: (&str, u32) = ("windowed_reduce", 1);
const KEYED_STATE: (&str, u32) = ("keyed_state", 1);

#[derive(Serialize, Deserialize)]
enum SourceInput {
    Generator { start: u64, end: u64 },
    Files(Vec<PathBuf>),
    Blocks(Vec<u64>),
    Queue(u64),
}

#[derive(Serialize, Deserialize)]
enum SourcePosition {
    Generator(u64),
    Files(BTreeSet<PathBuf>),
    Socket(u64),
    Queue(u64),
}

#[derive(Serialize, Deserialize)]
struct StateEntry {
    value: Vec<u8>,
    last_active_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct StateStore {
    entries: BTreeMap<Vec<u8>, StateEntry>,
}

#[derive(Serialize, Deserialize)]
struct WindowBuffer {
    batches: VecDeque<(i64, Arc<Vec<RecordBatch>>)>,
}

#[derive(Serialize, Deserialize)]
struct WindowedState {
    batches: VecDeque<(i64, Vec<RecordBatch>)>,
    current: Option<Vec<BTreeMap<Vec<u8>, Vec<u8>>>>,
    last_output_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
enum NodeState {
    Stateless,
    Window(WindowBuffer),
    Reduce(WindowedState),
    Keyed(Option<Vec<StateStore>>),
}

#[derive(Serialize, Deserialize)]
struct CheckpointV1 {
    format: u32,
    seq: u64,
    batch_time_ms: i64,
    zero_ms: i64,
    nodes: Vec<NodeState>,
    sources: Vec<SourcePosition>,
    modules: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct BatchEntryV1 {
    seq: u64,
    batch_time_ms: i64,
    zero_ms: i64,
    sources: Vec<SourceInput>,
    modules: BTreeMap<String, String>,
}

fn snapshot<T: Serialize>((kind, version): (&str, u32), value: &T) -> Snapshot {
    Snapshot::encode(kind, version, value)
}

/// A format-1 checkpoint (one frame's payload), converted; `None` if it
/// is not one. Format 1 kept node state by node index, so the converted
/// snapshots are named `#index` (the pipeline, checked unchanged before
/// state is read, has the same nodes in the same order).
pub(crate) fn convert_checkpoint(payload: &[u8]) -> Option<CheckpointData> {
    let c = decode::<CheckpointV1>(payload).filter(|c| c.format == 1)?;
    let blocks_consumed = c
        .sources
        .iter()
        .filter_map(|s| match s {
            SourcePosition::Socket(id) => Some(*id),
            _ => None,
        })
        .min();
    let nodes = c
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let s = match n {
                NodeState::Stateless => return None,
                NodeState::Window(w) => snapshot(WINDOW, w),
                NodeState::Reduce(r) => snapshot(WINDOWED_REDUCE, r),
                NodeState::Keyed(k) => snapshot(KEYED_STATE, k),
            };
            // Format 1 has no names: the node's index stands for it.
            Some((format!("#{i}"), s))
        })
        .collect();
    Some(CheckpointData {
        format: 1,
        seq: c.seq,
        batch_time_ms: c.batch_time_ms,
        zero_ms: c.zero_ms,
        nodes,
        sources: c
            .sources
            .iter()
            .map(|s| snapshot(SOURCE_POSITION, s))
            .collect(),
        blocks_consumed,
        modules: c.modules,
    })
}

/// A batch-log entry of format 1, converted.
pub(crate) fn decode_batch_entry(payload: &[u8]) -> Option<BatchEntry> {
    let e = decode::<BatchEntryV1>(payload)?;
    Some(BatchEntry {
        magic: super::BATCH_ENTRY_MAGIC,
        seq: e.seq,
        batch_time_ms: e.batch_time_ms,
        zero_ms: e.zero_ms,
        sources: e
            .sources
            .iter()
            .map(|s| snapshot(SOURCE_INPUT, s))
            .collect(),
        modules: e.modules,
    })
}
