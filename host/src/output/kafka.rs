//! Writes a stream's batches to a Kafka topic, exactly once for
//! `read_committed` consumers.
//!
//! Each batch is one Kafka transaction. The producer's transactional id is
//! fixed per (job, output) — `weir.JOB.OUTPUT` unless set — so a restarted
//! job fences its crashed predecessor, whose open transaction the broker
//! aborts. Every record carries three headers, `weir.job` (`JOB/OUTPUT`),
//! `weir.batch` (the batch time in ms, decimal) and `weir.partition` (the
//! weir partition it came from): (batch, partition) identifies a record's
//! origin uniquely, for consumers that perform side effects. When a job recovers, the
//! output first takes over the transactional id, then finds the newest
//! batch of its own that is committed in the topic; a replayed batch at or
//! before it is not written again (its records are there, byte for byte),
//! later ones are.
//!
//! A `read_uncommitted` consumer also sees the records of transactions that
//! were aborted (a crash in the middle of a batch, then its replay), so it
//! gets every record at least once; it can drop repeats by the
//! `weir.batch` header, as a batch's records are the same every time it is
//! written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{render_value, Output};
use crate::error::EngineError;
use crate::kafka::{Backoff, KafkaEndpoint, Reporter};
use crate::ops::{Partitions, ValueKind};

/// How records are spread over the topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioner {
    /// By a hash of the key, with one of librdkafka's deterministic
    /// partitioners: `murmur2` (the Java client's), `consistent` (CRC32)
    /// or `fnv1a`.
    KeyHash(String),
    /// Weir partition `p` goes to topic partition `p mod n`.
    Partition,
}

/// The hash partitioners an output may name: the deterministic ones.
pub const KEY_HASH_PARTITIONERS: &[&str] = &["murmur2", "consistent", "fnv1a"];

/// What a record's value becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// The value's bytes as they are.
    Raw,
    /// Text, as `print` shows it (counts as decimal numbers).
    Text,
}

/// A Kafka output as a pipeline or the library describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOutputSpec {
    /// Brokers and client properties.
    pub endpoint: KafkaEndpoint,
    /// The topic written.
    pub topic: String,
    /// How records find their partition.
    pub partitioner: Partitioner,
    /// Transactional id [default: `weir.JOB.OUTPUT`].
    pub transactional_id: Option<String>,
    /// What values become.
    pub format: ValueFormat,
}

/// How long a batch keeps trying to reach the broker before the job fails.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// The Kafka output.
pub struct KafkaOutput {
    name: Arc<str>,
    /// `JOB/OUTPUT`: the `weir.job` header.
    owner: String,
    spec: KafkaOutputSpec,
    kind: ValueKind,
    transactional_id: String,
    producer: Option<ThreadedProducer<Reporter>>,
    topic_partitions: Option<i32>,
    /// Newest batch of this output committed in the topic, once looked up
    /// (during recovery).
    committed: Option<Option<i64>>,
}

impl KafkaOutput {
    /// An output named `name` of job `job`, writing values of `kind`.
    pub fn new(job: &str, name: Arc<str>, spec: KafkaOutputSpec, kind: ValueKind) -> Self {
        let transactional_id = spec
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("weir.{job}.{name}"));
        KafkaOutput {
            owner: format!("{job}/{name}"),
            name,
            spec,
            kind,
            transactional_id,
            producer: None,
            topic_partitions: None,
            committed: None,
        }
    }

    fn what(&self) -> String {
        format!("kafka output `{}`", self.name)
    }

    fn error(&self, message: String) -> EngineError {
        EngineError::Kafka {
            what: self.what(),
            message,
        }
    }

    /// The producer, created and holding the transactional id (which
    /// aborts a predecessor's open transaction).
    fn producer(&mut self) -> Result<&ThreadedProducer<Reporter>, Attempt> {
        if self.producer.is_none() {
            let timeout = TXN_TIMEOUT.as_millis().to_string();
            let mut fixed = vec![
                ("transactional.id", self.transactional_id.as_str()),
                ("enable.idempotence", "true"),
                ("transaction.timeout.ms", timeout.as_str()),
            ];
            if let Partitioner::KeyHash(p) = &self.spec.partitioner {
                fixed.push(("partitioner", p.as_str()));
            }
            let producer: ThreadedProducer<Reporter> = self
                .spec
                .endpoint
                .client_config(&fixed)
                .create_with_context(Reporter::new(self.what()))
                .map_err(|e| Attempt::Fatal(format!("cannot create the producer: {e}")))?;
            producer
                .init_transactions(TXN_TIMEOUT)
                .map_err(|e| classify(&e, "cannot take over the transactional id"))?;
            // The topic must exist (a broker that creates topics on demand
            // creates it here); its partition count serves `partition`.
            let md = producer
                .client()
                .fetch_metadata(Some(&self.spec.topic), TXN_TIMEOUT)
                .map_err(|e| Attempt::Retry(format!("cannot fetch metadata: {e}")))?;
            let n = md
                .topics()
                .iter()
                .find(|t| t.name() == self.spec.topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if n == 0 {
                return Err(Attempt::Fatal(format!(
                    "topic `{}` does not exist on {}",
                    self.spec.topic, self.spec.endpoint.brokers
                )));
            }
            if self.spec.partitioner == Partitioner::Partition {
                self.topic_partitions = Some(n as i32);
            }
            self.producer = Some(producer);
        }
        Ok(self.producer.as_ref().expect("created above"))
    }

    /// Writes the batch in one transaction.
    fn attempt(&mut self, t: i64, parts: &Partitions) -> Result<(), Attempt> {
        let kind = self.kind;
        let format = self.spec.format;
        let stamp = t.to_string();
        let owner = self.owner.clone();
        let topic = self.spec.topic.clone();
        self.producer()?;
        let n = self.topic_partitions;
        let producer = self.producer.as_ref().expect("created");
        producer
            .begin_transaction()
            .map_err(|e| classify(&e, "cannot begin a transaction"))?;
        let mut text = String::new();
        let sent = (|| {
            for (p, batch) in parts.iter().enumerate() {
                let partition = p.to_string();
                for (key, value) in batch.iter() {
                    let value: &[u8] = match format {
                        ValueFormat::Raw => value,
                        ValueFormat::Text => {
                            text.clear();
                            render_value(kind, value, &mut text);
                            text.as_bytes()
                        }
                    };
                    let headers = OwnedHeaders::new_with_capacity(3)
                        .insert(Header {
                            key: "weir.job",
                            value: Some(owner.as_bytes()),
                        })
                        .insert(Header {
                            key: "weir.batch",
                            value: Some(stamp.as_bytes()),
                        })
                        .insert(Header {
                            key: "weir.partition",
                            value: Some(partition.as_bytes()),
                        });
                    let mut record = BaseRecord::to(&topic).payload(value).headers(headers);
                    if !key.is_empty() {
                        record = record.key(key);
                    }
                    if let Some(n) = n {
                        record = record.partition(p as i32 % n);
                    }
                    send(producer, record)?;
                }
            }
            Ok(())
        })();
        let committed = sent.and_then(|()| {
            producer
                .commit_transaction(TXN_TIMEOUT)
                .map_err(|e| classify(&e, "cannot commit the batch's transaction"))
        });
        if let Err(e) = &committed {
            // Nothing of the batch may become visible: abort (a broker that
            // is away aborts it when the transaction times out, or when the
            // next producer takes over the id).
            if producer.abort_transaction(TXN_TIMEOUT).is_err() || matches!(e, Attempt::Fatal(_)) {
                self.producer = None;
            }
        }
        committed
    }

    /// The newest batch of this output committed in the topic.
    fn find_committed(&mut self) -> Result<Option<i64>, Attempt> {
        let consumer: BaseConsumer<Reporter> = self
            .spec
            .endpoint
            .client_config(&[
                ("group.id", &format!("{}.recovery", self.transactional_id)),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
            ])
            .create_with_context(Reporter::new(self.what()))
            .map_err(|e| Attempt::Fatal(format!("cannot create a consumer: {e}")))?;
        let md = consumer
            .fetch_metadata(Some(&self.spec.topic), TXN_TIMEOUT)
            .map_err(|e| Attempt::Retry(format!("cannot fetch metadata: {e}")))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == self.spec.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut newest = None;
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.spec.topic, p, TXN_TIMEOUT)
                .map_err(|e| Attempt::Retry(format!("cannot read offsets: {e}")))?;
            // Read backwards in growing windows until a record of ours shows.
            let mut window = 64;
            let mut end = high;
            while end > low {
                let start = (end - window).max(low);
                let found = self.last_own_batch(&consumer, p, start, end)?;
                if let Some(t) = found {
                    newest = newest.max(Some(t));
                    break;
                }
                end = start;
                window *= 4;
            }
        }
        Ok(newest)
    }

    /// The last `weir.batch` of this output among offsets `[start, end)`.
    fn last_own_batch(
        &self,
        consumer: &BaseConsumer<Reporter>,
        partition: i32,
        start: i64,
        end: i64,
    ) -> Result<Option<i64>, Attempt> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.spec.topic, partition, Offset::Offset(start))
            .map_err(|e| Attempt::Fatal(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| Attempt::Retry(format!("cannot assign: {e}")))?;
        let deadline = Instant::now() + TXN_TIMEOUT;
        let mut found = None;
        loop {
            if Instant::now() > deadline {
                return Err(Attempt::Retry(format!(
                    "partition {partition}: records [{start}, {end}) did not arrive"
                )));
            }
            let position = consumer
                .position()
                .ok()
                .and_then(|l| {
                    l.find_partition(&self.spec.topic, partition)?
                        .offset()
                        .to_raw()
                })
                .unwrap_or(start);
            if position >= end {
                return Ok(found);
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.offset() < end => {
                    if let Some(t) = m.headers().and_then(|h| own_batch(h, &self.owner)) {
                        found = Some(t);
                    }
                    if m.offset() + 1 >= end {
                        return Ok(found);
                    }
                }
                Some(Ok(_)) => return Ok(found),
                Some(Err(e)) => tracing::debug!(output = %self.name, error = %e, "recovery read"),
                None => {}
            }
        }
    }
}

/// The batch time in a record's headers, if the record is `owner`'s.
fn own_batch(h: &impl Headers, owner: &str) -> Option<i64> {
    let mut job = None;
    let mut batch = None;
    for header in h.iter() {
        match header.key {
            "weir.job" => job = header.value,
            "weir.batch" => batch = header.value,
            _ => {}
        }
    }
    if job? != owner.as_bytes() {
        return None;
    }
    std::str::from_utf8(batch?).ok()?.parse().ok()
}

/// One try at a Kafka operation.
enum Attempt {
    /// Worth trying again (the broker is away, a transaction was aborted).
    Retry(String),
    /// Trying again cannot help.
    Fatal(String),
}

fn classify(e: &KafkaError, doing: &str) -> Attempt {
    let fatal = match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    };
    if fatal {
        Attempt::Fatal(format!("{doing}: {e}"))
    } else {
        Attempt::Retry(format!("{doing}: {e}"))
    }
}

/// Queues a record, waiting while the producer's queue is full.
fn send(
    producer: &ThreadedProducer<Reporter>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), Attempt> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(classify(&e, "cannot queue a record")),
        }
    }
}

impl KafkaOutput {
    /// Retries `attempt` with backoff while the broker is away.
    fn with_retries<T>(
        &mut self,
        t: i64,
        mut attempt: impl FnMut(&mut Self) -> Result<T, Attempt>,
    ) -> Result<T, EngineError> {
        let give_up = Instant::now() + GIVE_UP_AFTER;
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            match attempt(self) {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(m)) => return Err(self.error(format!("batch {t} ms: {m}"))),
                Err(Attempt::Retry(m)) if Instant::now() >= give_up => {
                    return Err(self.error(format!(
                        "batch {t} ms: gave up after {} s: {m}",
                        GIVE_UP_AFTER.as_secs()
                    )))
                }
                Err(Attempt::Retry(m)) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        output = %self.name,
                        brokers = %self.spec.endpoint.brokers,
                        "kafka output `{}`: batch {t} ms: {m}; trying again in {} ms",
                        self.name,
                        wait.as_millis()
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }
}

impl Output for KafkaOutput {
    fn write(&mut self, batch_time_ms: i64, parts: &Partitions) -> Result<(), EngineError> {
        self.with_retries(batch_time_ms, |o| o.attempt(batch_time_ms, parts))
    }

    fn write_replayed(
        &mut self,
        batch_time_ms: i64,
        parts: &Partitions,
    ) -> Result<(), EngineError> {
        if self.committed.is_none() {
            // Take over the transactional id first: that aborts what a
            // crashed predecessor left open, so what is committed is final.
            let newest = self.with_retries(batch_time_ms, |o| {
                o.producer()?;
                o.find_committed()
            })?;
            tracing::info!(output = %self.name, newest_committed_ms = ?newest, "kafka output: newest batch already in the topic");
            self.committed = Some(newest);
        }
        if self.committed.flatten().is_some_and(|c| batch_time_ms <= c) {
            tracing::debug!(output = %self.name, batch_time_ms, "batch already committed; not written again");
            return Ok(());
        }
        self.write(batch_time_ms, parts)
    }
}
