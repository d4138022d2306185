//! TEMPORARY stand-in for the engine's job control API (status, hot swap),
//! which is being added to `stream::context`. Replaced by re-exports once
//! it lands.

use std::collections::BTreeMap;
use std::fmt;

use crate::output::stats::BatchStats;
use crate::stream::RunningJob;
use crate::wasm::Plugin;

#[derive(Clone)]
pub struct JobControl;

#[derive(Debug, Clone)]
pub enum JobState {
    Running,
    Stopped,
    Failed { error: String },
}

#[derive(Debug, Clone)]
pub struct JobStatus {
    pub state: JobState,
    pub batches: u64,
    pub last_batch_ms: Option<i64>,
    pub recent: Vec<BatchStats>,
    pub modules: BTreeMap<String, String>,
}

pub struct SwapReport {
    pub plugin: String,
    pub from: String,
    pub to: String,
    pub first_batch_ms: i64,
    pub migrated_keys: u64,
}

#[derive(Debug)]
pub struct SwapError(String);

impl fmt::Display for SwapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SwapError {}

impl JobControl {
    pub fn status(&self) -> JobStatus {
        JobStatus {
            state: JobState::Running,
            batches: 0,
            last_batch_ms: None,
            recent: Vec::new(),
            modules: BTreeMap::new(),
        }
    }

    pub fn swap_plugin(&self, _name: &str, _new: Plugin) -> Result<SwapReport, SwapError> {
        Err(SwapError("hot swap is not available yet".into()))
    }

    pub fn rollback(&self, _name: &str) -> Result<SwapReport, SwapError> {
        Err(SwapError("hot swap is not available yet".into()))
    }
}

pub fn control(_job: &RunningJob) -> JobControl {
    JobControl
}

pub fn set_retry_limits(
    _config: &mut crate::stream::StreamingConfig,
    _max_retries: u32,
    _max_state_bytes: u64,
) {
}
