//! A directory of text files, like Spark's `textFileStream`.
//!
//! When a batch is cut, the directory (top level only) is listed; every
//! regular file not seen before becomes part of that batch, one record per
//! line, files in (modification time, name) order. Files must appear
//! atomically: write them elsewhere (or under a name starting with `.` or
//! `_`, which is ignored) and rename them into place. Files already present
//! at start are ignored unless `include_existing` is set.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use weir_abi::RecordBatch;

use super::{lines_to_blocks, Source, MAX_BLOCK_RECORDS};
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
        };
        if !include_existing {
            source.seen = source.list()?.into_iter().map(|(_, p, _)| p).collect();
        }
        Ok(source)
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
        for (_, path, len) in self.list()? {
            if self.seen.contains(&path) {
                continue;
            }
            let full = self
                .limits
                .max_files
                .is_some_and(|m| files.len() >= m.max(1))
                || self
                    .limits
                    .max_bytes
                    .is_some_and(|m| !files.is_empty() && bytes.saturating_add(len) > m);
            if full {
                break;
            }
            bytes = bytes.saturating_add(len);
            files.push(path);
        }
        self.seen.extend(files.iter().cloned());
        Ok(files)
    }

    /// Reads files into blocks of lines (a trailing newline ends the last
    /// line; `\r\n` is accepted).
    pub fn read_files(&self, files: &[PathBuf]) -> Result<Vec<RecordBatch>, EngineError> {
        let mut blocks = Vec::new();
        for path in files {
            let data = std::fs::read(path).map_err(|e| self.error("read", path, e))?;
            let body = data.strip_suffix(b"\n").unwrap_or(&data);
            if data.is_empty() {
                continue;
            }
            let lines = body
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
            blocks.extend(lines_to_blocks(lines, self.block_records));
        }
        Ok(blocks)
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

    fn restore(&mut self, position: &SourcePosition, _recovery: &Recovery, _index: u32) {
        if let SourcePosition::Files(seen) = position {
            self.seen = seen.iter().cloned().collect();
        }
    }
}
