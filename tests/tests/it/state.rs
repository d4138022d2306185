//! `update_state_by_key` and `map_with_state` against a batch-by-batch
//! simulation, including removal, timeouts and initial state.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::stream::StateOptions;
use weir_tests::{collect, context, count, guests, records, shared_plugin, simulated_config};

type Rec = (Vec<u8>, Vec<u8>);

fn input(seed: u64, batches: usize) -> Vec<Vec<Rec>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..batches)
        .map(|b| {
            if b % 5 == 4 {
                return Vec::new();
            }
            let base = (b / 3) as u32 * 2;
            (0..rng.gen_range(1..30))
                .map(|_| {
                    (
                        format!("k{}", base + rng.gen_range(0..6)).into_bytes(),
                        rng.gen_range(-8i64..10).to_le_bytes().to_vec(),
                    )
                })
                .collect()
        })
        .collect()
}

fn map_of(recs: &[Rec]) -> BTreeMap<Vec<u8>, i64> {
    recs.iter().map(|(k, v)| (k.clone(), count(v))).collect()
}

fn sums(batch: &[Rec]) -> BTreeMap<Vec<u8>, i64> {
    let mut m = BTreeMap::new();
    for (k, v) in batch {
        *m.entry(k.clone()).or_default() += count(v);
    }
    m
}

#[test]
fn update_state_by_key_keeps_running_totals_and_removes_keys() {
    let data = input(1, 16);
    let ctx = context(simulated_config(3, 2));
    let tk = shared_plugin(guests::TESTKIT);
    let src = ctx.queue_stream(data.clone()).unwrap();
    let state = src
        .update_state_by_key(
            &tk,
            "bounded_sum",
            StateOptions {
                partitions: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    let out = collect(&state);
    let snaps = collect(&state.state_snapshots().unwrap());
    ctx.run(Some(data.len() as u64)).unwrap();

    // Simulation: every key with state or values is updated every batch;
    // a negative total removes the key.
    let mut sim: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let out = out.lock().unwrap();
    let snaps = snaps.lock().unwrap();
    assert_eq!(out.len(), data.len());
    for (i, batch) in data.iter().enumerate() {
        for (k, s) in sums(batch) {
            let total = sim.get(&k).copied().unwrap_or(0) + s;
            if total < 0 {
                sim.remove(&k);
            } else {
                sim.insert(k, total);
            }
        }
        let got = records(&out[i].1);
        assert_eq!(map_of(&got), sim, "state after batch {i}");
        let mut sorted_within: Vec<Vec<Rec>> = out[i]
            .1
            .iter()
            .map(|p| p.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
            .collect();
        for p in &mut sorted_within {
            let keys: Vec<&Vec<u8>> = p.iter().map(|(k, _)| k).collect();
            assert!(
                keys.windows(2).all(|w| w[0] < w[1]),
                "state is emitted in key order"
            );
            p.clear();
        }
        assert_eq!(
            records(&snaps[i].1),
            got,
            "snapshot equals the state stream"
        );
    }
}

#[test]
fn map_with_state_emits_for_keys_with_values_and_times_out_once() {
    let data = input(2, 18);
    let timeout_batches = 2;
    let ctx = context(simulated_config(2, 2));
    let tk = shared_plugin(guests::TESTKIT);
    let src = ctx.queue_stream(data.clone()).unwrap();
    let initial = vec![
        (b"k0".to_vec(), 100i64.to_le_bytes().to_vec()),
        (b"zz".to_vec(), 7i64.to_le_bytes().to_vec()),
    ];
    let options = StateOptions {
        partitions: Some(3),
        timeout: Some(Duration::from_secs(timeout_batches)),
        initial_state: initial.clone(),
    };
    let mapped = src.map_with_state(&tk, "session", options).unwrap();
    let out = collect(&mapped);
    let snaps = collect(&mapped.state_snapshots().unwrap());
    ctx.run(Some(data.len() as u64)).unwrap();

    // Simulation: (total, last batch with values); initial keys are active
    // at the first batch.
    let mut sim: BTreeMap<Vec<u8>, (i64, usize)> = initial
        .iter()
        .map(|(k, v)| (k.clone(), (count(v), 1)))
        .collect();
    let out = out.lock().unwrap();
    let snaps = snaps.lock().unwrap();
    let mut timeouts: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (i, batch) in data.iter().enumerate() {
        let b = i + 1;
        let mut want: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let batch_sums = sums(batch);
        let expired: Vec<Vec<u8>> = sim
            .iter()
            .filter(|(k, (_, last))| {
                // As Spark: timed out once the last update is strictly
                // earlier than batch time - timeout.
                !batch_sums.contains_key(*k) && b - last > timeout_batches as usize
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            let (total, _) = sim.remove(&k).unwrap();
            want.insert(k.clone(), -1 - total);
            *timeouts.entry(k).or_default() += 1;
        }
        for (k, s) in batch_sums {
            let total = sim.get(&k).map_or(0, |(t, _)| *t) + s;
            sim.insert(k.clone(), (total, b));
            want.insert(k, total);
        }
        let got = records(&out[i].1);
        assert_eq!(map_of(&got), want, "emitted records of batch {b}");
        assert_eq!(got.len(), want.len(), "one record per called key");
        let state: BTreeMap<Vec<u8>, i64> = sim.iter().map(|(k, (t, _))| (k.clone(), *t)).collect();
        assert_eq!(
            map_of(&records(&snaps[i].1)),
            state,
            "state after batch {b}"
        );
    }
    assert!(
        timeouts.contains_key(&b"zz".to_vec()),
        "an initial key that never gets values times out"
    );
    assert!(!timeouts.is_empty());
}

#[test]
fn state_output_is_identical_across_worker_counts() {
    let data = input(3, 12);
    let run = |workers| {
        let ctx = context(simulated_config(4, workers));
        let tk = shared_plugin(guests::TESTKIT);
        let src = ctx.queue_stream(data.clone()).unwrap();
        let s = src
            .map_with_state(
                &tk,
                "session",
                StateOptions {
                    timeout: Some(Duration::from_secs(3)),
                    ..Default::default()
                },
            )
            .unwrap();
        let w = src
            .reduce_by_key_and_window_inv(
                &tk,
                "sum",
                "sub",
                Duration::from_secs(4),
                Duration::from_secs(2),
                None,
                Some("nonzero"),
            )
            .unwrap();
        let a = collect(&s);
        let b = collect(&s.state_snapshots().unwrap());
        let c = collect(&w);
        ctx.run(Some(12)).unwrap();
        let flat = |x: &weir_tests::Collected| format!("{:?}", x.lock().unwrap());
        (flat(&a), flat(&b), flat(&c))
    };
    assert_eq!(run(1), run(4));
}

#[test]
fn state_options_are_checked() {
    let ctx = context(simulated_config(2, 2));
    let tk = shared_plugin(guests::TESTKIT);
    let src = ctx.queue_stream(input(4, 1)).unwrap();
    let err = src
        .update_state_by_key(&tk, "sum", StateOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("update_state_by_key needs a update function")
            || err.contains("needs an update"),
        "{err}"
    );
    let err = src
        .update_state_by_key(
            &tk,
            "bounded_sum",
            StateOptions {
                timeout: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        )
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("map_with_state"), "{err}");
    let err = src
        .count()
        .unwrap()
        .state_snapshots()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("not an update_state_by_key or map_with_state"),
        "{err}"
    );
}
