//! The JSON bodies of a watched job's API (`/api/v1/...`), shaped after
//! Spark's streaming REST API (`/applications/{id}/streaming/...`): camel
//! case, times in ms since the epoch (or since a simulated clock's start),
//! durations in ms.

use serde::Serialize;

use super::store::{BatchRecord, BatchStatus, JobStore, Recorded};
use crate::job::events::{OperatorStats, StateSize};
use crate::job::{JobControl, JobState};

/// `GET /api/v1/job`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// `[job] name`.
    pub name: String,
    /// `running`, `stopped` or `failed`.
    pub state: &'static str,
    /// Why it failed.
    pub error: Option<String>,
    /// Batch interval (ms).
    pub batch_duration: u64,
    /// When it started, ms since the epoch (wall clock).
    pub start_time: i64,
    /// Batches completed.
    pub num_completed_batches: u64,
    /// Batches failed after every retry.
    pub num_failed_batches: u64,
    /// Failed attempts, retried or not.
    pub num_failed_attempts: u64,
    /// The last completed batch's time.
    pub last_batch_time: Option<i64>,
    /// Its plugins.
    pub plugins: Vec<PluginView>,
    /// The latest checkpoint.
    pub latest_checkpoint: Option<CheckpointView>,
}

/// A plugin of the job.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginView {
    /// Its name (the module's file stem).
    pub name: String,
    /// sha256 of the module running now.
    pub module_hash: String,
    /// Its functions (`map:split`).
    pub functions: Vec<String>,
    /// Swaps and rollbacks, oldest first.
    pub swaps: Vec<SwapView>,
}

/// A swap: from which batch on the new module ran.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapView {
    /// Module hash before.
    pub from: String,
    /// Module hash after.
    pub to: String,
    /// The first batch on the new module.
    pub first_batch_time: i64,
    /// State entries migrated by the new module.
    pub migrated_keys: u64,
    /// A rollback.
    pub rollback: bool,
}

/// The latest checkpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointView {
    /// Batch number it follows.
    pub seq: u64,
    /// Its batch time.
    pub batch_time: i64,
    /// How long writing it took (ms).
    pub duration_ms: f64,
}

/// `GET /api/v1/statistics` (Spark's `streaming/statistics`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatisticsView {
    /// When the job started (ms since the epoch).
    pub start_time: i64,
    /// Batch interval (ms).
    pub batch_duration: u64,
    /// Sources.
    pub num_sources: usize,
    /// Batches completed since the start.
    pub num_total_completed_batches: u64,
    /// Completed batches the averages cover (the retained ones).
    pub num_retained_completed_batches: usize,
    /// Batches processing now.
    pub num_active_batches: usize,
    /// Batches failed after every retry.
    pub num_failed_batches: u64,
    /// Records of every completed batch.
    pub num_processed_records: u64,
    /// Records per second of batch time, over the retained batches.
    pub avg_input_rate: Option<f64>,
    /// Mean scheduling delay (ms).
    pub avg_scheduling_delay: Option<f64>,
    /// Mean processing time (ms).
    pub avg_processing_time: Option<f64>,
    /// Mean total delay (ms).
    pub avg_total_delay: Option<f64>,
}

/// One of `GET /api/v1/batches` (Spark's `streaming/batches`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    /// The batch time: its id.
    pub batch_id: i64,
    /// Batch time.
    pub batch_time: i64,
    /// `PROCESSING`, `COMPLETED` or `FAILED`.
    pub status: &'static str,
    /// Recomputed from the write-ahead log during recovery.
    pub replayed: bool,
    /// Records from all sources.
    pub input_size: u64,
    /// Scheduling delay (ms).
    pub scheduling_delay: Option<f64>,
    /// Processing time (ms).
    pub processing_time: Option<f64>,
    /// Total delay (ms).
    pub total_delay: Option<f64>,
    /// Failed attempts.
    pub failed_attempts: u32,
    /// The last failed attempt's error.
    pub first_failure_reason: Option<String>,
}

/// `GET /api/v1/batches/{batch_time_ms}`: a batch with its detail.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDetailView {
    /// As in the list.
    #[serde(flatten)]
    pub batch: BatchView,
    /// Records per source.
    pub sources: Vec<SourceBatchView>,
    /// Per operator, in graph order.
    pub operators: Vec<OperatorView>,
    /// State per stateful operator after the batch.
    pub state: Vec<StateView>,
}

/// Records one source gave a batch.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceBatchView {
    /// The source.
    pub name: String,
    /// Records.
    pub records: u64,
}

/// What one operator did in a batch.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    /// The stream it computes.
    pub name: String,
    /// The operator.
    pub op: String,
    /// Records in.
    pub records_in: u64,
    /// Records out.
    pub records_out: u64,
    /// Wall-clock time (ms).
    pub time_ms: f64,
    /// Plugin calls.
    pub calls: u64,
    /// Fuel of those calls.
    pub fuel: u64,
    /// Calls that failed.
    pub failed_calls: u64,
}

/// State one stateful operator holds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateView {
    /// The stream.
    pub name: String,
    /// The operator.
    pub op: String,
    /// Keys, where keyed.
    pub keys: Option<u64>,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// One of `GET /api/v1/sources`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    /// The source's name.
    pub name: String,
    /// `generator`, `files`, `socket`, `queue`, `kafka`.
    pub kind: Option<&'static str>,
    /// Where it is (offsets, files read, next record).
    pub position: Option<String>,
    /// Records since the start.
    pub records_total: u64,
    /// Records per second of batch time, over the retained batches.
    pub avg_rate: Option<f64>,
    /// Records of the last completed batch.
    pub last_batch_records: Option<u64>,
    /// Problems reported.
    pub errors: u64,
    /// The last of them.
    pub last_error: Option<String>,
}

/// `GET /api/v1/state`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateTotalView {
    /// After this batch.
    pub batch_time: Option<i64>,
    /// Bytes over every operator.
    pub total_bytes: u64,
    /// Per stateful operator.
    pub operators: Vec<StateView>,
}

/// A job's store and its control: what the API reads.
#[derive(Clone)]
pub struct Watched {
    /// What the job's events told.
    pub store: std::sync::Arc<JobStore>,
    /// The job's status (state, modules, sources).
    pub control: JobControl,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = values.fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    (n > 0).then(|| sum / n as f64)
}

fn rate(records: u64, batches: usize, interval_ms: u64) -> Option<f64> {
    (batches > 0 && interval_ms > 0)
        .then(|| records as f64 * 1000.0 / (batches as f64 * interval_ms as f64))
}

impl Watched {
    /// `/api/v1/job`.
    pub fn job(&self) -> JobView {
        let status = self.control.status();
        let r = self.store.read();
        let (state, error) = match status.state {
            JobState::Running => ("running", None),
            JobState::Stopped => ("stopped", None),
            JobState::Failed { error } => ("failed", Some(error)),
        };
        let plugins = status
            .modules
            .iter()
            .map(|(name, hash)| PluginView {
                name: name.clone(),
                module_hash: hash.clone(),
                functions: status.functions.get(name).cloned().unwrap_or_default(),
                swaps: r
                    .swaps
                    .iter()
                    .filter(|s| s.plugin == *name)
                    .map(|s| SwapView {
                        from: s.from.clone(),
                        to: s.to.clone(),
                        first_batch_time: s.first_batch_ms,
                        migrated_keys: s.migrated_keys,
                        rollback: s.rollback,
                    })
                    .collect(),
            })
            .collect();
        JobView {
            name: self.store.job().to_owned(),
            state,
            error,
            batch_duration: self.store.interval_ms(),
            start_time: self.store.started_ms(),
            num_completed_batches: r.completed,
            num_failed_batches: r.failed,
            num_failed_attempts: r.failed_attempts,
            last_batch_time: r.completed_batches().last().map(|b| b.batch_time_ms),
            plugins,
            latest_checkpoint: r.checkpoint.as_ref().map(|c| CheckpointView {
                seq: c.seq,
                batch_time: c.batch_time_ms,
                duration_ms: c.duration_ms,
            }),
        }
    }

    /// `/api/v1/statistics`.
    pub fn statistics(&self) -> StatisticsView {
        let r = self.store.read();
        let done: Vec<&BatchRecord> = r.completed_batches().collect();
        let records: u64 = done.iter().map(|b| b.input_records).sum();
        StatisticsView {
            start_time: self.store.started_ms(),
            batch_duration: self.store.interval_ms(),
            num_sources: self.control.status().sources.len().max(r.sources.len()),
            num_total_completed_batches: r.completed,
            num_retained_completed_batches: done.len(),
            num_active_batches: r
                .batches
                .iter()
                .filter(|b| b.status == BatchStatus::Processing)
                .count(),
            num_failed_batches: r.failed,
            num_processed_records: r.sources.values().map(|s| s.records).sum(),
            avg_input_rate: rate(records, done.len(), self.store.interval_ms()),
            avg_scheduling_delay: mean(done.iter().filter_map(|b| b.scheduling_delay_ms)),
            avg_processing_time: mean(done.iter().filter_map(|b| b.processing_ms)),
            avg_total_delay: mean(done.iter().filter_map(|b| b.total_delay_ms)),
        }
    }

    /// `/api/v1/batches`: the retained batches, newest first (as Spark).
    pub fn batches(&self) -> Vec<BatchView> {
        let r = self.store.read();
        r.batches.iter().rev().map(batch_view).collect()
    }

    /// `/api/v1/batches/{t}`.
    pub fn batch(&self, t: i64) -> Option<BatchDetailView> {
        let r = self.store.read();
        let b = r.batches.iter().rev().find(|b| b.batch_time_ms == t)?;
        Some(BatchDetailView {
            batch: batch_view(b),
            sources: b
                .sources
                .iter()
                .map(|s| SourceBatchView {
                    name: s.source.clone(),
                    records: s.records,
                })
                .collect(),
            operators: b.operators.iter().map(operator_view).collect(),
            state: b.state.iter().map(state_view).collect(),
        })
    }

    /// `/api/v1/sources`.
    pub fn sources(&self) -> Vec<SourceView> {
        let status = self.control.status();
        let r = self.store.read();
        let mut names: Vec<String> = status.sources.iter().map(|(n, _)| n.clone()).collect();
        names.extend(
            r.sources
                .keys()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect::<Vec<_>>(),
        );
        names
            .into_iter()
            .map(|name| source_view(&r, &status.sources, name, self.store.interval_ms()))
            .collect()
    }

    /// `/api/v1/state`.
    pub fn state(&self) -> StateTotalView {
        let r = self.store.read();
        StateTotalView {
            batch_time: r.completed_batches().last().map(|b| b.batch_time_ms),
            total_bytes: r.state.iter().map(|s| s.bytes).sum(),
            operators: r.state.iter().map(state_view).collect(),
        }
    }
}

fn source_view(
    r: &Recorded,
    described: &[(String, crate::receiver::SourceInfo)],
    name: String,
    interval_ms: u64,
) -> SourceView {
    let info = described.iter().find(|(n, _)| *n == name).map(|(_, i)| i);
    let totals = r.sources.get(&name).cloned().unwrap_or_default();
    let per_batch: Vec<u64> = r
        .completed_batches()
        .filter_map(|b| b.sources.iter().find(|s| s.source == name))
        .map(|s| s.records)
        .collect();
    SourceView {
        kind: info.map(|i| i.kind),
        position: info.and_then(|i| i.position.clone()),
        records_total: totals.records,
        avg_rate: rate(per_batch.iter().sum(), per_batch.len(), interval_ms),
        last_batch_records: per_batch.last().copied(),
        errors: totals.errors,
        last_error: totals.last_error,
        name,
    }
}

fn batch_view(b: &BatchRecord) -> BatchView {
    BatchView {
        batch_id: b.batch_time_ms,
        batch_time: b.batch_time_ms,
        status: match b.status {
            BatchStatus::Processing => "PROCESSING",
            BatchStatus::Completed => "COMPLETED",
            BatchStatus::Failed => "FAILED",
        },
        replayed: b.replayed,
        input_size: b.input_records,
        scheduling_delay: b.scheduling_delay_ms,
        processing_time: b.processing_ms,
        total_delay: b.total_delay_ms,
        failed_attempts: b.failed_attempts,
        first_failure_reason: b.error.clone(),
    }
}

fn operator_view(o: &OperatorStats) -> OperatorView {
    OperatorView {
        name: o.name.clone(),
        op: o.op.clone(),
        records_in: o.records_in,
        records_out: o.records_out,
        time_ms: o.millis,
        calls: o.calls,
        fuel: o.fuel,
        failed_calls: o.failed_calls,
    }
}

fn state_view(s: &StateSize) -> StateView {
    StateView {
        name: s.name.clone(),
        op: s.op.clone(),
        keys: s.keys,
        bytes: s.bytes,
    }
}
