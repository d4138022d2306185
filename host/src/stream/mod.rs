//! The streaming layer: the library API ([`StreamingContext`], [`Stream`],
//! [`JobControl`]), the dataflow graph it builds, and the executor that
//! runs one batch.

pub mod context;
pub mod executor;
pub mod graph;

pub use crate::scheduler::{JobState, JobStatus};
pub use context::{
    ClockMode, JobControl, RunError, RunningJob, SourceSpec, StateOptions, Stream, StreamingConfig,
    StreamingContext, SwapReply,
};
pub use executor::{SwapError, SwapReport};
pub use graph::{JoinKind, ValueKind};
