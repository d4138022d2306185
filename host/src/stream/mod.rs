//! The streaming layer: the library API ([`StreamingContext`], [`Stream`]),
//! the dataflow graph it builds, and the executor that runs one batch.

pub mod context;
pub mod executor;
pub mod graph;

pub use context::{
    ClockMode, RunError, RunningJob, SourceSpec, StateOptions, Stream, StreamingConfig,
    StreamingContext,
};
pub use graph::{JoinKind, ValueKind};
