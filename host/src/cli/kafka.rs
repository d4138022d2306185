//! `weir kafka ...`: the few client commands a user of the Kafka source and
//! output needs around a job — create a topic, produce lines, read what is
//! committed — so trying weir takes no other Kafka tooling.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::kafka::{KafkaEndpoint, Reporter};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A client command failed.
#[derive(Debug, thiserror::Error)]
#[error("kafka ({brokers}): {message}")]
pub struct ToolError {
    brokers: String,
    message: String,
}

fn endpoint(brokers: &str, properties: &[(String, String)]) -> Result<KafkaEndpoint, ToolError> {
    KafkaEndpoint::check_brokers(brokers).map_err(|message| ToolError {
        brokers: brokers.into(),
        message,
    })?;
    Ok(KafkaEndpoint {
        brokers: brokers.trim().into(),
        properties: properties.iter().cloned().collect(),
    })
}

fn fail(brokers: &str) -> impl Fn(String) -> ToolError + '_ {
    move |message| ToolError {
        brokers: brokers.into(),
        message,
    }
}

/// Creates `topic` with `partitions` partitions and the topic
/// configuration `configs`.
pub fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    configs: &[(String, String)],
) -> Result<(), ToolError> {
    let e = endpoint(brokers, &[])?;
    let fail = fail(brokers);
    let admin: AdminClient<Reporter> = e
        .client_config(&[])
        .create_with_context(Reporter::new("weir kafka"))
        .map_err(|e| fail(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = rt
        .block_on(admin.create_topics(
            &[new],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        ))
        .map_err(|e| fail(format!("cannot create topic `{topic}`: {e}")))?;
    for r in results {
        r.map_err(|(t, e)| fail(format!("cannot create topic `{t}`: {e}")))?;
    }
    println!("created topic {topic} with {partitions} partition(s)");
    Ok(())
}

/// Produces every line of `input` as a record (with `key_separator`, the
/// text before it is the key) and waits until all are acknowledged.
pub fn produce(
    brokers: &str,
    properties: &[(String, String)],
    topic: &str,
    key_separator: Option<&str>,
    input: impl BufRead,
) -> Result<u64, ToolError> {
    let e = endpoint(brokers, properties)?;
    let fail = fail(brokers);
    let producer: ThreadedProducer<Reporter> = e
        .client_config(&[
            ("enable.idempotence", "true"),
            ("partitioner", "murmur2_random"),
        ])
        .create_with_context(Reporter::new("weir kafka produce"))
        .map_err(|e| fail(e.to_string()))?;
    let mut n = 0;
    for line in input.lines() {
        let line = line.map_err(|e| fail(format!("cannot read the input: {e}")))?;
        let (key, value) = match key_separator.and_then(|s| line.split_once(s)) {
            Some((k, v)) => (Some(k), v),
            None => (None, line.as_str()),
        };
        let mut record = BaseRecord::to(topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(fail(format!("cannot produce to `{topic}`: {e}"))),
            }
        }
        n += 1;
    }
    producer
        .flush(TIMEOUT)
        .map_err(|e| fail(format!("not every record was acknowledged: {e}")))?;
    eprintln!("produced {n} record(s) to {topic}");
    Ok(n)
}

/// Writes every record of `topic` up to its current end as `key<TAB>value`
/// lines (values as `print` renders bytes); `read_committed` unless
/// `uncommitted`.
pub fn consume(
    brokers: &str,
    properties: &[(String, String)],
    topic: &str,
    uncommitted: bool,
    out: &mut impl Write,
) -> Result<u64, ToolError> {
    let e = endpoint(brokers, properties)?;
    let fail = fail(brokers);
    let isolation = if uncommitted {
        "read_uncommitted"
    } else {
        "read_committed"
    };
    let consumer: BaseConsumer<Reporter> = e
        .client_config(&[
            ("group.id", "weir-kafka-consume"),
            ("enable.auto.commit", "false"),
            ("isolation.level", isolation),
        ])
        .create_with_context(Reporter::new("weir kafka consume"))
        .map_err(|e| fail(e.to_string()))?;
    let md = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| fail(format!("cannot fetch metadata: {e}")))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(fail(format!("topic `{topic}` does not exist")));
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for &p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, TIMEOUT)
            .map_err(|e| fail(format!("cannot read the end of {topic}-{p}: {e}")))?;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| fail(e.to_string()))?;
        ends.push(high);
    }
    consumer.assign(&tpl).map_err(|e| fail(e.to_string()))?;
    let deadline = Instant::now() + TIMEOUT;
    let mut n = 0;
    let mut line = String::new();
    loop {
        let pos = consumer.position().map_err(|e| fail(e.to_string()))?;
        let done = partitions.iter().zip(&ends).all(|(&p, &end)| {
            end == 0
                || pos
                    .find_partition(topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .is_some_and(|o| o >= end)
        });
        if done {
            return Ok(n);
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "`{topic}` was not read to its end within {} s",
                TIMEOUT.as_secs()
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let i = partitions.iter().position(|&p| p == m.partition());
                if i.is_some_and(|i| m.offset() < ends[i]) {
                    line.clear();
                    crate::output::render_bytes(m.key().unwrap_or_default(), &mut line);
                    line.push('\t');
                    crate::output::render_bytes(m.payload().unwrap_or_default(), &mut line);
                    writeln!(out, "{line}").map_err(|e| fail(e.to_string()))?;
                    n += 1;
                }
            }
            Some(Err(e)) => return Err(fail(format!("cannot read `{topic}`: {e}"))),
            None => {}
        }
    }
}
