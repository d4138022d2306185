//! What a running job tells the world, as Spark's `StreamingListener` does:
//! batches started, completed (with per-operator detail), failed; source
//! errors; plugin swaps; checkpoints.
//!
//! Everything that watches a job — the log, the terminal status line, the
//! web UI, the Prometheus metrics, the server-sent event stream — is a
//! [`StreamingListener`] fed the same [`Event`]s. Listeners are called on the
//! batch loop's thread after the batch's outputs are written, so they must
//! be quick and must never block (hand work to a bounded queue instead); a
//! panicking listener is caught, logged and dropped, never the job.

use std::sync::{Arc, RwLock};

use serde::Serialize;

pub use crate::graph::executor::{OperatorStats, StateSize};

/// A batch began processing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchStarted {
    /// The job.
    pub job: Arc<str>,
    /// Batch time (ms).
    pub batch_time_ms: i64,
    /// Recomputed from the write-ahead log during recovery.
    pub replayed: bool,
}

/// Records one source gave a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRecords {
    /// The source's name in the pipeline.
    pub source: String,
    /// Records.
    pub records: u64,
    /// Blocks the source's receiver holds for the next batch when this one
    /// completed (`None`: the source does not queue blocks, or cannot tell).
    pub queued_blocks: Option<u64>,
}

/// A batch completed: its outputs are written and its state committed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchCompleted {
    /// The job.
    pub job: Arc<str>,
    /// Batch time (ms).
    pub batch_time_ms: i64,
    /// Recomputed from the write-ahead log during recovery.
    pub replayed: bool,
    /// Records from all sources.
    pub input_records: u64,
    /// Records per source.
    pub sources: Vec<SourceRecords>,
    /// From batch time to the start of processing (ms).
    pub scheduling_delay_ms: f64,
    /// From the start of processing to outputs written (ms).
    pub processing_ms: f64,
    /// Scheduling delay plus processing time (ms).
    pub total_delay_ms: f64,
    /// What each operator did, in graph order.
    pub operators: Vec<OperatorStats>,
    /// State held by each stateful operator after the batch.
    pub state: Vec<StateSize>,
}

/// An attempt at a batch failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchFailed {
    /// The job.
    pub job: Arc<str>,
    /// Batch time (ms).
    pub batch_time_ms: i64,
    /// Which attempt failed (1 = the first).
    pub attempt: u32,
    /// The error, naming job, operator, plugin, batch and partition.
    pub error: String,
    /// The batch is tried again (else the job fails).
    pub retrying: bool,
    /// What the operators did in the failed attempt, up to and including
    /// the one that failed (its failed calls counted).
    pub operators: Vec<OperatorStats>,
}

/// A source reported a problem it keeps working through (a broker out of
/// reach, a dropped connection).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceError {
    /// The job.
    pub job: Arc<str>,
    /// The source's name.
    pub source: String,
    /// What happened.
    pub message: String,
}

/// A plugin runs a new module from `first_batch_ms` on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginSwapped {
    /// The job.
    pub job: Arc<str>,
    /// The plugin's name in the pipeline.
    pub plugin: String,
    /// Module hash before.
    pub from: String,
    /// Module hash after.
    pub to: String,
    /// The first batch on the new module.
    pub first_batch_ms: i64,
    /// Keys whose state went through `migrate:state`.
    pub migrated_keys: u64,
    /// A rollback to the previous module.
    pub rollback: bool,
}

/// A checkpoint was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointWritten {
    /// The job.
    pub job: Arc<str>,
    /// Batch number the checkpoint follows (0: before the first batch).
    pub seq: u64,
    /// Its batch time (ms).
    pub batch_time_ms: i64,
    /// How long writing it took (ms).
    pub duration_ms: f64,
}

/// Any event, tagged for JSON (`{"event": "batch_completed", ...}`), as the
/// server-sent event stream carries them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// See [`BatchStarted`].
    BatchStarted(BatchStarted),
    /// See [`BatchCompleted`].
    BatchCompleted(BatchCompleted),
    /// See [`BatchFailed`].
    BatchFailed(BatchFailed),
    /// See [`SourceError`].
    SourceError(SourceError),
    /// See [`PluginSwapped`].
    PluginSwapped(PluginSwapped),
    /// See [`CheckpointWritten`].
    Checkpoint(CheckpointWritten),
}

impl Event {
    /// The event's name as in its JSON tag (`batch_completed`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::BatchStarted(_) => "batch_started",
            Event::BatchCompleted(_) => "batch_completed",
            Event::BatchFailed(_) => "batch_failed",
            Event::SourceError(_) => "source_error",
            Event::PluginSwapped(_) => "plugin_swapped",
            Event::Checkpoint(_) => "checkpoint",
        }
    }
}

/// Hears a job's events. Every method has an empty default; implement
/// what you need, or [`StreamingListener::on_event`] for all of them.
pub trait StreamingListener: Send + Sync {
    /// A batch began processing.
    fn on_batch_started(&self, _event: &BatchStarted) {}
    /// A batch completed.
    fn on_batch_completed(&self, _event: &BatchCompleted) {}
    /// An attempt at a batch failed.
    fn on_batch_failed(&self, _event: &BatchFailed) {}
    /// A source reported a problem.
    fn on_source_error(&self, _event: &SourceError) {}
    /// A plugin was swapped (or rolled back).
    fn on_plugin_swapped(&self, _event: &PluginSwapped) {}
    /// A checkpoint was written.
    fn on_checkpoint(&self, _event: &CheckpointWritten) {}

    /// Every event; by default, dispatches to the methods above.
    fn on_event(&self, event: &Event) {
        match event {
            Event::BatchStarted(e) => self.on_batch_started(e),
            Event::BatchCompleted(e) => self.on_batch_completed(e),
            Event::BatchFailed(e) => self.on_batch_failed(e),
            Event::SourceError(e) => self.on_source_error(e),
            Event::PluginSwapped(e) => self.on_plugin_swapped(e),
            Event::Checkpoint(e) => self.on_checkpoint(e),
        }
    }
}

/// The listeners of one job. Cheap to clone; listeners can be added while
/// the job runs.
#[derive(Clone, Default)]
pub struct Listeners {
    inner: Arc<RwLock<Vec<Arc<dyn StreamingListener>>>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.read().map_or(0, |l| l.len());
        f.debug_struct("Listeners").field("count", &n).finish()
    }
}

impl Listeners {
    /// Adds a listener; it hears every event from now on.
    pub fn add(&self, listener: Arc<dyn StreamingListener>) {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(listener);
    }

    /// Tells every listener. A listener that panics is logged and removed;
    /// the job goes on.
    pub fn emit(&self, event: &Event) {
        let listeners = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut failed = Vec::new();
        for (i, listener) in listeners.iter().enumerate() {
            let call = std::panic::AssertUnwindSafe(|| listener.on_event(event));
            if std::panic::catch_unwind(call).is_err() {
                tracing::error!(
                    event = event.name(),
                    "a listener panicked; it is removed, the job goes on"
                );
                failed.push(i);
            }
        }
        if !failed.is_empty() {
            let mut all = self
                .inner
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            all.retain(|l| !failed.iter().any(|&i| Arc::ptr_eq(l, &listeners[i])));
        }
    }
}

/// The log as a listener: one line per batch (`batch completed` /
/// `batch replayed`, with records and delays), per failed attempt, per
/// source error, swap and checkpoint.
#[derive(Debug, Default)]
pub struct LogListener;

impl StreamingListener for LogListener {
    fn on_batch_completed(&self, e: &BatchCompleted) {
        tracing::info!(
            batch_time_ms = e.batch_time_ms,
            input_records = e.input_records,
            processing_ms = format_args!("{:.1}", e.processing_ms),
            scheduling_delay_ms = format_args!("{:.1}", e.scheduling_delay_ms),
            total_delay_ms = format_args!("{:.1}", e.total_delay_ms),
            "{}",
            if e.replayed {
                "batch replayed"
            } else {
                "batch completed"
            }
        );
    }

    fn on_batch_failed(&self, e: &BatchFailed) {
        if e.retrying {
            tracing::warn!(error = %e.error, attempt = e.attempt, "batch failed; retrying from the state before it");
        }
    }

    fn on_source_error(&self, e: &SourceError) {
        tracing::warn!(source = %e.source, "{}", e.message);
    }

    fn on_plugin_swapped(&self, e: &PluginSwapped) {
        tracing::info!(
            plugin = %e.plugin,
            from = %e.from,
            to = %e.to,
            migrated_keys = e.migrated_keys,
            first_batch_ms = e.first_batch_ms,
            "{}",
            if e.rollback { "plugin rolled back" } else { "plugin swapped" }
        );
    }

    fn on_checkpoint(&self, e: &CheckpointWritten) {
        tracing::debug!(
            batch = e.seq,
            ms = format_args!("{:.1}", e.duration_ms),
            "checkpoint written"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<&'static str>>);

    impl StreamingListener for Seen {
        fn on_event(&self, event: &Event) {
            self.0.lock().unwrap().push(event.name());
        }
    }

    struct Panics;

    impl StreamingListener for Panics {
        fn on_batch_started(&self, _: &BatchStarted) {
            panic!("listener bug");
        }
    }

    #[test]
    fn a_panicking_listener_is_dropped_and_the_others_still_hear() {
        let listeners = Listeners::default();
        let seen = Arc::new(Seen::default());
        listeners.add(Arc::new(Panics));
        listeners.add(seen.clone());
        let started = Event::BatchStarted(BatchStarted {
            job: "j".into(),
            batch_time_ms: 1000,
            replayed: false,
        });
        listeners.emit(&started);
        listeners.emit(&started);
        assert_eq!(*seen.0.lock().unwrap(), ["batch_started", "batch_started"]);
        assert_eq!(listeners.inner.read().unwrap().len(), 1);
    }

    #[test]
    fn events_are_tagged_in_json() {
        let e = Event::Checkpoint(CheckpointWritten {
            job: "j".into(),
            seq: 3,
            batch_time_ms: 3000,
            duration_ms: 1.5,
        });
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["event"], "checkpoint");
        assert_eq!(json["seq"], 3);
    }
}
