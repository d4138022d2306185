//! Issue 15: `weir serve` jobs are durable, and tenant tokens are kept as
//! hashes. Real `weir serve` processes on 127.0.0.1, killed with SIGKILL:
//!
//! - three tenants' jobs (running counts over a generator, a sliding window,
//!   a directory of files) survive 10 SIGKILLs of the host at random
//!   moments (seeded; `WEIR_SEED` picks another seed) with outputs
//!   byte-identical to an uninterrupted `weir run` of the same pipelines;
//!   a stopped and a failed job stay listed as they ended; a job deleted
//!   half-way stays deleted;
//! - a graceful stop brings the running jobs back too; a damaged record is
//!   reported naming its file, its job listed as failed (and deletable),
//!   and every other job comes back;
//! - tokens as `token_sha256` (bare or `sha256:`), as plain text (with a
//!   warning), and a wrong token; `weir serve hash-token`.
//!
//! Synchronisation is by the host's first line (its address) and by
//! polling the API for a condition, each wait bounded; the only sleeps are
//! the random delays that place a kill inside a batch.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::serve::api::{JobInfo, JobState};
use weir::serve::{Client, ClientError};

use crate::support::{wat_wordcount, weir};

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef0000";
const CAROL: &str = "carol-token-0123456789abcdef00";

/// Batch interval of the jobs.
pub(crate) const INTERVAL_MS: u64 = 250;

/// How long any wait may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(90);

/// A `weir serve` process on a data directory it shares with the hosts
/// before and after it; killed (SIGKILL) on drop.
pub(crate) struct Host {
    pub(crate) child: Child,
    pub(crate) url: String,
    dir: PathBuf,
}

impl Host {
    /// Starts a host on `dir`'s `serve.toml` (its data in `dir/data`),
    /// logging to `dir/host.log` (appended: every host's lines).
    pub(crate) fn start(dir: &Path) -> Host {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("host.log"))
            .unwrap();
        let mut child = weir()
            .args(["serve", "--config"])
            .arg(dir.join("serve.toml"))
            .env("WEIR_LOG", "info,weir::scheduler=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn weir serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(WAIT).unwrap_or_default();
        let mut host = Host {
            child,
            url: String::new(),
            dir: dir.to_owned(),
        };
        match line.split_whitespace().find(|w| w.starts_with("http://")) {
            Some(url) => host.url = url.to_owned(),
            None => panic!(
                "the host did not say where it listens: {line:?}\n{}",
                host.log()
            ),
        }
        host
    }

    pub(crate) fn client(&self, token: &str) -> Client {
        Client::new(&self.url, Some(token))
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("host.log")).unwrap_or_default()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM (a graceful stop) and wait for the process to exit.
    fn terminate(mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}\n{}", self.log());
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the configuration: alice's token as a bare hash, bob's as a
/// `sha256:` hash, carol's in plain text.
fn configure(dir: &Path) {
    let hash = |t: &str| hex_of(&weir::serve::config::hash_token(t));
    let config = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[limits]\npartitions = 4\nmax_retries = 1\n\n\
         [[tenant]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n\n\
         [[tenant]]\nname = \"bob\"\ntoken_sha256 = \"sha256:{}\"\n\n\
         [[tenant]]\nname = \"carol\"\ntoken = \"{CAROL}\"\n",
        hash(ALICE),
        hash(BOB)
    );
    let path = dir.join("serve.toml");
    std::fs::write(&path, config).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub(crate) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn head(name: &str) -> String {
    format!("[job]\nname = \"{name}\"\nbatch_interval = \"{INTERVAL_MS}ms\"\npartitions = 2\n\n[plugins]\nwc = \"wordcount.wat\"\n\n")
}

pub(crate) fn generator(seed: u64) -> String {
    format!("[[source]]\nname = \"lines\"\ntype = \"generator\"\nrate = 400\nseed = {seed}\nvocabulary = 60\n\n")
}

pub(crate) const SPLIT: &str =
    "[[stream]]\nname = \"words\"\nop = \"flat_map\"\ninput = \"lines\"\nfunction = \"wc:split\"\n\n";

pub(crate) fn output(stream: &str) -> String {
    format!(
        "[[output]]\nstream = \"{stream}\"\ntype = \"text_files\"\nprefix = \"out/{stream}\"\n\n"
    )
}

/// Alice's job: running counts of every word (keyed state), with a
/// checkpoint every 2 batches (the others checkpoint every 10 s, the
/// default, so they replay their whole logs).
fn stateful() -> String {
    format!(
        "{}{}{SPLIT}[[stream]]\nname = \"totals\"\nop = \"update_state_by_key\"\ninput = \"words\"\nfunction = \"wc:running_count\"\n\n{}",
        head("totals").replace("[plugins]", "checkpoint = \"ck\"\ncheckpoint_interval = \"500ms\"\n\n[plugins]"),
        generator(7),
        output("totals")
    )
}

/// Bob's job: word counts per batch and over a sliding window of 1 s
/// every 500 ms.
fn windowed() -> String {
    format!(
        "{}{}{SPLIT}[[stream]]\nname = \"counts\"\nop = \"reduce_by_key\"\ninput = \"words\"\nfunction = \"wc:sum\"\n\n\
         [[stream]]\nname = \"win\"\nop = \"reduce_by_key_and_window\"\ninput = \"words\"\nfunction = \"wc:sum\"\nlength = \"1s\"\nslide = \"500ms\"\n\n{}{}",
        head("window"),
        generator(11),
        output("counts"),
        output("win")
    )
}

/// Carol's job: a directory of files, one file per batch (all present at
/// the start, taken in name order), word counts per batch.
fn files_job() -> String {
    format!(
        "{}[[source]]\nname = \"lines\"\ntype = \"files\"\ndir = \"in\"\ninclude_existing = true\nmax_files_per_batch = 1\n\n{SPLIT}\
         [[stream]]\nname = \"counts\"\nop = \"reduce_by_key\"\ninput = \"words\"\nfunction = \"wc:sum\"\n\n{}",
        head("files"),
        output("counts")
    )
}

/// The files of carol's job: `in/fNN.txt`, seeded lines of words.
fn input_files() -> Vec<(String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(3);
    (0..12)
        .map(|i| {
            let lines: String = (0..rng.gen_range(5..40))
                .map(|_| {
                    let words: Vec<String> = (0..rng.gen_range(1..8))
                        .map(|_| format!("w{}", rng.gen_range(0..30)))
                        .collect();
                    words.join(" ") + "\n"
                })
                .collect();
            (format!("in/f{i:02}.txt"), lines.into_bytes())
        })
        .collect()
}

pub(crate) fn module() -> Vec<(String, Vec<u8>)> {
    vec![(
        "wordcount.wat".to_string(),
        std::fs::read(wat_wordcount()).unwrap(),
    )]
}

/// Polls the job until `done` holds, failing after [`WAIT`].
pub(crate) fn wait_for(
    host: &Host,
    client: &Client,
    id: &str,
    what: &str,
    done: impl Fn(&JobInfo) -> bool,
) -> JobInfo {
    let start = Instant::now();
    loop {
        let info = client.status(id).unwrap();
        if done(&info) {
            return info;
        }
        assert!(
            start.elapsed() < WAIT,
            "job {id}: waited {WAIT:?} for {what}; status: {info:#?}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

/// Every `prefix-<time>` batch directory under `out`, grouped by prefix,
/// in time order: the batch times and each batch's files (name, bytes).
pub(crate) type Batches = BTreeMap<String, Vec<(i64, Vec<(String, Vec<u8>)>)>>;

pub(crate) fn batches(out: &Path) -> Batches {
    let mut all = Batches::new();
    for e in std::fs::read_dir(out).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((prefix, t)) = name.rsplit_once('-') else {
            continue;
        };
        let (Ok(t), false) = (t.parse::<i64>(), name.starts_with('.')) else {
            continue;
        };
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(e.path())
            .unwrap()
            .map(|f| {
                let f = f.unwrap();
                let bytes = std::fs::read(f.path()).unwrap();
                (f.file_name().to_string_lossy().into_owned(), bytes)
            })
            .collect();
        files.sort();
        all.entry(prefix.to_owned()).or_default().push((t, files));
    }
    for v in all.values_mut() {
        v.sort_by_key(|(t, _)| *t);
    }
    all
}

/// Runs the pipeline standalone (`weir run`, simulated clock) for
/// `n` batches with the same module and files; its batches.
fn reference(pipeline: &str, files: &[(String, Vec<u8>)], n: usize) -> Batches {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in module().iter().chain(files) {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let p = dir.path().join("pipeline.toml");
    std::fs::write(&p, pipeline).unwrap();
    let out = weir()
        .arg("run")
        .arg(&p)
        .args(["--simulated-clock", "--batches", &n.to_string()])
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    batches(&dir.path().join("out"))
}

/// The served job's outputs equal the uninterrupted run's, batch after
/// batch, byte for byte; no batch time is missing.
fn assert_same_as_uninterrupted(
    job_dir: &Path,
    per_batch: &str,
    pipeline: &str,
    files: &[(String, Vec<u8>)],
) {
    let served = batches(&job_dir.join("out"));
    let n = served[per_batch].len();
    for w in served[per_batch].windows(2) {
        assert_eq!(
            w[1].0 - w[0].0,
            INTERVAL_MS as i64,
            "{}: a batch is missing after {}",
            job_dir.display(),
            w[0].0
        );
    }
    let expected = reference(pipeline, files, n);
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (prefix, got) in &served {
        let want = &expected[prefix];
        assert_eq!(got.len(), want.len(), "{prefix}: batches");
        for ((t, g), (_, w)) in got.iter().zip(want) {
            assert!(
                g == w,
                "{}: {prefix} batch {t} differs from the uninterrupted run",
                job_dir.display()
            );
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The status of a refused request.
pub(crate) fn api_status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> u16 {
    match r {
        Err(ClientError::Api { status, .. }) => status,
        Ok(answer) => panic!("the request should have been refused: {answer:#?}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn issue_15_jobs_survive_sigkills_of_the_host_byte_for_byte() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path());
    let data = dir.path().join("data");
    let mut host = Host::start(dir.path());
    let (alice, bob, carol) = (host.client(ALICE), host.client(BOB), host.client(CAROL));

    let inputs = input_files();
    let a = alice.submit(&stateful(), &module(), &[]).unwrap().id;
    let b = bob.submit(&windowed(), &module(), &[]).unwrap().id;
    let c = carol.submit(&files_job(), &module(), &inputs).unwrap().id;
    // A job deleted half-way, one stopped and one failed before the kills.
    let doomed = alice
        .submit(
            &stateful().replace("\"totals\"\nbatch", "\"doomed\"\nbatch"),
            &module(),
            &[],
        )
        .unwrap()
        .id;
    let stopped = bob.submit(&windowed(), &module(), &[]).unwrap().id;
    let trap = std::fs::read(weir_tests::fixture("abi/trap.wat")).unwrap();
    let failing = carol
        .submit(
            &format!(
                "{}{}[[stream]]\nname = \"out\"\nop = \"flat_map\"\ninput = \"lines\"\nfunction = \"bad:unreachable\"\n\n{}",
                head("failing").replace("wc = \"wordcount.wat\"", "bad = \"trap.wat\""),
                generator(1),
                output("out")
            ),
            &[("trap.wat".to_string(), trap)],
            &[],
        )
        .unwrap()
        .id;
    wait_for(&host, &bob, &stopped, "a batch", |i| i.batches >= 1);
    assert_eq!(bob.stop(&stopped).unwrap().state, JobState::Stopped);
    let stopped_batches =
        batches(&data.join("bob/jobs").join(&stopped).join("out"))["counts"].len();
    let failed = wait_for(&host, &carol, &failing, "the failure", |i| {
        i.state == JobState::Failed
    });
    assert_eq!(failed.error.as_ref().unwrap().kind, "trap");
    // Ids are numbered, never handed out twice.
    let ids = [&a, &b, &c, &doomed, &stopped, &failing];
    let numbers: std::collections::BTreeSet<_> = ids
        .iter()
        .map(|id| id.rsplit_once('-').unwrap().1.to_owned())
        .collect();
    assert_eq!(numbers.len(), ids.len(), "{ids:?}");

    let seed = std::env::var("WEIR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15u64);
    println!("issue 15 kill test: seed {seed} (WEIR_SEED)");
    let mut rng = StdRng::seed_from_u64(seed);
    const KILLS: usize = 10;
    for kill in 1..=KILLS {
        // Some progress of this host, then a random moment inside the
        // next batch: on odd kills, batches of any kind (replayed, caught
        // up, live); on even kills, live batches, after the catching up.
        let progress = rng.gen_range(1..=3);
        let alice = host.client(ALICE);
        let live_from = now_ms() + progress * INTERVAL_MS as i64;
        wait_for(&host, &alice, &a, "progress", |i| match kill % 2 {
            1 => i.batches >= progress as u64,
            _ => i.last_batch_ms >= Some(live_from),
        });
        if kill == KILLS / 2 {
            let d = alice.delete(&doomed).unwrap();
            assert_eq!(d.id, doomed);
            assert_eq!(api_status(alice.status(&doomed)), 404);
        }
        let delay = rng.gen_range(0..INTERVAL_MS * 1000);
        let how = if kill % 2 == 1 {
            "batch(es)"
        } else {
            "live batch(es)"
        };
        println!("kill {kill}: after {progress} {how} and {delay} µs");
        std::thread::sleep(Duration::from_micros(delay)); // the random moment, not a wait
        host.kill();
        host = Host::start(dir.path());
        let (alice, bob, carol) = (host.client(ALICE), host.client(BOB), host.client(CAROL));
        for (client, id) in [(&alice, &a), (&bob, &b), (&carol, &c)] {
            assert_eq!(client.status(id).unwrap().state, JobState::Running, "{id}");
        }
        let s = bob.status(&stopped).unwrap();
        assert_eq!((s.state, s.error), (JobState::Stopped, None));
        let f = carol.status(&failing).unwrap();
        assert_eq!(f.state, JobState::Failed);
        assert_eq!(f.error, failed.error, "the failure is kept with its error");
        if kill >= KILLS / 2 {
            assert_eq!(
                api_status(alice.status(&doomed)),
                404,
                "deleted stays deleted"
            );
            assert!(!data.join("alice/jobs").join(&doomed).exists());
        }
    }

    // Run on a little, then stop every job and compare.
    let clients = [
        (host.client(ALICE), &a, "totals", stateful(), Vec::new()),
        (host.client(BOB), &b, "counts", windowed(), Vec::new()),
        (host.client(CAROL), &c, "counts", files_job(), inputs),
    ];
    let tenants = ["alice", "bob", "carol"];
    for (client, id, _, _, _) in &clients {
        wait_for(&host, client, id, "batches after the last restart", |i| {
            i.batches >= 4
        });
    }
    for ((client, id, per_batch, pipeline, files), tenant) in clients.iter().zip(tenants) {
        let info = client.stop(id).unwrap();
        assert_eq!(info.state, JobState::Stopped, "{info:#?}");
        let job_dir = data.join(tenant).join("jobs").join(id);
        assert_same_as_uninterrupted(&job_dir, per_batch, pipeline, files);
    }
    // The stopped job never ran again.
    assert_eq!(
        batches(&data.join("bob/jobs").join(&stopped).join("out"))["counts"].len(),
        stopped_batches
    );
    // A fresh id after all these restarts.
    let again = host
        .client(ALICE)
        .submit(&stateful(), &module(), &[])
        .unwrap()
        .id;
    assert!(!ids.contains(&&again), "{again} reused");
    let log = host.log();
    assert!(!log.contains("panicked"), "{log}");
    println!(
        "issue 15 kill test: {KILLS} kills in {:.1?}",
        started.elapsed()
    );
}

#[test]
fn issue_15_graceful_restart_damaged_record_and_cli_delete() {
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path());
    let data = dir.path().join("data");
    let host = Host::start(dir.path());
    let alice = host.client(ALICE);
    let good = alice.submit(&stateful(), &module(), &[]).unwrap().id;
    let damaged = alice.submit(&stateful(), &module(), &[]).unwrap().id;
    let marked = alice.submit(&stateful(), &module(), &[]).unwrap().id;
    let moved = alice.submit(&stateful(), &module(), &[]).unwrap().id;
    wait_for(&host, &alice, &good, "a batch", |i| i.batches >= 2);
    host.terminate();
    let jobs = data.join("alice/jobs");
    // Tear the second job's record.
    let record = jobs.join(&damaged).join(".job.json");
    let bytes = std::fs::read(&record).unwrap();
    std::fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
    // Deletions cut short by a crash: right after the record was marked,
    // and right after the directory was moved aside.
    let marked_record = jobs.join(&marked).join(".job.json");
    let text = std::fs::read_to_string(&marked_record).unwrap();
    assert!(text.contains("\"state\": \"running\""), "{text}");
    std::fs::write(
        &marked_record,
        text.replace("\"state\": \"running\"", "\"state\": \"deleted\""),
    )
    .unwrap();
    std::fs::rename(jobs.join(&moved), jobs.join(format!(".deleted-{moved}"))).unwrap();

    let host = Host::start(dir.path());
    let alice = host.client(ALICE);
    wait_for(
        &host,
        &alice,
        &good,
        "the job back after a graceful stop",
        |i| i.state == JobState::Running && i.batches >= 1,
    );
    for gone in [&marked, &moved] {
        assert_eq!(api_status(alice.status(gone)), 404, "{gone}");
        assert!(!jobs.join(gone).exists() && !jobs.join(format!(".deleted-{gone}")).exists());
    }
    let bad = alice.status(&damaged).unwrap();
    assert_eq!(bad.state, JobState::Failed);
    let e = bad.error.unwrap();
    assert_eq!(e.kind, "record");
    assert!(e.message.contains(&record.display().to_string()), "{e:?}");
    let log = host.log();
    assert!(
        log.contains("cannot bring the job back") && log.contains(".job.json"),
        "{log}"
    );
    // Its pages are gone with its process; its status stays.
    let (code, _) = alice
        .raw("GET", &format!("/jobs/{damaged}/api/v1/job"), None)
        .unwrap();
    assert_eq!(code, 409);
    // `weir delete` removes it, and it stays removed.
    let out = weir()
        .args(["delete", &damaged, "--server", &host.url, "--token", ALICE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted"));
    assert!(!data.join("alice/jobs").join(&damaged).exists());
    // Bob may not delete Alice's job; nobody may delete it twice.
    assert_eq!(api_status(host.client(BOB).delete(&good)), 403);
    host.kill();
    let host = Host::start(dir.path());
    let alice = host.client(ALICE);
    assert_eq!(api_status(alice.status(&damaged)), 404);
    assert_eq!(alice.jobs().unwrap().len(), 1);
    assert_eq!(api_status(alice.delete(&damaged)), 404);
}

#[test]
fn issue_15_token_hashes_plain_tokens_and_wrong_tokens() {
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path());
    let host = Host::start(dir.path());
    for token in [ALICE, BOB, CAROL] {
        let (code, body) = host.client(token).raw("GET", "/v1/jobs", None).unwrap();
        assert_eq!(code, 200, "{body}");
    }
    for wrong in [
        "alice-token-0123456789abcdeX",
        &weir::serve::config::hash_token(ALICE)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        "",
    ] {
        let (code, body) = host.client(wrong).raw("GET", "/v1/jobs", None).unwrap();
        assert_eq!(code, 401, "{wrong}: {body}");
    }
    // The plain-text token, and only it, is warned about.
    let log = host.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("plain text")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("carol"), "{log}");

    // `weir serve hash-token`: from an argument or stdin, the same hash.
    let expected = hex_of(&weir::serve::config::hash_token(ALICE));
    let out = weir()
        .args(["serve", "hash-token", ALICE])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    let mut child = weir()
        .args(["serve", "hash-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{ALICE}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    let out = weir()
        .args(["serve", "hash-token", "short"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
}
