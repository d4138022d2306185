//! TCP text lines, like Spark's `socketTextStream`.
//!
//! A task on the tokio runtime connects to `host:port`, reads lines and
//! seals them into blocks (every block interval, or when a block is full),
//! each stamped with the batch clock's time when it is sealed, and sends
//! them through a bounded channel. Batch `t` takes the blocks sealed by `t`
//! (Spark's rule: a block belongs to the batch whose interval holds the
//! time it was received), so when the job is behind, each late batch still
//! holds one interval of data and the later blocks wait in the channel;
//! when the channel is full the task stops reading and TCP pushes back.
//! With backpressure, a token bucket at the rate the PID estimator sets
//! keeps the task from reading faster than batches are processed (Spark's
//! receiver `RateLimiter`), and the task reads nothing while the batch
//! clock is more than two intervals behind (so the scheduling delay stays
//! bounded before the estimator has a rate, e.g. after a slow first
//! batch): a throttled task does not read, so nothing is dropped. When the connection fails or the server goes away, it says so
//! in the log and reconnects with exponential backoff. A plain socket has
//! no acknowledgements: lines read but not yet in a logged block when the
//! process dies are lost (see the README).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use weir_abi::RecordBatch;

use super::rate::{PidConfig, PidRateEstimator, SharedRate, TokenBucket};
use super::{BatchDone, Now, Source, MAX_BLOCK_BYTES, MAX_BLOCK_RECORDS};
use super::{SourceInput, SourcePosition};
use crate::checkpoint::{BlockLog, Recovery, ReplayError};
use crate::error::EngineError;

/// Socket settings.
#[derive(Clone)]
pub struct SocketConfig {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// How often a partial block is sealed.
    pub block_interval: Duration,
    /// Blocks that may wait in the channel before the reader stops reading.
    pub max_pending_blocks: usize,
    /// First reconnect delay (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// The batch clock: stamps each block when it is sealed.
    pub clock: Now,
    /// The job's batch interval, ms.
    pub batch_interval_ms: i64,
    /// Backpressure: read no faster than the PID estimator allows.
    pub backpressure: Option<PidConfig>,
}

/// What the batch-clock side tells the receiver task.
struct Pace {
    /// Records/s the task may read (backpressure).
    rate: Arc<SharedRate>,
    /// Time of the last batch cut.
    cut_ms: AtomicI64,
    /// Told at every cut.
    cut: Notify,
    /// With backpressure: the task reads only while the batch clock is
    /// less than this far behind.
    lead_ms: Option<i64>,
}

impl Pace {
    /// Whether the task must wait for a cut before it reads on.
    fn ahead(&self, now_ms: impl FnOnce() -> i64) -> bool {
        self.lead_ms
            .is_some_and(|lead| now_ms() > self.cut_ms.load(Ordering::Relaxed) + lead)
    }
}

/// A sealed block on its way to the batch clock.
#[derive(Debug)]
struct Sealed {
    /// Its id in the block log (0 without one).
    id: u64,
    /// Batch-clock time when it was sealed: the first batch at or after it
    /// takes it.
    sealed_ms: i64,
    records: RecordBatch,
}

/// The batch-clock side: takes the blocks sealed by the batch's time.
pub struct SocketSource {
    rx: mpsc::Receiver<Sealed>,
    /// The receiver task, on the host's shared runtime: ended with the
    /// source.
    task: tokio::task::AbortHandle,
    /// Highest logged block id already in a batch.
    consumed: u64,
    /// Logged blocks recovered after a restart, not yet in a batch:
    /// delivered first, oldest first.
    recovered: VecDeque<(u64, RecordBatch)>,
    /// A block taken from the channel that belongs to a later batch.
    held: Option<Sealed>,
    /// The rate the receiver task reads at (set from `estimator`) and the
    /// last cut.
    pace: Arc<Pace>,
    estimator: Option<PidRateEstimator>,
    batch_interval_ms: i64,
}

impl SocketSource {
    /// Spawns the receiver task on `rt` and returns the source.
    /// With a block log, every block is logged durably before it is handed
    /// to the batch clock (the write-ahead log).
    pub fn start(
        name: Arc<str>,
        config: SocketConfig,
        rt: &tokio::runtime::Handle,
        log: Option<(Arc<BlockLog>, u32)>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.max_pending_blocks.max(1));
        let estimator = config
            .backpressure
            .map(|c| PidRateEstimator::new(c, config.batch_interval_ms));
        let pace = Arc::new(Pace {
            rate: Arc::new(SharedRate::unlimited()),
            cut_ms: AtomicI64::new((config.clock)()),
            cut: Notify::new(),
            lead_ms: estimator.as_ref().map(|_| 2 * config.batch_interval_ms),
        });
        pace.rate.set(estimator.as_ref().and_then(|e| e.limit()));
        let batch_interval_ms = config.batch_interval_ms;
        let receiver = Receiver {
            name,
            config,
            tx,
            log,
            pace: pace.clone(),
        };
        let task = rt.spawn(receiver.run()).abort_handle();
        SocketSource {
            rx,
            task,
            consumed: 0,
            recovered: VecDeque::new(),
            held: None,
            pace,
            estimator,
            batch_interval_ms,
        }
    }

    /// A source that only replays logged blocks and never connects (what
    /// `weir replay` runs): its receiver task ends at once.
    pub fn logged_only(rt: &tokio::runtime::Handle) -> Self {
        let (_, rx) = mpsc::channel(1);
        SocketSource {
            rx,
            task: rt.spawn(async {}).abort_handle(),
            consumed: 0,
            recovered: VecDeque::new(),
            held: None,
            pace: Arc::new(Pace {
                rate: Arc::new(SharedRate::unlimited()),
                cut_ms: AtomicI64::new(0),
                cut: Notify::new(),
                lead_ms: None,
            }),
            estimator: None,
            batch_interval_ms: 1000,
        }
    }

    /// Records one batch may take at the current rate (none: no limit).
    fn batch_cap(&self) -> Option<u64> {
        let rate = self.pace.rate.get()?;
        Some(((rate * self.batch_interval_ms as f64 / 1000.0) as u64).max(1))
    }

    /// Recovered blocks for this batch, oldest first: as many as the rate
    /// allows (at least one). True if some are left for later batches.
    fn take_recovered(&mut self, ids: &mut Vec<u64>, blocks: &mut Vec<RecordBatch>) -> bool {
        let cap = self.batch_cap();
        let mut records = 0u64;
        while let Some((_, block)) = self.recovered.front() {
            let n = block.len() as u64;
            if !blocks.is_empty() && cap.is_some_and(|c| records + n > c) {
                break;
            }
            records += n;
            let (id, block) = self.recovered.pop_front().expect("front exists");
            ids.push(id);
            blocks.push(block);
        }
        !self.recovered.is_empty()
    }

    /// Live blocks sealed by `t`, in order; the first later one is held.
    fn take_sealed_by(&mut self, t: i64, ids: &mut Vec<u64>, blocks: &mut Vec<RecordBatch>) {
        loop {
            let next = match self.held.take() {
                Some(b) => b,
                None => match self.rx.try_recv() {
                    Ok(b) => b,
                    Err(_) => return,
                },
            };
            if next.sealed_ms > t {
                self.held = Some(next);
                return;
            }
            ids.push(next.id);
            blocks.push(next.records);
        }
    }
}

impl Drop for SocketSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Source for SocketSource {
    fn next_batch(
        &mut self,
        batch_time_ms: i64,
    ) -> Result<(SourceInput, Vec<RecordBatch>), EngineError> {
        let mut ids = Vec::new();
        let mut blocks = Vec::new();
        // Blocks recovered after a restart come first; live blocks wait
        // behind them, so the blocks in batches stay a prefix of the log.
        if !self.take_recovered(&mut ids, &mut blocks) {
            self.take_sealed_by(batch_time_ms, &mut ids, &mut blocks);
        }
        self.pace.cut_ms.store(batch_time_ms, Ordering::Relaxed);
        self.pace.cut.notify_one();
        if let Some(&max) = ids.iter().max() {
            self.consumed = self.consumed.max(max);
        }
        Ok((SourceInput::Blocks(ids), blocks))
    }

    fn replay(
        &mut self,
        input: &SourceInput,
        recovery: &Recovery,
    ) -> Result<Vec<RecordBatch>, ReplayError> {
        let SourceInput::Blocks(ids) = input else {
            return Err(ReplayError::WrongInput {
                source_kind: "socket",
                input: format!("{input:?}"),
            });
        };
        let mut blocks = Vec::with_capacity(ids.len());
        for id in ids {
            let entry = recovery
                .blocks
                .get(id)
                .ok_or(ReplayError::BlockMissing { id: *id })?;
            blocks.push(entry.records.clone());
            self.consumed = self.consumed.max(*id);
        }
        Ok(blocks)
    }

    fn queued_blocks(&self) -> Option<u64> {
        let held = usize::from(self.held.is_some());
        Some((self.rx.len() + self.recovered.len() + held) as u64)
    }

    fn completed(&mut self, done: &BatchDone) {
        let Some(e) = &mut self.estimator else {
            return;
        };
        if done.replayed {
            return;
        }
        e.update(
            done.finished_ms,
            done.records,
            done.processing_ms,
            done.scheduling_delay_ms,
        );
        let rate = e.limit();
        if rate != self.pace.rate.get() {
            tracing::debug!(rate, "socket receiver rate");
            self.pace.rate.set(rate);
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Socket(self.consumed)
    }

    fn restore(&mut self, position: &SourcePosition, recovery: &Recovery, index: u32) {
        if let SourcePosition::Socket(consumed) = position {
            self.consumed = self.consumed.max(*consumed);
        }
        self.recovered = recovery.unassigned_blocks(index, self.consumed).into();
        if !self.recovered.is_empty() {
            tracing::info!(
                blocks = self.recovered.len(),
                "logged blocks not yet in a batch go into the next batch(es), before new ones"
            );
        }
    }
}

/// The receiver task: connects, reads, seals, sends.
struct Receiver {
    name: Arc<str>,
    config: SocketConfig,
    tx: mpsc::Sender<Sealed>,
    log: Option<(Arc<BlockLog>, u32)>,
    pace: Arc<Pace>,
}

enum ReadEnd {
    Io(std::io::Error),
    Stopped,
}

impl Receiver {
    /// Connects and reads until the source is dropped, reconnecting with
    /// backoff.
    async fn run(self) {
        let name = &self.name;
        let addr = format!("{}:{}", self.config.host, self.config.port);
        let mut backoff = self.config.min_backoff;
        let mut bucket = TokenBucket::new(self.pace.rate.clone());
        loop {
            match TcpStream::connect(&addr).await {
                Ok(stream) => {
                    tracing::info!(source = %name, %addr, "connected");
                    backoff = self.config.min_backoff;
                    match self.read_lines(stream, &mut bucket).await {
                        Ok(()) => {
                            tracing::warn!(source = %name, %addr, "server closed the connection; reconnecting")
                        }
                        Err(ReadEnd::Io(e)) => {
                            tracing::warn!(source = %name, %addr, error = %e, "connection lost; reconnecting")
                        }
                        Err(ReadEnd::Stopped) => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %name, %addr, error = %e, retry_in = ?backoff, "cannot connect; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.tx.closed() => return,
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// Reads lines into blocks until the connection ends. While the token
    /// bucket is empty it does not read (TCP pushes back), but still seals
    /// blocks on time.
    async fn read_lines(&self, stream: TcpStream, bucket: &mut TokenBucket) -> Result<(), ReadEnd> {
        let mut reader = BufReader::with_capacity(64 << 10, stream);
        let mut block = RecordBatch::new();
        let mut line = Vec::new();
        let mut tick = tokio::time::interval(self.config.block_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.pace.ahead(&*self.config.clock) {
                tokio::select! {
                    _ = self.pace.cut.notified() => {}
                    _ = tick.tick() => self.seal(&mut block).await?,
                }
                continue;
            }
            if let Some(wait) = bucket.pause() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tick.tick() => self.seal(&mut block).await?,
                }
                continue;
            }
            tokio::select! {
                read = reader.read_until(b'\n', &mut line) => {
                    if read.map_err(ReadEnd::Io)? == 0 {
                        // EOF: a final line without newline still counts.
                        if !line.is_empty() {
                            block.push(b"", &line);
                        }
                        self.seal(&mut block).await?;
                        return Ok(());
                    }
                    push_line(&mut block, &line);
                    line.clear();
                    bucket.take();
                    buffered_lines(&mut reader, &mut block, bucket);
                    if full(&block) {
                        self.seal(&mut block).await?;
                    }
                }
                _ = tick.tick() => self.seal(&mut block).await?,
            }
        }
    }

    /// Waits for room in the channel (backpressure), logs the block (with a
    /// write-ahead log), stamps it with the batch clock and sends it; fails
    /// only if the job stopped or the log cannot be written. The stamp is
    /// taken once the block can be queued at once, so a batch cut after
    /// the stamp finds the block.
    async fn seal(&self, block: &mut RecordBatch) -> Result<(), ReadEnd> {
        if block.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(block);
        let permit = self.tx.reserve().await.map_err(|_| ReadEnd::Stopped)?;
        let id = match &self.log {
            Some((log, source)) => {
                match tokio::task::block_in_place(|| log.append(*source, &records)) {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the write-ahead log; the receiver stops");
                        return Err(ReadEnd::Stopped);
                    }
                }
            }
            None => 0,
        };
        permit.send(Sealed {
            id,
            sealed_ms: (self.config.clock)(),
            records,
        });
        Ok(())
    }
}

/// A line without its `\n` or `\r\n`, as a record.
fn push_line(block: &mut RecordBatch, line: &[u8]) {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    block.push(b"", text);
}

/// Whether a block is as large as blocks get.
fn full(block: &RecordBatch) -> bool {
    block.len() >= MAX_BLOCK_RECORDS || block.byte_len() >= MAX_BLOCK_BYTES
}

/// Takes the whole lines already in the reader's buffer, without waiting,
/// while the bucket has tokens and the block has room.
fn buffered_lines(
    reader: &mut BufReader<TcpStream>,
    block: &mut RecordBatch,
    bucket: &mut TokenBucket,
) {
    while !full(block) && bucket.ready() {
        let buf = reader.buffer();
        let Some(end) = buf.iter().position(|&b| b == b'\n') else {
            return;
        };
        push_line(block, &buf[..end]);
        Pin::new(&mut *reader).consume(end + 1);
        bucket.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(records: usize) -> RecordBatch {
        (0..records).map(|_| (&b""[..], &b"line"[..])).collect()
    }

    /// A source fed by the test instead of a receiver task.
    fn source(rate: Option<f64>) -> (SocketSource, mpsc::Sender<Sealed>, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel(16);
        let mut s = SocketSource::logged_only(rt.handle());
        s.rx = rx;
        s.pace.rate.set(rate);
        (s, tx, rt)
    }

    fn ids(s: &mut SocketSource, t: i64) -> Vec<u64> {
        match s.next_batch(t).unwrap().0 {
            SourceInput::Blocks(ids) => ids,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_block_goes_to_the_first_batch_at_or_after_its_seal_time() {
        let (mut s, tx, _rt) = source(None);
        for (id, sealed_ms) in [(1, 900), (2, 1000), (3, 1100), (4, 2500)] {
            let records = block(1);
            tx.try_send(Sealed {
                id,
                sealed_ms,
                records,
            })
            .unwrap();
        }
        // A late batch 1000 cut after all four arrived takes only its own.
        assert_eq!(ids(&mut s, 1000), [1, 2]);
        assert_eq!(s.queued_blocks(), Some(2));
        assert_eq!(ids(&mut s, 1500), [3]);
        assert_eq!(ids(&mut s, 2000), Vec::<u64>::new());
        assert_eq!(ids(&mut s, 2500), [4]);
        assert_eq!(s.position(), SourcePosition::Socket(4));
        assert_eq!(s.queued_blocks(), Some(0));
    }

    #[test]
    fn recovered_blocks_come_first_as_the_rate_allows_and_live_ones_wait() {
        // 200 records/s at 1 s batches: 200 records a batch.
        let (mut s, tx, _rt) = source(Some(200.0));
        s.batch_interval_ms = 1000;
        s.recovered = (1..=3).map(|id| (id, block(100))).collect();
        tx.try_send(Sealed {
            id: 4,
            sealed_ms: 500,
            records: block(100),
        })
        .unwrap();
        assert_eq!(ids(&mut s, 1000), [1, 2]);
        assert_eq!(ids(&mut s, 2000), [3, 4]);
        // Without a rate, all recovered blocks go into one batch.
        let (mut s, _tx, _rt) = source(None);
        s.recovered = (1..=3).map(|id| (id, block(100_000))).collect();
        assert_eq!(ids(&mut s, 1000), [1, 2, 3]);
    }
}
