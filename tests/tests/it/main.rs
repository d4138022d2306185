//! weir's integration tests: one binary, one module per area.

mod abi_edges;
mod conformance;
mod engine;
mod events;
mod hotswap;
mod metrics;
mod operators;
mod runtime;
mod spark_ops;
mod state;
mod wasi;
mod windows;
