//! A checkpoint directory read without changing it: what `weir replay`
//! re-runs. Recovery ([`super::Checkpointer::open`]) repairs what it reads
//! (cuts damaged log tails, starts new segments, rewrites the metadata);
//! this reader only reads — nothing is created, truncated or renamed —
//! and reports damage instead of repairing it.
//!
//! What can be replayed follows from retention: checkpoints are kept
//! `keep_checkpoints` deep, and the batch log only from the oldest kept
//! checkpoint on. A run of batches can be replayed from a valid checkpoint
//! (its state) when the log continues that checkpoint without a gap.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use super::log::{self, SegmentLog};
use super::{
    checkpoint_files, decode_batch_entry, io, read_checkpoint, BatchEntry, BlockEntry,
    CheckpointData, CheckpointError, Metadata, Recovery,
};

/// Everything a checkpoint directory records, read-only.
#[derive(Debug)]
pub struct Recorded {
    /// The directory.
    pub dir: PathBuf,
    /// The job's name.
    pub job: String,
    /// The pipeline's fingerprint: one line per stream.
    pub pipeline: Vec<String>,
    /// Plugin → module hash the job ran last.
    pub modules: BTreeMap<String, String>,
    /// Every checkpoint that reads back whole, oldest first.
    pub checkpoints: Vec<CheckpointData>,
    /// Damaged files that were skipped (a checkpoint, a log tail).
    pub damaged: Vec<String>,
    /// Every logged batch, in batch order.
    pub batches: Vec<BatchEntry>,
    /// Logged socket blocks by id.
    pub blocks: HashMap<u64, BlockEntry>,
}

/// Where a replay of a run of batches starts: a checkpoint's state (none:
/// the job's initial state) and the logged batches from the one after it.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// The checkpoint whose state the replay starts from.
    pub checkpoint: Option<&'a CheckpointData>,
    /// The logged batches after it, through the last one wanted.
    pub batches: &'a [BatchEntry],
}

impl Recorded {
    /// Reads the checkpoint directory `dir` without changing it.
    pub fn read(dir: &Path) -> Result<Recorded, CheckpointError> {
        fs::metadata(dir).map_err(io(dir))?;
        let meta_path = dir.join("metadata.json");
        if !meta_path.exists() {
            return Err(CheckpointError::NotACheckpoint {
                dir: dir.to_owned(),
            });
        }
        let text = fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
        let meta: Metadata =
            serde_json::from_str(&text).map_err(|e| CheckpointError::BadMetadata {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        let mut damaged = Vec::new();
        let mut checkpoints = Vec::new();
        for (_, path) in checkpoint_files(&dir.join("checkpoints"))? {
            match read_checkpoint(&path) {
                Some(c) => checkpoints.push(c),
                None => damaged.push(format!(
                    "{}: damaged checkpoint (truncated or checksum mismatch), skipped",
                    path.display()
                )),
            }
        }
        let wal = dir.join("wal");
        let (mut batches, bad) =
            SegmentLog::new(wal.clone(), "batches", false).read_only_with(decode_batch_entry)?;
        let (blocks, bad_blocks) =
            SegmentLog::new(wal, "blocks", false).read_only_with(log::decode::<BlockEntry>)?;
        for (path, bytes) in bad.into_iter().chain(bad_blocks) {
            damaged.push(format!(
                "{}: {bytes} damaged bytes at the end of the log (an interrupted write), skipped",
                path.display()
            ));
        }
        batches.sort_by_key(|e| e.seq);
        batches.dedup_by_key(|e| e.seq);
        Ok(Recorded {
            dir: dir.to_owned(),
            job: meta.job,
            pipeline: meta.pipeline,
            modules: meta.modules,
            checkpoints,
            damaged,
            batches,
            blocks: blocks.into_iter().map(|b| (b.id, b)).collect(),
        })
    }

    /// The bytes of a module kept in the checkpoint.
    pub fn module_bytes(&self, hash: &str) -> Result<Vec<u8>, CheckpointError> {
        let path = self.dir.join("modules").join(format!("{hash}.wasm"));
        fs::read(&path).map_err(io(&path))
    }

    /// The logged blocks, as recovery hands them to sources.
    pub fn recovery(&mut self) -> Recovery {
        Recovery {
            checkpoint: None,
            replay: Vec::new(),
            blocks: std::mem::take(&mut self.blocks),
        }
    }

    /// How to replay batches `first..=last`: the newest valid checkpoint
    /// before `first` that the log continues without a gap through `last`
    /// (or the job's start, if the log begins at batch 1).
    pub fn start_for(&self, first: u64, last: u64) -> Option<Start<'_>> {
        let starts = self
            .checkpoints
            .iter()
            .rev()
            .map(Some)
            .chain(std::iter::once(None));
        for checkpoint in starts {
            let after = checkpoint.map_or(0, |c| c.seq);
            if after >= first {
                continue;
            }
            if let Some(batches) = self.contiguous(after + 1, last) {
                return Some(Start {
                    checkpoint,
                    batches,
                });
            }
        }
        None
    }

    /// The batches that can be replayed, `(first, last)`: from the oldest
    /// start the log continues, to the end of that contiguous log.
    pub fn replayable(&self) -> Option<(u64, u64)> {
        let mut starts: Vec<u64> = std::iter::once(0)
            .chain(self.checkpoints.iter().map(|c| c.seq))
            .collect();
        starts.sort_unstable();
        starts.into_iter().find_map(|after| {
            // A checkpoint after batch u64::MAX (a damaged number) has no
            // batch after it.
            let next = after.checked_add(1)?;
            let from = self.batches.iter().position(|e| e.seq == next)?;
            let run = self.batches[from..]
                .iter()
                .zip(next..=u64::MAX)
                .take_while(|(e, seq)| e.seq == *seq)
                .count();
            Some((next, after + run as u64))
        })
    }

    /// The logged batches `from..=to`, if the log holds every one.
    fn contiguous(&self, from: u64, to: u64) -> Option<&[BatchEntry]> {
        let start = self.batches.iter().position(|e| e.seq == from)?;
        let len = usize::try_from(to.checked_sub(from)?.checked_add(1)?).ok()?;
        let run = self.batches.get(start..start.checked_add(len)?)?;
        run.iter()
            .zip(from..=to)
            .all(|(e, seq)| e.seq == seq)
            .then_some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> BatchEntry {
        BatchEntry {
            magic: super::super::BATCH_ENTRY_MAGIC,
            seq,
            batch_time_ms: seq as i64 * 1000,
            zero_ms: 0,
            sources: Vec::new(),
            modules: BTreeMap::new(),
        }
    }

    fn checkpoint(seq: u64) -> CheckpointData {
        CheckpointData {
            format: super::super::FORMAT,
            seq,
            batch_time_ms: seq as i64 * 1000,
            zero_ms: 0,
            nodes: Vec::new(),
            sources: Vec::new(),
            blocks_consumed: None,
            modules: BTreeMap::new(),
        }
    }

    /// Checkpoints `kept`, batches `logged` in the log.
    fn recorded(kept: &[u64], logged: std::ops::RangeInclusive<u64>) -> Recorded {
        Recorded {
            dir: PathBuf::from("ck"),
            job: "j".into(),
            pipeline: Vec::new(),
            modules: BTreeMap::new(),
            checkpoints: kept.iter().map(|&s| checkpoint(s)).collect(),
            damaged: Vec::new(),
            batches: logged.map(entry).collect(),
            blocks: HashMap::new(),
        }
    }

    #[test]
    fn a_replay_starts_at_the_newest_checkpoint_before_the_first_batch() {
        let r = recorded(&[4, 8], 5..=10);
        assert_eq!(r.replayable(), Some((5, 10)));
        let s = r.start_for(9, 10).unwrap();
        assert_eq!(s.checkpoint.map(|c| c.seq), Some(8));
        assert_eq!(s.batches.iter().map(|e| e.seq).collect::<Vec<_>>(), [9, 10]);
        let s = r.start_for(6, 7).unwrap();
        assert_eq!(s.checkpoint.map(|c| c.seq), Some(4));
        assert_eq!(
            s.batches.len(),
            3,
            "5 rebuilds the state, 6 and 7 are compared"
        );
        assert!(
            r.start_for(3, 6).is_none(),
            "batches 1..4 are no longer logged"
        );
        assert!(r.start_for(9, 11).is_none(), "batch 11 was never logged");
    }

    #[test]
    fn without_a_checkpoint_a_log_from_batch_one_replays_from_the_start() {
        let r = recorded(&[], 1..=3);
        assert_eq!(r.replayable(), Some((1, 3)));
        let s = r.start_for(2, 3).unwrap();
        assert!(s.checkpoint.is_none());
        assert_eq!(s.batches.len(), 3);
        assert_eq!(recorded(&[], 4..=6).replayable(), None);
    }

    /// Issue 15 (fuzzing): a checkpoint or batches numbered up to
    /// `u64::MAX` (damaged numbers) overflowed `seq + 1`.
    #[test]
    fn batch_numbers_at_the_end_of_u64_do_not_overflow() {
        let r = recorded(&[u64::MAX], 1..=3);
        assert_eq!(r.replayable(), Some((1, 3)));
        assert!(r.start_for(u64::MAX, u64::MAX).is_none());
        let r = recorded(&[u64::MAX - 2], u64::MAX - 1..=u64::MAX);
        assert_eq!(r.replayable(), Some((u64::MAX - 1, u64::MAX)));
        let s = r.start_for(u64::MAX, u64::MAX).unwrap();
        assert_eq!(s.batches.len(), 2);
        // Read from disk, such numbers are damage.
        let mut c = checkpoint(u64::MAX);
        assert!(super::super::read_checkpoint_bytes(&log::frame(&c)).is_none());
        c.seq = 9;
        assert!(super::super::read_checkpoint_bytes(&log::frame(&c)).is_some());
        let bytes = log::frame(&entry(u64::MAX));
        assert!(decode_batch_entry(&bytes[8..]).is_none());
        assert!(decode_batch_entry(&log::frame(&entry(9))[8..]).is_some());
    }
}
