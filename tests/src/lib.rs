//! Shared helpers of weir's integration tests and benchmarks: where the
//! guest plugins built by `build.rs` are.

use std::path::PathBuf;

pub mod harness;
pub mod kafka;

/// Benchmark input: lines of words from a Zipf-distributed vocabulary.
pub mod corpus {
    use rand::rngs::StdRng;
    use rand::Rng;
    use weir_abi::RecordBatch;

    /// `n` distinct lowercase words, shortest first (rank 0 is the most frequent
    /// word, as in natural text), drawn with Zipf(1) weights.
    pub struct Vocabulary {
        words: Vec<String>,
        /// Cumulative Zipf weights, `cdf[i]` = sum of 1/(k+1) for k <= i.
        cdf: Vec<f64>,
    }

    impl Vocabulary {
        pub fn new(n: usize, rng: &mut StdRng) -> Self {
            let mut seen = std::collections::HashSet::new();
            let mut words = Vec::with_capacity(n);
            while words.len() < n {
                let len = rng.gen_range(2..=10);
                let w: String = (0..len)
                    .map(|_| rng.gen_range(b'a'..=b'z') as char)
                    .collect();
                if seen.insert(w.clone()) {
                    words.push(w);
                }
            }
            words.sort_by_key(String::len);
            let mut acc = 0.0;
            let cdf = (0..n)
                .map(|k| {
                    acc += 1.0 / (k + 1) as f64;
                    acc
                })
                .collect();
            Vocabulary { words, cdf }
        }

        pub fn word(&self, rng: &mut StdRng) -> &str {
            let x = rng.gen::<f64>() * self.cdf[self.cdf.len() - 1];
            let i = self
                .cdf
                .partition_point(|&c| c < x)
                .min(self.words.len() - 1);
            &self.words[i]
        }

        /// `lines` unkeyed records of 8 to 12 words separated by single spaces.
        pub fn batch(&self, lines: usize, rng: &mut StdRng) -> RecordBatch {
            let mut batch = RecordBatch::with_capacity(lines * 64);
            let mut line = String::new();
            for _ in 0..lines {
                line.clear();
                for i in 0..rng.gen_range(8..=12) {
                    if i > 0 {
                        line.push(' ');
                    }
                    line.push_str(self.word(rng));
                }
                batch.push(b"", line.as_bytes());
            }
            batch
        }
    }
}

/// Paths of built guests, or why they could not be built.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The path of a built guest, or a panic that says how to get it built.
pub fn guest(built: Result<&str, &str>) -> PathBuf {
    match built {
        Ok(path) => PathBuf::from(path),
        Err(why) => {
            panic!("a guest plugin this test needs was not built by tests/build.rs:\n{why}")
        }
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A checked-in fixture under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("tests").join("fixtures").join(rel)
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::OnceLock;

use weir::host::{Host, HostConfig};
use weir::ops::Partitions;
use weir::wasm::{Plugin, Runtime, RuntimeConfig};
use weir::{ClockMode, Stream, StreamingConfig, StreamingContext};

/// One wasm runtime for the whole test binary, so each module is compiled
/// once.
pub fn runtime() -> Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(&RuntimeConfig::default()).expect("wasm runtime"))
        .clone()
}

/// A guest loaded once into the shared runtime (kept alive for the cache).
pub fn shared_plugin(built: Result<&str, &str>) -> Plugin {
    static LOADED: OnceLock<Mutex<Vec<Plugin>>> = OnceLock::new();
    let path = guest(built);
    let plugin = runtime().load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut keep = LOADED.get_or_init(Mutex::default).lock().unwrap();
    if !keep.iter().any(|p| p.hash() == plugin.hash()) {
        keep.push(plugin.clone());
    }
    plugin
}

/// One host (the shared runtime, a receiver runtime, a worker pool) for
/// the whole test binary, as a process runs every job on one host.
pub fn host() -> Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::with_wasm(runtime(), &HostConfig::default()).expect("host"))
        .clone()
}

/// A context on the shared host.
pub fn context(config: StreamingConfig) -> StreamingContext {
    StreamingContext::with_host(config, host()).expect("valid test config")
}

/// A configuration for deterministic tests: simulated clock starting at 0,
/// 1 s batches.
pub fn simulated_config(partitions: usize, workers: usize) -> StreamingConfig {
    StreamingConfig {
        job_name: "test".into(),
        batch_interval: Duration::from_secs(1),
        partitions,
        workers,
        clock: ClockMode::Simulated { start_ms: 0 },
        ..StreamingConfig::default()
    }
}

/// Batches a stream produced: `(batch time, partitions)`.
pub type Collected = Arc<Mutex<Vec<(i64, Partitions)>>>;

/// Collects every batch of `stream`.
pub fn collect(stream: &Stream) -> Collected {
    let out: Collected = Arc::default();
    let sink = out.clone();
    stream
        .foreach_batch(move |t, parts| {
            sink.lock().unwrap().push((t, parts.clone()));
            Ok(())
        })
        .unwrap();
    out
}

/// All records of one batch, partitions in order, as owned pairs.
pub fn records(parts: &Partitions) -> Vec<(Vec<u8>, Vec<u8>)> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

/// Decodes an 8-byte canonical count.
pub fn count(v: &[u8]) -> i64 {
    i64::from_le_bytes(v.try_into().expect("8-byte count"))
}
