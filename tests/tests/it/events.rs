//! Listener events: a listener hears exactly the batches a job runs, in
//! order, each started then completed, with per-operator detail; after a
//! crash, the batches recovery recomputes come first, marked replayed.

use std::path::Path;
use std::sync::{Arc, Mutex};

use weir::checkpoint::CheckpointConfig;
use weir::receiver::generator::GeneratorKind;
use weir::stream::events::{Event, StreamingListener};
use weir::stream::StateOptions;
use weir::{SourceSpec, StreamingConfig};
use weir_tests::{context, guests, shared_plugin, simulated_config};

/// Every event, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl StreamingListener for Recorder {
    fn on_event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// A checkpointed word count (flat_map, then keyed state) on the generator;
/// runs until `batches` batches of the job are done.
fn run(dir: &Path, batches: u64) -> Vec<Event> {
    let config = StreamingConfig {
        checkpoint: Some(CheckpointConfig {
            dir: dir.join("ck"),
            every_batches: 1000,
            keep: 2,
            write_ahead_log: true,
        }),
        ..simulated_config(2, 2)
    };
    let ctx = context(config);
    let recorder = Arc::new(Recorder::default());
    ctx.add_listener(recorder.clone());
    let wc = shared_plugin(guests::WORDCOUNT);
    let words = ctx
        .source(
            Some("lines"),
            SourceSpec::Generator {
                kind: GeneratorKind::Text,
                rate: 200,
                seed: 3,
                words_per_line: 5,
                vocabulary: 50,
                limit: None,
            },
        )
        .unwrap()
        .flat_map(&wc, "split")
        .unwrap();
    words
        .update_state_by_key(&wc, "running_count", StateOptions::default())
        .unwrap()
        .foreach_batch(|_, _| Ok(()))
        .unwrap();
    ctx.start(Some(batches))
        .unwrap()
        .await_termination()
        .unwrap();
    let events = std::mem::take(&mut *recorder.0.lock().unwrap());
    events
}

/// `(name, batch time, replayed)` of the batch events.
fn batches(events: &[Event]) -> Vec<(&'static str, i64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BatchStarted(b) => Some(("started", b.batch_time_ms, b.replayed)),
            Event::BatchCompleted(b) => Some(("completed", b.batch_time_ms, b.replayed)),
            _ => None,
        })
        .collect()
}

fn expected(times: impl Iterator<Item = (i64, bool)>) -> Vec<(&'static str, i64, bool)> {
    times
        .flat_map(|(t, r)| [("started", t, r), ("completed", t, r)])
        .collect()
}

#[test]
fn a_listener_hears_every_batch_in_order_and_replayed_ones_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), 6);
    assert_eq!(
        batches(&first),
        expected((1..=6).map(|b| (b * 1000, false))),
        "six live batches"
    );

    // Per-operator detail: the flat_map made one plugin call per partition
    // and used fuel; it read what the source gave and wrote the words.
    let completed: Vec<_> = first
        .iter()
        .filter_map(|e| match e {
            Event::BatchCompleted(b) => Some(b),
            _ => None,
        })
        .collect();
    for b in &completed {
        assert_eq!(b.sources.len(), 1);
        assert_eq!(b.sources[0].source, "lines");
        assert_eq!(b.sources[0].records, b.input_records);
        assert!(b.input_records > 0);
        let names: Vec<&str> = b.operators.iter().map(|o| o.op.as_str()).collect();
        assert_eq!(names, ["flat_map", "update_state_by_key"], "{names:?}");
        let split = &b.operators[0];
        assert_eq!(split.records_in, b.input_records);
        assert!(split.records_out >= split.records_in * 5, "{split:?}");
        assert_eq!(split.calls, 2, "one call per partition: {split:?}");
        assert!(split.fuel > 0, "{split:?}");
        let state = &b.state;
        assert_eq!(state.len(), 1);
        assert!(
            state[0].keys.unwrap() > 0 && state[0].bytes > 0,
            "{state:?}"
        );
    }
    let checkpoints: Vec<u64> = first
        .iter()
        .filter_map(|e| match e {
            Event::Checkpoint(c) => Some(c.seq),
            _ => None,
        })
        .collect();
    assert_eq!(checkpoints, [0, 6], "before the first batch and at the end");

    // A crash that lost every checkpoint but the first: the restart replays
    // the six logged batches, then runs three live ones.
    for e in std::fs::read_dir(dir.path().join("ck").join("checkpoints")).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with("00000000000000000000.bin") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let second = run(dir.path(), 9);
    assert_eq!(
        batches(&second),
        expected(
            (1..=6)
                .map(|b| (b * 1000, true))
                .chain((7..=9).map(|b| (b * 1000, false)))
        ),
        "replayed batches first, marked, then live ones"
    );
    // The replayed batches did the same work as the first time.
    let work = |events: &[Event]| -> Vec<(i64, u64, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::BatchCompleted(b) if b.batch_time_ms <= 6000 => {
                    Some((b.batch_time_ms, b.input_records, b.operators[0].fuel))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        work(&second),
        work(&first),
        "same records and fuel on replay"
    );
}
