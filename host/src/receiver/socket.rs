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
#[derive(Debug)]
pub struct SocketSource {
    rx: mpsc::Receiver<RecordBatch>,
}

impl SocketSource {
    /// Spawns the receiver task on `rt` and returns the source.
    pub fn start(name: Arc<str>, config: SocketConfig, rt: &tokio::runtime::Handle) -> Self {
        let (tx, rx) = mpsc::channel(config.max_pending_blocks.max(1));
        rt.spawn(receive(name, config, tx));
        SocketSource { rx }
    }
}

impl Source for SocketSource {
    fn next_batch(&mut self, _batch_time_ms: i64) -> Result<Vec<RecordBatch>, EngineError> {
        let mut blocks = Vec::new();
        while let Ok(block) = self.rx.try_recv() {
            blocks.push(block);
        }
        Ok(blocks)
    }
}

async fn receive(name: Arc<str>, config: SocketConfig, tx: mpsc::Sender<RecordBatch>) {
    let addr = format!("{}:{}", config.host, config.port);
    let mut backoff = config.min_backoff;
    loop {
        match TcpStream::connect(&addr).await {
            Ok(stream) => {
                tracing::info!(source = %name, %addr, "connected");
                backoff = config.min_backoff;
                match read_lines(stream, &config, &tx).await {
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

async fn read_lines(
    stream: TcpStream,
    config: &SocketConfig,
    tx: &mpsc::Sender<RecordBatch>,
) -> Result<(), ReadEnd> {
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

/// Sends the block if it has records; waits while the channel is full
/// (backpressure), fails only if the job stopped.
async fn seal(block: &mut RecordBatch, tx: &mpsc::Sender<RecordBatch>) -> Result<(), ReadEnd> {
    if block.is_empty() {
        return Ok(());
    }
    tx.send(std::mem::take(block))
        .await
        .map_err(|_| ReadEnd::Stopped)
}
