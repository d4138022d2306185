//! A deterministic generator: the embedded default source.
//!
//! Record `i` depends only on the seed and `i`, and batch `k` holds records
//! `[k·n, (k+1)·n)` with `n = rate × batch interval`, so a run is
//! reproducible and a restart can resume from a logged position.

use weir_abi::RecordBatch;

use super::{Source, MAX_BLOCK_RECORDS};
use super::{SourceInput, SourcePosition};
use crate::checkpoint::{Recovery, ReplayError};
use crate::error::EngineError;

/// What the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorKind {
    /// Unkeyed lines of words drawn from a Zipf-distributed vocabulary.
    #[default]
    Text,
    /// Keyed records: key `key-N` (Zipf), value an `i64` in 0..1000.
    KeyValue,
    /// Lines like short posts: words, and every fourth word a `#hashtag`
    /// drawn from the same Zipf vocabulary.
    Tweets,
    /// The NEXMark auction events (people, auctions, bids in the
    /// proportion 1:3:46), encoded as in `docs/nexmark.md`; the event time
    /// of record `i` is `i × 1000 / rate` ms. See [`super::nexmark`].
    Nexmark,
}

/// Generator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// What to generate.
    pub kind: GeneratorKind,
    /// Records per second of batch time.
    pub rate: u64,
    /// Seed.
    pub seed: u64,
    /// Words per line (text).
    pub words_per_line: usize,
    /// Distinct words or keys.
    pub vocabulary: usize,
    /// Zipf exponent.
    pub zipf_s: f64,
    /// Records per block (derived from the block interval).
    pub block_records: usize,
    /// Records per batch (derived from rate and batch interval).
    pub batch_records: u64,
    /// Stop after this many records in total.
    pub limit: Option<u64>,
}

/// SplitMix64: a tiny, well-known mixing function; enough for synthetic data.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The generator source.
#[derive(Debug)]
pub struct GeneratorSource {
    config: GeneratorConfig,
    /// Index of the next record.
    position: u64,
    /// The words one after the other, and [`WORD_COPY`] bytes of padding.
    arena: Vec<u8>,
    /// Each word's place in the arena: (start, length).
    spans: Vec<(usize, usize)>,
    /// Cumulative Zipf weights, scaled to u64.
    cdf: Vec<u64>,
    /// For each of the 2^16 ranges of the top 16 bits of a draw, the first
    /// CDF index it can map to: a draw is looked up in a short slice
    /// instead of the whole table (same result as a full binary search).
    buckets: Vec<u32>,
    /// The job's input partitions, when known: each partition's blocks are
    /// generated straight into one buffer (see [`Self::with_partitions`]).
    partitions: Option<usize>,
}

const BUCKET_BITS: u32 = 16;

/// Bytes copied at once for a word (see [`GeneratorSource::put_word`]).
const WORD_COPY: usize = 16;

impl GeneratorSource {
    /// A generator starting at record 0.
    pub fn new(config: GeneratorConfig) -> Self {
        // The NEXMark events use no vocabulary.
        let v = if config.kind == GeneratorKind::Nexmark {
            1
        } else {
            config.vocabulary.max(1)
        };
        let weights: Vec<f64> = (1..=v)
            .map(|r| 1.0 / (r as f64).powf(config.zipf_s))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf: Vec<u64> = weights
            .iter()
            .map(|w| {
                acc += w / total;
                (acc.min(1.0) * u64::MAX as f64) as u64
            })
            .collect();
        let mut arena = Vec::new();
        let spans = (0..v)
            .map(|n| {
                let w = word(n);
                arena.extend_from_slice(w.as_bytes());
                (arena.len() - w.len(), w.len())
            })
            .collect();
        arena.resize(arena.len() + WORD_COPY, 0);
        let buckets = (0..=(1u64 << BUCKET_BITS))
            .map(|b| {
                // The smallest draw of bucket b (the end sentinel: the largest).
                let lowest = if b == 1 << BUCKET_BITS {
                    u64::MAX
                } else {
                    b << (64 - BUCKET_BITS)
                };
                cdf.partition_point(|&c| c < lowest) as u32
            })
            .collect();
        GeneratorSource {
            config,
            position: 0,
            arena,
            spans,
            cdf,
            buckets,
            partitions: None,
        }
    }

    /// Makes each batch as one block per input partition of a job with
    /// `partitions` of them: block `p` is the records of every block `j`
    /// with `j mod partitions = p`, in order, which is exactly the
    /// partition [`super::blocks_to_partitions`] lays those blocks out as.
    /// A batch's partitions are the same bytes, generated in place instead
    /// of copied from blocks (a copy, and a page fault on every page of
    /// fresh memory, less per batch). Only when the job's partitions are at
    /// least the generating threads (so generation stays parallel).
    pub fn with_partitions(mut self, partitions: usize) -> Self {
        self.partitions = Some(partitions.max(1));
        self
    }

    /// Index of the next record to generate.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Continues from record `position` (recovery).
    pub fn seek(&mut self, position: u64) {
        self.position = position;
    }

    fn pick(&self, x: u64) -> usize {
        let b = (x >> (64 - BUCKET_BITS)) as usize;
        let (lo, hi) = (
            self.buckets[b] as usize,
            (self.buckets[b + 1] as usize + 1).min(self.cdf.len()),
        );
        (lo + self.cdf[lo..hi].partition_point(|&c| c < x)).min(self.cdf.len() - 1)
    }

    /// Appends word `w` to `line`: words of at most [`WORD_COPY`] bytes
    /// by one fixed-size copy from the arena (then cut to the word).
    #[inline]
    fn put_word(&self, line: &mut Vec<u8>, w: usize) {
        let (start, len) = self.spans[w];
        if len <= WORD_COPY {
            line.extend_from_slice(&self.arena[start..start + WORD_COPY]);
            line.truncate(line.len() - WORD_COPY + len);
        } else {
            line.extend_from_slice(&self.arena[start..start + len]);
        }
    }

    /// Appends record `i` to `block`.
    fn record(&self, i: u64, block: &mut RecordBatch) {
        let mut state = splitmix(self.config.seed ^ splitmix(i));
        match self.config.kind {
            GeneratorKind::Text | GeneratorKind::Tweets => {
                // The line is written straight into the block.
                let tweets = self.config.kind == GeneratorKind::Tweets;
                block.push_encoded(
                    |_| {},
                    |line| {
                        for w in 0..self.config.words_per_line {
                            state = splitmix(state);
                            if w > 0 {
                                line.push(b' ');
                            }
                            if tweets && w % 4 == 3 {
                                line.push(b'#');
                            }
                            self.put_word(line, self.pick(state));
                        }
                    },
                );
            }
            GeneratorKind::KeyValue => {
                let key = format!("key-{}", self.pick(state));
                let value = (splitmix(state) % 1000) as i64;
                block.push(key.as_bytes(), &value.to_le_bytes());
            }
            GeneratorKind::Nexmark => {
                let (seed, rate) = (self.config.seed, self.config.rate);
                block.push_encoded(
                    |k| k.extend_from_slice(super::nexmark::kind(i).key()),
                    |v| {
                        super::nexmark::encode_event(seed, i, rate, v);
                    },
                );
            }
        }
    }
}

/// Pronounceable synthetic word number `n` (distinct for distinct n).
fn word(n: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fu", "go", "hi", "ju", "pe",
        "zo",
    ];
    let mut s = String::new();
    let mut x = n;
    loop {
        s.push_str(SYL[x % 16]);
        x /= 16;
        if x == 0 {
            break;
        }
    }
    s
}

impl GeneratorSource {
    /// Records `[start, end)` as blocks.
    /// Blocks are independent (record `i` depends only on the seed and
    /// `i`), so they are generated in parallel and collected in order.
    fn generate(&self, start: u64, end: u64) -> Vec<RecordBatch> {
        use rayon::prelude::*;
        let per_block = self.config.block_records.clamp(1, MAX_BLOCK_RECORDS) as u64;
        let ranges: Vec<(u64, u64)> = (start..end)
            .step_by(per_block as usize)
            .map(|i| (i, (i + per_block).min(end)))
            .collect();
        // Blocks j, j + n, j + 2n ... of a job with n partitions make one
        // block (partition j's bytes), when that keeps every thread busy.
        let n = match self.partitions {
            Some(n) if n < ranges.len() && n >= rayon::current_num_threads() => n,
            _ => ranges.len().max(1),
        };
        (0..n.min(ranges.len()))
            .into_par_iter()
            .map(|p| {
                let mine = || ranges.iter().skip(p).step_by(n);
                let records: u64 = mine().map(|(from, to)| to - from).sum();
                let mut block = RecordBatch::with_capacity(records as usize * self.per_record());
                for &(from, to) in mine() {
                    for r in from..to {
                        self.record(r, &mut block);
                    }
                }
                block
            })
            .collect()
    }

    /// Framed bytes a record takes, about.
    fn per_record(&self) -> usize {
        match self.config.kind {
            // 115 bytes on average, and the framing.
            GeneratorKind::Nexmark => 128,
            _ => self.config.words_per_line * 6 + 8,
        }
    }
}

impl Source for GeneratorSource {
    fn next_batch(
        &mut self,
        _batch_time_ms: i64,
    ) -> Result<(SourceInput, Vec<RecordBatch>), EngineError> {
        let start = self.position;
        let mut end = start + self.config.batch_records;
        if let Some(limit) = self.config.limit {
            end = end.min(limit.max(start));
        }
        self.position = end;
        Ok((
            SourceInput::Generator { start, end },
            self.generate(start, end),
        ))
    }

    fn replay(
        &mut self,
        input: &SourceInput,
        _recovery: &Recovery,
    ) -> Result<Vec<RecordBatch>, ReplayError> {
        let SourceInput::Generator { start, end } = input else {
            return Err(ReplayError::WrongInput {
                source_kind: "generator",
                input: format!("{input:?}"),
            });
        };
        self.position = *end;
        Ok(self.generate(*start, *end))
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Generator(self.position)
    }

    fn restore(&mut self, position: &SourcePosition, _recovery: &Recovery, _index: u32) {
        if let SourcePosition::Generator(p) = position {
            self.position = *p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GeneratorConfig {
        GeneratorConfig {
            kind: GeneratorKind::Text,
            rate: 100,
            seed: 7,
            words_per_line: 5,
            vocabulary: 50,
            zipf_s: 1.0,
            block_records: 30,
            batch_records: 100,
            limit: None,
        }
    }

    #[test]
    fn deterministic_and_resumable() {
        let mut a = GeneratorSource::new(config());
        let first = a.next_batch(0).unwrap().1;
        let second = a.next_batch(1).unwrap().1;
        assert_eq!(first.len(), 4); // 30+30+30+10
        let mut b = GeneratorSource::new(config());
        b.seek(100);
        assert_eq!(b.next_batch(1).unwrap().1, second);
        assert_eq!(
            GeneratorSource::new(config()).next_batch(0).unwrap().1,
            first
        );
    }

    #[test]
    fn blocks_made_per_partition_are_the_partitions_of_plain_blocks() {
        for kind in [GeneratorKind::Text, GeneratorKind::Nexmark] {
            for partitions in [1, 2, 3, 4, 7] {
                let config = GeneratorConfig {
                    kind,
                    batch_records: 1000,
                    ..config()
                };
                let plain = GeneratorSource::new(config.clone()).generate(100, 1100);
                assert_eq!(plain.len(), 34);
                let merged = GeneratorSource::new(config)
                    .with_partitions(partitions)
                    .generate(100, 1100);
                if partitions >= rayon::current_num_threads() {
                    assert_eq!(merged.len(), partitions);
                }
                assert_eq!(
                    super::super::blocks_to_partitions(merged, partitions),
                    super::super::blocks_to_partitions(plain, partitions),
                    "{kind:?}, {partitions} partitions"
                );
            }
        }
    }

    #[test]
    fn zipf_favours_low_ranks_and_words_are_distinct() {
        let g = GeneratorSource::new(GeneratorConfig {
            vocabulary: 10_000,
            ..config()
        });
        let mut hist = vec![0u32; 10_000];
        for i in 0..20_000u64 {
            hist[g.pick(splitmix(i))] += 1;
        }
        assert!(hist[0] > hist[100] && hist[0] > 1000);
        let words: std::collections::HashSet<String> = (0..10_000).map(word).collect();
        assert_eq!(words.len(), 10_000);
    }

    #[test]
    fn bucketed_pick_equals_full_search() {
        for vocabulary in [1, 7, 1000, 100_000] {
            let g = GeneratorSource::new(GeneratorConfig {
                vocabulary,
                ..config()
            });
            let full = |x: u64| g.cdf.partition_point(|&c| c < x).min(g.cdf.len() - 1);
            for i in 0..20_000u64 {
                let x = splitmix(i ^ vocabulary as u64);
                assert_eq!(g.pick(x), full(x));
            }
            for x in [0, 1, u64::MAX, u64::MAX - 1, 1 << 48, (1 << 48) - 1] {
                assert_eq!(g.pick(x), full(x));
            }
        }
    }

    #[test]
    fn limit_stops_generation() {
        let mut g = GeneratorSource::new(GeneratorConfig {
            limit: Some(150),
            ..config()
        });
        let n: usize = g
            .next_batch(0)
            .unwrap()
            .1
            .iter()
            .map(RecordBatch::len)
            .sum();
        let m: usize = g
            .next_batch(1)
            .unwrap()
            .1
            .iter()
            .map(RecordBatch::len)
            .sum();
        let z: usize = g
            .next_batch(2)
            .unwrap()
            .1
            .iter()
            .map(RecordBatch::len)
            .sum();
        assert_eq!((n, m, z), (100, 50, 0));
    }
}
