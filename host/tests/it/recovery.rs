//! Crash recovery with real processes: the `weir` binary is killed with
//! SIGKILL at random moments and restarted from its checkpoint directory;
//! the outputs must be byte-identical to an uninterrupted run. Also: a
//! damaged newest checkpoint, a changed pipeline, a graceful stop, and a
//! socket source with the write-ahead log.
//!
//! `WEIR_KILLS` sets the number of kills of the main test (default 50;
//! 20 for the others); `scripts/kill-test.sh` runs it with many more. The
//! main test also checks that no temporary file is left behind (issue 15).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{
    kill_and_restart, kills, run_to_end, spawn, tree, wait_lines, weir_run as weir, wordcount,
    PATIENCE,
};

/// A stateful, windowed job on the deterministic generator.
fn pipeline(dir: &Path, window_length: &str) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "recovery"
batch_interval = "1s"
partitions = 3
checkpoint = "ck"
checkpoint_interval = "3s"

[plugins]
wc = "{plugin}"

[[source]]
name = "lines"
type = "generator"
rate = 2000
words_per_line = 6
vocabulary = 400

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[stream]]
name = "win"
op = "reduce_by_key_and_window"
input = "words"
function = "wc:sum"
inverse = "wc:subtract"
filter = "wc:nonzero"
length = "{window_length}"
slide = "2s"

[[stream]]
name = "totals"
op = "update_state_by_key"
input = "words"
function = "wc:running_count"

[[output]]
stream = "win"
type = "text_files"
prefix = "out/win"

[[output]]
stream = "totals"
type = "text_files"
prefix = "out/totals"
"#,
        plugin = wordcount().display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Kills of the main SIGKILL test: `WEIR_KILLS`, default 50.
fn main_test_kills() -> usize {
    std::env::var("WEIR_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// Every hidden entry (name starting with `.`) under `root`: weir writes
/// no hidden name but its temporaries, so these are what a crash left.
fn hidden_entries(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            out.push(path);
        } else if e.file_type().unwrap().is_dir() {
            out.extend(hidden_entries(&path));
        }
    }
    out.sort();
    out
}

/// Every file of a checkpoint directory is one weir keeps there: the
/// metadata, stored modules, log segments and checkpoints.
fn assert_only_checkpoint_files(ck: &Path) {
    let numbered = |name: &str, prefix: &str, ext: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(ext))
            .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
    };
    for path in tree(ck).keys() {
        let name = path.file_name().unwrap().to_string_lossy();
        let dir = path.parent().unwrap().to_string_lossy();
        let known = match &*dir {
            "" => name == "metadata.json",
            "modules" => name.len() == 64 + 5 && name.ends_with(".wasm"),
            "wal" => numbered(&name, "batches-", ".log") || numbered(&name, "blocks-", ".log"),
            "checkpoints" => numbered(&name, "checkpoint-", ".bin"),
            _ => false,
        };
        assert!(
            known,
            "unexpected file in the checkpoint directory: {}",
            path.display()
        );
    }
}

/// Waits for `n` `batch completed` lines; the processing time the last
/// one reports (ms), or `None` if the process ended first.
fn wait_completed(rx: &mpsc::Receiver<String>, n: usize) -> Option<f64> {
    let mut last = 0.0;
    for _ in 0..n {
        let line = loop {
            match rx.recv_timeout(PATIENCE) {
                Ok(line) if line.contains("batch completed") => break line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("no batch within {PATIENCE:?}"),
            }
        };
        last = line
            .split_once("processing_ms=")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(last);
    }
    Some(last)
}

/// Runs `weir run PIPELINE ARGS` again and again and kills it (SIGKILL)
/// `main_test_kills()` times, at moments drawn from `seed`: a third of the
/// kills come up to 150 ms after the start (in recovery, replay and the
/// first batch); the others after a completed batch, half of them aimed at
/// the end of the next batch (from the processing time the completed one
/// reported: its outputs' and checkpoint's writes), half anywhere in it.
/// Returns the number of kills and of the temporaries found after them.
fn kill_repeatedly(p: &Path, args: &[&str], seed: u64) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut killed, mut left) = (0, 0);
    let dir = p.parent().unwrap();
    while killed < main_test_kills() {
        let (mut child, rx) = spawn(weir(p, args));
        let delay_ms = match rng.gen_range(0..6) {
            0 | 1 => Some(rng.gen_range(0.0..150.0)),
            2..=4 => wait_completed(&rx, 1).map(|ms| ms * rng.gen_range(0.8..1.1)),
            _ => wait_completed(&rx, 1).map(|ms| ms * rng.gen_range(0.0..1.2)),
        };
        if let Some(ms) = delay_ms {
            std::thread::sleep(Duration::from_secs_f64(ms / 1000.0));
        }
        child.kill().unwrap();
        if child.wait().unwrap().success() {
            break; // it finished before the kill
        }
        killed += 1;
        left += hidden_entries(&dir.join("out")).len() + hidden_entries(&dir.join("ck")).len();
    }
    (killed, left)
}

/// Issue 15: besides giving byte-identical outputs, repeated SIGKILLs
/// leave no temporary file or directory behind (a restart removes what the
/// killed run left, before its first write), and the cleanup removes only
/// weir's own temporaries.
#[test]
fn sigkill_at_random_moments_changes_no_output_byte_and_leaves_no_temporary() {
    // Enough batches that the job is still running at the last kill (a
    // run completes one or two new batches before its kill): an even
    // number, for whole 2 s slides.
    let batches = (main_test_kills() * 8 / 10 * 2).max(60);
    let batches_arg = batches.to_string();
    let args = ["--batches", &batches_arg, "--simulated-clock"];
    let started = std::time::Instant::now();
    let clean = tempfile::tempdir().unwrap();
    run_to_end(&pipeline(clean.path(), "5s"), &args);
    let expected = tree(&clean.path().join("out"));
    assert_eq!(
        expected.keys().filter(|p| p.ends_with("_SUCCESS")).count(),
        batches + batches / 2,
        "a totals batch per batch, a window every 2"
    );

    let crashy = tempfile::tempdir().unwrap();
    let p = pipeline(crashy.path(), "5s");
    let seed = std::env::var("WEIR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let (killed, left) = kill_repeatedly(&p, &args, seed);
    let (out, ck) = (crashy.path().join("out"), crashy.path().join("ck"));
    eprintln!(
        "killed weir {killed} times with SIGKILL (seed {seed}); temporaries found after the kills, summed over kills: {left}"
    );
    assert!(killed >= main_test_kills().min(50), "only {killed} kills");

    // Leftovers of this job (one planted per kind, in case no kill left
    // one) go at the next start; what is not weir's own stays.
    let hash = "0".repeat(64);
    let ours = [
        out.join(".win-999000.weir-tmp-1"),
        out.join(".totals-999000.tmp-1"),
        ck.join("checkpoints/.checkpoint-00000000000000000999.bin.weir-tmp"),
        ck.join(format!("modules/.{hash}.wasm.weir-tmp")),
    ];
    let theirs = [
        out.join(".keep"),
        out.join(".window-999000.weir-tmp-1"),
        ck.join(".notes.tmp"),
    ];
    std::fs::create_dir_all(&ours[0]).unwrap();
    std::fs::write(ours[0].join("part-00000"), "torn").unwrap();
    for f in ours[1..].iter().chain(&theirs) {
        std::fs::write(f, "x").unwrap();
    }
    let log = run_to_end(&p, &args);
    assert!(
        log.contains("removed temporary files left by an interrupted run"),
        "{log}"
    );
    for f in &ours {
        assert!(!f.exists(), "{} is left", f.display());
    }
    for f in &theirs {
        assert!(f.exists(), "{} (not weir's) was removed", f.display());
        std::fs::remove_file(f).unwrap();
    }

    let left: Vec<PathBuf> = hidden_entries(&out)
        .into_iter()
        .chain(hidden_entries(&ck))
        .collect();
    assert!(left.is_empty(), "temporaries left behind: {left:?}");
    assert_only_checkpoint_files(&ck);
    assert_same_files(&expected, &tree(&out));
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}

/// The crashed run's outputs equal the clean run's, file by file.
fn assert_same_files(expected: &BTreeMap<PathBuf, Vec<u8>>, got: &BTreeMap<PathBuf, Vec<u8>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (path, bytes) in expected {
        assert!(
            &got[path] == bytes,
            "{} differs after crashes",
            path.display()
        );
    }
}

fn newest_checkpoint(ck: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ck.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().expect("a checkpoint")
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let clean = tempfile::tempdir().unwrap();
    run_to_end(
        &pipeline(clean.path(), "5s"),
        &["--batches", "30", "--simulated-clock"],
    );
    let expected = tree(&clean.path().join("out"));

    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "5s");
    // Truncated.
    run_to_end(&p, &["--batches", "10", "--simulated-clock"]);
    let newest = newest_checkpoint(&dir.path().join("ck"));
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let log = run_to_end(&p, &["--batches", "20", "--simulated-clock"]);
    assert!(
        log.contains("checkpoint is damaged") && log.contains(&newest.display().to_string()),
        "{log}"
    );
    assert!(
        log.contains("batch replayed"),
        "batches after the previous checkpoint are replayed: {log}"
    );
    // A flipped byte.
    let newest = newest_checkpoint(&dir.path().join("ck"));
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&newest, bytes).unwrap();
    let log = run_to_end(&p, &["--batches", "30", "--simulated-clock"]);
    assert!(log.contains("checkpoint is damaged"), "{log}");
    assert_eq!(tree(&dir.path().join("out")), expected);
}

#[test]
fn a_changed_pipeline_is_refused_unless_fresh() {
    let dir = tempfile::tempdir().unwrap();
    run_to_end(
        &pipeline(dir.path(), "5s"),
        &["--batches", "3", "--simulated-clock"],
    );
    let changed = pipeline(dir.path(), "7s");
    let out = weir(&changed, &["--batches", "4", "--simulated-clock"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("written by a different pipeline")
            && stderr.contains("`win` changed")
            && stderr.contains("--fresh"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    let log = run_to_end(
        &changed,
        &["--batches", "2", "--simulated-clock", "--fresh"],
    );
    assert!(!log.contains("batch replayed"), "{log}");
}

#[test]
fn a_graceful_stop_leaves_nothing_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "5s");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("batch_interval = \"1s\"", "batch_interval = \"200ms\"")
        .replace("\"5s\"", "\"1s\"")
        .replace("\"2s\"", "\"400ms\"");
    std::fs::write(&p, text).unwrap();
    let (mut child, rx) = spawn(weir(&p, &[]));
    assert!(wait_lines(&rx, "batch completed", 2));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(rest.contains("stopped"), "{rest}");
    let log = run_to_end(&p, &["--batches", "1"]);
    assert!(
        !log.contains("batch replayed") && !log.contains("replaying"),
        "nothing to replay after a graceful stop: {log}"
    );
}

/// A socket source with the write-ahead log: the server sends distinct
/// words while weir is killed and restarted. Every word that reached the
/// log is counted exactly once; none is counted twice; words in flight
/// inside the process at a kill may be lost, and are reported.
#[test]
fn socket_lines_in_the_log_are_counted_exactly_once() {
    const WORDS: usize = 6000;
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let text = format!(
        r#"
[job]
name = "wal"
batch_interval = "100ms"
block_interval = "20ms"
partitions = 2
checkpoint = "ck"
checkpoint_interval = "500ms"

[plugins]
wc = "{plugin}"

[[source]]
name = "lines"
type = "socket"
host = "127.0.0.1"
port = {port}

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[stream]]
name = "counts"
op = "reduce_by_key"
input = "words"
function = "wc:sum"

[[output]]
stream = "counts"
type = "text_files"
prefix = "out/counts"
"#,
        plugin = wordcount().display()
    );
    let p = dir.path().join("pipeline.toml");
    std::fs::write(&p, text).unwrap();

    let (done_tx, done_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut next = 0;
        while next < WORDS {
            let (mut conn, _) = listener.accept().unwrap();
            while next < WORDS {
                let chunk: String = (next..(next + 10).min(WORDS))
                    .map(|i| format!("w{i}\n"))
                    .collect();
                if conn.write_all(chunk.as_bytes()).is_err() {
                    break; // killed: these words may be lost in flight
                }
                next = (next + 10).min(WORDS);
                // Pacing, so the stream spans many batches and kills.
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        done_tx.send(()).unwrap();
        // Dropping the listener closes the port: the receiver's reconnects fail.
    });

    let mut rng = StdRng::seed_from_u64(11);
    let mut logged: std::collections::BTreeSet<String> = Default::default();
    let read_log = |logged: &mut std::collections::BTreeSet<String>| {
        let log = weir::checkpoint::log::SegmentLog::new(
            dir.path().join("ck").join("wal"),
            "blocks",
            false,
        );
        for b in log
            .read_all::<weir::checkpoint::BlockEntry>()
            .unwrap_or_default()
        {
            for (_, v) in b.records.iter() {
                logged.insert(String::from_utf8(v.to_vec()).unwrap());
            }
        }
    };
    let mut kills = 0;
    loop {
        let (mut child, rx) = spawn(weir(&p, &[]));
        if done_rx.try_recv().is_ok() || kills >= 8 {
            // The server has sent everything (or enough kills): let this
            // run drain the log and the socket, then stop it gracefully.
            let _ = done_rx.recv_timeout(PATIENCE);
            assert!(
                wait_lines(&rx, "cannot connect", 1),
                "the receiver notices the server is gone"
            );
            assert!(wait_lines(&rx, "batch completed", 3));
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(child.wait().unwrap().success());
            break;
        }
        wait_lines(&rx, "batch completed", rng.gen_range(1..=4));
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..40_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        read_log(&mut logged);
    }
    server.join().unwrap();

    let mut counted: BTreeMap<String, i64> = BTreeMap::new();
    for (path, bytes) in tree(&dir.path().join("out")) {
        if path.ends_with("_SUCCESS") {
            continue;
        }
        for line in String::from_utf8(bytes).unwrap().lines() {
            let (w, n) = line
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split_once(',')
                .unwrap();
            *counted.entry(w.to_string()).or_default() += n.parse::<i64>().unwrap();
        }
    }
    let twice: Vec<_> = counted.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "counted more than once: {twice:?}");
    let missing_logged: Vec<_> = logged
        .iter()
        .filter(|w| !counted.contains_key(*w))
        .collect();
    assert!(
        missing_logged.is_empty(),
        "logged but not counted: {missing_logged:?}"
    );
    let lost = WORDS - counted.len();
    eprintln!("socket + WAL: {kills} kills, {} words counted once, {lost} lost in flight (never reached the log)", counted.len());
    assert!(kills >= 3, "enough kills happened");
    assert!(lost < WORDS / 2, "most words survive: lost {lost}");
}

/// `weir run --watch-plugins`: the module file is replaced while the job
/// runs (state migrated v1 → v2), and weir is SIGKILLed around the upgrade.
/// Afterwards a recovery from the very first checkpoint replays every batch
/// with the module that originally ran it and writes the same bytes.
#[test]
fn watched_upgrade_with_sigkills_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let v1 = std::fs::read(weir_tests::guest(weir_tests::guests::TALLY_V1)).unwrap();
    let v2 = std::fs::read(weir_tests::guest(weir_tests::guests::TALLY_V2)).unwrap();
    std::fs::write(plugins.join("tally.wasm"), &v1).unwrap();
    let p = dir.path().join("pipeline.toml");
    std::fs::write(
        &p,
        r#"
[job]
name = "upgrade"
batch_interval = "100ms"
partitions = 2
checkpoint = "ck"
# Only the initial checkpoint (and a final one): every recovery replays the
# whole log, across the upgrade.
checkpoint_interval = "60s"

[plugins]
tally = "plugins/tally.wasm"

[[source]]
name = "lines"
type = "generator"
rate = 3000
words_per_line = 4
vocabulary = 60

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "tally:split"

[[stream]]
name = "counts"
op = "map_with_state"
input = "words"
function = "tally:count"

[[output]]
stream = "counts"
type = "text_files"
prefix = "out/tally"
"#,
    )
    .unwrap();
    let args = ["--batches", "60", "--watch-plugins"];

    // Run 1: upgrade after a few batches, then a kill.
    let (mut child, rx) = spawn(weir(&p, &args));
    assert!(wait_lines(&rx, "batch completed", 5));
    let tmp = plugins.join(".tally.wasm.tmp");
    std::fs::write(&tmp, &v2).unwrap();
    std::fs::rename(&tmp, plugins.join("tally.wasm")).unwrap();
    assert!(
        wait_lines(&rx, "upgraded", 1),
        "the watcher swaps the new module in"
    );
    assert!(wait_lines(&rx, "batch completed", 2));
    child.kill().unwrap();
    child.wait().unwrap();
    // Run 2: recover, kill again.
    let (mut child, rx) = spawn(weir(&p, &args));
    assert!(wait_lines(&rx, "batch completed", 3));
    child.kill().unwrap();
    child.wait().unwrap();
    // Run 3: to the end.
    run_to_end(&p, &args);
    let first = tree(&dir.path().join("out"));
    assert_eq!(first.keys().filter(|k| k.ends_with("_SUCCESS")).count(), 60);

    // Lose every checkpoint but the initial one: all 60 batches replay,
    // each with its recorded module, migrating where the upgrade happened.
    for e in std::fs::read_dir(dir.path().join("ck").join("checkpoints")).unwrap() {
        let path = e.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("00000000000000000000.bin")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let log = run_to_end(&p, &["--batches", "60"]);
    assert!(
        log.contains("module as recorded in the checkpoint"),
        "{log}"
    );
    assert_eq!(tree(&dir.path().join("out")), first);
}

/// When every kept checkpoint is damaged and the logs before them are gone,
/// recovery refuses (it must not replay a log suffix onto empty state).
#[test]
fn all_checkpoints_damaged_is_refused_not_replayed_wrongly() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "5s");
    run_to_end(&p, &["--batches", "20", "--simulated-clock"]);
    for e in std::fs::read_dir(dir.path().join("ck").join("checkpoints")).unwrap() {
        let path = e.unwrap().path();
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 3)
            .unwrap();
    }
    let out = weir(&p, &["--batches", "25", "--simulated-clock"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot recover") && stderr.contains("--fresh"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("batch replayed"),
        "{stderr}"
    );
}

/// Logs older than the oldest kept checkpoint are deleted: a long run keeps
/// a bounded number of checkpoints and log segments.
#[test]
fn disk_use_stays_bounded_in_a_long_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "5s");
    let count = |sub: &str, prefix: &str| {
        std::fs::read_dir(dir.path().join("ck").join(sub))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .count()
    };
    run_to_end(&p, &["--batches", "15", "--simulated-clock"]);
    let after_15 = (
        count("checkpoints", "checkpoint-"),
        count("wal", "batches-"),
    );
    run_to_end(&p, &["--batches", "90", "--simulated-clock"]);
    let after_90 = (
        count("checkpoints", "checkpoint-"),
        count("wal", "batches-"),
    );
    // A checkpoint every 3 batches, 2 kept: the same small number of files
    // after 90 batches as after 15.
    assert_eq!(after_90.0, 2, "checkpoints kept");
    assert!(
        after_90.1 <= 3 && after_90.1 <= after_15.1.max(3),
        "batch log segments: {after_15:?} then {after_90:?}"
    );
}

/// A WASI plugin that reads the clock and random numbers: one record per
/// partition and batch, `(clock, monotonic clock, 8 random bytes, input
/// count)`. Replay must give it the same clock and the same numbers.
const WASI_STAMP: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "weir_abi_version") (result i32) (i32.const 1))
  (func (export "weir_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "map:stamp") (param $in i32) (param $len i32) (param $result i32) (result i32)
    (i32.store (i32.const 1024) (i32.const 1))
    (i32.store (i32.const 1028) (i32.const 5))
    (i32.store (i32.const 1032) (i32.const 0x6d617473))
    (i32.store8 (i32.const 1036) (i32.const 0x70))
    (i32.store (i32.const 1037) (i32.const 28))
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 1041)))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 1049)))
    (drop (call $random (i32.const 1057) (i32.const 8)))
    (i32.store (i32.const 1065) (i32.load offset=16 (local.get $in)))
    (i32.store (local.get $result) (i32.const 1024))
    (i32.store offset=4 (local.get $result) (i32.const 45))
    (i32.const 0)))"#;

#[test]
fn a_wasi_plugin_reading_clock_and_random_replays_byte_identically() {
    let pipeline = |dir: &Path| {
        std::fs::write(dir.join("stamp.wat"), WASI_STAMP).unwrap();
        let text = format!(
            r#"
[job]
name = "wasi-recovery"
batch_interval = "1s"
partitions = 2
checkpoint = "ck"
checkpoint_interval = "3s"

[plugins]
wc = "{plugin}"
clock = "stamp.wat"

[[source]]
name = "lines"
type = "generator"
rate = 2000
words_per_line = 4
vocabulary = 100

[[stream]]
name = "stamps"
op = "map_partitions"
input = "lines"
function = "clock:stamp"

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[stream]]
name = "totals"
op = "update_state_by_key"
input = "words"
function = "wc:running_count"

[[output]]
stream = "stamps"
type = "text_files"
prefix = "out/stamps"

[[output]]
stream = "totals"
type = "text_files"
prefix = "out/totals"
"#,
            plugin = wordcount().display()
        );
        let path = dir.join("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let args = ["--batches", "30", "--simulated-clock"];
    let clean = tempfile::tempdir().unwrap();
    run_to_end(&pipeline(clean.path()), &args);
    let expected = tree(&clean.path().join("out"));
    let stamps: Vec<&PathBuf> = expected
        .keys()
        .filter(|p| p.to_string_lossy().contains("stamps") && !p.ends_with("_SUCCESS"))
        .collect();
    assert!(!stamps.is_empty(), "no stamp output: {:?}", expected.keys());

    let crashy = tempfile::tempdir().unwrap();
    let killed = kill_and_restart(&pipeline(crashy.path()), &args, 11, 15_000);
    eprintln!("killed weir {killed} times with SIGKILL");
    assert!(killed >= kills().min(10), "only {killed} kills");
    assert_same_files(&expected, &tree(&crashy.path().join("out")));
}
