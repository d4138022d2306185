//! Bringing a host's jobs back when it starts: every job directory under
//! `<data_dir>/<tenant>/jobs/` is read through its record
//! ([`super::record`]). A job that was running starts again from its
//! checkpoint (replaying its logged batches, then catching up on the
//! batches it missed); stopped, paused and failed jobs are listed as they
//! ended (a paused one resumes once its tenant is under its quotas); a
//! deletion a crash interrupted is finished. A record that cannot be used
//! is logged, naming the file, and its job listed as failed with why (its
//! tenant may delete it): it never keeps the host or another job from
//! starting.

use std::path::{Path, PathBuf};

use super::config::TenantConfig;
use super::confine::PIPELINE_FILE;
use super::job::{job_error, placeholder_record, Job, Outcome};
use super::record::{self, Desired, JobRecord, RecordError, DELETED_PREFIX, RECORD_FILE};
use super::registry::Registry;
use super::ApiError;

/// The highest id number of any job directory (deleted or not) under
/// `data_dir`, or 0.
pub(super) fn highest_id(data_dir: &Path) -> u64 {
    let mut highest = 0;
    for tenant in read_dirs(data_dir) {
        for job in read_dirs(&tenant.join("jobs")) {
            let name = job.file_name().unwrap_or_default().to_string_lossy();
            let id = name.strip_prefix(DELETED_PREFIX).unwrap_or(&name);
            highest = highest.max(record::id_number(id).unwrap_or(0));
        }
    }
    highest
}

/// The subdirectories of `dir`, by name; none if it cannot be read.
fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let e = e.ok()?;
                e.file_type().ok()?.is_dir().then(|| e.path())
            })
            .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

impl Registry {
    /// Brings back the jobs of the data directory (see the module docs).
    /// Returns how many were started again.
    pub fn recover(&self) -> usize {
        let mut started = 0;
        for tenant_dir in read_dirs(&self.config.data_dir) {
            let name = tenant_dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let jobs = read_dirs(&tenant_dir.join("jobs"));
            let Some(tenant) = self.config.tenants.iter().find(|t| t.name == name) else {
                if !jobs.is_empty() {
                    tracing::warn!(tenant = %name, dir = %tenant_dir.display(), jobs = jobs.len(), "jobs of a tenant not in the configuration are left alone");
                }
                continue;
            };
            // Oldest first: ids number the submissions.
            let mut jobs: Vec<(u64, String, PathBuf)> = jobs
                .into_iter()
                .map(|dir| {
                    let id = dir
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    (record::id_number(&id).unwrap_or(0), id, dir)
                })
                .collect();
            jobs.sort();
            for (_, id, dir) in jobs {
                if id.starts_with(DELETED_PREFIX) {
                    // Moved aside already: only the removal was cut short.
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::error!(dir = %dir.display(), error = %e, "cannot remove a deleted job's files");
                    }
                } else if !id.starts_with('.') {
                    started += usize::from(self.recover_job(tenant, &id, &dir));
                }
            }
        }
        started
    }

    /// Brings back one job; true if it was started again.
    fn recover_job(&self, tenant: &TenantConfig, id: &str, dir: &Path) -> bool {
        let record = match JobRecord::load(dir, &tenant.name, id) {
            Ok(r) => r,
            Err(e) => {
                let message = match &e {
                    RecordError::Io { source, .. }
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        format!(
                            "{} has no job record ({RECORD_FILE}): a submission cut short, or a job of an older weir; delete it",
                            dir.display()
                        )
                    }
                    _ => e.to_string(),
                };
                tracing::error!(tenant = %tenant.name, job = %id, error = %message, "cannot bring the job back");
                let error = job_error("record", message);
                self.list_ended(
                    placeholder_record(&tenant.name, id, error.clone()),
                    dir,
                    Outcome::Failed(error),
                    false,
                );
                return false;
            }
        };
        match record.state {
            Desired::Deleted => {
                finish_deletion(dir);
                false
            }
            // Paused by a quota the configuration no longer has: it runs.
            Desired::Paused
                if tenant.quota.disk_bytes.is_none() && tenant.quota.memory_bytes.is_none() =>
            {
                let record = JobRecord {
                    state: Desired::Running,
                    paused: None,
                    ..record
                };
                self.restart(tenant, record, dir)
            }
            // A paused job stays paused until the quota check finds its
            // tenant back under its quotas.
            Desired::Stopped | Desired::Paused => {
                self.list_ended(record, dir, Outcome::Stopped, true);
                false
            }
            Desired::Failed => {
                let error = record.error.clone().unwrap_or_else(|| {
                    job_error(
                        "engine",
                        "the job failed (its record keeps no error)".into(),
                    )
                });
                self.list_ended(record, dir, Outcome::Failed(error), true);
                false
            }
            Desired::Running => self.restart(tenant, record, dir),
        }
    }

    /// Starts a job that was running again, from its checkpoint. If it
    /// cannot start, it is listed as failed with why, and its record keeps
    /// saying running: the next start tries again.
    fn restart(&self, tenant: &TenantConfig, record: JobRecord, dir: &Path) -> bool {
        let id = record.id.clone();
        let record_error = |message: String| ApiError {
            status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            code: "record",
            message,
        };
        let started = record
            .verify_files(dir, PIPELINE_FILE)
            .map_err(|e| record_error(e.to_string()))
            .and_then(|()| {
                std::fs::read_to_string(dir.join(PIPELINE_FILE))
                    .map_err(|e| record_error(format!("cannot read {PIPELINE_FILE}: {e}")))
            })
            .and_then(|src| self.start(tenant, record.clone(), dir, &src, None));
        match started {
            Ok(_) => {
                tracing::info!(tenant = %tenant.name, job = %id, "job brought back from its checkpoint");
                true
            }
            Err(e) => {
                tracing::error!(tenant = %tenant.name, job = %id, kind = %e.code, error = %e.message, "cannot start the job again");
                let error = job_error(
                    e.code,
                    format!("could not start again after a restart: {}", e.message),
                );
                self.list_ended(record, dir, Outcome::Failed(error), true);
                false
            }
        }
    }

    fn list_ended(&self, record: JobRecord, dir: &Path, outcome: Outcome, durable: bool) {
        let id = record.id.clone();
        let job = Job::ended(record, dir.to_owned(), outcome, durable);
        self.jobs
            .lock()
            .expect("registry poisoned")
            .by_id
            .insert(id, std::sync::Arc::new(job));
    }
}

/// Finishes a deletion a crash interrupted.
fn finish_deletion(dir: &Path) {
    match record::remove_job_dir(dir) {
        Ok(()) => tracing::info!(dir = %dir.display(), "finished deleting a job"),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot remove a deleted job's files")
        }
    }
}
