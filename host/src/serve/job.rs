//! A served job: its durable record, the engine's handles while it runs
//! in this process, its status, stop, deletion and how it ended. Every
//! change of the state it should be in is written to its record before it
//! takes effect, so a restarted host brings back what was running, and
//! only that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::api::{DelaySummary, JobError, JobInfo, JobLimits, JobState};
use super::record::{self, Desired, JobRecord, RecordError};
use crate::error::EngineError;
use crate::job::{self as engine, JobControl, JobStatus, RunSummary, StopSignal};
use crate::observe::{JobStore, Watched};

/// How a job ended.
pub(super) enum Outcome {
    Stopped,
    Failed(JobError),
}

/// The engine's handles of a job running in this process.
pub(super) struct Engine {
    pub(super) control: JobControl,
    /// What its events told: the page, JSON API and event stream read it.
    pub(super) store: Arc<JobStore>,
    pub(super) stop: Arc<StopSignal>,
}

/// A job of the host: running here, or ended (in this process or before
/// it started).
pub struct Job {
    id: String,
    tenant: String,
    dir: PathBuf,
    /// `None` once ended before this process, or when it could not start.
    engine: Option<Engine>,
    /// A user asked it to stop (or to be deleted).
    stop_requested: AtomicBool,
    /// The host is shutting down: its end is not recorded, it comes back
    /// at the next start.
    shutting_down: AtomicBool,
    /// Deleted: its files go as soon as it has ended.
    deleting: AtomicBool,
    /// Its files are gone.
    removed: Mutex<bool>,
    /// Paused by a quota: why.
    paused: Mutex<Option<String>>,
    outcome: Mutex<Option<(Outcome, RunSummary)>>,
    ended: Condvar,
    /// Its durable record as last written (not written when `durable` is
    /// false: a record that could not be read is never overwritten).
    record: Mutex<JobRecord>,
    durable: bool,
}

impl Job {
    /// A job running in this process.
    pub(super) fn running(record: JobRecord, dir: PathBuf, engine: Engine) -> Job {
        Job::new(record, dir, Some(engine), None, true)
    }

    /// A job that ended before this process started (its record says so),
    /// or that could not be started again (`outcome` says why).
    pub(super) fn ended(record: JobRecord, dir: PathBuf, outcome: Outcome, durable: bool) -> Job {
        let summary = RunSummary {
            batches: record.batches,
            last_batch_ms: record.last_batch_ms,
            stats: Vec::new(),
        };
        Job::new(record, dir, None, Some((outcome, summary)), durable)
    }

    fn new(
        record: JobRecord,
        dir: PathBuf,
        engine: Option<Engine>,
        outcome: Option<(Outcome, RunSummary)>,
        durable: bool,
    ) -> Job {
        Job {
            id: record.id.clone(),
            tenant: record.tenant.clone(),
            dir,
            engine,
            stop_requested: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            deleting: AtomicBool::new(false),
            removed: Mutex::new(false),
            paused: Mutex::new(
                record
                    .paused
                    .clone()
                    .filter(|_| record.state == Desired::Paused),
            ),
            outcome: Mutex::new(outcome),
            ended: Condvar::new(),
            record: Mutex::new(record),
            durable,
        }
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// What the job's page, JSON API and event stream read; `None` when
    /// it has not run in this process.
    pub fn watched(&self) -> Option<Watched> {
        self.engine.as_ref().map(|e| Watched {
            store: e.store.clone(),
            control: e.control.clone(),
        })
    }

    /// Its directory (pipeline, modules, record, and by default its
    /// outputs and checkpoints).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn control(&self) -> Option<&JobControl> {
        self.engine.as_ref().map(|e| &e.control)
    }

    /// Running in this process, not asked to stop, not paused.
    pub(super) fn is_active(&self) -> bool {
        self.is_running() && !self.stop_requested.load(Ordering::SeqCst) && !self.is_paused()
    }

    /// Paused by a quota (or being paused: its current batch finishing).
    pub(super) fn is_paused(&self) -> bool {
        self.paused.lock().expect("job poisoned").is_some()
    }

    /// Its record as last written.
    pub(super) fn record(&self) -> JobRecord {
        self.record.lock().expect("job poisoned").clone()
    }

    /// Not ended yet.
    pub(super) fn is_running(&self) -> bool {
        self.outcome.lock().expect("job poisoned").is_none()
    }

    /// Its status; `recent` adds the recent batches' statistics.
    pub fn info(&self, recent: bool) -> JobInfo {
        let status = self
            .engine
            .as_ref()
            .map(|e| e.control.status())
            .unwrap_or_default();
        let record = self.record.lock().expect("job poisoned").clone();
        let outcome = self.outcome.lock().expect("job poisoned");
        let paused = self.paused.lock().expect("job poisoned").clone();
        let (state, error) = match (&paused, outcome.as_ref().map(|(o, _)| o)) {
            (Some(_), None | Some(Outcome::Stopped)) => (JobState::Paused, None),
            (_, o) => self.state(&status, o),
        };
        // The engine's snapshot, or what the run summary says if it is
        // further along (it is final).
        let (mut batches, mut last_batch_ms) = (status.batches, status.last_batch_ms);
        if let Some((_, summary)) = &*outcome {
            if summary.batches > batches {
                batches = summary.batches;
                last_batch_ms = summary.last_batch_ms;
            }
        }
        JobInfo {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            name: record.name,
            state,
            error,
            paused: paused.filter(|_| state == JobState::Paused),
            submitted_ms: record.submitted_ms,
            batch_interval_ms: record.batch_interval_ms,
            batches,
            last_batch_ms,
            scheduling_delay: DelaySummary::of(&status.recent),
            modules: if status.modules.is_empty() {
                record.plugins
            } else {
                status.modules
            },
            limits: record.limits,
            recent: if recent { status.recent } else { Vec::new() },
        }
    }

    fn state(&self, status: &JobStatus, outcome: Option<&Outcome>) -> (JobState, Option<JobError>) {
        match outcome {
            Some(Outcome::Stopped) => (JobState::Stopped, None),
            Some(Outcome::Failed(e)) => (JobState::Failed, Some(e.clone())),
            // Ended in the engine, not yet recorded here (the structured
            // error comes with the record, a moment later): ending.
            None => match &status.state {
                engine::JobState::Failed { .. } | engine::JobState::Stopped => {
                    (JobState::Stopping, None)
                }
                _ if self.stop_requested.load(Ordering::SeqCst) => (JobState::Stopping, None),
                engine::JobState::Running => (JobState::Running, None),
            },
        }
    }

    /// Asks the job to stop after its current batch, recording that it
    /// should stay stopped, and waits up to `wait` for it to end; true if
    /// it did.
    pub fn stop(&self, wait: Duration) -> bool {
        self.request_stop();
        self.wait_ended(wait)
    }

    /// Asks the job to stop after its current batch, recording that it
    /// should stay stopped.
    pub(super) fn request_stop(&self) {
        self.update_record(|r| {
            if matches!(r.state, Desired::Running | Desired::Paused) {
                r.state = Desired::Stopped;
                r.paused = None;
            }
        });
        *self.paused.lock().expect("job poisoned") = None;
        self.stop_requested.store(true, Ordering::SeqCst);
        if let Some(e) = &self.engine {
            e.stop.request();
        }
    }

    /// Pauses the job for a quota: records why (a restart keeps it
    /// paused), and stops it after its current batch.
    pub(super) fn pause(&self, reason: &str) {
        *self.paused.lock().expect("job poisoned") = Some(reason.to_owned());
        self.update_record(|r| {
            if r.state == Desired::Running {
                r.state = Desired::Paused;
                r.paused = Some(reason.to_owned());
            }
        });
        tracing::warn!(tenant = %self.tenant, job = %self.id, reason, "job paused");
        if let Some(e) = &self.engine {
            e.stop.request();
        }
    }

    /// Stops the job for a host shutdown: its record keeps saying
    /// running, so the next start brings it back.
    pub(super) fn stop_for_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        if let Some(e) = &self.engine {
            e.stop.request();
        }
    }

    /// Waits up to `wait` for the job to end; true if it did.
    pub fn wait_ended(&self, wait: Duration) -> bool {
        let guard = self.outcome.lock().expect("job poisoned");
        let (guard, _) = self
            .ended
            .wait_timeout_while(guard, wait, |o| o.is_none())
            .expect("job poisoned");
        guard.is_some()
    }

    /// Records that the job is deleted: from here on a restart removes it
    /// instead of starting it.
    pub(super) fn mark_deleted(&self) -> Result<(), RecordError> {
        if self.durable {
            let mut r = self.record.lock().expect("job poisoned");
            let mut marked = r.clone();
            marked.state = Desired::Deleted;
            marked.save(&self.dir)?;
            *r = marked;
        }
        Ok(())
    }

    /// Deletes the job once [marked](Job::mark_deleted): stops it and
    /// removes its directory once it has ended, waiting up to `wait` for
    /// that. True if the files are gone; otherwise they go when its
    /// current batch ends.
    pub(super) fn delete(&self, wait: Duration) -> Result<bool, RecordError> {
        self.deleting.store(true, Ordering::SeqCst);
        self.stop_requested.store(true, Ordering::SeqCst);
        if let Some(e) = &self.engine {
            e.stop.request();
        }
        if self.wait_ended(wait) {
            self.remove_files()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn remove_files(&self) -> Result<(), RecordError> {
        let mut removed = self.removed.lock().expect("job poisoned");
        if !*removed {
            record::remove_job_dir(&self.dir)?;
            *removed = true;
            tracing::info!(tenant = %self.tenant, job = %self.id, "job deleted");
        }
        Ok(())
    }

    /// Changes the record and writes it; a deleted job's record is never
    /// changed again. A write that fails is logged: the job runs on, but
    /// a restart may not see the change.
    fn update_record(&self, change: impl FnOnce(&mut JobRecord)) {
        if !self.durable {
            return;
        }
        let mut r = self.record.lock().expect("job poisoned");
        if r.state == Desired::Deleted {
            return;
        }
        let mut next = r.clone();
        change(&mut next);
        if next == *r {
            return;
        }
        match next.save(&self.dir) {
            Ok(()) => *r = next,
            Err(e) => {
                tracing::error!(tenant = %self.tenant, job = %self.id, error = %e, "cannot update the job record; a restart may not see this change")
            }
        }
    }

    /// Records how the job ended (run as it ends): a stop or a failure is
    /// written to its record, the end of a host shutdown is not.
    pub(super) fn record_end(&self, ended: Result<RunSummary, engine::JobFailed>) {
        let (outcome, summary) = match ended {
            Ok(summary) => {
                tracing::info!(tenant = %self.tenant, job = %self.id, batches = summary.batches, "job stopped");
                (Outcome::Stopped, summary)
            }
            Err(failed) => {
                let error = classify(&failed.error);
                tracing::warn!(tenant = %self.tenant, job = %self.id, kind = %error.kind, error = %failed.error, "job failed");
                (Outcome::Failed(error), failed.summary)
            }
        };
        // A host shutdown or a pause: the record keeps saying running or
        // paused.
        let keeps_state = self.shutting_down.load(Ordering::SeqCst) || self.is_paused();
        self.update_record(|r| {
            r.batches = summary.batches;
            r.last_batch_ms = summary.last_batch_ms;
            match &outcome {
                Outcome::Failed(e) => {
                    r.state = Desired::Failed;
                    r.error = Some(e.clone());
                }
                Outcome::Stopped if !keeps_state => r.state = Desired::Stopped,
                Outcome::Stopped => {}
            }
        });
        *self.outcome.lock().expect("job poisoned") = Some((outcome, summary));
        self.ended.notify_all();
        if self.deleting.load(Ordering::SeqCst) {
            if let Err(e) = self.remove_files() {
                tracing::error!(tenant = %self.tenant, job = %self.id, error = %e, "cannot remove the deleted job's files; the next start removes them");
            }
        }
    }
}

/// A job error without a location.
pub(super) fn job_error(kind: &str, message: String) -> JobError {
    JobError {
        kind: kind.into(),
        message,
        plugin: None,
        function: None,
        operator: None,
        batch_time_ms: None,
        partition: None,
    }
}

/// The structured form of an engine error.
pub fn classify(e: &EngineError) -> JobError {
    let mut out = job_error(e.code(), e.to_string());
    match e {
        EngineError::Plugin(c) => {
            out.plugin = Some(c.site.plugin.to_string());
            out.function = Some(format!("{}:{}", c.site.kind, c.site.function));
            out.operator = c.site.operator.as_deref().map(str::to_owned);
            if c.site.job.is_some() {
                out.batch_time_ms = Some(c.site.batch_time_ms);
                out.partition = Some(c.site.partition);
            }
        }
        EngineError::Contract {
            operator,
            batch_time_ms,
            ..
        } => {
            out.operator = Some(operator.to_string());
            out.batch_time_ms = Some(*batch_time_ms);
        }
        EngineError::StateLimit { batch_time_ms, .. } => {
            out.batch_time_ms = Some(*batch_time_ms);
        }
        EngineError::Output { .. }
        | EngineError::Checkpoint(_)
        | EngineError::Source { .. }
        | EngineError::Kafka { .. }
        | EngineError::Internal { .. } => {}
    }
    out
}

/// A record for a job directory whose own record cannot be used: enough
/// to list the job (failed, with why) and to delete it.
pub(super) fn placeholder_record(tenant: &str, id: &str, error: JobError) -> JobRecord {
    JobRecord {
        format: record::FORMAT,
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        name: String::new(),
        submitted_ms: 0,
        batch_interval_ms: 0,
        pipeline_sha256: String::new(),
        modules: BTreeMap::new(),
        files: BTreeMap::new(),
        plugins: BTreeMap::new(),
        limits: JobLimits {
            fuel: 0,
            memory_bytes: 0,
            output_bytes: 0,
            deadline_ms: 0,
            workers: 0,
            partitions: 0,
            max_retries: 0,
            max_state_bytes: 0,
            max_batch_records: 0,
        },
        state: Desired::Failed,
        error: Some(error),
        paused: None,
        batches: 0,
        last_batch_ms: None,
    }
}
