//! Kafka source and output against a real broker (tansu, started by each
//! test): word counts from a 4-partition topic to another topic, exactly
//! once through SIGKILLs of weir and a restart of the broker; clear errors
//! for bad set-ups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_tests::kafka::{Broker, Record};

use crate::support::{
    kill_and_restart, kills, run_failing, run_to_end, spawn, wait_lines, weir_run as weir,
    wordcount, PATIENCE,
};

/// `n` lines of words from a small vocabulary, spread over 4 partitions by
/// key, deterministic.
fn lines(n: usize, seed: u64) -> Vec<(Option<i32>, Vec<u8>, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let words: Vec<String> = (0..rng.gen_range(1..6))
                .map(|_| format!("w{}", rng.gen_range(0..40)))
                .collect();
            (
                Some((i % 4) as i32),
                format!("line-{i}").into_bytes(),
                words.join(" ").into_bytes(),
            )
        })
        .collect()
}

fn produce(broker: &Broker, topic: &str, records: &[(Option<i32>, Vec<u8>, Vec<u8>)]) {
    let borrowed: Vec<(Option<i32>, &[u8], &[u8])> = records
        .iter()
        .map(|(p, k, v)| (*p, k.as_slice(), v.as_slice()))
        .collect();
    broker.produce(topic, &borrowed);
}

/// Word counts per batch and running totals, Kafka to Kafka.
fn pipeline(dir: &Path, broker: &Broker, job: &str, out_topic: &str, extra_job: &str) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "{job}"
batch_interval = "1s"
partitions = 4
checkpoint = "ck"
checkpoint_interval = "3s"
{extra_job}

[plugins]
wc = "{plugin}"

[[source]]
name = "lines"
type = "kafka"
brokers = "{brokers}"
topics = ["lines"]
group = "{job}"
max_rate_per_partition = 40
properties = {{ "session.timeout.ms" = "6000" }}

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
name = "totals"
op = "update_state_by_key"
input = "words"
function = "wc:running_count"

[[output]]
name = "counts"
stream = "counts"
type = "kafka"
brokers = "{brokers}"
topic = "{out_topic}"

[[output]]
name = "totals"
stream = "totals"
type = "kafka"
brokers = "{brokers}"
topic = "{out_topic}-totals"
format = "text"
"#,
        plugin = wordcount().display(),
        brokers = broker.address(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A topic's committed records as (key, value, batch) per partition.
fn committed(broker: &Broker, topic: &str) -> Vec<Vec<(Vec<u8>, Vec<u8>, String)>> {
    broker
        .read_committed(topic)
        .into_iter()
        .map(|part| {
            part.into_iter()
                .map(|r: Record| {
                    let batch =
                        String::from_utf8(r.header("weir.batch").unwrap().to_vec()).unwrap();
                    (r.key, r.value, batch)
                })
                .collect()
        })
        .collect()
}

/// Word counts computed here, independently of weir.
fn expected_totals(records: &[(Option<i32>, Vec<u8>, Vec<u8>)]) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for (_, _, v) in records {
        for w in std::str::from_utf8(v).unwrap().split_whitespace() {
            *totals.entry(w.to_owned()).or_insert(0) += 1;
        }
    }
    totals
}

/// The last total per word in the `totals` topic (text values).
fn last_totals(broker: &Broker, topic: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for part in broker.read_committed(topic) {
        for r in part {
            let n: i64 = std::str::from_utf8(&r.value).unwrap().parse().unwrap();
            out.insert(String::from_utf8(r.key).unwrap(), n);
        }
    }
    out
}

#[test]
fn kafka_word_count_matches_an_independent_count() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    broker.create_topic("counts", 4);
    broker.create_topic("counts-totals", 4);
    let input = lines(600, 1);
    produce(&broker, "lines", &input);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker, "kwc", "counts", "");
    // 600 lines, 150 per partition, at most 40 per partition per batch.
    let log = run_to_end(&p, &["--batches", "6", "--simulated-clock"]);
    assert!(log.contains("batch completed"), "{log}");
    assert_eq!(
        last_totals(&broker, "counts-totals"),
        expected_totals(&input)
    );
    let counts = committed(&broker, "counts");
    let mut per_word = BTreeMap::new();
    for (k, v, _) in counts.iter().flatten() {
        *per_word
            .entry(String::from_utf8(k.clone()).unwrap())
            .or_insert(0) += i64::from_le_bytes(v.as_slice().try_into().unwrap());
    }
    assert_eq!(per_word, expected_totals(&input), "per-batch counts add up");
    let batches: std::collections::BTreeSet<&str> = counts
        .iter()
        .flatten()
        .map(|(_, _, b)| b.as_str())
        .collect();
    assert_eq!(
        broker.committed_offsets("kwc", "lines", 4),
        [150, 150, 150, 150],
        "the group's offsets show what the job has read (for lag tools)"
    );
    assert_eq!(
        batches.len(),
        4,
        "150 lines per partition at 40 per batch: 4 batches with records: {batches:?}"
    );
}

/// The job is killed with SIGKILL at random moments and restarted; what
/// `read_committed` consumers see in the output topics equals an
/// uninterrupted run's, record for record, partition by partition.
#[test]
fn sigkill_at_random_moments_changes_no_committed_record() {
    const BATCHES: &str = "40";
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    for t in ["clean", "clean-totals", "crashy", "crashy-totals"] {
        broker.create_topic(t, 4);
    }
    // 40 per partition per batch: 30 batches of input, then empty ones.
    let input = lines(4_800, 2);
    produce(&broker, "lines", &input);

    let clean = tempfile::tempdir().unwrap();
    run_to_end(
        &pipeline(clean.path(), &broker, "clean", "clean", ""),
        &["--batches", BATCHES, "--simulated-clock"],
    );
    let expected = committed(&broker, "clean");
    let expected_totals_topic = committed(&broker, "clean-totals");
    assert_eq!(
        last_totals(&broker, "clean-totals"),
        expected_totals(&input)
    );

    let crashy = tempfile::tempdir().unwrap();
    let p = pipeline(crashy.path(), &broker, "crashy", "crashy", "");
    let started = Instant::now();
    let killed = kill_and_restart(&p, &["--batches", BATCHES, "--simulated-clock"], 11, 40_000);
    eprintln!(
        "killed weir {killed} times with SIGKILL in {:?}",
        started.elapsed()
    );
    assert!(killed >= kills().min(20), "only {killed} kills");
    assert_eq!(committed(&broker, "crashy"), expected, "per-batch counts");
    assert_eq!(
        committed(&broker, "crashy-totals"),
        expected_totals_topic,
        "running totals"
    );
}

/// A job whose `lines` source reads `topic` on `brokers`, printing counts.
fn printing_pipeline(dir: &Path, brokers: &str, topic: &str) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "bad"
batch_interval = "1s"
partitions = 2

[plugins]
wc = "{plugin}"

[[source]]
name = "lines"
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[output]]
stream = "words"
type = "print"
"#,
        plugin = wordcount().display(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A job that copies topic `in` to topic `out` (2 partitions unless `job`
/// says otherwise): `job` is added after the `[job]` keys (it may open
/// `[plugins]`), `source` and `output` to the source and the output.
fn copy_pipeline(dir: &Path, broker: &Broker, job: &str, source: &str, output: &str) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "copy"
{job}

[[source]]
name = "in"
type = "kafka"
brokers = "{b}"
topics = ["in"]
{source}

[[output]]
name = "out"
stream = "in"
type = "kafka"
brokers = "{b}"
topic = "out"
{output}
"#,
        b = broker.address()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_unknown_topic_fails_naming_source_topic_and_broker() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let p = printing_pipeline(dir.path(), &broker.address(), "nope");
    let stderr = run_failing(&p, &["--batches", "2", "--simulated-clock"]);
    assert!(
        stderr.contains("kafka source `lines`")
            && stderr.contains("topic `nope` does not exist")
            && stderr.contains(&broker.address()),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_broker_is_retried_and_logged_not_fatal() {
    // Nothing listens on this port: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let p = printing_pipeline(dir.path(), &brokers, "lines");
    let log = run_to_end(&p, &["--batches", "3", "--simulated-clock"]);
    assert!(
        log.contains("kafka source `lines`")
            && log.contains(&brokers)
            && log.contains("the batch gets no records from it"),
        "{log}"
    );
    assert_eq!(log.matches("batch completed").count(), 3, "{log}");
}

#[test]
fn a_malformed_broker_list_is_refused_by_validation() {
    let dir = tempfile::tempdir().unwrap();
    let p = printing_pipeline(dir.path(), "localhost", "lines");
    let out = crate::support::weir()
        .arg("validate")
        .arg(&p)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("kafka source `lines`")
            && stderr.contains("broker `localhost` has no port"),
        "{stderr}"
    );
}

#[test]
fn a_record_the_plugin_cannot_decode_fails_naming_the_operator() {
    let broker = Broker::start();
    broker.create_topic("lines", 2);
    broker.produce(
        "lines",
        &[
            (Some(0), b"", b"fine words"),
            (Some(1), b"", b"bad \xff\xfe utf-8"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let p = printing_pipeline(dir.path(), &broker.address(), "lines");
    let stderr = run_failing(&p, &["--batches", "2", "--simulated-clock"]);
    assert!(
        stderr.contains("`words`") && stderr.contains("split") && stderr.contains("partition 1"),
        "{stderr}"
    );
}

/// The broker is stopped (SIGKILL) and restarted while a job copies a
/// topic on the system clock; every record arrives exactly once, in order
/// per partition.
#[test]
fn a_broker_restarted_mid_run_loses_and_duplicates_nothing() {
    let mut broker = Broker::start();
    broker.create_topic("in", 2);
    broker.create_topic("out", 2);
    let dir = tempfile::tempdir().unwrap();
    let p = copy_pipeline(
        dir.path(),
        &broker,
        "batch_interval = \"200ms\"\npartitions = 2\ncheckpoint = \"ck\"",
        "",
        "partitioner = \"partition\"",
    );
    let events = |range: std::ops::Range<usize>| -> Vec<(Option<i32>, Vec<u8>, Vec<u8>)> {
        range
            .map(|i| {
                (
                    Some((i % 2) as i32),
                    Vec::new(),
                    format!("e-{i}").into_bytes(),
                )
            })
            .collect()
    };
    produce(&broker, "in", &events(0..500));
    let (mut child, rx) = spawn(weir(&p, &[]));
    assert!(wait_lines(&rx, "batch completed", 3));
    broker.stop();
    assert!(
        wait_lines(&rx, "kafka source `in`", 1),
        "the outage is logged"
    );
    broker.restart();
    produce(&broker, "in", &events(500..1000));
    // Wait (bounded) until the copy holds every event, then stop the job.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let n: usize = broker.read_committed("out").iter().map(Vec::len).sum();
        if n >= 1000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of 1000 copied: {}",
            broker.log()
        );
        let _ = rx.recv_timeout(Duration::from_millis(500));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let copy = broker.read_committed("out");
    for (p, part) in copy.iter().enumerate() {
        let got: Vec<Vec<u8>> = part.iter().map(|r| r.value.clone()).collect();
        let want: Vec<Vec<u8>> = events(0..1000)
            .into_iter()
            .filter(|(q, _, _)| *q == Some(p as i32))
            .map(|(_, _, v)| v)
            .collect();
        assert_eq!(
            got.len(),
            want.len(),
            "partition {p}: no loss, no duplicate"
        );
        assert!(got == want, "partition {p}: same records in the same order");
    }
}

/// Per-batch statistics of a `--stats-file`.
fn stats(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A job slower than its input: with backpressure its scheduling delay
/// stays bounded (the records wait in Kafka, not in memory) and it reads
/// every partition without a gap; without it, every batch takes all that
/// arrived while the last one ran, and the delay keeps growing.
#[test]
fn backpressure_bounds_the_delay_of_a_job_slower_than_its_input() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |name: &str, backpressure: bool| -> PathBuf {
        broker.create_topic(&format!("{name}-in"), 2);
        broker.create_topic(&format!("{name}-out"), 2);
        let text = format!(
            r#"
[job]
name = "{name}"
batch_interval = "500ms"
partitions = 2
workers = 2
backpressure = {backpressure}
backpressure_initial_rate = 200
stats_file = "{name}.jsonl"

[plugins]
kit = "{kit}"

[[source]]
name = "fast"
type = "kafka"
brokers = "{b}"
topics = ["{name}-in"]

[[stream]]
name = "slowed"
op = "map"
input = "fast"
function = "kit:slow"

[[output]]
name = "out"
stream = "slowed"
type = "kafka"
brokers = "{b}"
topic = "{name}-out"
partitioner = "partition"
"#,
            kit = crate::support::testkit().display(),
            b = broker.address()
        );
        let p = dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    };
    // Input at 1 000 records/s until told to stop.
    let produce_until_stopped = |topic: String| {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let address = broker.address();
        let handle = std::thread::spawn(move || {
            let b = weir_tests::kafka::Producer::new(&address);
            let mut i = 0usize;
            let started = Instant::now();
            while stop_rx.try_recv().is_err() && started.elapsed() < PATIENCE {
                let due = (started.elapsed().as_millis() as usize) + 100;
                let batch: Vec<(Option<i32>, Vec<u8>, Vec<u8>)> = (i..due)
                    .map(|j| {
                        (
                            Some((j % 2) as i32),
                            Vec::new(),
                            format!("r-{j}").into_bytes(),
                        )
                    })
                    .collect();
                i = due.max(i);
                b.send(&topic, &batch);
                // Pacing the input, not waiting for anything.
                std::thread::sleep(Duration::from_millis(100));
            }
            b.flush();
            i
        });
        (stop_tx, handle)
    };

    // With backpressure: 16 batches, then a graceful stop.
    let (stop, producer) = produce_until_stopped("bp-in".into());
    let p = pipeline("bp", true);
    let log = run_to_end(&p, &["--batches", "16"]);
    stop.send(()).unwrap();
    let produced = producer.join().unwrap();
    let with = stats(&dir.path().join("bp.jsonl"));
    assert_eq!(with.len(), 16, "{log}");
    let delay = |s: &serde_json::Value| s["scheduling_delay_ms"].as_f64().unwrap();
    let max_delay_with = with[6..].iter().map(delay).fold(0.0, f64::max);
    // Nothing skipped: each output partition is a gapless prefix of its
    // input partition, in order.
    let out = broker.read_committed("bp-out");
    let taken: usize = out.iter().map(Vec::len).sum();
    for (p, part) in out.iter().enumerate() {
        for (n, r) in part.iter().enumerate() {
            assert_eq!(
                r.value,
                format!("r-{}", 2 * n + p).into_bytes(),
                "partition {p}, record {n}"
            );
        }
    }
    assert!(
        taken > 0 && taken < produced,
        "{taken} of {produced}: the job is slower than its input"
    );

    // Without: the same input rate; stop once the delay has grown past
    // what the backpressured job ever had (or after 8 batches).
    let (stop, producer) = produce_until_stopped("nobp-in".into());
    let p = pipeline("nobp", false);
    let (mut child, rx) = spawn(weir(&p, &[]));
    let mut grown = 0.0;
    for _ in 0..8 {
        assert!(wait_lines(&rx, "batch completed", 1));
        let s = stats(&dir.path().join("nobp.jsonl"));
        grown = s.iter().map(delay).fold(0.0, f64::max);
        if grown > 2.0 * max_delay_with.max(500.0) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    stop.send(()).unwrap();
    producer.join().unwrap();
    eprintln!(
        "scheduling delay: at most {max_delay_with:.0} ms with backpressure (after 6 batches), {grown:.0} ms and growing without"
    );
    assert!(
        max_delay_with <= 2_500.0,
        "with backpressure the delay stays bounded: {with:?}"
    );
    assert!(
        grown > max_delay_with,
        "without backpressure the delay grows past {max_delay_with} ms: {grown}"
    );
}

/// `foreachRDD` for pipeline files: a plugin formats each partition of
/// every batch; the host writes the result keyed by (batch, partition).
#[test]
fn an_output_function_formats_each_partition_keyed_by_batch_and_partition() {
    let broker = Broker::start();
    broker.create_topic("in", 3);
    broker.create_topic("out", 3);
    let records: Vec<(Option<i32>, Vec<u8>, Vec<u8>)> = (0..90)
        .map(|i| (Some(i % 3), Vec::new(), format!("v{i}").into_bytes()))
        .collect();
    produce(&broker, "in", &records);
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "partitions = 3\n[plugins]\nkit = \"{}\"",
        crate::support::testkit().display()
    );
    let p = copy_pipeline(
        dir.path(),
        &broker,
        &job,
        "max_rate_per_partition = 10",
        "partitioner = \"partition\"\nfunction = \"kit:stamp\"",
    );
    run_to_end(&p, &["--batches", "3", "--simulated-clock"]);
    let out = broker.read_committed("out");
    assert_eq!(out.iter().map(Vec::len).sum::<usize>(), 90);
    for (p, part) in out.iter().enumerate() {
        for r in part {
            let batch = std::str::from_utf8(r.header("weir.batch").unwrap()).unwrap();
            let partition = std::str::from_utf8(r.header("weir.partition").unwrap()).unwrap();
            assert_eq!(partition, p.to_string());
            assert_eq!(
                std::str::from_utf8(&r.value).unwrap(),
                format!("{batch}/{partition}/3"),
                "the function saw this batch and partition"
            );
        }
    }
}

/// `examples/pipelines/kafka_wordcount.toml`, run the way its header says:
/// topics created, lines produced and counts read with `weir kafka`.
#[test]
fn the_kafka_word_count_example_runs_as_its_header_says() {
    let broker = Broker::start();
    let b = broker.address();
    let dir = tempfile::tempdir().unwrap();
    let example = weir_tests::workspace_root().join("examples/pipelines/kafka_wordcount.toml");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("127.0.0.1:9092", &b)
        .replace(
            "../../target/plugins/wordcount.wasm",
            &wordcount().display().to_string(),
        )
        .replace("../../target/", "");
    let p = dir.path().join("kafka_wordcount.toml");
    std::fs::write(&p, text).unwrap();
    let tool = |args: &[&str], input: Option<&str>| -> String {
        let mut cmd = crate::support::weir();
        cmd.arg("kafka")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = input {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "weir kafka {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    tool(
        &[
            "create-topic",
            "--brokers",
            &b,
            "lines",
            "--partitions",
            "4",
        ],
        None,
    );
    tool(
        &[
            "create-topic",
            "--brokers",
            &b,
            "wordcounts",
            "--partitions",
            "4",
        ],
        None,
    );
    tool(
        &["produce", "--brokers", &b, "lines"],
        Some("to be or not to be\nthat is the question\n"),
    );
    run_to_end(&p, &["--batches", "2", "--simulated-clock"]);
    let out = tool(&["consume", "--brokers", &b, "wordcounts"], None);
    let mut counts: Vec<&str> = out.lines().collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            "be\t2",
            "is\t1",
            "not\t1",
            "or\t1",
            "question\t1",
            "that\t1",
            "the\t1",
            "to\t2"
        ],
        "{out}"
    );
}

/// A broker without Kafka transactions (tansu) refuses `delivery =
/// "transactional"` at once, with a message that says what to use.
#[test]
fn transactional_delivery_on_a_broker_without_transactions_fails_at_once() {
    let broker = Broker::start();
    broker.create_topic("in", 1);
    broker.create_topic("out", 1);
    produce(&broker, "in", &[(Some(0), Vec::new(), b"a b".to_vec())]);
    let dir = tempfile::tempdir().unwrap();
    let p = copy_pipeline(
        dir.path(),
        &broker,
        "partitions = 1",
        "",
        "delivery = \"transactional\"",
    );
    let started = Instant::now();
    let stderr = run_failing(&p, &["--batches", "2", "--simulated-clock"]);
    assert!(
        stderr.contains("kafka output `out`") && stderr.contains("delivery = \"idempotent\""),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "no retrying for minutes"
    );
    assert!(
        broker.read_committed("out")[0].is_empty(),
        "nothing written"
    );
}

/// Two pipelines chained through a topic: the first splits lines into
/// words and writes them keyed by word (so every word's records meet in
/// one partition), the second counts them — how a shuffle crosses
/// processes. The totals equal an independent count.
#[test]
fn two_stages_chained_through_a_keyed_topic_count_every_word_once() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    broker.create_topic("words", 4);
    broker.create_topic("totals", 4);
    let input = lines(400, 3);
    produce(&broker, "lines", &input);
    let dir = tempfile::tempdir().unwrap();
    let stage = |name: &str, body: &str| -> PathBuf {
        let text = format!(
            r#"
[job]
name = "{name}"
batch_interval = "1s"
partitions = 4
checkpoint = "{name}-ck"

[plugins]
wc = "{plugin}"
{body}"#,
            plugin = wordcount().display(),
        );
        let p = dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    };
    let b = broker.address();
    let split = stage(
        "split",
        &format!(
            r#"
[[source]]
name = "lines"
type = "kafka"
brokers = "{b}"
topics = ["lines"]
max_rate_per_partition = 40

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[output]]
name = "words"
stream = "words"
type = "kafka"
brokers = "{b}"
topic = "words"
partitioner = "murmur2"
"#
        ),
    );
    let count = stage(
        "count",
        &format!(
            r#"
[[source]]
name = "words"
type = "kafka"
brokers = "{b}"
topics = ["words"]
max_rate_per_partition = 200

[[stream]]
name = "totals"
op = "update_state_by_key"
input = "words"
function = "wc:running_count"

[[output]]
name = "totals"
stream = "totals"
type = "kafka"
brokers = "{b}"
topic = "totals"
format = "text"
"#
        ),
    );
    run_to_end(&split, &["--batches", "4", "--simulated-clock"]);
    let words = broker.read_committed("words");
    let n: usize = words.iter().map(Vec::len).sum();
    assert_eq!(n, expected_totals(&input).values().sum::<i64>() as usize);
    // A word's records all sit in one partition of `words`.
    let mut home = BTreeMap::new();
    for (p, part) in words.iter().enumerate() {
        for r in part {
            assert_eq!(*home.entry(r.key.clone()).or_insert(p), p, "{:?}", r.key);
        }
    }
    run_to_end(&count, &["--batches", "8", "--simulated-clock"]);
    assert_eq!(last_totals(&broker, "totals"), expected_totals(&input));
}

/// `metadata = true`: each value is prefixed with the record's timestamp,
/// partition, offset and headers, as `docs/abi.md` lays them out.
#[test]
fn metadata_prefixes_values_as_the_abi_documents() {
    let broker = Broker::start();
    broker.create_topic("in", 2);
    broker.create_topic("out", 2);
    produce(
        &broker,
        "in",
        &[
            (Some(1), b"k".to_vec(), b"first".to_vec()),
            (Some(1), Vec::new(), b"second".to_vec()),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let p = copy_pipeline(
        dir.path(),
        &broker,
        "partitions = 2",
        "metadata = true",
        "partitioner = \"partition\"",
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    run_to_end(&p, &["--batches", "1", "--simulated-clock"]);
    let out = broker.read_committed("out");
    assert!(out[0].is_empty());
    let got: Vec<(Vec<u8>, i64, i32, i64, u32, Vec<u8>)> = out[1]
        .iter()
        .map(|r| {
            let v = &r.value;
            let ts = i64::from_le_bytes(v[0..8].try_into().unwrap());
            let partition = i32::from_le_bytes(v[8..12].try_into().unwrap());
            let offset = i64::from_le_bytes(v[12..20].try_into().unwrap());
            let headers = u32::from_le_bytes(v[20..24].try_into().unwrap());
            (
                r.key.clone(),
                ts,
                partition,
                offset,
                headers,
                v[24..].to_vec(),
            )
        })
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    for (i, (key, ts, partition, offset, headers, value)) in got.iter().enumerate() {
        assert!(
            *ts > before - 600_000 && *ts < before + 600_000,
            "a producer timestamp: {ts}"
        );
        assert_eq!((*partition, *offset, *headers), (1, i as i64, 0));
        let (k, v): (&[u8], &[u8]) = if i == 0 {
            (b"k", b"first")
        } else {
            (b"", b"second")
        };
        assert_eq!((key.as_slice(), value.as_slice()), (k, v));
    }
}
