//! Helpers shared by the modules of this test binary: the `weir` binary,
//! the plugins the tests run, text output, reading output trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A command for the `weir` binary cargo built for this test.
pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// The hand-written WAT word count plugin (`plugins/wordcount-wat/`).
pub fn wat_wordcount() -> PathBuf {
    weir_tests::workspace_root().join("plugins/wordcount-wat/wordcount.wat")
}

/// The Rust word count plugin, built by `tests/build.rs`.
pub fn wordcount() -> PathBuf {
    weir_tests::guest(weir_tests::guests::WORDCOUNT)
}

/// Output of the binary as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Every visible file under `dir`: relative path → bytes.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Copies the directory `from` with everything in it to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The test-kit plugin (`plugins/testkit`), built by `tests/build.rs`.
pub fn testkit() -> PathBuf {
    weir_tests::guest(weir_tests::guests::TESTKIT)
}
