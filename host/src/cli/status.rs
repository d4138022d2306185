//! What `weir` shows on the terminal: the log (text or JSON lines, its
//! level from `-q`/`-v`/`WEIR_LOG`), the status line of `weir run` (an
//! `indicatif` spinner that log lines and `print` output scroll above) and
//! the summary printed when a run ends.
//!
//! The status line is a [`StreamingListener`]: it hears `BatchCompleted`
//! and `BatchFailed` like any other listener and keeps the counts the
//! summary needs. It draws only when stderr is a terminal.

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tracing_indicatif::filter::{hide_indicatif_span_fields, IndicatifFilter};
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::job::events::{BatchCompleted, BatchFailed, StreamingListener};
use crate::job::RunSummary;

/// How much the log says, from the global flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verbosity {
    /// `-q`: warnings and errors only, no status line, no summary.
    pub quiet: bool,
    /// `-v` (1: weir's debug lines) or `-vv` (2 or more: weir's trace lines).
    pub verbose: u8,
}

impl Verbosity {
    /// The filter when `WEIR_LOG` is not set.
    fn directives(self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => "info",
            (false, 1) => "info,weir=debug",
            (false, _) => "info,weir=trace",
        }
    }
}

/// The format of log lines: `WEIR_LOG_FORMAT=json` gives one JSON object
/// per line, anything else (or nothing) human-readable text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO weir::job: batch completed ...`
    Text,
    /// `{"timestamp":...,"level":"INFO","fields":{"message":"batch completed",...},...}`
    Json,
}

impl LogFormat {
    /// From `WEIR_LOG_FORMAT`.
    pub fn from_env() -> LogFormat {
        match std::env::var("WEIR_LOG_FORMAT") {
            Ok(f) if f.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// Installs the process's tracing subscriber: `WEIR_LOG` (an `EnvFilter`)
/// if set and valid, else the level `verbosity` asks for; text or JSON
/// lines on stderr, written through `tracing-indicatif` so they print
/// above the status line. Call once, from `main`.
pub fn install_logging(verbosity: Verbosity) {
    let filter = std::env::var("WEIR_LOG")
        .ok()
        .and_then(|_| EnvFilter::try_from_env("WEIR_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new(verbosity.directives()));
    // Only spans that ask for a bar (the status line's) get one.
    let indicatif = IndicatifLayer::new()
        .with_span_field_formatter(hide_indicatif_span_fields(DefaultFields::new()));
    let writer = indicatif.get_stderr_writer();
    let lines = match LogFormat::from_env() {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(indicatif.with_filter(IndicatifFilter::new(false)))
        .init();
}

/// Reports the error a command ended with on stderr, whatever the log
/// filter: `error: ...` lines, or with JSON logs one JSON line at level
/// `ERROR`, so that every line of stderr stays parseable.
pub fn report_error(error: &dyn fmt::Display) {
    match LogFormat::from_env() {
        LogFormat::Text => eprintln!("error: {error}"),
        LogFormat::Json => {
            let line = serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
                "level": "ERROR",
                "fields": { "message": error.to_string() },
                "target": "weir",
            });
            eprintln!("{line}");
        }
    }
}

/// Watches a run: draws the status line (when asked and stderr is a
/// terminal) and counts what the summary needs beyond [`RunSummary`].
#[derive(Debug)]
pub struct RunMonitor {
    started: Instant,
    batches: AtomicU64,
    records: AtomicU64,
    failed_attempts: AtomicU64,
    /// The span whose progress bar is the status line; dropped to clear it.
    bar: Mutex<Option<tracing::Span>>,
}

impl RunMonitor {
    /// A monitor; with `status_line`, a status line on stderr if it is a
    /// terminal.
    pub fn new(status_line: bool) -> RunMonitor {
        let bar = (status_line && std::io::stderr().is_terminal()).then(|| {
            let span = tracing::info_span!("status", indicatif.pb_show = tracing::field::Empty);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner:.cyan} [weir] {msg} ({elapsed})")
            {
                span.pb_set_style(&style);
            }
            span.pb_set_message("waiting for the first batch");
            span.pb_start();
            span
        });
        RunMonitor {
            started: Instant::now(),
            batches: AtomicU64::new(0),
            records: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            bar: Mutex::new(bar),
        }
    }

    /// Attempts at a batch that failed so far (retried or not).
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }

    /// Clears the status line for good (before the summary is printed).
    pub fn finish(&self) {
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(bar);
    }

    fn status(&self, e: &BatchCompleted, batches: u64) -> String {
        let records = self.records.load(Ordering::Relaxed);
        let rate = records as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let mut s = format!(
            "batches {batches} | {rate:.0} records/s | last batch {:.0} ms | delay {:.0} ms",
            e.processing_ms, e.total_delay_ms
        );
        let failed = self.failed_attempts();
        if failed > 0 {
            s.push_str(&format!(" | {failed} failed attempt(s)"));
        }
        s
    }
}

impl StreamingListener for RunMonitor {
    fn on_batch_completed(&self, e: &BatchCompleted) {
        self.records.fetch_add(e.input_records, Ordering::Relaxed);
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let batches = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(span) = bar.as_ref() {
            span.pb_set_message(&self.status(e, batches));
        }
    }

    fn on_batch_failed(&self, _e: &BatchFailed) {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
    }
}

/// What `weir run` prints when it ends: batches, records, mean and max
/// processing time and total delay, failed attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Batches completed.
    pub batches: u64,
    /// Records the sources gave them.
    pub records: u64,
    /// Mean processing time (ms).
    pub mean_processing_ms: f64,
    /// Longest processing time (ms).
    pub max_processing_ms: f64,
    /// Mean total delay (ms).
    pub mean_delay_ms: f64,
    /// Longest total delay (ms).
    pub max_delay_ms: f64,
    /// Attempts at a batch that failed (each retried, or the job failed).
    pub failed_attempts: u64,
}

impl RunReport {
    /// From a run's summary and the failed attempts a [`RunMonitor`] counted.
    pub fn new(summary: &RunSummary, failed_attempts: u64) -> RunReport {
        let n = summary.stats.len().max(1) as f64;
        let sum = |f: fn(&crate::output::stats::BatchStats) -> f64| {
            summary.stats.iter().map(f).sum::<f64>() / n
        };
        let max = |f: fn(&crate::output::stats::BatchStats) -> f64| {
            summary.stats.iter().map(f).fold(0.0, f64::max)
        };
        RunReport {
            batches: summary.batches,
            records: summary.stats.iter().map(|s| s.input_records).sum(),
            mean_processing_ms: sum(|s| s.processing_ms),
            max_processing_ms: max(|s| s.processing_ms),
            mean_delay_ms: sum(|s| s.total_delay_ms),
            max_delay_ms: max(|s| s.total_delay_ms),
            failed_attempts,
        }
    }

    /// Shows the report: printed in text mode, a `run summary` log line (at
    /// info) with JSON logs; nothing when quiet.
    pub fn show(&self, verbosity: Verbosity) {
        if verbosity.quiet {
            return;
        }
        match LogFormat::from_env() {
            LogFormat::Text => eprintln!("{self}"),
            LogFormat::Json => tracing::info!(
                batches = self.batches,
                records = self.records,
                mean_processing_ms = self.mean_processing_ms,
                max_processing_ms = self.max_processing_ms,
                mean_delay_ms = self.mean_delay_ms,
                max_delay_ms = self.max_delay_ms,
                failed_attempts = self.failed_attempts,
                "run summary"
            ),
        }
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "summary: {} batch(es), {} record(s); processing mean {:.1} ms, max {:.1} ms; \
             total delay mean {:.1} ms, max {:.1} ms",
            self.batches,
            self.records,
            self.mean_processing_ms,
            self.max_processing_ms,
            self.mean_delay_ms,
            self.max_delay_ms
        )?;
        if self.failed_attempts > 0 {
            write!(f, "; {} failed attempt(s)", self.failed_attempts)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::stats::BatchStats;

    fn stats(t: i64, records: u64, processing_ms: f64, total_delay_ms: f64) -> BatchStats {
        BatchStats {
            batch_time_ms: t,
            input_records: records,
            processing_ms,
            scheduling_delay_ms: total_delay_ms - processing_ms,
            total_delay_ms,
        }
    }

    #[test]
    fn the_report_has_means_maxima_and_failed_attempts() {
        let summary = RunSummary {
            batches: 2,
            last_batch_ms: Some(2000),
            stats: vec![stats(1000, 10, 2.0, 3.0), stats(2000, 30, 4.0, 7.0)],
        };
        let report = RunReport::new(&summary, 1);
        assert_eq!(report.records, 40);
        assert_eq!(
            report.to_string(),
            "summary: 2 batch(es), 40 record(s); processing mean 3.0 ms, max 4.0 ms; \
             total delay mean 5.0 ms, max 7.0 ms; 1 failed attempt(s)"
        );
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let summary = RunSummary {
            batches: 0,
            last_batch_ms: None,
            stats: Vec::new(),
        };
        let report = RunReport::new(&summary, 0);
        assert_eq!(report.mean_processing_ms, 0.0);
        assert!(!report.to_string().contains("failed"));
    }

    #[test]
    fn flags_choose_the_level() {
        let v = |quiet, verbose| Verbosity { quiet, verbose }.directives();
        assert_eq!(v(true, 2), "warn");
        assert_eq!(v(false, 0), "info");
        assert_eq!(v(false, 1), "info,weir=debug");
        assert_eq!(v(false, 5), "info,weir=trace");
    }
}
