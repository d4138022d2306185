//! Fuzz targets for everything weir reads from outside the process.
//!
//! **Targets.** Each target is a function of arbitrary bytes that must
//! return without a panic, a hang or an allocation out of proportion to
//! its input, whatever the bytes:
//!
//! | target | what it reads |
//! |---|---|
//! | [`pipeline`] | a pipeline file: parse, shape checks, path confinement, and building the job's graph without running it |
//! | [`abi_output`] | what a guest returns: the result area and output framing the host checks after a call, and every `weir-abi` reader |
//! | [`checkpoint`] | checkpoint files, batch-log and block-log segments, and what `weir replay` computes from them |
//! | [`serve_api`] | the JSON request bodies of `weir serve` and the checks the server makes of them before writing anything |
//! | [`guest_call`] | a real plugin call whose guest does what the input says: every pointer and length a guest gives the host (log, fail, the virtual WASI), the status, result area and output |
//!
//! **Drivers.** `tests/fuzz.rs` replays the committed corpus
//! (`fuzz/corpus/TARGET/`) and runs a few seconds of mutations under stable
//! `cargo test`; `fuzz/libfuzzer/` is a cargo-fuzz crate for long,
//! coverage-guided runs on nightly. Both install [`LimitedAlloc`], which
//! aborts on a single allocation larger than [`alloc_limit`] of the input.
//!
//! ```
//! weir_fuzz::run("abi_output", &[0, 1, 2, 3]);
//! ```

mod abi;
mod alloc;
mod checkpoint;
mod guest;
mod pipeline;
mod serve;

pub use abi::abi_output;
pub use alloc::{alloc_limit, with_alloc_limit, LimitedAlloc};
pub use checkpoint::checkpoint;
pub use guest::guest_call;
pub use pipeline::pipeline;
pub use serve::serve_api;

/// A fuzz target: any bytes in, no panic, hang or oversized allocation.
pub type Target = fn(&[u8]);

/// Every target by name (the corpus directory and the libfuzzer binary
/// have the same name).
pub const TARGETS: &[(&str, Target)] = &[
    ("pipeline", pipeline),
    ("abi_output", abi_output),
    ("checkpoint", checkpoint),
    ("serve_api", serve_api),
    ("guest_call", guest_call),
];

/// Runs target `name` on `data` under the allocation limit for its size.
/// Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    let target = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target `{name}`"));
    setup();
    with_alloc_limit(alloc_limit(data.len()), || target(data));
}

/// What the targets share and build once, outside the allocation limit
/// (the wasm runtime, the plugin the pipeline target builds with).
pub fn setup() {
    pipeline::setup();
    guest::setup();
}
