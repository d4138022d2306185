//! Per-batch statistics, as Spark's streaming UI shows them.

use std::io::Write;
use std::path::Path;

/// What happened in one batch. Delays are measured against the batch time
/// on the job's clock.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchStats {
    /// Batch time (ms since the epoch, or since the simulated start).
    pub batch_time_ms: i64,
    /// Records that entered the batch from all sources.
    pub input_records: u64,
    /// From start of processing to outputs written.
    pub processing_ms: f64,
    /// From batch time to start of processing.
    pub scheduling_delay_ms: f64,
    /// Scheduling delay plus processing time.
    pub total_delay_ms: f64,
}

/// Appends stats as JSON lines.
pub struct StatsFile {
    file: std::fs::File,
}

impl StatsFile {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(StatsFile {
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        })
    }

    /// Writes one line.
    pub fn append(&mut self, stats: &BatchStats) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(stats).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}
