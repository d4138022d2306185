//! The batch clock and the batch loop.
//!
//! Batch times are `start + k·interval`. For each, the loop waits until the
//! clock reaches it, cuts the batch from every source, runs the graph,
//! writes the outputs and records statistics. If processing takes longer
//! than the interval, the next batch starts late (its scheduling delay
//! grows) — batches never overlap and never queue up in memory.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::events::{
    BatchCompleted, BatchFailed, BatchStarted, CheckpointWritten, Event, Listeners, PluginSwapped,
    SourceError, SourceRecords,
};
use crate::checkpoint::{
    BatchEntry, CheckpointData, CheckpointError, Checkpointer, Recovery, ReplayError, RestoreError,
};
use crate::error::EngineError;
use crate::graph::executor::{Executor, OperatorStats, StateSize};
use crate::graph::executor::{SwapError, SwapReport};
use crate::graph::NodeId;
use crate::host::Host;
use crate::ops::{total_records, Partitions};
use crate::output::stats::{BatchStats, StatsFile};
use crate::output::Output;
use crate::receiver::{
    blocks_to_partitions, BatchDone, Source, SourceInfo, SourceInput, SourcePosition,
};
use crate::wasm::Plugin;
use std::collections::BTreeMap;
use std::sync::mpsc;

/// Where batch times come from. Tests and benchmarks use the simulated
/// clock, which never sleeps.
pub trait Clock: Send + Sync {
    /// Current time in ms.
    fn now_ms(&self) -> i64;
    /// How long until `t_ms`, or `None` once it is reached (a simulated
    /// clock jumps there): what an asynchronous wait sleeps for.
    fn remaining(&self, t_ms: i64) -> Option<Duration>;
    /// After recovery, run the batches whose times passed while the job
    /// was down (back to back) instead of skipping to the present.
    fn catches_up(&self) -> bool {
        false
    }
}

/// Wall-clock time.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn remaining(&self, t_ms: i64) -> Option<Duration> {
        let now = self.now_ms();
        (now < t_ms).then(|| Duration::from_millis((t_ms - now) as u64))
    }

    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// Wall-clock time that, after recovery, runs the batches whose times
/// passed while the job was down, back to back, as Spark Streaming does on
/// restart: the batch times (and so the windows) are those of an
/// uninterrupted run. `weir serve`'s jobs run on it.
#[derive(Debug, Default)]
pub struct CatchUpClock;

impl Clock for CatchUpClock {
    fn remaining(&self, t_ms: i64) -> Option<Duration> {
        SystemClock.remaining(t_ms)
    }

    fn now_ms(&self) -> i64 {
        SystemClock.now_ms()
    }

    fn catches_up(&self) -> bool {
        true
    }
}

/// A clock that jumps to whatever time is waited for: batches run back to
/// back with deterministic batch times.
#[derive(Debug, Default)]
pub struct SimulatedClock {
    now: Mutex<i64>,
}

impl SimulatedClock {
    /// Starts at `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        SimulatedClock {
            now: Mutex::new(start_ms),
        }
    }
}

impl Clock for SimulatedClock {
    fn remaining(&self, t_ms: i64) -> Option<Duration> {
        let mut now = self.now.lock().expect("clock poisoned");
        *now = (*now).max(t_ms);
        None
    }

    fn now_ms(&self) -> i64 {
        *self.now.lock().expect("clock poisoned")
    }
}

/// A stop request that sleeping threads and tasks can wait on.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Mutex<bool>,
    cond: Condvar,
    notify: tokio::sync::Notify,
}

impl StopSignal {
    /// Asks the job to stop after the current batch.
    pub fn request(&self) {
        *self.stopped.lock().expect("stop poisoned") = true;
        self.cond.notify_all();
        self.notify.notify_waiters();
    }

    /// Waits (asynchronously) until `clock` reaches `t_ms` or a stop is
    /// requested; false if stopped.
    pub(crate) async fn until(&self, clock: &dyn Clock, t_ms: i64) -> bool {
        loop {
            let stopped = self.notify.notified();
            tokio::pin!(stopped);
            // Registered before the check: a request in between still wakes us.
            stopped.as_mut().enable();
            if self.is_requested() {
                return false;
            }
            match clock.remaining(t_ms) {
                None => return true,
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = stopped => {}
                    }
                }
            }
        }
    }

    /// True once a stop was requested.
    pub fn is_requested(&self) -> bool {
        *self.stopped.lock().expect("stop poisoned")
    }

    /// Sleeps up to `d`; true if a stop was requested.
    pub fn wait_timeout(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().expect("stop poisoned");
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, d, |s| !*s)
            .expect("stop poisoned");
        *guard
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Batches completed (all outputs written).
    pub batches: u64,
    /// Batch time of the last completed batch.
    pub last_batch_ms: Option<i64>,
    /// Statistics of every completed batch.
    pub stats: Vec<BatchStats>,
}

/// A run stopped by an error: what failed, and what had completed.
#[derive(Debug, thiserror::Error)]
#[error("{error}\n{} batch(es) completed before the failure{}", summary.batches, summary.last_batch_ms.map(|t| format!(", the last at {t} ms")).unwrap_or_default())]
pub struct JobFailed {
    /// The error.
    #[source]
    pub error: EngineError,
    /// What completed.
    pub summary: RunSummary,
}

/// Everything the batch loop drives.
pub(crate) struct BatchLoop {
    /// The graph executor.
    pub executor: Executor,
    /// Sources, indexed like the graph's source nodes.
    pub sources: Vec<Box<dyn Source>>,
    /// Outputs, with the node they write.
    pub outputs: Vec<(NodeId, Box<dyn Output>)>,
    /// Batch interval.
    pub interval_ms: i64,
    /// Partitions of each input stream.
    pub partitions: usize,
    /// Stop once this many batches of the job are complete (counted across
    /// restarts when checkpointing).
    pub max_batches: Option<u64>,
    /// JSON-lines statistics file.
    pub stats_file: Option<StatsFile>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where a stop request arrives.
    pub stop: Arc<StopSignal>,
    /// Checkpointing, with what recovery found.
    pub checkpoint: Option<(Checkpointer, Recovery)>,
    /// The host: its wasm runtime loads the modules a checkpoint recorded,
    /// and holding it keeps its receiver runtime (the job's socket
    /// receivers) alive as long as the job runs.
    pub host: Host,
    /// Swap and rollback requests, applied between batches.
    pub control: Option<mpsc::Receiver<Control>>,
    /// What [`JobControl`](crate::job::JobControl) reports.
    pub status: Arc<Mutex<JobStatus>>,
    /// Times a failed batch is retried (from the same state) before the job fails.
    pub max_retries: u32,
    /// Largest state the job may hold, in bytes.
    pub max_state_bytes: Option<u64>,
    /// The run once begun.
    pub(crate) run: Option<Run>,
    /// Scaled out through a consumer group: the tasks this instance runs.
    pub(crate) scale_out: Option<super::scale_out::ScaleOut>,
    /// Who hears the job's events (the log, the UI, metrics ...).
    pub listeners: Listeners,
}

/// A completed batch, as the batch loop hands it to [`BatchLoop::completed`].
pub(super) struct Completion {
    pub stats: BatchStats,
    pub replayed: bool,
    /// Records per source, indexed like the job's sources.
    pub source_records: Vec<u64>,
    pub operators: Vec<OperatorStats>,
    pub state: Vec<StateSize>,
}

/// A request to the running batch loop.
pub(crate) enum Control {
    /// Replace plugin `plugin` with `module`.
    Swap {
        plugin: String,
        module: Plugin,
        reply: mpsc::Sender<Result<SwapReport, SwapError>>,
    },
    /// Go back to the plugin's previous module.
    Rollback {
        plugin: String,
        reply: mpsc::Sender<Result<SwapReport, SwapError>>,
    },
}

/// Whether a job runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Running (or recovering).
    Running,
    /// Stopped gracefully or after its batch limit.
    Stopped,
    /// Stopped by a batch that failed (after retries).
    Failed {
        /// The error, with job, operator, plugin, batch and partition.
        error: String,
    },
}

/// A job's status: state, progress, recent batch statistics, modules.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobStatus {
    /// Running, stopped or failed.
    pub state: JobState,
    /// Batches completed by this process.
    pub batches: u64,
    /// The last completed batch.
    pub last_batch_ms: Option<i64>,
    /// Statistics of the last (up to 100) batches.
    pub recent: Vec<BatchStats>,
    /// Plugin name → module hash running now.
    pub modules: BTreeMap<String, String>,
    /// Plugin name → the functions of the module running now (`map:split`).
    pub functions: BTreeMap<String, Vec<String>>,
    /// Each source's name, kind and position after the last batch.
    pub sources: Vec<(String, SourceInfo)>,
    /// Scaled out: the input partitions this instance owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<i32>>,
}

impl Default for JobStatus {
    fn default() -> Self {
        JobStatus {
            state: JobState::Running,
            batches: 0,
            last_batch_ms: None,
            recent: Vec::new(),
            modules: BTreeMap::new(),
            functions: BTreeMap::new(),
            sources: Vec::new(),
            partitions: None,
        }
    }
}

/// A run in progress: what it completed and where it is.
pub(crate) struct Run {
    summary: RunSummary,
    at: Progressed,
    /// Time of the next live batch.
    next_t: i64,
}

impl Run {
    fn new() -> Run {
        Run {
            summary: RunSummary {
                batches: 0,
                last_batch_ms: None,
                stats: Vec::new(),
            },
            at: Progressed::default(),
            next_t: 0,
        }
    }
}

/// Where a job is: its last batch, its time, its last checkpoint.
#[derive(Debug, Default, Clone, Copy)]
struct Progressed {
    seq: u64,
    last_t: Option<i64>,
    last_checkpoint: Option<u64>,
}

impl BatchLoop {
    /// Starts the run: with a checkpoint directory it recovers (restores
    /// the newest valid checkpoint and replays every logged batch after
    /// it); then it knows the time of the first live batch.
    pub(crate) fn begin(&mut self) -> Result<(), EngineError> {
        self.plugins_to_status();
        let mut run = Run::new();
        if self.scale_out.is_some() {
            self.begin_scaled()?;
            run.next_t = self.next_live_time(None);
            self.run = Some(run);
            return Ok(());
        }
        let mut checkpoint = self.checkpoint.take();
        if let Some((ck, recovery)) = &mut checkpoint {
            if let Some(c) = recovery.checkpoint.take() {
                run.at = self.restore_checkpoint(ck, recovery, c)?;
            }
            self.replay_logged(ck, recovery, &mut run)?;
        }
        run.next_t = self.next_live_time(run.at.last_t);
        if let Some((ck, _)) = &mut checkpoint {
            if run.at.last_t.is_none() {
                // A fresh job: record the starting positions and zero time,
                // so a crash before the first checkpoint recovers exactly.
                let zero = run.next_t - self.interval_ms;
                self.executor.set_zero(zero);
                self.write_checkpoint(ck, 0, zero)?;
                run.at.last_checkpoint = Some(0);
            }
        }
        self.checkpoint = checkpoint;
        self.run = Some(run);
        Ok(())
    }

    /// The time of the next live batch, unless the job has run all its
    /// batches.
    pub(crate) fn next_time(&self) -> Option<i64> {
        let run = self.run.as_ref()?;
        self.max_batches
            .is_none_or(|m| run.at.seq < m)
            .then_some(run.next_t)
    }

    /// Runs the live batch at `t` (the time [`BatchLoop::next_time`] gave,
    /// once the clock reached it).
    pub(crate) fn step(&mut self, t: i64) -> Result<(), EngineError> {
        let _span = tracing::info_span!("batch", time_ms = t).entered();
        let mut checkpoint = self.checkpoint.take();
        let result = self.live_batch(t, &mut checkpoint);
        self.checkpoint = checkpoint;
        result
    }

    fn live_batch(
        &mut self,
        t: i64,
        checkpoint: &mut Option<(Checkpointer, Recovery)>,
    ) -> Result<(), EngineError> {
        self.apply_controls(t, checkpoint.as_mut().map(|(ck, _)| ck))?;
        if self.scale_out.is_some() {
            let mut run = self.run.take().expect("begun");
            let result = self.scaled_batch(t, &mut run);
            run.at.seq += 1;
            run.at.last_t = Some(t);
            run.next_t = match &result {
                Ok(next) => *next,
                Err(_) => t + self.interval_ms,
            };
            self.run = Some(run);
            return result.map(|_| ());
        }
        let started = (self.clock.now_ms(), Instant::now());
        let mut logged = Vec::with_capacity(self.sources.len());
        let mut inputs = Vec::with_capacity(self.sources.len());
        for source in &mut self.sources {
            let (input, blocks) = source.next_batch(t)?;
            logged.push(input.snapshot());
            inputs.push(blocks);
        }
        let zero_ms = *self.executor.zero_ms().get_or_insert(t - self.interval_ms);
        let seq = self.run.as_ref().expect("begun").at.seq + 1;
        if let Some((ck, _)) = checkpoint.as_mut() {
            let entry = BatchEntry {
                magic: crate::checkpoint::BATCH_ENTRY_MAGIC,
                seq,
                batch_time_ms: t,
                zero_ms,
                sources: logged,
                modules: ck.modules().clone(),
            };
            ck.log_batch(&entry)?;
        }
        let counts = source_records(&inputs);
        let inputs = self.partition(inputs);
        self.emit_started(t, false);
        let stats = self.process_with_retries(t, &inputs, started)?;
        self.sources_completed(&counts, &stats, false);
        let mut run = self.run.take().expect("begun");
        run.at.seq = seq;
        let done = self.completion(stats, false, counts);
        self.completed(done, &mut run);
        let written = match checkpoint.as_mut() {
            Some((ck, _)) if seq % ck.config().every_batches == 0 => {
                self.write_checkpoint(ck, seq, t).map(|()| true)
            }
            _ => Ok(false),
        };
        if matches!(written, Ok(true)) {
            run.at.last_checkpoint = Some(seq);
        }
        run.at.last_t = Some(t);
        run.next_t = t + self.interval_ms;
        self.run = Some(run);
        written.map(|_| ())
    }

    /// Ends the run: a graceful end leaves a checkpoint (so a restart
    /// replays nothing), and the job's status says how it ended.
    pub(crate) fn end(mut self, result: Result<(), EngineError>) -> Result<RunSummary, JobFailed> {
        let run = self.run.take().unwrap_or_else(|| Run::new());
        self.end_scaled();
        let result = result.and_then(|()| {
            let Progressed {
                seq,
                last_t,
                last_checkpoint,
            } = run.at;
            match (self.checkpoint.take(), last_t) {
                (Some((mut ck, _)), Some(t)) if last_checkpoint != Some(seq) && seq > 0 => {
                    self.write_checkpoint(&mut ck, seq, t)
                }
                _ => Ok(()),
            }
        });
        self.status.lock().expect("status poisoned").state = match &result {
            Ok(()) => JobState::Stopped,
            Err(e) => JobState::Failed {
                error: e.to_string(),
            },
        };
        match result {
            Ok(()) => Ok(run.summary),
            Err(error) => Err(JobFailed {
                error,
                summary: run.summary,
            }),
        }
    }

    fn next_live_time(&self, last: Option<i64>) -> i64 {
        let aligned = (self.clock.now_ms().div_euclid(self.interval_ms) + 1) * self.interval_ms;
        match last {
            Some(last) if self.clock.catches_up() => last + self.interval_ms,
            Some(last) => (last + self.interval_ms).max(aligned),
            None => aligned,
        }
    }

    /// Restores the newest checkpoint: source positions, operator state,
    /// the modules that ran. Returns where the job is.
    fn restore_checkpoint(
        &mut self,
        ck: &mut Checkpointer,
        recovery: &Recovery,
        c: CheckpointData,
    ) -> Result<Progressed, EngineError> {
        let unreadable = |source: RestoreError| CheckpointError::Restore {
            dir: ck.config().dir.clone(),
            source,
        };
        if c.sources.len() != self.sources.len() {
            return Err(unreadable(RestoreError::Missing {
                owner: format!("source #{}", c.sources.len().min(self.sources.len())),
            })
            .into());
        }
        for (i, (source, pos)) in self.sources.iter_mut().zip(&c.sources).enumerate() {
            let pos = SourcePosition::from_snapshot(pos).map_err(|source| {
                unreadable(RestoreError::Snapshot {
                    owner: format!("source #{i}"),
                    source,
                })
            })?;
            source.restore(&pos, recovery, u32::MAX);
        }
        self.executor
            .restore(c.zero_ms, &c.nodes, c.format == 1)
            .map_err(unreadable)?;
        // The checkpoint's state is already migrated: no migration.
        self.align_modules(ck, &c.modules, c.batch_time_ms, false)?;
        Ok(Progressed {
            seq: c.seq,
            last_checkpoint: Some(c.seq),
            // Written before the first batch, only its zero time counts.
            last_t: Some(if c.seq > 0 {
                c.batch_time_ms
            } else {
                c.zero_ms
            }),
        })
    }

    /// Re-runs every logged batch after the checkpoint, each with the
    /// modules that ran it, then hands logged blocks not yet in any batch
    /// to their sources.
    fn replay_logged(
        &mut self,
        ck: &mut Checkpointer,
        recovery: &mut Recovery,
        run: &mut Run,
    ) -> Result<(), EngineError> {
        let replay = std::mem::take(&mut recovery.replay);
        if !replay.is_empty() {
            tracing::info!(batches = replay.len(), "replaying logged batches");
        }
        for entry in replay {
            let _span = tracing::info_span!("replay", time_ms = entry.batch_time_ms).entered();
            self.executor.set_zero(entry.zero_ms);
            // Run every batch with the module that originally ran it,
            // migrating at the same batch as the original swap.
            self.align_modules(ck, &entry.modules, entry.batch_time_ms, true)?;
            let started = (self.clock.now_ms(), Instant::now());
            let mut inputs = Vec::with_capacity(self.sources.len());
            for (source, input) in self.sources.iter_mut().zip(&entry.sources) {
                let replay = |source: ReplayError| CheckpointError::Replay {
                    batch_time_ms: entry.batch_time_ms,
                    source,
                };
                let input = SourceInput::from_snapshot(input)
                    .map_err(|e| replay(ReplayError::Snapshot(e)))?;
                let blocks = source.replay(&input, recovery).map_err(replay)?;
                inputs.push(blocks);
            }
            let counts = source_records(&inputs);
            let inputs = self.partition(inputs);
            self.emit_started(entry.batch_time_ms, true);
            let stats = self
                .process(entry.batch_time_ms, &inputs, started, true)
                .inspect_err(|e| self.emit_failed(entry.batch_time_ms, 1, e, false))?;
            self.sources_completed(&counts, &stats, true);
            run.at.seq = entry.seq;
            run.at.last_t = Some(entry.batch_time_ms);
            let done = self.completion(stats, true, counts);
            self.completed(done, run);
            if run.at.seq % ck.config().every_batches == 0 {
                self.write_checkpoint(ck, run.at.seq, entry.batch_time_ms)?;
                run.at.last_checkpoint = Some(run.at.seq);
            }
        }
        // Blocks logged but not in any batch go into the next one.
        for (i, source) in self.sources.iter_mut().enumerate() {
            let pos = source.position();
            source.restore(&pos, recovery, i as u32);
        }
        recovery.blocks.clear();
        Ok(())
    }

    fn write_checkpoint(&self, ck: &mut Checkpointer, seq: u64, t: i64) -> Result<(), EngineError> {
        let started = Instant::now();
        let positions: Vec<SourcePosition> = self.sources.iter().map(|s| s.position()).collect();
        let blocks_consumed = positions
            .iter()
            .filter_map(|p| match p {
                SourcePosition::Socket(id) => Some(*id),
                _ => None,
            })
            .min();
        let data = CheckpointData {
            format: crate::checkpoint::FORMAT,
            seq,
            batch_time_ms: t,
            zero_ms: self.executor.zero_ms().unwrap_or(t - self.interval_ms),
            nodes: self.executor.snapshots(),
            sources: positions.iter().map(SourcePosition::snapshot).collect(),
            blocks_consumed,
            modules: ck.modules().clone(),
        };
        ck.write(&data)?;
        self.listeners.emit(&Event::Checkpoint(CheckpointWritten {
            job: self.executor.job().clone(),
            seq,
            batch_time_ms: t,
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
        }));
        Ok(())
    }

    /// Makes the executor run the modules `wanted` names (loading them from
    /// the checkpoint), as recorded with a checkpoint or a logged batch.
    fn align_modules(
        &mut self,
        ck: &mut Checkpointer,
        wanted: &BTreeMap<String, String>,
        t: i64,
        migrate: bool,
    ) -> Result<(), EngineError> {
        let current = self.executor.plugins();
        for (name, hash) in wanted {
            match current.get(name) {
                Some(p) if p.hash_hex() != *hash => {}
                _ => continue,
            }
            let replay =
                |source: Box<dyn std::error::Error + Send + Sync>| CheckpointError::Replay {
                    batch_time_ms: t,
                    source: ReplayError::Module {
                        plugin: name.clone(),
                        source,
                    },
                };
            let bytes = ck.module_bytes(hash)?;
            let plugin = self
                .host
                .wasm()
                .load_bytes(name, &bytes)
                .map_err(|e| replay(e.into()))?;
            let report = self
                .executor
                .swap(name, plugin, t, migrate)
                .map_err(|e| replay(e.into()))?;
            ck.record_module(name, hash, &bytes)?;
            tracing::info!(plugin = %name, from = %report.from, to = %report.to, "module as recorded in the checkpoint");
        }
        Ok(())
    }

    /// Applies pending swap and rollback requests before batch `t`: the
    /// batch runs wholly on the new module.
    fn apply_controls(
        &mut self,
        t: i64,
        mut ck: Option<&mut Checkpointer>,
    ) -> Result<(), EngineError> {
        let Some(rx) = self.control.take() else {
            return Ok(());
        };
        let mut failure = None;
        while let Ok(msg) = rx.try_recv() {
            if self.scale_out.is_some() {
                let (Control::Swap { reply, .. } | Control::Rollback { reply, .. }) = msg;
                let _ = reply.send(Err(SwapError::ScaledOut));
                continue;
            }
            let rollback = matches!(msg, Control::Rollback { .. });
            let (result, reply) = match msg {
                Control::Swap {
                    plugin,
                    module,
                    reply,
                } => (self.executor.swap(&plugin, module, t, true), reply),
                Control::Rollback { plugin, reply } => (self.executor.rollback(&plugin, t), reply),
            };
            if let Ok(report) = &result {
                if let Some(ck) = ck.as_deref_mut() {
                    let module = self
                        .executor
                        .plugins()
                        .remove(&report.plugin)
                        .expect("just swapped in");
                    if let Err(e) = ck.record_module(&report.plugin, &report.to, module.bytes()) {
                        failure = Some(e);
                    }
                }
                self.plugins_to_status();
                self.listeners.emit(&Event::PluginSwapped(PluginSwapped {
                    job: self.executor.job().clone(),
                    plugin: report.plugin.clone(),
                    from: report.from.clone(),
                    to: report.to.clone(),
                    first_batch_ms: t,
                    migrated_keys: report.migrated_keys,
                    rollback,
                }));
            } else if let Err(e) = &result {
                tracing::warn!(error = %e, "plugin swap refused; the job keeps its module");
            }
            let _ = reply.send(result);
        }
        self.control = Some(rx);
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Shows the modules running now, and their functions, in the status.
    fn plugins_to_status(&mut self) {
        let plugins = self.executor.plugins();
        let mut status = self.status.lock().expect("status poisoned");
        status.modules = plugins
            .iter()
            .map(|(n, p)| (n.clone(), p.hash_hex()))
            .collect();
        status.functions = plugins
            .iter()
            .map(|(n, p)| {
                let f = p
                    .functions()
                    .iter()
                    .map(|f| format!("{}:{}", f.kind, f.name));
                (n.clone(), f.collect())
            })
            .collect();
    }

    /// Tells every source its batch is complete (outputs written).
    fn sources_completed(&mut self, counts: &[u64], stats: &BatchStats, replayed: bool) {
        let finished_ms = self.clock.now_ms();
        for (source, &records) in self.sources.iter_mut().zip(counts) {
            source.completed(&BatchDone {
                batch_time_ms: stats.batch_time_ms,
                finished_ms,
                records,
                processing_ms: stats.processing_ms,
                scheduling_delay_ms: stats.scheduling_delay_ms,
                replayed,
            });
        }
    }

    /// Lays each source's blocks out over the input partitions.
    fn partition(&self, inputs: Vec<Vec<weir_abi::RecordBatch>>) -> Vec<Option<Arc<Partitions>>> {
        inputs
            .into_iter()
            .map(|blocks| Some(Arc::new(blocks_to_partitions(blocks, self.partitions))))
            .collect()
    }

    /// Runs a batch; a failure is retried up to `max_retries` times (a
    /// deterministic failure fails every time). A failed batch commits no
    /// state, so a retry starts from the state before it without a copy.
    fn process_with_retries(
        &mut self,
        t: i64,
        inputs: &[Option<Arc<Partitions>>],
        started: (i64, Instant),
    ) -> Result<BatchStats, EngineError> {
        let mut attempt = 0;
        loop {
            match self.process(t, inputs, started, false) {
                Ok(stats) => return Ok(stats),
                Err(e) => {
                    let retry =
                        attempt < self.max_retries && !matches!(e, EngineError::StateLimit { .. });
                    attempt += 1;
                    self.emit_failed(t, attempt, &e, retry);
                    if !retry {
                        return Err(e);
                    }
                }
            }
        }
    }

    pub(super) fn emit_started(&self, t: i64, replayed: bool) {
        self.listeners.emit(&Event::BatchStarted(BatchStarted {
            job: self.executor.job().clone(),
            batch_time_ms: t,
            replayed,
        }));
    }

    pub(super) fn emit_failed(&self, t: i64, attempt: u32, error: &EngineError, retrying: bool) {
        self.listeners.emit(&Event::BatchFailed(BatchFailed {
            job: self.executor.job().clone(),
            batch_time_ms: t,
            attempt,
            error: error.to_string(),
            retrying,
            operators: self.executor.operator_stats().to_vec(),
        }));
    }

    /// A batch of the (not scaled-out) job completed: its detail from the
    /// executor.
    fn completion(
        &self,
        stats: BatchStats,
        replayed: bool,
        source_records: Vec<u64>,
    ) -> Completion {
        Completion {
            stats,
            replayed,
            source_records,
            operators: self.executor.operator_stats().to_vec(),
            state: self.executor.state_sizes(),
        }
    }

    /// Reports problems sources met since the last batch.
    fn source_errors(&mut self) {
        let names = self.executor.source_names();
        for (i, source) in self.sources.iter_mut().enumerate() {
            for message in source.take_errors() {
                self.listeners.emit(&Event::SourceError(SourceError {
                    job: self.executor.job().clone(),
                    source: names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("source {i}")),
                    message,
                }));
            }
        }
    }

    pub(super) fn completed(&mut self, done: Completion, run: &mut Run) {
        let summary = &mut run.summary;
        let stats = done.stats;
        let t = stats.batch_time_ms;
        let names = self.executor.source_names();
        self.listeners.emit(&Event::BatchCompleted(BatchCompleted {
            job: self.executor.job().clone(),
            batch_time_ms: t,
            replayed: done.replayed,
            input_records: stats.input_records,
            sources: done
                .source_records
                .iter()
                .enumerate()
                .map(|(i, &records)| SourceRecords {
                    source: names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("source {i}")),
                    records,
                    queued_blocks: self.sources.get(i).and_then(|s| s.queued_blocks()),
                })
                .collect(),
            scheduling_delay_ms: stats.scheduling_delay_ms,
            processing_ms: stats.processing_ms,
            total_delay_ms: stats.total_delay_ms,
            operators: done.operators,
            state: done.state,
        }));
        self.source_errors();
        if let Some(f) = &mut self.stats_file {
            if let Err(e) = f.append(&stats) {
                tracing::warn!(error = %e, "cannot write the statistics file");
            }
        }
        {
            let mut status = self.status.lock().expect("status poisoned");
            status.batches += 1;
            status.last_batch_ms = Some(t);
            if status.recent.len() >= 100 {
                status.recent.remove(0);
            }
            status.recent.push(stats.clone());
            status.sources = names
                .iter()
                .cloned()
                .zip(self.sources.iter().map(|s| s.describe()))
                .collect();
        }
        summary.batches += 1;
        summary.last_batch_ms = Some(t);
        summary.stats.push(stats);
    }

    /// Runs batch `t`: computes every node, writes the outputs, then
    /// commits the state changes (only then: a batch that fails anywhere
    /// before leaves the state as it was).
    fn process(
        &mut self,
        t: i64,
        inputs: &[Option<Arc<Partitions>>],
        (start_ms, started): (i64, Instant),
        replayed: bool,
    ) -> Result<BatchStats, EngineError> {
        let input_records = inputs
            .iter()
            .flatten()
            .map(|p| total_records(p) as u64)
            .sum();
        let values = self.executor.run_batch(t, inputs)?;
        // Over the limit, the batch fails before anything is written.
        if let Some(limit) = self.max_state_bytes {
            let bytes = self.executor.state_bytes_after();
            if bytes > limit {
                return Err(EngineError::StateLimit {
                    job: self.executor.job().clone(),
                    batch_time_ms: t,
                    bytes,
                    limit,
                });
            }
        }
        for (node, output) in &mut self.outputs {
            match &values[*node] {
                Some(parts) if replayed => output.write_replayed(t, parts)?,
                Some(parts) => output.write(t, parts)?,
                None => {}
            }
        }
        self.executor.commit();
        // Buffers kept for reuse before this batch and not reused in it
        // go back to the system.
        weir_abi::recycle::trim();
        let processing_ms = started.elapsed().as_secs_f64() * 1e3;
        let scheduling_delay_ms = (start_ms - t).max(0) as f64;
        Ok(BatchStats {
            batch_time_ms: t,
            input_records,
            processing_ms,
            scheduling_delay_ms,
            total_delay_ms: scheduling_delay_ms + processing_ms,
        })
    }
}

/// Records each source gave a batch.
fn source_records(inputs: &[Vec<weir_abi::RecordBatch>]) -> Vec<u64> {
    inputs
        .iter()
        .map(|blocks| blocks.iter().map(|b| b.len() as u64).sum())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::job::{ClockMode, StreamingConfig, StreamingContext};

    fn config(retries: u32) -> StreamingConfig {
        StreamingConfig {
            clock: ClockMode::Simulated { start_ms: 0 },
            partitions: 2,
            workers: 2,
            max_retries: retries,
            ..StreamingConfig::default()
        }
    }

    /// Batches of `(key, value)` records: key `k{i % 3}`.
    fn input() -> Vec<Vec<(String, String)>> {
        (0..6)
            .map(|b| {
                (0..b + 2)
                    .map(|i| (format!("k{}", i % 3), format!("{b}-{i}")))
                    .collect()
            })
            .collect()
    }

    /// A stateful job (an incremental count per window) whose output fails
    /// once, at `fail_at`, when given: the retried batch must see the state
    /// before it, not the state it had staged.
    fn run(retries: u32, fail_at: Option<i64>) -> Result<Vec<(i64, Vec<(Vec<u8>, i64)>)>, String> {
        let ctx = StreamingContext::new(config(retries)).unwrap();
        let src = ctx.queue_stream(input()).unwrap();
        let counts = src
            .count_by_value_and_window(Duration::from_secs(3), Duration::from_secs(1), Some(2))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicBool::new(false));
        let sink = seen.clone();
        counts
            .foreach_batch(move |t, parts| {
                if Some(t) == fail_at && !failed.swap(true, Ordering::SeqCst) {
                    return Err(EngineError::Output {
                        output: "test".into(),
                        path: "nowhere".into(),
                        source: std::io::Error::other("injected"),
                    });
                }
                let mut recs: Vec<(Vec<u8>, i64)> = parts
                    .iter()
                    .flat_map(|p| p.iter())
                    .map(|(k, v)| (k.to_vec(), i64::from_le_bytes(v.try_into().unwrap())))
                    .collect();
                recs.sort();
                sink.lock().unwrap().push((t, recs));
                Ok(())
            })
            .unwrap();
        ctx.run(Some(6)).map_err(|e| e.to_string())?;
        let out = seen.lock().unwrap().clone();
        Ok(out)
    }

    #[test]
    fn a_retried_batch_starts_from_the_state_before_it() {
        let straight = run(0, None).unwrap();
        assert_eq!(straight.len(), 6);
        let retried = run(1, Some(3000)).unwrap();
        assert_eq!(
            retried, straight,
            "a retry must not apply the failed attempt's state"
        );
    }

    #[test]
    fn without_retries_a_failed_batch_fails_the_job() {
        let err = run(0, Some(3000)).unwrap_err();
        assert!(err.contains("injected"), "{err}");
        assert!(err.contains("2 batch(es) completed"), "{err}");
    }

    #[test]
    fn a_batch_over_the_state_limit_fails_before_its_outputs_are_written() {
        let ctx = StreamingContext::new(StreamingConfig {
            max_state_bytes: Some(150),
            ..config(0)
        })
        .unwrap();
        // Window state grows with every batch (2, 3, 4 ... records, kept 3 s).
        let src = ctx.queue_stream(input()).unwrap();
        let windowed = src
            .window(Duration::from_secs(3), Duration::from_secs(1))
            .unwrap();
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        windowed
            .foreach_batch(move |t, _| {
                sink.lock().unwrap().push(t);
                Ok(())
            })
            .unwrap();
        let failed = ctx.start(Some(6)).unwrap().await_termination().unwrap_err();
        let EngineError::StateLimit {
            batch_time_ms,
            bytes,
            limit,
            ..
        } = failed.error
        else {
            panic!("expected the state limit: {}", failed.error);
        };
        assert!(bytes > limit && limit == 150);
        assert!(batch_time_ms > 1000, "some batches fit: {batch_time_ms}");
        let before: Vec<i64> = (1..)
            .map(|k| k * 1000)
            .take_while(|t| *t < batch_time_ms)
            .collect();
        assert_eq!(
            *written.lock().unwrap(),
            before,
            "every batch before the one over the limit is written, and nothing of that one"
        );
    }

    #[test]
    fn the_simulated_clock_jumps_and_a_stop_ends_waits() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let clock = SimulatedClock::new(500);
        let stop = StopSignal::default();
        assert!(rt.block_on(stop.until(&clock, 2000)));
        assert_eq!(clock.now_ms(), 2000);
        assert!(rt.block_on(stop.until(&clock, 1000)), "never goes back");
        assert_eq!(clock.now_ms(), 2000);
        let system = SystemClock;
        assert!(system.remaining(system.now_ms() + 60_000).is_some());
        assert!(system.remaining(system.now_ms() - 1).is_none());
        // A stop requested while a task waits a minute wakes it at once.
        let started = Instant::now();
        let waited = rt.block_on(async {
            let wait = stop.until(&system, system.now_ms() + 60_000);
            let request = async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                stop.request();
            };
            tokio::join!(wait, request).0
        });
        assert!(!waited);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(
            !rt.block_on(stop.until(&clock, 3000)),
            "stopped stays stopped"
        );
        assert!(
            stop.wait_timeout(Duration::from_secs(5)),
            "a requested stop wakes at once"
        );
    }
}
