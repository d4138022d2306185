//! NEXMark benchmark: `cargo bench -p weir-tests --bench nexmark [-- QUERY...]`.
//!
//! Runs the example pipelines `examples/pipelines/nexmark/q*.toml` as they
//! are (the test-built `nexmark` plugin in place of `target/plugins/`, the
//! generator's rate set to the events of one 1 s batch), each in a fresh
//! child process (this binary re-run with `__child ...`) on the simulated
//! clock: batches back to back, no waiting. The outputs are the pipelines'
//! own `print` outputs (a few records per batch, to the child's stdout).
//!
//! A figure is events per second of batch processing time (the nexmark
//! generator making the events is part of it, as a Flink datagen source is
//! part of Flink's figures) over the measured batches, divided by the
//! workers: events/s **per core**. The windowed queries (q5, q7, q8) warm up
//! for 10 batches, so their windows are full when measured. Flink's
//! per-core figures are those published with Flink's NEXMark results (8
//! cores per TaskManager); the targets are the issue's.
//!
//! Environment: `WEIR_BENCH_WORKERS` (2; also the partitions, unless
//! `WEIR_BENCH_PARTITIONS`), `WEIR_BENCH_NEXMARK_EVENTS` (events per batch,
//! 500000), `WEIR_BENCH_NEXMARK_BATCHES` (measured batches, 10).

use std::time::Duration;

use weir::config::{Overrides, Pipeline};
use weir::receiver::generator::GeneratorKind;
use weir::{ClockMode, SourceSpec, StreamingConfig, StreamingContext};
use weir_tests::harness::{
    env_usize, fmt_rate, join, median, met, report, run_child, source_alone,
};
use weir_tests::{guest, guests};

/// (query, Flink events/s per core, target events/s per core).
const QUERIES: &[(&str, Option<f64>, Option<f64>)] = &[
    ("q0", Some(155e3), Some(3e6)),
    ("q1", Some(158e3), Some(3e6)),
    ("q2", Some(175e3), Some(3e6)),
    ("q3", None, None),
    ("q5", Some(22e3), Some(500e3)),
    ("q7", Some(12e3), Some(300e3)),
    ("q8", Some(146e3), Some(1e6)),
];

fn main() {
    let Some(args) = weir_tests::harness::args_or_run_child(child) else {
        return;
    };
    for a in &args {
        assert!(
            a == "source" || QUERIES.iter().any(|(q, ..)| q == a),
            "unknown query `{a}`; queries: q0 q1 q2 q3 q5 q7 q8, and `source` (the generator alone)"
        );
    }
    let selected = |q: &str| args.is_empty() || args.iter().any(|a| a == q);
    let (events, batches) = (events_per_batch(), measured_batches());
    println!("weir NEXMark benchmark");
    println!(
        "  {} CPU(s) available; {} worker(s), {} partition(s); 1 s batches of {} K events; {batches} measured batches; simulated clock; each query in a fresh process",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        workers(),
        partitions(),
        events / 1000,
    );
    println!(
        "  {:<5} {:>14} {:>13} {:>12} {:>14} {:>6} {:>9}",
        "query", "events/s/core", "median batch", "Flink/core", "target/core", "met", "× Flink"
    );
    if selected("source") {
        let r = run_child(&["source", &events.to_string(), &batches.to_string()]);
        let rate = per_core(events, &r.list("processing_ms")[1..]);
        println!(
            "  {:<5} {:>14} {:>10.1} ms {:>12} {:>14} {:>6} {:>9}",
            "gen",
            fmt_rate(rate),
            median(&r.list("processing_ms")[1..]),
            "—",
            "—",
            "",
            ""
        );
    }
    for &(q, flink, target) in QUERIES {
        if !selected(q) {
            continue;
        }
        let warm_up = if matches!(q, "q5" | "q7" | "q8") {
            10
        } else {
            1
        };
        let r = run_child(&[
            q,
            &events.to_string(),
            &warm_up.to_string(),
            &batches.to_string(),
        ]);
        let times = r.list("processing_ms");
        let measured = &times[warm_up..];
        let rate = per_core(events, measured);
        println!(
            "  {:<5} {:>14} {:>10.1} ms {:>12} {:>14} {:>6} {:>9}",
            q,
            fmt_rate(rate),
            median(measured),
            flink.map_or("—".into(), fmt_rate),
            target.map_or("—".into(), |t| format!(">= {}", fmt_rate(t))),
            target.map_or("", |t| met(rate >= t)),
            flink.map_or(String::new(), |f| format!("{:.0}×", rate / f)),
        );
    }
}

fn workers() -> usize {
    env_usize("WEIR_BENCH_WORKERS", 2).max(1)
}

fn partitions() -> usize {
    env_usize("WEIR_BENCH_PARTITIONS", workers()).max(1)
}

fn events_per_batch() -> u64 {
    env_usize("WEIR_BENCH_NEXMARK_EVENTS", 500_000).max(1) as u64
}

fn measured_batches() -> usize {
    env_usize("WEIR_BENCH_NEXMARK_BATCHES", 10).max(1)
}

/// Events per second of processing time, per worker.
fn per_core(events: u64, processing_ms: &[f64]) -> f64 {
    let seconds: f64 = processing_ms.iter().sum::<f64>() / 1e3;
    events as f64 * processing_ms.len() as f64 / seconds / workers() as f64
}

fn child(args: &[String]) {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["source", events, batches] => child_source(
            events.parse().expect("events"),
            batches.parse().expect("batches"),
        ),
        [q, events, warm_up, batches] => child_query(
            q,
            events.parse().expect("events"),
            warm_up.parse::<u64>().expect("warm-up") + batches.parse::<u64>().expect("batches"),
        ),
        other => panic!("unknown child arguments {other:?}"),
    }
}

/// Runs query `q`'s example pipeline for `batches` batches of `events`.
fn child_query(q: &str, events: u64, batches: u64) {
    let root = weir_tests::workspace_root();
    let example = root.join(format!("examples/pipelines/nexmark/{q}.toml"));
    let text = std::fs::read_to_string(&example).expect("the example pipeline");
    let plugin = guest(guests::NEXMARK);
    let text = text
        .replacen(
            "\"../../../target/plugins/nexmark.wasm\"",
            &format!("{:?}", plugin.display().to_string()),
            1,
        )
        .replacen("rate = 10000", &format!("rate = {events}"), 1);
    let mut pipeline = Pipeline::parse(&example, &text).expect("the pipeline parses");
    pipeline.apply(&Overrides {
        batch_interval: Some(Duration::from_secs(1)),
        partitions: Some(partitions()),
        workers: Some(workers()),
        simulated_clock: true,
        ..Overrides::default()
    });
    let ctx = pipeline.build().expect("the pipeline builds");
    let summary = ctx.run(Some(batches)).expect("run");
    assert_eq!(summary.stats.len() as u64, batches);
    assert!(summary.stats.iter().all(|s| s.input_records == events));
    let times: Vec<f64> = summary.stats.iter().map(|s| s.processing_ms).collect();
    report(&[("processing_ms", join(&times))]);
}

/// The generator alone: its events counted.
fn child_source(events: u64, batches: usize) {
    let ctx = StreamingContext::new(StreamingConfig {
        job_name: "bench-nexmark-source".into(),
        batch_interval: Duration::from_secs(1),
        partitions: partitions(),
        workers: workers(),
        clock: ClockMode::Simulated { start_ms: 0 },
        ..StreamingConfig::default()
    })
    .expect("context");
    let spec = SourceSpec::Generator {
        kind: GeneratorKind::Nexmark,
        rate: events,
        seed: 42,
        words_per_line: 0,
        vocabulary: 1,
        limit: None,
    };
    let times = source_alone(ctx, spec, events, batches);
    report(&[("processing_ms", join(&times))]);
}
