//! Scaling out through a consumer group, against a real broker (tansu) and
//! real `weir run` processes: instances that stop gracefully, are
//! SIGKILLed and restarted, or join mid-run leave the output and every
//! key's state as one instance computes them; a two-stage word count
//! regroups through a keyed topic; bad set-ups are refused with clear
//! errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_tests::kafka::Broker;

use crate::support::{run_failing, weir_run, wordcount, PATIENCE};

const PARTITIONS: i32 = 6;

/// `n` records keyed by word (placed by murmur2, as the Java client
/// does), each with the canonical count 1: what a split stage writes.
fn keyed_words(n: usize, seed: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // A skewed vocabulary: some words are frequent.
            let w = rng.gen_range(0..60u32).min(rng.gen_range(0..60u32));
            (format!("w{w}").into_bytes(), 1i64.to_le_bytes().to_vec())
        })
        .collect()
}

fn produce_keyed(broker: &Broker, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    let borrowed: Vec<(Option<i32>, &[u8], &[u8])> = records
        .iter()
        .map(|(k, v)| (None, k.as_slice(), v.as_slice()))
        .collect();
    broker.produce(topic, &borrowed);
}

fn count_words<'a>(words: impl Iterator<Item = &'a [u8]>) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for w in words {
        *totals
            .entry(String::from_utf8(w.to_vec()).unwrap())
            .or_insert(0) += 1;
    }
    totals
}

/// A scaled-out job: `[job]` name, `[scale_out]` changelog, then `body`.
fn scaled(dir: &Path, file: &str, job: &str, changelog: &str, body: &str) -> PathBuf {
    let text = format!(
        r#"
[job]
name = "{job}"
batch_interval = "500ms"

[plugins]
wc = "{plugin}"

[scale_out]
changelog = "{changelog}"
{body}"#,
        plugin = wordcount().display(),
    );
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// The stateful word count over topic `words` (keyed by word), writing
/// `(word, running total)` to `out` whenever a word's total changes; at
/// most 50 records per partition and batch, so every partition's batches
/// are the same whichever instance cuts them.
fn counting(dir: &Path, broker: &Broker, tag: &str, out: &str) -> PathBuf {
    let b = broker.address();
    scaled(
        dir,
        &format!("{tag}.toml"),
        "wordcount",
        &format!("{tag}-changelog"),
        &format!(
            r#"
[[source]]
name = "words"
type = "kafka"
brokers = "{b}"
topics = ["words"]
group = "{tag}"
starting_offsets = "earliest"
max_rate_per_partition = 100

[[stream]]
name = "totals"
op = "map_with_state"
input = "words"
function = "wc:running_count"

[[output]]
name = "totals"
stream = "totals"
type = "kafka"
brokers = "{b}"
topic = "{out}"
format = "text"
"#
        ),
    )
}

fn changelog(broker: &Broker, name: &str) {
    broker.create_topic_with(name, PARTITIONS, &[("cleanup.policy", "compact")]);
}

/// Each partition's end offset (records were produced without
/// transactions, so the count of records is the end).
fn ends(broker: &Broker, topic: &str) -> Vec<i64> {
    broker
        .read_committed(topic)
        .iter()
        .map(|p| p.len() as i64)
        .collect()
}

/// Records the group has committed, over all partitions.
fn done(broker: &Broker, group: &str, topic: &str) -> i64 {
    broker
        .committed_offsets(group, topic, PARTITIONS)
        .iter()
        .map(|o| (*o).max(0))
        .sum()
}

/// Waits until group `group` has committed at least `at` records of
/// `topic`; on time-out, shows the instances' logs in `dir`.
fn wait_progress(broker: &Broker, dir: &Path, group: &str, topic: &str, at: i64) {
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        let d = done(broker, group, topic);
        if d >= at {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "group {group} committed {d} of {at} records of {topic} in time ({:?}); logs:\n{}",
                broker.committed_offsets(group, topic, PARTITIONS),
                logs(dir)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last lines of every instance log in `dir`.
fn logs(dir: &Path) -> String {
    logs_tail(dir, 40)
}

/// The last `n` lines of every instance log in `dir`.
fn logs_tail(dir: &Path, n: usize) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            // Every batch's line would hide what happened.
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("batch completed"))
                .collect();
            out.push_str(&format!("==> {} <==\n", p.display()));
            for l in &lines[lines.len().saturating_sub(n)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// A running instance: the process and its log (a file, so a failure can
/// show it).
struct Instance {
    name: String,
    child: Child,
    log: PathBuf,
    /// Log bytes already looked at.
    seen: std::cell::Cell<usize>,
}

impl Instance {
    fn start(pipeline: &Path, name: &str) -> Instance {
        let dir = pipeline.parent().unwrap();
        let mut n = 0;
        let log = loop {
            let p = dir.join(format!("{name}-{n}.log"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let child = weir_run(pipeline, &["--instance", name])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Instance {
            name: name.into(),
            child,
            log,
            seen: std::cell::Cell::new(0),
        }
    }

    /// Waits until it says it owns `n` or more partitions.
    fn wait_owning(&self, at_least: usize) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let new = &text[self.seen.get().min(text.len())..];
            let complete = new.rfind('\n').map_or(0, |i| i + 1);
            for line in new[..complete].lines() {
                if let Some(list) = line
                    .split_once("owns partitions [")
                    .and_then(|(_, rest)| rest.split_once(']'))
                    .map(|(list, _)| list)
                {
                    if list.split(',').filter(|s| !s.trim().is_empty()).count() >= at_least {
                        self.seen.set(self.seen.get() + complete);
                        return;
                    }
                }
            }
            self.seen.set(self.seen.get() + complete);
            assert!(
                Instant::now() < deadline,
                "instance {} did not own {at_least} partitions in time; logs:\n{}",
                self.name,
                logs(self.log.parent().unwrap())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and the clean exit that must follow.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "instance {} failed: {}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// `(key, value)` of every record of `topic`, and per key its values in
/// the order written.
fn output(broker: &Broker, topic: &str) -> (Vec<(String, String)>, BTreeMap<String, Vec<String>>) {
    let mut all = Vec::new();
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in broker.read_committed(topic) {
        for r in part {
            let (k, v) = (
                String::from_utf8(r.key).unwrap(),
                String::from_utf8(r.value).unwrap(),
            );
            by_key.entry(k.clone()).or_default().push(v.clone());
            all.push((k, v));
        }
    }
    all.sort();
    (all, by_key)
}

fn last_totals(by_key: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, i64> {
    by_key
        .iter()
        .map(|(k, vs)| (k.clone(), vs.last().unwrap().parse().unwrap()))
        .collect()
}

#[test]
fn instances_that_stop_crash_and_join_leave_the_output_as_one_instance_writes_it() {
    let broker = Broker::start();
    broker.create_topic("words", PARTITIONS);
    for tag in ["single", "group"] {
        broker.create_topic(&format!("{tag}-totals"), PARTITIONS);
        changelog(&broker, &format!("{tag}-changelog"));
    }
    let input = keyed_words(9000, 11);
    produce_keyed(&broker, "words", &input);
    let total: i64 = ends(&broker, "words").iter().sum();
    assert_eq!(total, input.len() as i64);
    let dir = tempfile::tempdir().unwrap();

    // One instance does it all.
    let single = counting(dir.path(), &broker, "single", "single-totals");
    let one = Instance::start(&single, "solo");
    one.wait_owning(PARTITIONS as usize);
    wait_progress(&broker, dir.path(), "single", "words", total);
    one.stop();

    // Three instances; one leaves, one crashes and comes back, a fourth joins.
    let group = counting(dir.path(), &broker, "group", "group-totals");
    let a = Instance::start(&group, "a");
    let b = Instance::start(&group, "b");
    let c = Instance::start(&group, "c");
    for i in [&a, &b, &c] {
        i.wait_owning(1);
    }
    wait_progress(&broker, dir.path(), "group", "words", total / 5);
    a.stop();
    c.wait_owning(3);
    wait_progress(&broker, dir.path(), "group", "words", 2 * total / 5);
    b.kill();
    // Restarted once its session (10 s) has expired: tansu 0.6 drops an
    // expired member when another joins, but a rebalance begun while a
    // dead member's session still runs waits for it for good (README:
    // Joining, leaving, crashing). This is the scenario, not a wait for
    // something weir signals.
    std::thread::sleep(Duration::from_secs(11));
    let b = Instance::start(&group, "b");
    b.wait_owning(1);
    wait_progress(&broker, dir.path(), "group", "words", 3 * total / 5);
    let d = Instance::start(&group, "d");
    d.wait_owning(1);
    wait_progress(&broker, dir.path(), "group", "words", total);
    for i in [b, c, d] {
        i.stop();
    }

    // State moved: the state written by the instance that left and by the
    // one killed was taken over from the changelog. (Not `previous_owner`:
    // that is the newest claim's instance, and a successor that claimed a
    // partition and died before writing its first state is newer than the
    // instance whose state the next one restores.)
    let all_logs = logs_tail(dir.path(), usize::MAX);
    for gone in ["a", "b"] {
        assert!(
            all_logs.contains(&format!("state_from=\"{gone}\"")),
            "no state of instance {gone} was taken over:\n{all_logs}"
        );
    }
    let (single_records, single_by_key) = output(&broker, "single-totals");
    let (group_records, group_by_key) = output(&broker, "group-totals");
    let truth = count_words(input.iter().map(|(k, _)| k.as_slice()));
    assert_eq!(
        last_totals(&single_by_key),
        truth,
        "one instance counts every word once"
    );
    if let Some((k, v)) = single_by_key
        .iter()
        .find(|(k, v)| group_by_key.get(*k) != Some(v))
    {
        let g = group_by_key.get(k).cloned().unwrap_or_default();
        let i = v.iter().zip(&g).take_while(|(a, b)| a == b).count();
        let around = |x: &[String]| x[i.saturating_sub(3)..(i + 4).min(x.len())].join(" ");
        panic!(
            "word {k}: one instance wrote {} totals, the group {}; from the {i}th on, one instance: {} / the group: {}",
            v.len(),
            g.len(),
            around(v),
            around(&g)
        );
    }
    assert_eq!(group_records, single_records, "the same records");
    assert_eq!(
        group_by_key, single_by_key,
        "every word's totals in the same order"
    );
    assert_eq!(
        last_totals(&group_by_key),
        truth,
        "every word's final state"
    );
}

#[test]
fn a_two_stage_word_count_over_two_instances_regroups_through_a_keyed_topic() {
    let broker = Broker::start();
    broker.create_topic("lines", PARTITIONS);
    broker.create_topic("words", PARTITIONS);
    broker.create_topic("totals", PARTITIONS);
    changelog(&broker, "split-changelog");
    changelog(&broker, "count-changelog");
    let mut rng = StdRng::seed_from_u64(5);
    let lines: Vec<String> = (0..3000)
        .map(|_| {
            (0..rng.gen_range(1..6))
                .map(|_| format!("w{}", rng.gen_range(0..80)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let records: Vec<(Option<i32>, &[u8], &[u8])> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (Some(i as i32 % PARTITIONS), &b""[..], l.as_bytes()))
        .collect();
    broker.produce("lines", &records);
    let b = broker.address();
    let dir = tempfile::tempdir().unwrap();
    let split = scaled(
        dir.path(),
        "split.toml",
        "split",
        "split-changelog",
        &format!(
            r#"
[[source]]
name = "lines"
type = "kafka"
brokers = "{b}"
topics = ["lines"]
group = "split"
starting_offsets = "earliest"
max_rate_per_partition = 200

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
"#
        ),
    );
    let count = counting(dir.path(), &broker, "count", "totals");
    let instances = [
        Instance::start(&split, "split-1"),
        Instance::start(&split, "split-2"),
        Instance::start(&count, "count-1"),
        Instance::start(&count, "count-2"),
    ];
    for i in &instances {
        i.wait_owning(1);
    }
    wait_progress(&broker, dir.path(), "split", "lines", lines.len() as i64);
    let words: i64 = ends(&broker, "words").iter().sum();
    wait_progress(&broker, dir.path(), "count", "words", words);
    for i in instances {
        i.stop();
    }
    let truth = count_words(
        lines
            .iter()
            .flat_map(|l| l.split_whitespace())
            .map(str::as_bytes),
    );
    assert_eq!(
        words,
        truth.values().sum::<i64>(),
        "every word written once"
    );
    // Every word's records are in one partition of `words`.
    for (p, part) in broker.read_committed("words").iter().enumerate() {
        for r in part {
            let home = weir::kafka::key_hash("murmur2", &r.key, PARTITIONS);
            assert_eq!(home, p as i32, "{:?}", r.key);
        }
    }
    let (_, by_key) = output(&broker, "totals");
    assert_eq!(last_totals(&by_key), truth, "the totals one instance gives");
}

#[test]
fn bad_changelogs_and_a_differing_job_are_refused_naming_what_differs() {
    let broker = Broker::start();
    broker.create_topic("words", PARTITIONS);
    broker.create_topic("totals", PARTITIONS);
    broker.create_topic("plain", PARTITIONS);
    broker.create_topic("narrow", 2);
    changelog(&broker, "good");
    produce_keyed(&broker, "words", &keyed_words(300, 1));
    let dir = tempfile::tempdir().unwrap();
    let with_changelog = |name: &str| {
        let p = counting(dir.path(), &broker, "wc", "totals");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("wc-changelog", name);
        let q = dir.path().join(format!("{name}.toml"));
        std::fs::write(&q, text).unwrap();
        q
    };
    let log = run_failing(&with_changelog("missing"), &["--instance", "x"]);
    assert!(
        log.contains("topic `missing` does not exist")
            && log.contains("--config cleanup.policy=compact"),
        "{log}"
    );
    let log = run_failing(&with_changelog("plain"), &["--instance", "x"]);
    assert!(
        log.contains("cleanup.policy `delete`, not `compact`"),
        "{log}"
    );
    let log = run_failing(&with_changelog("narrow"), &["--instance", "x"]);
    assert!(
        log.contains("has 2 partitions but input topic `words` has 6"),
        "{log}"
    );

    // The group runs a job; an instance of another version is refused.
    let good = with_changelog("good");
    let first = Instance::start(&good, "first");
    first.wait_owning(PARTITIONS as usize);
    wait_progress(&broker, dir.path(), "wc", "words", 300);
    first.stop();
    let changed = dir.path().join("changed.toml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("wc:running_count", "wc:sum")
            .replace("map_with_state", "reduce_by_key"),
    )
    .unwrap();
    let log = run_failing(&changed, &["--instance", "x"]);
    assert!(
        log.contains("this instance's job differs from the group's")
            && log.contains("`totals` changed")
            && log.contains("written by instance `first`"),
        "{log}"
    );
    let other_job = dir.path().join("other.toml");
    std::fs::write(
        &other_job,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("name = \"wordcount\"", "name = \"another\""),
    )
    .unwrap();
    let log = run_failing(&other_job, &["--instance", "x"]);
    assert!(
        log.contains("the changelog holds state of job `wordcount`, not `another`"),
        "{log}"
    );
}

#[test]
fn pipelines_that_would_compute_per_instance_results_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = r#"
[[source]]
name = "lines"
type = "kafka"
brokers = "127.0.0.1:1"
topics = ["lines"]
group = "g"
"#;
    let regroup = scaled(
        dir.path(),
        "regroup.toml",
        "regroup",
        "c",
        &format!(
            r#"{source}
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

[[output]]
stream = "counts"
type = "print"
"#
        ),
    );
    // `weir validate` says so too, at the [scale_out] table.
    let out = crate::support::weir()
        .arg("validate")
        .arg(&regroup)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("groups by a key that stream `words` (flat_map)"),
        "{said}"
    );
    let log = run_failing(&regroup, &["--instance", "x"]);
    assert!(
        log.contains("stream `counts` (reduce_by_key) groups by a key that stream `words` (flat_map) may have changed")
            && log.contains("Regroup through Kafka"),
        "{log}"
    );
    let global = scaled(
        dir.path(),
        "global.toml",
        "global",
        "c",
        &format!(
            r#"{source}
[[stream]]
name = "n"
op = "count"
input = "lines"

[[output]]
stream = "n"
type = "print"
"#
        ),
    );
    let log = run_failing(&global, &["--instance", "x"]);
    assert!(
        log.contains("stream `n` (count) aggregates every record of the batch"),
        "{log}"
    );
    let files = scaled(
        dir.path(),
        "files.toml",
        "files",
        "c",
        &format!(
            r#"{source}
[[output]]
stream = "lines"
type = "text_files"
prefix = "out/lines"
"#
        ),
    );
    let log = run_failing(&files, &["--instance", "x"]);
    assert!(
        log.contains("writes files, which instances would overwrite"),
        "{log}"
    );
}

#[test]
fn records_not_keyed_as_the_stateful_operator_needs_stop_the_job_naming_the_key() {
    let broker = Broker::start();
    broker.create_topic("words", PARTITIONS);
    broker.create_topic("totals", PARTITIONS);
    changelog(&broker, "wc-changelog");
    // `w1` in a partition murmur2 does not give it.
    let home = weir::kafka::key_hash("murmur2", b"w1", PARTITIONS);
    let wrong = (home + 1) % PARTITIONS;
    let one = 1i64.to_le_bytes();
    broker.produce("words", &[(Some(wrong), &b"w1"[..], &one[..])]);
    let dir = tempfile::tempdir().unwrap();
    let log = run_failing(
        &counting(dir.path(), &broker, "wc", "totals"),
        &["--instance", "x"],
    );
    assert!(
        log.contains(&format!(
            "partition {wrong} of `words` holds a record keyed `w1`, which murmur2 puts in partition {home}"
        )),
        "{log}"
    );
}

/// With `starting_offsets = "latest"`, only a partition's first owner
/// starts at the end: records that arrive while the job is down are read
/// by the next owner, even when the first one logged no batch.
#[test]
fn a_later_owner_continues_where_the_first_began_not_at_latest() {
    let broker = Broker::start();
    broker.create_topic("words", PARTITIONS);
    broker.create_topic("totals", PARTITIONS);
    changelog(&broker, "wc-changelog");
    let dir = tempfile::tempdir().unwrap();
    let p = counting(dir.path(), &broker, "wc", "totals");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "starting_offsets = \"earliest\"",
        "starting_offsets = \"latest\"",
    );
    std::fs::write(&p, text).unwrap();
    let first = Instance::start(&p, "first");
    first.wait_owning(PARTITIONS as usize);
    first.stop();
    let input = keyed_words(120, 9);
    produce_keyed(&broker, "words", &input);
    let second = Instance::start(&p, "second");
    second.wait_owning(PARTITIONS as usize);
    wait_progress(&broker, dir.path(), "wc", "words", input.len() as i64);
    second.stop();
    let (_, by_key) = output(&broker, "totals");
    assert_eq!(
        last_totals(&by_key),
        count_words(input.iter().map(|(k, _)| k.as_slice())),
        "the records produced while the job was down are counted"
    );
}
