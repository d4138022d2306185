//! Hot swap under load: a generator-fed stateful job is upgraded and rolled
//! back while it runs (state migrated both ways); its output must equal an
//! offline computation applying, to every batch, the module version the
//! checkpoint says ran it. Then a crash: recovery replays every batch with
//! its original module, giving the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use weir::checkpoint::log::SegmentLog;
use weir::checkpoint::{BatchEntry, CheckpointConfig};
use weir::receiver::generator::{GeneratorConfig, GeneratorKind, GeneratorSource};
use weir::receiver::Source;
use weir::stream::{JobControl, StateOptions, SwapError, SwapReply};
use weir::wasm::Plugin;
use weir::{SourceSpec, StreamingConfig};
use weir_tests::{context, guest, guests, runtime, simulated_config};

const BATCHES: u64 = 30;
const RATE: u64 = 300;

fn tally(version: Result<&str, &str>) -> Plugin {
    let bytes = std::fs::read(guest(version)).unwrap();
    runtime().load_bytes("tally", &bytes).unwrap()
}

fn generator() -> SourceSpec {
    SourceSpec::Generator {
        kind: GeneratorKind::Text,
        rate: RATE,
        seed: 9,
        words_per_line: 4,
        vocabulary: 60,
        limit: None,
    }
}

/// When to ask for what: (batch time, action).
enum Action {
    Swap(Plugin),
    Rollback,
}

/// Runs the job; at the given batches (from inside the output callback)
/// queues swaps and rollbacks, which apply at the next batch boundary.
fn run(
    dir: &Path,
    plan: Vec<(i64, Action)>,
) -> Vec<(i64, Result<weir::stream::SwapReport, SwapError>)> {
    let config = StreamingConfig {
        checkpoint: Some(CheckpointConfig {
            dir: dir.join("ck"),
            every_batches: 1000,
            keep: 2,
            write_ahead_log: true,
        }),
        ..simulated_config(2, 2)
    };
    let ctx = context(config);
    let v1 = {
        let bytes = std::fs::read(guest(guests::TALLY_V1)).unwrap();
        let path = dir.join("tally.wasm");
        std::fs::write(&path, bytes).unwrap();
        ctx.load_plugin_as("tally", &path).unwrap()
    };
    let words = ctx
        .source(Some("lines"), generator())
        .unwrap()
        .flat_map(&v1, "split")
        .unwrap();
    let counts = words
        .map_with_state(&v1, "count", StateOptions::default())
        .unwrap();
    counts
        .save_as_text_files(dir.join("out").join("tally"), None)
        .unwrap();

    let control: Arc<OnceLock<JobControl>> = Arc::default();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let ready_rx = Mutex::new(ready_rx);
    let plan = Mutex::new(plan);
    let pending: Arc<Mutex<Vec<(i64, SwapReply)>>> = Arc::default();
    let (c, p) = (control.clone(), pending.clone());
    counts
        .foreach_batch(move |t, _| {
            if t == 1000 {
                // The control handle exists only once the job started.
                let _ = ready_rx.lock().unwrap().recv();
            }
            let control = c.get().expect("set before batch 1 finished");
            let mut plan = plan.lock().unwrap();
            while plan.first().is_some_and(|(at, _)| *at == t) {
                let (at, action) = plan.remove(0);
                let reply = match action {
                    Action::Swap(plugin) => control.request_swap("tally", plugin),
                    Action::Rollback => control.request_rollback("tally"),
                }
                .unwrap();
                p.lock().unwrap().push((at, reply));
            }
            Ok(())
        })
        .unwrap();
    let job = ctx.start(Some(BATCHES)).unwrap();
    control.set(job.control()).ok().unwrap();
    ready_tx.send(()).unwrap();
    job.await_termination().unwrap();
    let replies = std::mem::take(&mut *pending.lock().unwrap());
    replies
        .into_iter()
        .map(|(at, rx)| {
            (
                at,
                rx.recv_timeout(Duration::from_secs(10)).expect("answered"),
            )
        })
        .collect()
}

/// Output records of each batch: batch time → word → value.
fn outputs(dir: &Path) -> BTreeMap<i64, BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("out")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(t) = name
            .strip_prefix("tally-")
            .and_then(|t| t.parse::<i64>().ok())
        else {
            continue;
        };
        let mut batch = BTreeMap::new();
        for part in std::fs::read_dir(&path).unwrap() {
            let part = part.unwrap().path();
            if part.file_name().unwrap() == "_SUCCESS" {
                continue;
            }
            for line in std::fs::read_to_string(&part).unwrap().lines() {
                let (w, n) = line
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split_once(',')
                    .unwrap();
                batch.insert(w.to_string(), n.parse().unwrap());
            }
        }
        out.insert(t, batch);
    }
    out
}

fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn hot_swap_under_load_matches_the_offline_computation_and_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (tally(guests::TALLY_V1), tally(guests::TALLY_V2));
    let wrong = runtime()
        .load_bytes("tally", &std::fs::read(guest(guests::TESTKIT)).unwrap())
        .unwrap();
    let plan = vec![
        (5000, Action::Swap(v2.clone())),
        (9000, Action::Swap(wrong)),
        (12000, Action::Rollback),
        (20000, Action::Swap(v2.clone())),
    ];
    let replies = run(dir.path(), plan);

    // The swaps took effect at the next batch; the bad module was refused.
    assert_eq!(replies.len(), 4);
    let r = replies[0].1.as_ref().unwrap();
    assert_eq!(
        (r.first_batch_ms, r.to.as_str()),
        (6000, v2.hash_hex().as_str())
    );
    assert!(r.migrated_keys > 0, "state migrated v1 → v2");
    match &replies[1].1 {
        Err(SwapError::MissingFunctions { missing, .. }) => assert!(
            missing.contains("map:split") || missing.contains("update:count"),
            "{missing}"
        ),
        other => panic!("a module without the job's functions must be refused: {other:?}"),
    }
    let r = replies[2].1.as_ref().unwrap();
    assert_eq!(
        (r.first_batch_ms, r.to.as_str()),
        (13000, v1.hash_hex().as_str())
    );
    let r = replies[3].1.as_ref().unwrap();
    assert_eq!(r.first_batch_ms, 21000);

    // Which module ran which batch, as the checkpoint's batch log says.
    let log = SegmentLog::new(dir.path().join("ck").join("wal"), "batches", false);
    let entries: Vec<BatchEntry> = log.read_all().unwrap();
    assert_eq!(entries.len(), BATCHES as usize);
    let version = |e: &BatchEntry| {
        if e.modules["tally"] == v1.hash_hex() {
            1
        } else {
            2
        }
    };
    let versions: Vec<u8> = entries.iter().map(version).collect();
    let expected_versions: Vec<u8> = (1..=BATCHES)
        .map(|b| {
            if (6..=12).contains(&b) || b >= 21 {
                2
            } else {
                1
            }
        })
        .collect();
    assert_eq!(versions, expected_versions);

    // Offline: apply version k's semantics to exactly its batches.
    let mut gen = GeneratorSource::new(GeneratorConfig {
        kind: GeneratorKind::Text,
        rate: RATE,
        seed: 9,
        words_per_line: 4,
        vocabulary: 60,
        zipf_s: 1.0,
        block_records: 1000,
        batch_records: RATE,
        limit: None,
    });
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let got = outputs(dir.path());
    assert_eq!(got.len(), BATCHES as usize, "every batch written once");
    for (i, v) in versions.iter().enumerate() {
        let t = (i as i64 + 1) * 1000;
        let (_, blocks) = gen.next_batch(t).unwrap();
        let mut seen: BTreeMap<String, i64> = BTreeMap::new();
        for block in &blocks {
            for (_, line) in block.iter() {
                for w in std::str::from_utf8(line).unwrap().split_whitespace() {
                    *seen.entry(w.to_string()).or_default() += 1;
                }
            }
        }
        let mut expected = BTreeMap::new();
        for (w, n) in seen {
            let total = counts.entry(w.clone()).or_default();
            *total += n;
            expected.insert(w, if *v == 1 { *total } else { *total * 10 });
        }
        assert_eq!(got[&t], expected, "batch {t} (module v{v})");
    }

    // A crash that lost every checkpoint but the first: recovery replays all
    // 30 batches, each with the module that ran it, migrating at the same
    // batches — and writes the same bytes.
    let before = tree(&dir.path().join("out"));
    for e in std::fs::read_dir(dir.path().join("ck").join("checkpoints")).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("00000000000000000000.bin")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let replies = run(dir.path(), Vec::new());
    assert!(replies.is_empty());
    assert_eq!(tree(&dir.path().join("out")), before);
}
