//! What the Kafka source and the Kafka output share: where the brokers are,
//! the client properties, and a client context that reports librdkafka's
//! logs and errors under the source's or output's name.
//!
//! The client is librdkafka (through `rdkafka`); weir never speaks the
//! Kafka protocol itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};

pub mod changelog;
pub mod group;

/// A Kafka cluster as a source or output reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaEndpoint {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// librdkafka properties set as given (e.g. `session.timeout.ms`).
    pub properties: BTreeMap<String, String>,
}

/// Properties weir sets itself; a pipeline may not override them, because
/// exact replay depends on them.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "transactional.id",
    "enable.idempotence",
    "partitioner",
];

impl KafkaEndpoint {
    /// Checks a bootstrap list: one or more `host:port`, comma-separated.
    pub fn check_brokers(brokers: &str) -> Result<(), String> {
        if brokers.trim().is_empty() {
            return Err("`brokers` is empty; give host:port[,host:port...]".into());
        }
        for entry in brokers.split(',') {
            let entry = entry.trim();
            let Some((host, port)) = entry.rsplit_once(':') else {
                return Err(format!(
                    "broker `{entry}` has no port; write it as host:port"
                ));
            };
            if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
                return Err(format!("broker `{entry}` has no valid host name"));
            }
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("broker `{entry}` has an invalid port `{port}`"));
            }
        }
        Ok(())
    }

    /// The broker host:port pairs.
    pub fn broker_list(&self) -> Vec<String> {
        self.brokers
            .split(',')
            .map(|b| b.trim().to_owned())
            .collect()
    }

    /// A client configuration: the user's properties, then the bootstrap
    /// servers and `fixed` (weir's own settings, which win).
    pub fn client_config(&self, fixed: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        // librdkafka's `debug` property asks for its debug lines.
        c.set_log_level(if self.properties.contains_key("debug") {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        });
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in fixed {
            c.set(*k, *v);
        }
        c
    }
}

/// Reports librdkafka's log lines and errors as weir's, naming the source
/// or output (`kafka source `lines``), at most one repeated error line per
/// few seconds.
pub struct Reporter {
    what: Arc<str>,
    last: std::sync::Mutex<Option<(String, Instant)>>,
    /// Records a producer could not deliver since the last
    /// [`Reporter::take_failures`], and the last reason.
    failures: std::sync::Mutex<(u64, Option<String>)>,
    /// Warnings since the last [`Reporter::take_errors`] (the newest 100).
    errors: std::sync::Mutex<Vec<String>>,
}

impl Reporter {
    /// For the source or output described by `what`.
    pub fn new(what: impl Into<Arc<str>>) -> Reporter {
        Reporter {
            what: what.into(),
            last: std::sync::Mutex::new(None),
            failures: std::sync::Mutex::new((0, None)),
            errors: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Warnings the client logged since the last call (repeats within
    /// 10 s are left out, as in the log).
    pub fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *self.errors.lock().expect("reporter poisoned"))
    }

    fn warn(&self, line: String) {
        tracing::warn!(target: "weir::kafka", "{}: {line}", self.what);
        let mut errors = self.errors.lock().expect("reporter poisoned");
        if errors.len() >= 100 {
            errors.remove(0);
        }
        errors.push(line);
    }

    /// Deliveries that failed since the last call, with the last reason.
    pub fn take_failures(&self) -> (u64, Option<String>) {
        std::mem::take(&mut *self.failures.lock().expect("reporter poisoned"))
    }

    /// What this client belongs to.
    pub fn what(&self) -> &str {
        &self.what
    }

    fn repeated(&self, line: &str) -> bool {
        let mut last = self.last.lock().expect("reporter poisoned");
        match &*last {
            Some((l, at)) if l == line && at.elapsed() < Duration::from_secs(10) => true,
            _ => {
                *last = Some((line.to_owned(), Instant::now()));
                false
            }
        }
    }
}

impl ClientContext for Reporter {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                if !self.repeated(message) {
                    self.warn(format!("{fac}: {message}"))
                }
            }
            _ => tracing::debug!(target: "weir::kafka", "{}: {fac}: {message}", self.what),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let line = format!("{error}: {reason}");
        if !self.repeated(&line) {
            self.warn(line);
        }
    }
}

impl ConsumerContext for Reporter {}

impl ProducerContext for Reporter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut f = self.failures.lock().expect("reporter poisoned");
            f.0 += 1;
            f.1 = Some(e.to_string());
        }
    }
}

/// The partition librdkafka's partitioner `name` (`murmur2`,
/// `consistent` or `fnv1a`) gives `key` among `n`.
pub fn key_hash(name: &str, key: &[u8], n: i32) -> i32 {
    use rdkafka_sys as sys;
    let f = match name {
        "consistent" => sys::rd_kafka_msg_partitioner_consistent,
        "fnv1a" => sys::rd_kafka_msg_partitioner_fnv1a,
        _ => sys::rd_kafka_msg_partitioner_murmur2,
    };
    // SAFETY: these partitioners are pure functions of the key bytes and
    // the partition count; they read `keylen` bytes at `key` and use no
    // other argument.
    unsafe {
        f(
            std::ptr::null(),
            key.as_ptr().cast(),
            key.len(),
            n,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// Doubling waits between `min` and `max`, for retrying a broker that is
/// away.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt (then doubles it).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_lists_are_checked() {
        assert!(KafkaEndpoint::check_brokers("127.0.0.1:9092").is_ok());
        assert!(KafkaEndpoint::check_brokers("a:1, b.example:9093").is_ok());
        for bad in [
            "",
            "localhost",
            "host:",
            ":9092",
            "host:99999",
            "h:0",
            "a b:1",
        ] {
            assert!(KafkaEndpoint::check_brokers(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<u128> = (0..4).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_wait().as_millis(), 100);
    }
}
