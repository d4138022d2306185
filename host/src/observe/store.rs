//! What the web UI and the JSON API show of one job: a bounded,
//! in-memory record of its recent batches, its sources, swaps and
//! checkpoints, fed by the job's events (a [`StreamingListener`]).
//!
//! The listener runs on the batch loop's thread, so everything here is
//! quick: a short lock, a push into a ring of at most
//! [`JobStore::capacity`] batches, and one `try_send` per server-sent
//! event client (a client whose queue is full is dropped, never waited
//! for).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::job::events::{
    BatchCompleted, BatchFailed, CheckpointWritten, Event, OperatorStats, PluginSwapped,
    SourceRecords, StateSize, StreamingListener,
};

/// Batches kept by default.
pub const DEFAULT_CAPACITY: usize = 1000;

/// Events queued per server-sent event client before it is dropped.
pub const CLIENT_QUEUE: usize = 256;

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Started, not yet completed.
    Processing,
    /// Outputs written, state committed.
    Completed,
    /// Failed after every retry.
    Failed,
}

/// One batch as the store keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRecord {
    /// Batch time (ms).
    pub batch_time_ms: i64,
    /// Where it is.
    pub status: BatchStatus,
    /// Recomputed from the write-ahead log during recovery.
    pub replayed: bool,
    /// Records from all sources.
    pub input_records: u64,
    /// Scheduling delay (ms), once completed.
    pub scheduling_delay_ms: Option<f64>,
    /// Processing time (ms), once completed.
    pub processing_ms: Option<f64>,
    /// Total delay (ms), once completed.
    pub total_delay_ms: Option<f64>,
    /// Failed attempts (retried or not).
    pub failed_attempts: u32,
    /// The last attempt's error, if one failed.
    pub error: Option<String>,
    /// Records per source.
    pub sources: Vec<SourceRecords>,
    /// Per operator, in graph order.
    pub operators: Vec<OperatorStats>,
    /// State per stateful operator after the batch.
    pub state: Vec<StateSize>,
}

impl BatchRecord {
    fn started(batch_time_ms: i64, replayed: bool) -> BatchRecord {
        BatchRecord {
            batch_time_ms,
            status: BatchStatus::Processing,
            replayed,
            input_records: 0,
            scheduling_delay_ms: None,
            processing_ms: None,
            total_delay_ms: None,
            failed_attempts: 0,
            error: None,
            sources: Vec::new(),
            operators: Vec::new(),
            state: Vec::new(),
        }
    }
}

/// One source's totals over the job's life.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceTotals {
    /// Records it gave, over every batch.
    pub records: u64,
    /// Problems it reported.
    pub errors: u64,
    /// The last of them.
    pub last_error: Option<String>,
}

/// A plugin swap as the job's history shows it.
pub type Swap = PluginSwapped;

/// Everything the store knows, behind one lock.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Recent batches, oldest first.
    pub batches: VecDeque<BatchRecord>,
    /// Batches completed since the job started (replayed ones included).
    pub completed: u64,
    /// Batches that failed after every retry.
    pub failed: u64,
    /// Failed attempts (retried or not).
    pub failed_attempts: u64,
    /// Per source name.
    pub sources: BTreeMap<String, SourceTotals>,
    /// Every swap and rollback, oldest first.
    pub swaps: Vec<Swap>,
    /// The latest checkpoint.
    pub checkpoint: Option<CheckpointWritten>,
    /// State per stateful operator after the latest completed batch.
    pub state: Vec<StateSize>,
    /// Events seen.
    pub events: u64,
}

/// One server-sent event, ready to write: its name and JSON.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `Event::name()`.
    pub name: &'static str,
    /// The event as JSON.
    pub data: Arc<str>,
}

/// The store of one job. Add it to the job with
/// `StreamingContext::add_listener` before the job starts.
#[derive(Debug)]
pub struct JobStore {
    job: String,
    interval_ms: u64,
    started_ms: i64,
    capacity: usize,
    recorded: Mutex<Recorded>,
    clients: Mutex<Vec<mpsc::Sender<SseEvent>>>,
    dropped_clients: AtomicU64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl JobStore {
    /// A store for job `job` keeping the last `capacity` batches.
    pub fn new(job: &str, interval_ms: u64, capacity: usize) -> JobStore {
        JobStore {
            job: job.to_owned(),
            interval_ms,
            started_ms: now_ms(),
            capacity: capacity.max(1),
            recorded: Mutex::default(),
            clients: Mutex::default(),
            dropped_clients: AtomicU64::new(0),
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Its batch interval (ms).
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// When the store (and so the job) started, ms since the epoch.
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// Batches kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// What is recorded, locked: read it and let go quickly.
    pub fn read(&self) -> MutexGuard<'_, Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new server-sent event client: its queue of events from now on.
    /// The queue closes when the client falls [`CLIENT_QUEUE`] events
    /// behind.
    pub fn subscribe(&self) -> mpsc::Receiver<SseEvent> {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        self.clients_locked().push(tx);
        rx
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients_locked().len()
    }

    /// Clients dropped for falling behind.
    pub fn dropped_clients(&self) -> u64 {
        self.dropped_clients.load(Ordering::Relaxed)
    }

    fn clients_locked(&self) -> MutexGuard<'_, Vec<mpsc::Sender<SseEvent>>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands the event to every client without waiting: a client whose
    /// queue is full is dropped (its stream ends), as is one that left.
    fn broadcast(&self, event: &Event) {
        let mut clients = self.clients_locked();
        if clients.is_empty() {
            return;
        }
        let data: Arc<str> = match serde_json::to_string(event) {
            Ok(json) => json.into(),
            Err(_) => return,
        };
        let sse = SseEvent {
            name: event.name(),
            data,
        };
        clients.retain(|tx| match tx.try_send(sse.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped_clients.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    job = %self.job,
                    "an event stream client fell {CLIENT_QUEUE} events behind; disconnected"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    fn record(&self, event: &Event) {
        let mut r = self.read();
        r.events += 1;
        match event {
            Event::BatchStarted(e) => {
                let at = r.batch_mut(e.batch_time_ms, self.capacity);
                if at.status != BatchStatus::Completed {
                    at.replayed = e.replayed;
                }
            }
            Event::BatchCompleted(e) => r.completed_batch(e, self.capacity),
            Event::BatchFailed(e) => r.failed_batch(e, self.capacity),
            Event::SourceError(e) => {
                let s = r.sources.entry(e.source.clone()).or_default();
                s.errors += 1;
                s.last_error = Some(e.message.clone());
            }
            Event::PluginSwapped(e) => r.swaps.push(e.clone()),
            Event::Checkpoint(e) => r.checkpoint = Some(e.clone()),
        }
    }
}

impl Recorded {
    /// The record of batch `t`, added (as processing) if it is new.
    fn batch_mut(&mut self, t: i64, capacity: usize) -> &mut BatchRecord {
        let i = match self.batches.iter().rposition(|b| b.batch_time_ms == t) {
            Some(i) => i,
            None => {
                while self.batches.len() >= capacity {
                    self.batches.pop_front();
                }
                self.batches.push_back(BatchRecord::started(t, false));
                self.batches.len() - 1
            }
        };
        &mut self.batches[i]
    }

    fn completed_batch(&mut self, e: &BatchCompleted, capacity: usize) {
        self.completed += 1;
        for s in &e.sources {
            self.sources.entry(s.source.clone()).or_default().records += s.records;
        }
        self.state = e.state.clone();
        let b = self.batch_mut(e.batch_time_ms, capacity);
        b.status = BatchStatus::Completed;
        b.replayed = e.replayed;
        b.input_records = e.input_records;
        b.scheduling_delay_ms = Some(e.scheduling_delay_ms);
        b.processing_ms = Some(e.processing_ms);
        b.total_delay_ms = Some(e.total_delay_ms);
        b.sources = e.sources.clone();
        b.operators = e.operators.clone();
        b.state = e.state.clone();
    }

    fn failed_batch(&mut self, e: &BatchFailed, capacity: usize) {
        self.failed_attempts += 1;
        if !e.retrying {
            self.failed += 1;
        }
        let b = self.batch_mut(e.batch_time_ms, capacity);
        b.failed_attempts = b.failed_attempts.max(e.attempt);
        b.error = Some(e.error.clone());
        if !e.retrying {
            b.status = BatchStatus::Failed;
        }
    }

    /// The completed batches among the recent ones.
    pub fn completed_batches(&self) -> impl Iterator<Item = &BatchRecord> {
        self.batches
            .iter()
            .filter(|b| b.status == BatchStatus::Completed)
    }
}

impl StreamingListener for JobStore {
    fn on_event(&self, event: &Event) {
        self.record(event);
        self.broadcast(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::events::BatchStarted;

    fn started(t: i64) -> Event {
        Event::BatchStarted(BatchStarted {
            job: "j".into(),
            batch_time_ms: t,
            replayed: false,
        })
    }

    fn completed(t: i64) -> Event {
        Event::BatchCompleted(BatchCompleted {
            job: "j".into(),
            batch_time_ms: t,
            replayed: false,
            input_records: 3,
            sources: vec![SourceRecords {
                source: "lines".into(),
                records: 3,
                queued_blocks: None,
            }],
            scheduling_delay_ms: 1.0,
            processing_ms: 2.0,
            total_delay_ms: 3.0,
            operators: vec![],
            state: vec![],
        })
    }

    #[test]
    fn keeps_the_last_batches_only() {
        let store = JobStore::new("j", 1000, 3);
        for t in 1..=5 {
            store.on_event(&started(t * 1000));
            store.on_event(&completed(t * 1000));
        }
        let r = store.read();
        let times: Vec<i64> = r.batches.iter().map(|b| b.batch_time_ms).collect();
        assert_eq!(times, [3000, 4000, 5000]);
        assert_eq!(r.completed, 5);
        assert_eq!(r.sources["lines"].records, 15);
    }

    #[test]
    fn a_failed_batch_keeps_its_error() {
        let store = JobStore::new("j", 1000, 10);
        store.on_event(&started(1000));
        store.on_event(&Event::BatchFailed(BatchFailed {
            job: "j".into(),
            batch_time_ms: 1000,
            attempt: 1,
            error: "trap in split".into(),
            retrying: false,
            operators: vec![],
        }));
        let r = store.read();
        assert_eq!(r.batches[0].status, BatchStatus::Failed);
        assert_eq!(r.batches[0].error.as_deref(), Some("trap in split"));
        assert_eq!(r.failed, 1);
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped_without_blocking() {
        let store = JobStore::new("j", 1000, 10);
        let mut stuck = store.subscribe();
        let mut reading = store.subscribe();
        for t in 0..(CLIENT_QUEUE as i64 * 2) {
            store.on_event(&started(t));
            while let Ok(e) = reading.try_recv() {
                assert_eq!(e.name, "batch_started");
            }
        }
        assert_eq!(store.dropped_clients(), 1);
        assert_eq!(store.clients(), 1);
        // The stuck client gets what was queued, then its stream ends.
        let mut queued = 0;
        while stuck.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, CLIENT_QUEUE);
        assert!(matches!(
            stuck.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
