//! Checkpoints written by an earlier weir are still read. The fixture
//! `tests/fixtures/checkpoint-v1/` holds the checkpoint directory of a job
//! that ran 7 batches under the weir that wrote format 1 (its README says
//! which commit and how), with the checkpoint of batch 7 removed, as if
//! the process had died after batch 7 and before its checkpoint: recovery
//! restores the checkpoint of batch 6 and replays batch 7 from the
//! format-1 batch log. `expected/` holds the outputs that weir wrote for
//! batches 7–10 when it recovered from that directory. Every kind of operator state is
//! in it: keyed state (`update_state_by_key`), a plain window, a keyed
//! window reduced without inverse, a windowed count (reduced with the
//! native inverse).

use std::path::{Path, PathBuf};

use crate::support::{copy_dir, text, tree, weir};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint-v1")
}

#[test]
fn recovers_from_a_format_v1_checkpoint() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    for file in ["pipeline.toml", "wordcount.wat"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
    }
    copy_dir(&fixture.join("ck"), &dir.path().join("ck"));

    // The pipeline runs on the simulated clock.
    let out = weir()
        .arg("run")
        .arg(dir.path().join("pipeline.toml"))
        .args(["--batches", "10"])
        .env("WEIR_LOG", "info")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("recovering from checkpoint")
            && stderr.contains("checkpoint-00000000000000000006.bin")
            && stderr.contains("batch_time_ms=6000"),
        "not restored from the checkpoint of batch 6:\n{stderr}"
    );
    assert!(!stderr.contains("damaged"), "{stderr}");
    // Only batches 7–10 ran, nothing before them: batch 7 replayed from
    // the format-1 batch log (it ran but its checkpoint is gone, as after a
    // crash), 8–10 live.
    assert_eq!(stderr.matches("batch replayed").count(), 1, "{stderr}");
    assert!(stderr.contains("batch_time_ms=7000"), "{stderr}");
    assert_eq!(stderr.matches("batch completed").count(), 3, "{stderr}");

    let expected = tree(&fixture.join("expected"));
    let batches = expected.keys().filter(|p| p.ends_with("_SUCCESS")).count();
    assert_eq!(batches, 4 * 4, "4 streams × batches 7–10 in the fixture");
    let got = tree(&dir.path().join("out"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same output files as the weir that wrote the checkpoint"
    );
    for (path, bytes) in &expected {
        assert!(
            &got[path] == bytes,
            "{} differs from the fixture:\n{}",
            path.display(),
            String::from_utf8_lossy(&got[path])
        );
    }

    // The running counts of batch 7 carry the state of batches 1–6: every
    // word of 7 batches of 200 lines of 4 words.
    let words: i64 = got
        .iter()
        .filter(|(p, _)| p.starts_with("totals-7000") && !p.ends_with("_SUCCESS"))
        .flat_map(|(_, bytes)| text(bytes).lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|line| {
            let (_, n) = line.trim_matches(['(', ')']).rsplit_once(',').unwrap();
            n.parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(words, 7 * 200 * 4);
}
