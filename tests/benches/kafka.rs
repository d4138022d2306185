//! Kafka against the file source: `cargo bench -p weir-tests --bench kafka`.
//!
//! One corpus of text lines (10 words per line from a 1 000-word
//! vocabulary) is written once into a 4-partition topic of a local broker
//! (tansu, started here) and once into 4 files. The same word count
//! (`flat_map` `split` → `reduce_by_key` `sum`, wasm) then runs over it, on
//! the simulated clock, in batches of `WEIR_BENCH_KAFKA_BATCH` lines:
//!
//! - `files → files`: the file source, counts to text files;
//! - `kafka → files`: the Kafka source, counts to text files;
//! - `kafka → kafka`: the Kafka source, counts to a topic, one transaction
//!   per batch;
//! - `kafka → map → kafka`: records copied through a 1:1 `map` (testkit
//!   `tag`) to a topic: the transport cost.
//!
//! Runs alternate (`WEIR_BENCH_KAFKA_ROUNDS`, default 3) and the best of
//! each is reported, as lines/s and as the Kafka configurations' time over
//! the file source's, next to how fast the broker serves a plain consumer
//! (its ceiling). Environment: `WEIR_BENCH_KAFKA_LINES` (400 000).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::kafka::KafkaEndpoint;
use weir::output::kafka::{Delivery, KafkaOutputSpec, Partitioner, ValueFormat};
use weir::receiver::kafka::{KafkaSourceSpec, StartingOffsets};
use weir::{ClockMode, SourceSpec, StreamingConfig, StreamingContext};
use weir_tests::kafka::Broker;
use weir_tests::{guest, guests};

const PARTITIONS: usize = 4;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn corpus(lines: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(5);
    (0..lines)
        .map(|_| {
            (0..10)
                .map(|_| format!("w{}", rng.gen_range(0..1000)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Config {
    FilesToFiles,
    KafkaToFiles,
    KafkaToKafka,
    KafkaMapKafka,
}

impl Config {
    fn label(self) -> &'static str {
        match self {
            Config::FilesToFiles => "files → files (word count)",
            Config::KafkaToFiles => "kafka → files (word count)",
            Config::KafkaToKafka => "kafka → kafka (word count)",
            Config::KafkaMapKafka => "kafka → map → kafka (copy)",
        }
    }
}

/// Runs one configuration to the end of the corpus; returns its time.
fn run(
    config: Config,
    broker: &Broker,
    data: &Path,
    out: &Path,
    lines: usize,
    batch: usize,
    round: usize,
) -> Duration {
    let ctx = StreamingContext::new(StreamingConfig {
        clock: ClockMode::Simulated { start_ms: 0 },
        partitions: PARTITIONS,
        workers: 2,
        job_name: format!("bench{round}"),
        ..StreamingConfig::default()
    })
    .expect("context");
    let mut endpoint = KafkaEndpoint {
        brokers: broker.address(),
        properties: Default::default(),
    };
    // WEIR_BENCH_KAFKA_DEBUG=fetch,broker: librdkafka's debug lines.
    if let Ok(d) = std::env::var("WEIR_BENCH_KAFKA_DEBUG") {
        endpoint.properties.insert("debug".into(), d);
    }
    let source = match config {
        Config::FilesToFiles => SourceSpec::Files {
            dir: data.to_owned(),
            include_existing: true,
            limits: Default::default(),
        },
        _ => SourceSpec::Kafka(KafkaSourceSpec {
            endpoint: endpoint.clone(),
            topics: vec!["corpus".into()],
            group: format!("bench-{round}-{}", config as u8),
            starting_offsets: StartingOffsets::default(),
            max_rate_per_partition: Some((batch / PARTITIONS) as u64),
            metadata: false,
            max_records_per_batch: None,
        }),
    };
    let wc = ctx
        .load_plugin(guest(guests::WORDCOUNT))
        .expect("wordcount plugin");
    let lines_stream = ctx.source(Some("lines"), source).expect("source");
    let result = match config {
        Config::KafkaMapKafka => {
            let kit = ctx
                .load_plugin(guest(guests::TESTKIT))
                .expect("testkit plugin");
            lines_stream.map(&kit, "tag").expect("map")
        }
        _ => lines_stream
            .flat_map(&wc, "split")
            .and_then(|w| w.reduce_by_key(&wc, "sum", None))
            .expect("word count"),
    };
    let records = Arc::new(AtomicU64::new(0));
    match config {
        Config::FilesToFiles | Config::KafkaToFiles => {
            let seen = records.clone();
            result
                .foreach_batch(move |_, parts| {
                    seen.fetch_add(
                        parts.iter().map(|p| p.len() as u64).sum(),
                        Ordering::Relaxed,
                    );
                    Ok(())
                })
                .expect("count");
            result
                .save_as_text_files(out.join(format!("r{round}-{}", config as u8)), None)
                .expect("files");
        }
        _ => {
            let topic = format!("out-{round}-{}", config as u8);
            broker.create_topic(&topic, PARTITIONS as i32);
            result
                .to_kafka(
                    "out",
                    KafkaOutputSpec {
                        endpoint,
                        topic,
                        partitioner: Partitioner::KeyHash("murmur2".into()),
                        transactional_id: None,
                        format: ValueFormat::Raw,
                        delivery: Delivery::Idempotent,
                    },
                )
                .expect("kafka output");
        }
    }
    // The file source reads every file in its first batch; Kafka batches
    // take `batch` lines each.
    let batches = match config {
        Config::FilesToFiles => 1,
        _ => lines.div_ceil(batch) as u64,
    };
    let started = Instant::now();
    let summary = ctx.run(Some(batches)).expect("run");
    let elapsed = started.elapsed();
    let input: u64 = summary.stats.iter().map(|s| s.input_records).sum();
    assert_eq!(input, lines as u64, "{}: every line read", config.label());
    elapsed
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Warnings (a broker that is away, a stalled read) show; WEIR_LOG=info
    // shows every batch.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let lines = env("WEIR_BENCH_KAFKA_LINES", 400_000);
    let batch = env("WEIR_BENCH_KAFKA_BATCH", 100_000);
    let rounds = env("WEIR_BENCH_KAFKA_ROUNDS", 3);
    println!("weir Kafka benchmark: {lines} lines of 10 words, {PARTITIONS} partitions, 2 workers, Kafka batches of {batch} lines");
    let broker = Broker::start();
    broker.create_topic("corpus", PARTITIONS as i32);
    let text = corpus(lines);
    let records: Vec<(Option<i32>, &[u8], &[u8])> = text
        .iter()
        .enumerate()
        .map(|(i, l)| (Some((i % PARTITIONS) as i32), &b""[..], l.as_bytes()))
        .collect();
    let t = Instant::now();
    broker.produce("corpus", &records);
    println!("  corpus produced in {:.1} s", t.elapsed().as_secs_f64());
    // The broker's own ceiling: a plain consumer reading the corpus.
    let t = Instant::now();
    let read: usize = broker.read_committed("corpus").iter().map(Vec::len).sum();
    let raw = t.elapsed();
    assert_eq!(read, lines);
    println!(
        "  the broker serves a plain consumer {:.0} lines/s ({:.1} s for the corpus)",
        lines as f64 / raw.as_secs_f64(),
        raw.as_secs_f64()
    );
    let data = tempfile::tempdir().expect("dir");
    for p in 0..PARTITIONS {
        let part: Vec<&str> = text
            .iter()
            .skip(p)
            .step_by(PARTITIONS)
            .map(String::as_str)
            .collect();
        std::fs::write(
            data.path().join(format!("part-{p}.txt")),
            part.join("\n") + "\n",
        )
        .expect("corpus file");
    }
    let out = tempfile::tempdir().expect("dir");
    let configs = [
        Config::FilesToFiles,
        Config::KafkaToFiles,
        Config::KafkaToKafka,
        Config::KafkaMapKafka,
    ];
    let mut best = [Duration::MAX; 4];
    // WEIR_BENCH_KAFKA_ONLY=2 runs the second configuration alone.
    let only = std::env::var("WEIR_BENCH_KAFKA_ONLY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    for round in 0..rounds {
        for (i, c) in configs.iter().enumerate() {
            if only.is_some_and(|o| o != i + 1) {
                continue;
            }
            let d = run(*c, &broker, data.path(), out.path(), lines, batch, round);
            println!(
                "  round {round}: {:<28} {:>7.2} s",
                c.label(),
                d.as_secs_f64()
            );
            best[i] = best[i].min(d);
        }
    }
    println!("best of {rounds}:");
    let base = best[0].as_secs_f64();
    for (c, d) in configs.iter().zip(best) {
        let s = d.as_secs_f64();
        println!(
            "  {:<28} {:>10.0} lines/s   {:>5.2}× the file source's time",
            c.label(),
            lines as f64 / s,
            s / base
        );
    }
    let overhead = best[2].as_secs_f64() / base - 1.0;
    println!(
        "Kafka on both sides adds {:.0} % to word count (target ≤ 30 %)",
        overhead * 100.0
    );
}
