//! The NEXMark queries (`examples/pipelines/nexmark/q*.toml`, plugin
//! `plugins/nexmark`) run by the `weir` binary on the simulated clock, and
//! every batch they wrote checked against the same query computed here in
//! plain Rust over the generator's events (`weir::receiver::nexmark`), not
//! through weir's operators.
//!
//! Batch `k` (batch time `k` s, 1 s batches) holds events `[(k−1)·RATE,
//! k·RATE)`; a window ending at `t` holds the batches in `(t − length, t]`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use weir::receiver::generator::{GeneratorConfig, GeneratorKind, GeneratorSource};
use weir::receiver::nexmark::{self, Auction, Bid, Event, Person};
use weir::receiver::Source;

/// Events per second, and per (1 s) batch.
const RATE: u64 = 1000;
const SEED: u64 = 42;
/// Batch time → the lines written in that batch, sorted.
type Batches = BTreeMap<i64, Vec<String>>;

fn events(batches: u64) -> Vec<Event> {
    events_at(batches, RATE, SEED)
}

fn events_at(batches: u64, rate: u64, seed: u64) -> Vec<Event> {
    (0..batches * rate)
        .map(|i| nexmark::event(seed, i, rate))
        .collect()
}

/// The batch (its time, ms) that holds event `i`.
fn batch_of(i: usize) -> i64 {
    batch_at(i, RATE)
}

fn batch_at(i: usize, rate: u64) -> i64 {
    (i as i64 / rate as i64 + 1) * 1000
}

/// The events of the window ending at `t` (ms) of `length_s` seconds.
fn window(all: &[Event], t: i64, length_s: i64) -> &[Event] {
    let k = (t / 1000) as usize;
    let from = k.saturating_sub(length_s as usize) * RATE as usize;
    &all[from.min(all.len())..(k * RATE as usize).min(all.len())]
}

fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the pipeline should contain `{from}`");
    text.replacen(from, to, 1)
}

/// Query `q`'s example pipeline at `RATE`, with the test-built plugin and a
/// `text_files` output under `dir`.
fn pipeline(dir: &Path, q: &str, rate: u64, seed: u64) -> PathBuf {
    let example = weir_tests::workspace_root().join(format!("examples/pipelines/nexmark/{q}.toml"));
    let text = std::fs::read_to_string(example).unwrap();
    let plugin = weir_tests::guest(weir_tests::guests::NEXMARK);
    let text = replace(
        &text,
        "\"../../../target/plugins/nexmark.wasm\"",
        &format!("{:?}", plugin.display().to_string()),
    );
    let text = replace(&text, "rate = 10000", &format!("rate = {rate}"));
    let text = replace(&text, "seed = 42", &format!("seed = {seed}"));
    let out = dir.join("out");
    let mut text = replace(
        &text,
        "type = \"print\"",
        &format!(
            "type = \"text_files\"\nprefix = {:?}",
            out.display().to_string()
        ),
    );
    if let Some(at) = text.find("\nnum = ") {
        let end = text[at + 1..].find('\n').map_or(text.len(), |e| at + 1 + e);
        text.replace_range(at..end, "");
    }
    let path = dir.join(format!("{q}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs query `q` for `batches` batches; the lines of every batch written.
fn run(q: &str, batches: u64) -> Batches {
    run_at(q, batches, RATE, SEED)
}

fn run_at(q: &str, batches: u64, rate: u64, seed: u64) -> Batches {
    run_with(q, batches, rate, seed, &[])
}

/// [`run_at`] with extra environment variables for `weir`.
fn run_with(q: &str, batches: u64, rate: u64, seed: u64, env: &[(&str, &str)]) -> Batches {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), q, rate, seed);
    let out = crate::support::weir()
        .arg("run")
        .arg(&p)
        .args(["--batches", &batches.to_string(), "--simulated-clock"])
        .env("WEIR_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{q} failed: {log}");
    read_batches(dir.path())
}

fn read_batches(dir: &Path) -> Batches {
    let mut out = Batches::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(t) = name.strip_prefix("out-") else {
            continue;
        };
        assert!(path.join("_SUCCESS").is_file(), "{name} has no _SUCCESS");
        let mut lines = crate::support::batch_lines(&path);
        lines.sort();
        out.insert(t.parse().unwrap(), lines);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A record as `text_files` renders an event: `(KIND,0xHEX)`.
fn rendered(e: &Event) -> String {
    let mut v = Vec::new();
    e.encode(&mut v);
    format!("({},0x{})", String::from_utf8_lossy(e.key()), hex(&v))
}

/// Per batch (1 .. batches), lines made from each event by `f`.
fn per_batch(all: &[Event], batches: u64, f: impl Fn(&Event) -> Option<String>) -> Batches {
    let mut out: Batches = (1..=batches as i64)
        .map(|k| (k * 1000, Vec::new()))
        .collect();
    for (i, e) in all.iter().enumerate() {
        if let Some(line) = f(e) {
            out.get_mut(&batch_of(i)).unwrap().push(line);
        }
    }
    out.values_mut().for_each(|v| v.sort());
    out
}

/// Compares batch by batch, naming the first batch that differs.
fn assert_batches(q: &str, got: &Batches, want: &Batches) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{q}: the batches written"
    );
    for (t, w) in want {
        assert_eq!(&got[t], w, "{q}: batch {t} ms");
    }
}

fn bids(events: &[Event]) -> impl Iterator<Item = &Bid> {
    events.iter().filter_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

#[test]
fn generator_is_deterministic_resumable_and_in_proportion() {
    let config = GeneratorConfig {
        kind: GeneratorKind::Nexmark,
        rate: 5000,
        seed: 9,
        words_per_line: 0,
        vocabulary: 1,
        zipf_s: 1.0,
        block_records: 700,
        batch_records: 5000,
        limit: None,
    };
    let batch = |g: &mut GeneratorSource| -> Vec<(Vec<u8>, Vec<u8>)> {
        let (_, blocks) = g.next_batch(0).unwrap();
        blocks
            .iter()
            .flat_map(|b| b.iter().map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect()
    };
    let mut a = GeneratorSource::new(config.clone());
    let (first, second) = (batch(&mut a), batch(&mut a));
    let mut b = GeneratorSource::new(config.clone());
    b.seek(5000);
    assert_eq!(batch(&mut b), second, "resumed at event 5000");
    assert_eq!(batch(&mut GeneratorSource::new(config.clone())), first);
    let other = batch(&mut GeneratorSource::new(GeneratorConfig {
        seed: 10,
        ..config
    }));
    assert_ne!(other, first, "another seed, other events");

    let mut kinds: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, (k, v)) in first.iter().chain(&second).enumerate() {
        *kinds.entry(k.clone()).or_default() += 1;
        let e = Event::decode(k, v).unwrap();
        assert_eq!(e, nexmark::event(9, i as u64, 5000), "event {i}");
        assert_eq!(e.date_time(), i as i64 / 5, "5 events per ms");
    }
    assert_eq!(
        (kinds[&b"P"[..]], kinds[&b"A"[..]], kinds[&b"B"[..]]),
        (200, 600, 9200),
        "1:3:46"
    );
}

#[test]
fn q0_passes_every_event_through() {
    let got = run("q0", 3);
    let want = per_batch(&events(3), 3, |e| Some(rendered(e)));
    assert_eq!(want[&1000].len(), RATE as usize);
    assert_batches("q0", &got, &want);
}

#[test]
fn q1_converts_bid_prices() {
    let got = run("q1", 3);
    let want = per_batch(&events(3), 3, |e| match e {
        Event::Bid(b) => Some(rendered(&Event::Bid(Bid {
            price: (u128::from(b.price) * 908 / 1000) as u64,
            ..b.clone()
        }))),
        _ => None,
    });
    assert!(want[&1000].len() > 900);
    assert_batches("q1", &got, &want);
}

#[test]
fn q2_selects_bids_of_every_123rd_auction() {
    let got = run("q2", 12);
    let want = per_batch(&events(12), 12, |e| match e {
        Event::Bid(b) if b.auction % 123 == 0 => Some(format!("({},{})", b.auction, b.price)),
        _ => None,
    });
    assert!(want.values().map(Vec::len).sum::<usize>() > 10);
    assert_batches("q2", &got, &want);
}

#[test]
fn q3_joins_local_sellers_with_their_category_10_auctions() {
    // A low rate, so that a seller id running ahead of its person event
    // (by up to 10 people, 500 events) can span batches; the first seed
    // whose events have such a pair, so the test shows the join waits.
    const BATCHES: u64 = 40;
    const Q3_RATE: u64 = 100;
    let (seed, want) = (1..=200)
        .map(|seed| {
            (
                seed,
                q3_expected(&events_at(BATCHES, Q3_RATE, seed), BATCHES, Q3_RATE),
            )
        })
        .find(|(_, (_, waited))| *waited > 0)
        .map(|(seed, (want, _))| (seed, want))
        .expect("a seed with an auction whose seller comes in a later batch");
    assert!(want.values().map(Vec::len).sum::<usize>() > 20);
    assert_batches("q3", &run_at("q3", BATCHES, Q3_RATE, seed), &want);
}

/// q3's lines per batch, and how many pairs waited for a later batch.
fn q3_expected(all: &[Event], batches: u64, rate: u64) -> (Batches, usize) {
    // Person id → the person and its event number; auctions with theirs.
    let mut people: HashMap<u64, (&Person, usize)> = HashMap::new();
    let mut auctions: Vec<(&Auction, usize)> = Vec::new();
    for (i, e) in all.iter().enumerate() {
        match e {
            Event::Person(p) if ["OR", "ID", "CA"].contains(&p.state.as_str()) => {
                people.insert(p.id, (p, i));
            }
            Event::Auction(a) if a.category == 10 => auctions.push((a, i)),
            _ => {}
        }
    }
    let mut want: Batches = (1..=batches as i64)
        .map(|k| (k * 1000, Vec::new()))
        .collect();
    let mut waited = 0;
    for (a, ai) in auctions {
        if let Some(&(p, pi)) = people.get(&a.seller) {
            let (pb, ab) = (batch_at(pi, rate), batch_at(ai, rate));
            waited += usize::from(pb > ab);
            want.get_mut(&pb.max(ab))
                .unwrap()
                .push(format!("{},{},{},{}", p.name, p.city, p.state, a.id));
        }
    }
    want.values_mut().for_each(|v| v.sort());
    (want, waited)
}

#[test]
fn q5_finds_the_hot_items_of_sliding_windows() {
    const BATCHES: u64 = 22;
    let all = events(BATCHES);
    let want: Batches = (1..=BATCHES as i64 / 2)
        .map(|j| {
            let t = j * 2000;
            let mut counts: BTreeMap<u64, i64> = BTreeMap::new();
            for b in bids(window(&all, t, 10)) {
                *counts.entry(b.auction).or_default() += 1;
            }
            let max = counts.values().copied().max().unwrap();
            let mut lines: Vec<String> = counts
                .iter()
                .filter(|(_, &n)| n == max)
                .map(|(a, n)| format!("({a},{n})"))
                .collect();
            lines.sort();
            (t, lines)
        })
        .collect();
    // The hot auction changes, and windows slide past their first 10 s.
    let hot: BTreeSet<&Vec<String>> = want.values().collect();
    assert!(hot.len() > 3, "{want:?}");
    let got = run("q5", BATCHES);
    assert_batches("q5", &got, &want);
    assert_eq!(run("q5", BATCHES), got, "a second run writes the same");
}

#[test]
fn q7_finds_the_highest_bids_of_tumbling_windows() {
    const BATCHES: u64 = 21;
    let all = events(BATCHES);
    let want: Batches = [10_000, 20_000]
        .into_iter()
        .map(|t| {
            let in_window: Vec<&Bid> = bids(window(&all, t, 10)).collect();
            let max = in_window.iter().map(|b| b.price).max().unwrap();
            let mut lines: Vec<String> = in_window
                .iter()
                .filter(|b| b.price == max)
                .map(|b| format!("{},{},{},{}", b.auction, b.bidder, b.price, b.date_time))
                .collect();
            lines.sort();
            (t, lines)
        })
        .collect();
    assert_ne!(want[&10_000], want[&20_000]);
    assert_batches("q7", &run("q7", BATCHES), &want);
}

#[test]
fn q8_finds_people_who_joined_and_sold_in_the_same_window() {
    const BATCHES: u64 = 21;
    let all = events(BATCHES);
    let want: Batches = [10_000, 20_000]
        .into_iter()
        .map(|t| {
            let w = window(&all, t, 10);
            let sellers: BTreeSet<u64> = w
                .iter()
                .filter_map(|e| match e {
                    Event::Auction(a) => Some(a.seller),
                    _ => None,
                })
                .collect();
            let mut lines: Vec<String> = w
                .iter()
                .filter_map(|e| match e {
                    Event::Person(p) if sellers.contains(&p.id) => {
                        Some(format!("{},{}", p.id, p.name))
                    }
                    _ => None,
                })
                .collect();
            lines.sort();
            (t, lines)
        })
        .collect();
    assert!(want.values().all(|v| v.len() > 3), "{want:?}");
    assert_batches("q8", &run("q8", BATCHES), &want);
}

#[test]
fn bad_nexmark_settings_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "q0", RATE, SEED);
    let text = std::fs::read_to_string(&p).unwrap();
    for (from, to, says) in [
        (format!("rate = {RATE}"), "rate = 0", "needs `rate` >= 1"),
        (
            "seed = 42".to_owned(),
            "seed = 42\nvocabulary = 7",
            "`vocabulary` does not apply",
        ),
        (
            "generate = \"nexmark\"".to_owned(),
            "generate = \"nexmarks\"",
            "unknown generator output `nexmarks`",
        ),
    ] {
        std::fs::write(&p, text.replacen(&from, to, 1)).unwrap();
        let out = crate::support::weir()
            .arg("validate")
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {err}");
        assert!(
            !err.contains("panicked") && err.contains(says),
            "{to}: {err}"
        );
    }
}

/// Reusing batch buffers (`weir_abi::recycle`) changes no byte: q1 with
/// batches large enough for reuse (partitions of several MiB, the map's
/// output copied out of the guest into kept buffers) writes the same
/// batches with reuse off (`WEIR_RECYCLE_MIB=0`), on, and on with a small
/// bound, and they are the query's batches computed here.
#[test]
fn reusing_batch_buffers_changes_no_byte() {
    const BIG: u64 = 60_000;
    const N: u64 = 3;
    let off = run_with("q1", N, BIG, SEED, &[("WEIR_RECYCLE_MIB", "0")]);
    let on = run_with("q1", N, BIG, SEED, &[]);
    let small = run_with("q1", N, BIG, SEED, &[("WEIR_RECYCLE_MIB", "3")]);
    assert_eq!(on, off);
    assert_eq!(small, off);
    let all = events_at(N, BIG, SEED);
    let lines: usize = off.values().map(Vec::len).sum();
    let bids = all.iter().filter(|e| matches!(e, Event::Bid(_))).count();
    assert_eq!(lines, bids, "one line per bid");
}
