//! `weir serve` through the real binary, over real HTTP on 127.0.0.1 (port
//! 0, read back from the host's first line):
//!
//! - **hostile tenants**: next to a well-behaved word count, six jobs whose
//!   plugins loop forever, allocate without bound, trap, overflow the
//!   stack, return an out-of-range pointer and return a huge output. Each
//!   bad job fails with the right structured error; the host stays up; the
//!   good job's outputs are byte-identical to a standalone `weir run` of
//!   the same pipeline and its scheduling delay stays under
//!   [`DELAY_BOUND_MS`] on every batch.
//! - **auth and confinement**: no token, a wrong token, another tenant's
//!   token, path traversal and non-loopback sockets are refused with
//!   401/403/400 and change nothing on disk or in the job lists.
//! - **upgrade and rollback** over HTTP, and refused swaps.
//! - the **client subcommands** (`weir submit / jobs / status / stop`).
//!
//! No sleeps for synchronisation: waits poll the API for a condition, each
//! bounded by a deadline; every host is killed when its test ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir::serve::api::{JobInfo, JobState};
use weir::serve::{Client, ClientError};

use crate::support::{wat_wordcount as wat_wordcount_path, weir, wordcount};

/// Scheduling delay the well-behaved job must stay under on every batch
/// while the hostile jobs run next to it on the same 2 cores: half its
/// batch interval.
const DELAY_BOUND_MS: f64 = 250.0;

/// Batch interval of the well-behaved job.
const INTERVAL_MS: u64 = 500;

/// How long any wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(90);

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef0000";
const MALLORY: &str = "mallory-token-0123456789abcdef";

fn wat_wordcount() -> Vec<u8> {
    std::fs::read(wat_wordcount_path()).unwrap()
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(weir_tests::fixture(rel)).unwrap()
}

/// A `weir serve` child process ([`crate::serve_durable::Host`], killed
/// when dropped) on a directory of its own.
struct Host {
    served: crate::serve_durable::Host,
    url: String,
    /// Declared after `served`, so the host is gone before its directory.
    dir: tempfile::TempDir,
}

impl Host {
    /// Starts a host whose configuration is `extra` (limits, tenants) after
    /// the bind address and data directory.
    fn start(extra: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("serve.toml"),
            format!("bind = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{extra}"),
        )
        .unwrap();
        let served = crate::serve_durable::Host::start(dir.path());
        Host {
            url: served.url.clone(),
            served,
            dir,
        }
    }

    fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.url, token)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        self.served.log()
    }

    /// Fails the test if the host process has exited.
    fn assert_alive(&mut self) {
        if let Some(status) = self.served.child.try_wait().unwrap() {
            panic!("the host died ({status}):\n{}", self.log());
        }
        let (code, body) = self.client(None).raw("GET", "/v1/health", None).unwrap();
        assert_eq!((code, body.as_str()), (200, "{\"ok\":true}"));
    }
}

fn tenants(limits: &str) -> String {
    format!(
        "{limits}
[[tenant]]
name = \"alice\"
token = \"{ALICE}\"

[[tenant]]
name = \"bob\"
token = \"{BOB}\"

[[tenant]]
name = \"mallory\"
token = \"{MALLORY}\"
[tenant.limits]
fuel = 2000000000
workers = 2
"
    )
}

/// Word count of the generator with the hand-written WAT plugin, written
/// as text files under `out/`.
fn wordcount_pipeline(name: &str, plugin: &str) -> String {
    format!(
        r#"[job]
name = "{name}"
batch_interval = "{INTERVAL_MS}ms"
partitions = 2

[plugins]
wc = "{plugin}"

[[source]]
name = "lines"
type = "generator"
rate = 200
seed = 7
vocabulary = 50

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
type = "text_files"
prefix = "out/counts"
"#
    )
}

/// A job that runs `function` of `module` over generator lines.
fn hostile_pipeline(name: &str, module: &str, function: &str) -> String {
    format!(
        r#"[job]
name = "{name}"
batch_interval = "{INTERVAL_MS}ms"
partitions = 2

[plugins]
bad = "{module}"

[[source]]
name = "lines"
type = "generator"
rate = 100

[[stream]]
name = "out"
op = "flat_map"
input = "lines"
function = "bad:{function}"

[[output]]
stream = "out"
type = "text_files"
prefix = "out/x"
"#
    )
}

fn modules(list: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(n, b)| (n.to_string(), b.clone()))
        .collect()
}

/// Polls the job until `done` holds, failing after [`WAIT`].
fn wait_for(client: &Client, id: &str, what: &str, done: impl Fn(&JobInfo) -> bool) -> JobInfo {
    let start = Instant::now();
    loop {
        let info = client.status(id).unwrap();
        if done(&info) {
            return info;
        }
        assert!(
            start.elapsed() < WAIT,
            "job {id}: waited {WAIT:?} for {what}; status: {info:#?}"
        );
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    }
}

/// `prefix-<time>` directories under `dir`, by batch time.
fn batch_dirs(dir: &Path, prefix: &str) -> Vec<(i64, PathBuf)> {
    let mut v: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().to_string_lossy().into_owned();
                let t = name.strip_prefix(&format!("{prefix}-"))?.parse().ok()?;
                Some((t, e.path()))
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file of a batch directory, by name.
fn batch_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Runs the same pipeline standalone (`weir run`, simulated clock) for
/// `batches` batches and returns its batch directories.
fn reference_run(pipeline: &str, batches: u64, dir: &Path) -> Vec<(i64, PathBuf)> {
    std::fs::write(dir.join("wordcount.wat"), wat_wordcount()).unwrap();
    let p = dir.join("reference.toml");
    std::fs::write(&p, pipeline).unwrap();
    let out = weir()
        .arg("run")
        .arg(&p)
        .args(["--simulated-clock", "--batches", &batches.to_string()])
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    batch_dirs(&dir.join("out"), "counts")
}

/// The served job's outputs equal the standalone run's, batch by batch,
/// byte for byte, with no batch missing; and every batch counted every
/// word of its lines (rate × interval lines of 10 words).
fn assert_outputs_match_reference(job_dir: &Path, pipeline: &str, batches: u64) {
    let served = batch_dirs(&job_dir.join("out"), "counts");
    assert_eq!(served.len() as u64, batches, "{served:?}");
    for w in served.windows(2) {
        assert_eq!(
            w[1].0 - w[0].0,
            INTERVAL_MS as i64,
            "a batch is missing between {} and {}",
            w[0].0,
            w[1].0
        );
    }
    let ref_dir = tempfile::tempdir().unwrap();
    let reference = reference_run(pipeline, batches, ref_dir.path());
    assert_eq!(reference.len(), served.len());
    let lines_per_batch = 200 * INTERVAL_MS as i64 / 1000;
    for ((t, s), (_, r)) in served.iter().zip(&reference) {
        let files = batch_files(s);
        assert_eq!(
            files,
            batch_files(r),
            "batch {t} differs from the reference"
        );
        let words: i64 = files
            .iter()
            .filter(|(n, _)| n.starts_with("part-"))
            .flat_map(|(_, b)| {
                String::from_utf8(b.clone())
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .map(|l| {
                let (_, n) = l.trim_matches(['(', ')']).rsplit_once(',').unwrap();
                n.parse::<i64>().unwrap()
            })
            .sum();
        assert_eq!(words, lines_per_batch * 10, "batch {t}");
    }
}

#[test]
fn example_config_is_valid() {
    let c =
        weir::serve::ServeConfig::load(&weir_tests::workspace_root().join("examples/serve.toml"))
            .unwrap();
    assert!(c.bind.ip().is_loopback());
    assert_eq!(c.tenants.len(), 2);
}

#[test]
fn hostile_tenants_fail_alone_and_the_good_job_keeps_its_deadlines() {
    let mut host = Host::start(&tenants(
        "[limits]\nmemory_mb = 16\noutput_mb = 1\nmax_retries = 1\npartitions = 4\n",
    ));
    let alice = host.client(Some(ALICE));
    let mallory = host.client(Some(MALLORY));

    let good_pipeline = wordcount_pipeline("good", "wordcount.wat");
    let good = alice
        .submit(
            &good_pipeline,
            &modules(&[("wordcount.wat", wat_wordcount())]),
            &[],
        )
        .unwrap();
    assert_eq!(good.state, JobState::Running);
    assert_eq!(good.limits.workers, 1);
    // Let it run a little alone first.
    wait_for(&alice, &good.id, "2 batches", |i| i.batches >= 2);

    let hostile = [
        ("loop", "abi/endless_loop.wat", "spin", "out_of_fuel"),
        ("bomb", "abi/memory_bomb.wat", "bomb", "memory_limit"),
        ("trap", "abi/trap.wat", "unreachable", "trap"),
        (
            "deep",
            "abi/stack_overflow.wat",
            "recurse",
            "stack_overflow",
        ),
        (
            "pointer",
            "abi/bad_output.wat",
            "pointer_out_of_bounds",
            "bad_pointer",
        ),
        ("huge", "serve/huge_output.wat", "huge", "output_too_large"),
    ];
    let mut bad_jobs = Vec::new();
    for (name, module, function, kind) in hostile {
        let file = Path::new(module).file_name().unwrap().to_str().unwrap();
        let info = mallory
            .submit(
                &hostile_pipeline(name, file, function),
                &modules(&[(file, fixture(module))]),
                &[],
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        bad_jobs.push((info.id, file.trim_end_matches(".wat"), function, kind));
    }
    let good_batches_before = alice.status(&good.id).unwrap().batches;

    for (id, plugin, function, kind) in &bad_jobs {
        let info = wait_for(&mallory, id, "the job to fail", |i| {
            i.state == JobState::Failed
        });
        let e = info.error.expect("a failed job says why");
        assert_eq!(e.kind, *kind, "{id}: {e:#?}");
        assert_eq!(e.plugin.as_deref(), Some(*plugin), "{e:#?}");
        assert_eq!(e.function, Some(format!("map:{function}")), "{e:#?}");
        assert_eq!(e.operator.as_deref(), Some("out"), "{e:#?}");
        assert!(e.batch_time_ms.is_some() && e.partition.is_some(), "{e:#?}");
        assert!(e.message.contains(plugin), "{e:#?}");
        host.assert_alive();
    }
    // The good job ran on through all of it, and a few batches more.
    let ran = wait_for(&alice, &good.id, "batches after the failures", |i| {
        i.batches >= good_batches_before + 4
    });
    assert_eq!(ran.state, JobState::Running);
    assert!(ran.error.is_none());

    let stopped = alice.stop(&good.id).unwrap();
    assert_eq!(stopped.state, JobState::Stopped, "{stopped:#?}");
    let info = alice.status(&good.id).unwrap();
    assert_eq!(
        info.recent.len() as u64,
        info.batches.min(info.recent.len() as u64)
    );
    let worst = info
        .recent
        .iter()
        .map(|b| b.scheduling_delay_ms)
        .fold(0.0, f64::max);
    println!(
        "good job: {} batches, scheduling delay max {worst:.1} ms, mean {:.1} ms (bound {DELAY_BOUND_MS} ms)",
        info.batches,
        info.scheduling_delay.mean_ms.unwrap_or_default()
    );
    assert!(
        info.recent.len() as u64 == info.batches,
        "status covers every batch of this short job"
    );
    assert!(
        worst <= DELAY_BOUND_MS,
        "the good job's scheduling delay reached {worst} ms: {:#?}",
        info.recent
    );
    let job_dir = host.data().join("alice/jobs").join(&good.id);
    assert_outputs_match_reference(&job_dir, &good_pipeline, info.batches);

    // The bad jobs are listed as failed to their tenant, and only to it.
    let listed = mallory.jobs().unwrap();
    assert_eq!(listed.len(), bad_jobs.len());
    assert!(listed.iter().all(|j| j.state == JobState::Failed));
    assert_eq!(alice.jobs().unwrap().len(), 1);
    host.assert_alive();
}

/// Every path under `dir`, with file sizes.
fn tree_sizes(dir: &Path) -> BTreeSet<(PathBuf, u64)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let meta = e.metadata().unwrap();
            let p = e.path();
            out.insert((p.strip_prefix(dir).unwrap().to_owned(), meta.len()));
            if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn status_of(r: Result<(u16, String), ClientError>) -> u16 {
    r.unwrap().0
}

#[test]
fn auth_and_confinement_refusals_change_nothing() {
    let mut host = Host::start(&tenants(""));
    let alice = host.client(Some(ALICE));
    let bob = host.client(Some(BOB));
    let anonymous = host.client(None);
    let forged = host.client(Some("alice-token-0123456789abcdeX"));

    let pipeline = wordcount_pipeline("wc", "wordcount.wat");
    let wc = modules(&[("wordcount.wat", wat_wordcount())]);
    let body = serde_json::to_vec(&serde_json::json!({
        "pipeline": pipeline,
        "modules": {"wordcount.wat": base64_of(&wat_wordcount())},
    }))
    .unwrap();

    // Before any job: refused submissions leave no trace at all.
    let before = tree_sizes(&host.data());
    for c in [&anonymous, &forged] {
        assert_eq!(status_of(c.raw("POST", "/v1/jobs", Some(&body))), 401);
        assert_eq!(status_of(c.raw("GET", "/v1/jobs", None)), 401);
    }
    // Not a bearer token.
    let (code, text) = Client::new(&host.url, None)
        .raw("GET", "/v1/jobs", None)
        .unwrap();
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("\"unauthorized\""), "{text}");
    assert_eq!(tree_sizes(&host.data()), before);

    let job = alice.submit(&pipeline, &wc, &[]).unwrap();
    wait_for(&alice, &job.id, "a batch", |i| i.batches >= 1);
    let alice_dir = host.data().join("alice/jobs").join(&job.id);
    // Everything but the running job's own directory, which grows.
    let snapshot = || {
        tree_sizes(&host.data())
            .into_iter()
            .filter(|(p, _)| !host.data().join(p).starts_with(&alice_dir))
            .collect::<BTreeSet<_>>()
    };
    let before = snapshot();

    // Another tenant's token: 403 on everything about alice's job, and
    // the job is not in its list.
    let id = &job.id;
    for (method, path, body) in [
        ("GET", format!("/v1/jobs/{id}"), None),
        ("POST", format!("/v1/jobs/{id}/stop"), None),
        (
            "POST",
            format!("/v1/jobs/{id}/upgrade"),
            Some(br#"{"plugin":"wordcount","module":"AAAA"}"#.to_vec()),
        ),
        (
            "POST",
            format!("/v1/jobs/{id}/rollback"),
            Some(br#"{"plugin":"wordcount"}"#.to_vec()),
        ),
    ] {
        let (code, text) = bob.raw(method, &path, body.as_deref()).unwrap();
        assert_eq!(code, 403, "{method} {path}: {text}");
        assert_eq!(
            status_of(anonymous.raw(method, &path, body.as_deref())),
            401,
            "{method} {path}"
        );
    }
    assert!(bob.jobs().unwrap().is_empty());
    assert_eq!(
        status_of(bob.raw("GET", "/v1/jobs/nope-00000000", None)),
        404
    );

    // Path traversal, absolute paths, remote sockets, bad file names: 400
    // before anything is written.
    let gen = "[[source]]\nname = \"lines\"\ntype = \"generator\"\n";
    let stream =
        "[[stream]]\nname = \"w\"\nop = \"flat_map\"\ninput = \"lines\"\nfunction = \"wc:split\"\n";
    let out = |prefix: &str| {
        format!("[[output]]\nstream = \"w\"\ntype = \"text_files\"\nprefix = \"{prefix}\"\n")
    };
    let plugins = |p: &str| format!("[plugins]\nwc = \"{p}\"\n");
    let ok_plugins = plugins("wordcount.wat");
    let refused = [
        format!("{}{gen}{stream}{}", ok_plugins, out("../../../bob/jobs/pwned/out")),
        format!("{}{gen}{stream}{}", ok_plugins, out("/tmp/weir-pwned/out")),
        format!("{}{gen}{stream}{}", plugins("../../../bob/x.wasm"), out("out")),
        format!("{}{gen}{stream}{}", plugins("/etc/hostname"), out("out")),
        format!("[job]\ncheckpoint = \"../../bob/ck\"\n{ok_plugins}{gen}{stream}{}", out("out")),
        format!("[job]\nstats_file = \"/tmp/weir-pwned-stats\"\n{ok_plugins}{gen}{stream}{}", out("out")),
        format!(
            "{ok_plugins}[[source]]\nname = \"lines\"\ntype = \"files\"\ndir = \"../..\"\n{stream}{}",
            out("out")
        ),
        format!(
            "{ok_plugins}[[source]]\nname = \"lines\"\ntype = \"socket\"\nhost = \"192.0.2.1\"\nport = 9\n{stream}{}",
            out("out")
        ),
        format!(
            "{ok_plugins}{gen}[[stream]]\nname = \"w\"\nop = \"update_state_by_key\"\ninput = \"lines\"\nfunction = \"wc:running_count\"\ninitial_state = \"../../../../../../etc/passwd\"\n{}",
            out("out")
        ),
        // This host allows no Kafka broker at all.
        format!(
            "{ok_plugins}[[source]]\nname = \"lines\"\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"alice.in\"]\ngroup = \"alice.g\"\n{stream}{}",
            out("out")
        ),
    ];
    for p in &refused {
        match alice.submit(p, &wc, &[]) {
            Err(ClientError::Api {
                status,
                code,
                message,
                ..
            }) => {
                assert_eq!((status, code.as_str()), (400, "path_outside_tenant"), "{p}");
                if p.contains("kafka") {
                    assert!(
                        message.contains("broker \"127.0.0.1:9092\" is not allowed"),
                        "{message}"
                    );
                }
            }
            other => panic!("{p}: {other:?}"),
        }
        // Without a token the same request is a 401, not a 400.
        match anonymous.submit(p, &wc, &[]) {
            Err(ClientError::Api { status, .. }) => assert_eq!(status, 401),
            other => panic!("{p}: {other:?}"),
        }
    }
    for name in [
        "../evil.wasm",
        "sub/dir.wasm",
        ".hidden.wasm",
        "pipeline.toml",
    ] {
        match alice.submit(&pipeline, &modules(&[(name, wat_wordcount())]), &[]) {
            Err(ClientError::Api { status, .. }) => assert_eq!(status, 400, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Not JSON, not a plugin, print to the host's console: 400 as well.
    assert_eq!(
        status_of(alice.raw("POST", "/v1/jobs", Some(b"{nope"))),
        400
    );
    for (p, m, code) in [
        (
            pipeline.clone(),
            modules(&[("wordcount.wat", b"(module)".to_vec())]),
            "invalid_module",
        ),
        (
            pipeline.replace(
                "type = \"text_files\"\nprefix = \"out/counts\"",
                "type = \"print\"",
            ),
            wc.clone(),
            "invalid_pipeline",
        ),
        (
            pipeline.replace("op = \"reduce_by_key\"", "op = \"reduceByKey\""),
            wc.clone(),
            "invalid_pipeline",
        ),
        // Host resources a tenant may not take: back-to-back batches, a
        // generator filling host memory, more partitions than allowed.
        (
            pipeline.replace("partitions = 2", "partitions = 2\nclock = \"simulated\""),
            wc.clone(),
            "invalid_pipeline",
        ),
        (
            pipeline.replace("rate = 200", "rate = 100000000"),
            wc.clone(),
            "invalid_pipeline",
        ),
        (
            pipeline.replace("vocabulary = 50", "vocabulary = 1000000000"),
            wc.clone(),
            "invalid_pipeline",
        ),
        (
            pipeline.replace("partitions = 2", "partitions = 64"),
            wc.clone(),
            "invalid_pipeline",
        ),
    ] {
        match alice.submit(&p, &m, &[]) {
            Err(ClientError::Api {
                status,
                code: c,
                message,
            }) => {
                assert_eq!((status, c.as_str()), (400, code), "{message}");
                assert!(
                    !message.contains(&host.data().display().to_string()),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    // Nothing changed: no files, no jobs, alice's job still running and
    // still making batches.
    assert_eq!(snapshot(), before);
    assert!(!Path::new("/tmp/weir-pwned").exists());
    assert!(!Path::new("/tmp/weir-pwned-stats").exists());
    assert_eq!(alice.jobs().unwrap().len(), 1);
    assert!(bob.jobs().unwrap().is_empty());
    let n = alice.status(id).unwrap().batches;
    let info = wait_for(&alice, id, "another batch", |i| i.batches > n);
    assert_eq!(info.state, JobState::Running);
    host.assert_alive();
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_client_subcommands_drive_a_host() {
    let host = Host::start(&tenants(""));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("plugins/wordcount.wat"), wat_wordcount()).unwrap();
    let p = dir.path().join("wc.toml");
    std::fs::write(&p, wordcount_pipeline("cli", "plugins/wordcount.wat")).unwrap();
    let weir = |args: &[&str], token: Option<&str>| {
        let mut c = weir();
        c.args(args)
            .args(["--server", &host.url])
            .env_remove("WEIR_TOKEN");
        if let Some(t) = token {
            c.env("WEIR_TOKEN", t);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let path = p.to_str().unwrap();
    let (ok, _, err) = weir(&["submit", path], None);
    assert!(!ok && err.contains("WEIR_TOKEN"), "{err}");
    let (ok, _, err) = weir(&["submit", path], Some("not-a-real-token-at-all"));
    assert!(!ok && err.contains("401"), "{err}");

    let (ok, id, err) = weir(&["submit", path], Some(ALICE));
    assert!(ok, "{err}");
    let id = id.trim().to_owned();
    assert!(id.starts_with("cli-"), "{id}");
    let alice = host.client(Some(ALICE));
    wait_for(&alice, &id, "a batch", |i| i.batches >= 1);

    let (ok, table, err) = weir(&["jobs"], Some(ALICE));
    assert!(
        ok && table.contains(&id) && table.contains("running"),
        "{table}{err}"
    );
    let (ok, table, _) = weir(&["jobs"], Some(BOB));
    assert!(ok && !table.contains(&id), "{table}");
    let (ok, json, err) = weir(&["status", &id], Some(ALICE));
    assert!(ok, "{err}");
    let info: JobInfo = serde_json::from_str(&json).unwrap();
    assert_eq!(info.id, id);
    assert_eq!(
        info.modules.get("wordcount"),
        Some(&sha256_hex(&wat_wordcount()))
    );
    let rust = wordcount();
    let (ok, out, err) = weir(
        &[
            "upgrade",
            &id,
            "--plugin",
            "wordcount",
            "--module",
            rust.to_str().unwrap(),
        ],
        Some(ALICE),
    );
    assert!(
        ok && out.contains("upgraded plugin `wordcount`"),
        "{out}{err}"
    );
    let (ok, out, err) = weir(&["rollback", &id, "--plugin", "wordcount"], Some(ALICE));
    assert!(
        ok && out.contains("rolled back plugin `wordcount`"),
        "{out}{err}"
    );
    let (ok, _, err) = weir(&["stop", &id], Some(BOB));
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, out, err) = weir(&["stop", &id], Some(ALICE));
    assert!(ok && out.contains("stopped"), "{out}{err}");
    assert_eq!(alice.status(&id).unwrap().state, JobState::Stopped);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn upgrade_and_rollback_over_http() {
    let mut host = Host::start(&tenants(""));
    let alice = host.client(Some(ALICE));
    let bob = host.client(Some(BOB));
    let wat = wat_wordcount();
    // The Rust build of the same plugin: other bytes, byte-identical results.
    let rust = std::fs::read(wordcount()).unwrap();
    let (v1, v2) = (sha256_hex(&wat), sha256_hex(&rust));
    assert_ne!(v1, v2);

    let pipeline = wordcount_pipeline("swap", "wordcount.wat");
    let job = alice
        .submit(&pipeline, &modules(&[("wordcount.wat", wat.clone())]), &[])
        .unwrap();
    let id = job.id.as_str();
    assert_eq!(job.modules.get("wordcount"), Some(&v1));
    let info = wait_for(&alice, id, "2 batches", |i| i.batches >= 2);
    assert_eq!(info.modules.get("wordcount"), Some(&v1));

    // Refused swaps leave the job running its module.
    let refused = |who: &Client, plugin: &str, module: &[u8]| match who.upgrade(id, plugin, module)
    {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("{plugin}: {other:?}"),
    };
    let (status, code, message) = refused(&alice, "wordcount", b"not wasm at all");
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_module"),
        "{message}"
    );
    let (status, code, message) = refused(&alice, "wordcount", &fixture("abi/trap.wat"));
    assert_eq!((status, code.as_str()), (409, "swap_rejected"), "{message}");
    assert!(message.contains("split"), "{message}");
    let (status, _, message) = refused(&alice, "nope", &rust);
    assert_eq!(status, 400, "{message}");
    let (status, _, message) = refused(&bob, "wordcount", &rust);
    assert_eq!(status, 403, "{message}");
    match bob.rollback(id, "wordcount") {
        Err(ClientError::Api { status, .. }) => assert_eq!(status, 403),
        other => panic!("{other:?}"),
    }
    let info = alice.status(id).unwrap();
    assert_eq!(info.state, JobState::Running);
    assert_eq!(info.modules.get("wordcount"), Some(&v1));

    // Upgrade: applied at the next batch boundary.
    let before = info.last_batch_ms.unwrap();
    let up = alice.upgrade(id, "wordcount", &rust).unwrap();
    assert_eq!(
        (up.plugin.as_str(), &up.from, &up.to),
        ("wordcount", &v1, &v2)
    );
    assert!(up.first_batch_ms > before, "{up:?} after batch {before}");
    assert_eq!(
        alice.status(id).unwrap().modules.get("wordcount"),
        Some(&v2)
    );
    wait_for(&alice, id, "a batch on the new module", |i| {
        i.last_batch_ms >= Some(up.first_batch_ms)
    });

    // Rollback: back to the first module.
    let back = alice.rollback(id, "wordcount").unwrap();
    assert_eq!((&back.from, &back.to), (&v2, &v1));
    assert!(back.first_batch_ms > up.first_batch_ms);
    wait_for(&alice, id, "a batch after the rollback", |i| {
        i.last_batch_ms >= Some(back.first_batch_ms)
    });
    assert_eq!(
        alice.status(id).unwrap().modules.get("wordcount"),
        Some(&v1)
    );
    // The job's API (its web UI's) shows both swaps and the batch each
    // took effect at, and the functions of the module running now.
    let (code, body) = alice
        .raw("GET", &format!("/jobs/{id}/api/v1/job"), None)
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let plugin = &view["plugins"][0];
    assert_eq!(plugin["moduleHash"], v1.as_str(), "{view}");
    assert!(
        plugin["functions"].to_string().contains("map:split"),
        "{view}"
    );
    let swaps = plugin["swaps"].as_array().unwrap();
    assert_eq!(swaps.len(), 2, "{view}");
    assert_eq!(swaps[0]["to"], v2.as_str());
    assert_eq!(swaps[0]["firstBatchTime"], up.first_batch_ms);
    assert_eq!(swaps[1]["rollback"], true);
    assert_eq!(swaps[1]["firstBatchTime"], back.first_batch_ms);

    // Through both swaps, every batch is there and exactly right.
    let stopped = alice.stop(id).unwrap();
    assert_eq!(stopped.state, JobState::Stopped);
    match alice.upgrade(id, "wordcount", &rust) {
        Err(ClientError::Api { status, .. }) => assert_eq!(status, 409),
        other => panic!("{other:?}"),
    }
    let job_dir = host.data().join("alice/jobs").join(id);
    assert_outputs_match_reference(&job_dir, &pipeline, stopped.batches);
    host.assert_alive();
}

/// Threads of a process, from `/proc/PID/status`.
fn threads_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// Issue 9: jobs share one host — its wasm runtime, its runtime (receivers
/// and batch clocks) and its worker pool — so an idle job costs at most the
/// thread its batches borrow, and nothing between batches (it cost four
/// threads before: batch clock, receiver runtime, worker pool,
/// supervisor).
#[test]
fn issue_9_idle_jobs_cost_one_thread_each() {
    const JOBS: usize = 24;
    let host = Host::start(&tenants("max_jobs_per_tenant = 64"));
    let alice = host.client(Some(ALICE));
    let before = threads_of(host.served.child.id());
    let pipeline = |i: usize| {
        format!(
            "[job]\nname = \"idle{i}\"\nbatch_interval = \"200ms\"\n\n[[source]]\nname = \"lines\"\ntype = \"files\"\ndir = \".\"\n\n[[stream]]\nname = \"n\"\nop = \"count\"\ninput = \"lines\"\n\n[[output]]\nstream = \"n\"\ntype = \"text_files\"\nprefix = \"out/n\"\n"
        )
    };
    let ids: Vec<String> = (0..JOBS)
        .map(|i| alice.submit(&pipeline(i), &[], &[]).unwrap().id)
        .collect();
    for id in &ids {
        wait_for(&alice, id, "two batches", |j| j.batches >= 2);
    }
    let after = threads_of(host.served.child.id());
    // A few threads besides the batch threads may appear as the host
    // serves the submissions (tokio's blocking threads for the API); four
    // per job (the old layout) would be ~100 here.
    assert!(
        after <= before + JOBS + 8,
        "{JOBS} idle jobs took {} threads ({before} before, {after} after); one each expected",
        after - before
    );
    for id in &ids {
        alice.stop(id).unwrap();
    }
}

/// A served job reads and writes Kafka topics under the tenant's prefix,
/// on the broker the host allows.
#[test]
fn a_served_job_reads_and_writes_the_tenants_topics() {
    let broker = weir_tests::kafka::Broker::start();
    broker.create_topic("alice.lines", 2);
    broker.create_topic("alice.counts", 2);
    let lines: Vec<String> = (0..60).map(|i| format!("w{} w{}", i % 7, i % 3)).collect();
    let records: Vec<(Option<i32>, &[u8], &[u8])> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (Some((i % 2) as i32), &b""[..], l.as_bytes()))
        .collect();
    broker.produce("alice.lines", &records);
    let host = Host::start(&tenants(&format!(
        "[kafka]\nbrokers = [\"{}\"]\n",
        broker.address()
    )));
    let pipeline = format!(
        r#"[job]
name = "kwc"
batch_interval = "{INTERVAL_MS}ms"
partitions = 2

[plugins]
wc = "wordcount.wat"

[[source]]
name = "lines"
type = "kafka"
brokers = "{b}"
topics = ["alice.lines"]
group = "alice.kwc"

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
name = "counts"
stream = "counts"
type = "kafka"
brokers = "{b}"
topic = "alice.counts"
"#,
        b = broker.address()
    );
    let alice = host.client(Some(ALICE));
    let info = alice
        .submit(
            &pipeline,
            &modules(&[("wordcount.wat", wat_wordcount())]),
            &[],
        )
        .unwrap();
    let mut expected = std::collections::BTreeMap::new();
    for w in lines.iter().flat_map(|l| l.split_whitespace()) {
        *expected.entry(w.to_owned()).or_insert(0i64) += 1;
    }
    // Every word counted (bounded wait), none twice.
    let deadline = Instant::now() + WAIT;
    let mut batches = 0;
    loop {
        let mut got = std::collections::BTreeMap::new();
        for r in broker.read_committed("alice.counts").into_iter().flatten() {
            *got.entry(String::from_utf8(r.key).unwrap()).or_insert(0i64) +=
                i64::from_le_bytes(r.value.as_slice().try_into().unwrap());
        }
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline && got.values().sum::<i64>() <= 120,
            "{got:?} against {expected:?}:\n{}",
            host.log()
        );
        batches = wait_for(&alice, &info.id, "another batch", |i| i.batches > batches).batches;
    }
    // The topic prefix is bob's, not alice's: refused.
    let bobs = pipeline.replace("alice.counts", "bob.counts");
    match alice.submit(&bobs, &modules(&[("wordcount.wat", wat_wordcount())]), &[]) {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert!(message.contains("topic = \"bob.counts\""), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// Reads an event stream (`GET path` with no header) until a
/// `batch_completed` event arrives; its status line and what was read.
fn first_events(url: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        let text = String::from_utf8_lossy(&got);
        if text.contains("event: batch_completed") || text.contains("\r\n\r\n{\"error\"") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    (text.lines().next().unwrap_or_default().to_owned(), text)
}

#[test]
fn issue_12_job_pages_api_and_events_need_the_tenants_token() {
    let host = Host::start(&tenants(""));
    let alice = host.client(Some(ALICE));
    let bob = host.client(Some(BOB));
    let anonymous = host.client(None);
    let pipeline = wordcount_pipeline("watched", "wordcount.wat");
    let job = alice
        .submit(
            &pipeline,
            &modules(&[("wordcount.wat", wat_wordcount())]),
            &[],
        )
        .unwrap();
    wait_for(&alice, &job.id, "two batches", |i| i.batches >= 2);
    let id = &job.id;

    // Alice: with her token as a header or in the query.
    let (code, body) = alice
        .raw("GET", &format!("/jobs/{id}/api/v1/job"), None)
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["name"], "watched");
    assert!(info["numCompletedBatches"].as_u64().unwrap() >= 2, "{info}");
    let q = format!("?token={ALICE}");
    let (code, body) = anonymous
        .raw("GET", &format!("/jobs/{id}/api/v1/batches{q}"), None)
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"COMPLETED\""), "{body}");
    let (code, page) = anonymous
        .raw("GET", &format!("/jobs/{id}/ui{q}"), None)
        .unwrap();
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(&format!("\"base\":\"/jobs/{id}\"")),
        "the page calls its job's API"
    );
    assert!(page.contains(ALICE), "the page passes the token on");
    let (code, list) = anonymous.raw("GET", &format!("/ui{q}"), None).unwrap();
    assert_eq!(code, 200, "{list}");
    assert!(
        list.contains(&format!("/jobs/{id}/ui?token={ALICE}")),
        "{list}"
    );
    // In a browser: the page passes the token on to its API calls.
    let dom = crate::ui::run_chromium(
        &format!("{}/jobs/{id}/ui{q}", host.url),
        &["--virtual-time-budget=3000", "--dump-dom"],
    );
    let plot = crate::ui::element(&dom, "svg", "timeline-processing-time");
    let points = crate::ui::attr_values(plot, "data-batch").len();
    assert!(
        points >= 2,
        "the served page plots the job's batches:\n{dom}"
    );
    let rows = crate::ui::attr_values(crate::ui::element(&dom, "table", "batches"), "data-batch");
    assert!(rows.len() >= points, "{dom}");
    let (status, events) = first_events(&host.url, &format!("/jobs/{id}/events{q}"));
    assert!(status.contains("200"), "{events}");
    assert!(events.contains("event: batch_completed"), "{events}");
    // Metrics: Alice's jobs, labelled with job and tenant.
    let (code, metrics) = alice.raw("GET", "/metrics", None).unwrap();
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("weir_batches_total{")
            && l.contains(&format!("job=\"{id}\""))
            && l.contains("tenant=\"alice\"")),
        "{metrics}"
    );
    let (code, _) = anonymous
        .raw("GET", &format!("/jobs/{id}/metrics{q}"), None)
        .unwrap();
    assert_eq!(code, 200);
    let (code, bobs) = bob.raw("GET", "/metrics", None).unwrap();
    assert_eq!(code, 200, "{bobs}");
    assert!(
        !bobs.contains(id.as_str()),
        "Bob sees none of Alice's series: {bobs}"
    );
    assert_eq!(status_of(anonymous.raw("GET", "/metrics", None)), 401);

    // Bob: 403 on Alice's job, whichever way he sends his token.
    let b = format!("?token={BOB}");
    for path in ["ui", "api/v1/job", "api/v1/batches", "events", "metrics"] {
        let (code, body) = bob.raw("GET", &format!("/jobs/{id}/{path}"), None).unwrap();
        assert_eq!(code, 403, "{path}: {body}");
        let (code, body) = anonymous
            .raw("GET", &format!("/jobs/{id}/{path}{b}"), None)
            .unwrap();
        assert_eq!(code, 403, "{path}: {body}");
    }
    let (status, _) = first_events(&host.url, &format!("/jobs/{id}/events{b}"));
    assert!(status.contains("403"), "{status}");
    let (code, list) = anonymous.raw("GET", &format!("/ui{b}"), None).unwrap();
    assert_eq!(code, 200);
    assert!(
        !list.contains(id.as_str()),
        "Bob's list shows no job of Alice's: {list}"
    );

    // No token, or a wrong one: 401.
    for path in ["ui", "api/v1/job", "events"] {
        let (code, body) = anonymous
            .raw("GET", &format!("/jobs/{id}/{path}"), None)
            .unwrap();
        assert_eq!(code, 401, "{path}: {body}");
        let (code, _) = anonymous
            .raw("GET", &format!("/jobs/{id}/{path}?token=nope"), None)
            .unwrap();
        assert_eq!(code, 401, "{path}");
    }
    assert_eq!(status_of(anonymous.raw("GET", "/ui", None)), 401);
    let (status, _) = first_events(&host.url, &format!("/jobs/{id}/events"));
    assert!(status.contains("401"), "{status}");
}
