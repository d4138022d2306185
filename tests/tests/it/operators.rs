//! Every stateless operator against a from-scratch oracle on random input,
//! through real wasm plugins, on a simulated clock.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::stream::{JoinKind, Stream, StreamingContext};
use weir::wasm::Plugin;
use weir_abi::canonical;
use weir_tests::{
    collect, context, count, guests, records, shared_plugin, simulated_config, Collected,
};

type Rec = (Vec<u8>, Vec<u8>);

/// Random keyed batches: keys `k0..k{keys}`, i64 values; some batches empty.
fn keyed_batches(seed: u64, batches: usize, keys: u32) -> Vec<Vec<Rec>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..batches)
        .map(|b| {
            let n = if b % 4 == 3 { 0 } else { rng.gen_range(0..300) };
            (0..n)
                .map(|_| {
                    (
                        format!("k{}", rng.gen_range(0..keys)).into_bytes(),
                        rng.gen_range(-50i64..50).to_le_bytes().to_vec(),
                    )
                })
                .collect()
        })
        .collect()
}

struct Setup {
    ctx: StreamingContext,
    testkit: Plugin,
    wordcount: Plugin,
}

fn setup(partitions: usize, workers: usize) -> Setup {
    let ctx = context(simulated_config(partitions, workers));
    let testkit = shared_plugin(guests::TESTKIT);
    let wordcount = shared_plugin(guests::WORDCOUNT);
    Setup {
        ctx,
        testkit,
        wordcount,
    }
}

/// Runs `build` over one queue stream of `input` and returns each batch's records.
fn run_one(
    input: &[Vec<Rec>],
    partitions: usize,
    build: impl Fn(&Setup, &Stream) -> Stream,
) -> Vec<Vec<Rec>> {
    let s = setup(partitions, 2);
    let src = s.ctx.queue_stream(input.to_vec()).unwrap();
    let out = collect(&build(&s, &src));
    s.ctx.run(Some(input.len() as u64)).unwrap();
    batches_of(&out, input.len())
}

fn batches_of(out: &Collected, n: usize) -> Vec<Vec<Rec>> {
    let got = out.lock().unwrap();
    assert_eq!(got.len(), n, "one output per batch");
    for (i, (t, _)) in got.iter().enumerate() {
        assert_eq!(
            *t,
            (i as i64 + 1) * 1000,
            "batch times on the simulated clock"
        );
    }
    got.iter().map(|(_, parts)| records(parts)).collect()
}

fn sorted(mut v: Vec<Rec>) -> Vec<Rec> {
    v.sort();
    v
}

fn i64s(v: &[u8]) -> i64 {
    count(v)
}

#[test]
fn map_appends_in_order() {
    let input = keyed_batches(1, 6, 10);
    let got = run_one(&input, 3, |s, src| src.map(&s.testkit, "tag").unwrap());
    for (batch, out) in input.iter().zip(&got) {
        let expected: Vec<Rec> = batch
            .iter()
            .map(|(k, v)| (k.clone(), [v.as_slice(), b"!"].concat()))
            .collect();
        assert_eq!(out, &expected);
    }
}

#[test]
fn flat_map_splits_words() {
    let mut rng = StdRng::seed_from_u64(2);
    let words = ["a", "bb", "ccc", "dd", "e"];
    let input: Vec<Vec<Rec>> = (0..5)
        .map(|_| {
            (0..rng.gen_range(0..100))
                .map(|_| {
                    let n = rng.gen_range(0..6);
                    let line: Vec<&str> = (0..n)
                        .map(|_| words[rng.gen_range(0..words.len())])
                        .collect();
                    (
                        Vec::new(),
                        line.join(if rng.gen_bool(0.5) { " " } else { "  \t" })
                            .into_bytes(),
                    )
                })
                .collect()
        })
        .collect();
    let got = run_one(&input, 4, |s, src| {
        src.flat_map(&s.wordcount, "split").unwrap()
    });
    for (batch, out) in input.iter().zip(&got) {
        let expected: Vec<Rec> = batch
            .iter()
            .flat_map(|(_, line)| {
                String::from_utf8(line.clone())
                    .unwrap()
                    .split_whitespace()
                    .map(|w| (w.as_bytes().to_vec(), 1i64.to_le_bytes().to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(out, &expected);
    }
}

#[test]
fn filter_keeps_even_values() {
    let input = keyed_batches(3, 6, 10);
    let got = run_one(&input, 3, |s, src| src.filter(&s.testkit, "even").unwrap());
    for (batch, out) in input.iter().zip(&got) {
        let expected: Vec<Rec> = batch
            .iter()
            .filter(|(_, v)| i64s(v) % 2 == 0)
            .cloned()
            .collect();
        assert_eq!(out, &expected);
    }
}

#[test]
fn map_breaking_its_contract_fails_the_batch_with_a_clear_error() {
    let s = setup(2, 2);
    let input = vec![vec![(b"k".to_vec(), b"v".to_vec())]];
    let src = s.ctx.queue_stream(input).unwrap();
    let mapped = src
        .map(&s.testkit, "twice")
        .unwrap()
        .named("doubler")
        .unwrap();
    collect(&mapped);
    let err = s.ctx.run(Some(1)).unwrap_err().to_string();
    assert!(
        err.contains("operator `doubler` (map)") && err.contains("exactly one per record"),
        "{err}"
    );
    assert!(err.contains("0 batch(es) completed"), "{err}");
}

#[test]
fn guest_error_names_job_operator_batch_and_partition() {
    let s = setup(1, 1);
    let ok = vec![(Vec::new(), b"fine".to_vec())];
    let bad = vec![(Vec::new(), b"boom".to_vec())];
    let src = s.ctx.queue_stream(vec![ok, bad]).unwrap();
    collect(
        &src.map(&s.testkit, "fail_on_boom")
            .unwrap()
            .named("checker")
            .unwrap(),
    );
    let err = s.ctx.run(Some(2)).unwrap_err().to_string();
    for part in [
        "job `test`",
        "operator `checker`",
        "batch 2000 ms",
        "partition 0",
        "map:fail_on_boom",
        "found a boom",
        "1 batch(es) completed",
        "2000",
    ] {
        assert!(err.contains(part), "missing {part:?} in: {err}");
    }
}

#[test]
fn plugins_see_batch_time_and_partition() {
    let input = vec![vec![(b"a".to_vec(), vec![]); 4]; 2];
    let got = run_one(&input, 2, |s, src| src.map(&s.testkit, "stamp").unwrap());
    let stamps: Vec<String> = got
        .iter()
        .flatten()
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .collect();
    assert_eq!(
        stamps,
        [
            "1000/0/2", "1000/0/2", "1000/1/2", "1000/1/2", "2000/0/2", "2000/0/2", "2000/1/2",
            "2000/1/2"
        ]
    );
}

#[test]
fn repartition_is_even_and_loses_nothing() {
    let input = keyed_batches(4, 5, 30);
    let s = setup(3, 2);
    let src = s.ctx.queue_stream(input.clone()).unwrap();
    let out = collect(&src.repartition(5).unwrap());
    s.ctx.run(Some(input.len() as u64)).unwrap();
    for ((_, parts), batch) in out.lock().unwrap().iter().zip(&input) {
        assert_eq!(parts.len(), 5);
        let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        assert_eq!(sorted(records(parts)), sorted(batch.clone()));
    }
}

#[test]
fn union_has_both_sides() {
    let a = keyed_batches(5, 4, 10);
    let b = keyed_batches(6, 4, 10);
    let s = setup(2, 2);
    let sa = s.ctx.queue_stream(a.clone()).unwrap();
    let sb = s.ctx.queue_stream(b.clone()).unwrap();
    let out = collect(&sa.union(&[&sb]).unwrap());
    s.ctx.run(Some(4)).unwrap();
    for (i, got) in batches_of(&out, 4).into_iter().enumerate() {
        assert_eq!(got, [a[i].clone(), b[i].clone()].concat());
    }
}

#[test]
fn count_and_reduce() {
    let input = keyed_batches(7, 8, 10);
    let s = setup(4, 2);
    let src = s.ctx.queue_stream(input.clone()).unwrap();
    let counted = collect(&src.count().unwrap());
    let reduced = collect(&src.reduce(&s.testkit, "concat").unwrap());
    s.ctx.run(Some(input.len() as u64)).unwrap();
    let counted = batches_of(&counted, input.len());
    let reduced = batches_of(&reduced, input.len());
    for (i, batch) in input.iter().enumerate() {
        assert_eq!(
            counted[i],
            vec![(vec![], (batch.len() as i64).to_le_bytes().to_vec())]
        );
        if batch.is_empty() {
            assert!(reduced[i].is_empty());
        } else {
            assert_eq!(
                reduced[i],
                vec![(
                    vec![],
                    batch
                        .iter()
                        .flat_map(|(_, v)| v.clone())
                        .collect::<Vec<u8>>()
                )]
            );
        }
    }
}

#[test]
fn count_by_value_matches_hashmap() {
    // Unkeyed values: the element is the value.
    let mut rng = StdRng::seed_from_u64(8);
    let input: Vec<Vec<Rec>> = (0..5)
        .map(|_| {
            (0..rng.gen_range(0..200))
                .map(|_| (vec![], format!("v{}", rng.gen_range(0..15)).into_bytes()))
                .collect()
        })
        .collect();
    let got = run_one(&input, 3, |_, src| src.count_by_value(Some(2)).unwrap());
    for (batch, out) in input.iter().zip(&got) {
        let mut expected: HashMap<Vec<u8>, i64> = HashMap::new();
        for (_, v) in batch {
            *expected.entry(v.clone()).or_default() += 1;
        }
        let got: HashMap<Vec<u8>, i64> = out.iter().map(|(k, v)| (k.clone(), count(v))).collect();
        assert_eq!(got.len(), out.len(), "each element once");
        assert_eq!(got, expected);
    }
}

#[test]
fn reduce_by_key_matches_hashmap_and_keeps_arrival_order() {
    let input = keyed_batches(9, 8, 25);
    let s = setup(4, 2);
    let src = s.ctx.queue_stream(input.clone()).unwrap();
    let sums = collect(&src.reduce_by_key(&s.testkit, "sum", Some(3)).unwrap());
    let concats = collect(&src.reduce_by_key(&s.testkit, "concat", None).unwrap());
    s.ctx.run(Some(input.len() as u64)).unwrap();
    let sums = batches_of(&sums, input.len());
    let concats = batches_of(&concats, input.len());
    for (i, batch) in input.iter().enumerate() {
        let mut expected_sum: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut expected_cat: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, v) in batch {
            *expected_sum.entry(k.clone()).or_default() += i64s(v);
            expected_cat
                .entry(k.clone())
                .or_default()
                .extend_from_slice(v);
        }
        let got_sum: BTreeMap<Vec<u8>, i64> =
            sums[i].iter().map(|(k, v)| (k.clone(), count(v))).collect();
        assert_eq!(got_sum.len(), sums[i].len(), "each key once");
        assert_eq!(got_sum, expected_sum);
        let got_cat: BTreeMap<Vec<u8>, Vec<u8>> = concats[i].iter().cloned().collect();
        assert_eq!(got_cat, expected_cat, "values combined in arrival order");
    }
}

#[test]
fn group_by_key_lists_values_in_arrival_order() {
    let input = keyed_batches(10, 6, 12);
    let got = run_one(&input, 3, |_, src| src.group_by_key(Some(4)).unwrap());
    for (batch, out) in input.iter().zip(&got) {
        let mut expected: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for (k, v) in batch {
            expected.entry(k.clone()).or_default().push(v.clone());
        }
        let got: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = out
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    canonical::decode_list(v)
                        .unwrap()
                        .into_iter()
                        .map(<[u8]>::to_vec)
                        .collect(),
                )
            })
            .collect();
        assert_eq!(got, expected);
    }
}

type JoinRow = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Nested-loop join: the reference.
fn nested_loop(kind: JoinKind, left: &[Rec], right: &[Rec]) -> Vec<JoinRow> {
    let mut rows = Vec::new();
    for (lk, lv) in left {
        let matches: Vec<&Rec> = right.iter().filter(|(rk, _)| rk == lk).collect();
        for (_, rv) in &matches {
            rows.push((lk.clone(), Some(lv.clone()), Some(rv.clone())));
        }
        if matches.is_empty() && matches!(kind, JoinKind::LeftOuter | JoinKind::FullOuter) {
            rows.push((lk.clone(), Some(lv.clone()), None));
        }
    }
    if matches!(kind, JoinKind::RightOuter | JoinKind::FullOuter) {
        for (rk, rv) in right {
            if !left.iter().any(|(lk, _)| lk == rk) {
                rows.push((rk.clone(), None, Some(rv.clone())));
            }
        }
    }
    rows.sort();
    rows
}

#[test]
fn joins_match_nested_loops() {
    let left = keyed_batches(11, 6, 15);
    let right = keyed_batches(12, 6, 15);
    for kind in [
        JoinKind::Inner,
        JoinKind::LeftOuter,
        JoinKind::RightOuter,
        JoinKind::FullOuter,
    ] {
        let s = setup(3, 2);
        let l = s.ctx.queue_stream(left.clone()).unwrap();
        let r = s.ctx.queue_stream(right.clone()).unwrap();
        let out = collect(&l.join_with(kind, &r, Some(2)).unwrap());
        s.ctx.run(Some(left.len() as u64)).unwrap();
        for (i, got) in batches_of(&out, left.len()).into_iter().enumerate() {
            let mut rows: Vec<JoinRow> = got
                .iter()
                .map(|(k, v)| {
                    let (a, b) = canonical::decode_pair(v).unwrap();
                    (k.clone(), a.map(<[u8]>::to_vec), b.map(<[u8]>::to_vec))
                })
                .collect();
            rows.sort();
            assert_eq!(
                rows,
                nested_loop(kind, &left[i], &right[i]),
                "{kind:?} batch {i}"
            );
        }
    }
}

#[test]
fn cogroup_matches_reference() {
    let left = keyed_batches(13, 5, 10);
    let right = keyed_batches(14, 5, 10);
    let s = setup(2, 2);
    let l = s.ctx.queue_stream(left.clone()).unwrap();
    let r = s.ctx.queue_stream(right.clone()).unwrap();
    let out = collect(&l.cogroup(&r, None).unwrap());
    s.ctx.run(Some(left.len() as u64)).unwrap();
    for (i, got) in batches_of(&out, left.len()).into_iter().enumerate() {
        let mut expected: BTreeMap<Vec<u8>, (Vec<Vec<u8>>, Vec<Vec<u8>>)> = BTreeMap::new();
        for (k, v) in &left[i] {
            expected.entry(k.clone()).or_default().0.push(v.clone());
        }
        for (k, v) in &right[i] {
            expected.entry(k.clone()).or_default().1.push(v.clone());
        }
        let got: BTreeMap<Vec<u8>, (Vec<Vec<u8>>, Vec<Vec<u8>>)> = got
            .iter()
            .map(|(k, v)| {
                let (a, b) = canonical::decode_cogroup(v).unwrap();
                (
                    k.clone(),
                    (
                        a.into_iter().map(<[u8]>::to_vec).collect(),
                        b.into_iter().map(<[u8]>::to_vec).collect(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, expected);
    }
}

#[test]
fn unknown_function_and_wrong_kind_are_named() {
    let s = setup(2, 2);
    let src = s.ctx.queue_stream(Vec::<Vec<Rec>>::new()).unwrap();
    let err = src.map(&s.testkit, "nope").err().unwrap().to_string();
    assert!(
        err.contains("has no function `nope`") && err.contains("tag"),
        "{err}"
    );
    let err = src
        .reduce_by_key(&s.testkit, "tag", None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("is a map function, but reduce_by_key needs a reduce function"),
        "{err}"
    );
}
