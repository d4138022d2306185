//! TCP text lines, like Spark's `socketTextStream`.
//!
//! A task on the tokio runtime connects to `host:port`, reads lines and
//! sends them as blocks (every block interval, or when a block is full)
//! through a bounded channel. When the connection fails or the server goes
//! away, it says so in the log and reconnects with exponential backoff.
//! A plain socket has no acknowledgements: lines read but not yet in a
//! block when the process dies are lost (see the README).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use weir_abi::RecordBatch;

use super::{Source, MAX_BLOCK_RECORDS};
use super::{SourceInput, SourcePosition};
use crate::checkpoint::{BlockLog, Recovery, ReplayError};
use crate::error::EngineError;

/// Socket settings.
#[derive(Debug, Clone)]
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
}

/// The batch-clock side: drains the blocks that arrived before the cut.
pub struct SocketSource {
    rx: mpsc::Receiver<(u64, RecordBatch)>,
    /// The receiver task, on the host's shared runtime: ended with the
    /// source.
    task: tokio::task::AbortHandle,
    /// Highest logged block id already in a batch.
    consumed: u64,
    /// Logged blocks recovered after a restart, delivered first.
    pending: Vec<(u64, RecordBatch)>,
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
        let task = rt.spawn(receive(name, config, tx, log)).abort_handle();
        SocketSource {
            rx,
            task,
            consumed: 0,
            pending: Vec::new(),
        }
    }
}

impl SocketSource {
    /// A source that only replays logged blocks and never connects (what
    /// `weir replay` runs): its receiver task ends at once.
    pub fn logged_only(rt: &tokio::runtime::Handle) -> Self {
        let (_, rx) = mpsc::channel(1);
        SocketSource {
            rx,
            task: rt.spawn(async {}).abort_handle(),
            consumed: 0,
            pending: Vec::new(),
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
        _batch_time_ms: i64,
    ) -> Result<(SourceInput, Vec<RecordBatch>), EngineError> {
        let mut ids = Vec::new();
        let mut blocks = Vec::new();
        for (id, block) in std::mem::take(&mut self.pending) {
            ids.push(id);
            blocks.push(block);
        }
        while let Ok((id, block)) = self.rx.try_recv() {
            ids.push(id);
            blocks.push(block);
        }
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
        Some((self.rx.len() + self.pending.len()) as u64)
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Socket(self.consumed)
    }

    fn restore(&mut self, position: &SourcePosition, recovery: &Recovery, index: u32) {
        if let SourcePosition::Socket(consumed) = position {
            self.consumed = self.consumed.max(*consumed);
        }
        self.pending = recovery.unassigned_blocks(index, self.consumed);
        if !self.pending.is_empty() {
            tracing::info!(
                blocks = self.pending.len(),
                "logged blocks not yet in a batch go into the next batch"
            );
        }
    }
}

type Sink = (
    mpsc::Sender<(u64, RecordBatch)>,
    Option<(Arc<BlockLog>, u32)>,
);

async fn receive(
    name: Arc<str>,
    config: SocketConfig,
    tx: mpsc::Sender<(u64, RecordBatch)>,
    log: Option<(Arc<BlockLog>, u32)>,
) {
    let sink: Sink = (tx, log);
    let tx = &sink.0;
    let addr = format!("{}:{}", config.host, config.port);
    let mut backoff = config.min_backoff;
    loop {
        match TcpStream::connect(&addr).await {
            Ok(stream) => {
                tracing::info!(source = %name, %addr, "connected");
                backoff = config.min_backoff;
                match read_lines(stream, &config, &sink).await {
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
                    _ = tx.closed() => return,
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}

enum ReadEnd {
    Io(std::io::Error),
    Stopped,
}

async fn read_lines(stream: TcpStream, config: &SocketConfig, tx: &Sink) -> Result<(), ReadEnd> {
    let mut reader = BufReader::new(stream);
    let mut block = RecordBatch::new();
    let mut line = Vec::new();
    let mut tick = tokio::time::interval(config.block_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            read = reader.read_until(b'\n', &mut line) => {
                let n = read.map_err(ReadEnd::Io)?;
                if n == 0 {
                    // EOF: a final line without newline still counts.
                    if !line.is_empty() {
                        block.push(b"", &line);
                    }
                    seal(&mut block, tx).await?;
                    return Ok(());
                }
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                block.push(b"", text);
                line.clear();
                if block.len() >= MAX_BLOCK_RECORDS {
                    seal(&mut block, tx).await?;
                }
            }
            _ = tick.tick() => seal(&mut block, tx).await?,
        }
    }
}

/// Logs the block (with a write-ahead log) and sends it if it has records;
/// waits while the channel is full (backpressure), fails only if the job
/// stopped or the log cannot be written.
async fn seal(block: &mut RecordBatch, (tx, log): &Sink) -> Result<(), ReadEnd> {
    if block.is_empty() {
        return Ok(());
    }
    let block = std::mem::take(block);
    let id = match log {
        Some((log, source)) => match tokio::task::block_in_place(|| log.append(*source, &block)) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "cannot write the write-ahead log; the receiver stops");
                return Err(ReadEnd::Stopped);
            }
        },
        None => 0,
    };
    tx.send((id, block)).await.map_err(|_| ReadEnd::Stopped)
}
