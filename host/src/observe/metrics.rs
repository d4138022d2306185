//! Prometheus metrics of running jobs, fed by their listener events.
//!
//! One [`MetricsHub`] per `weir run` process and one per tenant under
//! `weir serve` holds the metric families; each job adds the listener of
//! [`MetricsHub::job_listener`], which turns its [`Event`]s into counter,
//! gauge and histogram updates labelled with the job (and, under serve, the
//! tenant). [`MetricsHub::encode`] writes the OpenMetrics text exposition
//! that the HTTP layer serves at `/metrics` with [`CONTENT_TYPE`].
//!
//! Names follow Prometheus conventions: a `weir_` prefix, base units
//! (seconds, bytes) in the name, `_total` on counters. The README's
//! "Metrics" section lists every metric; [`METRIC_NAMES`] is that list as
//! the exposition spells it.
//!
//! Replayed batches (recomputed from the write-ahead log during recovery)
//! count like live ones: they did the work again; `weir_batches_total` tells
//! them apart by its `replayed` label. A series appears with the first
//! event that feeds it (a family without series is left out of the
//! exposition), and a job's series stay after it stops, until
//! [`MetricsHub::remove_job`] forgets them.
//!
//! [`Event`]: crate::stream::events::Event

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::job::events::{
    BatchCompleted, BatchFailed, CheckpointWritten, OperatorStats, PluginSwapped, SourceError,
    StateSize, StreamingListener,
};

/// The content type of [`MetricsHub::encode`]'s text (OpenMetrics 1.0,
/// which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the delay and duration histograms' buckets:
/// 1 ms to 60 s.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric family the hub exposes, as named in the exposition
/// (counters with `_total`; histograms by their base name, whose series add
/// `_bucket`, `_count` and `_sum`).
pub const METRIC_NAMES: [&str; 18] = [
    "weir_batches_total",
    "weir_batch_failures_total",
    "weir_input_records_total",
    "weir_batch_processing_seconds",
    "weir_scheduling_delay_seconds",
    "weir_batch_total_delay_seconds",
    "weir_operator_records_total",
    "weir_operator_seconds_total",
    "weir_plugin_calls_total",
    "weir_plugin_fuel_consumed_total",
    "weir_state_keys",
    "weir_state_bytes",
    "weir_source_errors_total",
    "weir_plugin_swaps_total",
    "weir_checkpoints_total",
    "weir_checkpoint_duration_seconds",
    "weir_last_batch_time_seconds",
    "weir_receiver_queued_blocks",
];

/// What can go wrong exposing metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The text exposition could not be written.
    #[error("cannot encode the metrics{}", tenant_suffix(.tenant))]
    Encode {
        /// The hub's tenant, if any.
        tenant: Option<String>,
        /// The formatter's error.
        #[source]
        source: std::fmt::Error,
    },
}

fn tenant_suffix(tenant: &Option<String>) -> String {
    tenant
        .as_ref()
        .map(|t| format!(" of tenant {t}"))
        .unwrap_or_default()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BatchLabels {
    job: String,
    replayed: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    job: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperatorLabels {
    job: String,
    operator: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    job: String,
    operator: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    job: String,
    operator: String,
    plugin: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    job: String,
    operator: String,
    plugin: String,
    function: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    job: String,
    plugin: String,
}

type Seconds = Counter<f64, AtomicU64>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn histograms<L: Clone + std::hash::Hash + Eq>() -> Histograms<L> {
    Family::new_with_constructor(duration_histogram)
}

/// The metric families; cloning one shares its series.
#[derive(Debug)]
struct Families {
    batches: Family<BatchLabels, Counter>,
    batch_failures: Family<JobLabels, Counter>,
    input_records: Family<SourceLabels, Counter>,
    processing: Histograms<JobLabels>,
    scheduling_delay: Histograms<JobLabels>,
    total_delay: Histograms<JobLabels>,
    operator_records: Family<DirectionLabels, Counter>,
    operator_seconds: Family<OperatorLabels, Seconds>,
    plugin_calls: Family<CallLabels, Counter>,
    plugin_fuel: Family<FunctionLabels, Counter>,
    state_keys: Family<OperatorLabels, Gauge>,
    state_bytes: Family<OperatorLabels, Gauge>,
    source_errors: Family<SourceLabels, Counter>,
    plugin_swaps: Family<PluginLabels, Counter>,
    checkpoints: Family<JobLabels, Counter>,
    checkpoint_duration: Histograms<JobLabels>,
    last_batch_time: Family<JobLabels, Gauge<f64, AtomicU64>>,
    queued_blocks: Family<SourceLabels, Gauge>,
}

impl Families {
    fn new() -> Self {
        Families {
            batches: Family::default(),
            batch_failures: Family::default(),
            input_records: Family::default(),
            processing: histograms(),
            scheduling_delay: histograms(),
            total_delay: histograms(),
            operator_records: Family::default(),
            operator_seconds: Family::default(),
            plugin_calls: Family::default(),
            plugin_fuel: Family::default(),
            state_keys: Family::default(),
            state_bytes: Family::default(),
            source_errors: Family::default(),
            plugin_swaps: Family::default(),
            checkpoints: Family::default(),
            checkpoint_duration: histograms(),
            last_batch_time: Family::default(),
            queued_blocks: Family::default(),
        }
    }

    /// Registers every family (names without the `weir_` prefix, which the
    /// registry adds, and without `_total` or the unit, which the encoder
    /// adds). Help texts get their full stop from the encoder. Histograms
    /// carry their unit in the name only: OpenMetrics allows a `# UNIT` line
    /// on them, but some parsers (openmetrics-parser) reject it.
    fn register(&self, r: &mut Registry) {
        r.register(
            "batches",
            "Batches completed, live or replayed during recovery",
            self.batches.clone(),
        );
        r.register(
            "batch_failures",
            "Failed attempts at a batch (each retry that fails counts)",
            self.batch_failures.clone(),
        );
        r.register(
            "input_records",
            "Records the sources gave completed batches",
            self.input_records.clone(),
        );
        r.register(
            "batch_processing_seconds",
            "Time from the start of a batch's processing to its outputs written",
            self.processing.clone(),
        );
        r.register(
            "scheduling_delay_seconds",
            "Time from a batch's batch time to the start of its processing",
            self.scheduling_delay.clone(),
        );
        r.register(
            "batch_total_delay_seconds",
            "Scheduling delay plus processing time of a batch",
            self.total_delay.clone(),
        );
        r.register(
            "operator_records",
            "Records an operator read (direction in) or produced (direction out)",
            self.operator_records.clone(),
        );
        r.register_with_unit(
            "operator",
            "Wall-clock time spent in an operator, plugin calls included",
            Unit::Seconds,
            self.operator_seconds.clone(),
        );
        r.register(
            "plugin_calls",
            "Plugin calls an operator made, by outcome",
            self.plugin_calls.clone(),
        );
        r.register(
            "plugin_fuel_consumed",
            "Wasm fuel an operator's plugin calls used",
            self.plugin_fuel.clone(),
        );
        r.register(
            "state_keys",
            "Keys held by a stateful operator after the last batch",
            self.state_keys.clone(),
        );
        r.register_with_unit(
            "state",
            "Bytes of keys and values held by a stateful operator after the last batch",
            Unit::Bytes,
            self.state_bytes.clone(),
        );
        r.register(
            "source_errors",
            "Problems a source reported and works through on its own",
            self.source_errors.clone(),
        );
        r.register(
            "plugin_swaps",
            "Plugin module swaps, rollbacks included",
            self.plugin_swaps.clone(),
        );
        r.register(
            "checkpoints",
            "Checkpoints written",
            self.checkpoints.clone(),
        );
        r.register(
            "checkpoint_duration_seconds",
            "Time taken to write a checkpoint",
            self.checkpoint_duration.clone(),
        );
        r.register_with_unit(
            "last_batch_time",
            "Batch time of the last completed batch, as a Unix time",
            Unit::Seconds,
            self.last_batch_time.clone(),
        );
        r.register("receiver_queued_blocks", "Blocks a receiver holds for the next batch, when the last batch completed (sources with a receiver queue only)", self.queued_blocks.clone());
    }
}

/// The label values a job has used, so that its series can be forgotten.
#[derive(Debug, Default)]
struct JobSeries {
    sources: BTreeSet<String>,
    /// Operator → (plugin, function).
    operators: BTreeMap<String, (String, String)>,
    plugins: BTreeSet<String>,
}

/// The metrics of one `weir run` process or of one tenant under
/// `weir serve`: every job's listener updates the same families.
#[derive(Debug)]
pub struct MetricsHub {
    tenant: Option<String>,
    registry: Registry,
    families: Families,
    jobs: Mutex<HashMap<String, JobSeries>>,
}

impl MetricsHub {
    /// A hub with no series yet. With a tenant, every series carries the
    /// label `tenant`.
    pub fn new(tenant: Option<&str>) -> Arc<MetricsHub> {
        let labels = tenant
            .map(|t| ("tenant".into(), t.to_owned().into()))
            .into_iter();
        let mut registry = Registry::with_prefix_and_labels("weir", labels);
        let families = Families::new();
        families.register(&mut registry);
        Arc::new(MetricsHub {
            tenant: tenant.map(str::to_owned),
            registry,
            families,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    /// The tenant whose metrics these are, under `weir serve`.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// A listener for job `job` (add it with `StreamingContext::add_listener`
    /// or `JobControl::add_listener`): its events update this hub's series
    /// labelled `job`. Listening to the same job twice counts twice.
    pub fn job_listener(self: &Arc<Self>, job: &str) -> Arc<dyn StreamingListener> {
        self.jobs().entry(job.to_owned()).or_default();
        Arc::new(JobMetrics {
            hub: self.clone(),
            job: job.to_owned(),
        })
    }

    /// Forgets every series of `job` (a removed job); a listener of it still
    /// attached would start them again. Returns whether the hub knew it.
    pub fn remove_job(&self, job: &str) -> bool {
        let Some(series) = self.jobs().remove(job) else {
            return false;
        };
        self.families.forget(job, &series);
        true
    }

    /// The OpenMetrics text exposition of every series, ending in `# EOF`.
    pub fn try_encode(&self) -> Result<String, MetricsError> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).map_err(|source| {
            MetricsError::Encode {
                tenant: self.tenant.clone(),
                source,
            }
        })?;
        Ok(text)
    }

    /// [`MetricsHub::try_encode`], for serving: writing to a `String` cannot
    /// fail, but should the encoder fail, the error is logged and an empty
    /// exposition (`# EOF`) returned.
    pub fn encode(&self) -> String {
        self.try_encode().unwrap_or_else(|e| {
            tracing::error!(error = %e, "metrics not encoded");
            "# EOF\n".to_owned()
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, JobSeries>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes the label values a job used (for [`MetricsHub::remove_job`]).
    fn note(&self, job: &str, f: impl FnOnce(&mut JobSeries)) {
        f(self.jobs().entry(job.to_owned()).or_default());
    }
}

impl Families {
    /// Removes every series labelled with `job`.
    fn forget(&self, job: &str, series: &JobSeries) {
        let j = || job.to_owned();
        let jl = JobLabels { job: j() };
        for f in [&self.batch_failures, &self.checkpoints] {
            f.remove(&jl);
        }
        for f in [
            &self.processing,
            &self.scheduling_delay,
            &self.total_delay,
            &self.checkpoint_duration,
        ] {
            f.remove(&jl);
        }
        self.last_batch_time.remove(&jl);
        for replayed in [false, true] {
            self.batches.remove(&BatchLabels { job: j(), replayed });
        }
        for source in &series.sources {
            let l = SourceLabels {
                job: j(),
                source: source.clone(),
            };
            self.input_records.remove(&l);
            self.source_errors.remove(&l);
            self.queued_blocks.remove(&l);
        }
        for (operator, (plugin, function)) in &series.operators {
            self.forget_operator(job, operator, plugin, function);
        }
        for plugin in &series.plugins {
            self.plugin_swaps.remove(&PluginLabels {
                job: j(),
                plugin: plugin.clone(),
            });
        }
    }

    fn forget_operator(&self, job: &str, operator: &str, plugin: &str, function: &str) {
        let ol = OperatorLabels {
            job: job.to_owned(),
            operator: operator.to_owned(),
        };
        self.operator_seconds.remove(&ol);
        self.state_keys.remove(&ol);
        self.state_bytes.remove(&ol);
        for direction in ["in", "out"] {
            self.operator_records.remove(&DirectionLabels {
                job: ol.job.clone(),
                operator: ol.operator.clone(),
                direction,
            });
        }
        let fl = FunctionLabels {
            job: ol.job.clone(),
            operator: ol.operator.clone(),
            plugin: plugin.to_owned(),
            function: function.to_owned(),
        };
        for outcome in ["ok", "error"] {
            self.plugin_calls.remove(&fl.call(outcome));
        }
        self.plugin_fuel.remove(&fl);
    }
}

impl FunctionLabels {
    fn call(&self, outcome: &'static str) -> CallLabels {
        CallLabels {
            job: self.job.clone(),
            operator: self.operator.clone(),
            plugin: self.plugin.clone(),
            function: self.function.clone(),
            outcome,
        }
    }
}

/// The listener of one job: events to series.
struct JobMetrics {
    hub: Arc<MetricsHub>,
    job: String,
}

impl JobMetrics {
    fn families(&self) -> &Families {
        &self.hub.families
    }

    fn job_labels(&self) -> JobLabels {
        JobLabels {
            job: self.job.clone(),
        }
    }

    fn source_labels(&self, source: &str) -> SourceLabels {
        SourceLabels {
            job: self.job.clone(),
            source: source.to_owned(),
        }
    }

    fn batch(&self, e: &BatchCompleted) {
        let f = self.families();
        let jl = self.job_labels();
        f.batches
            .get_or_create(&BatchLabels {
                job: self.job.clone(),
                replayed: e.replayed,
            })
            .inc();
        f.processing
            .get_or_create(&jl)
            .observe(e.processing_ms / 1e3);
        f.scheduling_delay
            .get_or_create(&jl)
            .observe(e.scheduling_delay_ms / 1e3);
        f.total_delay
            .get_or_create(&jl)
            .observe(e.total_delay_ms / 1e3);
        f.last_batch_time
            .get_or_create(&jl)
            .set(e.batch_time_ms as f64 / 1e3);
        for s in &e.sources {
            let l = self.source_labels(&s.source);
            f.input_records.get_or_create(&l).inc_by(s.records);
            if let Some(blocks) = s.queued_blocks {
                f.queued_blocks
                    .get_or_create(&l)
                    .set(saturating_i64(blocks));
            }
        }
    }

    fn operator(&self, op: &OperatorStats) {
        let f = self.families();
        let ol = OperatorLabels {
            job: self.job.clone(),
            operator: op.name.clone(),
        };
        let direction = |direction| DirectionLabels {
            job: ol.job.clone(),
            operator: ol.operator.clone(),
            direction,
        };
        f.operator_records
            .get_or_create(&direction("in"))
            .inc_by(op.records_in);
        f.operator_records
            .get_or_create(&direction("out"))
            .inc_by(op.records_out);
        f.operator_seconds
            .get_or_create(&ol)
            .inc_by(op.millis.max(0.0) / 1e3);
        if op.calls == 0 && op.plugin.is_empty() {
            return;
        }
        let fl = FunctionLabels {
            job: ol.job.clone(),
            operator: ol.operator.clone(),
            plugin: op.plugin.clone(),
            function: op.function.clone(),
        };
        let failed = op.failed_calls.min(op.calls);
        f.plugin_calls
            .get_or_create(&fl.call("ok"))
            .inc_by(op.calls - failed);
        f.plugin_calls
            .get_or_create(&fl.call("error"))
            .inc_by(failed);
        f.plugin_fuel.get_or_create(&fl).inc_by(op.fuel);
    }

    fn state(&self, s: &StateSize) {
        let f = self.families();
        let ol = OperatorLabels {
            job: self.job.clone(),
            operator: s.name.clone(),
        };
        if let Some(keys) = s.keys {
            f.state_keys.get_or_create(&ol).set(saturating_i64(keys));
        }
        f.state_bytes
            .get_or_create(&ol)
            .set(saturating_i64(s.bytes));
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl StreamingListener for JobMetrics {
    fn on_batch_completed(&self, e: &BatchCompleted) {
        self.hub.note(&self.job, |s| {
            s.sources.extend(e.sources.iter().map(|r| r.source.clone()));
            for op in &e.operators {
                s.operators
                    .entry(op.name.clone())
                    .or_insert_with(|| (op.plugin.clone(), op.function.clone()));
            }
            for st in &e.state {
                s.operators.entry(st.name.clone()).or_default();
            }
        });
        self.batch(e);
        e.operators.iter().for_each(|op| self.operator(op));
        e.state.iter().for_each(|s| self.state(s));
    }

    fn on_batch_failed(&self, e: &BatchFailed) {
        self.families()
            .batch_failures
            .get_or_create(&self.job_labels())
            .inc();
        // The failed attempt's calls and fuel count too (outcome="error"
        // for the calls that failed).
        e.operators.iter().for_each(|op| self.operator(op));
    }

    fn on_source_error(&self, e: &SourceError) {
        self.hub.note(&self.job, |s| {
            s.sources.insert(e.source.clone());
        });
        let l = self.source_labels(&e.source);
        self.families().source_errors.get_or_create(&l).inc();
    }

    fn on_plugin_swapped(&self, e: &PluginSwapped) {
        self.hub.note(&self.job, |s| {
            s.plugins.insert(e.plugin.clone());
        });
        let l = PluginLabels {
            job: self.job.clone(),
            plugin: e.plugin.clone(),
        };
        self.families().plugin_swaps.get_or_create(&l).inc();
    }

    fn on_checkpoint(&self, e: &CheckpointWritten) {
        let f = self.families();
        let jl = self.job_labels();
        f.checkpoints.get_or_create(&jl).inc();
        f.checkpoint_duration
            .get_or_create(&jl)
            .observe(e.duration_ms.max(0.0) / 1e3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::events::{Event, SourceRecords};

    fn completed(replayed: bool, queued_blocks: Option<u64>) -> Event {
        Event::BatchCompleted(BatchCompleted {
            job: "j".into(),
            batch_time_ms: 2000,
            replayed,
            input_records: 3,
            sources: vec![SourceRecords {
                source: "lines".into(),
                records: 3,
                queued_blocks,
            }],
            scheduling_delay_ms: 2.0,
            processing_ms: 1500.0,
            total_delay_ms: 1502.0,
            operators: vec![],
            state: vec![],
        })
    }

    fn has(text: &str, line: &str) {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }

    #[test]
    fn events_without_a_real_job_reach_their_series() {
        let hub = MetricsHub::new(Some("t"));
        let listener = hub.job_listener("j");
        listener.on_event(&completed(true, Some(4)));
        listener.on_event(&completed(false, None));
        listener.on_event(&Event::BatchFailed(BatchFailed {
            job: "j".into(),
            batch_time_ms: 3000,
            attempt: 1,
            error: "trap".into(),
            retrying: true,
            operators: Vec::new(),
        }));
        listener.on_event(&Event::SourceError(SourceError {
            job: "j".into(),
            source: "lines".into(),
            message: "connection refused".into(),
        }));
        listener.on_event(&Event::PluginSwapped(PluginSwapped {
            job: "j".into(),
            plugin: "wc".into(),
            from: "a".into(),
            to: "b".into(),
            first_batch_ms: 3000,
            migrated_keys: 0,
            rollback: false,
        }));
        let text = hub.encode();
        has(
            &text,
            r#"weir_batches_total{tenant="t",job="j",replayed="true"} 1"#,
        );
        has(
            &text,
            r#"weir_batches_total{tenant="t",job="j",replayed="false"} 1"#,
        );
        has(&text, r#"weir_batch_failures_total{tenant="t",job="j"} 1"#);
        has(
            &text,
            r#"weir_source_errors_total{tenant="t",job="j",source="lines"} 1"#,
        );
        has(
            &text,
            r#"weir_plugin_swaps_total{tenant="t",job="j",plugin="wc"} 1"#,
        );
        has(
            &text,
            r#"weir_receiver_queued_blocks{tenant="t",job="j",source="lines"} 4"#,
        );
        has(
            &text,
            r#"weir_input_records_total{tenant="t",job="j",source="lines"} 6"#,
        );
        has(
            &text,
            r#"weir_last_batch_time_seconds{tenant="t",job="j"} 2.0"#,
        );
        has(
            &text,
            r#"weir_batch_processing_seconds_bucket{tenant="t",le="1.0",job="j"} 0"#,
        );
        has(
            &text,
            r#"weir_batch_processing_seconds_bucket{tenant="t",le="2.5",job="j"} 2"#,
        );
        has(&text, "# TYPE weir_batch_processing_seconds histogram");
        for family in [
            "batch_failures",
            "source_errors",
            "plugin_swaps",
            "receiver_queued_blocks",
        ] {
            assert!(text.contains(&format!("# HELP weir_{family} ")), "{family}");
        }
        assert!(text.ends_with("# EOF\n"));

        assert!(hub.remove_job("j"));
        let text = hub.encode();
        assert!(!text.contains("job=\"j\""), "{text}");
        assert_eq!(text, "# EOF\n", "families without series are left out");
    }
}
