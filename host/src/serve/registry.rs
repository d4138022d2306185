//! The job registry: submission (confinement, files, limits, build, start),
//! how each job ended (recorded as it ends), status, stop, upgrade and
//! rollback. Every job runs on the host: a task of its runtime between
//! batches, a lent thread and the shared worker pool (at most its worker
//! share at once) during them, the shared wasm runtime. Nothing a job does
//! ends the host: its failure is recorded in its status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use indexmap::IndexMap;

use super::api::{DelaySummary, JobError, JobInfo, JobLimits, JobState, SubmitRequest, SwapInfo};
use super::config::{ServeConfig, TenantConfig};
use super::confine::{self, PIPELINE_FILE};
use super::ApiError;
use crate::config::Pipeline;
use crate::error::EngineError;
use crate::job::{self as engine, ClockMode, JobControl, SourceSpec};
use crate::job::{RunSummary, StopSignal};
use crate::observe::metrics::MetricsHub;
use crate::observe::{JobStore, Watched};

/// Generator settings that size host memory, capped for every tenant.
const MAX_WORDS_PER_LINE: usize = 100;
const MAX_VOCABULARY: usize = 100_000;
/// Receiver blocks a socket source may queue.
const MAX_PENDING_BLOCKS: usize = 256;
use crate::host::Host;

/// How a job ended.
enum Outcome {
    Stopped,
    Failed(JobError),
}

/// A submitted job.
pub struct Job {
    id: String,
    tenant: String,
    name: String,
    dir: PathBuf,
    submitted_ms: i64,
    batch_interval_ms: u64,
    limits: JobLimits,
    control: JobControl,
    /// What its events told: the page, JSON API and event stream read it.
    store: Arc<JobStore>,
    /// Plugin name → module hash at submission (until the engine reports).
    submitted_modules: BTreeMap<String, String>,
    stop: Arc<StopSignal>,
    stop_requested: AtomicBool,
    outcome: Mutex<Option<(Outcome, RunSummary)>>,
    ended: Condvar,
}

impl Job {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// What the job's page, JSON API and event stream read.
    pub fn watched(&self) -> Watched {
        Watched {
            store: self.store.clone(),
            control: self.control.clone(),
        }
    }

    /// Its directory (pipeline, modules, and by default its outputs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn is_running(&self) -> bool {
        self.outcome.lock().expect("job poisoned").is_none()
    }

    /// Its status; `recent` adds the recent batches' statistics.
    pub fn info(&self, recent: bool) -> JobInfo {
        let status = self.control.status();
        let outcome = self.outcome.lock().expect("job poisoned");
        let (state, error) = match &*outcome {
            Some((Outcome::Stopped, _)) => (JobState::Stopped, None),
            Some((Outcome::Failed(e), _)) => (JobState::Failed, Some(e.clone())),
            None => match status.state {
                engine::JobState::Failed { error } => (
                    JobState::Failed,
                    Some(JobError {
                        kind: "engine".into(),
                        message: error,
                        plugin: None,
                        function: None,
                        operator: None,
                        batch_time_ms: None,
                        partition: None,
                    }),
                ),
                _ if self.stop_requested.load(Ordering::Relaxed) => (JobState::Stopping, None),
                engine::JobState::Stopped => (JobState::Stopping, None),
                engine::JobState::Running => (JobState::Running, None),
            },
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
            name: self.name.clone(),
            state,
            error,
            submitted_ms: self.submitted_ms,
            batch_interval_ms: self.batch_interval_ms,
            batches,
            last_batch_ms,
            scheduling_delay: DelaySummary::of(&status.recent),
            modules: if status.modules.is_empty() {
                self.submitted_modules.clone()
            } else {
                status.modules
            },
            limits: self.limits.clone(),
            recent: if recent { status.recent } else { Vec::new() },
        }
    }

    /// Asks the job to stop after its current batch and waits up to
    /// `wait` for it to end; true if it did.
    pub fn stop(&self, wait: Duration) -> bool {
        self.stop_requested.store(true, Ordering::Relaxed);
        self.stop.request();
        self.wait_ended(wait)
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

    fn finish(&self, outcome: Outcome, summary: RunSummary) {
        *self.outcome.lock().expect("job poisoned") = Some((outcome, summary));
        self.ended.notify_all();
    }
}

/// Every job on the host.
pub struct Registry {
    config: ServeConfig,
    host: Host,
    jobs: Mutex<Jobs>,
    seq: AtomicU64,
    /// Prometheus metrics per tenant (every series labelled with it).
    metrics: Mutex<BTreeMap<String, Arc<MetricsHub>>>,
}

#[derive(Default)]
struct Jobs {
    by_id: IndexMap<String, Arc<Job>>,
    /// Submissions being built, per tenant (they count against the quotas).
    pending: BTreeMap<String, usize>,
}

/// A quota slot held while a submission is built.
struct Reservation<'a> {
    registry: &'a Registry,
    tenant: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut jobs = self.registry.jobs.lock().expect("registry poisoned");
        if let Some(n) = jobs.pending.get_mut(&self.tenant) {
            *n -= 1;
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Registry {
    /// A registry running jobs on `host`.
    pub fn new(config: ServeConfig, host: Host) -> Registry {
        Registry {
            config,
            host,
            jobs: Mutex::default(),
            seq: AtomicU64::new(0),
            metrics: Mutex::default(),
        }
    }

    /// The metrics of `tenant`'s jobs.
    pub fn metrics(&self, tenant: &str) -> Arc<MetricsHub> {
        self.metrics
            .lock()
            .expect("metrics poisoned")
            .entry(tenant.to_owned())
            .or_insert_with(|| MetricsHub::new(Some(tenant)))
            .clone()
    }

    /// The configuration.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// The tenant whose token this is. Compares against every token in
    /// constant time per token, so timing does not tell how much matched.
    pub fn authenticate(&self, token: &str) -> Option<&TenantConfig> {
        let mut found = None;
        for t in &self.config.tenants {
            if constant_time_eq(t.token.as_bytes(), token.as_bytes()) {
                found = Some(t);
            }
        }
        found
    }

    /// The job `id` of `tenant`: 404 if there is none, 403 if it is another
    /// tenant's.
    pub fn job(&self, tenant: &TenantConfig, id: &str) -> Result<Arc<Job>, ApiError> {
        let jobs = self.jobs.lock().expect("registry poisoned");
        match jobs.by_id.get(id) {
            Some(job) if job.tenant == tenant.name => Ok(job.clone()),
            Some(_) => Err(ApiError::forbidden(format!(
                "job `{id}` belongs to another tenant"
            ))),
            None => Err(ApiError::not_found(format!("no job `{id}`"))),
        }
    }

    /// The tenant's jobs, oldest first.
    pub fn list(&self, tenant: &TenantConfig) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().expect("registry poisoned");
        jobs.by_id
            .values()
            .filter(|j| j.tenant == tenant.name)
            .cloned()
            .collect()
    }

    /// Every job.
    pub fn all(&self) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().expect("registry poisoned");
        jobs.by_id.values().cloned().collect()
    }

    fn reserve(&self, tenant: &str) -> Result<Reservation<'_>, ApiError> {
        let mut jobs = self.jobs.lock().expect("registry poisoned");
        let pending: usize = jobs.pending.values().sum();
        let running = jobs.by_id.values().filter(|j| j.is_running()).count();
        let mine = jobs
            .by_id
            .values()
            .filter(|j| j.tenant == tenant && j.is_running())
            .count()
            + jobs.pending.get(tenant).copied().unwrap_or(0);
        if mine >= self.config.max_jobs_per_tenant {
            return Err(ApiError::too_many(format!(
                "tenant `{tenant}` already has {mine} running job(s), the most allowed; stop one first"
            )));
        }
        if running + pending >= self.config.max_jobs {
            return Err(ApiError::too_many(format!(
                "the host runs {} job(s), the most it allows; try again later",
                running + pending
            )));
        }
        *jobs.pending.entry(tenant.to_owned()).or_default() += 1;
        Ok(Reservation {
            registry: self,
            tenant: tenant.to_owned(),
        })
    }

    /// What watches a job: the store behind its pages and API, and its
    /// tenant's metrics.
    fn watch(
        &self,
        ctx: &crate::stream::StreamingContext,
        tenant: &str,
        id: &str,
        pipeline: &Pipeline,
    ) -> Arc<JobStore> {
        let store = Arc::new(JobStore::new(
            &pipeline.config.job_name,
            pipeline.config.batch_interval.as_millis() as u64,
            crate::observe::store::DEFAULT_CAPACITY,
        ));
        ctx.add_listener(store.clone());
        ctx.add_listener(self.metrics(tenant).job_listener(id));
        store
    }

    /// Submits a job: checks every path before writing anything, writes the
    /// pipeline and its files into a new job directory, builds the job
    /// under the tenant's limits and starts it. On any error the directory
    /// is removed again and nothing runs.
    pub fn submit(&self, tenant: &TenantConfig, req: SubmitRequest) -> Result<JobInfo, ApiError> {
        // 1. Everything that can be checked without writing a byte.
        let problems = confine::check_pipeline(&req.pipeline, &tenant.kafka);
        if !problems.is_empty() {
            return Err(ApiError::outside(format!(
                "the pipeline names paths outside its directory, or hosts, topics or groups it may not reach:\n  {}",
                problems.join("\n  ")
            )));
        }
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let b64 = base64::engine::general_purpose::STANDARD;
        for (name, data) in &req.modules {
            confine::module_name(name).map_err(ApiError::from)?;
            let bytes = b64.decode(data).map_err(|e| {
                ApiError::bad_request(format!("module {name:?} is not valid base64: {e}"))
            })?;
            files.push((name.clone(), bytes));
        }
        for (name, data) in &req.files {
            confine::file_name(name).map_err(ApiError::from)?;
            if req.modules.contains_key(name) {
                return Err(ApiError::bad_request(format!(
                    "{name:?} is given both as a module and as a file"
                )));
            }
            let bytes = b64.decode(data).map_err(|e| {
                ApiError::bad_request(format!("file {name:?} is not valid base64: {e}"))
            })?;
            files.push((name.clone(), bytes));
        }
        // Every module must load (compiled once here; the build below finds
        // them in the runtime's cache while these are alive).
        let mut loaded = Vec::new();
        for (name, bytes) in files.iter().take(req.modules.len()) {
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
            let plugin = self
                .host
                .wasm()
                .load_bytes(stem, bytes)
                .map_err(|e| ApiError::module(format!("module {name:?}: {e}")))?;
            loaded.push(plugin);
        }
        let _slot = self.reserve(&tenant.name)?;

        // 2. A fresh job directory with the pipeline and its files.
        let jobs_dir = self.config.data_dir.join(&tenant.name).join("jobs");
        std::fs::create_dir_all(&jobs_dir).map_err(|e| {
            ApiError::internal(format!("cannot create the tenant's directory: {e}"))
        })?;
        let stem = job_stem(&req.pipeline);
        let (id, dir) = loop {
            let id = format!("{stem}-{}", self.fresh_suffix());
            let dir = jobs_dir.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(ApiError::internal(format!(
                        "cannot create the job directory: {e}"
                    )))
                }
            }
        };
        let mut cleanup = RemoveOnDrop(Some(dir.clone()));
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes)
                .map_err(|e| ApiError::internal(format!("cannot write {name}: {e}")))?;
        }
        let pipeline_path = dir.join(PIPELINE_FILE);
        std::fs::write(&pipeline_path, &req.pipeline)
            .map_err(|e| ApiError::internal(format!("cannot write the pipeline: {e}")))?;

        // 3. Parse, apply the tenant's limits, build, start.
        let hide = |msg: String| hide_dir(&msg, &dir);
        let mut pipeline = Pipeline::parse(&pipeline_path, &req.pipeline)
            .map_err(|e| ApiError::pipeline(hide(e.to_string())))?;
        let partitions = self.apply_limits(tenant, &mut pipeline)?;
        let ctx = pipeline
            .build_on_host(self.host.clone())
            .map_err(|e| ApiError::from_code(e.code(), hide(e.to_string())))?;
        let store = self.watch(&ctx, &tenant.name, &id, &pipeline);
        let running = ctx
            .start(None)
            .map_err(|e| ApiError::from_code(e.code(), hide(e.to_string())))?;
        let job = Arc::new(Job {
            id: id.clone(),
            tenant: tenant.name.clone(),
            name: pipeline.config.job_name.clone(),
            dir: dir.clone(),
            submitted_ms: now_ms(),
            batch_interval_ms: pipeline.config.batch_interval.as_millis() as u64,
            limits: tenant.limits.to_api(partitions),
            control: running.control(),
            store,
            submitted_modules: pipeline
                .plugins
                .values()
                .filter_map(|def| {
                    let stem = def.path.file_stem()?.to_string_lossy().into_owned();
                    let hash = loaded.iter().find(|p| **p.name() == *stem)?.hash_hex();
                    Some((stem, hash))
                })
                .collect(),
            stop: running.stop_handle(),
            stop_requested: AtomicBool::new(false),
            outcome: Mutex::new(None),
            ended: Condvar::new(),
        });
        let supervised = job.clone();
        running.on_termination(move |ended| record_end(&supervised, ended));
        drop(loaded);
        tracing::info!(tenant = %tenant.name, job = %id, name = %job.name, "job submitted");
        cleanup.0 = None; // the job keeps its directory
        self.jobs
            .lock()
            .expect("registry poisoned")
            .by_id
            .insert(id, job.clone());
        Ok(job.info(false))
    }

    /// Applies the tenant's limits to the pipeline; returns its partitions.
    fn apply_limits(
        &self,
        tenant: &TenantConfig,
        pipeline: &mut Pipeline,
    ) -> Result<usize, ApiError> {
        let l = &tenant.limits;
        let mut problems = Vec::new();
        if pipeline.config.partitions > l.partitions {
            problems.push(format!(
                "[job] partitions = {}: at most {} allowed",
                pipeline.config.partitions, l.partitions
            ));
        }
        for s in &pipeline.streams {
            if let Some(n) = s.partitions().filter(|&n| n > l.partitions) {
                problems.push(format!(
                    "stream `{}`: partitions = {n}: at most {} allowed",
                    s.name, l.partitions
                ));
            }
        }
        if pipeline.config.clock != ClockMode::System {
            problems.push(
                "[job] clock = \"simulated\" runs batches back to back without waiting; served jobs run on the system clock"
                    .into(),
            );
        }
        let interval_ms = pipeline.config.batch_interval.as_millis() as u64;
        for s in &pipeline.sources {
            if let SourceSpec::Generator {
                rate,
                words_per_line,
                vocabulary,
                ..
            } = &s.spec
            {
                let per_batch = rate.saturating_mul(interval_ms) / 1000;
                if per_batch > l.max_batch_records {
                    problems.push(format!(
                        "source `{}`: rate {rate} × batch interval {interval_ms} ms = {per_batch} records per batch, more than the {} allowed",
                        s.name, l.max_batch_records
                    ));
                }
                if *words_per_line > MAX_WORDS_PER_LINE {
                    problems.push(format!(
                        "source `{}`: words_per_line = {words_per_line}: at most {MAX_WORDS_PER_LINE} allowed",
                        s.name
                    ));
                }
                if *vocabulary > MAX_VOCABULARY {
                    problems.push(format!(
                        "source `{}`: vocabulary = {vocabulary}: at most {MAX_VOCABULARY} allowed",
                        s.name
                    ));
                }
            }
        }
        if pipeline.config.max_pending_blocks > MAX_PENDING_BLOCKS {
            problems.push(format!(
                "[job] max_pending_blocks = {}: at most {MAX_PENDING_BLOCKS} allowed",
                pipeline.config.max_pending_blocks
            ));
        }
        for o in &pipeline.outputs {
            if matches!(o.kind, crate::config::OutputKind::Print { .. }) {
                problems.push(format!(
                    "output of stream `{}`: `print` would write to the host's console; use `text_files`",
                    o.stream
                ));
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::pipeline(problems.join("\n")));
        }
        // A Kafka source's batches hold at most what a generator's may.
        for s in &mut pipeline.sources {
            if let SourceSpec::Kafka(k) = &mut s.spec {
                k.max_records_per_batch = Some(
                    k.max_records_per_batch
                        .map_or(l.max_batch_records, |m| m.min(l.max_batch_records)),
                );
            }
        }
        let c = &mut pipeline.config;
        c.workers = c.workers.min(l.workers);
        c.progress = false;
        c.limits.fuel = c.limits.fuel.min(l.fuel);
        c.limits.memory_bytes = c.limits.memory_bytes.min(l.memory_bytes as usize);
        c.limits.output_bytes = c.limits.output_bytes.min(l.output_bytes as usize);
        c.limits.deadline = c.limits.deadline.min(l.deadline);
        c.max_retries = l.max_retries;
        c.max_state_bytes = Some(
            c.max_state_bytes
                .map_or(l.max_state_bytes, |m| m.min(l.max_state_bytes)),
        );
        Ok(c.partitions)
    }

    /// Replaces a plugin of a running job with `module`, at its next batch
    /// boundary.
    pub fn upgrade(&self, job: &Job, plugin: &str, module: &[u8]) -> Result<SwapInfo, ApiError> {
        self.check_swappable(job, plugin)?;
        let loaded = self
            .host
            .wasm()
            .load_bytes(plugin, module)
            .map_err(|e| ApiError::module(e.to_string()))?;
        let report = job
            .control
            .swap_plugin(plugin, loaded)
            .map_err(|e| ApiError::swap(e.to_string()))?;
        tracing::info!(tenant = %job.tenant, job = %job.id, plugin, from = %report.from, to = %report.to, "plugin upgraded");
        Ok(swap_info(report))
    }

    /// Goes back to the module a plugin ran before its last upgrade.
    pub fn rollback(&self, job: &Job, plugin: &str) -> Result<SwapInfo, ApiError> {
        self.check_swappable(job, plugin)?;
        let report = job
            .control
            .rollback(plugin)
            .map_err(|e| ApiError::swap(e.to_string()))?;
        tracing::info!(tenant = %job.tenant, job = %job.id, plugin, from = %report.from, to = %report.to, "plugin rolled back");
        Ok(swap_info(report))
    }

    fn check_swappable(&self, job: &Job, plugin: &str) -> Result<(), ApiError> {
        if !job.is_running() || job.stop_requested.load(Ordering::Relaxed) {
            return Err(ApiError::conflict(format!(
                "job `{}` is not running",
                job.id
            )));
        }
        let modules = job.control.status().modules;
        if !modules.is_empty() && !modules.contains_key(plugin) {
            return Err(ApiError::bad_request(format!(
                "job `{}` has no plugin `{plugin}`; its plugins: {}",
                job.id,
                modules.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// Stops every job and waits up to `wait` for them all.
    pub fn shutdown(&self, wait: Duration) {
        let jobs = self.all();
        for j in &jobs {
            j.stop_requested.store(true, Ordering::Relaxed);
            j.stop.request();
        }
        let deadline = Instant::now() + wait;
        for j in &jobs {
            if !j.wait_ended(deadline.saturating_duration_since(Instant::now())) {
                tracing::warn!(job = %j.id, "did not stop in time");
            }
        }
    }

    fn fresh_suffix(&self) -> String {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(self.seq.fetch_add(1, Ordering::Relaxed));
        h.write_i64(now_ms());
        format!("{:08x}", h.finish() as u32)
    }
}

/// Waits for the job's end and records it.
/// Records how a job ended (run as it ends).
fn record_end(job: &Job, ended: Result<RunSummary, engine::JobFailed>) {
    match ended {
        Ok(summary) => {
            tracing::info!(tenant = %job.tenant, job = %job.id, batches = summary.batches, "job stopped");
            job.finish(Outcome::Stopped, summary);
        }
        Err(failed) => {
            let error = classify(&failed.error);
            tracing::warn!(tenant = %job.tenant, job = %job.id, kind = %error.kind, error = %failed.error, "job failed");
            job.finish(Outcome::Failed(error), failed.summary);
        }
    }
}

/// The structured form of an engine error.
pub fn classify(e: &EngineError) -> JobError {
    let mut out = JobError {
        kind: e.code().into(),
        message: e.to_string(),
        plugin: None,
        function: None,
        operator: None,
        batch_time_ms: None,
        partition: None,
    };
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

fn swap_info(r: engine::SwapReport) -> SwapInfo {
    SwapInfo {
        plugin: r.plugin,
        from: r.from,
        to: r.to,
        first_batch_ms: r.first_batch_ms,
        migrated_keys: r.migrated_keys,
    }
}

/// The job id's readable part: the pipeline's `[job] name`, reduced to
/// `a-z 0-9 -`, at most 32 characters.
fn job_stem(src: &str) -> String {
    let name = src
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| {
            t.get("job")?
                .as_table()?
                .get("name")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let mut stem: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    stem = stem.trim_matches('-').to_owned();
    if stem.is_empty() {
        "job".into()
    } else {
        stem
    }
}

/// Messages name files relative to the job directory, not the host's
/// layout.
fn hide_dir(msg: &str, dir: &Path) -> String {
    let prefix = format!("{}/", dir.display());
    msg.replace(&prefix, "")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
