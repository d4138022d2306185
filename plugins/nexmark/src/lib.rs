//! The NEXMark benchmark queries as a weir plugin, over the events of the
//! `nexmark` generator (`generate = "nexmark"`); the pipelines are
//! `examples/pipelines/nexmark/q*.toml`.
//!
//! **Events.** A record's key is `P`, `A` or `B` (person, auction, bid);
//! its value starts with the event time (`i64` ms) followed by the kind's
//! fields, all integers little-endian, strings a `u32` length and UTF-8
//! bytes (`docs/nexmark.md`). A bid is `date_time, auction, bidder, price`
//! (8 bytes each) then `extra`.
//!
//! **Partition functions.** The functions that read the event stream
//! (`map:pass`, `map:currency`, `map:q2_select`, `map:q3_tag`,
//! `map:q5_count`, `map:q7_max`, `map:q8_tag`) are written against the ABI
//! directly: one loop over the partition's records, reading the fields
//! where they lie, and (for q5, q7 and q8) aggregating inside the
//! partition before the host shuffles — the `map_partitions` pattern. The
//! small functions after a shuffle use the SDK's attributes. Malformed
//! input fails the call with a message naming the record; nothing panics
//! on input.
//!
//! | query | functions |
//! |-------|-----------|
//! | q0 pass-through | `map:pass` |
//! | q1 currency conversion | `map:currency` (bids, price × 0.908, truncated to whole cents) |
//! | q2 selection | `map:q2_select` (bids with `auction % 123 == 0` → `(auction, price)`) |
//! | q3 local item suggestion | `map:q3_tag`, `update:q3_join` |
//! | q5 hot items | `map:q5_count`, `reduce:sum`, `reduce:subtract`, `map:nonzero`, `map:q5_candidate`, `reduce:q5_max`, `map:q5_format` |
//! | q7 highest bid | `map:q7_max`, `reduce:q7_merge`, `map:q7_format` |
//! | q8 new users | `map:q8_tag`, `reduce:q8_merge`, `map:q8_emit` |
//!
//! Build: `cargo build -p nexmark --release --target wasm32-unknown-unknown`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

#[cfg(target_arch = "wasm32")]
use weir_sdk::abi::CallHeader;
use weir_sdk::abi::{Reader, RecordBatch};
use weir_sdk::{map, reduce, update, State};

/// Bytes of a bid before `extra`: time, auction, bidder, price.
const BID_FIXED: usize = 32;
/// Bytes of an auction before its strings: time, id, seller, category,
/// initial bid, reserve, expires.
const AUCTION_FIXED: usize = 56;
/// Bytes of a person before its strings: time, id.
const PERSON_FIXED: usize = 16;

/// q2 keeps bids of auctions whose id is a multiple of this.
pub const Q2_AUCTION_SKIP: u64 = 123;
/// q3's category.
pub const Q3_CATEGORY: u64 = 10;
/// q3's states.
pub const Q3_STATES: [&str; 3] = ["OR", "ID", "CA"];

fn u64_at(v: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(v[at..at + 8].try_into().expect("8 bytes"))
}

/// Calls `f` with every record of a map body, checking the framing.
fn each_record<'a>(
    body: &'a [u8],
    mut f: impl FnMut(usize, &'a [u8], &'a [u8]) -> Result<(), String>,
) -> Result<(), String> {
    let bad = |e| format!("bad record batch from host: {e}");
    let mut r = Reader::new(body);
    let n = r.count(8, "record count").map_err(bad)?;
    for i in 0..n {
        let k = r.bytes("record key").map_err(bad)?;
        let v = r.bytes("record value").map_err(bad)?;
        f(i, k, v)?;
    }
    r.finish().map_err(bad)
}

fn malformed(i: usize, what: &str, v: &[u8]) -> String {
    format!(
        "record {i}: malformed {what} ({} bytes); expected the nexmark generator's encoding (docs/nexmark.md)",
        v.len()
    )
}

/// A bid's `(auction, bidder, price, date_time)`, checked.
fn bid(i: usize, v: &[u8]) -> Result<(u64, u64, u64, i64), String> {
    if v.len() < BID_FIXED + 4 {
        return Err(malformed(i, "bid", v));
    }
    Ok((
        u64_at(v, 8),
        u64_at(v, 16),
        u64_at(v, 24),
        u64_at(v, 0) as i64,
    ))
}

/// The `n`-th string after `fixed` bytes of `v`.
fn string_at(v: &[u8], fixed: usize, n: usize) -> Option<&[u8]> {
    let mut at = fixed;
    for k in 0..=n {
        let len = u32::from_le_bytes(v.get(at..at + 4)?.try_into().ok()?) as usize;
        let s = v.get(at + 4..at + 4 + len)?;
        if k == n {
            return Some(s);
        }
        at += 4 + len;
    }
    None
}

/// Glue of a partition function: `map:NAME` over the whole record batch.
macro_rules! partition_export {
    ($export:literal, $f:path) => {
        const _: () = {
            #[cfg(target_arch = "wasm32")]
            #[export_name = $export]
            extern "C" fn glue(input: u32, len: u32, result: u32) -> i32 {
                // SAFETY: the host passes a valid input range and result area (ABI v1).
                unsafe {
                    weir_sdk::invoke::run(input, len, result, |i| {
                        let (_, body) =
                            CallHeader::split(i).map_err(|e| format!("bad call input: {e}"))?;
                        $f(body)
                    })
                }
            }
        };
    };
}

// ---- q0 -------------------------------------------------------------------

/// q0: every record unchanged (the host checks the framing of what a
/// function returns, so this is a copy).
pub fn pass(body: &[u8]) -> Result<Vec<u8>, String> {
    Ok(body.to_vec())
}
partition_export!("map:pass", pass);

// ---- q1 -------------------------------------------------------------------

/// q1: bids, with the price converted to euros (× 0.908, truncated to a
/// whole cent): the same record with its price field replaced.
pub fn currency(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = RecordBatch::with_capacity(body.len());
    each_record(body, |i, k, v| {
        if k == b"B" {
            let (_, _, price, _) = bid(i, v)?;
            let euros = price / 1000 * 908 + price % 1000 * 908 / 1000;
            out.push_encoded(
                |b| b.extend_from_slice(k),
                |b| {
                    b.extend_from_slice(&v[..24]);
                    b.extend_from_slice(&euros.to_le_bytes());
                    b.extend_from_slice(&v[32..]);
                },
            );
        }
        Ok(())
    })?;
    Ok(out.into_bytes())
}
partition_export!("map:currency", currency);

// ---- q2 -------------------------------------------------------------------

/// q2: bids on auctions whose id is a multiple of 123 → `(auction,
/// price)` as decimal text.
pub fn q2_select(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = RecordBatch::new();
    each_record(body, |i, k, v| {
        if k == b"B" {
            let (auction, _, price, _) = bid(i, v)?;
            if auction % Q2_AUCTION_SKIP == 0 {
                out.push(auction.to_string().as_bytes(), price.to_string().as_bytes());
            }
        }
        Ok(())
    })?;
    Ok(out.into_bytes())
}
partition_export!("map:q2_select", q2_select);

// ---- q3 -------------------------------------------------------------------

/// q3, before the shuffle: people in OR, ID or CA → `(id, P name city
/// state)`, auctions of category 10 → `(seller, A auction)`; keys `u64`.
pub fn q3_tag(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = RecordBatch::new();
    each_record(body, |i, k, v| {
        match k {
            b"P" => {
                let field =
                    |n| string_at(v, PERSON_FIXED, n).ok_or_else(|| malformed(i, "person", v));
                let (name, city, state) = (field(0)?, field(3)?, field(4)?);
                if Q3_STATES.iter().any(|s| s.as_bytes() == state) {
                    out.push_encoded(
                        |b| b.extend_from_slice(&v[8..16]),
                        |b| {
                            b.push(b'P');
                            for s in [name, city, state] {
                                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                                b.extend_from_slice(s);
                            }
                        },
                    );
                }
            }
            b"A" => {
                if v.len() < AUCTION_FIXED {
                    return Err(malformed(i, "auction", v));
                }
                if u64_at(v, 24) == Q3_CATEGORY {
                    out.push_encoded(
                        |b| b.extend_from_slice(&v[16..24]),
                        |b| {
                            b.push(b'A');
                            b.extend_from_slice(&v[8..16]);
                        },
                    );
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(out.into_bytes())
}
partition_export!("map:q3_tag", q3_tag);

/// The person of a q3 value or state: `P` and three strings.
fn q3_person(v: &[u8]) -> Option<String> {
    let field = |n| std::str::from_utf8(string_at(v, 1, n)?).ok();
    Some(format!("{},{},{}", field(0)?, field(1)?, field(2)?))
}

/// q3, per seller: the incremental join. The state is the seller once
/// seen (`P` …), else the auctions waiting for the seller (`A` and `u64`
/// ids: a seller's id may run ahead of the person event). Emits `name,
/// city, state, auction` for every pair completed by this batch.
#[update]
pub fn q3_join(
    seller: u64,
    values: Vec<Vec<u8>>,
    state: &mut State<Vec<u8>>,
) -> Result<Vec<((), String)>, String> {
    let bad = |what: &str| format!("q3: seller {seller}: malformed {what}");
    let mut person = None;
    let mut waiting: Vec<u64> = Vec::new();
    if let Some(s) = state.get() {
        match s.first() {
            Some(b'P') => person = Some(q3_person(s).ok_or_else(|| bad("state"))?),
            Some(b'A') => {
                let ids = s[1..].chunks_exact(8);
                if !ids.remainder().is_empty() {
                    return Err(bad("state"));
                }
                waiting.extend(ids.map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))));
            }
            _ => return Err(bad("state")),
        }
    }
    let mut out = Vec::new();
    for v in &values {
        match v.first() {
            Some(b'P') => person = Some(q3_person(v).ok_or_else(|| bad("person"))?),
            Some(b'A') if v.len() == 9 => waiting.push(u64_at(v, 1)),
            _ => return Err(bad("value")),
        }
        if let Some(p) = &person {
            out.extend(waiting.drain(..).map(|a| ((), format!("{p},{a}"))));
        }
    }
    let mut next = Vec::new();
    match &person {
        Some(_) => {
            // Keep the person as it came: the first person value.
            let p = values
                .iter()
                .find(|v| v.first() == Some(&b'P'))
                .or(state.get());
            next.extend_from_slice(p.expect("a person was seen"));
        }
        None => {
            next.push(b'A');
            for a in &waiting {
                next.extend_from_slice(&a.to_le_bytes());
            }
        }
    }
    state.set(next);
    Ok(out)
}

// ---- q5 -------------------------------------------------------------------

/// A multiplicative hash for `u64` keys (deterministic, no random state).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// q5, before the shuffle: bids counted per auction within the partition
/// → `(auction u64, count i64)`, in auction order.
pub fn q5_count(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut counts: IdMap<i64> = IdMap::default();
    // Half the bids are for the hot auction: skip the lookup for a repeat.
    let mut last = (u64::MAX, 0i64);
    each_record(body, |i, k, v| {
        if k == b"B" {
            let (auction, ..) = bid(i, v)?;
            if auction == last.0 {
                last.1 += 1;
            } else {
                if last.1 > 0 {
                    *counts.entry(last.0).or_default() += last.1;
                }
                last = (auction, 1);
            }
        }
        Ok(())
    })?;
    if last.1 > 0 {
        *counts.entry(last.0).or_default() += last.1;
    }
    let mut counts: Vec<(u64, i64)> = counts.into_iter().collect();
    counts.sort_unstable();
    let mut out = RecordBatch::with_capacity(counts.len() * 24 + 4);
    for (a, n) in counts {
        out.push(&a.to_le_bytes(), &n.to_le_bytes());
    }
    Ok(out.into_bytes())
}
partition_export!("map:q5_count", q5_count);

/// Adds two counts.
#[reduce]
pub fn sum(a: i64, b: i64) -> Result<i64, String> {
    a.checked_add(b)
        .ok_or_else(|| format!("count overflow adding {a} and {b}"))
}

/// Subtracts counts that left the window (the inverse of [`sum`]).
#[reduce]
pub fn subtract(a: i64, b: i64) -> Result<i64, String> {
    a.checked_sub(b)
        .ok_or_else(|| format!("count overflow subtracting {b} from {a}"))
}

/// Drops auctions whose count in the window fell to zero.
#[map]
pub fn nonzero(auction: u64, count: i64) -> Option<(u64, i64)> {
    (count != 0).then_some((auction, count))
}

/// `(auction, count)` → `("", count auction)`: a candidate for the max.
#[map]
pub fn q5_candidate(auction: u64, count: i64) -> ((), Vec<u8>) {
    let mut v = count.to_le_bytes().to_vec();
    v.extend_from_slice(&auction.to_le_bytes());
    ((), v)
}

/// `count` then the auctions with that count, ascending.
fn q5_parse(v: &[u8]) -> Result<(i64, Vec<u64>), String> {
    if v.len() < 16 || !v.len().is_multiple_of(8) {
        return Err(format!(
            "q5: a candidate is an i64 count and u64 auctions, not {} bytes",
            v.len()
        ));
    }
    let ids = v[8..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
    Ok((u64_at(v, 0) as i64, ids.collect()))
}

/// Keeps the larger count; on a tie, every auction with it.
#[reduce]
pub fn q5_max(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
    let ((ca, mut ia), (cb, ib)) = (q5_parse(&a)?, q5_parse(&b)?);
    Ok(match ca.cmp(&cb) {
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Equal => {
            ia.extend(ib);
            ia.sort_unstable();
            ia.dedup();
            let mut v = ca.to_le_bytes().to_vec();
            for id in ia {
                v.extend_from_slice(&id.to_le_bytes());
            }
            v
        }
    })
}

/// The hot items: `(auction, count)` as text for every auction with the
/// most bids in the window.
#[map]
pub fn q5_format(v: Vec<u8>) -> Result<Vec<(String, String)>, String> {
    let (count, ids) = q5_parse(&v)?;
    Ok(ids
        .into_iter()
        .map(|a| (a.to_string(), count.to_string()))
        .collect())
}

// ---- q7 -------------------------------------------------------------------

/// One bid in q7's intermediate values: auction, bidder, price, time.
const Q7_ENTRY: usize = 32;

/// q7, before the shuffle: the partition's highest bids (all those with
/// the highest price) as one record: 32-byte entries `auction, bidder,
/// price, date_time`.
pub fn q7_max(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut best: Option<u64> = None;
    let mut entries = Vec::new();
    each_record(body, |i, k, v| {
        if k == b"B" {
            let (_, _, price, _) = bid(i, v)?;
            if best.is_none_or(|b| price >= b) {
                if best != Some(price) {
                    entries.clear();
                    best = Some(price);
                }
                entries.extend_from_slice(&v[8..32]);
                entries.extend_from_slice(&v[0..8]);
            }
        }
        Ok(())
    })?;
    let mut out = RecordBatch::new();
    if best.is_some() {
        out.push(b"", &entries);
    }
    Ok(out.into_bytes())
}
partition_export!("map:q7_max", q7_max);

fn q7_check(v: &[u8]) -> Result<(), String> {
    if v.is_empty() || !v.len().is_multiple_of(Q7_ENTRY) {
        return Err(format!(
            "q7: expected 32-byte bid entries, found {} bytes",
            v.len()
        ));
    }
    Ok(())
}

/// Keeps the bids with the higher price; on a tie, all of them, ordered by
/// time, auction and bidder.
#[reduce]
pub fn q7_merge(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
    q7_check(&a)?;
    q7_check(&b)?;
    Ok(match u64_at(&a, 16).cmp(&u64_at(&b, 16)) {
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Equal => {
            let mut all: Vec<&[u8]> = a.chunks(Q7_ENTRY).chain(b.chunks(Q7_ENTRY)).collect();
            all.sort_by_key(|e| (u64_at(e, 24) as i64, u64_at(e, 0), u64_at(e, 8)));
            all.concat()
        }
    })
}

/// The highest bids of the window as `auction,bidder,price,date_time`.
#[map]
pub fn q7_format(v: Vec<u8>) -> Result<Vec<((), String)>, String> {
    q7_check(&v)?;
    Ok(v.chunks(Q7_ENTRY)
        .map(|e| {
            let t = u64_at(e, 24) as i64;
            (
                (),
                format!("{},{},{},{t}", u64_at(e, 0), u64_at(e, 8), u64_at(e, 16)),
            )
        })
        .collect())
}

// ---- q8 -------------------------------------------------------------------

/// q8 flags: the person joined, the person opened an auction.
const Q8_PERSON: u8 = 1;
const Q8_SELLER: u8 = 2;

/// q8, before the shuffle: per person id of the partition (new people and
/// sellers), one record `(id u64, flags u8 + name)`, in id order.
pub fn q8_tag(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut seen: BTreeMap<u64, (u8, &[u8])> = BTreeMap::new();
    each_record(body, |i, k, v| {
        match k {
            b"P" => {
                let name =
                    string_at(v, PERSON_FIXED, 0).ok_or_else(|| malformed(i, "person", v))?;
                let e = seen.entry(u64_at(v, 8)).or_insert((0, &[]));
                e.0 |= Q8_PERSON;
                e.1 = name;
            }
            b"A" => {
                if v.len() < AUCTION_FIXED {
                    return Err(malformed(i, "auction", v));
                }
                seen.entry(u64_at(v, 16)).or_insert((0, &[])).0 |= Q8_SELLER;
            }
            _ => {}
        }
        Ok(())
    })?;
    let mut out = RecordBatch::new();
    for (id, (flags, name)) in seen {
        out.push_encoded(
            |b| b.extend_from_slice(&id.to_le_bytes()),
            |b| {
                b.push(flags);
                b.extend_from_slice(name);
            },
        );
    }
    Ok(out.into_bytes())
}
partition_export!("map:q8_tag", q8_tag);

/// Merges what a window knows of a person id: the flags, and the name once
/// the person is known.
#[reduce]
pub fn q8_merge(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
    let (Some(&fa), Some(&fb)) = (a.first(), b.first()) else {
        return Err("q8: an empty value".into());
    };
    let mut out = if fa & Q8_PERSON != 0 { a } else { b };
    out[0] = fa | fb;
    Ok(out)
}

/// People who joined and opened an auction in the same window: `id,name`.
#[map]
pub fn q8_emit(id: u64, v: Vec<u8>) -> Result<Option<((), String)>, String> {
    let Some(&flags) = v.first() else {
        return Err(format!("q8: person {id}: an empty value"));
    };
    if flags != Q8_PERSON | Q8_SELLER {
        return Ok(None);
    }
    let name =
        std::str::from_utf8(&v[1..]).map_err(|_| format!("q8: person {id}: name is not UTF-8"))?;
    Ok(Some(((), format!("{id},{name}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid_value(t: i64, auction: u64, bidder: u64, price: u64) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [t as u64, auction, bidder, price] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(b"xyz");
        v
    }

    fn batch(records: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
        let mut b = RecordBatch::new();
        for (k, v) in records {
            b.push(k, v);
        }
        b.into_bytes()
    }

    fn records(bytes: Vec<u8>) -> Vec<(Vec<u8>, Vec<u8>)> {
        RecordBatch::from_bytes(bytes)
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    #[test]
    fn currency_and_selection() {
        let body = batch(&[
            (b"B", bid_value(5, 246, 7, 1000)),
            (b"A", vec![0; 60]),
            (b"B", bid_value(6, 247, 7, 1999)),
        ]);
        let out = records(currency(&body).unwrap());
        assert_eq!(out.len(), 2);
        assert_eq!(u64_at(&out[0].1, 24), 908);
        assert_eq!(u64_at(&out[1].1, 24), 1815); // 1999 × 0.908 = 1815.092
        assert_eq!(out[0].1[32..], bid_value(5, 246, 7, 1000)[32..]);
        let out = records(q2_select(&body).unwrap());
        assert_eq!(out, vec![(b"246".to_vec(), b"1000".to_vec())]);
        assert!(currency(&batch(&[(b"B", vec![1, 2, 3])]))
            .unwrap_err()
            .contains("malformed bid"));
    }

    #[test]
    fn q5_counts_and_max() {
        let body = batch(&[
            (b"B", bid_value(1, 9, 1, 1)),
            (b"B", bid_value(1, 9, 1, 1)),
            (b"B", bid_value(1, 3, 1, 1)),
            (b"B", bid_value(1, 9, 1, 1)),
        ]);
        let out = records(q5_count(&body).unwrap());
        assert_eq!(
            out,
            vec![
                (3u64.to_le_bytes().to_vec(), 1i64.to_le_bytes().to_vec()),
                (9u64.to_le_bytes().to_vec(), 3i64.to_le_bytes().to_vec())
            ]
        );
        let c = |n: i64, a: u64| q5_candidate(a, n).1;
        let m = q5_max(q5_max(c(3, 9), c(3, 4)).unwrap(), c(2, 1)).unwrap();
        assert_eq!(
            q5_format(m).unwrap(),
            vec![("4".into(), "3".into()), ("9".into(), "3".into())]
        );
    }

    #[test]
    fn q7_keeps_ties() {
        let body = batch(&[
            (b"B", bid_value(1, 1, 1, 50)),
            (b"B", bid_value(2, 2, 2, 70)),
            (b"B", bid_value(3, 3, 3, 70)),
        ]);
        let a = records(q7_max(&body).unwrap()).remove(0).1;
        let b = records(q7_max(&batch(&[(b"B", bid_value(0, 4, 4, 70))])).unwrap())
            .remove(0)
            .1;
        let lines: Vec<String> = q7_format(q7_merge(a, b).unwrap())
            .unwrap()
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(lines, ["4,4,70,0", "2,2,70,2", "3,3,70,3"]);
    }

    #[test]
    fn q3_join_waits_for_the_seller() {
        let person = {
            let mut v = vec![b'P'];
            for s in ["Kate Smith", "Boise", "ID"] {
                v.extend_from_slice(&(s.len() as u32).to_le_bytes());
                v.extend_from_slice(s.as_bytes());
            }
            v
        };
        let auction = |id: u64| {
            let mut v = vec![b'A'];
            v.extend_from_slice(&id.to_le_bytes());
            v
        };
        let mut state = State::new(None, false);
        assert!(q3_join(7, vec![auction(1)], &mut state).unwrap().is_empty());
        let out = q3_join(7, vec![auction(2), person.clone(), auction(3)], &mut state).unwrap();
        let lines: Vec<&str> = out.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(
            lines,
            [
                "Kate Smith,Boise,ID,1",
                "Kate Smith,Boise,ID,2",
                "Kate Smith,Boise,ID,3"
            ]
        );
        assert_eq!(state.get(), Some(&person));
        let out = q3_join(7, vec![auction(4)], &mut state).unwrap();
        assert_eq!(out[0].1, "Kate Smith,Boise,ID,4");
    }

    #[test]
    fn q8_merges_flags() {
        let mut person = 0u64.to_le_bytes().to_vec();
        person.extend_from_slice(&42u64.to_le_bytes());
        person.extend_from_slice(&3u32.to_le_bytes());
        person.extend_from_slice(b"Ann");
        let mut auction = vec![0u8; AUCTION_FIXED];
        auction[16..24].copy_from_slice(&42u64.to_le_bytes());
        let a = records(q8_tag(&batch(&[(b"A", auction)])).unwrap())
            .remove(0)
            .1;
        let p = records(q8_tag(&batch(&[(b"P", person)])).unwrap())
            .remove(0)
            .1;
        let merged = q8_merge(a.clone(), p).unwrap();
        assert_eq!(q8_emit(42, merged).unwrap().unwrap().1, "42,Ann");
        assert_eq!(q8_emit(42, a).unwrap(), None);
    }
}
