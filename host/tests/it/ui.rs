//! Watching a job (issue 12): `weir run --http` serves a web UI, a JSON
//! API and server-sent events.
//!
//! - the page, rendered by the real headless Debian `chromium` (which the
//!   test needs: `scripts/setup.sh --tests` installs it), plots a point for
//!   every batch the JSON API lists on each of the four timelines and lists
//!   every batch in its table; a screenshot goes to `target/ui-test/`;
//! - the API reports what the job ran (`--batches`), with per-operator
//!   detail;
//! - an event stream client that never reads is disconnected and does not
//!   slow the job;
//! - a port in use or an address that does not parse is a clear error
//!   before any batch runs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::serve::Client;

use crate::support::{run_failing, spawn, wat_wordcount, weir_run, PATIENCE};

/// Batches the browser test's job runs.
const BATCHES: u64 = 12;

/// A word count over generated lines, with keyed state, written as text
/// files under `dir/out/`.
fn pipeline(dir: &Path) -> PathBuf {
    let output = format!(
        "type = \"text_files\"\nprefix = {:?}",
        dir.join("out/totals")
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            r#"[job]
name = "watched"
batch_interval = "1s"
partitions = 2

[plugins]
wc = {plugin:?}

[[source]]
name = "lines"
type = "generator"
rate = 100
words_per_line = 5
vocabulary = 200

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[stream]]
name = "totals"
op = "update_state_by_key"
input = "words"
function = "wc:running_count"

[[output]]
stream = "totals"
{output}
"#,
            plugin = wat_wordcount(),
        ),
    )
    .unwrap();
    path
}

/// A `weir run --http` child, killed on drop.
struct Watched {
    child: Child,
    url: String,
    log: mpsc::Receiver<String>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watched {
    /// Starts `weir run PIPELINE --http 127.0.0.1:0 ARGS` and reads the
    /// address it serves on from its log.
    fn start(pipeline: &Path, args: &[&str]) -> Watched {
        let mut all = vec!["--http", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (child, log) = spawn(weir_run(pipeline, &all));
        let mut w = Watched {
            child,
            url: String::new(),
            log,
        };
        let line = w.wait_for("serving the job's web UI");
        let at = line.find("http://").expect("the log names the URL");
        w.url = line[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        w
    }

    /// Waits for a log line containing `needle`.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no `{needle}` line in weir's log: {e}"),
            }
        }
    }

    /// `GET path` as JSON, asserting 200.
    fn get(&self, path: &str) -> Value {
        let (code, body) = Client::new(&self.url, None).raw("GET", path, None).unwrap();
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

/// The `chromium` binary, or a failure saying how to install it.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the UI test needs Debian's chromium: run `scripts/setup.sh --tests` \
             (or `apt-get install -y chromium`)"
        )
    })
}

/// Runs headless chromium with `args` on `url`; its stdout.
pub(crate) fn run_chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The markup of the element with `id` (from its opening tag to the
/// first closing `</tag>`: plots and tables do not nest their own kind).
pub(crate) fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let at = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no element #{id} in the page:\n{dom}"));
    let start = dom[..at].rfind(&format!("<{tag}")).unwrap();
    let end = dom[at..].find(&format!("</{tag}>")).unwrap() + at;
    &dom[start..end]
}

/// Values of `attr` on the elements of `markup` that carry it.
pub(crate) fn attr_values(markup: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    markup
        .match_indices(&needle)
        .map(|(i, _)| {
            let rest = &markup[i + needle.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

fn ui_test_dir() -> PathBuf {
    let dir = weir_tests::workspace_root().join("target/ui-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_web_ui_plots_every_batch_in_headless_chromium() {
    let started = Instant::now();
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    let batches = BATCHES.to_string();
    let job = Watched::start(
        &pipeline,
        &["--simulated-clock", "--batches", &batches, "--keep-serving"],
    );
    job.wait_for("still serving");

    // The API reports what the job ran.
    let info = job.get("/api/v1/job");
    assert_eq!(info["numCompletedBatches"], BATCHES, "{info}");
    assert_eq!(info["state"], "stopped", "{info}");
    assert_eq!(info["plugins"][0]["functions"][0], "map:split", "{info}");
    let listed = job.get("/api/v1/batches");
    let times: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "COMPLETED")
        .map(|b| b["batchTime"].to_string())
        .collect();
    assert_eq!(times.len() as u64, BATCHES, "{listed}");
    let stats = job.get("/api/v1/statistics");
    assert_eq!(stats["numTotalCompletedBatches"], BATCHES, "{stats}");
    assert_eq!(stats["avgInputRate"], 100.0, "{stats}");
    let detail = job.get(&format!("/api/v1/batches/{}", times[0]));
    let split = &detail["operators"][0];
    assert_eq!(split["name"], "words", "{detail}");
    assert_eq!(split["recordsIn"], 100, "{detail}");
    assert_eq!(split["recordsOut"], 500, "{detail}");
    assert!(split["calls"].as_u64().unwrap() > 0 && split["fuel"].as_u64().unwrap() > 0);
    let sources = job.get("/api/v1/sources");
    assert_eq!(sources[0]["kind"], "generator", "{sources}");
    assert_eq!(sources[0]["recordsTotal"], 100 * BATCHES, "{sources}");
    let state = job.get("/api/v1/state");
    assert_eq!(
        state["operators"][0]["op"], "update_state_by_key",
        "{state}"
    );
    // Prometheus metrics of the same run (tests/tests/it/metrics.rs parses
    // the format with a real parser; here: the endpoint serves them).
    let (code, metrics) = Client::new(&job.url, None)
        .raw("GET", "/metrics", None)
        .unwrap();
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.contains(&format!(
            "weir_batches_total{{job=\"watched\",replayed=\"false\"}} {BATCHES}"
        )) || metrics.lines().any(|l| l.starts_with("weir_batches_total{")
            && l.contains("replayed=\"false\"")
            && l.ends_with(&format!(" {BATCHES}"))),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_batch_processing_seconds_count{")
                && l.ends_with(&format!(" {BATCHES}"))),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    // The page, as chromium renders it once its scripts ran.
    let page = format!("{}/", job.url);
    let dom = run_chromium(&page, &["--virtual-time-budget=5000", "--dump-dom"]);
    let mut expected = times.clone();
    expected.sort();
    for plot in [
        "input-rate",
        "scheduling-delay",
        "processing-time",
        "total-delay",
    ] {
        let svg = element(&dom, "svg", &format!("timeline-{plot}"));
        assert_eq!(
            attr_values(svg, "data-points"),
            [BATCHES.to_string()],
            "{plot}"
        );
        let mut points = attr_values(svg, "data-batch");
        points.sort();
        assert_eq!(points, expected, "the {plot} timeline's points");
        let histogram = element(&dom, "svg", &format!("histogram-{plot}"));
        let counted: u64 = attr_values(histogram, "data-count")
            .iter()
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(counted, BATCHES, "the {plot} histogram");
    }
    let table = element(&dom, "table", "batches");
    assert_eq!(
        attr_values(table, "data-batch").len() as u64,
        BATCHES,
        "rows of the batch table"
    );
    assert!(
        element(&dom, "table", "sources").contains("generator"),
        "{dom}"
    );

    let shot = ui_test_dir().join("weir-ui.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &page,
        &[
            "--virtual-time-budget=5000",
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1000",
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot at {}", shot.display());
    eprintln!(
        "page {} bytes, screenshot {} ({size} bytes), chromium {}, test {:.1} s",
        Client::new(&job.url, None)
            .raw("GET", "/", None)
            .unwrap()
            .1
            .len(),
        shot.display(),
        browser.display(),
        started.elapsed().as_secs_f64()
    );
}

/// Opens the event stream and never reads it.
fn stuck_client(url: &str) -> std::net::TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    s
}

/// Runs `batches` batches back to back; the seconds they took, from the
/// log's first batch to its `stopped` line, and the job (still serving).
fn timed_run(
    pipeline: &Path,
    batches: u64,
    stuck: bool,
) -> (f64, Watched, Option<std::net::TcpStream>) {
    let n = batches.to_string();
    let job = Watched::start(
        pipeline,
        &["--simulated-clock", "--batches", &n, "--keep-serving"],
    );
    let client = stuck.then(|| stuck_client(&job.url));
    let begun = Instant::now();
    job.wait_for("still serving");
    (begun.elapsed().as_secs_f64(), job, client)
}

/// A cheap job (a few records per batch, one stage, printed) that runs
/// thousands of batches a second on the simulated clock.
fn fast_pipeline(dir: &Path) -> PathBuf {
    let path = dir.join("fast.toml");
    std::fs::write(
        &path,
        format!(
            r#"[job]
name = "fast"
batch_interval = "1s"
partitions = 1

[plugins]
wc = {plugin:?}

[[source]]
name = "lines"
type = "generator"
rate = 10
words_per_line = 5

[[stream]]
name = "words"
op = "flat_map"
input = "lines"
function = "wc:split"

[[output]]
stream = "words"
type = "print"
"#,
            plugin = wat_wordcount(),
        ),
    )
    .unwrap();
    path
}

/// Reads `client` to its end; fails if it is still open after `limit`.
fn read_to_close(client: &mut std::net::TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the event stream: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the event stream of a client that fell behind is still open after {limit:?} ({} bytes read)",
            received.len()
        );
    }
}

#[test]
fn an_event_client_that_never_reads_is_dropped_and_does_not_slow_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = fast_pipeline(dir.path());
    // Enough events (about 1 KB a batch) to fill the socket buffers
    // between the server and a client that does not read, and then the
    // client's queue.
    let batches = 20_000;
    let (alone, _, _) = timed_run(&pipeline, batches, false);
    let (watched, job, client) = timed_run(&pipeline, batches, true);
    assert!(
        watched < alone * 2.0 + 3.0,
        "with a stuck client {batches} batches took {watched:.1} s, alone {alone:.1} s"
    );
    // The job ran every batch, and the stuck client was cut off: reading
    // now gives what was queued, then the end of the stream.
    assert_eq!(job.get("/api/v1/job")["numCompletedBatches"], batches);
    let received = read_to_close(&mut client.unwrap(), Duration::from_secs(30));
    let completed = String::from_utf8_lossy(&received)
        .matches("event: batch_completed")
        .count();
    assert!(
        (completed as u64) < batches,
        "the stuck client got {completed} of {batches} batches"
    );
    eprintln!("{batches} batches: alone {alone:.2} s, with a stuck client {watched:.2} s; it got {completed} batch_completed events");
}

#[test]
fn http_on_a_port_in_use_or_a_bad_address_fails_before_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let log = run_failing(
        &pipeline,
        &["--simulated-clock", "--batches", "2", "--http", &addr],
    );
    assert!(
        log.contains(&format!("--http {addr}: cannot listen there")),
        "{log}"
    );
    assert!(!log.contains("batch completed"), "{log}");
    assert!(!dir.path().join("out").exists(), "no batch may run: {log}");
    for bad in ["nowhere:x", "127.0.0.1:99999", "::1::2"] {
        let log = run_failing(
            &pipeline,
            &["--simulated-clock", "--batches", "2", "--http", bad],
        );
        assert!(
            log.contains(&format!("--http {bad}: not an address")),
            "{log}"
        );
        assert!(!log.contains("batch completed"), "{log}");
    }
    assert!(!dir.path().join("out").exists());
    // --keep-serving without --http is a usage error.
    let out = weir_run(&pipeline, &["--keep-serving"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_failed_batch_shows_its_error_in_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trap.toml");
    std::fs::write(
        &path,
        format!(
            r#"[job]
name = "trapping"

[limits]
max_retries = 1

[plugins]
bad = {module:?}

[[source]]
name = "lines"
type = "generator"
rate = 10

[[stream]]
name = "out"
op = "flat_map"
input = "lines"
function = "bad:unreachable"

[[output]]
stream = "out"
type = "print"
"#,
            module = weir_tests::fixture("abi/trap.wat"),
        ),
    )
    .unwrap();
    let job = Watched::start(&path, &["--simulated-clock", "--keep-serving"]);
    job.wait_for("still serving");
    let info = job.get("/api/v1/job");
    assert_eq!(info["state"], "failed", "{info}");
    assert_eq!(info["numFailedBatches"], 1, "{info}");
    assert_eq!(info["numFailedAttempts"], 2, "{info}");
    let batches = job.get("/api/v1/batches");
    let failed = &batches[0];
    assert_eq!(failed["status"], "FAILED", "{batches}");
    assert_eq!(failed["failedAttempts"], 2, "{batches}");
    let reason = failed["firstFailureReason"].as_str().unwrap();
    assert!(reason.contains("unreachable"), "{reason}");
}
