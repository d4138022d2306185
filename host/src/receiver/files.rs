//! A directory of text files, like Spark's `textFileStream`.
//!
//! When a batch is cut, the directory (top level only) is listed; every
//! regular file not seen before becomes part of that batch, one record per
//! line, files in (modification time, name) order. Files must appear
//! atomically: write them elsewhere (or under a name starting with `.` or
//! `_`, which is ignored) and rename them into place. Files already present
//! at start are ignored unless `include_existing` is set.
//!
//! A batch takes files up to its limits ([`FileLimits`]) and, with
//! backpressure on, up to what the rate estimator allows: the estimated
//! records per second times the interval, turned into bytes with the
//! bytes per line this source has read so far. The cut is logged (the
//! batch's file list), so replay never depends on the estimate. Files are
//! read line by line straight into the job's partitions, never held whole.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use weir_abi::RecordBatch;

use super::rate::{PidConfig, PidRateEstimator};
use super::{BatchDone, Source, MAX_BLOCK_RECORDS};
use super::{SourceInput, SourcePosition};
use crate::checkpoint::{Recovery, ReplayError};
use crate::error::EngineError;

/// The file-stream source.
#[derive(Debug)]
pub struct FileSource {
    name: Arc<str>,
    dir: PathBuf,
    seen: HashSet<PathBuf>,
    block_records: usize,
    limits: FileLimits,
    /// Backpressure: the rate the job keeps up with, in lines per second.
    estimator: Option<PidRateEstimator>,
    interval_ms: i64,
    /// Lines and bytes read so far (for bytes per line).
    lines_read: u64,
    bytes_read: u64,
    /// Lay lines straight into this many partitions.
    partitions: Option<usize>,
}

/// How much one batch takes from the directory (Spark's
/// `maxFilesPerTrigger` idea): files past a limit wait for the next batch,
/// oldest first, so a late job catches up in bounded batches. A batch
/// always takes at least one file if there is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileLimits {
    /// Files per batch at most.
    pub max_files: Option<usize>,
    /// Bytes per batch at most (a larger single file is taken alone).
    pub max_bytes: Option<u64>,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.') || n.starts_with('_'))
}

impl FileSource {
    /// Watches `dir`. Unless `include_existing`, files there now are skipped.
    pub fn new(
        name: Arc<str>,
        dir: PathBuf,
        include_existing: bool,
        block_records: usize,
        limits: FileLimits,
    ) -> Result<Self, EngineError> {
        let mut source = FileSource {
            name,
            dir,
            seen: HashSet::new(),
            block_records: block_records.clamp(1, MAX_BLOCK_RECORDS),
            limits,
            estimator: None,
            interval_ms: 1000,
            lines_read: 0,
            bytes_read: 0,
            partitions: None,
        };
        if !include_existing {
            source.seen = source.list()?.into_iter().map(|(_, p, _)| p).collect();
        }
        Ok(source)
    }

    /// Adapts the batch size to the job (Spark's backpressure): a batch
    /// takes about what the job processed per interval lately.
    pub fn with_backpressure(mut self, config: PidConfig, interval_ms: i64) -> Self {
        self.estimator = Some(PidRateEstimator::new(config, interval_ms));
        self.interval_ms = interval_ms.max(1);
        self
    }

    /// Bytes the next batch may take: the configured limit, and what the
    /// estimated rate allows (once there is an estimate and a line read).
    fn byte_budget(&self) -> Option<u64> {
        // The estimate, else the initial rate, else the processing rate of
        // the first batch measured (a one-file batch, start-up included:
        // it may start low, and the estimator raises it from there).
        let rate = self
            .estimator
            .as_ref()
            .map(|e| e.rate().or_else(|| e.limit()));
        let by_rate = match (rate, self.lines_read) {
            (Some(Some(rate)), lines) if lines > 0 => {
                let per_line = self.bytes_read as f64 / lines as f64;
                Some((rate * self.interval_ms as f64 / 1000.0 * per_line).max(1.0) as u64)
            }
            // No rate yet, or no line read to turn it into bytes: one file,
            // to learn both (not a batch of everything waiting).
            (Some(_), _) => Some(0),
            (None, _) => None,
        };
        match (self.limits.max_bytes, by_rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn error(&self, action: &'static str, path: &Path, source: std::io::Error) -> EngineError {
        EngineError::Source {
            source_name: self.name.clone(),
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// The directory's files, oldest first: (modified, path, length).
    fn list(&self) -> Result<Vec<(SystemTime, PathBuf, u64)>, EngineError> {
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(&self.dir).min_depth(1).max_depth(1) {
            let entry = entry.map_err(|e| self.error("list", &self.dir, e.into()))?;
            if !entry.file_type().is_file() || is_hidden(entry.path()) {
                continue;
            }
            let meta = entry.metadata().ok();
            let mtime = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let len = meta.map_or(0, |m| m.len());
            files.push((mtime, entry.into_path(), len));
        }
        files.sort();
        Ok(files)
    }

    /// New files since the last call, oldest first, within the batch's
    /// limits; marks them seen (the others wait for the next call).
    pub fn new_files(&mut self) -> Result<Vec<PathBuf>, EngineError> {
        let (mut files, mut bytes) = (Vec::new(), 0u64);
        let max_bytes = self.byte_budget();
        for (_, path, len) in self.list()? {
            if self.seen.contains(&path) {
                continue;
            }
            let full = self
                .limits
                .max_files
                .is_some_and(|m| files.len() >= m.max(1))
                || max_bytes.is_some_and(|m| !files.is_empty() && bytes.saturating_add(len) > m);
            if full {
                break;
            }
            bytes = bytes.saturating_add(len);
            files.push(path);
        }
        self.seen.extend(files.iter().cloned());
        Ok(files)
    }

    /// Lays each batch's lines straight into `partitions` partitions (what
    /// the job splits them into anyway), instead of handing out blocks to
    /// be copied into partitions: the batch is held once, not twice.
    pub fn with_partitions(mut self, partitions: usize) -> Self {
        self.partitions = Some(partitions.max(1));
        self
    }

    /// Reads files into blocks of lines (a trailing newline ends the last
    /// line; `\r\n` is accepted), line by line: a file is never held
    /// whole besides its lines in blocks. Blocks do not span files. With
    /// [`with_partitions`](Self::with_partitions)`(n)`, block `j`'s lines
    /// are appended to partition `j % n` as they are read, which gives the
    /// partitions the job would have cut from the blocks.
    pub fn read_files(&mut self, files: &[PathBuf]) -> Result<Vec<RecordBatch>, EngineError> {
        let mut out = Laid::new(self.partitions, self.block_records);
        if let Some(n) = self.partitions {
            let mut bytes = 0u64;
            for path in files {
                bytes = bytes.saturating_add(std::fs::metadata(path).map_or(0, |m| m.len()));
            }
            // Framing adds 8 bytes a line; until lines are read, assume 64.
            let per_line = match self.lines_read {
                0 => 64,
                l => (self.bytes_read / l).max(1),
            };
            let framed = bytes.saturating_add((bytes / per_line).saturating_mul(8));
            let each = framed / n as u64;
            // Capped: a huge or sparse file must not reserve what it may
            // never fill (past it, a large buffer grows by remapping).
            out.reserve(each.saturating_add(each / 16).min(MAX_RESERVE) as usize);
        }
        let mut line = Vec::new();
        for path in files {
            let file = std::fs::File::open(path).map_err(|e| self.error("read", path, e))?;
            let mut reader = std::io::BufReader::with_capacity(256 << 10, file);
            loop {
                let available = match reader.fill_buf() {
                    Ok(available) => available,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.error("read", path, e)),
                };
                if available.is_empty() {
                    break;
                }
                // A line whole in the buffer is framed from it; one that
                // crosses the buffer's end is gathered first.
                let n = match memchr::memchr(b'\n', available) {
                    Some(end) => {
                        out.push(&available[..end]);
                        reader.consume(end + 1);
                        end + 1
                    }
                    None => {
                        line.clear();
                        let n = reader
                            .read_until(b'\n', &mut line)
                            .map_err(|e| self.error("read", path, e))?;
                        let text = line.strip_suffix(b"\n").unwrap_or(&line);
                        if u32::try_from(text.len()).is_err() {
                            let e = std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("a line of {} bytes (at most 4 GiB)", text.len()),
                            );
                            return Err(self.error("read", path, e));
                        }
                        out.push(text);
                        n
                    }
                };
                self.bytes_read += n as u64;
                self.lines_read += 1;
            }
            out.end_block();
        }
        Ok(out.finish())
    }
}

/// Bytes reserved up front for a partition at most.
const MAX_RESERVE: u64 = 64 << 20;

/// A batch's lines as they are laid: into blocks, or into partitions.
struct Laid {
    /// The partitions, or the blocks so far.
    batches: Vec<RecordBatch>,
    partitions: Option<usize>,
    block_records: usize,
    /// The current block: its index and lines so far.
    block: usize,
    in_block: usize,
}

impl Laid {
    fn new(partitions: Option<usize>, block_records: usize) -> Self {
        Laid {
            batches: match partitions {
                Some(n) => (0..n).map(|_| RecordBatch::new()).collect(),
                None => vec![RecordBatch::new()],
            },
            partitions,
            block_records,
            block: 0,
            in_block: 0,
        }
    }

    fn reserve(&mut self, bytes: usize) {
        for b in &mut self.batches {
            *b = RecordBatch::with_capacity(bytes);
        }
    }

    /// Appends a line (a `\r` before its newline dropped).
    fn push(&mut self, text: &[u8]) {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let into = match self.partitions {
            Some(n) => self.block % n,
            None => self.block,
        };
        self.batches[into].push(b"", text);
        self.in_block += 1;
        if self.in_block >= self.block_records {
            self.end_block();
        }
    }

    /// Ends the current block, if it has a line (blocks do not span files).
    fn end_block(&mut self) {
        if self.in_block == 0 {
            return;
        }
        self.block += 1;
        self.in_block = 0;
        if self.partitions.is_none() {
            self.batches.push(RecordBatch::new());
        }
    }

    fn finish(mut self) -> Vec<RecordBatch> {
        if self.partitions.is_none() {
            self.batches.retain(|b| !b.is_empty());
        }
        // An empty partition gives back what was reserved for it.
        for b in &mut self.batches {
            if b.is_empty() {
                *b = RecordBatch::new();
            }
        }
        self.batches
    }
}

impl Source for FileSource {
    fn next_batch(
        &mut self,
        _batch_time_ms: i64,
    ) -> Result<(SourceInput, Vec<RecordBatch>), EngineError> {
        let files = self.new_files()?;
        if !files.is_empty() {
            tracing::debug!(source = %self.name, files = files.len(), "new files");
        }
        let blocks = self.read_files(&files)?;
        Ok((SourceInput::Files(files), blocks))
    }

    fn replay(
        &mut self,
        input: &SourceInput,
        _recovery: &Recovery,
    ) -> Result<Vec<RecordBatch>, ReplayError> {
        let SourceInput::Files(files) = input else {
            return Err(ReplayError::WrongInput {
                source_kind: "files",
                input: format!("{input:?}"),
            });
        };
        self.seen.extend(files.iter().cloned());
        self.read_files(files)
            .map_err(|e| ReplayError::FilesGone { source: e.into() })
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Files(self.seen.iter().cloned().collect())
    }

    fn completed(&mut self, done: &BatchDone) {
        if let (Some(e), false) = (&mut self.estimator, done.replayed) {
            if let Some(rate) = e.update(
                done.finished_ms,
                done.records,
                done.processing_ms,
                done.scheduling_delay_ms,
            ) {
                tracing::debug!(source = %self.name, rate, "backpressure rate (lines/s)");
            }
        }
    }

    fn restore(&mut self, position: &SourcePosition, _recovery: &Recovery, _index: u32) {
        if let SourcePosition::Files(seen) = position {
            self.seen = seen.iter().cloned().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(t: i64, records: u64, processing_ms: f64) -> BatchDone {
        BatchDone {
            batch_time_ms: t,
            finished_ms: t,
            records,
            processing_ms,
            scheduling_delay_ms: 0.0,
            replayed: false,
        }
    }

    /// A source with backpressure over `files` files of 100 ten-byte lines
    /// (oldest first by name), and the directory it watches.
    fn backpressured(files: usize, pid: PidConfig) -> (tempfile::TempDir, FileSource) {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..files {
            let body = "word word\n".repeat(100);
            std::fs::write(dir.path().join(format!("f{i:02}")), body).unwrap();
        }
        let source = FileSource::new(
            "files".into(),
            dir.path().to_owned(),
            true,
            1000,
            FileLimits::default(),
        )
        .unwrap()
        .with_backpressure(pid, 1000);
        (dir, source)
    }

    /// The batch at `t`: (files, lines).
    fn take(source: &mut FileSource, t: i64) -> (usize, usize) {
        let (input, blocks) = source.next_batch(t).unwrap();
        let SourceInput::Files(files) = input else {
            panic!("files")
        };
        let lines: usize = blocks.iter().map(RecordBatch::len).sum();
        (files.len(), lines)
    }

    /// With backpressure, a batch takes the files the estimated rate
    /// allows (at the bytes per line read so far), at least one.
    #[test]
    fn with_backpressure_a_batch_follows_the_estimated_rate() {
        let pid = PidConfig {
            initial_rate: Some(200.0),
            ..PidConfig::default()
        };
        let (_dir, mut source) = backpressured(10, pid);
        // No line read yet: one file.
        assert_eq!(take(&mut source, 1000), (1, 100));
        // The first batch only measures; the initial 200 lines/s hold.
        source.completed(&done(1000, 100, 10.0));
        assert_eq!(take(&mut source, 2000), (2, 200));
        // 200 lines in 500 ms: the job does 400 lines/s.
        source.completed(&done(2000, 200, 500.0));
        assert_eq!(take(&mut source, 3000), (4, 400));
        let (files, _) = take(&mut source, 4000);
        assert_eq!(files, 3, "the rest");
    }

    /// With backpressure and no initial rate, a batch takes one file
    /// until a rate is known (not everything waiting), then what the first
    /// measured batch's processing rate allows, until there is an estimate.
    #[test]
    fn with_backpressure_and_no_initial_rate_a_batch_starts_with_one_file() {
        let (_dir, mut source) = backpressured(20, PidConfig::default());
        assert_eq!(take(&mut source, 1000), (1, 100));
        // Before the batch completes there is still no rate: one file.
        assert_eq!(take(&mut source, 2000), (1, 100));
        // 100 lines in 250 ms: 400 lines/s, so 400 lines a 1 s batch.
        source.completed(&done(1000, 100, 250.0));
        assert_eq!(take(&mut source, 3000), (4, 400));
    }

    /// Lines laid straight into partitions are the partitions the job
    /// cuts from blocks: same lines, same order, same partition. The files
    /// have `\r\n`, empty lines, a last line without a newline and lines
    /// longer than the read buffer (gathered across its end).
    #[test]
    fn lines_laid_into_partitions_are_the_partitions_cut_from_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(300 << 10);
        let bodies = [
            "a b\nc\r\n\nd".to_owned(),
            (0..11).map(|i| format!("line {i}\n")).collect(),
            format!("{long}\nshort\n{long}y\r\nlast"),
            String::new(),
            "one\n".to_owned(),
        ];
        let mut files = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, body).unwrap();
            files.push(path);
        }
        let source = |partitions: Option<usize>| {
            let s = FileSource::new(
                "files".into(),
                dir.path().to_owned(),
                true,
                4,
                FileLimits::default(),
            )
            .unwrap();
            match partitions {
                Some(n) => s.with_partitions(n),
                None => s,
            }
        };
        let blocks = source(None).read_files(&files).unwrap();
        assert_eq!(blocks.len(), 6, "blocks of at most 4 lines, per file");
        assert_eq!(
            blocks[0].iter().map(|(_, v)| v).collect::<Vec<_>>(),
            [&b"a b"[..], b"c", b"", b"d"]
        );
        let lines: Vec<&[u8]> = blocks[4].iter().map(|(_, v)| v).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], long.as_bytes());
        assert_eq!(lines[2], format!("{long}y").as_bytes());
        assert_eq!(lines[3], b"last");
        for n in [1, 2, 3, 8] {
            let laid = source(Some(n)).read_files(&files).unwrap();
            assert_eq!(
                laid,
                super::super::blocks_to_partitions(blocks.clone(), n),
                "{n} partitions"
            );
        }
    }
}
