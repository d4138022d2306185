//! Enforcing tenant quotas ([`super::quota`]) on the registry: the checks
//! of a submission, the periodic disk and memory check that pauses and
//! resumes jobs, and the tenant's status.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::StatusCode;

use super::api::{QuotaUse, TenantStatus};
use super::config::TenantConfig;
use super::confine::PIPELINE_FILE;
use super::job::Job;
use super::quota::{self, mb};
use super::record::Desired;
use super::registry::{Registry, Upload};
use super::ApiError;

impl Registry {
    /// Refuses a submission past the tenant's disk or memory quota (413)
    /// or while its fuel quota holds its batches back (429).
    pub(super) fn check_submission_quotas(
        &self,
        tenant: &TenantConfig,
        upload: &Upload,
        pipeline: &str,
    ) -> Result<(), ApiError> {
        let q = &tenant.quota;
        let usage = self.usage(&tenant.name);
        let files: u64 = upload.files.iter().map(|(_, b)| b.len() as u64).sum();
        let modules: u64 = upload.files[..upload.modules]
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum();
        if let Some(limit) = q.disk_bytes {
            let used = usage.measure_disk(&self.tenant_jobs_dir(&tenant.name));
            let adding = files + pipeline.len() as u64;
            if used + adding > limit {
                return Err(ApiError::quota(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "disk quota {} of tenant `{}` exceeded: its jobs use {}, this submission adds {}; delete jobs to make room",
                        mb(limit),
                        tenant.name,
                        mb(used),
                        mb(adding)
                    ),
                ));
            }
        }
        if let Some(limit) = q.memory_bytes {
            let used = self.memory_used(tenant);
            if used + modules > limit {
                return Err(ApiError::quota(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "memory quota {} of tenant `{}` exceeded: its jobs' modules and state use {}, this submission's modules {}; stop or delete jobs to make room",
                        mb(limit),
                        tenant.name,
                        mb(used),
                        mb(modules)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn tenant_jobs_dir(&self, tenant: &str) -> std::path::PathBuf {
        self.config.data_dir.join(tenant).join("jobs")
    }

    /// Module and state bytes of the tenant's running and paused jobs.
    fn memory_used(&self, tenant: &TenantConfig) -> u64 {
        let counted: BTreeSet<String> = self
            .list(tenant)
            .iter()
            .filter(|j| j.is_running() || j.is_paused())
            .map(|j| j.id().to_owned())
            .collect();
        self.usage(&tenant.name).memory(|id| counted.contains(id))
    }

    /// Measures every tenant with a disk or memory quota: over one, its
    /// running jobs are paused (after their current batch); back under
    /// all, its paused jobs resume from their checkpoints.
    pub fn enforce_quotas(&self) {
        for tenant in &self.config.tenants {
            let q = &tenant.quota;
            if q.disk_bytes.is_none() && q.memory_bytes.is_none() {
                continue;
            }
            let usage = self.usage(&tenant.name);
            let disk = match q.disk_bytes {
                Some(_) => usage.measure_disk(&self.tenant_jobs_dir(&tenant.name)),
                None => 0,
            };
            let memory = self.memory_used(tenant);
            let jobs = self.list(tenant);
            match quota::over_quota(q, disk, memory) {
                Some(reason) => {
                    for job in jobs.iter().filter(|j| j.is_active()) {
                        job.pause(&reason);
                    }
                }
                None => {
                    for job in jobs.iter().filter(|j| j.is_paused() && !j.is_running()) {
                        self.resume(tenant, job);
                    }
                }
            }
        }
    }

    /// Starts a paused job again from its checkpoint.
    fn resume(&self, tenant: &TenantConfig, job: &Arc<Job>) {
        let _changing = self.lifecycle.lock().expect("registry poisoned");
        let current = self
            .jobs
            .lock()
            .expect("registry poisoned")
            .by_id
            .get(job.id())
            .cloned();
        // Still this job (not deleted, not resumed already), still paused
        // (not stopped meanwhile), and the host is not shutting down.
        let mut record = job.record();
        if self.shutting_down.load(Ordering::SeqCst)
            || !current.is_some_and(|c| Arc::ptr_eq(&c, job))
            || record.state != Desired::Paused
        {
            return;
        }
        record.state = Desired::Running;
        record.paused = None;
        let started = std::fs::read_to_string(job.dir().join(PIPELINE_FILE))
            .map_err(|e| ApiError::internal(format!("cannot read {PIPELINE_FILE}: {e}")))
            .and_then(|src| self.start(tenant, record, job.dir(), &src, None));
        match started {
            Ok(_) => {
                tracing::info!(tenant = %tenant.name, job = %job.id(), "job resumed: its tenant is back under its quotas")
            }
            Err(e) => {
                tracing::error!(tenant = %tenant.name, job = %job.id(), error = %e, "cannot resume the job; it stays paused")
            }
        }
    }

    /// The tenant's quotas and what its jobs use.
    pub fn tenant_status(&self, tenant: &TenantConfig) -> TenantStatus {
        let q = &tenant.quota;
        let usage = self.usage(&tenant.name);
        let running = self
            .list(tenant)
            .iter()
            .filter(|j| j.is_running() || j.is_paused())
            .count();
        TenantStatus {
            tenant: tenant.name.clone(),
            jobs: QuotaUse {
                used: running as u64,
                limit: Some(q.jobs as u64),
            },
            disk_bytes: QuotaUse {
                used: usage.measure_disk(&self.tenant_jobs_dir(&tenant.name)),
                limit: q.disk_bytes,
            },
            memory_bytes: QuotaUse {
                used: self.memory_used(tenant),
                limit: q.memory_bytes,
            },
            fuel_per_second: QuotaUse {
                used: usage.fuel_rate(),
                limit: q.fuel_per_second,
            },
            fuel_total: usage.fuel_total(),
            throttled_ms: usage.throttled_ms(),
            held_back: usage.fuel_exhausted(),
        }
    }
}

/// Checks the quotas every `interval` on a thread of its own, as long as
/// the registry lives and is not shutting down.
pub(super) fn spawn_monitor(registry: Weak<Registry>, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("weir-serve-quotas".into())
        .spawn(move || loop {
            std::thread::sleep(interval); // the measuring period
            let Some(r) = registry.upgrade() else { return };
            if r.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            r.enforce_quotas();
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the quota thread: disk and memory quotas are not enforced");
    }
}
