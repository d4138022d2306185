//! The NEXMark event stream: people, auctions and bids of an online
//! auction site, as the standard NEXMark generator (Apache Beam's and
//! Flink's `GeneratorConfig`) makes them, with its default configuration.
//!
//! Event `i` is a pure function of `(seed, i, rate)`: its kind follows from
//! `i mod 50` (1 person, then 3 auctions, then 46 bids: the standard
//! proportion 1:3:46), its ids from `i` alone (as in the standard
//! generator), and its random fields from a SplitMix64 stream seeded with
//! `(seed, i)`. Its event time is `i × 1000 / rate` ms (the standard
//! generator's `baseTime + eventNumber × interEventDelay` with base time
//! 0), so at a fixed rate the events of the batch at time `t` have event
//! times in `[t − interval, t)`: windows over batch times are windows over
//! event times.
//!
//! The distributions are the standard generator's (hot auctions, sellers
//! and bidders, active people, in-flight auctions, log-uniform prices,
//! average sizes); the bytes are not Beam's, whose `java.util.Random` this
//! does not imitate. The encoding of an event as a record is in
//! `docs/nexmark.md`; [`Event::encode`] writes it and [`Event::decode`]
//! reads it back.

use std::sync::OnceLock;

/// Person events per [`PROPORTION_DENOMINATOR`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auction events per [`PROPORTION_DENOMINATOR`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bid events per [`PROPORTION_DENOMINATOR`] events.
pub const BID_PROPORTION: u64 = 46;
/// Events per round of one person, three auctions and 46 bids.
pub const PROPORTION_DENOMINATOR: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// Id of the first person.
pub const FIRST_PERSON_ID: u64 = 1000;
/// Id of the first auction.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// Id of the first category (categories are `10..15`).
pub const FIRST_CATEGORY_ID: u64 = 10;
/// Categories.
pub const NUM_CATEGORIES: u64 = 5;
/// One in `HOT_AUCTION_RATIO` bids is for a random in-flight auction, the
/// others for the current hot auction (the standard default, 2).
pub const HOT_AUCTION_RATIO: u64 = 2;
/// One in `HOT_SELLERS_RATIO` auctions has a random active seller (4).
pub const HOT_SELLERS_RATIO: u64 = 4;
/// One in `HOT_BIDDERS_RATIO` bids has a random active bidder (4).
pub const HOT_BIDDERS_RATIO: u64 = 4;
/// People a random seller or bidder is drawn from (1000).
pub const NUM_ACTIVE_PEOPLE: u64 = 1000;
/// Auctions a random bid is drawn from (100).
pub const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
/// Average encoded size of a person, an auction and a bid in bytes (200,
/// 500, 100) as encoded (`docs/nexmark.md`), reached with the `extra` field.
pub const AVG_PERSON_BYTES: usize = 200;
/// See [`AVG_PERSON_BYTES`].
pub const AVG_AUCTION_BYTES: usize = 500;
/// See [`AVG_PERSON_BYTES`].
pub const AVG_BID_BYTES: usize = 100;
/// The hot auction, seller and bidder are the first of each block of 100
/// (the bidder the second, so hot bidders and sellers differ).
const HOT_BLOCK: u64 = 100;
/// Ids ahead of the last one a random person or auction may take.
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;

const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// Record key of a person, an auction and a bid.
pub const PERSON_KEY: &[u8] = b"P";
/// See [`PERSON_KEY`].
pub const AUCTION_KEY: &[u8] = b"A";
/// See [`PERSON_KEY`].
pub const BID_KEY: &[u8] = b"B";

/// A new person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub date_time: i64,
    pub id: u64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: String,
    pub state: String,
    pub extra: String,
}

/// A new auction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auction {
    pub date_time: i64,
    pub id: u64,
    pub seller: u64,
    pub category: u64,
    pub initial_bid: u64,
    pub reserve: u64,
    pub expires: i64,
    pub item_name: String,
    pub description: String,
    pub extra: String,
}

/// A bid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bid {
    pub date_time: i64,
    pub auction: u64,
    pub bidder: u64,
    pub price: u64,
    pub extra: String,
}

/// One NEXMark event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

/// Why bytes are not an encoded event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a NEXMark event (key {key:?}, {len} value bytes): {reason}")]
pub struct DecodeError {
    key: String,
    len: usize,
    reason: &'static str,
}

impl Event {
    /// The event's time, ms.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The record key: [`PERSON_KEY`], [`AUCTION_KEY`] or [`BID_KEY`].
    pub fn key(&self) -> &'static [u8] {
        match self {
            Event::Person(_) => Kind::Person,
            Event::Auction(_) => Kind::Auction,
            Event::Bid(_) => Kind::Bid,
        }
        .key()
    }

    /// Appends the record value (`docs/nexmark.md`) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let u = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        let s = |out: &mut Vec<u8>, v: &str| {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        };
        out.extend_from_slice(&self.date_time().to_le_bytes());
        match self {
            Event::Person(p) => {
                u(out, p.id);
                for f in [
                    &p.name,
                    &p.email_address,
                    &p.credit_card,
                    &p.city,
                    &p.state,
                    &p.extra,
                ] {
                    s(out, f);
                }
            }
            Event::Auction(a) => {
                for v in [a.id, a.seller, a.category, a.initial_bid, a.reserve] {
                    u(out, v);
                }
                out.extend_from_slice(&a.expires.to_le_bytes());
                for f in [&a.item_name, &a.description, &a.extra] {
                    s(out, f);
                }
            }
            Event::Bid(b) => {
                for v in [b.auction, b.bidder, b.price] {
                    u(out, v);
                }
                s(out, &b.extra);
            }
        }
    }

    /// Reads a record written by [`Event::encode`].
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Event, DecodeError> {
        let bad = |reason| DecodeError {
            key: String::from_utf8_lossy(key).into_owned(),
            len: value.len(),
            reason,
        };
        let mut r = Fields { rest: value };
        let date_time = r.u64().ok_or_else(|| bad("no event time"))? as i64;
        let event = match key {
            PERSON_KEY => {
                let id = r.u64().ok_or_else(|| bad("person: no id"))?;
                let mut f = || {
                    r.string()
                        .ok_or_else(|| bad("person: a string is cut short"))
                };
                Event::Person(Person {
                    date_time,
                    id,
                    name: f()?,
                    email_address: f()?,
                    credit_card: f()?,
                    city: f()?,
                    state: f()?,
                    extra: f()?,
                })
            }
            AUCTION_KEY => {
                let mut n = [0u64; 6];
                for v in &mut n {
                    *v = r.u64().ok_or_else(|| bad("auction: fields cut short"))?;
                }
                let mut f = || {
                    r.string()
                        .ok_or_else(|| bad("auction: a string is cut short"))
                };
                Event::Auction(Auction {
                    date_time,
                    id: n[0],
                    seller: n[1],
                    category: n[2],
                    initial_bid: n[3],
                    reserve: n[4],
                    expires: n[5] as i64,
                    item_name: f()?,
                    description: f()?,
                    extra: f()?,
                })
            }
            BID_KEY => {
                let mut n = [0u64; 3];
                for v in &mut n {
                    *v = r.u64().ok_or_else(|| bad("bid: fields cut short"))?;
                }
                Event::Bid(Bid {
                    date_time,
                    auction: n[0],
                    bidder: n[1],
                    price: n[2],
                    extra: r.string().ok_or_else(|| bad("bid: extra cut short"))?,
                })
            }
            _ => return Err(bad("the key is not P, A or B")),
        };
        if !r.rest.is_empty() {
            return Err(bad("bytes after the last field"));
        }
        Ok(event)
    }
}

struct Fields<'a> {
    rest: &'a [u8],
}

impl Fields<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (v, rest) = self.rest.split_first_chunk::<8>()?;
        self.rest = rest;
        Some(u64::from_le_bytes(*v))
    }

    fn string(&mut self) -> Option<String> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let bytes = rest.get(..len)?;
        self.rest = &rest[len..];
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// What an event number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Person,
    Auction,
    Bid,
}

impl Kind {
    /// The record key of this kind of event.
    pub fn key(self) -> &'static [u8] {
        match self {
            Kind::Person => PERSON_KEY,
            Kind::Auction => AUCTION_KEY,
            Kind::Bid => BID_KEY,
        }
    }
}

/// The kind of event `i`.
pub fn kind(i: u64) -> Kind {
    match i % PROPORTION_DENOMINATOR {
        o if o < PERSON_PROPORTION => Kind::Person,
        o if o < PERSON_PROPORTION + AUCTION_PROPORTION => Kind::Auction,
        _ => Kind::Bid,
    }
}

/// The last person id (base 0) at event `i`: the new one if `i` is a person.
fn last_person(i: u64) -> u64 {
    let epoch = i / PROPORTION_DENOMINATOR;
    // An auction or bid: the last person of this round.
    let offset = match i % PROPORTION_DENOMINATOR {
        o if o < PERSON_PROPORTION => o,
        _ => PERSON_PROPORTION - 1,
    };
    epoch * PERSON_PROPORTION + offset
}

/// The last auction id (base 0) at event `i`: the new one if `i` is an
/// auction. (Before the first auction it is the first one.)
fn last_auction(i: u64) -> u64 {
    let epoch = i / PROPORTION_DENOMINATOR;
    let offset = i % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        // The last auction of the previous round.
        (epoch * AUCTION_PROPORTION).saturating_sub(1)
    } else {
        let offset = (offset - PERSON_PROPORTION).min(AUCTION_PROPORTION - 1);
        epoch * AUCTION_PROPORTION + offset
    }
}

/// The event time of event `i` at `rate` events/s, ms.
pub fn event_time_ms(i: u64, rate: u64) -> i64 {
    (u128::from(i) * 1000 / u128::from(rate.max(1))).min(i64::MAX as u128) as i64
}

/// SplitMix64 draws.
struct Draws(u64);

impl Draws {
    fn new(seed: u64, i: u64) -> Self {
        Draws(super::generator::splitmix(
            seed ^ super::generator::splitmix(i),
        ))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n ≥ 1`), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// A random active person (base 0), as the standard generator picks one.
    fn person(&mut self, i: u64) -> u64 {
        let people = last_person(i) + 1;
        let active = people.min(NUM_ACTIVE_PEOPLE);
        people - active + self.below(active + PERSON_ID_LEAD)
    }

    /// A random in-flight auction (base 0).
    fn auction(&mut self, i: u64) -> u64 {
        let max = last_auction(i);
        let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
        min + self.below(max - min + 1 + AUCTION_ID_LEAD)
    }

    /// A price in cents, log-uniform in [1 $, 1 M $]: the standard
    /// `round(10^(6u) × 100)`, with `u` on a grid of 6 million steps.
    fn price(&mut self) -> u64 {
        let (coarse, fine) = price_tables();
        let step = self.below(6_000_000) as usize;
        rounded(100.0 * coarse[step / 1000] * fine[step % 1000])
    }

    /// Lowercase letters and some spaces, 3 to `max` − 1 long, trimmed.
    fn string(&mut self, out: &mut String, max: u64) {
        let len = 3 + self.below(max - 3) as usize;
        let mut bytes = [0u8; 128];
        let bytes = &mut bytes[..len.min(128)];
        for chunk in bytes.chunks_mut(8) {
            let draw = self.next().to_le_bytes();
            for (c, b) in chunk.iter_mut().zip(draw) {
                // One in 13 is a space, as in the standard generator.
                *c = if b % 13 == 0 { b' ' } else { b'a' + b % 26 };
            }
        }
        out.push_str(std::str::from_utf8(bytes).expect("ASCII").trim());
    }

    /// Letters so that `current + extra` bytes are on average `average`
    /// (±20 %), as the standard generator's `nextExtra`.
    fn extra(&mut self, current: usize, average: usize) -> String {
        let mut s = Vec::new();
        self.extra_into(&mut s, current, average);
        String::from_utf8(s).expect("ASCII")
    }

    /// [`Draws::extra`] appended to `out` (no allocation of its own).
    fn extra_into(&mut self, out: &mut Vec<u8>, current: usize, average: usize) {
        if current > average {
            return;
        }
        let want = average - current;
        let delta = (want as f64 * 0.2).round() as usize;
        let len = want - delta
            + if delta == 0 {
                0
            } else {
                self.below(2 * delta as u64) as usize
            };
        // Eight letters per draw: byte x of the draw becomes letter
        // (x × 26) >> 8, computed for all eight bytes at once in 16-bit
        // lanes (x × 26 < 2^16, so lanes never carry into each other).
        // Written straight after the reserve (no zeroing first).
        const LANES: u64 = 0x00ff_00ff_00ff_00ff;
        let start = out.len();
        out.reserve(len.next_multiple_of(8));
        for _ in 0..len.div_ceil(8) {
            let x = self.next();
            let even = (((x & LANES) * 26) >> 8) & LANES;
            let odd = ((((x >> 8) & LANES) * 26) >> 8) & LANES;
            let letters = (even | odd << 8) + 0x6161_6161_6161_6161;
            out.extend_from_slice(&letters.to_le_bytes());
        }
        out.truncate(start + len);
    }

    /// A bid's `(auction, bidder, price)` (base ids added).
    fn bid(&mut self, i: u64) -> (u64, u64, u64) {
        let auction = if self.below(HOT_AUCTION_RATIO) > 0 {
            (last_auction(i) / HOT_BLOCK) * HOT_BLOCK
        } else {
            self.auction(i)
        };
        let bidder = if self.below(HOT_BIDDERS_RATIO) > 0 {
            (last_person(i) / HOT_BLOCK) * HOT_BLOCK + 1
        } else {
            self.person(i)
        };
        (
            auction + FIRST_AUCTION_ID,
            bidder + FIRST_PERSON_ID,
            self.price(),
        )
    }
}

/// `x.round() as u64` for the prices' `x` in [100, 10^8]: there `x + 0.5`
/// is exact (0.5 is a multiple of the unit in the last place of `x`, and
/// the sum stays far below 2^53), so truncating it rounds half away from
/// zero, as `round` does, without a libm call.
#[inline]
fn rounded(x: f64) -> u64 {
    (x + 0.5) as u64
}

/// `10^(k/1000)` for `k` in `0..6000` and `10^(j/10^6)` for `j` in
/// `0..1000`, by repeated multiplication (IEEE products: the same bits on
/// every machine, unlike a libm `powf`).
fn price_tables() -> &'static (Vec<f64>, Vec<f64>) {
    static TABLES: OnceLock<(Vec<f64>, Vec<f64>)> = OnceLock::new();
    TABLES.get_or_init(|| {
        let powers = |step: f64| {
            let mut x = 1.0;
            (0..1000)
                .map(|_| {
                    let v = x;
                    x *= step;
                    v
                })
                .collect::<Vec<f64>>()
        };
        let per_mille = powers(1.002_305_238_077_899_6); // 10^(1/1000)
        let coarse = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5]
            .iter()
            .flat_map(|d| per_mille.iter().map(move |x| d * x))
            .collect();
        (coarse, powers(1.000_002_302_587_744)) // 10^(1/10^6)
    })
}

/// Event `i` of the stream with `seed` at `rate` events/s.
pub fn event(seed: u64, i: u64, rate: u64) -> Event {
    let mut d = Draws::new(seed, i);
    let date_time = event_time_ms(i, rate);
    match kind(i) {
        Kind::Person => {
            let mut name = String::from(FIRST_NAMES[d.below(11) as usize]);
            name.push(' ');
            name.push_str(LAST_NAMES[d.below(9) as usize]);
            let mut email = String::new();
            d.string(&mut email, 7);
            email.push('@');
            d.string(&mut email, 5);
            email.push_str(".com");
            let card = (0..4)
                .map(|_| format!("{:04}", d.below(10_000)))
                .collect::<Vec<_>>()
                .join(" ");
            let city = US_CITIES[d.below(10) as usize].to_owned();
            let state = US_STATES[d.below(6) as usize].to_owned();
            // Encoded bytes before `extra`: time, id, six length prefixes.
            let current =
                16 + 24 + name.len() + email.len() + card.len() + city.len() + state.len();
            Event::Person(Person {
                date_time,
                id: last_person(i) + FIRST_PERSON_ID,
                name,
                email_address: email,
                credit_card: card,
                city,
                state,
                extra: d.extra(current, AVG_PERSON_BYTES),
            })
        }
        Kind::Auction => {
            let seller = if d.below(HOT_SELLERS_RATIO) > 0 {
                (last_person(i) / HOT_BLOCK) * HOT_BLOCK
            } else {
                d.person(i)
            };
            let category = FIRST_CATEGORY_ID + d.below(NUM_CATEGORIES);
            let initial_bid = d.price();
            // Auctions last on average until the auction
            // NUM_IN_FLIGHT_AUCTIONS ahead is created.
            let ahead = NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
            let horizon = (event_time_ms(i + ahead, rate) - date_time).max(0) as u64;
            let expires = date_time + 1 + d.below((horizon * 2).max(1)) as i64;
            let mut item_name = String::new();
            d.string(&mut item_name, 20);
            let mut description = String::new();
            d.string(&mut description, 100);
            let reserve = initial_bid + d.price();
            // Encoded bytes before `extra`: seven numbers, three length prefixes.
            let current = 56 + 12 + item_name.len() + description.len();
            Event::Auction(Auction {
                date_time,
                id: last_auction(i) + FIRST_AUCTION_ID,
                seller: seller + FIRST_PERSON_ID,
                category,
                initial_bid,
                reserve,
                expires,
                item_name,
                description,
                extra: d.extra(current, AVG_AUCTION_BYTES),
            })
        }
        Kind::Bid => {
            let (auction, bidder, price) = d.bid(i);
            Event::Bid(Bid {
                date_time,
                auction,
                bidder,
                price,
                extra: d.extra(36, AVG_BID_BYTES),
            })
        }
    }
}

/// Appends event `i`'s record value to `out` and returns its key: the
/// bytes of `event(seed, i, rate)` encoded, with bids (46 events in 50)
/// written in place, without building the event first.
pub fn encode_event(seed: u64, i: u64, rate: u64, out: &mut Vec<u8>) -> &'static [u8] {
    if kind(i) != Kind::Bid {
        let e = event(seed, i, rate);
        e.encode(out);
        return e.key();
    }
    let mut d = Draws::new(seed, i);
    let (auction, bidder, price) = d.bid(i);
    for v in [event_time_ms(i, rate) as u64, auction, bidder, price] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    d.extra_into(out, 36, AVG_BID_BYTES);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    BID_KEY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_ids_and_encoding() {
        let events: Vec<Event> = (0..5000).map(|i| event(7, i, 1000)).collect();
        let count = |k: Kind| (0..5000).filter(|&i| kind(i) == k).count();
        assert_eq!(
            (count(Kind::Person), count(Kind::Auction), count(Kind::Bid)),
            (100, 300, 4600)
        );
        let persons: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Person(p) => Some(p.id),
                _ => None,
            })
            .collect();
        assert_eq!(persons, (1000..1100).collect::<Vec<_>>());
        let auctions: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Auction(a) => Some(a.id),
                _ => None,
            })
            .collect();
        assert_eq!(auctions, (1000..1300).collect::<Vec<_>>());
        let mut sizes = [0usize; 3];
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.date_time(), i as i64, "1000 events/s: one per ms");
            let mut v = Vec::new();
            e.encode(&mut v);
            let mut direct = vec![7];
            assert_eq!(encode_event(7, i as u64, 1000, &mut direct), e.key());
            assert_eq!(direct[1..], v[..], "event {i} encoded in place");
            assert_eq!(&Event::decode(e.key(), &v).unwrap(), e);
            sizes[match e {
                Event::Person(_) => 0,
                Event::Auction(_) => 1,
                Event::Bid(_) => 2,
            }] += v.len();
        }
        let avg = [sizes[0] / 100, sizes[1] / 300, sizes[2] / 4600];
        for (a, want) in avg
            .iter()
            .zip([AVG_PERSON_BYTES, AVG_AUCTION_BYTES, AVG_BID_BYTES])
        {
            assert!(a.abs_diff(want) < want / 10, "average sizes {avg:?}");
        }
        assert!(Event::decode(b"B", &[0; 20]).is_err());
        assert!(Event::decode(b"X", &[0; 8]).is_err());
    }

    #[test]
    fn rounded_prices_are_rounded_as_round_does() {
        let (coarse, fine) = price_tables();
        for step in 0..6_000_000 {
            let x = 100.0 * coarse[step / 1000] * fine[step % 1000];
            assert_eq!(rounded(x), x.round() as u64, "step {step}: {x}");
        }
    }

    #[test]
    fn deterministic_and_seeded() {
        for i in [0, 1, 4, 49, 50, 123_456_789] {
            assert_eq!(event(3, i, 500), event(3, i, 500));
        }
        assert_ne!(event(3, 5, 500), event(4, 5, 500));
    }

    #[test]
    fn hot_auctions_and_prices() {
        let bids: Vec<Bid> = (0..50_000)
            .filter_map(|i| match event(1, i, 10_000) {
                Event::Bid(b) => Some(b),
                _ => None,
            })
            .collect();
        let hot = bids.iter().filter(|b| b.auction % 100 == 0).count();
        // Half the bids are for the hot auction, and some random ones are too.
        assert!(hot * 2 > bids.len() && hot * 10 < bids.len() * 6, "{hot}");
        assert!(bids.iter().all(|b| (100..=100_000_000).contains(&b.price)));
        let cheap = bids.iter().filter(|b| b.price < 10_000).count();
        // Log-uniform from 1 $ to 1 M $: a third under 100 $.
        assert!(
            cheap * 4 > bids.len() && cheap * 5 < bids.len() * 2,
            "{cheap}"
        );
        // Every random auction is in flight (or a little ahead).
        assert!(bids.iter().all(|b| b.auction >= FIRST_AUCTION_ID));
    }
}
