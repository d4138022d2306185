//! A real Kafka-protocol broker for tests and benchmarks: tansu, started on
//! a free loopback port with its data in a temporary directory, stopped by
//! PID (and restartable on the same port and data). Plus small producer and
//! `read_committed` reader helpers built on rdkafka.
//!
//! The broker binary is found at `$WEIR_TANSU`, then
//! `~/.cache/tansu/bin/tansu` (where `scripts/setup.sh --kafka` installs
//! it), then on `PATH`. Without it, a test fails saying how to install it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// How to install the broker, for failure messages.
pub const INSTALL: &str = "scripts/setup.sh --kafka   (runs: cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root ~/.cache/tansu)";

/// The tansu binary, or a panic saying how to install it.
pub fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_TANSU") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/tansu/bin/tansu");
        if p.is_file() {
            return p;
        }
    }
    if let Ok(paths) = std::env::var("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("tansu");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("the Kafka tests need the tansu broker, which is not installed; install it with:\n  {INSTALL}");
}

/// A running (or stopped) tansu broker.
pub struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free port and waits until it answers.
    pub fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut b = Broker {
            dir: tempfile::tempdir().expect("temporary directory"),
            port,
            child: None,
        };
        b.restart();
        b
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker again after [`Broker::stop`], on the same port and
    /// data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.path().join("broker.log")).expect("broker log");
        let child = Command::new(tansu_binary())
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu ({e}); install it with:\n  {INSTALL}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tansu exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.index_headers();
    }

    /// tansu 0.6 keeps record headers in an SQLite table without an index
    /// and looks up each fetched record's headers in it, so every fetch
    /// scans all headers ever written: with weir's three headers per
    /// output record, reading slows quadratically until the broker stops
    /// answering (60 000 records are never read back). The index makes the
    /// lookup what it should be; the broker's behaviour is otherwise
    /// unchanged.
    fn index_headers(&self) {
        let db = self.dir.path().join("tansu.db");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("sqlite3")
                .arg(&db)
                .arg("create index if not exists weir_header_record on header (topition, offset_id);")
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run sqlite3 ({e}); install it with:\n  apt-get install sqlite3   (or {INSTALL})")
                });
            if out.status.success() {
                return;
            }
            // The broker creates its tables as it starts.
            assert!(
                Instant::now() < deadline,
                "cannot index tansu's header table: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the broker (SIGKILL: it must survive that) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The broker's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.address());
        c
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// Creates topic `name` with `partitions` partitions and the topic
    /// configuration `configs` (e.g. `cleanup.policy=compact`).
    pub fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().expect("admin client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let results = rt
            .block_on(admin.create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .expect("create_topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
    }

    /// Produces `(key, value)` records (an empty key is none) to `topic`,
    /// to the partition given or by key hash, and waits until all are
    /// acknowledged.
    pub fn produce(&self, topic: &str, records: &[(Option<i32>, &[u8], &[u8])]) {
        let p = Producer::new(&self.address());
        p.send_borrowed(topic, records);
        p.flush();
    }

    /// The offsets group `group` has committed for `topic`'s partitions
    /// (-1 where none).
    pub fn committed_offsets(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_range(topic, 0, partitions - 1);
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(|p| {
                got.find_partition(topic, p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(-1)
            })
            .collect()
    }

    /// Every committed record of `topic`, per partition, in offset order
    /// (read with `isolation.level = read_committed`).
    pub fn read_committed(&self, topic: &str) -> Vec<Vec<Record>> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "weir-tests-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = TopicPartitionList::new();
        let mut ends = Vec::new();
        for &p in &partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            ends.push(high);
        }
        consumer.assign(&tpl).expect("assign");
        let mut out: Vec<Vec<Record>> = partitions.iter().map(|_| Vec::new()).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pos = consumer.position().expect("position");
            let done = partitions.iter().zip(&ends).all(|(&p, &end)| {
                end == 0
                    || pos
                        .find_partition(topic, p)
                        .and_then(|e| e.offset().to_raw())
                        .is_some_and(|o| o >= end)
            });
            if done {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "topic {topic} was not read to its end within 60 s"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.expect("a record");
                let i = partitions.iter().position(|&p| p == m.partition()).unwrap();
                if m.offset() < ends[i] {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    out[i].push(Record {
                        key: m.key().unwrap_or_default().to_vec(),
                        value: m.payload().unwrap_or_default().to_vec(),
                        headers,
                    });
                }
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An idempotent producer for test input.
pub struct Producer {
    inner: ThreadedProducer<DefaultProducerContext>,
}

impl Producer {
    /// A producer to the broker at `address`.
    pub fn new(address: &str) -> Producer {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", address)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            // Keys go where the Java client (and weir's Kafka output) puts them.
            .set("partitioner", "murmur2_random")
            .create()
            .expect("producer");
        Producer { inner }
    }

    /// Queues owned records (see [`Producer::send_borrowed`]).
    pub fn send(&self, topic: &str, records: &[(Option<i32>, Vec<u8>, Vec<u8>)]) {
        let borrowed: Vec<(Option<i32>, &[u8], &[u8])> = records
            .iter()
            .map(|(p, k, v)| (*p, k.as_slice(), v.as_slice()))
            .collect();
        self.send_borrowed(topic, &borrowed);
    }

    /// Queues `(partition, key, value)` records (an empty key is none; no
    /// partition: by key hash).
    pub fn send_borrowed(&self, topic: &str, records: &[(Option<i32>, &[u8], &[u8])]) {
        for (partition, key, value) in records {
            let mut r = BaseRecord::to(topic).payload(*value);
            if !key.is_empty() {
                r = r.key(*key);
            }
            if let Some(p) = partition {
                r = r.partition(*p);
            }
            let mut r = r;
            loop {
                match self.inner.send(r) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        r = back;
                        self.inner.poll(Duration::from_millis(20));
                    }
                }
            }
        }
    }

    /// Waits until every queued record is acknowledged.
    pub fn flush(&self) {
        self.inner
            .flush(Duration::from_secs(60))
            .expect("all records acknowledged");
    }
}

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Key (empty for none).
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}
