//! The job registry: submission (confinement, files, limits, build, start),
//! status, stop, delete, upgrade and rollback, and bringing jobs back after
//! a restart ([`Registry::recover`], in `recover.rs`). Every job runs on
//! the host: a task of its runtime between batches, a lent thread and the
//! shared worker pool (at most its worker share at once) during them, the
//! shared wasm runtime. Nothing a job does ends the host: its failure is
//! recorded in its status and its record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use indexmap::IndexMap;
use subtle::ConstantTimeEq;

use super::api::{JobInfo, SubmitRequest, SwapInfo};
use super::config::{hash_token, ServeConfig, TenantConfig};
use super::confine::{self, PIPELINE_FILE};
use super::job::{Engine, Job};
use super::quota::{QuotaListener, Usage};
use super::record::{self, Desired, IdCounter, JobRecord};
use super::ApiError;
use crate::checkpoint::CheckpointConfig;
use crate::config::Pipeline;
use crate::host::Host;
use crate::job::{self as engine, ClockMode, SourceSpec};
use crate::observe::metrics::MetricsHub;
use crate::observe::JobStore;
use crate::wasm::Plugin;
use axum::http::StatusCode;

/// Generator settings that size host memory, capped for every tenant.
const MAX_WORDS_PER_LINE: usize = 100;
const MAX_VOCABULARY: usize = 100_000;
/// Receiver blocks a socket source may queue.
const MAX_PENDING_BLOCKS: usize = 256;

/// The checkpoint directory of a job whose pipeline names none (every
/// served job checkpoints, so a restarted host brings it back).
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// Every job on the host.
pub struct Registry {
    pub(super) config: ServeConfig,
    pub(super) host: Host,
    pub(super) jobs: Mutex<Jobs>,
    ids: IdCounter,
    /// Prometheus metrics per tenant (every series labelled with it).
    metrics: Mutex<BTreeMap<String, Arc<MetricsHub>>>,
    /// What each tenant's jobs use, against its quotas.
    usage: Mutex<BTreeMap<String, Arc<Usage>>>,
    /// The host is shutting down: no job is resumed any more.
    pub(super) shutting_down: AtomicBool,
    /// Held while a job's desired state changes (stop, delete, resume),
    /// so a quota resumption cannot undo a stop or a deletion.
    pub(super) lifecycle: Mutex<()>,
}

#[derive(Default)]
pub(super) struct Jobs {
    pub(super) by_id: IndexMap<String, Arc<Job>>,
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

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A submission's files, decoded and checked: modules first.
pub(super) struct Upload {
    pub(super) files: Vec<(String, Vec<u8>)>,
    pub(super) modules: usize,
}

impl Registry {
    /// A registry running jobs on `host`, with the data directory (which
    /// must exist) as it finds it: call [`Registry::recover`] to bring its
    /// jobs back.
    pub fn new(config: ServeConfig, host: Host) -> Registry {
        let at_least = super::recover::highest_id(&config.data_dir) + 1;
        Registry {
            ids: IdCounter::open(&config.data_dir, at_least),
            config,
            host,
            jobs: Mutex::default(),
            metrics: Mutex::default(),
            usage: Mutex::default(),
            shutting_down: AtomicBool::new(false),
            lifecycle: Mutex::new(()),
        }
    }

    /// What `tenant`'s jobs use.
    pub fn usage(&self, tenant: &str) -> Arc<Usage> {
        self.usage
            .lock()
            .expect("usage poisoned")
            .entry(tenant.to_owned())
            .or_default()
            .clone()
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

    /// The tenant whose token this is. The token's SHA-256 is compared
    /// with every tenant's in constant time ([`subtle`]), so timing tells
    /// neither which tenant matched nor how much of a hash did.
    pub fn authenticate(&self, token: &str) -> Option<&TenantConfig> {
        let presented = hash_token(token);
        let mut found = None;
        for t in &self.config.tenants {
            if bool::from(t.token_sha256.ct_eq(&presented)) {
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
            Some(job) if job.tenant() == tenant.name => Ok(job.clone()),
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
            .filter(|j| j.tenant() == tenant.name)
            .cloned()
            .collect()
    }

    /// Every job.
    pub fn all(&self) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().expect("registry poisoned");
        jobs.by_id.values().cloned().collect()
    }

    fn reserve(&self, t: &TenantConfig) -> Result<Reservation<'_>, ApiError> {
        let tenant = t.name.as_str();
        let mut jobs = self.jobs.lock().expect("registry poisoned");
        let pending: usize = jobs.pending.values().sum();
        let running = jobs.by_id.values().filter(|j| j.is_running()).count();
        // A paused job counts: it runs again once under the quotas.
        let mine = jobs
            .by_id
            .values()
            .filter(|j| j.tenant() == tenant && (j.is_running() || j.is_paused()))
            .count()
            + jobs.pending.get(tenant).copied().unwrap_or(0);
        if mine >= t.quota.jobs {
            return Err(ApiError::quota(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "jobs quota: tenant `{tenant}` already has {mine} running job(s), its quota is {}; stop or delete one first",
                    t.quota.jobs
                ),
            ));
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
        tenant: &TenantConfig,
        id: &str,
        pipeline: &Pipeline,
    ) -> (Arc<JobStore>, Arc<OnceLock<Arc<engine::StopSignal>>>) {
        let store = Arc::new(JobStore::new(
            &pipeline.config.job_name,
            pipeline.config.batch_interval.as_millis() as u64,
            crate::observe::store::DEFAULT_CAPACITY,
        ));
        ctx.add_listener(store.clone());
        ctx.add_listener(self.metrics(&tenant.name).job_listener(id));
        let stop = Arc::new(OnceLock::new());
        ctx.add_listener(Arc::new(QuotaListener {
            usage: self.usage(&tenant.name),
            job: id.to_owned(),
            fuel_per_second: tenant.quota.fuel_per_second,
            stop: stop.clone(),
        }));
        (store, stop)
    }

    /// Submits a job: checks every path before writing anything, writes the
    /// pipeline and its files durably into a new job directory, builds the
    /// job under the tenant's limits, writes its record and starts it. On
    /// any error the directory is removed again and nothing runs.
    pub fn submit(&self, tenant: &TenantConfig, req: SubmitRequest) -> Result<JobInfo, ApiError> {
        // 1. Everything that can be checked without writing a byte.
        let problems = confine::check_pipeline(&req.pipeline, &tenant.kafka);
        if !problems.is_empty() {
            return Err(ApiError::outside(format!(
                "the pipeline names paths outside its directory, or hosts, topics or groups it may not reach:\n  {}",
                problems.join("\n  ")
            )));
        }
        let upload = decode_upload(&req)?;
        // Every module must load (compiled once here; the build below finds
        // them in the runtime's cache while these are alive).
        let loaded = self.load_modules(&upload)?;
        self.check_submission_quotas(tenant, &upload, &req.pipeline)?;
        let _slot = self.reserve(tenant)?;

        // 2. A fresh job directory with the pipeline and its files.
        let (id, dir) = self.create_job_dir(tenant, &req.pipeline)?;
        let mut cleanup = RemoveOnDrop(Some(dir.clone()));
        write_job_files(&dir, &upload, &req.pipeline)?;
        let hashes = |range: std::ops::Range<usize>| -> BTreeMap<String, String> {
            upload.files[range]
                .iter()
                .map(|(n, b)| (n.clone(), record::sha256_hex(b)))
                .collect()
        };
        let record = JobRecord {
            format: record::FORMAT,
            id: id.clone(),
            tenant: tenant.name.clone(),
            name: String::new(),
            submitted_ms: now_ms(),
            batch_interval_ms: 0,
            pipeline_sha256: record::sha256_hex(req.pipeline.as_bytes()),
            modules: hashes(0..upload.modules),
            files: hashes(upload.modules..upload.files.len()),
            plugins: BTreeMap::new(),
            limits: tenant.limits.to_api(0),
            state: Desired::Running,
            error: None,
            paused: None,
            batches: 0,
            last_batch_ms: None,
        };

        // 3. Parse, apply the tenant's limits, build, record, start.
        let job = self.start(tenant, record, &dir, &req.pipeline, Some(&loaded))?;
        drop(loaded);
        cleanup.0 = None; // the job keeps its directory
        tracing::info!(tenant = %tenant.name, job = %id, "job submitted");
        Ok(job.info(false))
    }

    /// Compiles every module of an upload.
    fn load_modules(&self, upload: &Upload) -> Result<Vec<Plugin>, ApiError> {
        let mut loaded = Vec::new();
        for (name, bytes) in &upload.files[..upload.modules] {
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
            let plugin = self
                .host
                .wasm()
                .load_bytes(stem, bytes)
                .map_err(|e| ApiError::module(format!("module {name:?}: {e}")))?;
            loaded.push(plugin);
        }
        Ok(loaded)
    }

    /// A new job directory `<data_dir>/<tenant>/jobs/<id>` under a fresh
    /// id (never handed out before, see [`IdCounter`]).
    fn create_job_dir(
        &self,
        tenant: &TenantConfig,
        pipeline: &str,
    ) -> Result<(String, PathBuf), ApiError> {
        let jobs_dir = self.config.data_dir.join(&tenant.name).join("jobs");
        std::fs::create_dir_all(&jobs_dir).map_err(|e| {
            ApiError::internal(format!("cannot create the tenant's directory: {e}"))
        })?;
        let stem = job_stem(pipeline);
        loop {
            let n = self
                .ids
                .take()
                .map_err(|e| ApiError::internal(format!("cannot number the job: {e}")))?;
            let id = format!("{stem}-{n:08x}");
            let dir = jobs_dir.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(ApiError::internal(format!(
                        "cannot create the job directory: {e}"
                    )))
                }
            }
        }
    }

    /// Parses the job's pipeline, applies the tenant's limits, builds it,
    /// writes its record and starts it; the job joins the registry. Used
    /// by a submission (with the modules it compiled) and by recovery.
    pub(super) fn start(
        &self,
        tenant: &TenantConfig,
        mut record: JobRecord,
        dir: &Path,
        src: &str,
        loaded: Option<&[Plugin]>,
    ) -> Result<Arc<Job>, ApiError> {
        let hide = |msg: String| hide_dir(&msg, dir);
        let mut pipeline = Pipeline::parse(&dir.join(PIPELINE_FILE), src)
            .map_err(|e| ApiError::pipeline(hide(e.to_string())))?;
        let partitions = self.apply_limits(tenant, &mut pipeline, dir)?;
        record.name = pipeline.config.job_name.clone();
        record.batch_interval_ms = pipeline.config.batch_interval.as_millis() as u64;
        record.limits = tenant.limits.to_api(partitions);
        if let Some(loaded) = loaded {
            record.plugins = plugin_hashes(&pipeline, loaded);
        }
        let ctx = pipeline
            .build_on_host(self.host.clone())
            .map_err(|e| ApiError::from_code(e.code(), hide(e.to_string())))?;
        let (store, stop_cell) = self.watch(&ctx, tenant, &record.id, &pipeline);
        let module_bytes: u64 = record
            .modules
            .keys()
            .filter_map(|m| std::fs::metadata(dir.join(m)).ok())
            .map(|m| m.len())
            .sum();
        self.usage(&tenant.name)
            .set_modules(&record.id, module_bytes);
        record
            .save(dir)
            .map_err(|e| ApiError::internal(format!("cannot write the job record: {e}")))?;
        if let Some(jobs_dir) = dir.parent() {
            record::sync_dir(jobs_dir).map_err(|e| ApiError::internal(e.to_string()))?;
        }
        let running = ctx
            .start(None)
            .map_err(|e| ApiError::from_code(e.code(), hide(e.to_string())))?;
        let id = record.id.clone();
        let _ = stop_cell.set(running.stop_handle());
        let engine = Engine {
            control: running.control(),
            store,
            stop: running.stop_handle(),
        };
        let job = Arc::new(Job::running(record, dir.to_owned(), engine));
        let supervised = job.clone();
        running.on_termination(move |ended| supervised.record_end(ended));
        self.jobs
            .lock()
            .expect("registry poisoned")
            .by_id
            .insert(id, job.clone());
        Ok(job)
    }

    /// Stops the job `id` of `tenant` after its current batch (it stays
    /// stopped across restarts) and waits up to `wait` for it to end:
    /// whether it did, and its status.
    pub fn stop(
        &self,
        tenant: &TenantConfig,
        id: &str,
        wait: Duration,
    ) -> Result<(bool, JobInfo), ApiError> {
        let job = {
            let _changing = self.lifecycle.lock().expect("registry poisoned");
            let job = self.job(tenant, id)?;
            job.request_stop();
            job
        };
        let ended = job.wait_ended(wait);
        Ok((ended, job.info(false)))
    }

    /// Deletes the job `id` of `tenant`: see [`Job::delete`]. It leaves the
    /// list at once; its files go once it has stopped. True if they are
    /// gone already.
    pub fn delete(
        &self,
        tenant: &TenantConfig,
        id: &str,
        wait: Duration,
    ) -> Result<bool, ApiError> {
        let failed =
            |e: record::RecordError| ApiError::internal(format!("cannot delete job `{id}`: {e}"));
        let job = {
            let _changing = self.lifecycle.lock().expect("registry poisoned");
            let job = self.job(tenant, id)?;
            job.mark_deleted().map_err(failed)?;
            self.jobs
                .lock()
                .expect("registry poisoned")
                .by_id
                .shift_remove(id);
            job
        };
        tracing::info!(tenant = %job.tenant(), job = %job.id(), "deleting the job");
        self.usage(job.tenant()).forget(job.id());
        job.delete(wait).map_err(failed)
    }

    /// Applies the tenant's limits to the pipeline; returns its partitions.
    fn apply_limits(
        &self,
        tenant: &TenantConfig,
        pipeline: &mut Pipeline,
        dir: &Path,
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
        problems.extend(generator_problems(pipeline, tenant));
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
        make_durable(c, dir);
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
        let report = running_control(job)?
            .swap_plugin(plugin, loaded)
            .map_err(|e| ApiError::swap(e.to_string()))?;
        tracing::info!(tenant = %job.tenant(), job = %job.id(), plugin, from = %report.from, to = %report.to, "plugin upgraded");
        Ok(swap_info(report))
    }

    /// Goes back to the module a plugin ran before its last upgrade.
    pub fn rollback(&self, job: &Job, plugin: &str) -> Result<SwapInfo, ApiError> {
        self.check_swappable(job, plugin)?;
        let report = running_control(job)?
            .rollback(plugin)
            .map_err(|e| ApiError::swap(e.to_string()))?;
        tracing::info!(tenant = %job.tenant(), job = %job.id(), plugin, from = %report.from, to = %report.to, "plugin rolled back");
        Ok(swap_info(report))
    }

    fn check_swappable(&self, job: &Job, plugin: &str) -> Result<(), ApiError> {
        let modules = running_control(job)?.status().modules;
        if !modules.is_empty() && !modules.contains_key(plugin) {
            return Err(ApiError::bad_request(format!(
                "job `{}` has no plugin `{plugin}`; its plugins: {}",
                job.id(),
                modules.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// Stops every job for a host shutdown (their records keep saying
    /// running: the next start brings them back) and waits up to `wait`
    /// for them all.
    pub fn shutdown(&self, wait: Duration) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let jobs = self.all();
        for j in &jobs {
            j.stop_for_shutdown();
        }
        let deadline = Instant::now() + wait;
        for j in &jobs {
            if !j.wait_ended(deadline.saturating_duration_since(Instant::now())) {
                tracing::warn!(job = %j.id(), "did not stop in time");
            }
        }
    }
}

/// The engine control of a job that runs and was not asked to stop; 409
/// otherwise.
fn running_control(job: &Job) -> Result<&engine::JobControl, ApiError> {
    match job.control() {
        Some(c) if job.is_active() => Ok(c),
        _ => Err(ApiError::conflict(format!(
            "job `{}` is not running",
            job.id()
        ))),
    }
}

/// Every served job checkpoints and runs on a clock that catches up
/// after a restart, so a restarted host brings it back where it was, with
/// the batch times (and outputs) of an uninterrupted run.
fn make_durable(c: &mut engine::StreamingConfig, dir: &Path) {
    c.clock = ClockMode::SystemCatchUp;
    if c.checkpoint.is_none() {
        // As `[job] checkpoint` does by default: every max(10 s, batch
        // interval), in whole batches.
        let interval = c.batch_interval.as_millis().max(1);
        let every = Duration::from_secs(10).as_millis().max(interval);
        c.checkpoint = Some(CheckpointConfig {
            dir: dir.join(CHECKPOINT_DIR),
            every_batches: (every.div_ceil(interval) as u64).max(1),
            keep: 2,
            write_ahead_log: true,
        });
    }
}

/// Generator settings over the tenant's limits.
fn generator_problems(pipeline: &Pipeline, tenant: &TenantConfig) -> Vec<String> {
    let l = &tenant.limits;
    let interval_ms = pipeline.config.batch_interval.as_millis() as u64;
    let mut problems = Vec::new();
    for s in &pipeline.sources {
        let SourceSpec::Generator {
            rate,
            words_per_line,
            vocabulary,
            ..
        } = &s.spec
        else {
            continue;
        };
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
    problems
}

/// Decodes and checks a submission's module and file names and bytes.
fn decode_upload(req: &SubmitRequest) -> Result<Upload, ApiError> {
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
        confine::file_path(name).map_err(ApiError::from)?;
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
    Ok(Upload {
        files,
        modules: req.modules.len(),
    })
}

/// Writes a submission's files and pipeline into its job directory and
/// makes them durable (each file synced, then the directories).
fn write_job_files(dir: &Path, upload: &Upload, pipeline: &str) -> Result<(), ApiError> {
    let failed = |e: record::RecordError| ApiError::internal(e.to_string());
    let mut dirs = std::collections::BTreeSet::from([dir.to_owned()]);
    for (name, bytes) in &upload.files {
        let path = dir.join(name);
        if let Some(parent) = path.parent().filter(|p| *p != dir) {
            std::fs::create_dir_all(parent).map_err(|e| {
                ApiError::internal(format!("cannot create the directory of {name}: {e}"))
            })?;
            dirs.insert(parent.to_owned());
        }
        record::write_synced(&path, bytes).map_err(failed)?;
    }
    record::write_synced(&dir.join(PIPELINE_FILE), pipeline.as_bytes()).map_err(failed)?;
    // Deepest first, so every new name is durable in its parent.
    for d in dirs.iter().rev() {
        record::sync_dir(d).map_err(failed)?;
    }
    Ok(())
}

/// Plugin name → sha256 of the module submitted for it.
fn plugin_hashes(pipeline: &Pipeline, loaded: &[Plugin]) -> BTreeMap<String, String> {
    pipeline
        .plugins
        .values()
        .filter_map(|def| {
            let stem = def.path.file_stem()?.to_string_lossy().into_owned();
            let hash = loaded.iter().find(|p| **p.name() == *stem)?.hash_hex();
            Some((stem, hash))
        })
        .collect()
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

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
