//! The JSON bodies of the control API, shared by the server and the client.
//! The README's `weir serve` section shows each of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::output::stats::BatchStats;

/// `POST /v1/jobs`: a pipeline file and the modules (and data files) it
/// refers to, which are written next to it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The pipeline file's text (TOML). Relative paths in it resolve in the
    /// job's directory; absolute paths and `..` are refused.
    pub pipeline: String,
    /// File name (`NAME.wasm` or `NAME.wat`) → module bytes, base64.
    #[serde(default)]
    pub modules: BTreeMap<String, String>,
    /// Other file name (e.g. an `initial_state` file) → bytes, base64.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// `POST /v1/jobs/{id}/upgrade`: a new module for one of the job's plugins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The plugin's name: the file stem of its module in the pipeline.
    pub plugin: String,
    /// Module bytes (`.wasm` binary or WAT text), base64.
    pub module: String,
}

/// `POST /v1/jobs/{id}/rollback`: go back to the module a plugin ran before
/// its last upgrade.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The plugin's name.
    pub plugin: String,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Running batches.
    Running,
    /// A stop was requested; the current batch is finishing.
    Stopping,
    /// Stopped (on request or at shutdown).
    Stopped,
    /// A batch failed after every retry; `error` says why.
    Failed,
    /// Its tenant is over a disk or memory quota: stopped after a batch
    /// (not in the middle of one), it resumes from its checkpoint once the
    /// tenant is back under; `paused` says which quota.
    Paused,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Stopped => "stopped",
            JobState::Failed => "failed",
            JobState::Paused => "paused",
        })
    }
}

/// Why a job failed, structured: `kind` is stable for programs, `message`
/// is the full error for people. Plugin failures say where they happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// `out_of_fuel`, `memory_limit`, `stack_overflow`, `trap`,
    /// `bad_pointer`, `output_too_large`, `malformed_output`, `deadline`,
    /// `guest_error`, `bad_status`, `bad_message`, `no_such_function`,
    /// `instantiate`, `contract`, `output`, `checkpoint`, `source`,
    /// `state_limit` or `engine`.
    pub kind: String,
    /// The whole error message.
    pub message: String,
    /// Plugin of a failed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Function of a failed call (`map:split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Operator (stream) that made the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Batch time of the failed batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_time_ms: Option<i64>,
    /// Partition of the failed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
}

/// Scheduling delay (batch time to start of processing) over the recent
/// batches: how late the host runs this job's batches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DelaySummary {
    /// Batches these figures cover (the most recent ones, up to ~100).
    pub batches: usize,
    /// The last batch's.
    pub last_ms: Option<f64>,
    /// Mean.
    pub mean_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
}

impl DelaySummary {
    /// Summarises `stats`.
    pub fn of(stats: &[BatchStats]) -> DelaySummary {
        if stats.is_empty() {
            return DelaySummary::default();
        }
        let d: Vec<f64> = stats.iter().map(|s| s.scheduling_delay_ms).collect();
        DelaySummary {
            batches: d.len(),
            last_ms: d.last().copied(),
            mean_ms: Some(d.iter().sum::<f64>() / d.len() as f64),
            max_ms: d.iter().copied().reduce(f64::max),
        }
    }
}

/// The limits a job runs under (the server's, lowered by the pipeline's
/// own `[limits]` where those are lower).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLimits {
    /// Fuel per plugin call (one call per operator, partition and batch).
    pub fuel: u64,
    /// Linear memory per instance, bytes.
    pub memory_bytes: u64,
    /// Output per call, bytes.
    pub output_bytes: u64,
    /// Wall-clock safety net per call, ms.
    pub deadline_ms: u64,
    /// Worker threads of the job (its share of the host).
    pub workers: usize,
    /// Partitions of its input streams.
    pub partitions: usize,
    /// Times a failed batch is retried before the job fails.
    pub max_retries: u32,
    /// Keyed and window state, bytes.
    pub max_state_bytes: u64,
    /// Records a generator source may make per batch.
    pub max_batch_records: u64,
}

/// A job as `GET /v1/jobs/{id}` (and, without `recent`, `GET /v1/jobs`)
/// shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Job id (unique on the host).
    pub id: String,
    /// Owner.
    pub tenant: String,
    /// `[job] name` of the pipeline.
    pub name: String,
    /// State.
    pub state: JobState,
    /// Why it failed (state `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// Why it is paused (state `paused`), e.g. `disk quota 100 MB exceeded
    /// (used 103 MB)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// When it was submitted, ms since the epoch.
    pub submitted_ms: i64,
    /// Batch interval, ms.
    pub batch_interval_ms: u64,
    /// Batches completed.
    pub batches: u64,
    /// Batch time of the last completed batch.
    pub last_batch_ms: Option<i64>,
    /// Scheduling delay over the recent batches.
    pub scheduling_delay: DelaySummary,
    /// Plugin name → sha256 of the module running now.
    pub modules: BTreeMap<String, String>,
    /// Limits.
    pub limits: JobLimits,
    /// Statistics of the recent batches, oldest first (status only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<BatchStats>,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    /// The caller's jobs, oldest first.
    pub jobs: Vec<JobInfo>,
}

/// One quota of a tenant: what its jobs use now, and the most they may
/// (`None`: no limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUse {
    /// Used now.
    pub used: u64,
    /// The quota.
    pub limit: Option<u64>,
}

/// `GET /v1/tenant`: the caller's quotas and what its jobs use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantStatus {
    /// The tenant.
    pub tenant: String,
    /// Running jobs.
    pub jobs: QuotaUse,
    /// Bytes of its job directories (as last measured).
    pub disk_bytes: QuotaUse,
    /// Bytes of its running and paused jobs' modules and state.
    pub memory_bytes: QuotaUse,
    /// Fuel per second: `used` is the fuel burnt over the last 10 s,
    /// per second.
    pub fuel_per_second: QuotaUse,
    /// Fuel burnt since the host started.
    pub fuel_total: u64,
    /// Time its batches waited for its fuel quota, ms.
    pub throttled_ms: u64,
    /// Its batches are being held back by its fuel quota now.
    #[serde(default)]
    pub held_back: bool,
}

/// The answer to `DELETE /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteInfo {
    /// The job deleted.
    pub id: String,
    /// Its files are gone (200); false (202) while its current batch
    /// finishes, after which they go. Either way the job is deleted: it is
    /// no longer listed, and a restarted host does not bring it back.
    pub removed: bool,
}

/// The answer to an upgrade or a rollback, once the new module runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapInfo {
    /// Plugin.
    pub plugin: String,
    /// sha256 of the module it ran before.
    pub from: String,
    /// sha256 of the module it runs now.
    pub to: String,
    /// The first batch the new module ran.
    pub first_batch_ms: i64,
    /// State entries carried over by a migration.
    pub migrated_keys: u64,
}

/// Every error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What an error answer says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `unauthorized`, `forbidden`, `not_found`, `bad_request`,
    /// `invalid_pipeline`, `invalid_module`, `path_outside_tenant`,
    /// `too_many_jobs`, `quota_exceeded`, `conflict`, `swap_rejected`,
    /// `payload_too_large`, `internal`.
    pub code: String,
    /// What was wrong, and how to fix it where that is known.
    pub message: String,
}
