//! Checkpoint and recovery figures (issue 5):
//!
//! 1. word count throughput from a TCP socket with the write-ahead log on
//!    and off;
//! 2. time to write (and read back) a checkpoint of 1 M keys of state;
//! 3. time from restart to caught up after 60 s of logged input.
//!
//! `cargo bench -p weir-tests --bench recovery [wal|checkpoint|restart]`

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir::checkpoint::{CheckpointConfig, CheckpointData, Checkpointer, Snapshot, FORMAT};
use weir::receiver::generator::GeneratorKind;
use weir::{ClockMode, SourceSpec, StreamingConfig};
use weir_tests::{context, count, guests, records, shared_plugin};

fn wal(on: bool, lines: &[String], words: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let payload: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(payload.as_bytes()).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let config = StreamingConfig {
        job_name: "wal-bench".into(),
        batch_interval: Duration::from_millis(250),
        block_interval: Duration::from_millis(50),
        partitions: 4,
        workers: 2,
        clock: ClockMode::System,
        checkpoint: on.then(|| CheckpointConfig {
            dir: dir.path().to_owned(),
            every_batches: 40,
            keep: 2,
            write_ahead_log: true,
        }),
        ..StreamingConfig::default()
    };
    let ctx = context(config);
    let wc = shared_plugin(guests::WORDCOUNT);
    let counts = ctx
        .socket_text_stream("127.0.0.1", port)
        .unwrap()
        .flat_map(&wc, "split")
        .unwrap()
        .reduce_by_key(&wc, "sum", None)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    counts
        .foreach_batch(move |_, parts| {
            let n: i64 = records(parts).iter().map(|(_, v)| count(v)).sum();
            let _ = tx.send(n as u64);
            Ok(())
        })
        .unwrap();
    let started = Instant::now();
    let job = ctx.start(None).unwrap();
    let mut seen = 0u64;
    while seen < words {
        seen += rx.recv_timeout(Duration::from_secs(300)).expect("batches");
    }
    // From start to the batch that completed the input: receiving, logging
    // and processing, batch waits included.
    let secs = started.elapsed().as_secs_f64();
    job.stop();
    job.await_termination().unwrap();
    server.join().unwrap();
    words as f64 / secs
}

fn checkpoint_1m() {
    let dir = tempfile::tempdir().unwrap();
    let config = CheckpointConfig {
        dir: dir.path().to_owned(),
        every_batches: 1,
        keep: 2,
        write_ahead_log: false,
    };
    let (mut ck, _) = Checkpointer::open(
        config.clone(),
        "bench",
        vec!["x = source(bench)".into()],
        BTreeMap::new(),
        false,
    )
    .unwrap();
    // Keyed state as its snapshot encodes it: per partition, key → (state,
    // last active time).
    let mut stores: Vec<BTreeMap<Vec<u8>, (Vec<u8>, i64)>> = vec![BTreeMap::new(); 4];
    for i in 0..1_000_000u64 {
        let key = format!("key-{i:07}").into_bytes();
        let p = weir::partition::partition_of(&key, 4);
        stores[p].insert(key, ((i as i64).to_le_bytes().to_vec(), 1000));
    }
    let data = CheckpointData {
        format: FORMAT,
        seq: 1,
        batch_time_ms: 1000,
        zero_ms: 0,
        nodes: vec![(
            "state".into(),
            Snapshot::encode("keyed_state", 1, &Some(stores)),
        )],
        sources: vec![],
        blocks_consumed: None,
        modules: BTreeMap::new(),
    };
    let t = Instant::now();
    ck.write(&data).unwrap();
    let write = t.elapsed();
    let size: u64 = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let t = Instant::now();
    let (_, recovery) = Checkpointer::open(
        config,
        "bench",
        vec!["x = source(bench)".into()],
        BTreeMap::new(),
        false,
    )
    .unwrap();
    let read = t.elapsed();
    assert_eq!(recovery.checkpoint.unwrap().seq, 1);
    println!("checkpoint of 1 M keys (4 partitions, 10-byte keys, 8-byte values):");
    println!(
        "  write (encode + fsync + rename): {:>8.1} ms",
        write.as_secs_f64() * 1e3
    );
    println!(
        "  read back and verify:            {:>8.1} ms",
        read.as_secs_f64() * 1e3
    );
    println!(
        "  size on disk:                    {:>8.1} MB ({:.0} bytes/key)",
        size as f64 / 1e6,
        size as f64 / 1e6
    );
}

fn restart_after_60s(dir: &Path) {
    let wc = shared_plugin(guests::WORDCOUNT);
    let build = || {
        let config = StreamingConfig {
            job_name: "restart-bench".into(),
            batch_interval: Duration::from_secs(1),
            partitions: 4,
            workers: 2,
            clock: ClockMode::Simulated { start_ms: 0 },
            checkpoint: Some(CheckpointConfig {
                dir: dir.to_owned(),
                every_batches: 1000,
                keep: 2,
                write_ahead_log: true,
            }),
            ..StreamingConfig::default()
        };
        let ctx = context(config);
        let lines = ctx
            .source(
                Some("lines"),
                SourceSpec::Generator {
                    kind: GeneratorKind::Text,
                    rate: 20_000,
                    seed: 1,
                    words_per_line: 10,
                    vocabulary: 10_000,
                    limit: None,
                },
            )
            .unwrap();
        let words = lines.flat_map(&wc, "split").unwrap();
        let totals = words
            .update_state_by_key(&wc, "running_count", Default::default())
            .unwrap();
        totals.foreach_batch(|_, _| Ok(())).unwrap();
        ctx
    };
    let t = Instant::now();
    build().run(Some(60)).unwrap();
    let first = t.elapsed();
    // A crash after 60 s of input: only the initial checkpoint survives, so
    // all 60 logged batches must be replayed.
    for e in std::fs::read_dir(dir.join("checkpoints")).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains("00000000000000000000")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let t = Instant::now();
    let summary = build().run(Some(60)).unwrap();
    let replay = t.elapsed();
    assert_eq!(summary.batches, 60, "all 60 batches replayed");
    println!("restart after 60 s of logged input (20 K lines/s, stateful word count, 4 partitions, 2 workers):");
    println!(
        "  first run, 60 batches:         {:>8.2} s",
        first.as_secs_f64()
    );
    println!(
        "  restart to caught up (replay): {:>8.2} s   (target < 2 s)",
        replay.as_secs_f64()
    );
}

fn main() {
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let want = |s: &str| only.as_deref().is_none_or(|o| o == s);
    if want("wal") {
        let lines: Vec<String> = (0..2_000_000)
            .map(|i| {
                format!(
                    "alpha beta{} gamma{} delta epsilon{} zeta eta theta iota kappa",
                    i % 97,
                    i % 13,
                    i % 1000
                )
            })
            .collect();
        let words = lines.len() as u64 * 10;
        let off = wal(false, &lines, words);
        let on = wal(true, &lines, words);
        println!("socket word count, {} lines x 10 words:", lines.len());
        println!("  WAL off: {:>6.2} M words/s", off / 1e6);
        println!(
            "  WAL on:  {:>6.2} M words/s   (cost {:.0}%, target <= 20%)",
            on / 1e6,
            (1.0 - on / off) * 100.0
        );
    }
    if want("checkpoint") {
        checkpoint_1m();
    }
    if want("restart") {
        let dir = tempfile::tempdir().unwrap();
        restart_after_60s(dir.path());
    }
}
