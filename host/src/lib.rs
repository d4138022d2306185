//! weir: a micro-batch stream processor whose user functions are WebAssembly.
//!
//! **Plugins.** User code is a core wasm module following the ABI in
//! `docs/abi.md` (`weir-sdk` writes it for Rust authors). The [`wasm`] module
//! loads modules into a process-wide [`wasm::Runtime`] and calls them: one
//! crossing per operator, partition and batch, each on a fresh instance, so a
//! batch is a pure function of its input, state, batch time and partition.
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
pub mod error;
pub(crate) mod graph;
pub mod job;
pub mod ops;
pub mod output;
pub mod partition;
pub mod receiver;
pub mod serve;
pub mod wasm;

/// The library API under its earlier name.
pub use job as stream;

pub use error::{BuildError, EngineError};
pub use job::{
    ClockMode, JobFailed, RunSummary, SourceSpec, Stream, StreamingConfig, StreamingContext,
};
