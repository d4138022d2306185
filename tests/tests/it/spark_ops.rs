//! Issue 9: the Spark operators added through the operator registry
//! (`transform` over several streams, `transform_with`, `glom`, `slice`),
//! and Spark's semantics of `count_by_window` before the first record.

use std::path::Path;
use std::time::Duration;

use weir_abi::canonical;
use weir_tests::{collect, context, count, guests, records, shared_plugin, simulated_config};

type Rec = (Vec<u8>, Vec<u8>);

fn batches(seed: u64, n: usize) -> Vec<Vec<Rec>> {
    (0..n)
        .map(|b| {
            (0..(seed as usize * 7 + b * 3) % 11)
                .map(|i| {
                    (
                        format!("k{}", (i + b) % 4).into_bytes(),
                        format!("v{seed}-{b}-{i}").into_bytes(),
                    )
                })
                .collect()
        })
        .collect()
}

/// `tag` appends `!`; tagged values start with the input's number.
fn tagged(input: u32, v: &[u8]) -> Vec<u8> {
    [&input.to_le_bytes()[..], v, b"!"].concat()
}

#[test]
fn issue_9_transform_over_several_streams_sees_partition_p_of_each() {
    let inputs = [batches(1, 5), batches(2, 5), batches(3, 5)];
    let ctx = context(simulated_config(3, 2));
    let tk = shared_plugin(guests::TESTKIT);
    let streams: Vec<_> = inputs
        .iter()
        .map(|b| ctx.queue_stream(b.clone()).unwrap())
        .collect();
    let seen: Vec<_> = streams.iter().map(collect).collect();
    let three = collect(
        &streams[0]
            .transform(&[&streams[1], &streams[2]], &tk, "tag")
            .unwrap(),
    );
    let two = collect(&streams[0].transform_with(&streams[1], &tk, "tag").unwrap());
    ctx.run(Some(5)).unwrap();
    for (out, n) in [(three, 3), (two, 2)] {
        let out = out.lock().unwrap();
        assert_eq!(out.len(), 5);
        for (b, (t, parts)) in out.iter().enumerate() {
            assert_eq!(*t, (b as i64 + 1) * 1000);
            assert_eq!(parts.len(), 3, "partition p of the inputs, p < 3");
            for (p, part) in parts.iter().enumerate() {
                let mut want: Vec<Rec> = Vec::new();
                for (i, s) in seen.iter().take(n).enumerate() {
                    let s = s.lock().unwrap();
                    for (k, v) in s[b].1[p].iter() {
                        want.push((k.to_vec(), tagged(i as u32, v)));
                    }
                }
                let got: Vec<Rec> = part.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                assert_eq!(got, want, "batch {b}, partition {p}, {n} inputs");
            }
        }
    }
}

#[test]
fn issue_9_transform_with_one_input_is_map_partitions() {
    let input = batches(4, 3);
    let ctx = context(simulated_config(2, 1));
    let tk = shared_plugin(guests::TESTKIT);
    let src = ctx.queue_stream(input.clone()).unwrap();
    let out = collect(&src.transform(&[], &tk, "tag").unwrap());
    ctx.run(Some(3)).unwrap();
    for (batch, (_, parts)) in input.iter().zip(out.lock().unwrap().iter()) {
        let want: Vec<Rec> = batch
            .iter()
            .map(|(k, v)| (k.clone(), [v.as_slice(), b"!"].concat()))
            .collect();
        assert_eq!(records(parts), want, "untagged with a single input");
    }
}

#[test]
fn issue_9_glom_makes_one_list_per_partition() {
    let input = batches(5, 4);
    let ctx = context(simulated_config(3, 2));
    let src = ctx.queue_stream(input).unwrap();
    let seen = collect(&src);
    let glommed = collect(&src.glom().unwrap());
    ctx.run(Some(4)).unwrap();
    let seen = seen.lock().unwrap();
    for ((_, ins), (_, outs)) in seen.iter().zip(glommed.lock().unwrap().iter()) {
        assert_eq!(ins.len(), outs.len());
        for (inp, out) in ins.iter().zip(outs) {
            let recs: Vec<_> = out.iter().collect();
            assert_eq!(recs.len(), 1, "one record per partition, also when empty");
            let (k, v) = recs[0];
            assert!(k.is_empty());
            let items = canonical::decode_list(v).unwrap();
            let want: Vec<Vec<u8>> = inp
                .iter()
                .map(|(k, v)| weir::ops::element(k, v).into_owned())
                .collect();
            assert_eq!(items.iter().map(|i| i.to_vec()).collect::<Vec<_>>(), want);
        }
    }
}

#[test]
fn issue_9_slice_returns_remembered_batches_between_two_times() {
    let input = batches(6, 6);
    let ctx = context(simulated_config(2, 1));
    let src = ctx.queue_stream(input).unwrap();
    let seen = collect(&src);
    let (remembered, slicer) = src.remember(Duration::from_secs(3)).unwrap();
    collect(&remembered);
    ctx.run(Some(6)).unwrap();
    assert_eq!(slicer.times(), vec![4000, 5000, 6000], "the last 3 s");
    let got = slicer.slice(2000, 5000);
    let seen = seen.lock().unwrap();
    let want: Vec<_> = seen
        .iter()
        .filter(|(t, _)| (4000..=5000).contains(t))
        .collect();
    assert_eq!(got.len(), want.len());
    for ((gt, gp), (wt, wp)) in got.iter().zip(want) {
        assert_eq!(gt, wt);
        assert_eq!(records(gp), records(wp));
    }
}

#[test]
fn issue_9_count_by_window_emits_nothing_before_the_first_record() {
    // Spark's countByWindow is a windowed reduce of 1 per record: no
    // record, no key, no output; once a record came, an empty window is 0.
    let one = |n: usize| -> Vec<Rec> { (0..n).map(|i| (Vec::new(), vec![i as u8])).collect() };
    let input = vec![one(0), one(0), one(2), one(1), one(0), one(0), one(0)];
    let ctx = context(simulated_config(2, 1));
    let src = ctx.queue_stream(input).unwrap();
    let out = collect(
        &src.count_by_window(Duration::from_secs(2), Duration::from_secs(1))
            .unwrap(),
    );
    ctx.run(Some(7)).unwrap();
    let got: Vec<Vec<i64>> = out
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| records(p).iter().map(|(_, v)| count(v)).collect())
        .collect();
    assert_eq!(
        got,
        vec![vec![], vec![], vec![2], vec![3], vec![1], vec![0], vec![0]]
    );
}

#[test]
fn issue_9_pipeline_files_reach_the_new_operators_and_not_api_only_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wat = weir_tests::workspace_root().join("plugins/wordcount-wat/wordcount.wat");
    let text = |ops: &str| {
        format!(
            r#"
[plugins]
wc = "{}"

[[source]]
name = "a"
type = "generator"

[[source]]
name = "b"
type = "generator"
{ops}
[[output]]
stream = "out"
type = "print"
"#,
            wat.display()
        )
    };
    let good = text(
        r#"
[[stream]]
name = "both"
op = "transform_with"
inputs = ["a", "b"]
function = "wc:split"

[[stream]]
name = "out"
op = "glom"
input = "both"
"#,
    );
    let path = dir.path().join("p.toml");
    let pipeline = weir::config::Pipeline::parse(&path, &good).unwrap();
    assert_eq!(pipeline.streams.len(), 2);
    pipeline.build().unwrap();
    let bad = text(
        r#"
[[stream]]
name = "out"
op = "slice"
input = "a"
remember = "3s"
"#,
    );
    let err = weir::config::Pipeline::parse(Path::new("p.toml"), &bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown operator `slice` (`slice` is available in the library API only)"),
        "{err}"
    );
}
