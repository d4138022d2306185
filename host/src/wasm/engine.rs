//! The configured wasmtime engine shared by the runtime and every compiled
//! plugin: deterministic execution (fuel, NaN canonicalisation,
//! deterministic relaxed SIMD), the pooling allocator, one linker with the
//! ABI's imports, and the epoch ticker behind call deadlines. Per-call
//! [`Limits`] live here too, below both the runtime and the plugins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

use super::store::CallState;

/// How often the epoch ticker advances (granularity of the wall-clock
/// safety net).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of the runtime as a whole (per-call limits are [`Limits`]).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may be alive at once (the pooling allocator's slots).
    pub max_instances: u32,
    /// Largest memory any instance may ever have; per-call limits are
    /// checked below this.
    pub max_memory_bytes: usize,
    /// Wasm stack size in bytes.
    pub max_wasm_stack: usize,
    /// Bytes of each pooled linear memory kept resident between instances
    /// (reset in place instead of being given back to the kernel), so the
    /// next call on that slot takes no page faults there. Costs up to this
    /// much RSS per recently used slot (calls on the same module reuse the
    /// same slots, so about one per worker per module).
    pub memory_keep_resident: usize,
    /// Bytes of each pooled table kept resident between instances.
    pub table_keep_resident: usize,
    /// Reset only the pages an instance touched (Linux `PAGEMAP_SCAN`,
    /// kernel 6.7+; ignored where unavailable).
    pub pagemap_scan: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 128,
            max_memory_bytes: 4 << 30,
            max_wasm_stack: 1 << 20,
            memory_keep_resident: 64 << 20,
            table_keep_resident: 64 << 10,
            pagemap_scan: true,
        }
    }
}

/// Per-call limits. Fuel and memory are deterministic: a replayed batch hits
/// them at the same point. The deadline is only a wall-clock safety net.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units per call (about one per wasm instruction).
    pub fuel: u64,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Output cap per call, in bytes.
    pub output_bytes: usize,
    /// Wall-clock safety net per call.
    pub deadline: Duration,
    /// Bytes a call may write through `weir.log`.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 50_000_000_000,
            memory_bytes: 1 << 30,
            output_bytes: 512 << 20,
            deadline: Duration::from_secs(120),
            log_bytes: 64 << 10,
        }
    }
}

/// The engine, its linker and its epoch ticker. Cheap to clone; the
/// ticker stops when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct SharedEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<CallState>,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl SharedEngine {
    /// Builds the engine. Fails only if wasmtime rejects the configuration
    /// (for example when the host cannot reserve the pool's address space).
    pub fn new(config: &RuntimeConfig) -> Result<Self, wasmtime::Error> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(config.max_instances)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances)
            .max_memory_size(config.max_memory_bytes)
            .linear_memory_keep_resident(config.memory_keep_resident)
            .table_keep_resident(config.table_keep_resident)
            .pagemap_scan(if config.pagemap_scan {
                wasmtime::Enabled::Auto
            } else {
                wasmtime::Enabled::No
            });
        let mut cfg = Config::new();
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(config.max_wasm_stack);
        let engine = Engine::new(&cfg)?;

        let mut linker = Linker::new(&engine);
        super::imports::define(&mut linker)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(wasmtime::Error::from)?;

        Ok(SharedEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                stop_ticker,
            }),
        })
    }

    /// The wasmtime engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The linker with weir's imports.
    pub(crate) fn linker(&self) -> &Linker<CallState> {
        &self.inner.linker
    }
}
