//! The changelog of a scaled-out job: a compacted Kafka topic with one
//! partition per partition of the input topic, where each input
//! partition's history is kept (as Kafka Streams keeps a task's state).
//!
//! Changelog partition `j` holds, for input partition `j`, three kinds of
//! record, each under its own key so compaction keeps the newest of each:
//!
//! - `claim`: an instance took the partition over (its name and the job's
//!   fingerprint);
//! - `range`: batch `seq` of the partition reads input offsets
//!   `[from, until)`, written and acknowledged before the batch's outputs;
//! - `state`: the partition's operator state and next input offset after
//!   batch `seq`, written once the batch's outputs are.
//!
//! A new owner reads the partition's tail back to its newest `state`,
//! restores it, and re-runs the logged ranges after it (its outputs are
//! idempotent), so replay stays exact whichever instance ran a batch.
//!
//! Values are `weirchg1` followed by the entry (bincode, legacy
//! configuration). Every write's offset is checked: an owner's records
//! follow each other, so a record landing elsewhere means another instance
//! wrote to the partition, and this one lost it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{KafkaEndpoint, Reporter};
use crate::checkpoint::Snapshot;

const MAGIC: &[u8; 8] = b"weirchg1";
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write may wait for the broker: the producer retries within
/// its `message.timeout.ms` (5 minutes), so a broker away for less loses
/// nothing; then the job fails, naming the changelog.
const WRITE_TIMEOUT: Duration = Duration::from_secs(310);

/// What makes two instances run the same job: its name, its pipeline (one
/// line per stream) and its modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Job name.
    pub job: String,
    /// One line per stream, as checkpoints describe a pipeline.
    pub pipeline: Vec<String>,
    /// Plugin name → module hash.
    pub modules: BTreeMap<String, String>,
}

impl Fingerprint {
    /// How `self` (this instance) differs from `group`'s, one line each.
    pub fn differences(&self, group: &Fingerprint) -> Vec<String> {
        let mut d = Vec::new();
        if self.job != group.job {
            d.push(format!(
                "the changelog holds state of job `{}`, not `{}`",
                group.job, self.job
            ));
            return d;
        }
        d.extend(crate::checkpoint::pipeline_changes(
            &group.pipeline,
            &self.pipeline,
        ));
        for (name, hash) in &self.modules {
            match group.modules.get(name) {
                Some(h) if h != hash => d.push(format!(
                    "plugin `{name}` is module {} here, {} in the group",
                    short(hash),
                    short(h)
                )),
                None => d.push(format!("plugin `{name}` is not in the group's job")),
                _ => {}
            }
        }
        for name in group.modules.keys() {
            if !self.modules.contains_key(name) {
                d.push(format!(
                    "the group's job has plugin `{name}`, this one has not"
                ));
            }
        }
        d
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Batch `seq` of a partition: which input offsets it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeEntry {
    /// The partition's batch number, from 1.
    pub seq: u64,
    /// Batch time.
    pub batch_time_ms: i64,
    /// Time slides count from.
    pub zero_ms: i64,
    /// First input offset.
    pub from: i64,
    /// One past the last.
    pub until: i64,
    /// The instance that ran it.
    pub instance: String,
}

/// A partition's state after batch `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// The partition's last batch (0: none yet).
    pub seq: u64,
    /// Its batch time.
    pub batch_time_ms: i64,
    /// Time slides count from.
    pub zero_ms: i64,
    /// Next input offset.
    pub next: i64,
    /// Every stateful node's state, by stream name.
    pub nodes: Vec<(String, Snapshot)>,
    /// The instance that wrote it.
    pub instance: String,
    /// The job that wrote it.
    pub fingerprint: Fingerprint,
}

/// One changelog record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// An instance took the partition over.
    Claim {
        /// Its name.
        instance: String,
        /// Its job.
        fingerprint: Fingerprint,
        /// The input offset it continues from (so a successor of an owner
        /// that logged nothing starts there too, not at `latest` again).
        next: i64,
        /// The claiming process (unique even when a restarted instance
        /// reuses its name).
        token: String,
    },
    /// A batch's input, logged before it runs.
    Range(RangeEntry),
    /// The state after a batch.
    State(Box<StateEntry>),
}

impl Entry {
    fn key(&self) -> &'static str {
        match self {
            Entry::Claim { .. } => "claim",
            Entry::Range(_) => "range",
            Entry::State(_) => "state",
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        bincode::serde::encode_into_std_write(self, &mut out, bincode::config::legacy())
            .expect("in-memory encoding cannot fail");
        out
    }

    fn decode(bytes: &[u8]) -> Result<Entry, String> {
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or("a record that is not a weir changelog entry")?;
        // Bounded: a length field of a damaged record cannot make it
        // allocate more than the record could hold.
        match crate::checkpoint::log::decode_bounded(body) {
            Ok((e, used)) if used == body.len() => Ok(e),
            Ok(_) => Err("a changelog entry with trailing bytes".into()),
            Err(e) => Err(format!("a malformed changelog entry: {e}")),
        }
    }

    fn fingerprint(&self) -> Option<(&str, &Fingerprint)> {
        match self {
            Entry::Claim {
                instance,
                fingerprint,
                ..
            } => Some((instance, fingerprint)),
            Entry::State(s) => Some((&s.instance, &s.fingerprint)),
            Entry::Range(_) => None,
        }
    }
}

/// What a new owner needs of a partition: its newest state, the batches
/// logged after it, and where the partition's changelog ends.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The newest state.
    pub state: Option<StateEntry>,
    /// Batches logged after it, oldest first.
    pub ranges: Vec<RangeEntry>,
    /// The changelog partition's end offset when read.
    pub end: i64,
    /// The newest claim's or state's instance and job.
    pub owner: Option<(String, Fingerprint)>,
    /// Where the newest claim read continues (used when there is no
    /// state).
    pub claimed_next: Option<i64>,
}

/// Records each write's offset.
struct Acks {
    reporter: Reporter,
    offsets: Mutex<BTreeMap<usize, Result<i64, String>>>,
}

impl ClientContext for Acks {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.reporter.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.reporter.error(error, reason);
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, i: usize) {
        let r = match result {
            Ok(m) => Ok(m.offset()),
            Err((e, _)) => Err(e.to_string()),
        };
        self.offsets.lock().expect("acks poisoned").insert(i, r);
    }
}

/// A job's changelog topic.
pub struct Changelog {
    topic: String,
    endpoint: KafkaEndpoint,
    producer: BaseProducer<Acks>,
    reader: BaseConsumer<Reporter>,
}

impl std::fmt::Debug for Changelog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changelog")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Changelog {
    /// Opens changelog `topic`, which must exist, be compacted and have
    /// `partitions` partitions (the input topic's).
    pub fn open(
        endpoint: &KafkaEndpoint,
        topic: &str,
        input: &str,
        partitions: i32,
    ) -> Result<Changelog, String> {
        let what = format!("changelog `{topic}`");
        let producer: BaseProducer<Acks> = endpoint
            .client_config(&[("enable.idempotence", "true"), ("linger.ms", "0")])
            .create_with_context(Acks {
                reporter: Reporter::new(what.clone()),
                offsets: Mutex::new(BTreeMap::new()),
            })
            .map_err(|e| format!("cannot create a producer: {e}"))?;
        let reader: BaseConsumer<Reporter> = endpoint
            .client_config(&[
                ("group.id", &format!("weir.changelog.{topic}")),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
                // A read goes to a known end: no fetch should wait at the
                // broker for more.
                ("fetch.wait.max.ms", "10"),
            ])
            .create_with_context(Reporter::new(what))
            .map_err(|e| format!("cannot create a consumer: {e}"))?;
        let log = Changelog {
            topic: topic.into(),
            endpoint: endpoint.clone(),
            producer,
            reader,
        };
        let md = log
            .reader
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| format!("cannot fetch metadata: {e}"))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32);
        let create = format!(
            "weir kafka create-topic {topic} --brokers {} --partitions {partitions} --config cleanup.policy=compact",
            endpoint.brokers
        );
        if n == 0 {
            return Err(format!(
                "topic `{topic}` does not exist on {}; create it compacted, with the input's {partitions} partitions: {create}",
                endpoint.brokers
            ));
        }
        if n != partitions {
            return Err(format!(
                "topic `{topic}` has {n} partitions but input topic `{input}` has {partitions}: \
                 the changelog needs one partition per input partition"
            ));
        }
        let policy = log.cleanup_policy()?;
        if !policy.split(',').any(|p| p.trim() == "compact") {
            return Err(format!(
                "topic `{topic}` has cleanup.policy `{policy}`, not `compact`: the broker would delete \
                 partitions' state by age; create it with --config cleanup.policy=compact ({create})"
            ));
        }
        Ok(log)
    }

    /// The topic's `cleanup.policy` (Kafka's default, `delete`, when unset).
    fn cleanup_policy(&self) -> Result<String, String> {
        let admin: AdminClient<Reporter> = self
            .endpoint
            .client_config(&[])
            .create_with_context(Reporter::new(format!("changelog `{}`", self.topic)))
            .map_err(|e| format!("cannot create an admin client: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
        let results = rt
            .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(&self.topic)], &opts))
            .map_err(|e| format!("cannot describe the topic's configuration: {e}"))?;
        let resource = results
            .into_iter()
            .next()
            .ok_or("the broker described no configuration")?
            .map_err(|e| format!("cannot describe the topic's configuration: {e}"))?;
        Ok(resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "delete".into()))
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `entries` (partition, entry) and waits until all are
    /// acknowledged; returns each one's offset.
    pub fn append(&self, entries: &[(i32, Entry)]) -> Result<Vec<i64>, String> {
        self.producer
            .context()
            .offsets
            .lock()
            .expect("acks poisoned")
            .clear();
        let values: Vec<Vec<u8>> = entries.iter().map(|(_, e)| e.encode()).collect();
        for (i, ((partition, entry), value)) in entries.iter().zip(&values).enumerate() {
            let mut record = BaseRecord::with_opaque_to(&self.topic, i)
                .partition(*partition)
                .key(entry.key())
                .payload(value.as_slice());
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(code), r))
                        if code == rdkafka::types::RDKafkaErrorCode::QueueFull =>
                    {
                        record = r;
                        self.producer.poll(Duration::from_millis(20));
                    }
                    Err((e, _)) => return Err(format!("cannot write: {e}")),
                }
            }
        }
        self.producer
            .flush(WRITE_TIMEOUT)
            .map_err(|e| format!("writes not acknowledged: {e}"))?;
        let mut acks = self
            .producer
            .context()
            .offsets
            .lock()
            .expect("acks poisoned");
        (0..entries.len())
            .map(|i| match acks.remove(&i) {
                Some(Ok(o)) => Ok(o),
                Some(Err(e)) => Err(format!("a write failed: {e}")),
                None => Err("a write was not acknowledged".into()),
            })
            .collect()
    }

    /// The partition's end offset.
    pub fn end(&self, partition: i32) -> Result<i64, String> {
        let _ = self.reader.unassign();
        self.reader
            .fetch_watermarks(&self.topic, partition, TIMEOUT)
            .map(|(_, high)| high)
            .map_err(|e| format!("cannot read the offsets of partition {partition}: {e}"))
    }

    /// Partition `partition`'s history: read back from its end, in growing
    /// windows, to its newest state.
    pub fn history(&self, partition: i32) -> Result<History, String> {
        let _ = self.reader.unassign();
        let (low, high) = self
            .reader
            .fetch_watermarks(&self.topic, partition, TIMEOUT)
            .map_err(|e| format!("cannot read the offsets of partition {partition}: {e}"))?;
        let mut history = History {
            end: high,
            ..History::default()
        };
        let mut window = 8;
        let mut end = high;
        let mut newer: Vec<Entry> = Vec::new();
        while end > low {
            let start = (end - window).max(low);
            let mut entries = self.read(partition, start, end)?;
            entries.append(&mut newer);
            newer = entries;
            if history.owner.is_none() {
                history.owner = newer
                    .iter()
                    .rev()
                    .find_map(Entry::fingerprint)
                    .map(|(i, f)| (i.to_owned(), f.clone()));
            }
            // The state of the highest batch: a late write of an earlier
            // owner (one cut off from the group while its write was in
            // flight) can land after its successor's records.
            let newest = newer
                .iter()
                .filter_map(|e| match e {
                    Entry::State(s) => Some(s),
                    _ => None,
                })
                .max_by_key(|s| s.seq);
            if let Some(state) = newest {
                history.ranges = ranges_after(&newer, state.seq);
                history.state = Some((**state).clone());
                return Ok(history);
            }
            end = start;
            window *= 4;
        }
        history.claimed_next = newer.iter().rev().find_map(|e| match e {
            Entry::Claim { next, .. } => Some(*next),
            _ => None,
        });
        history.ranges = ranges_after(&newer, 0);
        Ok(history)
    }

    /// The token of the newest claim of `partition` (read back from the
    /// end in growing windows), and the partition's end offset. When two
    /// instances believe they own a partition, the newest claim wins.
    pub fn newest_claim(&self, partition: i32) -> Result<(Option<String>, i64), String> {
        let _ = self.reader.unassign();
        let (low, high) = self
            .reader
            .fetch_watermarks(&self.topic, partition, TIMEOUT)
            .map_err(|e| format!("cannot read the offsets of partition {partition}: {e}"))?;
        let mut window = 8;
        let mut end = high;
        while end > low {
            let start = (end - window).max(low);
            let claim = self
                .read(partition, start, end)?
                .into_iter()
                .rev()
                .find_map(|e| match e {
                    Entry::Claim { token, .. } => Some(token),
                    _ => None,
                });
            if claim.is_some() {
                return Ok((claim, high));
            }
            end = start;
            window *= 4;
        }
        Ok((None, high))
    }

    /// The entries at offsets `[start, end)` of `partition`, in order.
    fn read(&self, partition: i32, start: i64, end: i64) -> Result<Vec<Entry>, String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(start))
            .map_err(|e| e.to_string())?;
        self.reader
            .assign(&tpl)
            .map_err(|e| format!("cannot assign partition {partition}: {e}"))?;
        let deadline = Instant::now() + TIMEOUT;
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            if Instant::now() > deadline {
                return Err(format!(
                    "partition {partition}: records [{at}, {end}) did not arrive within {} s",
                    TIMEOUT.as_secs()
                ));
            }
            match self.reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.offset() >= at && m.offset() < end => {
                    let entry = Entry::decode(m.payload().unwrap_or_default()).map_err(|e| {
                        format!(
                            "partition {partition} offset {}: {e} (the topic holds something else than weir's changelog)",
                            m.offset()
                        )
                    })?;
                    out.push(entry);
                    at = m.offset() + 1;
                }
                Some(Ok(m)) => at = at.max(m.offset() + 1),
                Some(Err(e)) => tracing::debug!(topic = %self.topic, error = %e, "changelog read"),
                None => {
                    // Offsets without records (compacted away, markers).
                    let p =
                        self.reader.position().ok().and_then(|l| {
                            l.find_partition(&self.topic, partition)?.offset().to_raw()
                        });
                    if let Some(p) = p {
                        at = at.max(p);
                    }
                }
            }
        }
        let _ = self.reader.unassign();
        Ok(out)
    }
}

/// The ranges among `entries` after batch `seq`, in order (a batch logged
/// twice, by an owner that lost the partition and its successor, counts
/// once, as the newer wrote it).
fn ranges_after(entries: &[Entry], seq: u64) -> Vec<RangeEntry> {
    let mut by_seq: BTreeMap<u64, RangeEntry> = BTreeMap::new();
    for e in entries {
        if let Entry::Range(r) = e {
            if r.seq > seq {
                by_seq.insert(r.seq, r.clone());
            }
        }
    }
    by_seq.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(pipeline: &[&str], module: &str) -> Fingerprint {
        Fingerprint {
            job: "wc".into(),
            pipeline: pipeline.iter().map(|s| s.to_string()).collect(),
            modules: [("wordcount".to_string(), module.to_string())].into(),
        }
    }

    #[test]
    fn entries_round_trip_and_foreign_records_are_refused() {
        let e = Entry::Range(RangeEntry {
            seq: 3,
            batch_time_ms: 3000,
            zero_ms: 0,
            from: 10,
            until: 20,
            instance: "a".into(),
        });
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        assert!(Entry::decode(b"hello").unwrap_err().contains("not a weir"));
        let mut bad = e.encode();
        bad.push(0);
        assert!(Entry::decode(&bad).unwrap_err().contains("trailing"));
    }

    #[test]
    fn differences_name_the_stream_and_the_module() {
        let group = fp(&["a = source(x)", "b = map(a; f)"], "aaaa");
        assert!(group.differences(&group).is_empty());
        let other = fp(&["a = source(x)", "b = map(a; g)"], "bbbb");
        let d = other.differences(&group);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("`b` changed"), "{d:?}");
        assert!(d[1].contains("plugin `wordcount`"), "{d:?}");
        let job = Fingerprint {
            job: "other".into(),
            ..group.clone()
        };
        assert!(job.differences(&group)[0].contains("job `wc`, not `other`"));
    }

    #[test]
    fn ranges_after_a_state_keep_the_newest_of_each_batch() {
        let r = |seq, from, instance: &str| {
            Entry::Range(RangeEntry {
                seq,
                batch_time_ms: seq as i64 * 1000,
                zero_ms: 0,
                from,
                until: from + 5,
                instance: instance.into(),
            })
        };
        let entries = vec![r(4, 0, "a"), r(5, 5, "a"), r(5, 5, "b"), r(6, 10, "b")];
        let after = ranges_after(&entries, 4);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].instance, "b");
        assert_eq!(after[1].seq, 6);
    }
}
