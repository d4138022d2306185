//! The wasm layer: a process-wide [`Runtime`] (engine, linker, module
//! cache), loaded [`Plugin`]s (validated modules), and calls — each on a
//! fresh instance with fuel, memory and output limits, every guest pointer
//! checked before use, every failure a structured [`CallError`].

mod engine;
mod error;
mod imports;
mod plugin;
mod runtime;
mod store;
mod wasi;

pub use engine::{Limits, RuntimeConfig};
pub use error::{CallError, CallErrorKind, CallSite, LoadError, Problem};
pub use plugin::{take_output, CallMeter, CallStats, FunctionInfo, Invocation, Plugin};
pub use runtime::Runtime;
