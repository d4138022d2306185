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
    /// A source could not read its input.
    #[error("source `{source_name}`: cannot {action} {}: {source}", path.display())]
    Source {
        source_name: Arc<str>,
        /// `list`, `read`.
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A Kafka source or output cannot go on.
    #[error("{what}: {message}")]
    Kafka {
        /// `kafka source `name`` or `kafka output `name``.
        what: String,
        message: String,
    },
    /// A bug in weir: one of its threads panicked.
    #[error("internal error in the {thread}: {message}")]
    Internal {
        thread: &'static str,
        /// The panic's message.
        message: String,
    },
}

impl EngineError {
    /// A stable, machine-readable name of the failure (the `kind` of a
    /// failed job in the serve API).
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Plugin(c) => c.kind.code(),
            EngineError::Contract { .. } => "contract",
            EngineError::Output { .. } => "output",
            EngineError::Checkpoint(_) => "checkpoint",
            EngineError::StateLimit { .. } => "state_limit",
            EngineError::Source { .. } => "source",
            EngineError::Kafka { .. } => "kafka",
            EngineError::Internal { .. } => "internal",
        }
    }
}

impl BuildError {
    /// A stable, machine-readable name of the problem (the serve API's
    /// error code): a module that is not a usable plugin, the host failing
    /// to start the job, or anything else wrong with the pipeline.
    pub fn code(&self) -> &'static str {
        match self {
            BuildError::Load(_) => "invalid_module",
            BuildError::Start { .. } | BuildError::Host(_) => "internal",
            _ => "invalid_pipeline",
        }
    }
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
    /// An operator was given the wrong number of inputs.
    #[error("`{op}` reads {want} input streams, {given} given")]
    Arity {
        op: &'static str,
        want: &'static str,
        given: usize,
    },
    /// A parameter the operator does not take.
    #[error("`{op}` takes no `{key}`{}", if takers.is_empty() { String::new() } else { format!(" (operators that take it: {})", takers.join(", ")) })]
    UnknownParam {
        op: &'static str,
        key: &'static str,
        takers: Vec<&'static str>,
    },
    /// A required parameter is missing.
    #[error("`{op}` needs `{key}`")]
    MissingParam { op: &'static str, key: &'static str },
    /// A partition count of zero.
    #[error("{op}: a shuffle needs at least one partition")]
    ZeroPartitions { op: &'static str },
    /// A duration of zero.
    #[error("{op}: `{key}` must be above zero")]
    ZeroDuration { op: &'static str, key: &'static str },
    /// A duration finer than batch times (milliseconds).
    #[error("{op}: `{key}` must be a whole number of milliseconds")]
    SubMillisecond { op: &'static str, key: &'static str },
    /// A window that does not fit its input's batches.
    #[error(
        "{op} on `{input}`: window length {length_ms} ms and slide {slide_ms} ms must both be positive multiples of \
         the stream's batch interval, {base_ms} ms"
    )]
    WindowNotMultiple {
        op: &'static str,
        input: Arc<str>,
        length_ms: i64,
        slide_ms: i64,
        base_ms: i64,
    },
    /// Inputs that do not have batches at the same times.
    #[error("{op} combines `{a}` (a batch every {a_ms} ms) with `{b}` (every {b_ms} ms); inputs must slide together")]
    SlidesDiffer {
        op: &'static str,
        a: Arc<str>,
        a_ms: i64,
        b: Arc<str>,
        b_ms: i64,
    },
    /// An operator that needs a certain kind of input stream.
    #[error("{op}: `{input}` {requirement}")]
    WrongInput {
        op: &'static str,
        input: Arc<str>,
        requirement: &'static str,
    },
    /// An operator that exists in the library API only.
    #[error("`{op}` is available in the library API only")]
    LibraryOnly { op: &'static str },
    /// Two streams with one name.
    #[error("two streams are named `{name}`; stream names must be unique")]
    DuplicateName { name: Arc<str> },
    /// A stream or output defined after the job started.
    #[error("the context has already started: define every stream and output before start")]
    AlreadyStarted,
    /// A job without outputs.
    #[error("the job has no output: add print, save_as_text_files or foreach_batch to a stream")]
    NoOutput,
    /// Streams of two contexts combined.
    #[error("cannot combine streams of different contexts")]
    DifferentContexts,
    /// A job configuration value out of range.
    #[error("`{key}` must be above zero")]
    ZeroSetting { key: &'static str },
    /// The checkpoint directory cannot be used (or belongs to another pipeline).
    /// A scaled-out job that cannot work as asked.
    #[error("scaled out: {0}")]
    ScaleOut(String),
    #[error(transparent)]
    Checkpoint(crate::checkpoint::CheckpointError),
    /// A source could not start.
    #[error(transparent)]
    Receiver(EngineError),
    /// The host could not be created.
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// A resource the job needs could not be set up.
    #[error("cannot start: {what}: {source}")]
    Start {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
