//! The library API, shaped after Spark Streaming: a [`StreamingContext`]
//! creates input streams; [`Stream`] methods create derived streams and
//! outputs; `start` / `await_termination` / `stop` run the job.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use weir_abi::RecordBatch;

use super::events::{Listeners, LogListener, StreamingListener};
use super::scheduler::{
    BatchLoop, Clock, Control, JobFailed, JobStatus, RunSummary, SimulatedClock, StopSignal,
    SystemClock,
};
use crate::checkpoint::{CheckpointConfig, Checkpointer};
use crate::error::{BuildError, EngineError};
use crate::graph::executor::{Executor, SwapError, SwapReport};
use crate::graph::{Graph, NodeId, NodeKind};
use crate::host::{Host, HostConfig};
use crate::ops::join::JoinKind;
use crate::ops::registry;
use crate::ops::slice::Slicer;
use crate::ops::spec::{ArgValue, Args, InputInfo};
use crate::ops::{FunctionRef, OpDesc, Partitions, ValueKind};
use crate::output::kafka::{KafkaOutput, KafkaOutputSpec};
use crate::output::print::Print;
use crate::output::stats::StatsFile;
use crate::output::text_files::TextFiles;
use crate::output::{BatchFn, ForEachBatch, Output};
use crate::receiver::files::{FileLimits, FileSource};
use crate::receiver::generator::{GeneratorConfig, GeneratorKind, GeneratorSource};
use crate::receiver::kafka::{KafkaSource, KafkaSourceSpec};
use crate::receiver::queue::QueueSource;
use crate::receiver::rate::PidConfig;
use crate::receiver::socket::{SocketConfig, SocketSource};
use crate::receiver::Source;
use crate::wasm::{Limits, Plugin, Runtime};

/// Which clock cuts batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockMode {
    /// Wall-clock time: batches are cut every interval (a live job).
    #[default]
    System,
    /// Batches back to back at times `start + k·interval`, without waiting
    /// (replays, tests, benchmarks).
    Simulated {
        /// Time before the first batch, in ms.
        start_ms: i64,
    },
    /// Wall-clock time, and after recovery the batches missed while the
    /// job was down run back to back, so batch times are those of an
    /// uninterrupted run (`weir serve`'s jobs).
    SystemCatchUp,
}

/// A validated job configuration.
#[derive(Debug, Clone)]
pub struct StreamingConfig {
    /// Job name (appears in errors and logs).
    pub job_name: String,
    /// Time between batches.
    pub batch_interval: Duration,
    /// Granularity at which receivers seal blocks.
    pub block_interval: Duration,
    /// Default number of partitions of input streams and shuffles.
    pub partitions: usize,
    /// Worker threads that run partitions.
    pub workers: usize,
    /// Per-call plugin limits.
    pub limits: Limits,
    /// Batch clock.
    pub clock: ClockMode,
    /// Blocks a receiver may have waiting before it stops reading.
    pub max_pending_blocks: usize,
    /// Append per-batch statistics to this file as JSON lines.
    pub stats_file: Option<PathBuf>,
    /// Show a status line on stderr when it is a terminal (`weir run` does,
    /// through a listener; the library draws nothing itself).
    pub progress: bool,
    /// Checkpoint directory and policy; `None` runs without recovery.
    pub checkpoint: Option<CheckpointConfig>,
    /// Discard an existing checkpoint instead of recovering from it.
    pub fresh_start: bool,
    /// Times a failed batch is retried, from the state before it, before
    /// the job fails.
    pub max_retries: u32,
    /// Largest state (keyed state and window contents) in bytes.
    pub max_state_bytes: Option<u64>,
    /// Sources that can (Kafka, files, socket) adapt their rate to how fast
    /// batches are processed, with these constants (Spark's
    /// `backpressure.enabled`).
    pub backpressure: Option<PidConfig>,
    /// Share the job with other instances through the Kafka source's
    /// consumer group, state in a changelog topic.
    pub scale_out: Option<super::ScaleOutConfig>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            job_name: "weir".into(),
            batch_interval: Duration::from_secs(1),
            block_interval: Duration::from_millis(200),
            partitions: 4,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            limits: Limits::default(),
            clock: ClockMode::System,
            max_pending_blocks: 64,
            stats_file: None,
            progress: false,
            checkpoint: None,
            fresh_start: false,
            max_retries: 0,
            max_state_bytes: None,
            backpressure: None,
            scale_out: None,
        }
    }
}

/// Options of `update_state_by_key` and `map_with_state`.
#[derive(Debug, Clone, Default)]
pub struct StateOptions {
    /// State partitions [default: the stream's partitions].
    pub partitions: Option<usize>,
    /// Idle timeout (map_with_state only).
    pub timeout: Option<Duration>,
    /// Initial `(key, state)` pairs.
    pub initial_state: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SourceSpec {
    /// A one-line description (what a checkpoint records).
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Queue(_) => "queue".into(),
            other => format!("{other:?}"),
        }
    }
}

/// How an input stream gets its data.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// TCP text lines.
    Socket { host: String, port: u16 },
    /// New files in a directory.
    Files {
        dir: PathBuf,
        include_existing: bool,
        /// How much one batch takes at most.
        limits: FileLimits,
    },
    /// Deterministic synthetic records.
    Generator {
        kind: GeneratorKind,
        rate: u64,
        seed: u64,
        words_per_line: usize,
        vocabulary: usize,
        limit: Option<u64>,
    },
    /// Prepared batches of records.
    Queue(Vec<Vec<RecordBatch>>),
    /// Kafka topics, read by offset ranges.
    Kafka(KafkaSourceSpec),
}

enum OutputSpec {
    Print {
        num: usize,
    },
    TextFiles {
        prefix: PathBuf,
        suffix: Option<String>,
    },
    ForEach(BatchFn),
    Kafka(KafkaOutputSpec),
}

#[derive(Default)]
struct Builder {
    graph: Graph,
    sources: Vec<(Arc<str>, SourceSpec)>,
    outputs: Vec<(NodeId, Arc<str>, OutputSpec)>,
    names: std::collections::HashSet<Arc<str>>,
    counter: usize,
    started: bool,
}

impl Builder {
    fn name(&mut self, wanted: Option<&str>, op: &str) -> Result<Arc<str>, BuildError> {
        if self.started {
            return Err(BuildError::AlreadyStarted);
        }
        let name: Arc<str> = match wanted {
            Some(n) => n.into(),
            None => loop {
                self.counter += 1;
                let candidate: Arc<str> = format!("{op}-{}", self.counter).into();
                if !self.names.contains(&candidate) {
                    break candidate;
                }
            },
        };
        if !self.names.insert(name.clone()) {
            return Err(BuildError::DuplicateName { name });
        }
        Ok(name)
    }
}

/// The entry point of a weir job: configuration, plugins, input streams.
pub struct StreamingContext {
    config: StreamingConfig,
    host: Host,
    builder: Rc<RefCell<Builder>>,
    /// Loaded plugins: name → (module hash, file), for checkpoints.
    plugins: RefCell<BTreeMap<String, (String, PathBuf)>>,
    /// Who hears the job's events; the log is always one.
    listeners: Listeners,
}

/// A stream of record batches: what Spark calls a DStream.
#[derive(Clone)]
pub struct Stream {
    builder: Rc<RefCell<Builder>>,
    id: NodeId,
}

impl StreamingContext {
    /// A context on the process's shared [`Host`].
    pub fn new(config: StreamingConfig) -> Result<Self, BuildError> {
        Self::with_host(config, Host::shared()?)
    }

    /// A context on a host of its own around an existing wasm runtime
    /// (sharing its module cache).
    pub fn with_runtime(config: StreamingConfig, runtime: Runtime) -> Result<Self, BuildError> {
        Self::with_host(config, Host::with_wasm(runtime, &HostConfig::default())?)
    }

    /// A context on `host`: its wasm runtime, receiver runtime and worker
    /// pool, shared with every other job on it.
    pub fn with_host(config: StreamingConfig, host: Host) -> Result<Self, BuildError> {
        for (key, zero) in [
            ("batch_interval", config.batch_interval.is_zero()),
            ("partitions", config.partitions == 0),
            ("workers", config.workers == 0),
        ] {
            if zero {
                return Err(BuildError::ZeroSetting { key });
            }
        }
        let listeners = Listeners::default();
        listeners.add(Arc::new(LogListener));
        Ok(StreamingContext {
            config,
            host,
            builder: Rc::default(),
            plugins: RefCell::default(),
            listeners,
        })
    }

    /// Adds a listener to the job's events (the log is always one); it
    /// hears every batch from the first, replayed ones included.
    pub fn add_listener(&self, listener: Arc<dyn StreamingListener>) {
        self.listeners.add(listener);
    }

    /// The configuration.
    pub fn config(&self) -> &StreamingConfig {
        &self.config
    }

    /// The wasm runtime.
    pub fn runtime(&self) -> &Runtime {
        self.host.wasm()
    }

    /// The host the job runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Loads a plugin module (compiled once per content).
    pub fn load_plugin(&self, path: impl AsRef<Path>) -> Result<Plugin, BuildError> {
        let plugin = self.host.wasm().load_file(path.as_ref())?;
        self.plugins.borrow_mut().insert(
            plugin.name().to_string(),
            (plugin.hash_hex(), path.as_ref().to_owned()),
        );
        Ok(plugin)
    }

    /// Loads a plugin module under a given name (e.g. a module kept in a
    /// checkpoint, under the name it had).
    pub fn load_plugin_as(&self, name: &str, path: impl AsRef<Path>) -> Result<Plugin, BuildError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| crate::wasm::LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let plugin = self.host.wasm().load_bytes(name, &bytes)?;
        self.plugins
            .borrow_mut()
            .insert(name.to_string(), (plugin.hash_hex(), path.to_owned()));
        Ok(plugin)
    }

    /// An input stream from `spec`, named `name` (or automatically).
    pub fn source(&self, name: Option<&str>, spec: SourceSpec) -> Result<Stream, BuildError> {
        let mut b = self.builder.borrow_mut();
        let name = b.name(name, "source")?;
        let index = b.sources.len();
        b.sources.push((name.clone(), spec));
        let interval_ms = self.config.batch_interval.as_millis().max(1) as i64;
        let id = b.graph.add(
            name,
            NodeKind::Source(index),
            vec![],
            interval_ms,
            self.config.partitions,
        );
        Ok(Stream {
            builder: self.builder.clone(),
            id,
        })
    }

    /// Lines of text from a TCP server (Spark's `socketTextStream`).
    pub fn socket_text_stream(&self, host: &str, port: u16) -> Result<Stream, BuildError> {
        self.source(
            None,
            SourceSpec::Socket {
                host: host.into(),
                port,
            },
        )
    }

    /// Lines of new files in `dir` (Spark's `textFileStream`).
    pub fn text_file_stream(&self, dir: impl Into<PathBuf>) -> Result<Stream, BuildError> {
        self.source(
            None,
            SourceSpec::Files {
                dir: dir.into(),
                include_existing: false,
                limits: FileLimits::default(),
            },
        )
    }

    /// Prepared batches, one per batch interval (Spark's `queueStream`).
    /// Each batch is `(key, value)` pairs; use empty keys for plain values.
    pub fn queue_stream<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        batches: Vec<Vec<(K, V)>>,
    ) -> Result<Stream, BuildError> {
        // Contiguous blocks, one per partition, so partitions read in order
        // give the batch in its original order.
        let p = self.config.partitions;
        let blocks = batches
            .into_iter()
            .map(|b| {
                let per_block = b.len().div_ceil(p).max(1);
                b.chunks(per_block)
                    .map(|c| {
                        c.iter()
                            .map(|(k, v)| (k.as_ref(), v.as_ref()))
                            .collect::<RecordBatch>()
                    })
                    .collect()
            })
            .collect();
        self.source(None, SourceSpec::Queue(blocks))
    }

    /// Starts the job: receivers begin receiving and the batch clock runs on
    /// its own thread. `max_batches` stops it after that many batches.
    pub fn start(self, max_batches: Option<u64>) -> Result<RunningJob, BuildError> {
        let builder = {
            let mut b = self.builder.borrow_mut();
            if b.outputs.is_empty() {
                return Err(BuildError::NoOutput);
            }
            b.started = true;
            Builder {
                graph: std::mem::take(&mut b.graph),
                sources: std::mem::take(&mut b.sources),
                outputs: std::mem::take(&mut b.outputs),
                ..Builder::default()
            }
        };
        let cfg = &self.config;
        let interval_ms = cfg.batch_interval.as_millis().max(1) as i64;
        let scale_out = self.scale_out(&builder, interval_ms)?;
        let checkpointer = self.open_checkpoint(&builder, interval_ms)?;
        let block_log = checkpointer.as_ref().and_then(|(c, _)| c.block_log());
        let clock: Arc<dyn Clock> = match cfg.clock {
            ClockMode::System => Arc::new(SystemClock),
            ClockMode::SystemCatchUp => Arc::new(super::scheduler::CatchUpClock),
            ClockMode::Simulated { start_ms } => Arc::new(SimulatedClock::new(start_ms)),
        };
        let now = {
            let clock = clock.clone();
            Arc::new(move || clock.now_ms())
        };
        let sources = self.start_sources(builder.sources, block_log, interval_ms, now, false)?;
        let observed: Vec<NodeId> = builder.outputs.iter().map(|(n, _, _)| *n).collect();
        let outputs = make_outputs(&cfg.job_name, &builder.graph, builder.outputs);
        let stats_file = match &cfg.stats_file {
            Some(p) => Some(StatsFile::open(p).map_err(|source| BuildError::Start {
                what: format!("statistics file {}", p.display()),
                source,
            })?),
            None => None,
        };
        let mut executor = Executor::new(
            builder.graph,
            cfg.job_name.as_str().into(),
            self.host.pool().clone(),
            cfg.workers,
            cfg.partitions,
            interval_ms,
            cfg.limits,
        );
        executor.observe(&observed, false);
        let stop = Arc::new(StopSignal::default());
        let (control_tx, control_rx) = std::sync::mpsc::channel();
        let status = Arc::new(std::sync::Mutex::new(JobStatus::default()));
        let batch_loop = BatchLoop {
            executor,
            sources,
            outputs,
            interval_ms,
            partitions: cfg.partitions,
            max_batches,
            stats_file,
            clock,
            stop: stop.clone(),
            checkpoint: checkpointer,
            host: self.host.clone(),
            control: Some(control_rx),
            status: status.clone(),
            max_retries: cfg.max_retries,
            max_state_bytes: cfg.max_state_bytes,
            run: None,
            scale_out,
            listeners: self.listeners.clone(),
        };
        let termination = Arc::new(Termination::default());
        // The job is a task on the host's runtime: it sleeps there between
        // batches (no thread of its own) and runs each batch on a blocking
        // thread, lent for that batch.
        self.host.io().spawn(drive(batch_loop, termination.clone()));
        let control = JobControl {
            tx: control_tx,
            status,
            stop: stop.clone(),
            runtime: self.host.wasm().clone(),
            listeners: self.listeners.clone(),
        };
        Ok(RunningJob {
            stop,
            termination,
            control,
        })
    }

    /// One line per stream: the pipeline's identity in checkpoints and
    /// changelogs.
    fn describe(&self, builder: &Builder, interval_ms: i64) -> Vec<String> {
        let descriptions: Vec<String> = builder.sources.iter().map(|(_, s)| s.describe()).collect();
        let mut pipeline = vec![format!(
            "job = interval {interval_ms} ms, partitions {}",
            self.config.partitions
        )];
        pipeline.extend(builder.graph.describe(&descriptions));
        pipeline
    }

    /// A scaled-out job's set-up, checked: one Kafka source of one topic,
    /// no checkpoint directory (the changelog is the checkpoint), outputs
    /// that tell tasks apart, and a graph that regroups nothing across
    /// partitions.
    fn scale_out(
        &self,
        builder: &Builder,
        interval_ms: i64,
    ) -> Result<Option<super::scale_out::ScaleOut>, BuildError> {
        let Some(config) = &self.config.scale_out else {
            return Ok(None);
        };
        let (spec, keyed) = self.scale_out_checked(builder)?;
        let fingerprint = crate::kafka::changelog::Fingerprint {
            job: self.config.job_name.clone(),
            pipeline: self.describe(builder, interval_ms),
            modules: self
                .plugins
                .borrow()
                .iter()
                .map(|(n, (h, _))| (n.clone(), h.clone()))
                .collect(),
        };
        Ok(Some(super::scale_out::ScaleOut::new(
            config.clone(),
            spec.endpoint.clone(),
            spec.group.clone(),
            spec.topics[0].clone(),
            fingerprint,
            keyed,
        )))
    }

    /// What `weir validate` checks of a scaled-out job before it runs (the
    /// same as [`StreamingContext::start`]).
    pub(crate) fn check_scale_out(&self) -> Result<(), BuildError> {
        if self.config.scale_out.is_none() {
            return Ok(());
        }
        self.scale_out_checked(&self.builder.borrow()).map(|_| ())
    }

    /// The Kafka source of a scaled-out job, and whether it groups by key;
    /// or why it cannot be scaled out.
    fn scale_out_checked<'b>(
        &self,
        builder: &'b Builder,
    ) -> Result<(&'b KafkaSourceSpec, bool), BuildError> {
        let refuse = |m: String| Err(BuildError::ScaleOut(m));
        let spec = match &builder.sources[..] {
            [(_, SourceSpec::Kafka(spec))] if spec.topics.len() == 1 => spec,
            [(name, SourceSpec::Kafka(_))] => {
                return refuse(format!(
                    "source `{name}` reads several topics; a scaled-out job reads one (its partitions are the tasks)"
                ))
            }
            _ => {
                return refuse(
                    "a scaled-out job reads exactly one source, of type kafka (its partitions are the tasks)"
                        .into(),
                )
            }
        };
        if self.config.checkpoint.is_some() {
            return refuse(
                "a scaled-out job keeps its state in the changelog topic: remove [job] checkpoint"
                    .into(),
            );
        }
        if self.config.backpressure.is_some() {
            return refuse(
                "backpressure is not available to scaled-out jobs yet: use max_rate_per_partition"
                    .into(),
            );
        }
        for (_, name, out) in &builder.outputs {
            match out {
                OutputSpec::TextFiles { .. } => {
                    return refuse(format!(
                        "output `{name}` writes files, which instances would overwrite for one another: write to a Kafka topic"
                    ))
                }
                OutputSpec::Kafka(k) if k.delivery != crate::output::kafka::Delivery::Idempotent => {
                    return refuse(format!(
                        "output `{name}`: a scaled-out job writes with delivery = \"idempotent\""
                    ))
                }
                _ => {}
            }
        }
        let keyed = super::scale_out::check_graph(&builder.graph).map_err(BuildError::ScaleOut)?;
        Ok((spec, keyed))
    }

    /// The checkpoint directory, recognised by the pipeline's description.
    fn open_checkpoint(
        &self,
        builder: &Builder,
        interval_ms: i64,
    ) -> Result<Option<(Checkpointer, crate::checkpoint::Recovery)>, BuildError> {
        let cfg = &self.config;
        let Some(ck) = &cfg.checkpoint else {
            return Ok(None);
        };
        let pipeline = self.describe(builder, interval_ms);
        let modules = self.plugins.borrow().clone();
        Checkpointer::open(
            ck.clone(),
            &cfg.job_name,
            pipeline,
            modules,
            cfg.fresh_start,
        )
        .map(Some)
        .map_err(BuildError::Checkpoint)
    }

    /// Starts every source (socket receivers on the host's runtime). With
    /// `replay_only`, sources only rebuild logged batches: sockets do not
    /// connect, file sources do not list their directory.
    fn start_sources(
        &self,
        specs: Vec<(Arc<str>, SourceSpec)>,
        block_log: Option<Arc<crate::checkpoint::BlockLog>>,
        interval_ms: i64,
        now: crate::receiver::Now,
        replay_only: bool,
    ) -> Result<Vec<Box<dyn Source>>, BuildError> {
        let cfg = &self.config;
        let block_ms = cfg.block_interval.as_millis().clamp(1, interval_ms as u128) as u64;
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        for (index, (name, spec)) in specs.into_iter().enumerate() {
            sources.push(match spec {
                SourceSpec::Socket { .. } if replay_only => {
                    Box::new(SocketSource::logged_only(self.host.io()))
                }
                SourceSpec::Socket { host, port } => Box::new(SocketSource::start(
                    name,
                    SocketConfig {
                        host,
                        port,
                        block_interval: Duration::from_millis(block_ms),
                        max_pending_blocks: cfg.max_pending_blocks,
                        min_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(5),
                        clock: now.clone(),
                        batch_interval_ms: interval_ms,
                        backpressure: cfg.backpressure,
                    },
                    self.host.io(),
                    block_log.clone().map(|l| (l, index as u32)),
                )),
                SourceSpec::Files {
                    dir,
                    include_existing,
                    limits,
                } => {
                    let source =
                        FileSource::new(name, dir, include_existing || replay_only, 50_000, limits)
                            .map_err(BuildError::Receiver)?
                            .with_partitions(cfg.partitions);
                    Box::new(match cfg.backpressure {
                        Some(pid) => source.with_backpressure(pid, interval_ms),
                        None => source,
                    })
                }
                SourceSpec::Generator {
                    kind,
                    rate,
                    seed,
                    words_per_line,
                    vocabulary,
                    limit,
                } => Box::new(
                    GeneratorSource::new(GeneratorConfig {
                        kind,
                        rate,
                        seed,
                        words_per_line,
                        vocabulary,
                        zipf_s: 1.0,
                        block_records: ((rate * block_ms) / 1000).max(1) as usize,
                        batch_records: (rate * interval_ms as u64) / 1000,
                        limit,
                    })
                    .with_partitions(cfg.partitions),
                ),
                SourceSpec::Queue(batches) => Box::new(QueueSource::new(batches)),
                SourceSpec::Kafka(spec) => Box::new(
                    KafkaSource::new(name, spec, interval_ms, cfg.backpressure)
                        .map_err(BuildError::Receiver)?,
                ),
            });
        }

        Ok(sources)
    }

    /// Replays the batches a checkpoint directory recorded, once with the
    /// recorded modules and once with `request.candidate` in place of the
    /// plugin of its name, and compares every stream (see
    /// [`replay`](super::replay)). The context must describe the pipeline
    /// that wrote the checkpoint; the directory is only read and no output
    /// is written.
    pub fn replay(
        self,
        request: &super::replay::ReplayRequest,
    ) -> Result<super::replay::ReplayReport, super::replay::ReplayFailure> {
        use super::replay::{ReplayFailure, Replayer};
        let builder = std::mem::take(&mut *self.builder.borrow_mut());
        let cfg = &self.config;
        let interval_ms = cfg.batch_interval.as_millis().max(1) as i64;
        let recorded = crate::checkpoint::recorded::Recorded::read(&request.dir)?;
        let mut changes = crate::checkpoint::pipeline_changes(
            &recorded.pipeline,
            &self.describe(&builder, interval_ms),
        );
        changes.extend(crate::checkpoint::job_renamed(&recorded.job, &cfg.job_name));
        if !changes.is_empty() {
            return Err(ReplayFailure::PipelineMismatch {
                dir: request.dir.clone(),
                changes,
            });
        }
        let mut outputs: Vec<NodeId> = builder.outputs.iter().map(|(n, _, _)| *n).collect();
        outputs.dedup();
        let now = Arc::new(|| SystemClock.now_ms());
        let sources = self.start_sources(builder.sources, None, interval_ms, now, true)?;
        let executor = || {
            let mut executor = Executor::new(
                builder.graph.clone(),
                cfg.job_name.as_str().into(),
                self.host.pool().clone(),
                cfg.workers,
                cfg.partitions,
                interval_ms,
                cfg.limits,
            );
            // Fused as the run was; every stream kept, to be compared.
            executor.observe(&outputs, true);
            executor
        };
        Replayer {
            recorded,
            sources,
            baseline: executor(),
            candidate: executor(),
            outputs,
            partitions: cfg.partitions,
            wasm: self.host.wasm().clone(),
        }
        .run(request)
    }

    /// Starts the job and waits for it: a convenience for tests and tools.
    pub fn run(self, max_batches: Option<u64>) -> Result<RunSummary, RunError> {
        self.start(max_batches)?
            .await_termination()
            .map_err(RunError::Failed)
    }
}

/// The outputs, with the node each writes.
fn make_outputs(
    job: &str,
    graph: &Graph,
    specs: Vec<(NodeId, Arc<str>, OutputSpec)>,
) -> Vec<(NodeId, Box<dyn Output>)> {
    let mut outputs: Vec<(NodeId, Box<dyn Output>)> = Vec::new();
    for (node, name, spec) in specs {
        let kind = graph.nodes[node].value_kind;
        outputs.push((
            node,
            match spec {
                OutputSpec::Print { num } => Box::new(Print {
                    num,
                    kind,
                    out: Box::new(crate::output::print::Stdout::default()),
                }),
                OutputSpec::TextFiles { prefix, suffix } => {
                    Box::new(TextFiles::open(name, prefix, suffix, kind))
                }
                OutputSpec::ForEach(f) => Box::new(ForEachBatch(f)),
                OutputSpec::Kafka(spec) => Box::new(KafkaOutput::new(job, name, spec, kind)),
            },
        ));
    }

    outputs
}

/// Starting or running a job failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not start.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A batch failed.
    #[error(transparent)]
    Failed(JobFailed),
}

/// A started job.
pub struct RunningJob {
    stop: Arc<StopSignal>,
    termination: Arc<Termination>,
    control: JobControl,
}

/// Drives a job on the host's runtime: begins it (recovery), then for
/// every batch waits for its time (asynchronously: an idle job holds no
/// thread) and runs it on a blocking thread, then ends it and reports how
/// it ended. A panic in weir's code ends the job with an internal error.
async fn drive(batch_loop: BatchLoop, termination: Arc<Termination>) {
    let clock = batch_loop.clock.clone();
    let stop = batch_loop.stop.clone();
    let slots = batch_loop.host.batch_slots().clone();
    let mut lp = batch_loop;
    let mut result;
    (lp, result) = match blocking(&slots, lp, |lp| lp.begin()).await {
        Ok(done) => done,
        Err(failed) => return termination.finish(Err(failed)),
    };
    while result.is_ok() {
        let Some(t) = lp.next_time() else { break };
        if !stop.until(&*clock, t).await {
            break;
        }
        (lp, result) = match blocking(&slots, lp, move |lp| lp.step(t)).await {
            Ok(done) => done,
            Err(failed) => return termination.finish(Err(failed)),
        };
    }
    // Ended on a blocking thread, and reported there: ending may drop the
    // last handle of a host of the job's own, and with it this runtime.
    let ended = tokio::task::spawn_blocking(move || {
        termination.finish(lp.end(result));
        // Nothing of this job trims any more: what it left for reuse goes.
        weir_abi::recycle::clear();
    });
    let _ = ended.await;
}

/// Runs `f` on `lp` on a blocking thread, once one of the host's batch
/// slots is free, and gives `lp` back.
async fn blocking(
    slots: &Arc<tokio::sync::Semaphore>,
    mut lp: BatchLoop,
    f: impl FnOnce(&mut BatchLoop) -> Result<(), EngineError> + Send + 'static,
) -> Result<(BatchLoop, Result<(), EngineError>), JobFailed> {
    let _slot = slots.acquire().await;
    tokio::task::spawn_blocking(move || {
        let r = f(&mut lp);
        (lp, r)
    })
    .await
    .map_err(|e| match e.try_into_panic() {
        Ok(panic) => internal_failure(panic),
        Err(cancelled) => internal_failure(Box::new(cancelled.to_string())),
    })
}

/// How a job ended.
type Ended = Result<RunSummary, JobFailed>;
/// What to run when a job ends.
type OnEnd = Box<dyn FnOnce(Ended) + Send>;

/// Where the job leaves how it ended, or finds who wants to know.
#[derive(Default)]
struct Termination {
    slot: std::sync::Mutex<EndSlot>,
    ended: std::sync::Condvar,
}

enum EndSlot {
    Running(Option<OnEnd>),
    Ended(Option<Ended>),
}

impl Default for EndSlot {
    fn default() -> Self {
        EndSlot::Running(None)
    }
}

impl Termination {
    /// Called once, when the job ends.
    fn finish(&self, result: Ended) {
        let mut slot = self.slot.lock().expect("termination poisoned");
        match std::mem::replace(&mut *slot, EndSlot::Ended(None)) {
            EndSlot::Running(Some(on_end)) => {
                drop(slot);
                on_end(result);
            }
            _ => {
                *slot = EndSlot::Ended(Some(result));
                self.ended.notify_all();
            }
        }
    }
}

/// A failure for a batch that panicked in weir's own code (a bug).
fn internal_failure(panic: Box<dyn std::any::Any + Send>) -> JobFailed {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
    JobFailed {
        error: EngineError::Internal {
            thread: "batch clock",
            message: msg.unwrap_or_default(),
        },
        summary: RunSummary {
            batches: 0,
            last_batch_ms: None,
            stats: vec![],
        },
    }
}

/// Where the answer to a queued swap or rollback arrives.
pub type SwapReply = std::sync::mpsc::Receiver<Result<SwapReport, SwapError>>;

/// Controls a running job from any thread: status, hot swap, rollback,
/// stop. Cheap to clone.
#[derive(Clone)]
pub struct JobControl {
    tx: std::sync::mpsc::Sender<Control>,
    status: Arc<std::sync::Mutex<JobStatus>>,
    stop: Arc<StopSignal>,
    runtime: Runtime,
    listeners: Listeners,
}

impl JobControl {
    /// Adds a listener to the running job's events, from its next event on.
    pub fn add_listener(&self, listener: Arc<dyn StreamingListener>) {
        self.listeners.add(listener);
    }

    /// A snapshot of the job's status.
    pub fn status(&self) -> JobStatus {
        self.status.lock().expect("status poisoned").clone()
    }

    /// Replaces the module behind plugin `name` at the next batch boundary
    /// and waits until it is applied or refused. The new module is checked
    /// first (ABI version at load; here the functions the job calls, their
    /// kinds, and the state version — migrating state through the new
    /// module's `migrate:state` when it changes). On refusal the job keeps
    /// its module.
    pub fn swap_plugin(&self, name: &str, new: Plugin) -> Result<SwapReport, SwapError> {
        self.request_swap(name, new)?
            .recv()
            .map_err(|_| SwapError::NotRunning)?
    }

    /// Queues a swap without waiting: it applies at the next batch
    /// boundary; the answer arrives on the returned channel.
    pub fn request_swap(&self, name: &str, new: Plugin) -> Result<SwapReply, SwapError> {
        let (reply, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Control::Swap {
                plugin: name.into(),
                module: new,
                reply,
            })
            .map_err(|_| SwapError::NotRunning)?;
        Ok(rx)
    }

    /// Queues a rollback without waiting (see [`JobControl::request_swap`]).
    pub fn request_rollback(&self, name: &str) -> Result<SwapReply, SwapError> {
        let (reply, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Control::Rollback {
                plugin: name.into(),
                reply,
            })
            .map_err(|_| SwapError::NotRunning)?;
        Ok(rx)
    }

    /// Loads `bytes` as the new module of plugin `name` and swaps it in.
    pub fn swap_module(&self, name: &str, bytes: &[u8]) -> Result<SwapReport, SwapError> {
        let plugin = self.runtime.load_bytes(name, bytes)?;
        self.swap_plugin(name, plugin)
    }

    /// Goes back to the module plugin `name` ran before its last swap.
    pub fn rollback(&self, name: &str) -> Result<SwapReport, SwapError> {
        self.request_rollback(name)?
            .recv()
            .map_err(|_| SwapError::NotRunning)?
    }

    /// Requests a graceful stop.
    pub fn stop(&self) {
        self.stop.request();
    }
}

impl RunningJob {
    /// A handle to control the job from other threads.
    pub fn control(&self) -> JobControl {
        self.control.clone()
    }

    /// A handle that stops the job gracefully (after the current batch)
    /// from any thread, e.g. a signal handler.
    pub fn stop_handle(&self) -> Arc<StopSignal> {
        self.stop.clone()
    }

    /// Requests a graceful stop: the current batch finishes and its outputs
    /// are written.
    pub fn stop(&self) {
        self.stop.request();
    }

    /// Waits until the job ends (stopped, batch limit reached, or failed).
    pub fn await_termination(self) -> Result<RunSummary, JobFailed> {
        let mut slot = self.termination.slot.lock().expect("termination poisoned");
        loop {
            if let EndSlot::Ended(result @ Some(_)) = &mut *slot {
                return result.take().expect("matched Some");
            }
            slot = self
                .termination
                .ended
                .wait(slot)
                .expect("termination poisoned");
        }
    }

    /// Runs `on_end` with how the job ended, on the job's last batch thread as it
    /// ends (or now, if it has): a job watched this way needs no thread of
    /// its own waiting for it.
    pub fn on_termination(
        self,
        on_end: impl FnOnce(Result<RunSummary, JobFailed>) + Send + 'static,
    ) {
        let mut slot = self.termination.slot.lock().expect("termination poisoned");
        match std::mem::replace(&mut *slot, EndSlot::Ended(None)) {
            EndSlot::Ended(Some(result)) => {
                drop(slot);
                on_end(result);
            }
            _ => *slot = EndSlot::Running(Some(Box::new(on_end))),
        }
    }
}

/// Arguments of an operator as the library API gives them: parameter key →
/// value, functions by plugin and name.
#[derive(Default)]
struct ApiArgs(std::collections::BTreeMap<&'static str, ArgValue>);

impl ApiArgs {
    fn function(mut self, key: &'static str, plugin: &Plugin, name: &str) -> Self {
        self.0.insert(
            key,
            ArgValue::Function(FunctionRef {
                plugin: plugin.clone(),
                function: name.into(),
            }),
        );
        self
    }

    fn partitions(mut self, p: Option<usize>) -> Self {
        if let Some(p) = p {
            self.0.insert("partitions", ArgValue::Number(p));
        }
        self
    }

    fn number(mut self, key: &'static str, n: usize) -> Self {
        self.0.insert(key, ArgValue::Number(n));
        self
    }

    fn duration(mut self, key: &'static str, d: Option<Duration>) -> Self {
        if let Some(d) = d {
            self.0.insert(key, ArgValue::Duration(d));
        }
        self
    }

    fn window(self, length: Duration, slide: Duration) -> Self {
        self.duration("length", Some(length))
            .duration("slide", Some(slide))
    }

    fn state(mut self, options: StateOptions) -> Self {
        if !options.initial_state.is_empty() {
            self.0
                .insert("initial_state", ArgValue::Pairs(options.initial_state));
        }
        self.partitions(options.partitions)
            .duration("timeout", options.timeout)
    }
}

impl Stream {
    /// Adds operator `desc` reading `inputs` (this stream first) with
    /// `args`, checked against the operator's description: what every API
    /// method and every pipeline `[[stream]]` goes through.
    fn apply(
        &self,
        desc: &'static OpDesc,
        others: &[&Stream],
        args: std::collections::BTreeMap<&'static str, ArgValue>,
    ) -> Result<Stream, BuildError> {
        for o in others {
            self.same_context(o)?;
        }
        let ids: Vec<NodeId> = std::iter::once(self.id)
            .chain(others.iter().map(|o| o.id))
            .collect();
        let stages = {
            let b = self.builder.borrow();
            if b.started {
                return Err(BuildError::AlreadyStarted);
            }
            let inputs: Vec<InputInfo> = ids
                .iter()
                .map(|&i| {
                    let n = &b.graph.nodes[i];
                    InputInfo {
                        name: n.name.clone(),
                        partitions: n.partitions,
                        slide_ms: n.slide_ms,
                        value_kind: n.value_kind,
                        state_partitions: n
                            .op()
                            .filter(|op| op.desc().stateful)
                            .map(|_| n.partitions),
                    }
                })
                .collect();
            if let Some((a, c)) = inputs
                .iter()
                .zip(inputs.iter().skip(1))
                .find(|(a, c)| a.slide_ms != c.slide_ms)
            {
                return Err(BuildError::SlidesDiffer {
                    op: desc.name,
                    a: a.name.clone(),
                    a_ms: a.slide_ms,
                    b: c.name.clone(),
                    b_ms: c.slide_ms,
                });
            }
            let args = Args::check(desc, args, inputs).map_err(|e| match e {
                BuildError::UnknownParam { op, key, .. } => BuildError::UnknownParam {
                    op,
                    key,
                    takers: registry::takers_of(key),
                },
                e => e,
            })?;
            (desc.build)(&args)?
        };
        let mut b = self.builder.borrow_mut();
        let mut inputs = ids;
        let mut last = None;
        for stage in stages {
            let slide = stage.slide_ms.unwrap_or(b.graph.nodes[inputs[0]].slide_ms);
            let name = b.name(None, stage.op.desc().name)?;
            let id = b.graph.add(
                name,
                NodeKind::Op(stage.op),
                std::mem::take(&mut inputs),
                slide,
                stage.partitions,
            );
            inputs = vec![id];
            last = Some(id);
        }
        let id = last.expect("an operator has at least one stage");
        Ok(Stream {
            builder: self.builder.clone(),
            id,
        })
    }

    /// Adds operator `name` of the registry reading this stream and
    /// `others`: the pipeline file's way in.
    pub(crate) fn apply_named(
        &self,
        desc: &'static OpDesc,
        others: &[&Stream],
        args: std::collections::BTreeMap<&'static str, ArgValue>,
    ) -> Result<Stream, BuildError> {
        if !desc.in_pipelines {
            return Err(BuildError::LibraryOnly { op: desc.name });
        }
        self.apply(desc, others, args)
    }

    fn op(&self, name: &str, args: ApiArgs) -> Result<Stream, BuildError> {
        self.op_with(name, &[], args)
    }

    fn op_with(&self, name: &str, others: &[&Stream], args: ApiArgs) -> Result<Stream, BuildError> {
        let desc = registry::find(name).expect("the API names registered operators");
        self.apply(desc, others, args.0)
    }

    fn same_context(&self, other: &Stream) -> Result<(), BuildError> {
        if Rc::ptr_eq(&self.builder, &other.builder) {
            Ok(())
        } else {
            Err(BuildError::DifferentContexts)
        }
    }

    /// The stream's name.
    pub fn name(&self) -> Arc<str> {
        self.builder.borrow().graph.nodes[self.id].name.clone()
    }

    /// The node id in the graph.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// How the host renders this stream's values.
    pub fn value_kind(&self) -> ValueKind {
        self.builder.borrow().graph.nodes[self.id].value_kind
    }

    /// Renames the most recent stream (`lines.flat_map(...)?.named("words")`).
    pub fn named(self, name: &str) -> Result<Stream, BuildError> {
        let mut b = self.builder.borrow_mut();
        let old = b.graph.nodes[self.id].name.clone();
        if &*old != name {
            if b.names.contains(name) {
                return Err(BuildError::DuplicateName { name: name.into() });
            }
            b.names.remove(&old);
            b.names.insert(name.into());
            b.graph.nodes[self.id].name = name.into();
        }
        drop(b);
        Ok(self)
    }

    /// One record out per record in.
    pub fn map(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.op(
            "map",
            ApiArgs::default().function("function", plugin, function),
        )
    }

    /// Zero or more records out per record in.
    pub fn flat_map(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.op(
            "flat_map",
            ApiArgs::default().function("function", plugin, function),
        )
    }

    /// The records the function keeps (it returns at most one per record).
    pub fn filter(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.op(
            "filter",
            ApiArgs::default().function("function", plugin, function),
        )
    }

    /// The function sees whole partitions, even empty ones (Spark's
    /// `mapPartitions` / `transform`).
    pub fn map_partitions(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.op(
            "map_partitions",
            ApiArgs::default().function("function", plugin, function),
        )
    }

    /// Spark's `transform` over this stream and `others`: the function is
    /// called with partition `p` of every stream's batch at once, each
    /// value prefixed with its stream's number (`u32` little-endian, this
    /// stream 0). With no others, the same as [`Stream::map_partitions`].
    pub fn transform(
        &self,
        others: &[&Stream],
        plugin: &Plugin,
        function: &str,
    ) -> Result<Stream, BuildError> {
        self.op_with(
            "transform",
            others,
            ApiArgs::default().function("function", plugin, function),
        )
    }

    /// Spark's `transformWith`: a function over partition `p` of this
    /// stream's and `other`'s batches, values tagged 0 and 1.
    pub fn transform_with(
        &self,
        other: &Stream,
        plugin: &Plugin,
        function: &str,
    ) -> Result<Stream, BuildError> {
        self.op_with(
            "transform_with",
            &[other],
            ApiArgs::default().function("function", plugin, function),
        )
    }

    /// Spark's `glom`: one record per partition holding the canonical list
    /// of its elements.
    pub fn glom(&self) -> Result<Stream, BuildError> {
        self.op("glom", ApiArgs::default())
    }

    /// Keeps this stream's batches of the last `duration` for
    /// [`Slicer::slice`] (Spark's `remember` and `slice`). The returned
    /// stream is this one, unchanged.
    pub fn remember(&self, duration: Duration) -> Result<(Stream, Slicer), BuildError> {
        let stream = self.op(
            "slice",
            ApiArgs::default().duration("remember", Some(duration)),
        )?;
        let slicer = {
            let b = self.builder.borrow();
            b.graph.nodes[stream.id]
                .op()
                .and_then(|op| op.slicer())
                .expect("slice remembers")
        };
        Ok((stream, slicer))
    }

    /// Same records spread evenly over `partitions` partitions.
    pub fn repartition(&self, partitions: usize) -> Result<Stream, BuildError> {
        self.op(
            "repartition",
            ApiArgs::default().partitions(Some(partitions)),
        )
    }

    /// The records of this stream and of `others`.
    pub fn union(&self, others: &[&Stream]) -> Result<Stream, BuildError> {
        self.op_with("union", others, ApiArgs::default())
    }

    /// One record per batch: the number of records (`i64`).
    pub fn count(&self) -> Result<Stream, BuildError> {
        self.op("count", ApiArgs::default())
    }

    /// One record per non-empty batch: all values combined.
    pub fn reduce(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.op(
            "reduce",
            ApiArgs::default().function("function", plugin, function),
        )
    }

    /// `(element, count)` for every distinct element.
    pub fn count_by_value(&self, partitions: Option<usize>) -> Result<Stream, BuildError> {
        self.op("count_by_value", ApiArgs::default().partitions(partitions))
    }

    /// Values of each key combined with an associative reduce function.
    pub fn reduce_by_key(
        &self,
        plugin: &Plugin,
        function: &str,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        self.op(
            "reduce_by_key",
            ApiArgs::default()
                .function("function", plugin, function)
                .partitions(partitions),
        )
    }

    /// Values of each key as a list.
    pub fn group_by_key(&self, partitions: Option<usize>) -> Result<Stream, BuildError> {
        self.op("group_by_key", ApiArgs::default().partitions(partitions))
    }

    /// Joins with `other` by key.
    pub fn join_with(
        &self,
        kind: JoinKind,
        other: &Stream,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        let name = match kind {
            JoinKind::Inner => "join",
            JoinKind::LeftOuter => "left_outer_join",
            JoinKind::RightOuter => "right_outer_join",
            JoinKind::FullOuter => "full_outer_join",
        };
        self.op_with(name, &[other], ApiArgs::default().partitions(partitions))
    }

    /// Inner join.
    pub fn join(&self, other: &Stream, partitions: Option<usize>) -> Result<Stream, BuildError> {
        self.join_with(JoinKind::Inner, other, partitions)
    }

    /// Left outer join.
    pub fn left_outer_join(
        &self,
        other: &Stream,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        self.join_with(JoinKind::LeftOuter, other, partitions)
    }

    /// Right outer join.
    pub fn right_outer_join(
        &self,
        other: &Stream,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        self.join_with(JoinKind::RightOuter, other, partitions)
    }

    /// Full outer join.
    pub fn full_outer_join(
        &self,
        other: &Stream,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        self.join_with(JoinKind::FullOuter, other, partitions)
    }

    /// Per key, the values of both streams.
    pub fn cogroup(&self, other: &Stream, partitions: Option<usize>) -> Result<Stream, BuildError> {
        self.op_with(
            "cogroup",
            &[other],
            ApiArgs::default().partitions(partitions),
        )
    }

    /// The union of the batches in the last `length`, every `slide`
    /// (Spark's `window`); the batch time is the window end.
    pub fn window(&self, length: Duration, slide: Duration) -> Result<Stream, BuildError> {
        self.op("window", ApiArgs::default().window(length, slide))
    }

    /// The number of records in the window: one record, empty key, `i64`.
    /// Incremental; as in Spark, nothing is emitted before the first record
    /// arrives, and an empty window gives 0 after that.
    pub fn count_by_window(&self, length: Duration, slide: Duration) -> Result<Stream, BuildError> {
        self.op("count_by_window", ApiArgs::default().window(length, slide))
    }

    /// All values in the window combined (one record, empty key).
    pub fn reduce_by_window(
        &self,
        plugin: &Plugin,
        function: &str,
        length: Duration,
        slide: Duration,
    ) -> Result<Stream, BuildError> {
        self.op(
            "reduce_by_window",
            ApiArgs::default()
                .function("function", plugin, function)
                .window(length, slide),
        )
    }

    /// Values of each key combined over the window, recomputed from the
    /// per-batch reductions at every slide.
    pub fn reduce_by_key_and_window(
        &self,
        plugin: &Plugin,
        function: &str,
        length: Duration,
        slide: Duration,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        self.op(
            "reduce_by_key_and_window",
            ApiArgs::default()
                .function("function", plugin, function)
                .window(length, slide)
                .partitions(partitions),
        )
    }

    /// Values of each key combined over the window incrementally: the
    /// previous window, minus the batches that left (`inverse`), plus the
    /// batches that entered. `filter` (a map function used as a filter)
    /// drops entries, e.g. counts that fell to zero.
    #[allow(clippy::too_many_arguments)]
    pub fn reduce_by_key_and_window_inv(
        &self,
        plugin: &Plugin,
        function: &str,
        inverse: &str,
        length: Duration,
        slide: Duration,
        partitions: Option<usize>,
        filter: Option<&str>,
    ) -> Result<Stream, BuildError> {
        let mut args = ApiArgs::default()
            .function("function", plugin, function)
            .function("inverse", plugin, inverse)
            .window(length, slide)
            .partitions(partitions);
        if let Some(f) = filter {
            args = args.function("filter", plugin, f);
        }
        self.op("reduce_by_key_and_window", args)
    }

    /// `(element, count)` over the window, incrementally; elements whose
    /// count falls to zero are dropped.
    pub fn count_by_value_and_window(
        &self,
        length: Duration,
        slide: Duration,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        self.op(
            "count_by_value_and_window",
            ApiArgs::default()
                .window(length, slide)
                .partitions(partitions),
        )
    }

    /// Spark's `updateStateByKey`: every batch, every key with new values
    /// or state is passed to the update function; the stream is the state
    /// after the batch, `(key, state)` in key order.
    pub fn update_state_by_key(
        &self,
        plugin: &Plugin,
        function: &str,
        options: StateOptions,
    ) -> Result<Stream, BuildError> {
        self.op(
            "update_state_by_key",
            ApiArgs::default()
                .function("function", plugin, function)
                .state(options),
        )
    }

    /// Spark's `mapWithState`: only keys with new values — and keys idle
    /// longer than `timeout` (last update strictly before batch time −
    /// timeout, as Spark), once, with the timeout flag — are passed to the
    /// function; the stream is the records it emits.
    pub fn map_with_state(
        &self,
        plugin: &Plugin,
        function: &str,
        options: StateOptions,
    ) -> Result<Stream, BuildError> {
        self.op(
            "map_with_state",
            ApiArgs::default()
                .function("function", plugin, function)
                .state(options),
        )
    }

    /// The `n` records with the largest counts, largest first (ties by
    /// key), in one partition: Spark's `transform(rdd => rdd.sortBy(..).take(n))`
    /// for streams of counts (`count_by_value`, `count_by_value_and_window`).
    pub fn top(&self, n: usize) -> Result<Stream, BuildError> {
        self.op("top", ApiArgs::default().number("n", n))
    }

    /// The state of an `update_state_by_key` / `map_with_state` stream
    /// after every batch, as `(key, state)` (Spark's `stateSnapshots`).
    pub fn state_snapshots(&self) -> Result<Stream, BuildError> {
        self.op("state_snapshots", ApiArgs::default())
    }

    fn output(&self, name: Option<&str>, spec: OutputSpec) -> Result<(), BuildError> {
        let mut b = self.builder.borrow_mut();
        if b.started {
            return Err(BuildError::AlreadyStarted);
        }
        let name: Arc<str> = name.map_or_else(
            || format!("output-{}", b.outputs.len() + 1).into(),
            Into::into,
        );
        b.outputs.push((self.id, name, spec));
        Ok(())
    }

    /// Prints the first `num` records of every batch.
    pub fn print(&self, num: usize) -> Result<(), BuildError> {
        self.output(None, OutputSpec::Print { num })
    }

    /// Writes every batch to `prefix-<time ms>[.suffix]/part-NNNNN`.
    pub fn save_as_text_files(
        &self,
        prefix: impl Into<PathBuf>,
        suffix: Option<&str>,
    ) -> Result<(), BuildError> {
        self.output(
            None,
            OutputSpec::TextFiles {
                prefix: prefix.into(),
                suffix: suffix.map(Into::into),
            },
        )
    }

    /// Writes every batch to text files, under an output name.
    pub fn save_as_text_files_named(
        &self,
        name: &str,
        prefix: impl Into<PathBuf>,
        suffix: Option<&str>,
    ) -> Result<(), BuildError> {
        self.output(
            Some(name),
            OutputSpec::TextFiles {
                prefix: prefix.into(),
                suffix: suffix.map(Into::into),
            },
        )
    }

    /// Calls `f` with every batch (Spark's `foreachRDD`).
    pub fn foreach_batch(
        &self,
        f: impl Fn(i64, &Partitions) -> Result<(), EngineError> + Send + Sync + 'static,
    ) -> Result<(), BuildError> {
        self.output(None, OutputSpec::ForEach(Arc::new(f)))
    }

    /// Writes every batch to a Kafka topic in one transaction, as output
    /// `name` (its transactional id and record headers name it).
    pub fn to_kafka(&self, name: &str, spec: KafkaOutputSpec) -> Result<(), BuildError> {
        self.output(Some(name), OutputSpec::Kafka(spec))
    }
}
