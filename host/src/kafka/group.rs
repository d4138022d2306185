//! Membership of a scaled-out job's consumer group.
//!
//! Each instance has one member consumer subscribed to the input topic
//! under the job's group. The group coordinator decides which instance
//! owns which partition; the member only reports its assignments and
//! revocations (it reads no records: its partitions are paused, the
//! source reads the data). It is polled between batches only, so an
//! instance takes partitions on and gives them up at batch boundaries.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{KafkaEndpoint, Reporter};

/// A change of what this instance owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The coordinator gave it these partitions.
    Assigned(Vec<i32>),
    /// It must give these up.
    Revoked(Vec<i32>),
}

struct Events {
    reporter: Reporter,
    topic: String,
    changes: Mutex<Vec<Change>>,
}

impl Events {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        let mut p: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        p.sort_unstable();
        p
    }
}

impl ClientContext for Events {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.reporter.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.reporter.error(error, reason);
    }
}

impl ConsumerContext for Events {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let p = self.partitions(tpl);
            self.changes
                .lock()
                .expect("events poisoned")
                .push(Change::Revoked(p));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // The member reads nothing: the source does.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::debug!(error = %e, "cannot pause the member's partitions");
                }
                let p = self.partitions(tpl);
                self.changes
                    .lock()
                    .expect("events poisoned")
                    .push(Change::Assigned(p));
            }
            Rebalance::Error(e) => {
                tracing::warn!(target: "weir::kafka", "{}: rebalance failed: {e}", self.reporter.what())
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// This instance's member of the job's group.
pub struct Membership {
    consumer: BaseConsumer<Events>,
    topic: String,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Joins `group`, subscribed to `topic`, as `instance` (its client id,
    /// which tools listing the group show).
    pub fn join(
        endpoint: &KafkaEndpoint,
        group: &str,
        topic: &str,
        instance: &str,
    ) -> Result<Membership, String> {
        let mut config = endpoint.client_config(&[
            ("group.id", group),
            ("client.id", instance),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
        ]);
        // A member learns of a rebalance from its heartbeat: frequent
        // heartbeats make handovers quick. A rebalance waits for every
        // member up to `max.poll.interval.ms` (a crashed one never comes):
        // 60 s rather than librdkafka's 5 min; the member is polled every
        // batch.
        for (k, v) in [
            ("heartbeat.interval.ms", "500"),
            ("session.timeout.ms", "10000"),
            ("max.poll.interval.ms", "60000"),
        ] {
            if !endpoint.properties.contains_key(k) {
                config.set(k, v);
            }
        }
        let consumer: BaseConsumer<Events> = config
            .create_with_context(Events {
                reporter: Reporter::new(format!("member `{instance}` of group `{group}`")),
                topic: topic.into(),
                changes: Mutex::new(Vec::new()),
            })
            .map_err(|e| format!("cannot create the group member: {e}"))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| format!("cannot subscribe to `{topic}`: {e}"))?;
        Ok(Membership {
            consumer,
            topic: topic.into(),
        })
    }

    /// Serves the group's callbacks for up to `wait` (returning as soon as
    /// something changed); the changes since the last call, in order.
    pub fn poll(&self, wait: Duration) -> Vec<Change> {
        let until = Instant::now() + wait;
        loop {
            // A record (fetched before the pause took effect) is dropped.
            let _ = self.consumer.poll(Duration::from_millis(50));
            let changes =
                std::mem::take(&mut *self.consumer.context().changes.lock().expect("poisoned"));
            if !changes.is_empty() || Instant::now() >= until {
                return changes;
            }
        }
    }

    /// Commits `offsets` (partition, next offset) to the group, for tools
    /// that show its lag (the changelog, not the group, says where a
    /// partition continues).
    pub fn commit(&self, offsets: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            if tpl
                .add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .is_err()
            {
                return;
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "group offset commit deferred");
            }
        }
    }

    /// Leaves the group at once, so the coordinator hands this instance's
    /// partitions to the others without waiting for a session timeout.
    pub fn leave(self) {
        self.consumer.unsubscribe();
        // Serves the revocation, which sends the leave request.
        let _ = self.consumer.poll(Duration::from_millis(100));
        drop(self.consumer);
    }
}
