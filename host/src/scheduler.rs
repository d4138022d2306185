//! The batch clock and the batch loop.
//!
//! Batch times are `start + k·interval`. For each, the loop waits until the
//! clock reaches it, cuts the batch from every source, runs the graph,
//! writes the outputs and records statistics. If processing takes longer
//! than the interval, the next batch starts late (its scheduling delay
//! grows) — batches never overlap and never queue up in memory.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::EngineError;
use crate::ops::total_records;
use crate::output::stats::{BatchStats, StatsFile};
use crate::output::Output;
use crate::receiver::{blocks_to_partitions, Source};
use crate::stream::executor::Executor;
use crate::stream::graph::NodeId;

/// Where batch times come from. Tests and benchmarks use the simulated
/// clock, which never sleeps.
pub trait Clock: Send + Sync {
    /// Current time in ms.
    fn now_ms(&self) -> i64;
    /// Waits until `t_ms` or until `stop` is requested; false if stopped.
    fn wait_until(&self, t_ms: i64, stop: &StopSignal) -> bool;
}

/// Wall-clock time.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    fn wait_until(&self, t_ms: i64, stop: &StopSignal) -> bool {
        loop {
            let now = self.now_ms();
            if now >= t_ms {
                return !stop.is_requested();
            }
            if stop.wait_timeout(Duration::from_millis((t_ms - now) as u64)) {
                return false;
            }
        }
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
    fn now_ms(&self) -> i64 {
        *self.now.lock().expect("clock poisoned")
    }

    fn wait_until(&self, t_ms: i64, stop: &StopSignal) -> bool {
        let mut now = self.now.lock().expect("clock poisoned");
        *now = (*now).max(t_ms);
        !stop.is_requested()
    }
}

/// A stop request that sleeping threads can wait on.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Mutex<bool>,
    cond: Condvar,
}

impl StopSignal {
    /// Asks the job to stop after the current batch.
    pub fn request(&self) {
        *self.stopped.lock().expect("stop poisoned") = true;
        self.cond.notify_all();
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
pub struct BatchLoop {
    /// The graph executor.
    pub executor: Executor,
    /// Sources, with the source index their node reads.
    pub sources: Vec<Box<dyn Source>>,
    /// Outputs, with the node they write.
    pub outputs: Vec<(NodeId, Box<dyn Output>)>,
    /// Batch interval.
    pub interval_ms: i64,
    /// Partitions of each input stream.
    pub partitions: usize,
    /// Stop after this many batches.
    pub max_batches: Option<u64>,
    /// JSON-lines statistics file.
    pub stats_file: Option<StatsFile>,
    /// Show a status line on stderr when it is a terminal.
    pub progress: bool,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where a stop request arrives.
    pub stop: Arc<StopSignal>,
}

impl BatchLoop {
    /// Runs batches until stopped, `max_batches` is reached, or a batch fails.
    pub fn run(mut self) -> Result<RunSummary, JobFailed> {
        let mut summary = RunSummary {
            batches: 0,
            last_batch_ms: None,
            stats: Vec::new(),
        };
        let now = self.clock.now_ms();
        let mut t = (now.div_euclid(self.interval_ms) + 1) * self.interval_ms;
        let progress = self.progress && std::io::stderr().is_terminal();
        let started = Instant::now();
        let mut total_in = 0u64;
        while self.max_batches.is_none_or(|m| summary.batches < m) {
            if !self.clock.wait_until(t, &self.stop) {
                break;
            }
            let _span = tracing::info_span!("batch", time_ms = t).entered();
            match self.run_one(t) {
                Ok(stats) => {
                    total_in += stats.input_records;
                    tracing::info!(
                        batch_time_ms = t,
                        input_records = stats.input_records,
                        processing_ms = format_args!("{:.1}", stats.processing_ms),
                        scheduling_delay_ms = format_args!("{:.1}", stats.scheduling_delay_ms),
                        total_delay_ms = format_args!("{:.1}", stats.total_delay_ms),
                        "batch completed"
                    );
                    if let Some(f) = &mut self.stats_file {
                        if let Err(e) = f.append(&stats) {
                            tracing::warn!(error = %e, "cannot write the statistics file");
                        }
                    }
                    if progress {
                        let rate = total_in as f64 / started.elapsed().as_secs_f64().max(1e-9);
                        eprint!(
                            "\r\x1b[2K[weir] batches {} | {:.0} records/s | last batch {:.0} ms",
                            summary.batches + 1,
                            rate,
                            stats.processing_ms
                        );
                        let _ = std::io::stderr().flush();
                    }
                    summary.batches += 1;
                    summary.last_batch_ms = Some(t);
                    summary.stats.push(stats);
                }
                Err(error) => {
                    if progress {
                        eprintln!();
                    }
                    return Err(JobFailed { error, summary });
                }
            }
            t += self.interval_ms;
        }
        if progress {
            eprintln!();
        }
        Ok(summary)
    }

    fn run_one(&mut self, t: i64) -> Result<BatchStats, EngineError> {
        let start_ms = self.clock.now_ms();
        let started = Instant::now();
        let mut inputs = Vec::with_capacity(self.sources.len());
        let mut input_records = 0;
        for source in &mut self.sources {
            let parts = blocks_to_partitions(source.next_batch(t)?, self.partitions);
            input_records += total_records(&parts) as u64;
            inputs.push(Some(parts));
        }
        let values = self.executor.run_batch(t, inputs)?;
        for (node, output) in &mut self.outputs {
            if let Some(parts) = &values[*node] {
                output.write(t, parts)?;
            }
        }
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
