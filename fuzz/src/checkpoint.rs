//! Target `checkpoint`: the bytes of a checkpoint directory's files as
//! recovery and `weir replay` read them.
//!
//! Input: `[mode: u8][first: u16][last: u16]`, then bytes. Even modes
//! read the bytes as they lie on disk (checksums and all); odd modes wrap
//! them in frames with matching checksums first, so the decoders behind
//! the checksum are reached too (a frame is `u32 length | u32 crc32 |
//! payload`; a `FE ED FA CE` marker splits the bytes into several
//! payloads). What decodes then goes through [`Recorded`]'s choice of
//! where a replay of batches `first..=last` starts.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use weir::checkpoint::log::{read_frames, read_frames_with};
use weir::checkpoint::recorded::Recorded;
use weir::checkpoint::{
    decode_batch_entry, read_checkpoint_bytes, BatchEntry, BlockEntry, CheckpointData,
};

/// The fuzz target; see the module documentation for the input layout.
pub fn checkpoint(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let mode = data[0];
    let first = u64::from(u16::from_le_bytes([data[1], data[2]]));
    let last = u64::from(u16::from_le_bytes([data[3], data[4]]));
    let body = &data[5..];
    let framed;
    let bytes = if mode % 2 == 1 {
        framed = frames(body);
        &framed[..]
    } else {
        body
    };
    let mut checkpoints = Vec::new();
    let mut batches = Vec::new();
    let mut blocks = HashMap::new();
    match (mode / 2) % 3 {
        0 => checkpoints.extend(read_checkpoint_bytes(bytes)),
        1 => {
            let (entries, valid) = read_frames_with(bytes, decode_batch_entry);
            assert!(valid <= bytes.len());
            batches = entries;
        }
        _ => {
            let (entries, valid) = read_frames::<BlockEntry>(bytes);
            assert!(valid <= bytes.len());
            for b in entries {
                let _ = b.records.iter().count();
                blocks.insert(b.id, b);
            }
        }
    }
    for c in &checkpoints {
        check_snapshots(c);
    }
    // A directory has checkpoints and batches: what the input did not
    // give is made up (a checkpoint after batch `first`, batches up to
    // `last`), so each meets the other in the replay plan.
    if checkpoints.is_empty() {
        checkpoints.push(made_up_checkpoint(first));
    }
    if batches.is_empty() {
        batches.extend((first..=last).take(16).map(made_up_batch));
    }
    replay_plan(checkpoints, batches, blocks, first, last);
}

fn made_up_checkpoint(seq: u64) -> CheckpointData {
    CheckpointData {
        format: weir::checkpoint::FORMAT,
        seq,
        batch_time_ms: 0,
        zero_ms: 0,
        nodes: Vec::new(),
        sources: Vec::new(),
        blocks_consumed: None,
        modules: BTreeMap::new(),
    }
}

fn made_up_batch(seq: u64) -> BatchEntry {
    BatchEntry {
        magic: weir::checkpoint::BATCH_ENTRY_MAGIC,
        seq,
        batch_time_ms: 0,
        zero_ms: 0,
        sources: Vec::new(),
        modules: BTreeMap::new(),
    }
}

/// Where the bytes of an odd mode split into payloads.
const SPLIT: [u8; 4] = [0xFE, 0xED, 0xFA, 0xCE];

/// The payloads in `body` (split at `FE ED FA CE`), each framed with its
/// checksum.
fn frames(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut rest = body;
    loop {
        let (payload, next) = match rest.windows(4).position(|w| w == SPLIT) {
            Some(at) => (&rest[..at], Some(&rest[at + 4..])),
            None => (rest, None),
        };
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
        match next {
            Some(n) => rest = n,
            None => return out,
        }
    }
}

/// A checkpoint's snapshots decoded as the kinds they claim to be (the
/// owners decode them the same way, through `Snapshot::decode`).
fn check_snapshots(c: &CheckpointData) {
    for s in c.sources.iter().chain(c.nodes.iter().map(|(_, s)| s)) {
        let _ = s.decode::<Vec<(Vec<u8>, Vec<u8>)>>("keyed_state", s.version);
        let _ = s.decode::<BTreeMap<String, Vec<Vec<u8>>>>("window", s.version);
        let _ = s.decode::<(u32, Vec<String>, Option<u64>)>("source_position", s.version);
    }
}

/// What `weir replay` computes from what it read.
fn replay_plan(
    checkpoints: Vec<CheckpointData>,
    mut batches: Vec<BatchEntry>,
    blocks: HashMap<u64, BlockEntry>,
    first: u64,
    last: u64,
) {
    batches.sort_by_key(|e| e.seq);
    batches.dedup_by_key(|e| e.seq);
    let recorded = Recorded {
        dir: PathBuf::from("ck"),
        job: "fuzz".into(),
        pipeline: Vec::new(),
        modules: BTreeMap::new(),
        checkpoints,
        damaged: Vec::new(),
        batches,
        blocks,
    };
    if let Some((from, to)) = recorded.replayable() {
        assert!(from <= to.saturating_add(1));
    }
    // The seqs that occur, so the numbers asked for meet the data.
    let seqs: Vec<u64> = recorded
        .batches
        .iter()
        .map(|e| e.seq)
        .chain(recorded.checkpoints.iter().map(|c| c.seq))
        .collect();
    let pick = |n: u64| match seqs.len() {
        0 => n,
        len => seqs[n as usize % len].wrapping_add(n >> 8),
    };
    if let Some(start) = recorded.start_for(pick(first), pick(last)) {
        assert!(start.checkpoint.is_none_or(|c| c.seq < pick(first)));
    }
}
