//! The process-wide host every job runs on: one wasm runtime (engine and
//! module cache), one tokio runtime for receivers (and `weir serve`'s HTTP
//! API, and every job's batch clock), and one elastic worker pool for
//! partition work. Jobs get cheap handles to it; none builds its own. A job
//! is a task on the tokio runtime that sleeps until its next batch and runs
//! each batch on a blocking thread lent for it, so an idle job holds no
//! thread at all.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::wasm::{Runtime, RuntimeConfig};
use crate::worker_pool::{PoolStats, WorkerPool};

/// Settings of a [`Host`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The wasm runtime's settings.
    pub wasm: RuntimeConfig,
    /// Threads of the tokio runtime that runs receivers (and serve's API).
    pub io_threads: usize,
    /// Idle worker threads kept for the next batch (others exit).
    pub max_idle_workers: usize,
    /// How long an idle worker thread waits for work before it exits.
    pub worker_idle_timeout: Duration,
    /// Batches that may run at once over all jobs (each on a thread of its
    /// own); more wait for a slot. Jobs whose batches are due together (all
    /// of them, every interval, when intervals align) then share a few
    /// threads instead of each waking one.
    pub batch_slots: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            wasm: RuntimeConfig::default(),
            io_threads: 1,
            max_idle_workers: std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
            worker_idle_timeout: Duration::from_secs(10),
            batch_slots: 128,
        }
    }
}

/// The host could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// wasmtime rejected the engine configuration.
    #[error("cannot start the wasm runtime: {0}")]
    Wasm(#[source] wasmtime::Error),
    /// The tokio runtime could not start.
    #[error("cannot start the receiver runtime: {0}")]
    Io(#[source] std::io::Error),
}

/// The process-wide host. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    batch_slots: Arc<tokio::sync::Semaphore>,
    wasm: Runtime,
    /// Taken at drop, to shut down without blocking.
    tokio: Option<tokio::runtime::Runtime>,
    pool: WorkerPool,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("pool", &self.inner.pool)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A host with its own runtimes and pool.
    pub fn new(config: &HostConfig) -> Result<Host, HostError> {
        Host::with_wasm(Runtime::new(&config.wasm).map_err(HostError::Wasm)?, config)
    }

    /// A host around an existing wasm runtime (sharing its module cache).
    pub fn with_wasm(wasm: Runtime, config: &HostConfig) -> Result<Host, HostError> {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.io_threads.max(1))
            // Every running batch has a blocking thread of its own, lent
            // for the batch; at most `batch_slots` run at once, the rest
            // of the blocking threads serve receivers and the API.
            .max_blocking_threads(config.batch_slots.max(1) + 64)
            .thread_keep_alive(config.worker_idle_timeout)
            .thread_name("weir-io")
            .enable_all()
            .build()
            .map_err(HostError::Io)?;
        Ok(Host {
            inner: Arc::new(Inner {
                batch_slots: Arc::new(tokio::sync::Semaphore::new(config.batch_slots.max(1))),
                wasm,
                tokio: Some(tokio),
                pool: WorkerPool::new(config.worker_idle_timeout, config.max_idle_workers),
            }),
        })
    }

    /// The process's default host, created on first use with the default
    /// settings: what [`StreamingContext::new`](crate::StreamingContext::new)
    /// runs on.
    pub fn shared() -> Result<Host, HostError> {
        static SHARED: OnceLock<Host> = OnceLock::new();
        if let Some(h) = SHARED.get() {
            return Ok(h.clone());
        }
        let host = Host::new(&HostConfig::default())?;
        Ok(SHARED.get_or_init(|| host).clone())
    }

    /// The wasm runtime.
    pub fn wasm(&self) -> &Runtime {
        &self.inner.wasm
    }

    /// The tokio runtime receivers run on.
    pub fn io(&self) -> &tokio::runtime::Handle {
        self.inner
            .tokio
            .as_ref()
            .expect("the runtime lives until the host is dropped")
            .handle()
    }

    /// Slots for batches running at once (see [`HostConfig::batch_slots`]).
    pub(crate) fn batch_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.inner.batch_slots
    }

    /// The worker pool.
    pub fn pool(&self) -> &WorkerPool {
        &self.inner.pool
    }

    /// The pool's threads now.
    pub fn worker_threads(&self) -> PoolStats {
        self.inner.pool.threads()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Without blocking: this may run on any thread, even inside
        // another runtime; the receivers' tasks end with their jobs.
        if let Some(tokio) = self.tokio.take() {
            tokio.shutdown_background();
        }
    }
}
