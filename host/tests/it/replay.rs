//! `weir replay`: a checkpointed job's recorded batches re-run with the
//! recorded modules and with a candidate module, compared. Every replay
//! here also checks that the checkpoint directory and the job's outputs
//! are byte for byte what they were before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{run_to_end, text, wat_wordcount, weir, wordcount};

/// `weir replay --diff`'s exit status when an output differs.
const DIFFERS: i32 = 3;

/// A checkpointed job that ran 8 batches: word counts with
/// `reduce_by_key` and `update_state_by_key` (plugin `wc`) and running
/// totals with `map_with_state` (plugin `tally`, state version 1).
/// Checkpoints every 4 batches, 2 kept (4 and 8): batches 5..8 are logged.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn run() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(tally_v1(), plugins.join("tally.wasm")).unwrap();
        std::fs::copy(wordcount(), plugins.join("wc.wasm")).unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), PIPELINE).unwrap();
        let job = Job { dir };
        run_to_end(&job.pipeline(), &["--batches", "8", "--simulated-clock"]);
        job
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn pipeline(&self) -> PathBuf {
        self.path("pipeline.toml")
    }

    fn ck(&self) -> PathBuf {
        self.path("ck")
    }

    /// `weir replay CK --pipeline P ARGS`, checking that neither the
    /// checkpoint directory nor the outputs changed.
    fn replay(&self, ck: &Path, args: &[&str]) -> Output {
        let before = (all_files(ck), all_files(&self.path("out")));
        let out = weir()
            .arg("replay")
            .arg(ck)
            .arg("--pipeline")
            .arg(self.pipeline())
            .args(args)
            .current_dir(self.dir.path())
            .env("WEIR_LOG", "warn")
            .output()
            .unwrap();
        let after = (all_files(ck), all_files(&self.path("out")));
        assert!(
            before.0 == after.0,
            "the checkpoint directory changed: {:?} → {:?}",
            before.0.keys().collect::<Vec<_>>(),
            after.0.keys().collect::<Vec<_>>()
        );
        assert!(before.1 == after.1, "the outputs changed");
        assert!(!before.0.is_empty() || !ck.join("metadata.json").exists());
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        out
    }

    /// A replay that must fail with a clear error (exit 1); its stderr.
    fn replay_error(&self, ck: &Path, args: &[&str]) -> String {
        let out = self.replay(ck, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("error: "), "{stderr}");
        stderr
    }
}

const PIPELINE: &str = r#"
[job]
name = "replayed"
batch_interval = "1s"
partitions = 2
checkpoint = "ck"
checkpoint_interval = "4s"
keep_checkpoints = 2

[plugins]
wc = "plugins/wc.wasm"
tally = "plugins/tally.wasm"

[[source]]
name = "lines"
type = "generator"
rate = 60
words_per_line = 4
vocabulary = 30

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

[[stream]]
name = "running"
op = "update_state_by_key"
input = "words"
function = "wc:running_count"

[[stream]]
name = "tallied"
op = "flat_map"
input = "lines"
function = "tally:split"

[[stream]]
name = "totals"
op = "map_with_state"
input = "tallied"
function = "tally:count"

[[output]]
stream = "counts"
type = "text_files"
prefix = "out/counts"

[[output]]
stream = "running"
type = "text_files"
prefix = "out/running"

[[output]]
stream = "totals"
type = "text_files"
prefix = "out/totals"
"#;

fn tally_v1() -> PathBuf {
    weir_tests::guest(weir_tests::guests::TALLY_V1)
}

fn tally_v2() -> PathBuf {
    weir_tests::guest(weir_tests::guests::TALLY_V2)
}

/// Every file under `dir`, hidden ones too: relative path → bytes.
fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if p.is_dir() {
                out.insert(rel.join(""), Vec::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The WAT word count with `edit` applied (the text must contain `from`).
fn wat_variant(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let wat = std::fs::read_to_string(wat_wordcount()).unwrap();
    assert!(
        wat.contains(from),
        "the WAT word count changed: no `{from}`"
    );
    let path = dir.join(name);
    std::fs::write(&path, wat.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn the_recorded_module_reproduces_the_run_without_differences() {
    let job = Job::run();
    let out = job.replay(&job.ck(), &["--module", "plugins/tally.wasm", "--diff"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("no differences"), "{stdout}");
    assert!(
        stdout.contains("batches 5..8 (5000..8000 ms), from the state of checkpoint 4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("baseline reproduces the recorded state at checkpoint(s) 8"),
        "{stdout}"
    );

    // Another module with the same behaviour (the WAT word count for the
    // Rust one) changes nothing either.
    let out = job.replay(
        &job.ck(),
        &[
            "--module",
            wat_wordcount().to_str().unwrap(),
            "--plugin",
            "wc",
            "--diff",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outputs_differ"], false);
    assert_eq!(report["report"]["differences"], serde_json::json!([]));

    // Without --diff: the candidate's outputs, as `print` shows them.
    let out = job.replay(
        &job.ck(),
        &["--module", "plugins/tally.wasm", "--batches", "6"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    assert_eq!(stdout.matches("Time: 6000 ms").count(), 3, "{stdout}");
}

#[test]
fn a_changed_function_is_reported_by_batch_stream_and_record() {
    let job = Job::run();
    // tally v2 (state version 2, migrates v1 state, emits count × 10),
    // named after the plugin it replaces.
    let cand = job.path("candidate");
    std::fs::create_dir_all(&cand).unwrap();
    std::fs::copy(tally_v2(), cand.join("tally.wasm")).unwrap();
    let module = cand.join("tally.wasm");
    let out = job.replay(&job.ck(), &["--module", module.to_str().unwrap(), "--diff"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(DIFFERS),
        "{stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("state of "),
        "migrated from checkpoint 4: {stdout}"
    );
    assert!(stdout.contains("batch 5 (5000 ms):"), "{stdout}");
    assert!(
        stdout.contains("stream `totals` (map_with_state, output): "),
        "{stdout}"
    );
    assert!(
        !stdout.contains("stream `counts`"),
        "wc is unchanged: {stdout}"
    );
    let sample = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("~ ("))
        .expect("a changed record");
    // `~ (word,n) → (word,n×10)`
    let (before, after) = sample.trim_start()[2..].split_once(" → ").unwrap();
    let count = |r: &str| {
        r.trim_end_matches(')')
            .rsplit_once(',')
            .unwrap()
            .1
            .parse::<i64>()
            .unwrap()
    };
    assert_eq!(count(after), count(before) * 10, "{sample}");
    assert!(stdout.contains("outputs differ in 4 batch(es)"), "{stdout}");

    // The same as JSON, for batches chosen by time.
    let out = job.replay(
        &job.ck(),
        &[
            "--module",
            tally_v2().to_str().unwrap(),
            "--plugin",
            "tally",
            "--diff",
            "--json",
            "--batches",
            "7000ms..8000ms",
        ],
    );
    assert_eq!(out.status.code(), Some(DIFFERS));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &report["report"];
    assert_eq!(report["outputs_differ"], true);
    assert_eq!(r["batches"], serde_json::json!([7, 8]));
    assert_eq!(r["warm_up_batches"], 2, "5 and 6 rebuild the state");
    assert!(r["migrated_keys"].as_u64().unwrap() > 0);
    let first = &r["differences"][0];
    assert_eq!(first["batch"], 7);
    assert_eq!(first["streams"][0]["stream"], "totals");
    assert_eq!(first["streams"][0]["output"], true);
    assert!(first["streams"][0]["changed"].as_u64().unwrap() > 0);

    // A word count whose sum adds one per combination: `counts` differs,
    // the running totals (another function of the plugin) do not.
    let plus_one = wat_variant(
        job.dir.path(),
        "wc.wat",
        "(local.set $sum (i64.add (local.get $acc) (local.get $x)))",
        "(local.set $sum (i64.add (i64.add (local.get $acc) (local.get $x)) (i64.const 1)))",
    );
    let out = job.replay(
        &job.ck(),
        &[
            "--module",
            plus_one.to_str().unwrap(),
            "--diff",
            "--batches",
            "5..6",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(DIFFERS),
        "{stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("stream `counts` (reduce_by_key, output): "),
        "{stdout}"
    );
    assert!(!stdout.contains("stream `running`"), "{stdout}");
    assert!(!stdout.contains("batch 7 "), "only 5..6: {stdout}");
}

#[test]
fn unusable_checkpoints_and_modules_are_clear_errors() {
    let job = Job::run();
    let tally = ["--module", "plugins/tally.wasm", "--diff"];
    let err = job.replay_error(&job.path("nowhere"), &tally);
    assert!(
        err.contains("nowhere") && err.contains("No such file"),
        "{err}"
    );
    let err = job.replay_error(&job.path("out"), &tally);
    assert!(err.contains("is not a checkpoint directory"), "{err}");

    // Batches whose log is gone (before the oldest kept checkpoint).
    let err = job.replay_error(
        &job.ck(),
        &[
            "--module",
            "plugins/tally.wasm",
            "--diff",
            "--batches",
            "1..3",
        ],
    );
    assert!(
        err.contains("cannot replay batches 1..3") && err.contains("batches 5..8"),
        "{err}"
    );

    // Damaged metadata.
    let broken = job.path("broken");
    crate::support::copy_dir(&job.ck(), &broken);
    std::fs::write(broken.join("metadata.json"), "{ not json").unwrap();
    let err = job.replay_error(&broken, &tally);
    assert!(err.contains("metadata.json is unreadable"), "{err}");

    // A damaged checkpoint is skipped; without it nothing connects to the
    // log, and the error says so, naming the damaged file.
    let damaged = job.path("damaged");
    crate::support::copy_dir(&job.ck(), &damaged);
    let four = damaged.join("checkpoints/checkpoint-00000000000000000004.bin");
    let mut bytes = std::fs::read(&four).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&four, bytes).unwrap();
    let err = job.replay_error(&damaged, &tally);
    assert!(
        err.contains(
            "no kept checkpoint connects to its log (the log holds batches 5..8; checkpoints: 8)"
        ) && err.contains("checkpoint-00000000000000000004.bin: damaged checkpoint"),
        "{err}"
    );

    // A damaged log tail is reported and skipped, not cut off (the replay
    // checks the directory is unchanged).
    let torn = job.path("torn");
    crate::support::copy_dir(&job.ck(), &torn);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(torn.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("batches-")
        })
        .collect();
    segments.sort();
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
    std::fs::write(&segments[0], bytes).unwrap();
    let out = job.replay(&torn, &tally);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("warning: ") && stdout.contains("damaged bytes"),
        "{stdout}"
    );

    // Modules that cannot take over.
    let testkit = crate::support::testkit();
    let err = job.replay_error(
        &job.ck(),
        &[
            "--module",
            testkit.to_str().unwrap(),
            "--plugin",
            "tally",
            "--diff",
        ],
    );
    assert!(
        err.contains("lacks functions the job calls: map:split, update:count"),
        "{err}"
    );
    let err = job.replay_error(
        &job.ck(),
        &["--module", tally_v2().to_str().unwrap(), "--diff"],
    );
    assert!(
        err.contains("no plugin `tally_v2`") && err.contains("--plugin"),
        "{err}"
    );
    let versioned = wat_variant(
        job.dir.path(),
        "wc.wat",
        "(func (export \"weir_abi_version\")",
        "(func (export \"weir_state_version\") (result i32) (i32.const 3))\n  (func (export \"weir_abi_version\")",
    );
    let err = job.replay_error(
        &job.ck(),
        &["--module", versioned.to_str().unwrap(), "--diff"],
    );
    assert!(
        err.contains("state version from 0 to 3") && err.contains("migrate:state"),
        "{err}"
    );

    // A pipeline other than the one that wrote the checkpoint.
    let other = std::fs::read_to_string(job.pipeline())
        .unwrap()
        .replace("partitions = 2", "partitions = 3");
    std::fs::write(job.pipeline(), other).unwrap();
    let err = job.replay_error(&job.ck(), &tally);
    assert!(
        err.contains("does not match the checkpoint") && err.contains("partitions 3"),
        "{err}"
    );
}

/// A checkpoint directory of format 1 (`host/tests/fixtures/checkpoint-v1`,
/// written by an earlier weir) replays too: its own module gives no
/// differences, a changed `sum` changes the windowed counts.
#[test]
fn a_format_1_checkpoint_replays_unchanged() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint-v1");
    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&fixture.join("ck"), &dir.path().join("ck"));
    let ck = dir.path().join("ck");
    let run = |module: &Path| {
        let before = all_files(&ck);
        let out = weir()
            .arg("replay")
            .arg(&ck)
            .arg("--pipeline")
            .arg(fixture.join("pipeline.toml"))
            .arg("--module")
            .arg(module)
            .args(["--plugin", "wordcount", "--diff"])
            .env("WEIR_LOG", "warn")
            .output()
            .unwrap();
        assert!(before == all_files(&ck), "the checkpoint directory changed");
        out
    };
    let out = run(&fixture.join("wordcount.wat"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("batches 7..7 (7000..7000 ms), from the state of checkpoint 6"),
        "{stdout}"
    );
    assert!(stdout.contains("no differences"), "{stdout}");

    let plus_one = wat_variant(
        dir.path(),
        "wordcount.wat",
        "(local.set $sum (i64.add (local.get $acc) (local.get $x)))",
        "(local.set $sum (i64.add (i64.add (local.get $acc) (local.get $x)) (i64.const 1)))",
    );
    let out = run(&plus_one);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(DIFFERS),
        "{stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("stream `recent_counts` (reduce_by_key_and_window, output)"),
        "{stdout}"
    );
}
