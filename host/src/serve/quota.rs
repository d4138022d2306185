//! Tenant quotas: what all of a tenant's jobs together may use
//! ([`TenantQuota`]), and what they use.
//!
//! - **jobs**: running jobs; a submission past it is 429.
//! - **fuel per second**: every completed batch charges the fuel its
//!   plugin calls burnt to its tenant's meter; once the tenant is more than
//!   [`FUEL_BURST`] ahead of its rate, the batch thread waits (before the
//!   job's next batch) until it is back within it. A tenant with many jobs
//!   thus gets its share of the CPU and no more, whatever the others do;
//!   batch contents do not depend on it (they are decided by batch time
//!   and logged), so neither do outputs. A submission while the tenant is
//!   held back is accepted: the new job shares the tenant's rate (a tenant
//!   busy up to its share can still deploy).
//! - **disk** (its job directories: outputs, checkpoints, batch logs) and
//!   **memory** (its running and paused jobs' module bytes and keyed and
//!   window state, as the engine reports it after each batch) are measured
//!   every `quota_check_interval`; over either, its running jobs are
//!   paused — stopped after their current batch, never in the middle of
//!   one — and resumed from their checkpoints once it is back under. A
//!   submission that would go past either is 413.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::config::TenantQuota;
use crate::job::events::{BatchCompleted, StreamingListener};
use crate::job::StopSignal;

/// How far ahead of its fuel rate a tenant may run before its batches
/// wait.
pub const FUEL_BURST: Duration = Duration::from_secs(1);

/// The window over which the fuel rate in a tenant's status is measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What one tenant's jobs use.
#[derive(Default)]
pub struct Usage {
    /// When the tenant's fuel meter is paid off: each batch moves it on
    /// by its fuel over the rate.
    paid_until: Mutex<Option<Instant>>,
    /// Fuel of recent batches: (when, fuel), for the status.
    recent_fuel: Mutex<Vec<(Instant, u64)>>,
    fuel_total: AtomicU64,
    throttled_ms: AtomicU64,
    /// Job id → bytes of its state after its last batch.
    state: Mutex<BTreeMap<String, u64>>,
    /// Job id → bytes of its modules.
    modules: Mutex<BTreeMap<String, u64>>,
    /// Bytes of its job directories, as last measured.
    disk: AtomicU64,
}

impl Usage {
    /// Charges `fuel` burnt now; how long the batch thread should wait.
    fn charge(&self, fuel: u64, per_second: Option<u64>) -> Duration {
        let now = Instant::now();
        self.fuel_total.fetch_add(fuel, Ordering::Relaxed);
        {
            let mut recent = self.recent_fuel.lock().expect("usage poisoned");
            recent.retain(|(at, _)| now.duration_since(*at) < RATE_WINDOW);
            recent.push((now, fuel));
        }
        let Some(rate) = per_second else {
            return Duration::ZERO;
        };
        let mut paid = self.paid_until.lock().expect("usage poisoned");
        let from = paid.map_or(now, |p| p.max(now));
        let until = from + Duration::from_secs_f64(fuel as f64 / rate.max(1) as f64);
        *paid = Some(until);
        until.saturating_duration_since(now + FUEL_BURST)
    }

    /// True while the tenant's batches are held back by its fuel quota.
    pub fn fuel_exhausted(&self) -> bool {
        let paid = *self.paid_until.lock().expect("usage poisoned");
        paid.is_some_and(|p| p > Instant::now() + FUEL_BURST)
    }

    /// Fuel per second over the last [`RATE_WINDOW`].
    pub fn fuel_rate(&self) -> u64 {
        let now = Instant::now();
        let recent = self.recent_fuel.lock().expect("usage poisoned");
        let fuel: u64 = recent
            .iter()
            .filter(|(at, _)| now.duration_since(*at) < RATE_WINDOW)
            .map(|(_, f)| f)
            .sum();
        (fuel as f64 / RATE_WINDOW.as_secs_f64()) as u64
    }

    /// Fuel burnt since the host started.
    pub fn fuel_total(&self) -> u64 {
        self.fuel_total.load(Ordering::Relaxed)
    }

    /// Time batches waited for the fuel quota, ms.
    pub fn throttled_ms(&self) -> u64 {
        self.throttled_ms.load(Ordering::Relaxed)
    }

    /// Records a job's module bytes (at its start).
    pub fn set_modules(&self, job: &str, bytes: u64) {
        self.modules
            .lock()
            .expect("usage poisoned")
            .insert(job.to_owned(), bytes);
    }

    /// Forgets a deleted job.
    pub fn forget(&self, job: &str) {
        self.modules.lock().expect("usage poisoned").remove(job);
        self.state.lock().expect("usage poisoned").remove(job);
    }

    /// Module and state bytes of the jobs `counted` accepts.
    pub fn memory(&self, counted: impl Fn(&str) -> bool) -> u64 {
        let modules = self.modules.lock().expect("usage poisoned");
        let state = self.state.lock().expect("usage poisoned");
        let m: u64 = modules
            .iter()
            .filter(|(j, _)| counted(j))
            .map(|(_, b)| b)
            .sum();
        let s: u64 = state
            .iter()
            .filter(|(j, _)| counted(j))
            .map(|(_, b)| b)
            .sum();
        m + s
    }

    /// Bytes of the tenant's job directories, as last measured.
    pub fn disk(&self) -> u64 {
        self.disk.load(Ordering::Relaxed)
    }

    /// Measures the tenant's job directories.
    pub fn measure_disk(&self, jobs_dir: &Path) -> u64 {
        let bytes = dir_bytes(jobs_dir);
        self.disk.store(bytes, Ordering::Relaxed);
        bytes
    }
}

/// Bytes of the files under `dir` (0 if it cannot be read).
pub fn dir_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// `N MB` with one decimal below 10.
pub fn mb(bytes: u64) -> String {
    let m = bytes as f64 / (1u64 << 20) as f64;
    if m < 10.0 {
        format!("{m:.1} MB")
    } else {
        format!("{m:.0} MB")
    }
}

/// Why the tenant is over its disk or memory quota, if it is.
pub fn over_quota(quota: &TenantQuota, disk: u64, memory: u64) -> Option<String> {
    if let Some(limit) = quota.disk_bytes.filter(|&l| disk > l) {
        return Some(format!(
            "disk quota {} exceeded (used {})",
            mb(limit),
            mb(disk)
        ));
    }
    if let Some(limit) = quota.memory_bytes.filter(|&l| memory > l) {
        return Some(format!(
            "memory quota {} exceeded (used {})",
            mb(limit),
            mb(memory)
        ));
    }
    None
}

/// A job's listener: charges its batches' fuel to its tenant (waiting
/// when the tenant is past its fuel quota) and records its state size.
pub struct QuotaListener {
    pub(super) usage: Arc<Usage>,
    pub(super) job: String,
    pub(super) fuel_per_second: Option<u64>,
    /// The job's stop signal, once it started: a wait ends at a stop.
    pub(super) stop: Arc<OnceLock<Arc<StopSignal>>>,
}

impl StreamingListener for QuotaListener {
    fn on_batch_completed(&self, e: &BatchCompleted) {
        let state: u64 = e.state.iter().map(|s| s.bytes).sum();
        self.usage
            .state
            .lock()
            .expect("usage poisoned")
            .insert(self.job.clone(), state);
        let fuel: u64 = e.operators.iter().map(|o| o.fuel).sum();
        let wait = self.usage.charge(fuel, self.fuel_per_second);
        if wait.is_zero() {
            return;
        }
        let started = Instant::now();
        match self.stop.get() {
            Some(stop) => {
                stop.wait_timeout(wait);
            }
            None => std::thread::sleep(wait), // before start: cannot happen
        }
        self.usage
            .throttled_ms
            .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_past_its_fuel_rate_waits() {
        let u = Usage::default();
        // 1000 fuel/s: 500 is within the burst, 2000 more is 1.5 s past it.
        assert_eq!(u.charge(500, Some(1000)), Duration::ZERO);
        assert!(!u.fuel_exhausted());
        let wait = u.charge(2000, Some(1000));
        assert!(
            wait > Duration::from_millis(1400) && wait <= Duration::from_millis(1500),
            "{wait:?}"
        );
        assert!(u.fuel_exhausted());
        assert_eq!(u.fuel_total(), 2500);
        // No quota: never waits.
        assert_eq!(Usage::default().charge(u64::MAX / 2, None), Duration::ZERO);
    }

    #[test]
    fn quotas_name_what_is_exceeded() {
        let q = TenantQuota {
            jobs: 1,
            disk_bytes: Some(100 << 20),
            fuel_per_second: None,
            memory_bytes: Some(1 << 20),
        };
        assert_eq!(over_quota(&q, 100 << 20, 0), None);
        assert_eq!(
            over_quota(&q, 103 << 20, 0).unwrap(),
            "disk quota 100 MB exceeded (used 103 MB)"
        );
        assert_eq!(
            over_quota(&q, 0, 3 << 19).unwrap(),
            "memory quota 1.0 MB exceeded (used 1.5 MB)"
        );
    }
}
