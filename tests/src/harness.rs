//! The child-process harness the end-to-end benchmarks share: each
//! configuration runs in a fresh process (the bench binary re-run with
//! `__child ...`) so its peak RSS is its own, and reports `key=value`
//! pairs on one line of stdout.

use std::process::Command;

/// Marks the line a child reports on.
pub const RESULT: &str = "WEIR_BENCH_RESULT";

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: a number, not {v:?}"))
        })
        .unwrap_or(default)
}

/// In a child: reports `pairs` to the parent.
pub fn report(pairs: &[(&str, String)]) {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{RESULT} {}", body.join(" "));
}

/// What a child reported.
pub struct Results(Vec<(String, String)>);

impl Results {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("child reported no `{key}`"))
    }

    /// The value of `key`, a number.
    pub fn f64(&self, key: &str) -> f64 {
        self.get(key).parse().expect("a number")
    }

    /// The value of `key`, numbers joined by `,` (see [`join`]).
    pub fn list(&self, key: &str) -> Vec<f64> {
        self.get(key)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("a number"))
            .collect()
    }
}

/// The benchmark's arguments, cargo's `--` flags dropped. When this binary
/// was started as a child ([`run_child`]: `__child ARGS...`), runs `child`
/// with ARGS instead and gives `None`.
pub fn args_or_run_child(child: impl FnOnce(&[String])) -> Option<Vec<String>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.first().map(String::as_str) == Some("__child") {
        child(&args[1..]);
        return None;
    }
    Some(args)
}

/// Runs this benchmark binary as `__child ARGS...` and reads its report.
pub fn run_child(args: &[&str]) -> Results {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg("__child")
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {args:?} failed ({}):\n{stdout}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .unwrap_or_else(|| panic!("child {args:?} reported nothing:\n{stdout}"));
    Results(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A `kB` field of `/proc/self/status`.
pub fn status_kb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Peak resident set size of this process, in MB.
pub fn peak_rss_mb() -> f64 {
    status_kb("VmHWM:") / 1024.0
}

/// The median.
pub fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Numbers for a report, joined by `,`.
pub fn join(xs: &[f64]) -> String {
    xs.iter()
        .map(|x| format!("{x:.3}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A rate in M or K per second.
pub fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M", per_sec / 1e6)
    } else {
        format!("{:.0} K", per_sec / 1e3)
    }
}

/// A target's verdict.
pub fn met(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "NO"
    }
}

/// Runs source `spec` alone (→ `count`) on `ctx` for `1 + batches` batches
/// of `per_batch` records, checks every record was counted, and gives each
/// batch's processing time (ms): the part of a batch spent making input.
pub fn source_alone(
    ctx: weir::StreamingContext,
    spec: weir::SourceSpec,
    per_batch: u64,
    batches: usize,
) -> Vec<f64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let counted = std::sync::Arc::new(AtomicU64::new(0));
    let sink = counted.clone();
    ctx.source(Some("source"), spec)
        .and_then(|s| s.count())
        .expect("count")
        .foreach_batch(move |_, parts| {
            let n: i64 = parts
                .iter()
                .flat_map(|p| p.iter())
                .map(|(_, v)| crate::count(v))
                .sum();
            sink.fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        })
        .expect("output");
    let summary = ctx.run(Some(1 + batches as u64)).expect("run");
    assert_eq!(
        counted.load(Ordering::Relaxed),
        per_batch * (1 + batches as u64),
        "every record counted"
    );
    summary.stats.iter().map(|s| s.processing_ms).collect()
}
