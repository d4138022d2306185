//! Scaling out through a consumer group: `cargo bench -p weir-tests --bench scale_out`.
//!
//! A local broker (tansu, started here) holds `WEIR_BENCH_SCALE_LINES`
//! lines (default 60 000, 5 words each from a 2 000-word vocabulary) in a
//! 6-partition topic. Each configuration runs with 1, 2 and 3 instances of
//! the same pipeline (jobs in this process, each with its own runtime,
//! worker pool and Kafka clients, sharing the machine's cores), started
//! together, and is timed until the group has committed every input
//! record:
//!
//! - stateless: `flat_map` split of the lines, written to a topic keyed by
//!   word (stage 1 of the README's two-stage word count);
//! - stateful: `map_with_state` running totals of those words, written to a
//!   topic (stage 2), state in the changelog after every batch.
//!
//! Then the handover: two instances of the stateful job run on a
//! rate-limited input; one is stopped gracefully, and the time from the
//! stop request to the other instance owning all partitions, and to its
//! first batch after that, is reported (best and worst of
//! `WEIR_BENCH_SCALE_HANDOVERS`, default 3).
//!
//! On this 2-core machine more instances share the same cores (and one
//! SQLite broker), so the figures show the cost of the coordination, not a
//! speed-up.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::config::{Overrides, Pipeline};
use weir::job::RunningJob;
use weir_tests::kafka::Broker;
use weir_tests::{guest, guests};

const PARTITIONS: i32 = 6;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pipeline_text(broker: &Broker, stateful: bool, tag: &str, input: &str, rate: &str) -> String {
    let b = broker.address();
    let (op, function, output) = if stateful {
        ("map_with_state", "wc:running_count", "format = \"text\"")
    } else {
        ("flat_map", "wc:split", "")
    };
    format!(
        r#"
[job]
name = "{tag}"
batch_interval = "1s"
workers = 2

[plugins]
wc = "{plugin}"

[scale_out]
changelog = "{tag}-changelog"

[[source]]
name = "in"
type = "kafka"
brokers = "{b}"
topics = ["{input}"]
group = "{tag}"
starting_offsets = "earliest"
{rate}

[[stream]]
name = "out"
op = "{op}"
input = "in"
function = "{function}"

[[output]]
name = "out"
stream = "out"
type = "kafka"
brokers = "{b}"
topic = "{tag}-out"
{output}
"#,
        plugin = guest(guests::WORDCOUNT).display(),
    )
}

/// Starts instance `name` of the pipeline in `text`.
fn start(dir: &Path, tag: &str, text: &str, name: &str) -> RunningJob {
    let path = dir.join(format!("{tag}.toml"));
    std::fs::write(&path, text).expect("pipeline");
    let mut p = Pipeline::parse(&path, text).expect("pipeline parses");
    p.apply(&Overrides {
        instance: Some(name.into()),
        ..Overrides::default()
    });
    p.build()
        .expect("pipeline builds")
        .start(None)
        .expect("job starts")
}

fn committed(broker: &Broker, group: &str, topic: &str) -> i64 {
    broker
        .committed_offsets(group, topic, PARTITIONS)
        .iter()
        .map(|o| (*o).max(0))
        .sum()
}

fn prepare(broker: &Broker, tag: &str) {
    broker.create_topic(&format!("{tag}-out"), PARTITIONS);
    broker.create_topic_with(
        &format!("{tag}-changelog"),
        PARTITIONS,
        &[("cleanup.policy", "compact")],
    );
}

/// Runs `n` instances until the group has committed `total` records of
/// `input`; the time from their start.
fn timed_run(
    broker: &Broker,
    dir: &Path,
    stateful: bool,
    tag: &str,
    input: &str,
    n: usize,
    total: i64,
) -> Duration {
    prepare(broker, tag);
    let text = pipeline_text(broker, stateful, tag, input, "");
    let started = Instant::now();
    let jobs: Vec<RunningJob> = (0..n)
        .map(|i| start(dir, tag, &text, &format!("{tag}-{i}")))
        .collect();
    while committed(broker, tag, input) < total {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{tag} did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    for j in &jobs {
        j.stop();
    }
    for j in jobs {
        j.await_termination().expect("instance ends cleanly");
    }
    took
}

/// One graceful handover: (stop → the other owns every partition, stop →
/// its first batch after that).
fn handover(broker: &Broker, dir: &Path, round: usize, input: &str) -> (Duration, Duration) {
    let tag = format!("handover-{round}");
    prepare(broker, &tag);
    let text = pipeline_text(broker, true, &tag, input, "max_rate_per_partition = 50");
    let staying = start(dir, &tag, &text, "staying");
    let leaving = start(dir, &tag, &text, "leaving");
    let owns = |j: &RunningJob| j.control().status().partitions.map_or(0, |p| p.len());
    let deadline = Instant::now() + Duration::from_secs(300);
    while owns(&staying) == 0 || owns(&leaving) == 0 || committed(broker, &tag, input) == 0 {
        assert!(Instant::now() < deadline, "the two instances never shared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = Instant::now();
    leaving.stop();
    // (time, the last batch then) once every partition is owned.
    let mut all: Option<(Duration, Option<i64>)> = None;
    loop {
        let s = staying.control().status();
        if all.is_none() && s.partitions.as_ref().map_or(0, Vec::len) == PARTITIONS as usize {
            all = Some((stopped.elapsed(), s.last_batch_ms));
        }
        if let Some((a, then)) = all {
            // The first batch completed after the takeover: it ran them.
            if s.last_batch_ms > then {
                let first = stopped.elapsed();
                leaving.await_termination().expect("clean exit");
                staying.stop();
                staying.await_termination().expect("clean exit");
                return (a, first);
            }
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(120),
            "no handover within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let lines = env("WEIR_BENCH_SCALE_LINES", 60_000);
    let handovers = env("WEIR_BENCH_SCALE_HANDOVERS", 3);
    println!("weir scale-out benchmark: {lines} lines of 5 words, {PARTITIONS} partitions, instances in one process on this machine's cores");
    let broker = Broker::start();
    broker.create_topic("lines", PARTITIONS);
    let mut rng = StdRng::seed_from_u64(3);
    let text: Vec<String> = (0..lines)
        .map(|_| {
            (0..5)
                .map(|_| format!("w{}", rng.gen_range(0..2000)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let records: Vec<(Option<i32>, &[u8], &[u8])> = text
        .iter()
        .enumerate()
        .map(|(i, l)| (Some(i as i32 % PARTITIONS), &b""[..], l.as_bytes()))
        .collect();
    broker.produce("lines", &records);
    let dir = tempfile::tempdir().expect("dir");
    let total_words = (lines * 5) as i64;
    let t = Instant::now();
    let read: usize = broker.read_committed("lines").iter().map(Vec::len).sum();
    assert_eq!(read, lines);
    println!(
        "  the broker serves a plain consumer {:.0} lines/s",
        lines as f64 / t.elapsed().as_secs_f64()
    );
    println!("  instances  stateless (lines/s)  stateful (words/s)");
    for n in 1..=3 {
        let split = format!("split{n}");
        let t1 = timed_run(&broker, dir.path(), false, &split, "lines", n, lines as i64);
        if n == 1 {
            let t = Instant::now();
            let read: usize = broker
                .read_committed("split1-out")
                .iter()
                .map(Vec::len)
                .sum();
            println!(
                "  (the split's output, {read} records with weir's headers, reads back at {:.0} records/s)",
                read as f64 / t.elapsed().as_secs_f64()
            );
        }
        let count = format!("count{n}");
        let t2 = timed_run(
            &broker,
            dir.path(),
            true,
            &count,
            &format!("{split}-out"),
            n,
            total_words,
        );
        println!(
            "  {n:>9}  {:>10.0} ({:>5.1} s)  {:>10.0} ({:>5.1} s)",
            lines as f64 / t1.as_secs_f64(),
            t1.as_secs_f64(),
            total_words as f64 / t2.as_secs_f64(),
            t2.as_secs_f64()
        );
    }
    drop(broker);
    // Handovers on a broker of their own: tansu's fetches slow down as its
    // database grows, which would be measured instead.
    let broker = Broker::start();
    broker.create_topic("words", PARTITIONS);
    let words: Vec<(Option<i32>, Vec<u8>, Vec<u8>)> = (0..6000)
        .map(|i| {
            (
                None,
                format!("w{}", i % 500).into_bytes(),
                1i64.to_le_bytes().to_vec(),
            )
        })
        .collect();
    let borrowed: Vec<(Option<i32>, &[u8], &[u8])> = words
        .iter()
        .map(|(p, k, v)| (*p, k.as_slice(), v.as_slice()))
        .collect();
    broker.produce("words", &borrowed);
    let mut all = Vec::new();
    let mut first = Vec::new();
    for round in 0..handovers {
        let (a, f) = handover(&broker, dir.path(), round, "words");
        println!(
            "  handover {round}: all partitions owned {:.2} s after the stop, first batch with them {:.2} s",
            a.as_secs_f64(),
            f.as_secs_f64()
        );
        all.push(a);
        first.push(f);
    }
    let range = |v: &[Duration]| {
        (
            v.iter().min().map_or(0.0, Duration::as_secs_f64),
            v.iter().max().map_or(0.0, Duration::as_secs_f64),
        )
    };
    let (a0, a1) = range(&all);
    let (f0, f1) = range(&first);
    println!("handover (graceful stop, 1 s batches, heartbeat 500 ms): partitions owned after {a0:.2}–{a1:.2} s, first batch after {f0:.2}–{f1:.2} s");
}
