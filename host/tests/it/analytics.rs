//! The real-time analytics example (`examples/pipelines/analytics.toml`,
//! plugin `plugins/analytics`) end to end against a real broker: sensor
//! readings in a 1-partition topic, the example pipeline run by the `weir`
//! binary on the simulated clock, and every batch it wrote — running byte
//! totals every 10 s, 5-minute average temperatures every minute — checked
//! against a computation made here from the input alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_tests::kafka::Broker;

const INTERVAL_MS: i64 = 10_000;
const WINDOW_MS: i64 = 5 * 60_000;
const SLIDE_MS: i64 = 60_000;
/// `max_rate_per_partition`: records per second of the one partition, so a
/// batch takes `RATE × 10 s` records.
const RATE: usize = 1;
const PER_BATCH: usize = RATE * (INTERVAL_MS as usize / 1000);
/// Batches with input; the batches after them are empty.
const INPUT_BATCHES: usize = 40;
const BATCHES: usize = 48;

/// One generated reading: the line produced and what it says.
struct Reading {
    line: String,
    source: String,
    bytes: i64,
    centi_degrees: i64,
}

/// A temperature in hundredths as a decimal with 0, 1 or 2 fraction digits
/// (as many as it needs, or more).
fn decimal(centi: i64, rng: &mut StdRng) -> String {
    let sign = if centi < 0 { "-" } else { "" };
    let (whole, frac) = (centi.abs() / 100, centi.abs() % 100);
    let digits = match (frac % 10 == 0, frac == 0) {
        (_, true) => rng.gen_range(0..=2),
        (true, false) => rng.gen_range(1..=2),
        (false, false) => 2,
    };
    match digits {
        0 => format!("{sign}{whole}"),
        1 => format!("{sign}{whole}.{}", frac / 10),
        _ => format!("{sign}{whole}.{frac:02}"),
    }
}

/// Deterministic readings of several sources: `early` only in the first
/// 6 batches (so it leaves the window later), `late` only from batch 35.
fn readings(n: usize, seed: u64) -> Vec<Reading> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let source = if i < 6 * PER_BATCH && i % 5 == 0 {
                "early".to_owned()
            } else if i >= 34 * PER_BATCH && i % 3 == 0 {
                "late".to_owned()
            } else {
                format!("sensor-{}", rng.gen_range(1..=4))
            };
            let bytes = rng.gen_range(0..5_000);
            let centi_degrees = rng.gen_range(-1_500..=4_500);
            let temperature = decimal(centi_degrees, &mut rng);
            let line = if i % 11 == 0 {
                format!("{i}, {source}, {bytes}, {temperature}")
            } else {
                format!("{i},{source},{bytes},{temperature}")
            };
            Reading {
                line,
                source,
                bytes,
                centi_degrees,
            }
        })
        .collect()
}

/// `(key, value)` text lines: a Kafka record per line, no key, partition 0.
fn produce(broker: &Broker, topic: &str, lines: &[&str]) {
    let records: Vec<(Option<i32>, &[u8], &[u8])> = lines
        .iter()
        .map(|l| (Some(0), &b""[..], l.as_bytes()))
        .collect();
    broker.produce(topic, &records);
}

/// Replaces `from` (which must occur `times` times) in `text`.
fn substitute(text: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "the example pipeline should contain `{from}` {times} time(s)"
    );
    text.replace(from, to)
}

/// The example pipeline, reading `topic` from `broker` at `RATE`, with
/// the test-built plugin and its outputs and checkpoint under `dir`.
fn pipeline(dir: &Path, broker: &Broker, topic: &str) -> PathBuf {
    let example = weir_tests::workspace_root().join("examples/pipelines/analytics.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let plugin = weir_tests::guest(weir_tests::guests::ANALYTICS);
    let text = substitute(
        &text,
        "brokers = \"127.0.0.1:9092\"",
        &format!("brokers = \"{}\"", broker.address()),
        1,
    );
    let text = substitute(
        &text,
        "topics = [\"readings\"]",
        &format!("topics = [\"{topic}\"]\nmax_rate_per_partition = {RATE}"),
        1,
    );
    let text = substitute(
        &text,
        "\"../../target/plugins/analytics.wasm\"",
        &format!("\"{}\"", plugin.display()),
        1,
    );
    // The checkpoint and the two outputs.
    let text = substitute(&text, "\"../../target/", "\"", 3);
    let path = dir.join("analytics.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the pipeline for `batches` batches on the simulated clock.
fn run(pipeline: &Path, batches: usize) -> (bool, String) {
    let out = crate::support::weir()
        .arg("run")
        .arg(pipeline)
        .args(["--batches", &batches.to_string(), "--simulated-clock"])
        .env("WEIR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The batches a `text_files` output wrote: batch time → `(key, value)`
/// of every line of every part file.
fn text_batches(dir: &Path, name: &str) -> BTreeMap<i64, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(time) = file.strip_prefix(&format!("{name}-")) else {
            continue;
        };
        let time: i64 = time
            .parse()
            .unwrap_or_else(|_| panic!("unexpected output {}", path.display()));
        assert!(
            path.join("_SUCCESS").is_file(),
            "{} has no _SUCCESS",
            path.display()
        );
        let mut records = BTreeMap::new();
        let parts = crate::support::part_files(&path);
        assert!(!parts.is_empty(), "{} has no part files", path.display());
        for part in parts {
            for line in std::fs::read_to_string(&part).unwrap().lines() {
                let pair = line
                    .strip_prefix('(')
                    .and_then(|l| l.strip_suffix(')'))
                    .and_then(|l| l.rsplit_once(','))
                    .unwrap_or_else(|| panic!("{}: not `(key,value)`: {line:?}", part.display()));
                let dup = records.insert(pair.0.to_owned(), pair.1.to_owned());
                assert!(dup.is_none(), "{}: key {} twice", path.display(), pair.0);
            }
        }
        out.insert(time, records);
    }
    out
}

/// The records of the batch at `t` (batch `k` at `k × interval`, from 1,
/// holds records `[(k−1)·n, k·n)`).
fn batch_records(input: &[Reading], t: i64) -> &[Reading] {
    let k = (t / INTERVAL_MS) as usize;
    let from = ((k - 1) * PER_BATCH).min(input.len());
    let until = (k * PER_BATCH).min(input.len());
    &input[from..until]
}

/// Running totals of bytes per source after every batch.
fn expected_totals(input: &[Reading]) -> BTreeMap<i64, BTreeMap<String, String>> {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    (1..=BATCHES as i64)
        .map(|k| {
            let t = k * INTERVAL_MS;
            for r in batch_records(input, t) {
                *totals.entry(r.source.clone()).or_default() += r.bytes;
            }
            let text = totals
                .iter()
                .map(|(s, n)| (s.clone(), n.to_string()))
                .collect();
            (t, text)
        })
        .collect()
}

/// `sum / count` hundredths as degrees with 2 decimals, half away from
/// zero.
fn average(sum: i64, count: i64) -> String {
    let (q, r) = (sum.div_euclid(count), sum.rem_euclid(count));
    // sum / count = q + r / count with 0 ≤ r < count.
    let hundredths = if 2 * r > count || (2 * r == count && sum >= 0) {
        q + 1
    } else {
        q
    };
    let sign = if hundredths < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        hundredths.abs() / 100,
        hundredths.abs() % 100
    )
}

/// Average temperature per source of the window `(t − 5 min, t]` at every
/// slide, sources without readings left out.
fn expected_averages(input: &[Reading]) -> BTreeMap<i64, BTreeMap<String, String>> {
    let last = BATCHES as i64 * INTERVAL_MS;
    (1..)
        .map(|j| j * SLIDE_MS)
        .take_while(|&t| t <= last)
        .map(|t| {
            let mut window: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            let mut b = t;
            while b > t - WINDOW_MS && b > 0 {
                for r in batch_records(input, b) {
                    let e = window.entry(r.source.clone()).or_default();
                    e.0 += r.centi_degrees;
                    e.1 += 1;
                }
                b -= INTERVAL_MS;
            }
            let text = window
                .into_iter()
                .map(|(s, (sum, count))| (s, average(sum, count)))
                .collect();
            (t, text)
        })
        .collect()
}

#[test]
fn analytics_example_matches_an_independent_computation() {
    let broker = Broker::start();
    broker.create_topic("readings", 1);
    let input = readings(INPUT_BATCHES * PER_BATCH, 7);
    let lines: Vec<&str> = input.iter().map(|r| r.line.as_str()).collect();
    produce(&broker, "readings", &lines);

    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker, "readings");
    let (ok, log) = run(&p, BATCHES);
    assert!(ok, "weir failed: {log}");

    let out = dir.path().join("analytics");
    let totals = text_batches(&out, "totals");
    let want = expected_totals(&input);
    assert_eq!(
        totals.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "a totals directory per batch"
    );
    for (t, want) in &want {
        assert_eq!(&totals[t], want, "running totals at {t} ms");
    }

    let averages = text_batches(&out, "averages");
    let want = expected_averages(&input);
    assert_eq!(
        averages.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "an averages directory per slide"
    );
    for (t, want) in &want {
        assert_eq!(&averages[t], want, "5-minute averages at {t} ms");
    }

    // What the input exercises: a source that leaves the window (dropped
    // by the filter once its count is 0), one that arrives late, and
    // windows that slide past the first batches.
    let sources = |t: i64| -> BTreeSet<&str> { want[&t].keys().map(String::as_str).collect() };
    assert!(sources(300_000).contains("early") && !sources(360_000).contains("early"));
    assert!(!sources(300_000).contains("late") && sources(360_000).contains("late"));
    assert!(want.len() > WINDOW_MS as usize / SLIDE_MS as usize);
    assert!(totals[&(BATCHES as i64 * INTERVAL_MS)].contains_key("early"));
}

#[test]
fn a_malformed_reading_fails_the_batch_naming_the_line() {
    let broker = Broker::start();
    broker.create_topic("bad-readings", 1);
    let bad = "3,sensor-2,many,20.5";
    produce(
        &broker,
        "bad-readings",
        &["1,sensor-1,10,20.5", "2,sensor-2,20,-1.25", bad],
    );
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker, "bad-readings");
    let (ok, log) = run(&p, 2);
    assert!(!ok, "a malformed line must fail the job: {log}");
    assert!(
        log.contains("malformed reading") && log.contains(bad),
        "the error names the line: {log}"
    );
    assert!(
        !dir.path().join("analytics").exists()
            || text_batches(&dir.path().join("analytics"), "totals").is_empty(),
        "the failed batch wrote nothing"
    );
}
