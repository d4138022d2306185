//! Checkpoints, write-ahead logs and recovery.
//!
//! A checkpoint directory holds:
//!
//! ```text
//! metadata.json                  the pipeline (one line per stream), config, module hashes
//! modules/<sha256>.wasm          every plugin module, content-addressed
//! wal/blocks-<first id>.log      received socket blocks, logged before they join a batch
//! wal/batches-<first seq>.log    what each batch is made of, logged before it runs
//! checkpoints/checkpoint-<seq>.bin   node state + source positions after batch <seq>
//! ```
//!
//! Files that must appear whole are written as `.<name>.weir-tmp` and
//! renamed; what a crash left of those is removed when a job opens the
//! directory again (`leftovers.rs` says exactly what is removed).
//!
//! Operator state and source positions are stored as [`Snapshot`]s: bytes
//! tagged with the kind and version of the encoding their owner wrote. This
//! module stores them without interpreting them; each operator and source
//! reads its own. Checkpoints written by format 1 (which stored the
//! executor's structures directly) are read through `v1.rs`, which converts
//! them to snapshots.
//!
//! Every batch is a pure function of its logged input and the state before
//! it, so recovery loads the newest valid checkpoint and re-runs every
//! logged batch after it — same modules, same partitioning, same state —
//! producing the same outputs byte for byte. Logs older than the oldest
//! checkpoint kept are deleted, so disk use stays bounded.

mod leftovers;
pub mod log;
pub mod recorded;
pub(crate) mod v1;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use weir_abi::RecordBatch;

use self::log::{frame, write_atomic, SegmentLog};

/// Version of the on-disk formats. Format 1 is still read.
pub const FORMAT: u32 = 2;

/// A versioned, self-describing piece of state: the kind and version of
/// its encoding, and the bytes, which only the owner interprets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What wrote it (`keyed_state`, `window`, `source_position`, ...).
    pub kind: String,
    /// Version of that encoding.
    pub version: u32,
    /// The encoded state.
    pub bytes: Vec<u8>,
}

impl Snapshot {
    /// `value` encoded (bincode, legacy configuration) as `kind` `version`.
    pub fn encode<T: Serialize + ?Sized>(kind: &str, version: u32, value: &T) -> Snapshot {
        Snapshot {
            kind: kind.into(),
            version,
            bytes: bincode::serde::encode_to_vec(value, bincode::config::legacy())
                .expect("in-memory encoding cannot fail"),
        }
    }

    /// The value back, if the snapshot is `kind` of exactly `version` (an
    /// owner that reads several versions asks for each it knows: bytes of
    /// one version are never decoded as another's).
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        kind: &'static str,
        version: u32,
    ) -> Result<T, SnapshotError> {
        if self.kind != kind || self.version != version {
            return Err(SnapshotError::Unexpected {
                found: self.kind.clone(),
                found_version: self.version,
                kind,
                version,
            });
        }
        match log::decode_bounded(&self.bytes) {
            Ok((v, used)) if used == self.bytes.len() => Ok(v),
            Ok((_, used)) => Err(SnapshotError::TrailingBytes {
                kind,
                extra: self.bytes.len() - used,
            }),
            Err(source) => Err(SnapshotError::Malformed { kind, source }),
        }
    }
}

/// Why a checkpoint's state could not be given back to its owners.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A stateful operator or a source has no snapshot.
    #[error("the checkpoint has no state for `{owner}`")]
    Missing { owner: String },
    /// A snapshot its owner cannot read.
    #[error("state of `{owner}`: {source}")]
    Snapshot {
        owner: String,
        #[source]
        source: SnapshotError,
    },
}

/// Why a logged batch could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log holds another source's kind of input.
    #[error("a {source_kind} source cannot replay {input}")]
    WrongInput {
        source_kind: &'static str,
        input: String,
    },
    /// The batch's files cannot be read any more.
    #[error("{source} (files of a logged batch must stay until a checkpoint covers it)")]
    FilesGone {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Kafka could not give the logged offset ranges again.
    #[error("{what}: {message}")]
    Kafka { what: String, message: String },
    /// A logged block is gone.
    #[error("block {id} is missing from the write-ahead log")]
    BlockMissing { id: u64 },
    /// The logged input does not decode.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The module that ran the batch cannot run it again.
    #[error("plugin `{plugin}`: {source}")]
    Module {
        plugin: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A snapshot its reader cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Another kind, or another version, than the reader asked for.
    #[error("a `{found}` snapshot of version {found_version} where `{kind}` version {version} was expected")]
    Unexpected {
        found: String,
        found_version: u32,
        kind: &'static str,
        version: u32,
    },
    /// Bytes that do not decode.
    #[error("the `{kind}` snapshot is malformed: {source}")]
    Malformed {
        kind: &'static str,
        #[source]
        source: bincode::error::DecodeError,
    },
    /// Bytes left over after the value.
    #[error("the `{kind}` snapshot has {extra} bytes after its value")]
    TrailingBytes { kind: &'static str, extra: usize },
}

/// Checkpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The directory.
    pub dir: PathBuf,
    /// Write a checkpoint every this many batches.
    pub every_batches: u64,
    /// Checkpoints to keep (at least 2, so a damaged newest one has a
    /// fallback).
    pub keep: usize,
    /// Log received socket blocks before they join a batch.
    pub write_ahead_log: bool,
}

/// A checkpoint or log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File system trouble.
    #[error("checkpoint: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint belongs to a different pipeline.
    #[error(
        "the checkpoint in {} was written by a different pipeline:\n{}\nrestore the original pipeline, use another checkpoint directory, \
         or pass --fresh to discard the checkpoint and start from scratch",
        dir.display(),
        changes.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n")
    )]
    PipelineChanged { dir: PathBuf, changes: Vec<String> },
    /// The directory holds no checkpoint (no metadata.json).
    #[error(
        "{} is not a checkpoint directory (it has no metadata.json): give the directory a job ran with \
         `checkpoint = \"...\"` or `--checkpoint DIR`",
        dir.display()
    )]
    NotACheckpoint { dir: PathBuf },
    /// Metadata that cannot be read.
    #[error("checkpoint metadata {} is unreadable: {reason}", path.display())]
    BadMetadata { path: PathBuf, reason: String },
    /// The logged batches do not continue the newest usable checkpoint.
    #[error(
        "cannot recover from {}: the newest usable checkpoint ends at batch {after} but the log continues at batch {next} \
         (the checkpoints in between are damaged or missing); start from scratch with --fresh",
        dir.display()
    )]
    Gap { dir: PathBuf, after: u64, next: u64 },
    /// The block log names a block no further block can follow.
    #[error(
        "cannot recover from {}: its block log holds a block numbered {id}, the largest possible (a damaged log);          start from scratch with --fresh",
        dir.display()
    )]
    BlockIdExhausted { dir: PathBuf, id: u64 },
    /// The checkpoint's state cannot be given back to the job.
    #[error("cannot recover from {}: {source}; start from scratch with --fresh", dir.display())]
    Restore {
        dir: PathBuf,
        #[source]
        source: RestoreError,
    },
    /// A logged batch cannot be rebuilt.
    #[error("cannot replay batch {batch_time_ms} ms: {source}")]
    Replay {
        batch_time_ms: i64,
        #[source]
        source: ReplayError,
    },
}

/// Marks a format-2 batch-log entry (format 1 began with the batch number,
/// which never reaches this value).
pub const BATCH_ENTRY_MAGIC: u64 = 0x5745_4952_4c4f_4702;

/// One entry of the batch log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// [`BATCH_ENTRY_MAGIC`].
    pub magic: u64,
    /// Batch number, from 1.
    pub seq: u64,
    /// Batch time.
    pub batch_time_ms: i64,
    /// Time slides count from.
    pub zero_ms: i64,
    /// Per source, what it contributed (the source's snapshot of it).
    pub sources: Vec<Snapshot>,
    /// Plugin → module hash that ran this batch.
    pub modules: BTreeMap<String, String>,
}

/// One entry of the block log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockEntry {
    /// Block id, from 1.
    pub id: u64,
    /// Source index.
    pub source: u32,
    /// The records.
    pub records: RecordBatch,
}

/// The contents of a checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointData {
    /// Format version.
    pub format: u32,
    /// The last batch included.
    pub seq: u64,
    /// Its batch time.
    pub batch_time_ms: i64,
    /// Time slides count from.
    pub zero_ms: i64,
    /// The state of every stateful node, by stream name.
    pub nodes: Vec<(String, Snapshot)>,
    /// Every source's position.
    pub sources: Vec<Snapshot>,
    /// The highest logged block id already in a batch, for every source
    /// that logs blocks (the block log is kept from there on).
    pub blocks_consumed: Option<u64>,
    /// Plugin → module hash running when the checkpoint was taken.
    pub modules: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Metadata {
    format: u32,
    job: String,
    pipeline: Vec<String>,
    modules: BTreeMap<String, String>,
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The newest valid checkpoint, if any.
    pub checkpoint: Option<CheckpointData>,
    /// Logged batches after it, in order.
    pub replay: Vec<BatchEntry>,
    /// Logged blocks by id.
    pub blocks: HashMap<u64, BlockEntry>,
}

impl Recovery {
    /// Logged blocks of `source` not yet in any batch, oldest first.
    pub fn unassigned_blocks(&self, source: u32, consumed_up_to: u64) -> Vec<(u64, RecordBatch)> {
        let mut ids: Vec<u64> = self
            .blocks
            .values()
            .filter(|b| b.source == source && b.id > consumed_up_to)
            .map(|b| b.id)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| (id, self.blocks[&id].records.clone()))
            .collect()
    }
}

/// The write-ahead log of received blocks, shared with receiver tasks.
pub struct BlockLog {
    log: Mutex<SegmentLog>,
    next_id: AtomicU64,
}

impl BlockLog {
    /// Logs a block durably and returns its id.
    pub fn append(&self, source: u32, records: &RecordBatch) -> Result<u64, CheckpointError> {
        let mut log = self.log.lock().expect("block log poisoned");
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        log.append(&BlockEntry {
            id,
            source,
            records: records.clone(),
        })?;
        Ok(id)
    }

    fn rotate(&self) -> Result<(), CheckpointError> {
        let mut log = self.log.lock().expect("block log poisoned");
        log.rotate(self.next_id.load(Ordering::SeqCst))
    }
}

/// Manages one checkpoint directory for a running job.
pub struct Checkpointer {
    config: CheckpointConfig,
    batches: SegmentLog,
    blocks: Arc<BlockLog>,
    modules: BTreeMap<String, String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Checkpointer {
    /// Opens (or creates) the directory for a job described by `pipeline`
    /// (one line per stream) whose plugins are `modules` (name → (hash,
    /// module file)). With `fresh`, an existing checkpoint is discarded.
    /// Refuses a checkpoint written by a different pipeline.
    pub fn open(
        config: CheckpointConfig,
        job: &str,
        pipeline: Vec<String>,
        modules: BTreeMap<String, (String, PathBuf)>,
        fresh: bool,
    ) -> Result<(Checkpointer, Recovery), CheckpointError> {
        let dir = config.dir.clone();
        if fresh {
            leftovers::discard(&dir)?;
        }
        leftovers::create(&dir)?;
        let hashes: BTreeMap<String, String> = modules
            .iter()
            .map(|(n, (h, _))| (n.clone(), h.clone()))
            .collect();
        let meta_path = dir.join("metadata.json");
        let meta = Metadata {
            format: FORMAT,
            job: job.into(),
            pipeline,
            modules: hashes.clone(),
        };
        if meta_path.exists() {
            let text = fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
            let old: Metadata =
                serde_json::from_str(&text).map_err(|e| CheckpointError::BadMetadata {
                    path: meta_path.clone(),
                    reason: e.to_string(),
                })?;
            let mut changes = pipeline_changes(&old.pipeline, &meta.pipeline);
            changes.extend(job_renamed(&old.job, job));
            if !changes.is_empty() {
                return Err(CheckpointError::PipelineChanged { dir, changes });
            }
            for (name, hash) in &hashes {
                if old.modules.get(name).is_some_and(|h| h != hash) {
                    tracing::warn!(plugin = %name, "plugin module differs from the one in the checkpoint; the new module runs from here on");
                }
            }
        }
        // The directory is this job's (a different pipeline was refused
        // above): what an interrupted run left goes before the first write.
        leftovers::remove(&dir)?;
        let json = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
        write_atomic(&meta_path, &json).map_err(io(&meta_path))?;
        for (hash, path) in modules.values() {
            let stored = dir.join("modules").join(format!("{hash}.wasm"));
            if !stored.exists() {
                let bytes = fs::read(path).map_err(io(path))?;
                write_atomic(&stored, &bytes).map_err(io(&stored))?;
            }
        }

        let batches = SegmentLog::new(dir.join("wal"), "batches", true);
        let blocks_log = SegmentLog::new(dir.join("wal"), "blocks", true);
        let checkpoint = newest_valid_checkpoint(&dir.join("checkpoints"))?;
        let after = checkpoint.as_ref().map_or(0, |c| c.seq);
        let replay: Vec<BatchEntry> = batches
            .read_all_with(decode_batch_entry)?
            .into_iter()
            .filter(|e| e.seq > after)
            .collect();
        // The logged batches must continue the checkpoint without a gap;
        // otherwise (every checkpoint that covered the gap is damaged and
        // its logs are gone) replaying would compute from the wrong state.
        let mut expected = after + 1;
        for e in &replay {
            if e.seq != expected {
                return Err(CheckpointError::Gap {
                    dir,
                    after,
                    next: e.seq,
                });
            }
            expected += 1;
        }
        let blocks: HashMap<u64, BlockEntry> = blocks_log
            .read_all::<BlockEntry>()?
            .into_iter()
            .map(|b| (b.id, b))
            .collect();
        let next_block = match blocks.keys().max() {
            None => 1,
            Some(&id) => id.checked_add(1).ok_or(CheckpointError::BlockIdExhausted {
                dir: dir.clone(),
                id,
            })?,
        };
        let next_seq = replay.last().map(|e| e.seq).unwrap_or(after) + 1;
        let mut me = Checkpointer {
            config,
            batches,
            blocks: Arc::new(BlockLog {
                log: Mutex::new(blocks_log),
                next_id: AtomicU64::new(next_block),
            }),
            modules: hashes,
        };
        me.batches.rotate(next_seq)?;
        me.blocks.rotate()?;
        Ok((
            me,
            Recovery {
                checkpoint,
                replay,
                blocks,
            },
        ))
    }

    /// The block log, for receivers.
    pub fn block_log(&self) -> Option<Arc<BlockLog>> {
        self.config.write_ahead_log.then(|| self.blocks.clone())
    }

    /// The checkpoint settings.
    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    /// Plugin → module hash, recorded with every batch.
    pub fn modules(&self) -> &BTreeMap<String, String> {
        &self.modules
    }

    /// Records that plugin `name` now runs `plugin`'s module: keeps the
    /// module content-addressed and updates the metadata, so recovery (and
    /// every later batch log entry) uses it.
    pub fn record_module(
        &mut self,
        name: &str,
        hash: &str,
        bytes: &[u8],
    ) -> Result<(), CheckpointError> {
        let stored = self.config.dir.join("modules").join(format!("{hash}.wasm"));
        if !stored.exists() {
            write_atomic(&stored, bytes).map_err(io(&stored))?;
        }
        self.modules.insert(name.to_string(), hash.to_string());
        let meta_path = self.config.dir.join("metadata.json");
        let text = fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
        let mut meta: Metadata =
            serde_json::from_str(&text).map_err(|e| CheckpointError::BadMetadata {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        meta.modules = self.modules.clone();
        write_atomic(
            &meta_path,
            &serde_json::to_vec_pretty(&meta).expect("metadata serializes"),
        )
        .map_err(io(&meta_path))
    }

    /// The bytes of a module kept in the checkpoint.
    pub fn module_bytes(&self, hash: &str) -> Result<Vec<u8>, CheckpointError> {
        let path = self.config.dir.join("modules").join(format!("{hash}.wasm"));
        fs::read(&path).map_err(io(&path))
    }

    /// Logs a batch's contents durably, before it runs.
    pub fn log_batch(&mut self, entry: &BatchEntry) -> Result<(), CheckpointError> {
        self.batches.append(entry)
    }

    /// Writes a checkpoint after batch `data.seq`, keeps the newest
    /// `keep`, and deletes log segments no kept checkpoint needs.
    pub fn write(&mut self, data: &CheckpointData) -> Result<(), CheckpointError> {
        let dir = self.config.dir.join("checkpoints");
        let path = dir.join(format!("checkpoint-{:020}.bin", data.seq));
        write_atomic(&path, &frame(data)).map_err(io(&path))?;
        // New segments start after this checkpoint.
        self.batches.rotate(data.seq + 1)?;
        self.blocks.rotate()?;
        let mut files = checkpoint_files(&dir)?;
        while files.len() > self.config.keep.max(1) {
            let (_, old) = files.remove(0);
            fs::remove_file(&old).map_err(io(&old))?;
        }
        // Logs are needed from the oldest checkpoint kept on.
        if let Some((_, oldest)) = files.first() {
            if let Some(c) = read_checkpoint(oldest) {
                self.batches.delete_through(c.seq)?;
                let upto = c.blocks_consumed.unwrap_or_else(|| {
                    self.blocks.next_id.load(Ordering::SeqCst).saturating_sub(1)
                });
                self.blocks
                    .log
                    .lock()
                    .expect("block log poisoned")
                    .delete_through(upto)?;
            }
        }
        Ok(())
    }
}

/// A batch-log entry (one frame's payload) of either format: format 2
/// entries begin with their magic number; anything else is format 1
/// (never decoded as the other format). A batch numbered `u64::MAX` is
/// damage (no job runs that many batches), and the batch after it could
/// not be numbered.
pub fn decode_batch_entry(payload: &[u8]) -> Option<BatchEntry> {
    if payload.get(..8) == Some(&BATCH_ENTRY_MAGIC.to_le_bytes()[..]) {
        log::decode::<BatchEntry>(payload)
    } else {
        v1::decode_batch_entry(payload)
    }
    .filter(|e| e.seq < u64::MAX)
}

/// Modules kept in a checkpoint directory: plugin name → stored module
/// file. Recovery runs these, not files that may have changed since.
pub fn stored_modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let Ok(text) = fs::read_to_string(dir.join("metadata.json")) else {
        return BTreeMap::new();
    };
    let Ok(meta) = serde_json::from_str::<Metadata>(&text) else {
        return BTreeMap::new();
    };
    meta.modules
        .into_iter()
        .map(|(name, hash)| (name, dir.join("modules").join(format!("{hash}.wasm"))))
        .filter(|(_, p)| p.exists())
        .collect()
}

fn checkpoint_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(seq) = name
            .strip_prefix("checkpoint-")
            .and_then(|r| r.strip_suffix(".bin"))
            .and_then(|s| s.parse().ok())
        {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

fn read_checkpoint(path: &Path) -> Option<CheckpointData> {
    read_checkpoint_bytes(&fs::read(path).ok()?)
}

/// A checkpoint file's contents, if they are exactly one whole frame of
/// either format, after a batch numbered below `u64::MAX` (the batches
/// after it are numbered from its number + 1).
pub fn read_checkpoint_bytes(bytes: &[u8]) -> Option<CheckpointData> {
    // Both formats begin with their number (a little-endian u32): look at
    // it before decoding, so one format's bytes are never read as the
    // other's (whose lengths would be garbage).
    let (mut values, valid) = log::read_frames_with(bytes, |payload| {
        match payload
            .get(..4)
            .map(|f| u32::from_le_bytes(f.try_into().expect("4 bytes")))
        {
            Some(FORMAT) => log::decode::<CheckpointData>(payload),
            Some(1) => v1::convert_checkpoint(payload),
            _ => None,
        }
    });
    (valid == bytes.len() && values.len() == 1)
        .then(|| values.remove(0))
        .filter(|c| c.seq < u64::MAX)
}

/// The newest checkpoint that reads back whole; damaged ones are reported
/// by path and skipped.
fn newest_valid_checkpoint(dir: &Path) -> Result<Option<CheckpointData>, CheckpointError> {
    for (_, path) in checkpoint_files(dir)?.into_iter().rev() {
        match read_checkpoint(&path) {
            Some(c) => {
                tracing::info!(path = %path.display(), batch = c.seq, batch_time_ms = c.batch_time_ms, "recovering from checkpoint");
                return Ok(Some(c));
            }
            None => {
                tracing::warn!(path = %path.display(), "checkpoint is damaged (truncated or checksum mismatch); trying the previous one")
            }
        }
    }
    Ok(None)
}

/// Differences between two pipeline descriptions, by stream name.
/// A job renamed since the checkpoint, as a pipeline change: plugins'
/// virtual WASI randomness is seeded with the job's name, so the same
/// batches would compute other bytes under another name.
pub(crate) fn job_renamed(old: &str, new: &str) -> Option<String> {
    (old != new).then(|| {
        format!("job name changed: `{old}` → `{new}` (plugins' seeded randomness depends on it)")
    })
}

pub(crate) fn pipeline_changes(old: &[String], new: &[String]) -> Vec<String> {
    let key = |l: &String| {
        l.split_once(" = ")
            .map_or(l.clone(), |(k, _)| k.to_string())
    };
    let old_map: BTreeMap<String, &String> = old.iter().map(|l| (key(l), l)).collect();
    let new_map: BTreeMap<String, &String> = new.iter().map(|l| (key(l), l)).collect();
    let mut changes = Vec::new();
    for (k, o) in &old_map {
        match new_map.get(k) {
            None => changes.push(format!("`{k}` was removed (was: {o})")),
            Some(n) if n != o => changes.push(format!("`{k}` changed: was {o}, now {n}")),
            _ => {}
        }
    }
    for (k, n) in &new_map {
        if !old_map.contains_key(k) {
            changes.push(format!("`{k}` was added: {n}"));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_changes_are_named() {
        let old = vec![
            "job = interval 1000 ms".to_string(),
            "a = source(x)".into(),
            "b = map(a; f)".into(),
        ];
        let new = vec![
            "job = interval 1000 ms".to_string(),
            "a = source(x)".into(),
            "c = map(a; f)".into(),
        ];
        let ch = pipeline_changes(&old, &new);
        assert_eq!(ch.len(), 2);
        assert!(ch[0].contains("`b` was removed"));
        assert!(ch[1].contains("`c` was added"));
        assert!(pipeline_changes(&old, &old).is_empty());
    }
}
