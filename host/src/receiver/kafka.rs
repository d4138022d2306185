//! Kafka topics, read the way Spark's direct Kafka stream reads them.
//!
//! There is no receiver: when a batch is cut, the source asks the broker
//! for the end of every partition of its topics and decides the batch's
//! offset ranges `{topic-partition: [from, until)}`, capped by the rate
//! limit. The ranges are what the batch log keeps (not the records), and a
//! replay reads exactly those ranges again, so nothing is lost, nothing is
//! read twice, and no write-ahead log of the data is needed.
//!
//! - Each topic-partition is one block of the batch, in (topic, partition)
//!   order, so Kafka partition `j` goes to weir partition `j mod n`: with
//!   `partitions` equal to the topic's partition count, one to one, and
//!   per-partition order is kept.
//! - The consumer reads with `isolation.level = read_committed`, so records
//!   of aborted transactions never enter a batch.
//! - Where to begin, when no checkpoint says: the offset given in
//!   `starting_offsets`, else the group's committed offset, else the
//!   earliest or latest offset. The checkpoint is the source of truth on
//!   restart; offsets are committed to the group after each batch's outputs
//!   are written, for tools that show a group's lag.
//! - When the broker cannot be reached, the batch gets no records from the
//!   source (its ranges are empty), the source logs it and tries again
//!   after a doubling wait; it continues where it was once the broker is
//!   back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use weir_abi::RecordBatch;

use super::rate::{PidConfig, PidRateEstimator};
use super::{BatchDone, Source, SourceInput, SourcePosition};
use crate::checkpoint::{Recovery, ReplayError};
use crate::error::EngineError;
use crate::kafka::{Backoff, KafkaEndpoint, Reporter};

/// One topic-partition's part of a batch: offsets `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub from: i64,
    /// One past the last offset.
    pub until: i64,
}

/// Where a new source begins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartingOffsets {
    /// Offsets for some topic-partitions.
    pub given: BTreeMap<(String, i32), i64>,
    /// Without a given or committed offset: the end (true) or the start.
    pub latest: bool,
}

/// A Kafka source as a pipeline or the library describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSourceSpec {
    /// Brokers and client properties.
    pub endpoint: KafkaEndpoint,
    /// Topics read.
    pub topics: Vec<String>,
    /// Consumer group: offsets are committed there.
    pub group: String,
    /// Where to begin without a checkpoint.
    pub starting_offsets: StartingOffsets,
    /// At most this many records per second per partition.
    pub max_rate_per_partition: Option<u64>,
    /// Prefix each value with the record's metadata (see `docs/abi.md`).
    pub metadata: bool,
    /// At most this many records per batch, over all partitions (`weir
    /// serve` sets its tenant limit here).
    pub max_records_per_batch: Option<u64>,
}

type Tp = (String, i32);

/// Records per partition the source may hold past the current batch
/// before it pauses fetching that partition.
const TAKE_AHEAD: usize = 20_000;

/// A record read past its batch's range, kept for the next batch.
struct Stashed {
    offset: i64,
    key: Vec<u8>,
    /// With the metadata prefix, when the source adds it.
    value: Vec<u8>,
}

/// How long a read waits while the broker delivers nothing before the
/// batch takes what arrived (live) or tries again (replay).
const STALL: Duration = Duration::from_secs(30);

/// How long a cut waits for the broker to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The Kafka source.
pub struct KafkaSource {
    name: Arc<str>,
    spec: KafkaSourceSpec,
    interval_ms: i64,
    /// Reads the records: assigned to the batch's ranges.
    consumer: BaseConsumer<Reporter>,
    /// Asks for metadata, offsets and commits. Never assigned: an assigned
    /// consumer keeps a fetch waiting at the broker (up to
    /// `fetch.wait.max.ms`), and the broker answers a connection's requests
    /// in order, so every question would wait behind it.
    meta: BaseConsumer<Reporter>,
    /// Next offset of every topic-partition whose start is known.
    next: BTreeMap<Tp, i64>,
    /// The consumer's assignment and what it (with `stash`) delivers next,
    /// per topic-partition; `None` when it must be assigned again.
    cursor: Option<BTreeMap<Tp, i64>>,
    /// Records read past the last batch, per topic-partition, in order.
    stash: BTreeMap<Tp, VecDeque<Stashed>>,
    /// Partitions not fetched while their stash is full.
    paused: BTreeSet<Tp>,
    estimator: Option<PidRateEstimator>,
    /// While the broker is away: when to try again.
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Ranges of the batches not yet committed to the group.
    to_commit: BTreeMap<Tp, i64>,
    /// Scaled out: the partitions this instance owns (of the one topic),
    /// which the group's member commits for; `None`: every partition.
    owned: Option<BTreeSet<i32>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("name", &self.name)
            .field("topics", &self.spec.topics)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// A read that could not finish.
enum ReadError {
    /// The broker did not deliver in time; what was read is kept.
    Incomplete,
    /// Records are gone or the request is wrong: no retry helps.
    Fatal(String),
}

impl KafkaSource {
    /// A source reading `spec`; `backpressure` adapts its rate to the job.
    /// Only the client is created here: the broker is first asked when the
    /// first batch is cut.
    pub fn new(
        name: Arc<str>,
        spec: KafkaSourceSpec,
        interval_ms: i64,
        backpressure: Option<PidConfig>,
    ) -> Result<Self, EngineError> {
        let what = format!("kafka source `{name}`");
        let mut config = spec.endpoint.client_config(&[
            ("group.id", &spec.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "error"),
        ]);
        if !spec
            .endpoint
            .properties
            .contains_key("queued.max.messages.kbytes")
        {
            config.set("queued.max.messages.kbytes", "16384");
        }
        let consumer = config
            .create_with_context(Reporter::new(what.clone()))
            .map_err(|e| kafka_error(&what, format!("cannot create the client: {e}")))?;
        let meta = config
            .create_with_context(Reporter::new(what.clone()))
            .map_err(|e| kafka_error(&what, format!("cannot create the client: {e}")))?;
        Ok(KafkaSource {
            name,
            spec,
            interval_ms,
            consumer,
            meta,
            next: BTreeMap::new(),
            cursor: None,
            stash: BTreeMap::new(),
            paused: BTreeSet::new(),
            estimator: backpressure.map(|c| PidRateEstimator::new(c, interval_ms)),
            retry_at: None,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
            to_commit: BTreeMap::new(),
            owned: None,
        })
    }

    /// Scaled out: reads only the partitions given with
    /// [`KafkaSource::own`] (none until then).
    pub fn own_none(&mut self) {
        self.owned = Some(BTreeSet::new());
        self.next.clear();
        self.cursor = None;
    }

    /// Scaled out: reads `partition` of the topic from offset `next` on.
    pub fn own(&mut self, partition: i32, next: i64) {
        let tp = (self.spec.topics[0].clone(), partition);
        self.owned
            .get_or_insert_with(BTreeSet::new)
            .insert(partition);
        self.next.insert(tp.clone(), next);
        self.stash.remove(&tp);
        self.cursor = None;
    }

    /// Scaled out: stops reading `partition`.
    pub fn release(&mut self, partition: i32) {
        let tp = (self.spec.topics[0].clone(), partition);
        if let Some(owned) = &mut self.owned {
            owned.remove(&partition);
        }
        self.next.remove(&tp);
        self.stash.remove(&tp);
        self.paused.remove(&tp);
        self.to_commit.remove(&tp);
        self.cursor = None;
    }

    /// The topic's partition count (scaled-out jobs read one topic).
    pub fn partition_count(&self) -> Result<i32, EngineError> {
        let n = self
            .discover()
            .map_err(|e| kafka_error(&self.what(), e.unwrap_or_else(|e| e)))?
            .len();
        Ok(n as i32)
    }

    /// Where `partition` begins when no state says: the offset given in
    /// `starting_offsets`, else the earliest or latest offset. (Not the
    /// group's committed offset: a scaled-out job's position is the
    /// changelog's, with the state that goes with it.)
    pub fn start_offset(&self, partition: i32) -> Result<i64, EngineError> {
        let tp = (self.spec.topics[0].clone(), partition);
        if let Some(o) = self.spec.starting_offsets.given.get(&tp) {
            return Ok(*o);
        }
        let (low, high) = self
            .meta
            .fetch_watermarks(&tp.0, tp.1, REQUEST_TIMEOUT)
            .map_err(|e| {
                kafka_error(
                    &self.what(),
                    format!("cannot read the offsets of {}-{}: {e}", tp.0, tp.1),
                )
            })?;
        Ok(if self.spec.starting_offsets.latest {
            high
        } else {
            low
        })
    }

    fn what(&self) -> String {
        format!("kafka source `{}`", self.name)
    }

    /// How long a question to the broker may take: while the broker is
    /// known to be away, a probe waits at most half a batch interval, so
    /// the job's batches keep their pace.
    fn request_timeout(&self) -> Duration {
        if self.retry_at.is_some() {
            Duration::from_millis((self.interval_ms / 2).clamp(200, 5_000) as u64)
        } else {
            REQUEST_TIMEOUT
        }
    }

    fn brokers(&self) -> &str {
        &self.spec.endpoint.brokers
    }

    /// The partitions of every topic; a missing topic is an error.
    fn discover(&self) -> Result<Vec<Tp>, Result<String, String>> {
        let mut tps = Vec::new();
        for topic in &self.spec.topics {
            let md = self
                .meta
                .fetch_metadata(Some(topic), self.request_timeout())
                .map_err(|e| Ok(format!("cannot fetch metadata of topic `{topic}`: {e}")))?;
            let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
                return Err(Ok(format!(
                    "the broker returned no metadata for topic `{topic}`"
                )));
            };
            match t.error() {
                Some(code) => {
                    let code = RDKafkaErrorCode::from(code);
                    if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                        return Err(Err(format!(
                            "topic `{topic}` does not exist on {}",
                            self.brokers()
                        )));
                    }
                    return Err(Ok(format!("metadata of topic `{topic}`: {code}")));
                }
                None if t.partitions().is_empty() => {
                    return Err(Err(format!(
                        "topic `{topic}` has no partitions on {}",
                        self.brokers()
                    )))
                }
                None => tps.extend(t.partitions().iter().map(|p| (topic.clone(), p.id()))),
            }
        }
        tps.sort();
        Ok(tps)
    }

    /// Start offsets of partitions seen for the first time.
    fn resolve_starts(&mut self, tps: &[Tp]) -> Result<(), String> {
        let new: Vec<&Tp> = tps
            .iter()
            .filter(|tp| !self.next.contains_key(*tp))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut ask = TopicPartitionList::new();
        for (t, p) in &new {
            ask.add_partition(t, *p);
        }
        let committed = self
            .meta
            .committed_offsets(ask, self.request_timeout())
            .map_err(|e| {
                format!(
                    "cannot read the committed offsets of group `{}`: {e}",
                    self.spec.group
                )
            })?;
        for tp in new {
            let given = self.spec.starting_offsets.given.get(tp).copied();
            let from_group = committed
                .find_partition(&tp.0, tp.1)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0);
            let start = match (given, from_group) {
                (Some(o), _) => o,
                (None, Some(o)) => o,
                (None, None) => {
                    let (low, high) = self
                        .meta
                        .fetch_watermarks(&tp.0, tp.1, self.request_timeout())
                        .map_err(|e| {
                            format!("cannot read the offsets of {}-{}: {e}", tp.0, tp.1)
                        })?;
                    if self.spec.starting_offsets.latest {
                        high
                    } else {
                        low
                    }
                }
            };
            tracing::info!(source = %self.name, topic = %tp.0, partition = tp.1, offset = start, "starting offset");
            self.next.insert(tp.clone(), start);
        }
        Ok(())
    }

    /// The end of each partition (the last stable offset: records of open
    /// transactions are not readable yet).
    fn ends(&self, tps: &[Tp]) -> Result<BTreeMap<Tp, i64>, String> {
        let mut ends = BTreeMap::new();
        for (t, p) in tps {
            let (_, high) = self
                .meta
                .fetch_watermarks(t, *p, self.request_timeout())
                .map_err(|e| format!("cannot read the end offset of {t}-{p}: {e}"))?;
            ends.insert((t.clone(), *p), high);
        }
        Ok(ends)
    }

    /// Records per partition this batch may take.
    fn caps(&self, lags: &BTreeMap<Tp, i64>) -> BTreeMap<Tp, i64> {
        let secs = self.interval_ms as f64 / 1000.0;
        let fixed = self.spec.max_rate_per_partition.map(|r| r as f64);
        let estimated = self.estimator.as_ref().and_then(|e| e.rate());
        let total_lag: i64 = lags.values().sum();
        lags.iter()
            .map(|(tp, lag)| {
                let per_second = match (estimated, fixed) {
                    (Some(rate), fixed) if total_lag > 0 => {
                        let share = rate * *lag as f64 / total_lag as f64;
                        Some(fixed.map_or(share, |f| share.min(f)))
                    }
                    (_, fixed) => fixed,
                };
                let cap = per_second.map_or(i64::MAX, |r| ((r * secs) as i64).max(1));
                (tp.clone(), cap)
            })
            .collect()
    }

    /// Decides this batch's ranges, or says why the broker could not.
    fn cut(&mut self) -> Result<Vec<OffsetRange>, Result<String, String>> {
        let mut tps = self.discover()?;
        if let Some(owned) = &self.owned {
            tps.retain(|(_, p)| owned.contains(p));
        }
        self.resolve_starts(&tps).map_err(Ok)?;
        let ends = self.ends(&tps).map_err(Ok)?;
        let lags: BTreeMap<Tp, i64> = tps
            .iter()
            .map(|tp| (tp.clone(), (ends[tp] - self.next[tp]).max(0)))
            .collect();
        let caps = self.caps(&lags);
        let mut takes: Vec<i64> = tps.iter().map(|tp| lags[tp].min(caps[tp])).collect();
        if let Some(max) = self.spec.max_records_per_batch {
            let total: i64 = takes.iter().sum();
            if total > max as i64 {
                // Shared in proportion to what each partition would take.
                for t in &mut takes {
                    *t = (*t as i128 * max as i128 / total as i128) as i64;
                }
            }
        }
        Ok(tps
            .iter()
            .zip(takes)
            .map(|(tp, take)| {
                let from = self.next[tp];
                OffsetRange {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    from,
                    until: from + take,
                }
            })
            .collect())
    }

    /// Ranges that take nothing: the batch of a source whose broker is away.
    fn empty_ranges(&self) -> Vec<OffsetRange> {
        self.next
            .iter()
            .map(|((topic, partition), &at)| OffsetRange {
                topic: topic.clone(),
                partition: *partition,
                from: at,
                until: at,
            })
            .collect()
    }

    /// Sets the consumer to deliver every range from its start, unless it
    /// (with what it took ahead) continues there already.
    fn position_for(&mut self, ranges: &[OffsetRange]) -> Result<(), String> {
        let wanted: BTreeMap<Tp, i64> = ranges
            .iter()
            .map(|r| ((r.topic.clone(), r.partition), r.from))
            .collect();
        if self.cursor.as_ref() == Some(&wanted) {
            return Ok(());
        }
        self.set_paused(false, self.paused.clone());
        self.stash.clear();
        let mut tpl = TopicPartitionList::new();
        for ((t, p), from) in &wanted {
            tpl.add_partition_offset(t, *p, Offset::Offset(*from))
                .map_err(|e| format!("cannot assign {t}-{p}: {e}"))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot assign partitions: {e}"))?;
        self.cursor = Some(wanted);
        Ok(())
    }

    /// Pauses (or resumes) fetching of `tps`.
    fn set_paused(&mut self, pause: bool, tps: BTreeSet<Tp>) {
        if tps.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &tps {
            tpl.add_partition(t, *p);
        }
        let done = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match done {
            Ok(()) if pause => self.paused.extend(tps),
            Ok(()) => self.paused.retain(|tp| !tps.contains(tp)),
            Err(e) => tracing::debug!(source = %self.name, error = %e, pause, "pause/resume"),
        }
    }

    /// Reads `ranges` into one block per range (in order). Returns the
    /// blocks and, per range, where reading stopped (its `until` when
    /// complete). Gives up (`Incomplete`) when the broker delivers nothing
    /// for `stall`; a slow broker that keeps delivering is waited for, so
    /// a batch's contents do not depend on the broker's speed.
    ///
    /// The consumer keeps fetching ahead; records past a range are kept
    /// for the next batch (up to [`TAKE_AHEAD`] per partition, then the
    /// partition is paused), so consecutive batches read one continuous
    /// stream.
    fn read(
        &mut self,
        ranges: &[OffsetRange],
        stall: Duration,
    ) -> (Vec<RecordBatch>, Vec<i64>, Option<ReadError>) {
        let mut blocks: Vec<RecordBatch> = ranges.iter().map(|_| RecordBatch::new()).collect();
        let mut at: Vec<i64> = ranges.iter().map(|r| r.from).collect();
        if let Err(e) = self.position_for(ranges) {
            return (blocks, at, Some(ReadError::Fatal(e)));
        }
        let room: BTreeSet<Tp> = self
            .paused
            .iter()
            .filter(|tp| self.stash.get(*tp).map_or(0, VecDeque::len) < TAKE_AHEAD / 2)
            .cloned()
            .collect();
        self.set_paused(false, room);
        let index: BTreeMap<(&str, i32), usize> = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.topic.as_str(), r.partition), i))
            .collect();
        self.take_stashed(ranges, &mut blocks, &mut at);
        let mut open: usize = ranges
            .iter()
            .zip(&at)
            .filter(|(r, a)| **a < r.until)
            .count();
        let mut to_pause = BTreeSet::new();
        let mut progress = Instant::now();
        let mut scratch = Vec::new();
        while open > 0 {
            if progress.elapsed() >= stall {
                return (blocks, at, Some(ReadError::Incomplete));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    progress = Instant::now();
                    let Some(&i) = index.get(&(m.topic(), m.partition())) else {
                        continue;
                    };
                    let (r, offset) = (&ranges[i], m.offset());
                    if offset < at[i] {
                        continue; // delivered before
                    }
                    let payload = m.payload().unwrap_or_default();
                    // With metadata the value is built in a reused buffer;
                    // without, it is the payload as it is.
                    let value = if self.spec.metadata {
                        scratch.clear();
                        encode_metadata(&m, payload, &mut scratch);
                        &scratch[..]
                    } else {
                        payload
                    };
                    let key = m.key().unwrap_or_default();
                    if offset < r.until {
                        blocks[i].push(key, value);
                        at[i] = offset + 1;
                        if at[i] >= r.until {
                            open -= 1;
                        }
                        continue;
                    }
                    // The next batch's: keep it.
                    if at[i] < r.until {
                        at[i] = r.until;
                        open -= 1;
                    }
                    let tp = (r.topic.clone(), r.partition);
                    let q = self.stash.entry(tp.clone()).or_default();
                    q.push_back(Stashed {
                        offset,
                        key: key.to_vec(),
                        value: value.to_vec(),
                    });
                    if q.len() >= TAKE_AHEAD && !self.paused.contains(&tp) {
                        to_pause.insert(tp);
                    }
                }
                Some(Err(e)) => {
                    if let Some(fatal) = self.fatal_read_error(&e, ranges, &at) {
                        return (blocks, at, Some(ReadError::Fatal(fatal)));
                    }
                }
                None => {
                    let (advanced, completed) = self.skip_empty_offsets(ranges, &mut at);
                    if advanced {
                        progress = Instant::now();
                    }
                    open -= completed;
                }
            }
            if !to_pause.is_empty() {
                self.set_paused(true, std::mem::take(&mut to_pause));
            }
        }
        // Every range is complete: the consumer, with what it took ahead,
        // continues exactly where the next batch begins.
        self.cursor = Some(
            ranges
                .iter()
                .map(|r| ((r.topic.clone(), r.partition), r.until))
                .collect(),
        );
        (blocks, at, None)
    }

    /// Moves what was taken ahead last time into this batch's blocks.
    fn take_stashed(&mut self, ranges: &[OffsetRange], blocks: &mut [RecordBatch], at: &mut [i64]) {
        for (i, r) in ranges.iter().enumerate() {
            let Some(q) = self.stash.get_mut(&(r.topic.clone(), r.partition)) else {
                continue;
            };
            while let Some(front) = q.front() {
                if front.offset >= r.until {
                    at[i] = r.until;
                    break;
                }
                let s = q.pop_front().expect("front");
                if s.offset >= at[i] {
                    blocks[i].push(&s.key, &s.value);
                    at[i] = s.offset + 1;
                }
            }
        }
    }

    /// Offsets without records (transaction markers, records compacted
    /// away): the consumer's position moves past them though no message
    /// does. Advances `at` there; says whether any moved and how many
    /// ranges that completed.
    fn skip_empty_offsets(&self, ranges: &[OffsetRange], at: &mut [i64]) -> (bool, usize) {
        let Ok(pos) = self.consumer.position() else {
            return (false, 0);
        };
        let (mut advanced, mut completed) = (false, 0);
        for (i, r) in ranges.iter().enumerate() {
            let p = pos
                .find_partition(&r.topic, r.partition)
                .and_then(|e| e.offset().to_raw());
            if let Some(p) = p {
                if at[i] < r.until && p > at[i] {
                    advanced = true;
                    at[i] = p.min(r.until);
                    completed += usize::from(at[i] >= r.until);
                }
            }
        }
        (advanced, completed)
    }

    fn fatal_read_error(
        &mut self,
        e: &KafkaError,
        ranges: &[OffsetRange],
        at: &[i64],
    ) -> Option<String> {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                self.cursor = None;
                let open: Vec<String> = ranges
                    .iter()
                    .zip(at)
                    .filter(|(r, a)| **a < r.until)
                    .map(|(r, a)| format!("{}-{} [{a}, {})", r.topic, r.partition, r.until))
                    .collect();
                Some(format!(
                    "records of {} are no longer on the broker (deleted by retention?): {e}",
                    open.join(", ")
                ))
            }
            Some(RDKafkaErrorCode::TopicAuthorizationFailed) => Some(format!("{e}")),
            _ => {
                tracing::debug!(source = %self.name, error = %e, "consumer error; retrying");
                None
            }
        }
    }

    fn broker_away(&mut self, why: &str) {
        let wait = self.backoff.next_wait();
        self.retry_at = Some(Instant::now() + wait);
        tracing::warn!(
            source = %self.name,
            brokers = %self.brokers(),
            "kafka source `{}`: {why}; trying again in {} ms",
            self.name,
            wait.as_millis()
        );
    }
}

/// Prefixes `value` with the record's metadata (layout in `docs/abi.md`):
/// timestamp i64, partition i32, offset i64, header count u32, then per
/// header its name (u32 length, bytes) and value (u32 length or
/// `u32::MAX` for none, bytes), all little-endian; then the value.
pub fn encode_metadata(m: &impl Message, value: &[u8], out: &mut Vec<u8>) {
    let ts = m.timestamp().to_millis().unwrap_or(i64::MIN);
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&m.partition().to_le_bytes());
    out.extend_from_slice(&m.offset().to_le_bytes());
    match m.headers() {
        Some(h) => {
            out.extend_from_slice(&(h.count() as u32).to_le_bytes());
            for header in h.iter() {
                out.extend_from_slice(&(header.key.len() as u32).to_le_bytes());
                out.extend_from_slice(header.key.as_bytes());
                match header.value {
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                        out.extend_from_slice(v);
                    }
                    None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
                }
            }
        }
        None => out.extend_from_slice(&0u32.to_le_bytes()),
    }
    out.extend_from_slice(value);
}

fn kafka_error(what: &str, message: String) -> EngineError {
    EngineError::Kafka {
        what: what.into(),
        message,
    }
}

impl Source for KafkaSource {
    fn take_errors(&mut self) -> Vec<String> {
        self.consumer.context().take_errors()
    }

    fn next_batch(
        &mut self,
        batch_time_ms: i64,
    ) -> Result<(SourceInput, Vec<RecordBatch>), EngineError> {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            let ranges = self.empty_ranges();
            let blocks = ranges.iter().map(|_| RecordBatch::new()).collect();
            return Ok((SourceInput::Kafka(ranges), blocks));
        }
        let started = Instant::now();
        let ranges = match self.cut() {
            Ok(r) => r,
            Err(Err(fatal)) => return Err(kafka_error(&self.what(), fatal)),
            Err(Ok(away)) => {
                self.broker_away(&format!("{away}; the batch gets no records from it"));
                let ranges = self.empty_ranges();
                let blocks = ranges.iter().map(|_| RecordBatch::new()).collect();
                return Ok((SourceInput::Kafka(ranges), blocks));
            }
        };
        let cut_ms = started.elapsed().as_secs_f64() * 1e3;
        let (blocks, at, error) = self.read(&ranges, STALL);
        tracing::debug!(source = %self.name, cut_ms, read_ms = started.elapsed().as_secs_f64() * 1e3 - cut_ms, "kafka cut and read");
        // The batch is what was read: a range the broker did not finish
        // delivering ends where reading stopped (the rest goes into the
        // next batch).
        let ranges: Vec<OffsetRange> = ranges
            .into_iter()
            .zip(&at)
            .map(|(r, &a)| OffsetRange { until: a, ..r })
            .collect();
        match error {
            Some(ReadError::Fatal(e)) => return Err(kafka_error(&self.what(), e)),
            Some(ReadError::Incomplete) => {
                self.cursor = None;
                self.broker_away(&format!("batch {batch_time_ms} ms: the broker stopped delivering; the batch takes what arrived"));
            }
            None => {
                if self.retry_at.take().is_some() {
                    tracing::info!(source = %self.name, brokers = %self.brokers(), "kafka source `{}`: the broker is back", self.name);
                }
                self.backoff.reset();
            }
        }
        for r in &ranges {
            self.next.insert((r.topic.clone(), r.partition), r.until);
        }
        Ok((SourceInput::Kafka(ranges), blocks))
    }

    fn replay(
        &mut self,
        input: &SourceInput,
        _recovery: &Recovery,
    ) -> Result<Vec<RecordBatch>, ReplayError> {
        let SourceInput::Kafka(ranges) = input else {
            return Err(ReplayError::WrongInput {
                source_kind: "kafka",
                input: format!("{input:?}"),
            });
        };
        // The broker may be away while the job recovers: keep trying for
        // a while, saying so.
        let give_up = Instant::now() + Duration::from_secs(600);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        loop {
            let (blocks, at, error) = self.read(ranges, STALL);
            match error {
                None => {
                    for r in ranges {
                        self.next.insert((r.topic.clone(), r.partition), r.until);
                    }
                    return Ok(blocks);
                }
                Some(ReadError::Fatal(e)) => {
                    return Err(ReplayError::Kafka {
                        what: self.what(),
                        message: e,
                    })
                }
                Some(ReadError::Incomplete) if Instant::now() >= give_up => {
                    return Err(ReplayError::Kafka {
                        what: self.what(),
                        message: format!(
                            "the broker ({}) did not deliver the logged ranges within 10 minutes",
                            self.brokers()
                        ),
                    })
                }
                Some(ReadError::Incomplete) => {
                    self.cursor = None;
                    let wait = backoff.next_wait();
                    let missing: Vec<String> = ranges
                        .iter()
                        .zip(&at)
                        .filter(|(r, a)| **a < r.until)
                        .map(|(r, a)| format!("{}-{} [{a}, {})", r.topic, r.partition, r.until))
                        .collect();
                    tracing::warn!(
                        source = %self.name,
                        brokers = %self.brokers(),
                        "kafka source `{}`: cannot read logged ranges {} yet; retrying in {} ms",
                        self.name,
                        missing.join(", "),
                        wait.as_millis()
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Kafka(
            self.next
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect(),
        )
    }

    fn restore(&mut self, position: &SourcePosition, _recovery: &Recovery, _index: u32) {
        if let SourcePosition::Kafka(next) = position {
            self.next = next.iter().map(|(t, p, o)| ((t.clone(), *p), *o)).collect();
            self.cursor = None;
        }
    }

    fn as_kafka(&mut self) -> Option<&mut KafkaSource> {
        Some(self)
    }

    fn completed(&mut self, done: &BatchDone) {
        if let Some(e) = &mut self.estimator {
            if !done.replayed {
                if let Some(rate) = e.update(
                    done.finished_ms,
                    done.records,
                    done.processing_ms,
                    done.scheduling_delay_ms,
                ) {
                    tracing::debug!(source = %self.name, rate, "backpressure rate");
                }
            }
        }
        if self.owned.is_some() {
            return; // the group's member commits a scaled-out job's offsets
        }
        // The group learns how far the job has come (for lag tools); the
        // checkpoint, not the group, decides where a restart begins.
        self.to_commit
            .extend(self.next.iter().map(|(k, v)| (k.clone(), *v)));
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &self.to_commit {
            if tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err() {
                return;
            }
        }
        // Serves the answers of earlier commits (they queue up otherwise).
        let _ = self.meta.poll(Duration::ZERO);
        if tpl.count() > 0 && self.retry_at.is_none() {
            match self
                .consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Async)
            {
                Ok(()) => self.to_commit.clear(),
                Err(e) => {
                    tracing::debug!(source = %self.name, error = %e, "offset commit deferred")
                }
            }
        }
    }
}
