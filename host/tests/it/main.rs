//! Integration tests of the `weir` binary: one test binary, one module per
//! area. They run the real binary (`CARGO_BIN_EXE_weir`), so they live in
//! the crate that owns it.

mod analytics;
mod checkpoint_compat;
mod cli;
mod examples;
mod javascript;
mod kafka;
mod languages;
mod nexmark;
mod overload;
mod plugin_inspect;
mod plugin_workflow;
mod recovery;
mod replay;
mod scale_out;
mod serve;
mod serve_durable;
mod serve_quota;
mod support;
mod ui;
