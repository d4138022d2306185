//! weir: a micro-batch stream processor in the spirit of Spark Streaming,
//! whose user functions are WebAssembly modules.
//!
//! **Streams and batches.** A job is a graph of streams built on a
//! [`StreamingContext`]: sources (Kafka topics, sockets, directories of
//! files, a generator, prepared queues) and [`Stream`]s derived from them by
//! operators named as in Spark (`flat_map`, `reduce_by_key`, `window`,
//! `update_state_by_key`, ...). Every batch interval the batch clock cuts
//! one batch from every source, logs what it is made of, and runs the whole
//! graph over it once, each operator's partitions in parallel. A batch is a
//! pure function of its logged input, the state before it, its batch time
//! and its partition, which is what makes replay exact.
//!
//! **Operators.** Each operator lives in one file of [`ops`] and describes
//! itself once in an [`ops::OpDesc`]: its pipeline and Spark names, its
//! inputs, its typed parameters, whether it shuffles, windows or keeps
//! state. The library API, the pipeline file, validation, checkpoints and
//! the README's operator table ([`ops::operator_table`]) all read those
//! descriptions.
//!
//! **Plugins.** User code is a core wasm module following the ABI in
//! `docs/abi.md` (`weir-sdk` writes it for Rust authors). The [`wasm`]
//! module loads modules into a process-wide [`wasm::Runtime`] and calls
//! them: one crossing per operator, partition and batch, each on a fresh
//! instance with fuel, memory and output limits.
//!
//! **State and checkpoints.** Keyed state and window contents belong to
//! their operators and live in the host. A batch stages its state changes,
//! which are committed only after its outputs are written, so a failed
//! batch is retried from the state before it. With a checkpoint directory,
//! every batch's contents are logged before it runs and operator state is
//! checkpointed as versioned snapshots ([`checkpoint`]); a restarted job
//! replays the logged batches and produces the same bytes.
//!
//! **Running jobs.** [`StreamingContext::start`] returns a running job whose
//! [`job::JobControl`] reports status, stops it, and swaps a plugin's module
//! between two batches with its state migrated.
//! [`StreamingContext::replay`] tries such a swap first against a
//! checkpoint's recorded input ([`job::replay`], `weir replay`): the logged
//! batches run with the recorded modules and with the candidate, and every
//! stream's batches are compared. A pipeline file
//! ([`config::Pipeline`]) builds the same jobs without Rust code;
//! [`serve`] runs many tenants' jobs in one host behind an HTTP API.
//! [`observe`] lets people and programs watch a job: a web UI with Spark
//! Streaming's plots, a JSON API and a server-sent event stream
//! (`weir run --http`, and every job of `weir serve`).
//!
//! Modules, lowest layer first (each imports only those above it):
//!
//! | module | what |
//! |---|---|
//! | [`partition`] | the fixed, seeded partitioning hash |
//! | [`worker_pool`] | the elastic pool partition work runs on |
//! | [`wasm`] | engine, plugins, calls and their limits |
//! | [`conformance`] | the plugin conformance suite (`weir plugin test`) |
//! | [`host`] | the process-wide host: wasm runtime, receiver runtime, pool |
//! | [`checkpoint`] | checkpoint directories, logs, snapshots |
//! | [`durable`] | synced, atomic writes; their temporary names and removing leftovers |
//! | [`error`] | the engine's and the builder's errors |
//! | [`kafka`] | Kafka client settings shared by sources and outputs |
//! | [`ops`] | operators, one file each, and their registry |
//! | `graph` | the dataflow graph and the executor of one batch |
//! | [`receiver`], [`output`] | sources and outputs |
//! | [`job`] | the library API, batch clock and scheduler |
//! | [`observe`] | watching a job: its store of recent batches, JSON API, event stream, web UI |
//! | [`config`] | the pipeline file |
//! | [`observe`] | Prometheus metrics fed by the listener events |
//! | [`serve`], [`cli`] | `weir serve` and the command line |
//!
//! A runnable job with no plugin at all: the number of records per batch of
//! a prepared queue, on the simulated clock.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use weir::{ClockMode, StreamingConfig, StreamingContext};
//!
//! let config = StreamingConfig {
//!     clock: ClockMode::Simulated { start_ms: 0 },
//!     ..StreamingConfig::default()
//! };
//! let ctx = StreamingContext::new(config)?;
//! let lines = ctx.queue_stream(vec![vec![("", "to be"), ("", "or not")], vec![("", "to be")]])?;
//! let counts = Arc::new(Mutex::new(Vec::new()));
//! let seen = counts.clone();
//! lines.count()?.foreach_batch(move |t, parts| {
//!     for (_, v) in parts.iter().flat_map(|p| p.iter()) {
//!         seen.lock().unwrap().push((t, i64::from_le_bytes(v.try_into().unwrap())));
//!     }
//!     Ok(())
//! })?;
//! ctx.run(Some(2))?;
//! assert_eq!(*counts.lock().unwrap(), vec![(1000, 2), (2000, 1)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Loading a plugin and calling one of its functions directly:
//!
//! ```no_run
//! use weir::wasm::{Invocation, Runtime, RuntimeConfig};
//! use weir_abi::RecordBatch;
//!
//! let runtime = Runtime::new(&RuntimeConfig::default())?;
//! let plugin = runtime.load_file("target/plugins/wordcount.wasm")?;
//! let lines: RecordBatch = [(&b""[..], &b"to be or not to be"[..])].into_iter().collect();
//! let words = plugin.map("split", &Invocation::default(), &lines)?;
//! assert_eq!(words.len(), 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod durable;
pub mod error;
pub(crate) mod graph;
pub mod host;
pub mod job;
pub mod kafka;
pub mod memory;
pub mod observe;
pub mod ops;
pub mod output;
pub mod partition;
pub mod receiver;
pub mod serve;
pub mod wasm;
pub mod worker_pool;

/// The library API under its earlier name.
pub use job as stream;

pub use error::{BuildError, EngineError};
pub use job::{
    ClockMode, JobFailed, RunSummary, SourceSpec, Stream, StreamingConfig, StreamingContext,
};
