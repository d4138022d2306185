//! A running job: the library API ([`StreamingContext`], [`Stream`],
//! [`JobControl`]) that builds the graph, and the batch clock and
//! scheduler that drive the executor batch after batch.

pub(crate) mod context;
pub mod events;
pub mod replay;
pub(crate) mod scale_out;
pub(crate) mod scheduler;

pub use crate::graph::executor::{SwapError, SwapReport};
pub use crate::ops::join::JoinKind;
pub use crate::ops::slice::Slicer;
pub use crate::ops::ValueKind;
pub use crate::receiver::files::FileLimits;
pub use context::{
    ClockMode, JobControl, RunError, RunningJob, SourceSpec, StateOptions, Stream, StreamingConfig,
    StreamingContext, SwapReply,
};
pub use scale_out::{default_instance, ScaleOutConfig};
pub use scheduler::{JobFailed, JobState, JobStatus, RunSummary, StopSignal};
