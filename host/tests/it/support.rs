//! Helpers shared by the modules of this test binary: the `weir` binary,
//! the plugins the tests run, text output, reading output trees.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for a line a running `weir` should log.
pub const PATIENCE: Duration = Duration::from_secs(120);

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

/// `weir run PIPELINE ARGS` logging at info, without stdin or stdout.
pub fn weir_run(pipeline: &Path, args: &[&str]) -> Command {
    let mut cmd = weir();
    cmd.arg("run")
        .arg(pipeline)
        .args(args)
        .env("WEIR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// Runs a pipeline to its end; its log (stderr), asserting success.
pub fn run_to_end(pipeline: &Path, args: &[&str]) -> String {
    let out = weir_run(pipeline, args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "weir failed: {stderr}");
    stderr
}

/// Runs a pipeline that must fail (without a panic); its log (stderr).
pub fn run_failing(pipeline: &Path, args: &[&str]) -> String {
    let out = weir_run(pipeline, args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "weir should have failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Starts `weir`, forwarding stderr lines to a channel.
pub fn spawn(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for `n` lines containing `needle`; false if the process ended first.
pub fn wait_lines(rx: &mpsc::Receiver<String>, needle: &str, n: usize) -> bool {
    let mut seen = 0;
    while seen < n {
        match rx.recv_timeout(PATIENCE) {
            Ok(line) if line.contains(needle) => seen += 1,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no `{needle}` line within {PATIENCE:?}")
            }
        }
    }
    true
}

/// Kills of the SIGKILL tests: `WEIR_KILLS`, default 20.
pub fn kills() -> usize {
    std::env::var("WEIR_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Runs `weir run PIPELINE ARGS` again and again, each time letting it
/// complete 0 to 2 batches and killing it (SIGKILL) up to `max_delay_us`
/// into the next, [`kills`] times (or until a run finishes first); then
/// runs it to its end. Returns the number of kills.
pub fn kill_and_restart(pipeline: &Path, args: &[&str], seed: u64, max_delay_us: u64) -> usize {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut killed = 0;
    while killed < kills() {
        let (mut child, rx) = spawn(weir_run(pipeline, args));
        let progressed = wait_lines(&rx, "batch completed", rng.gen_range(0..=2));
        if progressed {
            std::thread::sleep(Duration::from_micros(rng.gen_range(0..max_delay_us)));
        }
        child.kill().unwrap();
        if child.wait().unwrap().success() {
            return killed; // it finished before the kill
        }
        killed += 1;
    }
    run_to_end(pipeline, args);
    killed
}

/// A `text_files` batch directory's part files, in name (partition) order.
pub fn part_files(batch_dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(batch_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    parts
}

/// The lines of a `text_files` batch directory's part files, the parts
/// in name (partition) order.
pub fn batch_lines(batch_dir: &Path) -> Vec<String> {
    part_files(batch_dir)
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}
