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
    ) -> Result<Self, EngineError> {
        let mut source = FileSource {
            name,
            dir,
            seen: HashSet::new(),
            block_records: block_records.clamp(1, MAX_BLOCK_RECORDS),
        };
        if !include_existing {
            source.seen = source.list()?.into_iter().map(|(_, p)| p).collect();
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

    fn list(&self) -> Result<Vec<(SystemTime, PathBuf)>, EngineError> {
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(&self.dir).min_depth(1).max_depth(1) {
            let entry = entry.map_err(|e| self.error("list", &self.dir, e.into()))?;
            if !entry.file_type().is_file() || is_hidden(entry.path()) {
                continue;
            }
            let mtime = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            files.push((mtime, entry.into_path()));
        }
        files.sort();
        Ok(files)
    }

    /// New files since the last call, in order; marks them seen.
    pub fn new_files(&mut self) -> Result<Vec<PathBuf>, EngineError> {
        let fresh: Vec<PathBuf> = self
            .list()?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| !self.seen.contains(p))
            .collect();
        self.seen.extend(fresh.iter().cloned());
        Ok(fresh)
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
