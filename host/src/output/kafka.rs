//! Writes a stream's batches to a Kafka topic, exactly once.
//!
//! Every record carries three headers: `weir.job` (`JOB/OUTPUT`),
//! `weir.batch` (the batch time in ms, decimal) and `weir.partition` (the
//! weir partition it came from), so (batch, partition) identifies where a
//! record comes from; a scaled-out job adds `weir.task` (the input
//! partition whose task wrote it), and the batch's parts of its tasks
//! are written together. The output picks each record's topic partition itself
//! (a key hash, or the weir partition), so a batch's records and their
//! order in every topic partition are the same each time the batch is
//! computed.
//!
//! Two ways to make a replayed batch appear once (`delivery`):
//!
//! - `idempotent` (the default; any broker): the idempotent producer
//!   writes each topic partition's records in order, without duplicates
//!   or gaps, so what a crash leaves of a batch is a prefix of each
//!   partition's records. Before writing a batch that may have been
//!   written in part (a replay after a crash, or a retry after a failed
//!   attempt), the output counts the batch's records already at the end of
//!   each topic partition and writes only the rest. A consumer may see a
//!   batch incomplete for as long as the job is down, never a record twice.
//! - `transactional` (brokers with Kafka transactions): each batch is one
//!   transaction under the transactional id `weir.JOB.OUTPUT` (or
//!   `transactional_id`). A restarted job takes the id over, which makes
//!   the broker abort what its crashed predecessor left open; then the
//!   output finds the newest batch of its own committed in the topic, and
//!   replayed batches up to it are not written again. `read_committed`
//!   consumers never see part of a batch; `read_uncommitted` ones see the
//!   records of aborted attempts too, and can drop repeats by
//!   (`weir.batch`, `weir.partition`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{render_value, Output};
use crate::error::EngineError;
use crate::kafka::{key_hash, Backoff, KafkaEndpoint, Reporter};
use crate::ops::{Partitions, ValueKind};

/// How records are spread over the topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioner {
    /// By a hash of the key, as librdkafka's partitioner of that name
    /// computes it: `murmur2` (the Java client's), `consistent` (CRC32) or
    /// `fnv1a`. Records without a key go by their weir partition.
    KeyHash(String),
    /// Weir partition `p` goes to topic partition `p mod n`.
    Partition,
}

/// The key hashes an output may name: deterministic ones.
pub const KEY_HASH_PARTITIONERS: &[&str] = &["murmur2", "consistent", "fnv1a"];

/// What a record's value becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// The value's bytes as they are.
    Raw,
    /// Text, as `print` shows it (counts as decimal numbers).
    Text,
}

/// How a replayed batch is kept from appearing twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Idempotent producer; a batch written in part is completed.
    Idempotent,
    /// One Kafka transaction per batch.
    Transactional,
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
    /// Idempotent or transactional.
    pub delivery: Delivery,
}

/// How long a batch keeps trying to reach the broker before the job fails.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
const TIMEOUT: Duration = Duration::from_secs(30);

/// One record to write: key, value, weir partition.
type Planned<'a> = (&'a [u8], &'a [u8], usize);

/// Part of a batch to write: a scaled-out job's task (`None`: the whole
/// job), its partitions, and whether some of it may be in the topic.
struct Part<'a> {
    task: Option<i32>,
    parts: &'a Partitions,
    check: bool,
}

/// The Kafka output.
pub struct KafkaOutput {
    name: Arc<str>,
    /// `JOB/OUTPUT`: the `weir.job` header.
    owner: String,
    spec: KafkaOutputSpec,
    kind: ValueKind,
    transactional_id: String,
    producer: Option<BaseProducer<Reporter>>,
    /// Partitions of the topic, once known.
    partitions: i32,
    /// Transactional: the newest batch of this output committed in the
    /// topic, once looked up (during recovery).
    committed: Option<Option<i64>>,
    /// Idempotent: a batch that may be in the topic in part.
    unsure: Option<i64>,
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
            partitions: 0,
            committed: None,
            unsure: None,
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

    /// Creates the producer (taking over the transactional id, which
    /// aborts a predecessor's open transaction) and learns the topic's
    /// partitions.
    fn connect(&mut self) -> Result<(), Attempt> {
        if self.producer.is_some() {
            return Ok(());
        }
        let timeout = TIMEOUT.as_millis().to_string();
        let mut fixed = vec![("enable.idempotence", "true")];
        if self.spec.delivery == Delivery::Transactional {
            fixed.push(("transactional.id", self.transactional_id.as_str()));
            fixed.push(("transaction.timeout.ms", timeout.as_str()));
        }
        let producer: BaseProducer<Reporter> = self
            .spec
            .endpoint
            .client_config(&fixed)
            .create_with_context(Reporter::new(self.what()))
            .map_err(|e| Attempt::Fatal(format!("cannot create the producer: {e}")))?;
        // The topic must exist (a broker that creates topics on demand
        // creates it here).
        let md = producer
            .client()
            .fetch_metadata(Some(&self.spec.topic), TIMEOUT)
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
        if self.spec.delivery == Delivery::Transactional {
            producer
                .init_transactions(TIMEOUT)
                .map_err(|e| classify(&e, "cannot take over the transactional id"))?;
        }
        self.partitions = n as i32;
        self.producer = Some(producer);
        Ok(())
    }

    /// Each topic partition's records of the batch, in the order written.
    /// Records without a key go by weir partition, or by task when the job
    /// is scaled out.
    fn plan<'a>(&self, parts: &'a Partitions, task: Option<i32>) -> Vec<Vec<Planned<'a>>> {
        let n = self.partitions;
        let mut plan: Vec<Vec<Planned<'a>>> = (0..n).map(|_| Vec::new()).collect();
        for (p, batch) in parts.iter().enumerate() {
            for (key, value) in batch.iter() {
                let q = match &self.spec.partitioner {
                    Partitioner::KeyHash(h) if !key.is_empty() => key_hash(h, key, n),
                    _ => task.unwrap_or(p as i32) % n,
                };
                plan[q as usize].push((key, value, p));
            }
        }
        plan
    }

    /// Queues the planned records, skipping `skip[q]` of partition `q`.
    fn send_all(
        &self,
        t: i64,
        task: Option<i32>,
        plan: &[Vec<Planned<'_>>],
        skip: &[usize],
    ) -> Result<(), Attempt> {
        let producer = self.producer.as_ref().expect("connected");
        let stamp = t.to_string();
        let task_name = task.map(|j| j.to_string());
        let mut text = String::new();
        let mut partition_names: Vec<String> = Vec::new();
        for (q, records) in plan.iter().enumerate() {
            for &(key, value, p) in &records[skip[q].min(records.len())..] {
                if partition_names.len() <= p {
                    partition_names.resize_with(p + 1, String::new);
                }
                if partition_names[p].is_empty() {
                    partition_names[p] = p.to_string();
                }
                let value: &[u8] = match self.spec.format {
                    ValueFormat::Raw => value,
                    ValueFormat::Text => {
                        text.clear();
                        render_value(self.kind, value, &mut text);
                        text.as_bytes()
                    }
                };
                let headers = OwnedHeaders::new_with_capacity(3)
                    .insert(Header {
                        key: "weir.job",
                        value: Some(self.owner.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.batch",
                        value: Some(stamp.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.partition",
                        value: Some(partition_names[p].as_bytes()),
                    });
                let headers = match &task_name {
                    Some(j) => headers.insert(Header {
                        key: "weir.task",
                        value: Some(j.as_bytes()),
                    }),
                    None => headers,
                };
                let mut record = BaseRecord::to(&self.spec.topic)
                    .payload(value)
                    .headers(headers)
                    .partition(q as i32);
                if !key.is_empty() {
                    record = record.key(key);
                }
                send(producer, record)?;
            }
        }
        Ok(())
    }

    /// Writes the batch's parts with the idempotent producer, each only
    /// as far as it is not in the topic yet when it may be in part.
    fn attempt_idempotent(&mut self, t: i64, batch: &[Part<'_>]) -> Result<(), Attempt> {
        self.connect()?;
        let mut plans = Vec::with_capacity(batch.len());
        for part in batch {
            let plan = self.plan(part.parts, part.task);
            let skip = if part.check || self.unsure == Some(t) {
                let present = self.present(t, part.task)?;
                let total: usize = present.iter().sum();
                if total > 0 {
                    tracing::info!(output = %self.name, batch_time_ms = t, task = ?part.task, records = total, "kafka output: part of the batch is in the topic already; writing the rest");
                }
                present
            } else {
                vec![0; plan.len()]
            };
            plans.push((part.task, plan, skip));
        }
        // From here until it is all acknowledged, the batch may be in the
        // topic in part.
        self.unsure = Some(t);
        let producer = self.producer.as_ref().expect("connected");
        producer.context().take_failures();
        let started = Instant::now();
        for (task, plan, skip) in &plans {
            self.send_all(t, *task, plan, skip)?;
        }
        let flushed = producer.flush(TIMEOUT);
        tracing::debug!(output = %self.name, ms = started.elapsed().as_secs_f64() * 1e3, "kafka batch written");
        let (failed, why) = producer.context().take_failures();
        match flushed {
            Ok(()) if failed == 0 => {
                self.unsure = None;
                Ok(())
            }
            result => {
                // Whatever landed is a prefix; a fresh producer continues.
                self.producer = None;
                Err(Attempt::Retry(match result {
                    Err(e) => format!("not every record was acknowledged: {e}"),
                    Ok(()) => format!(
                        "{failed} record(s) were not delivered: {}",
                        why.unwrap_or_default()
                    ),
                }))
            }
        }
    }

    /// Writes the batch in one transaction.
    fn attempt_transactional(&mut self, t: i64, parts: &Partitions) -> Result<(), Attempt> {
        self.connect()?;
        let plan = self.plan(parts, None);
        let producer = self.producer.as_ref().expect("connected");
        producer
            .begin_transaction()
            .map_err(|e| classify(&e, "cannot begin a transaction"))?;
        let skip = vec![0; plan.len()];
        let committed = self.send_all(t, None, &plan, &skip).and_then(|()| {
            producer
                .commit_transaction(TIMEOUT)
                .map_err(|e| classify(&e, "cannot commit the batch's transaction"))
        });
        if let Err(e) = &committed {
            // Nothing of the batch may become visible: abort (a broker that
            // is away aborts it when the transaction times out, or when the
            // next producer takes over the id).
            if producer.abort_transaction(TIMEOUT).is_err() || matches!(e, Attempt::Fatal(_)) {
                self.producer = None;
            }
        }
        committed
    }

    fn reader(&self) -> Result<BaseConsumer<Reporter>, Attempt> {
        self.spec
            .endpoint
            .client_config(&[
                ("group.id", &format!("{}.recovery", self.transactional_id)),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
            ])
            .create_with_context(Reporter::new(self.what()))
            .map_err(|e| Attempt::Fatal(format!("cannot create a consumer: {e}")))
    }

    /// How many records of batch `t` (of `task`) each topic partition
    /// ends with.
    fn present(&self, t: i64, task: Option<i32>) -> Result<Vec<usize>, Attempt> {
        let consumer = self.reader()?;
        let mut counts = Vec::with_capacity(self.partitions as usize);
        for q in 0..self.partitions {
            let mut count = 0;
            self.scan_back(&consumer, q, task, |batch| match batch.cmp(&t) {
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => {
                    count += 1;
                    true
                }
                std::cmp::Ordering::Greater => true,
            })?;
            counts.push(count);
        }
        Ok(counts)
    }

    /// The newest batch of this output in the topic.
    fn find_committed(&self) -> Result<Option<i64>, Attempt> {
        let consumer = self.reader()?;
        let mut newest = None;
        for q in 0..self.partitions {
            self.scan_back(&consumer, q, None, |batch| {
                newest = newest.max(Some(batch));
                false
            })?;
        }
        Ok(newest)
    }

    /// Reads partition `q` backwards, in growing windows, calling `f` with
    /// the batch of each of this output's records from the newest on,
    /// until `f` says stop (false) or the partition's start.
    fn scan_back(
        &self,
        consumer: &BaseConsumer<Reporter>,
        q: i32,
        task: Option<i32>,
        mut f: impl FnMut(i64) -> bool,
    ) -> Result<(), Attempt> {
        // Unassigned, the consumer has no fetch waiting at the broker for
        // this question to queue behind.
        let _ = consumer.unassign();
        let (low, high) = consumer
            .fetch_watermarks(&self.spec.topic, q, TIMEOUT)
            .map_err(|e| Attempt::Retry(format!("cannot read offsets: {e}")))?;
        let mut window = 256;
        let mut end = high;
        while end > low {
            let start = (end - window).max(low);
            let mut batches = self.own_batches(consumer, q, task, start, end)?;
            batches.reverse();
            for b in batches {
                if !f(b) {
                    return Ok(());
                }
            }
            end = start;
            window *= 4;
        }
        Ok(())
    }

    /// The `weir.batch` of this output's records (of `task`) among
    /// offsets `[start, end)` of partition `q`, in offset order.
    fn own_batches(
        &self,
        consumer: &BaseConsumer<Reporter>,
        q: i32,
        task: Option<i32>,
        start: i64,
        end: i64,
    ) -> Result<Vec<i64>, Attempt> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.spec.topic, q, Offset::Offset(start))
            .map_err(|e| Attempt::Fatal(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| Attempt::Retry(format!("cannot assign: {e}")))?;
        let deadline = Instant::now() + TIMEOUT;
        let mut found = Vec::new();
        let mut at = start;
        while at < end {
            if Instant::now() > deadline {
                return Err(Attempt::Retry(format!(
                    "partition {q}: records [{at}, {end}) did not arrive"
                )));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if m.offset() < end {
                        if let Some(b) = m.headers().and_then(|h| own_batch(h, &self.owner, task)) {
                            found.push(b);
                        }
                    }
                    at = at.max(m.offset() + 1);
                }
                Some(Err(e)) => {
                    tracing::debug!(output = %self.name, error = %e, "recovery read")
                }
                None => {
                    // Offsets without records (markers, compaction).
                    let p = consumer
                        .position()
                        .ok()
                        .and_then(|l| l.find_partition(&self.spec.topic, q)?.offset().to_raw());
                    if let Some(p) = p {
                        at = at.max(p);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Retries `attempt` with backoff while the broker is away.
    fn with_retries(
        &mut self,
        t: i64,
        mut attempt: impl FnMut(&mut Self) -> Result<(), Attempt>,
    ) -> Result<(), EngineError> {
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

/// The batch time in a record's headers, if the record is `owner`'s (and
/// `task`'s, for a scaled-out job).
fn own_batch(h: &impl Headers, owner: &str, task: Option<i32>) -> Option<i64> {
    let mut job = None;
    let mut batch = None;
    let mut its_task = None;
    for header in h.iter() {
        match header.key {
            "weir.job" => job = header.value,
            "weir.batch" => batch = header.value,
            "weir.task" => its_task = header.value,
            _ => {}
        }
    }
    if job? != owner.as_bytes() {
        return None;
    }
    let its_task = its_task.and_then(|b| std::str::from_utf8(b).ok()?.parse::<i32>().ok());
    if its_task != task {
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
    let unsupported = e.to_string().contains("not supported by broker");
    let fatal = match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    };
    if unsupported {
        Attempt::Fatal(format!(
            "{doing}: {e} (use `delivery = \"idempotent\"` with brokers without transactions)"
        ))
    } else if fatal {
        Attempt::Fatal(format!("{doing}: {e}"))
    } else {
        Attempt::Retry(format!("{doing}: {e}"))
    }
}

/// Queues a record, waiting while the producer's queue is full.
fn send(
    producer: &BaseProducer<Reporter>,
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

impl Output for KafkaOutput {
    fn write(&mut self, batch_time_ms: i64, parts: &Partitions) -> Result<(), EngineError> {
        match self.spec.delivery {
            Delivery::Idempotent => {
                let part = [Part {
                    task: None,
                    parts,
                    check: false,
                }];
                self.with_retries(batch_time_ms, |o| {
                    o.attempt_idempotent(batch_time_ms, &part)
                })
            }
            Delivery::Transactional => self.with_retries(batch_time_ms, |o| {
                o.attempt_transactional(batch_time_ms, parts)
            }),
        }
    }

    fn write_replayed(
        &mut self,
        batch_time_ms: i64,
        parts: &Partitions,
    ) -> Result<(), EngineError> {
        if self.spec.delivery == Delivery::Idempotent {
            // It may have been written, wholly or in part, before the crash.
            self.unsure = Some(batch_time_ms);
            return self.write(batch_time_ms, parts);
        }
        if self.committed.is_none() {
            // Take over the transactional id first: that aborts what a
            // crashed predecessor left open, so what is committed is final.
            let mut newest = None;
            self.with_retries(batch_time_ms, |o| {
                o.connect()?;
                newest = o.find_committed()?;
                Ok(())
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

    fn write_tasks(
        &mut self,
        batch_time_ms: i64,
        tasks: &[super::TaskPart<'_>],
    ) -> Result<(), EngineError> {
        if self.spec.delivery != Delivery::Idempotent {
            return Err(
                self.error("a scaled-out job writes with `delivery = \"idempotent\"`".into())
            );
        }
        let parts: Vec<Part<'_>> = tasks
            .iter()
            .map(|t| Part {
                task: Some(t.task),
                parts: t.parts,
                check: t.replayed,
            })
            .collect();
        self.with_retries(batch_time_ms, |o| {
            o.attempt_idempotent(batch_time_ms, &parts)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_librdkafkas_and_stable() {
        // The Java client's murmur2 partition of "foo" among 4 is fixed.
        let first = key_hash("murmur2", b"foo", 4);
        assert!((0..4).contains(&first));
        for _ in 0..3 {
            assert_eq!(key_hash("murmur2", b"foo", 4), first);
        }
        for h in KEY_HASH_PARTITIONERS {
            let spread: std::collections::BTreeSet<i32> = (0..64)
                .map(|i| key_hash(h, format!("k{i}").as_bytes(), 4))
                .collect();
            assert_eq!(spread.len(), 4, "{h} uses every partition");
        }
    }
}
