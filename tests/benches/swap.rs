//! Hot-swap figures (issue 6): latency from a swap request to the first
//! completed batch on the new module, and the batch-time hiccup around the
//! swap (scheduling and total delay of the batches next to it), on a live
//! job with the system clock.
//!
//! `cargo bench -p weir-tests --bench swap`

use std::time::{Duration, Instant};

use weir::stream::StateOptions;
use weir::{ClockMode, SourceSpec, StreamingConfig};
use weir_tests::{context, guest, guests, runtime};

fn main() {
    let interval = Duration::from_millis(200);
    let ctx = context(StreamingConfig {
        job_name: "swap-bench".into(),
        batch_interval: interval,
        partitions: 2,
        workers: 2,
        clock: ClockMode::System,
        ..StreamingConfig::default()
    });
    let load = |v: Result<&str, &str>| {
        runtime()
            .load_bytes("tally", &std::fs::read(guest(v)).unwrap())
            .unwrap()
    };
    let (v1, v2) = (load(guests::TALLY_V1), load(guests::TALLY_V2));
    let gen = SourceSpec::Generator {
        kind: weir::receiver::generator::GeneratorKind::Text,
        rate: 50_000,
        seed: 1,
        words_per_line: 8,
        vocabulary: 10_000,
        limit: None,
    };
    let counts = ctx
        .source(Some("lines"), gen)
        .unwrap()
        .flat_map(&v1, "split")
        .unwrap()
        .map_with_state(&v1, "count", StateOptions::default())
        .unwrap();
    counts.foreach_batch(|_, _| Ok(())).unwrap();
    let job = ctx.start(None).unwrap();
    let control = job.control();
    let wait_batches = |n: u64| {
        let start = control.status().batches;
        while control.status().batches < start + n {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_batches(5);
    let mut rows = Vec::new();
    for (i, module) in [&v2, &v1, &v2, &v1, &v2, &v1].into_iter().enumerate() {
        let requested = Instant::now();
        let report = control.swap_plugin("tally", module.clone()).expect("swap");
        let applied = requested.elapsed();
        while control
            .status()
            .last_batch_ms
            .is_none_or(|t| t < report.first_batch_ms)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let first_done = requested.elapsed();
        wait_batches(3);
        let status = control.status();
        let around: Vec<_> = status
            .recent
            .iter()
            .filter(|s| {
                (s.batch_time_ms - report.first_batch_ms).abs() <= 2 * interval.as_millis() as i64
            })
            .collect();
        let worst_sched = around
            .iter()
            .map(|s| s.scheduling_delay_ms)
            .fold(0.0, f64::max);
        let worst_total = around.iter().map(|s| s.total_delay_ms).fold(0.0, f64::max);
        rows.push((
            i + 1,
            report.migrated_keys,
            applied,
            first_done,
            worst_sched,
            worst_total,
        ));
    }
    let normal: Vec<f64> = control
        .status()
        .recent
        .iter()
        .map(|s| s.total_delay_ms)
        .collect();
    job.stop();
    job.await_termination().unwrap();
    let mut sorted = normal.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "hot swap on a live job: 50 K lines/s x 8 words, map_with_state, 200 ms batches, 2 workers"
    );
    println!(" swap  migrated keys  request→applied  request→first batch done  worst sched. delay  worst total delay (±2 batches)");
    for (i, keys, applied, done, sched, total) in &rows {
        println!(
            " {i:>4}  {keys:>13}  {:>12.1} ms  {:>21.1} ms  {:>15.1} ms  {:>14.1} ms",
            applied.as_secs_f64() * 1e3,
            done.as_secs_f64() * 1e3,
            sched,
            total
        );
    }
    println!(
        "median total delay of all recent batches: {:.1} ms; batch interval {} ms",
        sorted[sorted.len() / 2],
        interval.as_millis()
    );
    let late = rows
        .iter()
        .filter(|r| r.4 > interval.as_millis() as f64)
        .count();
    println!("batches late by more than one interval around swaps: {late} (target 0)");
}
