//! Window operators against a from-scratch recomputation over the raw
//! input, batch by batch; the incremental (inverse) form must equal the
//! plain form after its filter.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::stream::StreamingContext;
use weir::wasm::Plugin;
use weir::StreamingConfig;
use weir_tests::{
    collect, context, count, guests, records, shared_plugin, simulated_config, Collected,
};

type Rec = (Vec<u8>, Vec<u8>);

/// Keyed batches; every third batch empty; the key space shifts over time
/// so keys disappear and reappear.
fn input(seed: u64, batches: usize) -> Vec<Vec<Rec>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..batches)
        .map(|b| {
            if b % 3 == 2 {
                return Vec::new();
            }
            let base = (b / 4) as u32 * 3;
            (0..rng.gen_range(1..40))
                .map(|_| {
                    (
                        format!("k{}", base + rng.gen_range(0..8)).into_bytes(),
                        rng.gen_range(-5i64..20).to_le_bytes().to_vec(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Window shapes in batches: (length, slide).
const SHAPES: &[(u64, u64)] = &[(3, 1), (4, 2), (2, 2), (6, 3), (30, 1), (1, 1), (2, 3)];
const BATCHES: usize = 14;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Batches of the raw input inside the window ending at batch `end` (1-based times).
fn in_window(input: &[Vec<Rec>], end: usize, length: usize) -> Vec<Rec> {
    let first = end.saturating_sub(length);
    input[first..end].iter().flatten().cloned().collect()
}

fn slide_times(slide: u64) -> Vec<usize> {
    (1..=BATCHES).filter(|b| *b as u64 % slide == 0).collect()
}

struct Run {
    ctx: StreamingContext,
    tk: Plugin,
}

fn run(partitions: usize) -> Run {
    Run {
        ctx: context(simulated_config(partitions, 2)),
        tk: shared_plugin(guests::TESTKIT),
    }
}

fn as_sums(recs: &[Rec]) -> BTreeMap<Vec<u8>, i64> {
    let mut m = BTreeMap::new();
    for (k, v) in recs {
        *m.entry(k.clone()).or_default() += count(v);
    }
    m
}

fn check_times(out: &Collected, slide: u64) -> Vec<Vec<Rec>> {
    let got = out.lock().unwrap();
    let times: Vec<i64> = got.iter().map(|(t, _)| *t).collect();
    let expected: Vec<i64> = slide_times(slide)
        .iter()
        .map(|b| *b as i64 * 1000)
        .collect();
    assert_eq!(
        times, expected,
        "windows are emitted at slide times, stamped with the window end"
    );
    got.iter().map(|(_, p)| records(p)).collect()
}

#[test]
fn window_contains_exactly_the_batches_in_range() {
    let data = input(1, BATCHES);
    for &(length, slide) in SHAPES {
        let r = run(3);
        let src = r.ctx.queue_stream(data.clone()).unwrap();
        let out = collect(&src.window(secs(length), secs(slide)).unwrap());
        r.ctx.run(Some(BATCHES as u64)).unwrap();
        for (got, end) in check_times(&out, slide).into_iter().zip(slide_times(slide)) {
            let mut got = got;
            let mut want = in_window(&data, end, length as usize);
            got.sort();
            want.sort();
            assert_eq!(got, want, "window ({length},{slide}) ending at batch {end}");
        }
    }
}

#[test]
fn reduce_by_key_and_window_plain_and_inverse_match_the_oracle() {
    let data = input(2, BATCHES);
    for &(length, slide) in SHAPES {
        let r = run(3);
        let src = r.ctx.queue_stream(data.clone()).unwrap();
        let plain = collect(
            &src.reduce_by_key_and_window(&r.tk, "sum", secs(length), secs(slide), Some(2))
                .unwrap(),
        );
        let inv = collect(
            &src.reduce_by_key_and_window_inv(
                &r.tk,
                "sum",
                "sub",
                secs(length),
                secs(slide),
                Some(4),
                Some("nonzero"),
            )
            .unwrap(),
        );
        r.ctx.run(Some(BATCHES as u64)).unwrap();
        let plain = check_times(&plain, slide);
        let inv = check_times(&inv, slide);
        for ((p, i), end) in plain.iter().zip(&inv).zip(slide_times(slide)) {
            let oracle = as_sums(&in_window(&data, end, length as usize));
            let p_map = as_sums(p);
            assert_eq!(p_map.len(), p.len(), "each key once");
            assert_eq!(p_map, oracle, "plain ({length},{slide}) at batch {end}");
            let filtered: BTreeMap<Vec<u8>, i64> =
                oracle.into_iter().filter(|(_, v)| *v != 0).collect();
            assert_eq!(
                as_sums(i),
                filtered,
                "inverse ({length},{slide}) at batch {end}"
            );
        }
    }
}

#[test]
fn windowed_reduce_combines_in_time_order() {
    // concat is associative, not commutative: the window's value must be
    // the values in arrival order.
    let data = input(3, BATCHES);
    let r = run(2);
    let src = r.ctx.queue_stream(data.clone()).unwrap();
    let out = collect(
        &src.reduce_by_key_and_window(&r.tk, "concat", secs(4), secs(2), None)
            .unwrap(),
    );
    r.ctx.run(Some(BATCHES as u64)).unwrap();
    for (got, end) in check_times(&out, 2).into_iter().zip(slide_times(2)) {
        let mut want: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, v) in in_window(&data, end, 4) {
            want.entry(k).or_default().extend(v);
        }
        assert_eq!(got.into_iter().collect::<BTreeMap<_, _>>(), want);
    }
}

#[test]
fn count_and_reduce_by_window_and_count_by_value_and_window() {
    let data = input(4, BATCHES);
    for &(length, slide) in SHAPES {
        let r = run(3);
        let src = r.ctx.queue_stream(data.clone()).unwrap();
        let counts = collect(&src.count_by_window(secs(length), secs(slide)).unwrap());
        let totals = collect(
            &src.reduce_by_window(&r.tk, "sum", secs(length), secs(slide))
                .unwrap(),
        );
        let by_value = collect(
            &src.count_by_value_and_window(secs(length), secs(slide), Some(2))
                .unwrap(),
        );
        r.ctx.run(Some(BATCHES as u64)).unwrap();
        let counts = check_times(&counts, slide);
        let totals = check_times(&totals, slide);
        let by_value = check_times(&by_value, slide);
        for (i, end) in slide_times(slide).into_iter().enumerate() {
            let window = in_window(&data, end, length as usize);
            assert_eq!(
                counts[i],
                vec![(vec![], (window.len() as i64).to_le_bytes().to_vec())],
                "count ({length},{slide}) at {end}"
            );
            let sum: i64 = window.iter().map(|(_, v)| count(v)).sum();
            if window.is_empty() {
                assert!(
                    totals[i].is_empty(),
                    "reduce of an empty window has no record"
                );
            } else {
                assert_eq!(
                    totals[i],
                    vec![(vec![], sum.to_le_bytes().to_vec())],
                    "reduce ({length},{slide}) at {end}"
                );
            }
            // count_by_value of keyed records: element = framed (key, value).
            let mut want: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
            for (k, v) in &window {
                *want
                    .entry(weir::ops::element(k, v).into_owned())
                    .or_default() += 1;
            }
            assert_eq!(
                as_sums(&by_value[i]),
                want,
                "count_by_value_and_window ({length},{slide}) at {end}"
            );
        }
    }
}

#[test]
fn window_length_and_slide_must_be_multiples_of_the_interval() {
    let r = run(2);
    let src = r.ctx.queue_stream(input(5, 2)).unwrap();
    let err = src
        .window(Duration::from_millis(2500), secs(1))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("2500 ms") && err.contains("1000 ms") && err.contains("multiples"),
        "{err}"
    );
    let err = src
        .reduce_by_key_and_window(&r.tk, "sum", secs(4), Duration::from_millis(300), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("300 ms") && err.contains("4000 ms"), "{err}");
    // A window of a window slides with its parent.
    let w = src.window(secs(4), secs(2)).unwrap();
    let err = w.window(secs(3), secs(2)).err().unwrap().to_string();
    assert!(err.contains("3000 ms") && err.contains("2000 ms"), "{err}");
    // Streams that slide differently cannot be joined.
    let err = w.join(&src, None).err().unwrap().to_string();
    assert!(err.contains("slide together"), "{err}");
}

#[test]
fn windows_downstream_run_only_at_slide_times() {
    let data = input(6, BATCHES);
    let r = run(2);
    let src = r.ctx.queue_stream(data).unwrap();
    let counted = src.window(secs(4), secs(2)).unwrap().count().unwrap();
    let out = collect(&counted);
    let cfg: &StreamingConfig = r.ctx.config();
    assert_eq!(cfg.batch_interval, secs(1));
    r.ctx.run(Some(BATCHES as u64)).unwrap();
    check_times(&out, 2);
}
