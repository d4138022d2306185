//! `weir plugin inspect` through the real binary (an integration test of
//! the crate that owns it, so cargo builds it and sets
//! `CARGO_BIN_EXE_weir`). Uses checked-in WAT modules only.

use std::path::PathBuf;
use std::process::Output;

use sha2::{Digest, Sha256};

use crate::support::{text, wat_wordcount, weir};

fn inspect(module: &PathBuf) -> Output {
    weir()
        .args(["plugin", "inspect"])
        .arg(module)
        .env("WEIR_LOG", "off")
        .output()
        .expect("run the weir binary")
}

#[test]
fn inspect_a_plugin() {
    let module = wat_wordcount();
    let out = inspect(&module);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let bytes = std::fs::read(&module).unwrap();
    let hash = hex::encode(Sha256::digest(&bytes));
    for line in [
        "plugin:      wordcount".to_owned(),
        format!("size:        {} bytes", bytes.len()),
        format!("sha256:      {hash}"),
        "abi version: 1".to_owned(),
        "functions:".to_owned(),
        "  map     split".to_owned(),
        "  reduce  sum".to_owned(),
        "  update  running_count".to_owned(),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn inspect_lists_every_problem_and_fails() {
    let module = weir_tests::fixture("abi/several_problems.wat");
    let out = inspect(&module);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        stderr.contains("error: plugin `several_problems` is not a weir plugin:\n"),
        "{stderr}"
    );
    let problems: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect();
    assert_eq!(problems.len(), 4, "{stderr}");
    assert!(
        problems[0].starts_with("export `map:f` must be a function"),
        "{stderr}"
    );
    assert!(
        problems[1].starts_with("missing export `weir_alloc`"),
        "{stderr}"
    );
    assert!(
        problems[2].starts_with("exports no weir function"),
        "{stderr}"
    );
    assert!(
        problems[3].starts_with("exports ABI version 7, this host speaks version 1"),
        "{stderr}"
    );
}

#[test]
fn inspect_names_unsupported_imports() {
    let out = inspect(&weir_tests::fixture("abi/wasi_import.wat"));
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("  - imports `wasi_snapshot_preview1.fd_write`, which weir does not offer"),
        "{stderr}"
    );
    assert!(stderr.contains("  - imports `env.printf`"), "{stderr}");
    assert!(!stderr.contains("proc_exit"), "{stderr}");
}

#[test]
fn inspect_a_missing_file() {
    let missing = weir_tests::fixture("abi/no_such_module.wasm");
    let out = inspect(&missing);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot read plugin module {}", missing.display())),
        "{stderr}"
    );
}
