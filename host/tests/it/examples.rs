//! Every example pipeline under `examples/pipelines/` is valid, and the
//! ones on the embedded generator run, through the real binary. The
//! examples point at `target/plugins/` (built by `make plugins`); here they
//! are pointed at the plugin the test build compiled.

use std::path::{Path, PathBuf};

use crate::support::{weir as weir_bin, wordcount};

fn examples() -> Vec<PathBuf> {
    let dir = weir_tests::workspace_root().join("examples/pipelines");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The example, with plugin and output paths moved into `dir`.
fn localise(example: &Path, dir: &Path) -> PathBuf {
    let plugin = wordcount();
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace(
            "../../target/plugins/wordcount.wasm",
            &plugin.display().to_string(),
        )
        .replace(
            "../../target/plugins/analytics.wasm",
            &weir_tests::guest(weir_tests::guests::ANALYTICS)
                .display()
                .to_string(),
        )
        .replace("../../target/", "");
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    let path = dir.join(example.file_name().unwrap());
    std::fs::write(&path, text).unwrap();
    path
}

fn weir(args: &[&str], pipeline: &Path) -> (bool, String, String) {
    let out = weir_bin()
        .args(args)
        .arg(pipeline)
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_validates() {
    let all = examples();
    assert!(all.len() >= 7, "{all:?}");
    for example in all {
        let dir = tempfile::tempdir().unwrap();
        let p = localise(&example, dir.path());
        let (ok, stdout, stderr) = weir(&["validate"], &p);
        assert!(
            ok && stdout.contains(": ok"),
            "{}: {stdout}{stderr}",
            example.display()
        );
    }
}

#[test]
fn generator_examples_run() {
    for (name, batches, expect) in [
        ("wordcount.toml", "2", "Time: 2000 ms"),
        ("windowed_wordcount.toml", "10", "Time: 10000 ms"),
        ("top_hashtags.toml", "5", "(#"),
        ("join.toml", "2", "(Some("),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let example = weir_tests::workspace_root()
            .join("examples/pipelines")
            .join(name);
        let p = localise(&example, dir.path());
        let out = weir_bin()
            .args(["run"])
            .arg(&p)
            .args(["--batches", batches, "--simulated-clock"])
            .env("WEIR_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(expect), "{name}: {stdout}");
    }
}
