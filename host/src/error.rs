//! Errors of the streaming layer.

use std::path::PathBuf;
use std::sync::Arc;

use crate::wasm::{CallError, LoadError};

/// A batch could not be computed or written.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A plugin call failed.
    #[error(transparent)]
    Plugin(#[from] CallError),
    /// A plugin broke an operator's contract (e.g. `map` returning more
    /// records than it was given).
    #[error("job `{job}`, operator `{operator}` ({op}), batch {batch_time_ms} ms: {message}")]
    Contract {
        job: Arc<str>,
        operator: Arc<str>,
        op: &'static str,
        batch_time_ms: i64,
        message: String,
    },
    /// An output could not be written.
    #[error("output `{output}`: cannot write {}: {source}", path.display())]
    Output {
        output: Arc<str>,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Checkpointing or recovery failed.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The job's state grew past its limit.
    #[error("job `{job}`, batch {batch_time_ms} ms: state is {bytes} bytes, over the limit of {limit} bytes (max_state)")]
    StateLimit {
        job: Arc<str>,
        batch_time_ms: i64,
        bytes: u64,
        limit: u64,
    },
    /// A receiver failed for good.
    #[error("source `{source_name}`: {message}")]
    Source {
        source_name: Arc<str>,
        message: String,
    },
}

/// A job could not be built from the API calls or pipeline file.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A plugin module failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A referenced function does not exist with the needed kind.
    #[error("{op} on stream `{input}`: {message}")]
    Function {
        /// The stream the operator would read.
        input: Arc<str>,
        op: &'static str,
        message: String,
    },
    /// Anything else about the job's shape.
    #[error("{0}")]
    Invalid(String),
    /// The checkpoint directory cannot be used (or belongs to another pipeline).
    #[error(transparent)]
    Checkpoint(crate::checkpoint::CheckpointError),
    /// The worker pool or wasm runtime could not start.
    #[error("cannot start: {0}")]
    Start(String),
}
