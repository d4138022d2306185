//! Prometheus metrics (`weir::observe::metrics`): a real job runs with the
//! hub's listener, and the exposition, parsed as a scraper parses it,
//! agrees with what the listener events reported; under a tenant every
//! series carries its label; the Grafana dashboard only queries metrics the
//! hub emits.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use weir::checkpoint::CheckpointConfig;
use weir::observe::metrics::{MetricsHub, CONTENT_TYPE, METRIC_NAMES};
use weir::receiver::generator::GeneratorKind;
use weir::stream::events::{BatchCompleted, StreamingListener};
use weir::stream::StateOptions;
use weir::{SourceSpec, StreamingConfig};
use weir_tests::{context, guests, shared_plugin, simulated_config};

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// Every completed batch, in order.
#[derive(Default)]
struct Completed(Mutex<Vec<BatchCompleted>>);

impl StreamingListener for Completed {
    fn on_batch_completed(&self, e: &BatchCompleted) {
        self.0.lock().unwrap().push(e.clone());
    }
}

/// The word count of `events.rs` (flat_map, then keyed state) on the
/// generator, named `job`, for `batches` batches, heard by `hub` and by the
/// returned recorder. With `ck`, checkpointed there.
fn run(hub: &Arc<MetricsHub>, job: &str, batches: u64, ck: Option<&Path>) -> Vec<BatchCompleted> {
    let config = StreamingConfig {
        job_name: job.into(),
        checkpoint: ck.map(|dir| CheckpointConfig {
            dir: dir.to_owned(),
            every_batches: 1000,
            keep: 2,
            write_ahead_log: true,
        }),
        ..simulated_config(2, 2)
    };
    let ctx = context(config);
    let completed = Arc::new(Completed::default());
    ctx.add_listener(completed.clone());
    ctx.add_listener(hub.job_listener(job));
    let wc = shared_plugin(guests::WORDCOUNT);
    let source = SourceSpec::Generator {
        kind: GeneratorKind::Text,
        rate: 200,
        seed: 7,
        words_per_line: 5,
        vocabulary: 50,
        limit: None,
    };
    ctx.source(Some("lines"), source)
        .unwrap()
        .flat_map(&wc, "split")
        .unwrap()
        .update_state_by_key(&wc, "running_count", StateOptions::default())
        .unwrap()
        .foreach_batch(|_, _| Ok(()))
        .unwrap();
    ctx.start(Some(batches))
        .unwrap()
        .await_termination()
        .unwrap();
    let events = std::mem::take(&mut *completed.0.lock().unwrap());
    events
}

fn parse(hub: &MetricsHub) -> Exposition {
    let text = hub.encode();
    assert!(text.ends_with("# EOF\n"), "{text}");
    openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not valid OpenMetrics: {e:?}\n{text}"))
}

/// A family by its name in the exposition (counters without `_total`).
fn family<'a>(
    exp: &'a Exposition,
    name: &str,
) -> &'a openmetrics_parser::MetricFamily<OpenMetricsType, OpenMetricsValue> {
    exp.families
        .get(name)
        .unwrap_or_else(|| panic!("no family {name}: {:?}", exp.families.keys()))
}

/// The series of a family: labels and value.
fn series(exp: &Exposition, name: &str) -> Vec<(HashMap<String, String>, OpenMetricsValue)> {
    family(exp, name)
        .iter_samples()
        .map(|s| {
            let labels = s.get_labelset().unwrap();
            let labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            (labels, s.value.clone())
        })
        .collect()
}

/// The value of the one series of `name` whose labels include `want`.
fn value(exp: &Exposition, name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = series(exp, name)
        .into_iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|(_, v)| match v {
            OpenMetricsValue::Counter(c) => c.value.as_f64(),
            OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
            OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0) as f64,
            other => panic!("{name}: unexpected {other:?}"),
        })
        .collect();
    assert_eq!(found.len(), 1, "{name}{want:?}: {found:?}");
    found[0]
}

/// A histogram's `(count, sum)`.
fn histogram(exp: &Exposition, name: &str, job: &str) -> (u64, f64) {
    let found: Vec<(u64, f64)> = series(exp, name)
        .into_iter()
        .filter(|(labels, _)| labels.get("job").map(String::as_str) == Some(job))
        .map(|(_, v)| match v {
            OpenMetricsValue::Histogram(h) => {
                let top = h.buckets.iter().map(|b| b.upper_bound).fold(0.0, f64::max);
                assert!(top.is_infinite(), "{name} has a +Inf bucket: {h:?}");
                (h.count.unwrap_or(0), h.sum.map_or(0.0, |s| s.as_f64()))
            }
            other => panic!("{name}: not a histogram: {other:?}"),
        })
        .collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0]
}

#[test]
fn the_exposition_agrees_with_the_events_of_a_real_job() {
    const N: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let hub = MetricsHub::new(None);
    let events = run(&hub, "wc", N, Some(&dir.path().join("ck")));
    assert_eq!(events.len() as u64, N);
    let exp = parse(&hub);

    // Every metric the job fed is there, typed, with help (a family without
    // series is left out of the exposition); nothing else is.
    let names: BTreeSet<&str> = exp.families.keys().map(String::as_str).collect();
    let unfed = [
        "weir_batch_failures_total",
        "weir_source_errors_total",
        "weir_plugin_swaps_total",
        "weir_receiver_queued_blocks",
    ];
    let expected: BTreeSet<&str> = METRIC_NAMES
        .iter()
        .filter(|n| !unfed.contains(n))
        .map(|n| n.strip_suffix("_total").unwrap_or(n))
        .collect();
    assert_eq!(names, expected);
    for f in exp.families.values() {
        assert!(!f.help.is_empty(), "{} has no help", f.family_name);
    }
    assert_eq!(
        family(&exp, "weir_batches").family_type,
        OpenMetricsType::Counter
    );
    assert_eq!(
        family(&exp, "weir_state_keys").family_type,
        OpenMetricsType::Gauge
    );
    assert_eq!(
        family(&exp, "weir_batch_processing_seconds").family_type,
        OpenMetricsType::Histogram
    );
    assert_eq!(family(&exp, "weir_operator_seconds").unit, "seconds");
    assert_eq!(family(&exp, "weir_state_bytes").unit, "bytes");

    // Batches and their delays.
    let job = ("job", "wc");
    assert_eq!(
        value(&exp, "weir_batches", &[job, ("replayed", "false")]),
        N as f64
    );
    assert!(
        series(&exp, "weir_batches").len() == 1,
        "no replayed batches"
    );
    for h in [
        "weir_batch_processing_seconds",
        "weir_scheduling_delay_seconds",
        "weir_batch_total_delay_seconds",
    ] {
        assert_eq!(histogram(&exp, h, "wc").0, N, "{h}");
    }
    let processing: f64 = events.iter().map(|e| e.processing_ms / 1e3).sum();
    let (_, sum) = histogram(&exp, "weir_batch_processing_seconds", "wc");
    assert!((sum - processing).abs() < 1e-6, "{sum} vs {processing}");
    assert_eq!(
        value(&exp, "weir_last_batch_time_seconds", &[job]),
        N as f64
    );

    // Input records, per source.
    let input: u64 = events.iter().map(|e| e.sources[0].records).sum();
    assert!(input > 0);
    assert_eq!(
        value(&exp, "weir_input_records", &[job, ("source", "lines")]),
        input as f64
    );

    check_operators(&exp, &events);

    // State: the last batch's sizes.
    let last = &events.last().unwrap().state[0];
    let op = ("operator", last.name.as_str());
    assert_eq!(
        value(&exp, "weir_state_keys", &[job, op]),
        last.keys.unwrap() as f64
    );
    assert_eq!(
        value(&exp, "weir_state_bytes", &[job, op]),
        last.bytes as f64
    );

    // Checkpoints before the first batch and at the end.
    assert_eq!(value(&exp, "weir_checkpoints", &[job]), 2.0);
    assert_eq!(
        histogram(&exp, "weir_checkpoint_duration_seconds", "wc").0,
        2
    );

    // A removed job's series are gone (and with them every family: the
    // exposition is empty, which openmetrics-parser cannot parse).
    assert!(hub.remove_job("wc"));
    assert!(!hub.remove_job("wc"));
    assert_eq!(hub.encode(), "# EOF\n", "nothing left");
}

/// Per operator: records in and out, time, calls, fuel as the events summed.
fn check_operators(exp: &Exposition, events: &[BatchCompleted]) {
    let job = ("job", "wc");
    let names: Vec<String> = events[0].operators.iter().map(|o| o.name.clone()).collect();
    for name in &names {
        let ops = || {
            events
                .iter()
                .flat_map(|e| &e.operators)
                .filter(|o| &o.name == name)
        };
        let sum =
            |f: fn(&weir::stream::events::OperatorStats) -> u64| ops().map(f).sum::<u64>() as f64;
        let op = ("operator", name.as_str());
        let first = ops().next().unwrap();
        assert_eq!(
            value(
                exp,
                "weir_operator_records",
                &[job, op, ("direction", "in")]
            ),
            sum(|o| o.records_in)
        );
        assert_eq!(
            value(
                exp,
                "weir_operator_records",
                &[job, op, ("direction", "out")]
            ),
            sum(|o| o.records_out)
        );
        let seconds = value(exp, "weir_operator_seconds", &[job, op]);
        let millis: f64 = ops().map(|o| o.millis).sum();
        assert!((seconds - millis / 1e3).abs() < 1e-6, "{name}: {seconds}");
        let plugin = [
            ("plugin", first.plugin.as_str()),
            ("function", first.function.as_str()),
        ];
        let calls = value(
            exp,
            "weir_plugin_calls",
            &[job, op, plugin[0], plugin[1], ("outcome", "ok")],
        );
        let fuel = value(
            exp,
            "weir_plugin_fuel_consumed",
            &[job, op, plugin[0], plugin[1]],
        );
        assert!(
            calls > 0.0 && fuel > 0.0,
            "{name}: {calls} calls, {fuel} fuel"
        );
        assert_eq!(calls, sum(|o| o.calls), "{name}");
        assert_eq!(fuel, sum(|o| o.fuel), "{name}");
        assert_eq!(
            value(exp, "weir_plugin_calls", &[job, op, ("outcome", "error")]),
            0.0
        );
    }
    let split = &events[0].operators[0];
    assert_eq!(split.function, "split");
    assert!(!split.plugin.is_empty(), "{split:?}");
    assert_eq!(events[0].operators[1].function, "running_count");
}

#[test]
fn under_a_tenant_every_series_is_labelled_with_it_and_jobs_are_apart() {
    let hub = MetricsHub::new(Some("acme"));
    assert_eq!(hub.tenant(), Some("acme"));
    let a = run(&hub, "a", 2, None);
    let b = run(&hub, "b", 3, None);
    let exp = parse(&hub);
    let mut jobs = BTreeSet::new();
    for f in exp.families.values() {
        for (labels, _) in series(&exp, &f.family_name) {
            assert_eq!(
                labels.get("tenant").map(String::as_str),
                Some("acme"),
                "{}",
                f.family_name
            );
            jobs.insert(labels["job"].clone());
        }
    }
    assert_eq!(jobs, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    let tenant = ("tenant", "acme");
    assert_eq!(value(&exp, "weir_batches", &[tenant, ("job", "a")]), 2.0);
    assert_eq!(value(&exp, "weir_batches", &[tenant, ("job", "b")]), 3.0);
    let records =
        |events: &[BatchCompleted]| events.iter().map(|e| e.input_records).sum::<u64>() as f64;
    assert_eq!(
        value(&exp, "weir_input_records", &[("job", "a")]),
        records(&a)
    );
    assert_eq!(
        value(&exp, "weir_input_records", &[("job", "b")]),
        records(&b)
    );

    // Removing one job leaves the other.
    hub.remove_job("a");
    let exp = parse(&hub);
    assert_eq!(value(&exp, "weir_batches", &[("job", "b")]), 3.0);
    assert!(series(&exp, "weir_input_records")
        .iter()
        .all(|(l, _)| l["job"] == "b"));
    assert!(CONTENT_TYPE.starts_with("application/openmetrics-text"));
}

/// Every metric name in a PromQL expression (`weir_...`), with histogram
/// series suffixes taken off.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("weir_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        found.push(base.to_owned());
        rest = &tail[end..];
    }
    found
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_hub_emits() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/weir.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 6, "{all:?}");
    let mut used = BTreeSet::new();
    for expr in &all {
        let names = metrics_in(expr);
        assert!(!names.is_empty(), "{expr} queries no weir metric");
        for name in names {
            assert!(
                METRIC_NAMES.contains(&name.as_str()),
                "{expr}: {name} is not emitted"
            );
            used.insert(name);
        }
    }
    for needed in [
        "weir_input_records_total",
        "weir_scheduling_delay_seconds",
        "weir_batch_total_delay_seconds",
        "weir_batch_processing_seconds",
        "weir_plugin_fuel_consumed_total",
        "weir_state_keys",
        "weir_batch_failures_total",
    ] {
        assert!(used.contains(needed), "the dashboard shows no {needed}");
    }
}
