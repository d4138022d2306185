//! Density benchmark: how many jobs one `weir serve` host runs, and at
//! what memory cost. `cargo bench -p weir-tests --bench density`.
//!
//! Each configuration runs in a fresh child process (this binary re-run
//! with `__child KIND N`) that starts a host in-process on 127.0.0.1:0 and
//! submits N jobs over HTTP, spread over 10 tenants, each job with the
//! default serve limits (1 worker). It waits until every job has run
//! [`WARMUP_BATCHES`] batches, then measures for [`MEASURE`]:
//!
//! - **idle**: a `files` source watching an empty directory, 1 s batches
//!   (the batch clock runs; no records arrive);
//! - **active**: a word count (hand-written WAT plugin, `flat_map split` →
//!   `reduce_by_key sum` → `text_files`) on the generator at a low rate,
//!   100 lines (1 000 words) per second per job, 1 s batches.
//!
//! Reported: resident memory (`VmRSS` after the measurement, and the peak
//! `VmHWM`), per job; threads; batches completed by all jobs per second
//! against the rate they should run at; scheduling delay (batch time to
//! start of processing) over every job's recent batches: mean, 99th
//! percentile and max; and whether every job is still running.
//!
//! Environment: `WEIR_DENSITY_IDLE=100,300` and `WEIR_DENSITY_ACTIVE=50,100`
//! (job counts), `WEIR_DENSITY_SECONDS=20` (measurement).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::serve::api::JobState;
use weir::serve::{Client, JobInfo, ServeConfig, Server};

/// Target from the issue: 100 active word-count jobs under 2 GiB.
const TARGET_ACTIVE_JOBS: usize = 100;
const TARGET_RSS_MB: f64 = 2048.0;

const WARMUP_BATCHES: u64 = 3;
const TENANTS: usize = 10;
const RESULT: &str = "WEIR_DENSITY_RESULT";

fn main() {
    let Some(_args) = weir_tests::harness::args_or_run_child(|a| {
        child(&a[0], a[1].parse().expect("a job count"))
    }) else {
        return;
    };
    println!("weir serve density benchmark");
    println!(
        "  {} CPU(s); one host per configuration, in a fresh process; jobs spread over {TENANTS} tenants, 1 worker each; {} s measured after {WARMUP_BATCHES} batches per job",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        measure().as_secs()
    );
    println!();
    println!(
        "  {:<7} {:>5} {:>9} {:>9} {:>8} {:>8} {:>13} {:>9} {:>9} {:>9} {:>8}",
        "kind",
        "jobs",
        "RSS MB",
        "peak MB",
        "KB/job",
        "threads",
        "batches/s",
        "delay ms",
        "p99 ms",
        "max ms",
        "running"
    );
    let mut active_ok = None;
    for (kind, counts) in [
        ("idle", counts("WEIR_DENSITY_IDLE", "100,300")),
        ("active", counts("WEIR_DENSITY_ACTIVE", "50,100")),
    ] {
        for n in counts {
            let r = run_child(kind, n);
            let f = |k: &str| -> f64 { r.get(k).parse().unwrap() };
            println!(
                "  {:<7} {:>5} {:>9.0} {:>9.0} {:>8.0} {:>8.0} {:>6.1} of {:<4.0} {:>9.1} {:>9.1} {:>9.1} {:>4}/{:<4}",
                kind,
                n,
                f("rss_mb"),
                f("peak_mb"),
                f("rss_mb") * 1024.0 / n as f64,
                f("threads"),
                f("batches_per_s"),
                n as f64,
                f("delay_mean_ms"),
                f("delay_p99_ms"),
                f("delay_max_ms"),
                r.get("running"),
                n
            );
            if kind == "active" && n == TARGET_ACTIVE_JOBS {
                active_ok = Some(
                    f("peak_mb") < TARGET_RSS_MB
                        && r.get("running") == n.to_string()
                        && f("batches_per_s") >= 0.95 * n as f64,
                );
            }
        }
    }
    println!();
    match active_ok {
        Some(ok) => println!(
            "  target: {TARGET_ACTIVE_JOBS} active word-count jobs under {TARGET_RSS_MB:.0} MB peak RSS, all keeping their rate: {}",
            if ok { "met" } else { "NOT met" }
        ),
        None => println!("  target: {TARGET_ACTIVE_JOBS} active jobs not measured (set WEIR_DENSITY_ACTIVE)"),
    }
}

fn counts(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var}: numbers"))
        })
        .collect()
}

fn measure() -> Duration {
    Duration::from_secs(
        std::env::var("WEIR_DENSITY_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    )
}

struct Results(Vec<(String, String)>);

impl Results {
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the child reported no `{key}`"))
    }
}

fn run_child(kind: &str, n: usize) -> Results {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["__child", kind, &n.to_string()])
        .env(
            "WEIR_LOG",
            std::env::var("WEIR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the benchmark child");
    let stdout = child.stdout.take().unwrap();
    let mut found = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        match line.strip_prefix(RESULT) {
            Some(rest) => {
                found = Some(Results(
                    rest.split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                ))
            }
            None => println!("  [{kind} {n}] {line}"),
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the {kind} {n} child failed: {status}");
    found.expect("the child reported its results")
}

// ---------------------------------------------------------------------------
// The child: one host, N jobs.

fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn pipeline(kind: &str, i: usize) -> String {
    let head = format!("[job]\nname = \"{kind}-{i}\"\nbatch_interval = \"1s\"\npartitions = 2\n\n[plugins]\nwc = \"wordcount.wat\"\n\n");
    let source = if kind == "idle" {
        // The job's own directory, whose existing files are ignored.
        "[[source]]\nname = \"lines\"\ntype = \"files\"\ndir = \".\"\n".to_owned()
    } else {
        format!("[[source]]\nname = \"lines\"\ntype = \"generator\"\nrate = 100\nseed = {i}\nvocabulary = 1000\n")
    };
    format!(
        "{head}{source}
[[stream]]
name = \"words\"
op = \"flat_map\"
input = \"lines\"
function = \"wc:split\"

[[stream]]
name = \"counts\"
op = \"reduce_by_key\"
input = \"words\"
function = \"wc:sum\"

[[output]]
stream = \"counts\"
type = \"text_files\"
prefix = \"out/counts\"
"
    )
}

fn child(kind: &str, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = \"data\"\nmax_jobs = {}\nmax_jobs_per_tenant = {}\n",
        n + 8,
        n.div_ceil(TENANTS) + 1
    );
    for t in 0..TENANTS {
        config.push_str(&format!(
            "[[tenant]]\nname = \"t{t}\"\ntoken = \"density-bench-token-{t:04}\"\n"
        ));
    }
    let path = dir.path().join("serve.toml");
    let config = ServeConfig::parse(&path, &config).unwrap();
    let host = Server::bind(config).unwrap().spawn().unwrap();
    let clients: Vec<Client> = (0..TENANTS)
        .map(|t| Client::new(&host.url(), Some(&format!("density-bench-token-{t:04}"))))
        .collect();
    let wat =
        std::fs::read(weir_tests::workspace_root().join("plugins/wordcount-wat/wordcount.wat"))
            .unwrap();
    let modules = vec![("wordcount.wat".to_owned(), wat)];

    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let c = &clients[i % TENANTS];
        let info = c.submit(&pipeline(kind, i), &modules, &[]).unwrap();
        ids.push((i % TENANTS, info.id));
    }
    let submit_s = started.elapsed().as_secs_f64();

    let all = |clients: &[Client]| -> Vec<JobInfo> {
        clients.iter().flat_map(|c| c.jobs().unwrap()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64);
    loop {
        let jobs = all(&clients);
        if jobs.iter().all(|j| j.batches >= WARMUP_BATCHES) {
            break;
        }
        if let Some(bad) = jobs.iter().find(|j| j.state != JobState::Running) {
            panic!("job {} is {}: {:?}", bad.id, bad.state, bad.error);
        }
        assert!(Instant::now() < deadline, "jobs did not warm up");
        std::thread::sleep(Duration::from_millis(200)); // poll interval
    }
    let before: u64 = all(&clients).iter().map(|j| j.batches).sum();
    let t0 = Instant::now();
    std::thread::sleep(measure()); // the measurement itself
    let jobs: Vec<JobInfo> = ids
        .iter()
        .map(|(t, id)| clients[*t].status(id).unwrap())
        .collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let after: u64 = jobs.iter().map(|j| j.batches).sum();
    let rss_mb = status_kb("VmRSS:") / 1024.0;
    let peak_mb = status_kb("VmHWM:") / 1024.0;
    let threads = status_kb("Threads:");
    let mut delays: Vec<f64> = jobs
        .iter()
        .flat_map(|j| j.recent.iter().map(|b| b.scheduling_delay_ms))
        .collect();
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    let running = jobs.iter().filter(|j| j.state == JobState::Running).count();
    println!("submitted {n} jobs in {submit_s:.1} s");
    println!(
        "{RESULT} rss_mb={rss_mb:.1} peak_mb={peak_mb:.1} threads={threads} batches_per_s={:.2} delay_mean_ms={:.2} delay_p99_ms={:.1} delay_max_ms={:.1} running={running}",
        (after - before) as f64 / elapsed,
        delays.iter().sum::<f64>() / delays.len() as f64,
        pct(0.99),
        pct(1.0),
    );
    host.shutdown().unwrap();
}
