//! Shared helpers of weir's integration tests and benchmarks: where the
//! guest plugins built by `build.rs` are.

use std::path::PathBuf;

/// Paths of built guests, or why they could not be built.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The path of a built guest, or a panic that says how to get it built.
pub fn guest(built: Result<&str, &str>) -> PathBuf {
    match built {
        Ok(path) => PathBuf::from(path),
        Err(why) => panic!("a guest plugin this test needs was not built by tests/build.rs:\n{why}"),
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A checked-in fixture under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("tests").join("fixtures").join(rel)
}
