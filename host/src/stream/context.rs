//! The library API, shaped after Spark Streaming: a [`StreamingContext`]
//! creates input streams; [`Stream`] methods create derived streams and
//! outputs; `start` / `await_termination` / `stop` run the job.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use weir_abi::{FunctionKind, RecordBatch};

use super::executor::{Executor, SwapError, SwapReport};
use super::graph::{
    Combiner, FunctionRef, Graph, JoinKind, MapFlavor, NodeId, Op, StateMode, StateSpec,
    WindowFilter, WindowedReduce,
};
use crate::checkpoint::{CheckpointConfig, Checkpointer};
use crate::error::{BuildError, EngineError};
use crate::ops::Partitions;
use crate::output::print::Print;
use crate::output::stats::StatsFile;
use crate::output::text_files::TextFiles;
use crate::output::{BatchFn, ForEachBatch, Output};
use crate::receiver::files::FileSource;
use crate::receiver::generator::{GeneratorConfig, GeneratorKind, GeneratorSource};
use crate::receiver::queue::QueueSource;
use crate::receiver::socket::{SocketConfig, SocketSource};
use crate::receiver::Source;
use crate::scheduler::{
    BatchLoop, Clock, Control, JobFailed, JobStatus, RunSummary, SimulatedClock, StopSignal,
    SystemClock,
};
use crate::wasm::{Limits, Plugin, Runtime, RuntimeConfig};

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
    /// Show a status line on stderr when it is a terminal.
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
            return Err(BuildError::Invalid(
                "the context has already started: define every stream and output before start"
                    .into(),
            ));
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
            return Err(BuildError::Invalid(format!(
                "two streams are named `{name}`; stream names must be unique"
            )));
        }
        Ok(name)
    }
}

/// The entry point of a weir job: configuration, plugins, input streams.
pub struct StreamingContext {
    config: StreamingConfig,
    runtime: Runtime,
    builder: Rc<RefCell<Builder>>,
    /// Loaded plugins: name → (module hash, file), for checkpoints.
    plugins: RefCell<BTreeMap<String, (String, PathBuf)>>,
}

/// A stream of record batches: what Spark calls a DStream.
#[derive(Clone)]
pub struct Stream {
    builder: Rc<RefCell<Builder>>,
    id: NodeId,
    partitions: usize,
}

impl StreamingContext {
    /// A context with its own wasm runtime.
    pub fn new(config: StreamingConfig) -> Result<Self, BuildError> {
        let runtime = Runtime::new(&RuntimeConfig::default())
            .map_err(|e| BuildError::Start(format!("wasm runtime: {e:#}")))?;
        Self::with_runtime(config, runtime)
    }

    /// A context sharing an existing runtime (and its module cache).
    pub fn with_runtime(config: StreamingConfig, runtime: Runtime) -> Result<Self, BuildError> {
        if config.batch_interval.is_zero() || config.partitions == 0 || config.workers == 0 {
            return Err(BuildError::Invalid(
                "batch interval, partitions and workers must all be above zero".into(),
            ));
        }
        Ok(StreamingContext {
            config,
            runtime,
            builder: Rc::default(),
            plugins: RefCell::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StreamingConfig {
        &self.config
    }

    /// The wasm runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Loads a plugin module (compiled once per content).
    pub fn load_plugin(&self, path: impl AsRef<Path>) -> Result<Plugin, BuildError> {
        let plugin = self.runtime.load_file(path.as_ref())?;
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
        let plugin = self.runtime.load_bytes(name, &bytes)?;
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
        let id = b.graph.add(name, Op::Source(index), vec![], interval_ms);
        Ok(Stream {
            builder: self.builder.clone(),
            id,
            partitions: self.config.partitions,
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
                return Err(BuildError::Invalid(
                    "the job has no output: add print, save_as_text_files or foreach_batch to a stream".into(),
                ));
            }
            b.started = true;
            Builder {
                graph: b.graph.clone(),
                sources: std::mem::take(&mut b.sources),
                outputs: std::mem::take(&mut b.outputs),
                ..Builder::default()
            }
        };
        if builder.outputs.is_empty() {
            return Err(BuildError::Invalid(
                "the job has no output: add print, save_as_text_files or foreach_batch to a stream"
                    .into(),
            ));
        }
        let cfg = &self.config;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weir-receiver")
            .enable_all()
            .build()
            .map_err(|e| BuildError::Start(format!("receiver runtime: {e}")))?;
        let interval_ms = cfg.batch_interval.as_millis().max(1) as i64;
        let block_ms = cfg.block_interval.as_millis().clamp(1, interval_ms as u128) as u64;

        let descriptions: Vec<String> = builder.sources.iter().map(|(_, s)| s.describe()).collect();
        let checkpointer = match &cfg.checkpoint {
            Some(ck) => {
                let mut pipeline = vec![format!(
                    "job = interval {interval_ms} ms, partitions {}",
                    cfg.partitions
                )];
                pipeline.extend(builder.graph.describe(&descriptions));
                let modules = self.plugins.borrow().clone();
                Some(
                    Checkpointer::open(
                        ck.clone(),
                        &cfg.job_name,
                        pipeline,
                        modules,
                        cfg.fresh_start,
                    )
                    .map_err(BuildError::Checkpoint)?,
                )
            }
            None => None,
        };
        let block_log = checkpointer.as_ref().and_then(|(c, _)| c.block_log());
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        for (index, (name, spec)) in builder.sources.into_iter().enumerate() {
            sources.push(match spec {
                SourceSpec::Socket { host, port } => Box::new(SocketSource::start(
                    name,
                    SocketConfig {
                        host,
                        port,
                        block_interval: Duration::from_millis(block_ms),
                        max_pending_blocks: cfg.max_pending_blocks,
                        min_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(5),
                    },
                    tokio.handle(),
                    block_log.clone().map(|l| (l, index as u32)),
                )),
                SourceSpec::Files {
                    dir,
                    include_existing,
                } => Box::new(
                    FileSource::new(name, dir, include_existing, 50_000)
                        .map_err(|e| BuildError::Start(e.to_string()))?,
                ),
                SourceSpec::Generator {
                    kind,
                    rate,
                    seed,
                    words_per_line,
                    vocabulary,
                    limit,
                } => Box::new(GeneratorSource::new(GeneratorConfig {
                    kind,
                    rate,
                    seed,
                    words_per_line,
                    vocabulary,
                    zipf_s: 1.0,
                    block_records: ((rate * block_ms) / 1000).max(1) as usize,
                    batch_records: (rate * interval_ms as u64) / 1000,
                    limit,
                })),
                SourceSpec::Queue(batches) => Box::new(QueueSource::new(batches)),
            });
        }

        let mut outputs: Vec<(NodeId, Box<dyn Output>)> = Vec::new();
        for (node, name, spec) in builder.outputs {
            let kind = builder.graph.nodes[node].value_kind;
            outputs.push((
                node,
                match spec {
                    OutputSpec::Print { num } => Box::new(Print {
                        num,
                        kind,
                        out: Box::new(std::io::stdout()),
                    }),
                    OutputSpec::TextFiles { prefix, suffix } => Box::new(TextFiles {
                        name,
                        prefix,
                        suffix,
                        kind,
                    }),
                    OutputSpec::ForEach(f) => Box::new(ForEachBatch(f)),
                },
            ));
        }

        let stats_file =
            match &cfg.stats_file {
                Some(p) => Some(StatsFile::open(p).map_err(|e| {
                    BuildError::Start(format!("statistics file {}: {e}", p.display()))
                })?),
                None => None,
            };
        let executor = Executor::new(
            Arc::new(builder.graph),
            cfg.job_name.as_str().into(),
            cfg.workers,
            cfg.partitions,
            interval_ms,
            cfg.limits,
        )
        .map_err(|e| BuildError::Start(format!("worker pool: {e}")))?;
        let clock: Arc<dyn Clock> = match cfg.clock {
            ClockMode::System => Arc::new(SystemClock),
            ClockMode::Simulated { start_ms } => Arc::new(SimulatedClock::new(start_ms)),
        };
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
            progress: cfg.progress,
            clock,
            stop: stop.clone(),
            checkpoint: checkpointer,
            runtime: self.runtime.clone(),
            control: Some(control_rx),
            status: status.clone(),
            max_retries: cfg.max_retries,
            max_state_bytes: cfg.max_state_bytes,
        };
        let thread = std::thread::Builder::new()
            .name("weir-batch-clock".into())
            .spawn(move || batch_loop.run())
            .map_err(|e| BuildError::Start(format!("batch thread: {e}")))?;
        let control = JobControl {
            tx: control_tx,
            status,
            stop: stop.clone(),
            runtime: self.runtime.clone(),
        };
        Ok(RunningJob {
            stop,
            thread: Some(thread),
            _receivers: tokio,
            control,
        })
    }

    /// Starts the job and waits for it: a convenience for tests and tools.
    pub fn run(self, max_batches: Option<u64>) -> Result<RunSummary, RunError> {
        self.start(max_batches)?
            .await_termination()
            .map_err(RunError::Failed)
    }
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
    thread: Option<JoinHandle<Result<RunSummary, JobFailed>>>,
    _receivers: tokio::runtime::Runtime,
    control: JobControl,
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
}

impl JobControl {
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
        let plugin = self
            .runtime
            .load_bytes(name, bytes)
            .map_err(|e| SwapError::Load(e.to_string()))?;
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
    pub fn await_termination(mut self) -> Result<RunSummary, JobFailed> {
        let thread = self.thread.take().expect("joined once");
        let result = thread.join().unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(JobFailed {
                error: EngineError::Source {
                    source_name: "batch clock".into(),
                    message: format!("internal error: {}", msg.unwrap_or_default()),
                },
                summary: RunSummary {
                    batches: 0,
                    last_batch_ms: None,
                    stats: vec![],
                },
            })
        });
        self._receivers.shutdown_background();
        result
    }
}

impl Stream {
    fn derive(
        &self,
        name: Option<&str>,
        op: Op,
        inputs: Vec<NodeId>,
        partitions: usize,
    ) -> Result<Stream, BuildError> {
        self.derive_sliding(name, op, inputs, partitions, None)
    }

    /// Adds a node. Its slide is `slide_ms` (windows) or its inputs' slide,
    /// which must agree (Spark requires the same for unions and joins).
    fn derive_sliding(
        &self,
        name: Option<&str>,
        op: Op,
        inputs: Vec<NodeId>,
        partitions: usize,
        slide_ms: Option<i64>,
    ) -> Result<Stream, BuildError> {
        let mut b = self.builder.borrow_mut();
        let slides: Vec<(Arc<str>, i64)> = inputs
            .iter()
            .map(|&i| (b.graph.nodes[i].name.clone(), b.graph.nodes[i].slide_ms))
            .collect();
        if let Some(((a, sa), (c, sc))) = slides
            .iter()
            .zip(slides.iter().skip(1))
            .find(|((_, x), (_, y))| x != y)
        {
            return Err(BuildError::Invalid(format!(
                "{} combines `{a}` (a batch every {sa} ms) with `{c}` (every {sc} ms); inputs must slide together",
                op.name()
            )));
        }
        let slide = slide_ms.unwrap_or(slides[0].1);
        let name = b.name(name, op.name())?;
        let id = b.graph.add(name, op, inputs, slide);
        Ok(Stream {
            builder: self.builder.clone(),
            id,
            partitions,
        })
    }

    fn slide_ms(&self) -> i64 {
        self.builder.borrow().graph.nodes[self.id].slide_ms
    }

    /// Checks window length and slide against this stream's slide.
    fn window_params(
        &self,
        op: &str,
        length: Duration,
        slide: Duration,
    ) -> Result<(i64, i64), BuildError> {
        let (length_ms, slide_ms, base) = (
            length.as_millis() as i64,
            slide.as_millis() as i64,
            self.slide_ms(),
        );
        if length_ms <= 0 || slide_ms <= 0 || length_ms % base != 0 || slide_ms % base != 0 {
            return Err(BuildError::Invalid(format!(
                "{op} on `{}`: window length {length_ms} ms and slide {slide_ms} ms must both be positive multiples of \
                 the stream's batch interval, {base} ms",
                self.name()
            )));
        }
        Ok((length_ms, slide_ms))
    }

    fn windowed(
        &self,
        op: &'static str,
        input: &Stream,
        spec: WindowedReduce,
    ) -> Result<Stream, BuildError> {
        let _ = op;
        let (partitions, slide) = (spec.partitions, spec.slide_ms);
        input.derive_sliding(
            None,
            Op::ReduceByKeyAndWindow(Box::new(spec)),
            vec![input.id],
            partitions,
            Some(slide),
        )
    }

    /// The union of the batches in the last `length`, every `slide`
    /// (Spark's `window`); the batch time is the window end.
    pub fn window(&self, length: Duration, slide: Duration) -> Result<Stream, BuildError> {
        let (length_ms, slide_ms) = self.window_params("window", length, slide)?;
        self.derive_sliding(
            None,
            Op::Window {
                length_ms,
                slide_ms,
            },
            vec![self.id],
            self.partitions,
            Some(slide_ms),
        )
    }

    /// The number of records in the window: one record, empty key, `i64`.
    /// Incremental: per-batch counts are added and subtracted.
    pub fn count_by_window(&self, length: Duration, slide: Duration) -> Result<Stream, BuildError> {
        let (length_ms, slide_ms) = self.window_params("count_by_window", length, slide)?;
        let counts = self.count()?;
        let spec = WindowedReduce {
            combine: Combiner::SumI64,
            inverse: Some(Combiner::SubI64),
            filter: None,
            length_ms,
            slide_ms,
            partitions: 1,
            counts: true,
        };
        self.windowed("count_by_window", &counts, spec)
    }

    /// All values in the window combined (one record, empty key).
    pub fn reduce_by_window(
        &self,
        plugin: &Plugin,
        function: &str,
        length: Duration,
        slide: Duration,
    ) -> Result<Stream, BuildError> {
        let (length_ms, slide_ms) = self.window_params("reduce_by_window", length, slide)?;
        let func = self.function("reduce_by_window", plugin, function, FunctionKind::Reduce)?;
        let per_batch = self.reduce(plugin, function)?;
        let spec = WindowedReduce {
            combine: Combiner::Plugin(func),
            inverse: None,
            filter: None,
            length_ms,
            slide_ms,
            partitions: 1,
            counts: false,
        };
        self.windowed("reduce_by_window", &per_batch, spec)
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
        let (length_ms, slide_ms) =
            self.window_params("reduce_by_key_and_window", length, slide)?;
        let func = self.function(
            "reduce_by_key_and_window",
            plugin,
            function,
            FunctionKind::Reduce,
        )?;
        let spec = WindowedReduce {
            combine: Combiner::Plugin(func),
            inverse: None,
            filter: None,
            length_ms,
            slide_ms,
            partitions: self.shuffle_partitions(partitions)?,
            counts: false,
        };
        self.windowed("reduce_by_key_and_window", self, spec)
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
        let op = "reduce_by_key_and_window";
        let (length_ms, slide_ms) = self.window_params(op, length, slide)?;
        let func = self.function(op, plugin, function, FunctionKind::Reduce)?;
        let inv = self.function(op, plugin, inverse, FunctionKind::Reduce)?;
        let filter = filter
            .map(|f| self.function(op, plugin, f, FunctionKind::Map))
            .transpose()?;
        let spec = WindowedReduce {
            combine: Combiner::Plugin(func),
            inverse: Some(Combiner::Plugin(inv)),
            filter: filter.map(WindowFilter::Plugin),
            length_ms,
            slide_ms,
            partitions: self.shuffle_partitions(partitions)?,
            counts: false,
        };
        self.windowed(op, self, spec)
    }

    /// `(element, count)` over the window, incrementally; elements whose
    /// count falls to zero are dropped.
    pub fn count_by_value_and_window(
        &self,
        length: Duration,
        slide: Duration,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        let (length_ms, slide_ms) =
            self.window_params("count_by_value_and_window", length, slide)?;
        let partitions = self.shuffle_partitions(partitions)?;
        let counts = self.count_by_value(Some(partitions))?;
        let spec = WindowedReduce {
            combine: Combiner::SumI64,
            inverse: Some(Combiner::SubI64),
            filter: Some(WindowFilter::NonZeroCount),
            length_ms,
            slide_ms,
            partitions,
            counts: true,
        };
        self.windowed("count_by_value_and_window", &counts, spec)
    }

    fn state_op(
        &self,
        mode: StateMode,
        plugin: &Plugin,
        function: &str,
        options: StateOptions,
    ) -> Result<Stream, BuildError> {
        let op = if mode == StateMode::UpdateStateByKey {
            "update_state_by_key"
        } else {
            "map_with_state"
        };
        let func = self.function(op, plugin, function, FunctionKind::Update)?;
        let partitions = self.shuffle_partitions(options.partitions)?;
        if mode == StateMode::UpdateStateByKey && options.timeout.is_some() {
            return Err(BuildError::Invalid(
                "update_state_by_key has no timeout; use map_with_state".into(),
            ));
        }
        let timeout_ms = match options.timeout {
            Some(t) if t.as_millis() == 0 => {
                return Err(BuildError::Invalid(format!(
                    "{op}: the timeout must be above zero"
                )))
            }
            t => t.map(|t| t.as_millis() as i64),
        };
        let spec = StateSpec {
            func,
            mode,
            timeout_ms,
            partitions,
            initial: options.initial_state,
        };
        self.derive(None, Op::State(Box::new(spec)), vec![self.id], partitions)
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
        self.state_op(StateMode::UpdateStateByKey, plugin, function, options)
    }

    /// Spark's `mapWithState`: only keys with new values — and keys idle
    /// for `timeout`, once, with the timeout flag — are passed to the
    /// function; the stream is the records it emits.
    pub fn map_with_state(
        &self,
        plugin: &Plugin,
        function: &str,
        options: StateOptions,
    ) -> Result<Stream, BuildError> {
        self.state_op(StateMode::MapWithState, plugin, function, options)
    }

    /// The `n` records with the largest counts, largest first (ties by
    /// key), in one partition: Spark's `transform(rdd => rdd.sortBy(..).take(n))`
    /// for streams of counts (`count_by_value`, `count_by_value_and_window`).
    pub fn top(&self, n: usize) -> Result<Stream, BuildError> {
        let kind = self.builder.borrow().graph.nodes[self.id].value_kind;
        if kind != super::graph::ValueKind::Count {
            return Err(BuildError::Invalid(format!(
                "top: `{}` does not hold counts; use it after count_by_value, count_by_value_and_window or count",
                self.name()
            )));
        }
        self.derive(None, Op::Top { n }, vec![self.id], 1)
    }

    /// The state of an `update_state_by_key` / `map_with_state` stream
    /// after every batch, as `(key, state)` (Spark's `stateSnapshots`).
    pub fn state_snapshots(&self) -> Result<Stream, BuildError> {
        let (is_state, partitions) = {
            let b = self.builder.borrow();
            match &b.graph.nodes[self.id].op {
                Op::State(s) => (true, s.partitions),
                _ => (false, 0),
            }
        };
        if !is_state {
            return Err(BuildError::Invalid(format!(
                "state_snapshots: `{}` is not an update_state_by_key or map_with_state stream",
                self.name()
            )));
        }
        self.derive(
            None,
            Op::StateSnapshots { of: self.id },
            vec![self.id],
            partitions,
        )
    }

    fn same_context(&self, other: &Stream) -> Result<(), BuildError> {
        if Rc::ptr_eq(&self.builder, &other.builder) {
            Ok(())
        } else {
            Err(BuildError::Invalid(
                "cannot combine streams of different contexts".into(),
            ))
        }
    }

    fn function(
        &self,
        op: &'static str,
        plugin: &Plugin,
        function: &str,
        kind: FunctionKind,
    ) -> Result<FunctionRef, BuildError> {
        if plugin.has_function(kind, function) {
            return Ok(FunctionRef {
                plugin: plugin.clone(),
                function: function.into(),
            });
        }
        let operator = self.builder.borrow().graph.nodes[self.id].name.clone();
        let have = plugin.kinds_of(function);
        let available: Vec<String> = plugin
            .functions()
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.name.clone())
            .collect();
        let message = if have.is_empty() {
            format!(
                "plugin `{}` has no function `{function}`; its {kind} functions are: {}",
                plugin.name(),
                if available.is_empty() {
                    "(none)".into()
                } else {
                    available.join(", ")
                }
            )
        } else {
            format!(
                "`{}:{function}` is a {} function, but {op} needs a {kind} function",
                plugin.name(),
                have.iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            )
        };
        Err(BuildError::Function {
            input: operator,
            op,
            message,
        })
    }

    /// The stream's name.
    pub fn name(&self) -> Arc<str> {
        self.builder.borrow().graph.nodes[self.id].name.clone()
    }

    /// The node id in the graph.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Renames the most recent stream (`lines.flat_map(...)?.named("words")`).
    pub fn named(self, name: &str) -> Result<Stream, BuildError> {
        let mut b = self.builder.borrow_mut();
        let old = b.graph.nodes[self.id].name.clone();
        if &*old != name {
            if b.names.contains(name) {
                return Err(BuildError::Invalid(format!(
                    "two streams are named `{name}`; stream names must be unique"
                )));
            }
            b.names.remove(&old);
            b.names.insert(name.into());
            b.graph.nodes[self.id].name = name.into();
        }
        drop(b);
        Ok(self)
    }

    fn map_like(
        &self,
        flavor: MapFlavor,
        op: &'static str,
        plugin: &Plugin,
        function: &str,
    ) -> Result<Stream, BuildError> {
        let func = self.function(op, plugin, function, FunctionKind::Map)?;
        self.derive(
            None,
            Op::Map { flavor, func },
            vec![self.id],
            self.partitions,
        )
    }

    /// One record out per record in.
    pub fn map(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.map_like(MapFlavor::Map, "map", plugin, function)
    }

    /// Zero or more records out per record in.
    pub fn flat_map(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.map_like(MapFlavor::FlatMap, "flat_map", plugin, function)
    }

    /// The records the function keeps (it returns at most one per record).
    pub fn filter(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.map_like(MapFlavor::Filter, "filter", plugin, function)
    }

    /// The function sees whole partitions, even empty ones (Spark's
    /// `mapPartitions` / `transform`).
    pub fn map_partitions(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        self.map_like(MapFlavor::MapPartitions, "map_partitions", plugin, function)
    }

    /// Same records spread evenly over `partitions` partitions.
    pub fn repartition(&self, partitions: usize) -> Result<Stream, BuildError> {
        if partitions == 0 {
            return Err(BuildError::Invalid(
                "repartition needs at least one partition".into(),
            ));
        }
        self.derive(
            None,
            Op::Repartition { partitions },
            vec![self.id],
            partitions,
        )
    }

    /// The records of this stream and of `others`.
    pub fn union(&self, others: &[&Stream]) -> Result<Stream, BuildError> {
        let mut inputs = vec![self.id];
        let mut partitions = self.partitions;
        for o in others {
            self.same_context(o)?;
            inputs.push(o.id);
            partitions += o.partitions;
        }
        self.derive(None, Op::Union, inputs, partitions)
    }

    /// One record per batch: the number of records (`i64`).
    pub fn count(&self) -> Result<Stream, BuildError> {
        self.derive(None, Op::Count, vec![self.id], 1)
    }

    /// One record per non-empty batch: all values combined.
    pub fn reduce(&self, plugin: &Plugin, function: &str) -> Result<Stream, BuildError> {
        let func = self.function("reduce", plugin, function, FunctionKind::Reduce)?;
        self.derive(None, Op::Reduce { func }, vec![self.id], 1)
    }

    /// `(element, count)` for every distinct element.
    pub fn count_by_value(&self, partitions: Option<usize>) -> Result<Stream, BuildError> {
        let partitions = self.shuffle_partitions(partitions)?;
        self.derive(
            None,
            Op::CountByValue { partitions },
            vec![self.id],
            partitions,
        )
    }

    fn shuffle_partitions(&self, p: Option<usize>) -> Result<usize, BuildError> {
        match p {
            Some(0) => Err(BuildError::Invalid(
                "a shuffle needs at least one partition".into(),
            )),
            Some(p) => Ok(p),
            None => Ok(self.partitions),
        }
    }

    /// Values of each key combined with an associative reduce function.
    pub fn reduce_by_key(
        &self,
        plugin: &Plugin,
        function: &str,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        let func = self.function("reduce_by_key", plugin, function, FunctionKind::Reduce)?;
        let partitions = self.shuffle_partitions(partitions)?;
        self.derive(
            None,
            Op::ReduceByKey { func, partitions },
            vec![self.id],
            partitions,
        )
    }

    /// Values of each key as a list.
    pub fn group_by_key(&self, partitions: Option<usize>) -> Result<Stream, BuildError> {
        let partitions = self.shuffle_partitions(partitions)?;
        self.derive(
            None,
            Op::GroupByKey { partitions },
            vec![self.id],
            partitions,
        )
    }

    /// Joins with `other` by key.
    pub fn join_with(
        &self,
        kind: JoinKind,
        other: &Stream,
        partitions: Option<usize>,
    ) -> Result<Stream, BuildError> {
        self.same_context(other)?;
        let partitions = match partitions {
            None => self.partitions.max(other.partitions),
            p => self.shuffle_partitions(p)?,
        };
        self.derive(
            None,
            Op::Join { kind, partitions },
            vec![self.id, other.id],
            partitions,
        )
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
        self.same_context(other)?;
        let partitions = match partitions {
            None => self.partitions.max(other.partitions),
            p => self.shuffle_partitions(p)?,
        };
        self.derive(
            None,
            Op::CoGroup { partitions },
            vec![self.id, other.id],
            partitions,
        )
    }

    fn output(&self, name: Option<&str>, spec: OutputSpec) -> Result<(), BuildError> {
        let mut b = self.builder.borrow_mut();
        if b.started {
            return Err(BuildError::Invalid(
                "the context has already started: define every stream and output before start"
                    .into(),
            ));
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
}
