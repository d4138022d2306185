//! Issue 15 benchmark, overload: `cargo bench -p weir-tests --bench overload [-- SECTION]`.
//!
//! Word count (`flat_map` `split` → `reduce_by_key` `sum`, wasm) over a
//! socket source on the real clock, 1 s batches, 4 partitions, 2 workers;
//! a second output counts the lines. A sender thread in the same child
//! process (a real TCP server on loopback; its text buffer is ~1.5 MB of
//! the RSS) writes lines of 8–12 Zipf words.
//!
//! 1. **Capacity** (`capacity`, always first): the sender writes as fast as
//!    TCP takes it for 20 s without backpressure; the job's capacity is
//!    lines / processing time over the batches after the first two.
//! 2. **10× with backpressure** (`backpressure`): the sender offers 10× the
//!    capacity (paced; what TCP refuses it keeps trying to send) for
//!    `WEIR_BENCH_OVERLOAD_SECS` (300) with `[job] backpressure`; peak RSS
//!    and RSS every 10 s, the scheduling delay curve, lines sent and counted
//!    (all must match once the sender stops and the job catches up).
//!    `WEIR_BENCH_INITIAL_RATE` sets `backpressure_initial_rate` (none by
//!    default: the first batch takes all it can, the transient shows).
//! 3. **10× without backpressure** (`unlimited`): the same for
//!    `WEIR_BENCH_UNLIMITED_SECS` (60): memory bounded by the pending
//!    blocks; the delay grows.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use weir::receiver::rate::PidConfig;
use weir::stream::events::{BatchCompleted, StreamingListener};
use weir::{ClockMode, SourceSpec, StreamingConfig, StreamingContext};
use weir_tests::corpus::Vocabulary;
use weir_tests::harness::{env_usize, fmt_rate, join, peak_rss_mb, report, run_child, status_kb};
use weir_tests::{guest, guests};

fn main() {
    let Some(args) = weir_tests::harness::args_or_run_child(child) else {
        return;
    };
    let only = args.first().cloned();
    println!("weir overload benchmark (issue 15)");
    println!(
        "  {} CPU(s); socket word count, 1 s batches, 4 partitions, 2 workers, real clock",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let cap = run_child(&["job", "0", "0", "20"]);
    let records = cap.list("records");
    let processing = cap.list("processing_ms");
    let lines: f64 = records.iter().skip(2).sum();
    let ms: f64 = processing.iter().skip(2).sum();
    let capacity = lines / ms * 1000.0;
    println!(
        "\n1. capacity: {} lines/s ({lines} lines in {:.1} s of processing), peak RSS {:.0} MB",
        fmt_rate(capacity),
        ms / 1000.0,
        cap.f64("peak_rss_mb")
    );
    let offered = (capacity * 10.0) as u64;
    let sections = [
        (
            "backpressure",
            "1",
            env_usize("WEIR_BENCH_OVERLOAD_SECS", 300),
        ),
        ("unlimited", "0", env_usize("WEIR_BENCH_UNLIMITED_SECS", 60)),
    ];
    for (i, (name, bp, secs)) in sections.into_iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let r = run_child(&["job", &offered.to_string(), bp, &secs.to_string()]);
        print_run(i + 2, name, offered, secs, &r);
    }
}

fn print_run(n: usize, name: &str, offered: u64, secs: usize, r: &weir_tests::harness::Results) {
    let delays = r.list("delay_ms");
    let records = r.list("records");
    let times = r.list("batch_s");
    println!(
        "\n{n}. {name}: offered {} lines/s (10x) for {secs} s; sent {} lines, counted {} ({})",
        fmt_rate(offered as f64),
        r.get("sent"),
        r.get("counted"),
        if r.get("sent") == r.get("counted") {
            "none lost"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "   peak RSS {:.0} MB; RSS every 10 s (MB): {}",
        r.f64("peak_rss_mb"),
        r.get("rss_mb")
    );
    println!("   batch time (s)   max delay (s)   lines processed (K/s)");
    let mut t = 0.0;
    while t <= times.last().copied().unwrap_or(0.0) {
        let bucket: Vec<usize> = (0..times.len())
            .filter(|&i| times[i] >= t && times[i] < t + 10.0)
            .collect();
        let delay = bucket.iter().map(|&i| delays[i]).fold(0.0, f64::max);
        let lines: f64 = bucket.iter().map(|&i| records[i]).sum();
        println!(
            "   {:>5.0}-{:<5.0}      {:>8.2}        {:>8.1}",
            t,
            t + 10.0,
            delay / 1000.0,
            lines / 10.0 / 1000.0
        );
        t += 10.0;
    }
    let half = delays.len() / 2;
    let max = |xs: &[f64]| xs.iter().cloned().fold(0.0, f64::max);
    println!(
        "   max delay {:.2} s in the first half of the batches, {:.2} s in the second; {} batches",
        max(&delays[..half]) / 1000.0,
        max(&delays[half..]) / 1000.0,
        delays.len()
    );
}

/// Every batch as the listener saw it.
#[derive(Default)]
struct Batches {
    seen: Mutex<Vec<(i64, u64, f64, f64)>>,
    tx: Mutex<Option<mpsc::Sender<()>>>,
}

impl StreamingListener for Batches {
    fn on_batch_completed(&self, e: &BatchCompleted) {
        self.seen.lock().unwrap().push((
            e.batch_time_ms,
            e.input_records,
            e.scheduling_delay_ms,
            e.processing_ms,
        ));
        if let Some(tx) = &*self.tx.lock().unwrap() {
            let _ = tx.send(());
        }
    }
}

/// Writes lines to the first connection: `rate` lines/s (0: as fast as
/// TCP takes them) for `secs`; the lines written.
fn sender(listener: TcpListener, rate: u64, secs: u64) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let vocabulary = Vocabulary::new(10_000, &mut rng);
    let text: Vec<u8> = vocabulary
        .batch(20_000, &mut rng)
        .iter()
        .flat_map(|(_, v)| v.iter().copied().chain([b'\n']))
        .collect();
    let ends: Vec<usize> = text
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let (mut conn, _) = listener.accept().unwrap();
    let started = Instant::now();
    let (mut sent, mut line) = (0u64, 0usize);
    while started.elapsed() < Duration::from_secs(secs) {
        let owed = match rate {
            0 => 1000,
            r => (started.elapsed().as_secs_f64() * r as f64) as u64 - sent,
        };
        if owed == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // Whole lines from the buffer, up to its end.
        let n = (owed as usize).min(1000).min(ends.len() - line);
        let from = if line == 0 { 0 } else { ends[line - 1] };
        if conn.write_all(&text[from..ends[line + n - 1]]).is_err() {
            break;
        }
        sent += n as u64;
        line = (line + n) % ends.len();
    }
    sent
}

fn child(args: &[String]) {
    weir::memory::return_large_buffers();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let ["job", rate, bp, secs] = a.as_slice() else {
        panic!("unknown child arguments {a:?}");
    };
    let (rate, secs): (u64, u64) = (rate.parse().unwrap(), secs.parse().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sending = std::thread::spawn(move || sender(listener, rate, secs));
    let ctx = StreamingContext::new(StreamingConfig {
        job_name: "bench-overload".into(),
        batch_interval: Duration::from_secs(1),
        partitions: 4,
        workers: 2,
        clock: ClockMode::System,
        backpressure: (*bp == "1").then(|| PidConfig {
            initial_rate: std::env::var("WEIR_BENCH_INITIAL_RATE")
                .ok()
                .map(|r| r.parse().expect("WEIR_BENCH_INITIAL_RATE")),
            ..PidConfig::default()
        }),
        ..StreamingConfig::default()
    })
    .expect("context");
    let wc = ctx.load_plugin(guest(guests::WORDCOUNT)).expect("load");
    let lines = ctx
        .source(
            Some("lines"),
            SourceSpec::Socket {
                host: "127.0.0.1".into(),
                port,
            },
        )
        .expect("source");
    let words = lines.flat_map(&wc, "split").expect("split");
    let counts = words.reduce_by_key(&wc, "sum", None).expect("sum");
    counts
        .foreach_batch(|_, _| Ok(()))
        .expect("word count output");
    let counted = Arc::new(AtomicU64::new(0));
    let sink = counted.clone();
    let line_count = lines.count().expect("count");
    line_count
        .foreach_batch(move |_, parts| {
            let n: i64 = parts
                .iter()
                .flat_map(|p| p.iter())
                .map(|(_, v)| weir_tests::count(v))
                .sum();
            sink.fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        })
        .expect("line count output");
    let batches = Arc::new(Batches::default());
    let (tx, rx) = mpsc::channel();
    *batches.tx.lock().unwrap() = Some(tx);
    ctx.add_listener(batches.clone());
    let started = Instant::now();
    let job = ctx.start(None).expect("start");
    let rss = sample_rss(started);
    let sent = sending.join().unwrap();
    // Caught up: every line sent counted (or the job is stuck: give up).
    let deadline = Instant::now() + Duration::from_secs(secs.max(60));
    while counted.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
    job.stop();
    job.await_termination().expect("run");
    let seen = batches.seen.lock().unwrap().clone();
    let t0 = seen.first().map_or(0, |b| b.0);
    report(&[
        ("sent", sent.to_string()),
        ("counted", counted.load(Ordering::Relaxed).to_string()),
        ("peak_rss_mb", format!("{:.1}", peak_rss_mb())),
        ("rss_mb", rss.lock().unwrap().join(",")),
        (
            "batch_s",
            join(
                &seen
                    .iter()
                    .map(|b| (b.0 - t0) as f64 / 1e3)
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "records",
            join(&seen.iter().map(|b| b.1 as f64).collect::<Vec<_>>()),
        ),
        (
            "delay_ms",
            join(&seen.iter().map(|b| b.2).collect::<Vec<_>>()),
        ),
        (
            "processing_ms",
            join(&seen.iter().map(|b| b.3).collect::<Vec<_>>()),
        ),
    ]);
}

/// RSS (MB) every 10 s from `started`, on a thread of its own.
fn sample_rss(started: Instant) -> Arc<Mutex<Vec<String>>> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let out = samples.clone();
    std::thread::spawn(move || loop {
        let due = Duration::from_secs(10 * (out.lock().unwrap().len() as u64 + 1));
        std::thread::sleep(due.saturating_sub(started.elapsed()));
        let mb = status_kb("VmRSS:") / 1024.0;
        out.lock().unwrap().push(format!("{mb:.0}"));
    });
    samples
}
