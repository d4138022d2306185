//! The pipeline file: a TOML description of a job that maps onto the
//! library API one to one.
//!
//! Parsing goes raw → validated, as ripgrep turns flags into its config:
//! serde reads the text into raw tables, then one parser per section
//! (`[job]` and `[limits]`, `[plugins]`, `[[source]]`, `[[stream]]`,
//! `[[output]]`) turns them into typed definitions — [`SourceSpec`]s,
//! [`StreamDef`]s naming their operator's description from the registry
//! with typed arguments, [`OutputKind`]s — checking shape on the way:
//! known keys, known operators, parameter types, defined streams, no
//! cycles. Parsing reads no file. [`Pipeline::build`] then loads the
//! plugins and builds the job on a [`StreamingContext`], checking every
//! function's kind. Every problem is reported with `file:line:col`, all of
//! them at once.
//!
//! See the README's pipeline reference for every key and its default.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::checkpoint::CheckpointConfig;
use crate::error::BuildError;
use crate::host::Host;
use crate::job::{
    ClockMode, ScaleOutConfig, SourceSpec, Stream, StreamingConfig, StreamingContext,
};
use crate::kafka::{KafkaEndpoint, RESERVED_PROPERTIES};
use crate::ops::registry;
use crate::ops::spec::ArgValue;
use crate::ops::{FunctionRef, OpDesc, Param, ParamKind};
use crate::output::kafka::{
    Delivery, KafkaOutputSpec, Partitioner, ValueFormat, KEY_HASH_PARTITIONERS,
};
use crate::receiver::generator::GeneratorKind;
use crate::receiver::kafka::{KafkaSourceSpec, StartingOffsets};
use crate::receiver::rate::PidConfig;
use crate::wasm::{Limits, Plugin};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    job: RawJob,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    plugins: BTreeMap<String, Spanned<String>>,
    #[serde(default, rename = "source")]
    sources: Vec<Spanned<RawSource>>,
    #[serde(default, rename = "stream")]
    streams: Vec<Spanned<RawStream>>,
    #[serde(default, rename = "output")]
    outputs: Vec<Spanned<RawOutput>>,
    scale_out: Option<Spanned<RawScaleOut>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScaleOut {
    changelog: Spanned<String>,
    instance: Option<Spanned<String>>,
    partitioner: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Option<String>,
    batch_interval: Option<Spanned<String>>,
    block_interval: Option<Spanned<String>>,
    partitions: Option<Spanned<usize>>,
    workers: Option<Spanned<usize>>,
    clock: Option<Spanned<String>>,
    start_ms: Option<i64>,
    stats_file: Option<String>,
    max_pending_blocks: Option<Spanned<usize>>,
    checkpoint: Option<String>,
    checkpoint_interval: Option<Spanned<String>>,
    keep_checkpoints: Option<Spanned<usize>>,
    write_ahead_log: Option<bool>,
    backpressure: Option<bool>,
    backpressure_initial_rate: Option<f64>,
    backpressure_min_rate: Option<f64>,
    backpressure_proportional: Option<f64>,
    backpressure_integral: Option<f64>,
    backpressure_derivative: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_retries: Option<u32>,
    max_state_mb: Option<u64>,
    fuel: Option<u64>,
    memory_mb: Option<usize>,
    output_mb: Option<usize>,
    deadline: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    host: Option<String>,
    port: Option<u16>,
    dir: Option<String>,
    include_existing: Option<bool>,
    max_files_per_batch: Option<usize>,
    max_bytes_per_batch: Option<u64>,
    generate: Option<Spanned<String>>,
    rate: Option<u64>,
    seed: Option<u64>,
    words_per_line: Option<usize>,
    vocabulary: Option<usize>,
    limit: Option<u64>,
    brokers: Option<Spanned<String>>,
    topics: Option<Spanned<Vec<String>>>,
    group: Option<String>,
    starting_offsets: Option<Spanned<toml::Value>>,
    max_rate_per_partition: Option<u64>,
    max_records_per_batch: Option<u64>,
    metadata: Option<bool>,
    properties: Option<Spanned<BTreeMap<String, toml::Value>>>,
}

/// A `[[stream]]` table as written: its keys are `name`, `op`, `input`
/// or `inputs`, and the parameters the operator's description defines.
type RawStream = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: Option<String>,
    stream: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    num: Option<usize>,
    prefix: Option<Spanned<String>>,
    suffix: Option<String>,
    brokers: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    partitioner: Option<Spanned<String>>,
    transactional_id: Option<String>,
    delivery: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    properties: Option<Spanned<BTreeMap<String, toml::Value>>>,
    function: Option<Spanned<String>>,
}

const SOURCE_TYPES: &[&str] = &["kafka", "socket", "files", "generator"];
const OUTPUT_TYPES: &[&str] = &["print", "text_files", "kafka"];
/// Keys every `[[stream]]` has, whatever its operator.
const STREAM_KEYS: &[&str] = &["name", "op", "input", "inputs"];

/// Problems found in a pipeline file, each with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file.
    pub path: PathBuf,
    /// `line:col: message`, in file order.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}:{p}", self.path.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Problems<'a> {
    src: &'a str,
    list: Vec<(usize, String)>,
}

impl Problems<'_> {
    fn at(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.list.push((span.start, msg.into()));
    }

    fn location(&self, offset: usize) -> (usize, usize) {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        (line, col)
    }

    fn finish(mut self, path: &Path) -> Result<(), ConfigErrors> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|(o, _)| *o);
        let problems = self
            .list
            .iter()
            .map(|(o, m)| {
                let (l, c) = self.location(*o);
                format!("{l}:{c}: {m}")
            })
            .collect();
        Err(ConfigErrors {
            path: path.to_owned(),
            problems,
        })
    }
}

fn duration(
    p: &mut Problems<'_>,
    v: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(s) => {
            match humantime::parse_duration(s.get_ref()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    p.at(s.span(), format!("`{key}` must be above zero"));
                    default
                }
                Err(e) => {
                    p.at(s.span(), format!("`{key}` = {:?} is not a duration ({e}); write e.g. \"1s\" or \"200ms\"", s.get_ref()));
                    default
                }
            }
        }
    }
}

/// A source as the pipeline describes it.
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// Stream name.
    pub name: String,
    /// What it reads.
    pub spec: SourceSpec,
    /// Its position among the `[[source]]` tables, from 1.
    pub table: usize,
    /// The paths it names, `(key, path as written)`.
    pub paths: Vec<(&'static str, String)>,
}

/// An operator argument as the file writes it.
#[derive(Debug, Clone)]
pub enum StreamArg {
    /// `"PLUGIN:FUNCTION"` (resolved when the plugins are loaded).
    Function {
        /// The plugin's alias in `[plugins]`.
        alias: String,
        /// The function name.
        function: String,
    },
    /// A file of `key<TAB>value` lines (read when the job is built) and
    /// the format of its values.
    StateFile {
        /// As written, relative to the pipeline file.
        written: String,
        /// Resolved.
        path: PathBuf,
    },
    /// A number, duration or word.
    Value(ArgValueDef),
}

/// A typed value of a parameter.
#[derive(Debug, Clone)]
pub enum ArgValueDef {
    /// A partition count or a number.
    Number(usize),
    /// A duration.
    Duration(Duration),
    /// A word of a choice.
    Choice(String),
}

/// A derived stream as the pipeline describes it.
#[derive(Debug, Clone)]
pub struct StreamDef {
    /// Stream name.
    pub name: String,
    /// The operator's description.
    pub op: &'static OpDesc,
    /// Input stream names.
    pub inputs: Vec<String>,
    /// Parameter key → value, as the operator's description types them.
    pub args: BTreeMap<&'static str, StreamArg>,
    /// Its arguments had no problem (otherwise it is not built: its
    /// problems are reported already).
    sound: bool,
    /// Its position among the `[[stream]]` tables, from 1.
    pub table: usize,
    span: Range<usize>,
}

impl StreamDef {
    /// The `partitions` argument, if given.
    pub fn partitions(&self) -> Option<usize> {
        match self.args.get("partitions") {
            Some(StreamArg::Value(ArgValueDef::Number(n))) => Some(*n),
            _ => None,
        }
    }

    /// `alias:function` of the `function` argument, as written.
    fn function_written(&self) -> Option<String> {
        match self.args.get("function") {
            Some(StreamArg::Function { alias, function }) => Some(format!("{alias}:{function}")),
            _ => None,
        }
    }
}

/// What an output does.
#[derive(Debug, Clone)]
pub enum OutputKind {
    /// Spark's `print` of the first `num` records.
    Print {
        /// Records shown.
        num: usize,
    },
    /// Spark's `saveAsTextFiles`.
    TextFiles {
        /// As written, relative to the pipeline file.
        written: String,
        /// Resolved against the pipeline file's directory.
        prefix: PathBuf,
        /// Directory name ending.
        suffix: Option<String>,
    },
    /// A Kafka topic, a transaction per batch.
    Kafka(KafkaOutputSpec),
}

/// An output as the pipeline describes it.
#[derive(Debug, Clone)]
pub struct OutputDef {
    /// Output name.
    pub name: Option<String>,
    /// The stream it writes.
    pub stream: String,
    /// What it does.
    pub kind: OutputKind,
    /// `(plugin alias, function)`: a map function that formats each
    /// partition of every batch before it is written (Spark's
    /// `foreachRDD` + `foreachPartition`, kept pure).
    pub function: Option<(String, String)>,
    /// Its position among the `[[output]]` tables, from 1.
    pub table: usize,
    span: Range<usize>,
}

/// A plugin of `[plugins]`.
#[derive(Debug, Clone)]
pub struct PluginDef {
    /// The module path as written.
    pub written: String,
    /// Resolved against the pipeline file's directory.
    pub path: PathBuf,
    span: Range<usize>,
}

/// A parsed, shape-checked pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file.
    pub path: PathBuf,
    src: String,
    /// Job configuration.
    pub config: StreamingConfig,
    /// Paths of `[job]` as written: `(key, path)`.
    job_paths: Vec<(&'static str, String)>,
    /// Plugin alias → module.
    pub plugins: BTreeMap<String, PluginDef>,
    /// Sources.
    pub sources: Vec<SourceDef>,
    /// Derived streams, in an order where inputs come first.
    pub streams: Vec<StreamDef>,
    /// Outputs.
    pub outputs: Vec<OutputDef>,
    /// Where `[scale_out]` is, for messages.
    scale_out_span: Option<Range<usize>>,
}

/// Overrides from the command line, applied after the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Batch interval.
    pub batch_interval: Option<Duration>,
    /// Partitions.
    pub partitions: Option<usize>,
    /// Worker threads.
    pub workers: Option<usize>,
    /// Simulated clock.
    pub simulated_clock: bool,
    /// Statistics file.
    pub stats_file: Option<PathBuf>,
    /// Checkpoint directory (overrides `[job] checkpoint`).
    pub checkpoint: Option<PathBuf>,
    /// Discard an existing checkpoint and start from scratch.
    pub fresh: bool,
    /// This instance's name, scaled out.
    pub instance: Option<String>,
}

/// Resolves paths written in the file against its directory.
struct Resolver {
    base: PathBuf,
}

impl Resolver {
    fn resolve(&self, s: &str) -> PathBuf {
        if Path::new(s).is_absolute() {
            PathBuf::from(s)
        } else {
            self.base.join(s)
        }
    }
}

fn positive(p: &mut Problems<'_>, v: &Option<Spanned<usize>>, key: &str, default: usize) -> usize {
    match v {
        Some(s) if *s.get_ref() == 0 => {
            p.at(s.span(), format!("`{key}` must be at least 1"));
            default
        }
        Some(s) => *s.get_ref(),
        None => default,
    }
}

/// `[job]` and `[limits]`: the job's configuration and the paths it names.
fn parse_job(
    p: &mut Problems<'_>,
    path: &Path,
    j: &RawJob,
    l: &RawLimits,
    r: &Resolver,
) -> (StreamingConfig, Vec<(&'static str, String)>) {
    let d = StreamingConfig::default();
    let batch_interval = duration(p, &j.batch_interval, "batch_interval", d.batch_interval);
    let block_interval = duration(p, &j.block_interval, "block_interval", d.block_interval);
    let clock = match j.clock.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
        None | Some(("system", _)) => ClockMode::System,
        Some(("simulated", _)) => ClockMode::Simulated {
            start_ms: j.start_ms.unwrap_or(0),
        },
        Some((other, span)) => {
            p.at(
                span,
                format!("unknown clock `{other}`; use \"system\" or \"simulated\""),
            );
            ClockMode::System
        }
    };
    let dl = Limits::default();
    let limits = Limits {
        fuel: l.fuel.unwrap_or(dl.fuel),
        memory_bytes: l.memory_mb.map_or(dl.memory_bytes, |m| m << 20),
        output_bytes: l.output_mb.map_or(dl.output_bytes, |m| m << 20),
        deadline: duration(p, &l.deadline, "deadline", dl.deadline),
        log_bytes: dl.log_bytes,
    };
    let checkpoint = j.checkpoint.as_deref().map(|dir| {
        // Spark's default: every max(10 s, batch interval), rounded to
        // whole batches.
        let every = duration(
            p,
            &j.checkpoint_interval,
            "checkpoint_interval",
            Duration::from_secs(10).max(batch_interval),
        );
        let every_batches = (every
            .as_millis()
            .div_ceil(batch_interval.as_millis().max(1)) as u64)
            .max(1);
        let keep = match &j.keep_checkpoints {
            Some(k) if *k.get_ref() < 2 => {
                p.at(
                    k.span(),
                    "`keep_checkpoints` must be at least 2, so a damaged checkpoint has a fallback",
                );
                2
            }
            Some(k) => *k.get_ref(),
            None => 2,
        };
        CheckpointConfig {
            dir: r.resolve(dir),
            every_batches,
            keep,
            write_ahead_log: j.write_ahead_log.unwrap_or(true),
        }
    });
    let config = StreamingConfig {
        job_name: j.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map_or_else(|| "weir".into(), |s| s.to_string_lossy().into_owned())
        }),
        batch_interval,
        block_interval,
        partitions: positive(p, &j.partitions, "partitions", d.partitions),
        workers: positive(p, &j.workers, "workers", d.workers),
        limits,
        clock,
        max_pending_blocks: positive(
            p,
            &j.max_pending_blocks,
            "max_pending_blocks",
            d.max_pending_blocks,
        ),
        stats_file: j.stats_file.as_deref().map(|f| r.resolve(f)),
        progress: true,
        checkpoint,
        fresh_start: false,
        max_retries: l.max_retries.unwrap_or(0),
        max_state_bytes: l.max_state_mb.map(|m| m << 20),
        backpressure: j.backpressure.unwrap_or(false).then(|| {
            let d = PidConfig::default();
            PidConfig {
                proportional: j.backpressure_proportional.unwrap_or(d.proportional),
                integral: j.backpressure_integral.unwrap_or(d.integral),
                derivative: j.backpressure_derivative.unwrap_or(d.derivative),
                min_rate: j.backpressure_min_rate.unwrap_or(d.min_rate),
                initial_rate: j.backpressure_initial_rate,
            }
        }),
        scale_out: None,
    };
    let paths = [("stats_file", &j.stats_file), ("checkpoint", &j.checkpoint)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.clone()?)))
        .collect();
    (config, paths)
}

/// `[scale_out]`.
fn parse_scale_out(p: &mut Problems<'_>, raw: &RawScaleOut) -> Option<ScaleOutConfig> {
    let changelog = raw.changelog.get_ref().trim();
    if changelog.is_empty() {
        p.at(
            raw.changelog.span(),
            "`changelog` names the changelog topic; it is empty",
        );
        return None;
    }
    let instance = match &raw.instance {
        Some(i) if i.get_ref().trim().is_empty() => {
            p.at(
                i.span(),
                "`instance` is empty; leave it out to use host-pid",
            );
            return None;
        }
        Some(i) => i.get_ref().trim().to_owned(),
        None => crate::job::default_instance(),
    };
    let partitioner = match &raw.partitioner {
        Some(h) if !KEY_HASH_PARTITIONERS.contains(&h.get_ref().as_str()) => {
            p.at(
                h.span(),
                format!(
                    "unknown partitioner `{}`; use one of {}",
                    h.get_ref(),
                    KEY_HASH_PARTITIONERS.join(", ")
                ),
            );
            return None;
        }
        Some(h) => h.get_ref().clone(),
        None => "murmur2".into(),
    };
    Some(ScaleOutConfig {
        changelog: changelog.to_owned(),
        instance,
        partitioner,
    })
}

/// Stream names must be unique across sources and streams.
#[derive(Default)]
struct Names {
    defined: HashMap<String, Range<usize>>,
}

impl Names {
    fn define(&mut self, p: &mut Problems<'_>, name: &str, span: Range<usize>) {
        if let Some(first) = self.defined.get(name) {
            let (l, c) = p.location(first.start);
            p.at(
                span,
                format!("stream `{name}` is defined twice (first at {l}:{c})"),
            );
        } else {
            self.defined.insert(name.to_owned(), span);
        }
    }

    fn known(&self) -> String {
        let mut known: Vec<&str> = self.defined.keys().map(String::as_str).collect();
        known.sort();
        known.join(", ")
    }
}

/// `[[source]]` tables.
fn parse_sources(
    p: &mut Problems<'_>,
    raw: &[Spanned<RawSource>],
    names: &mut Names,
    r: &Resolver,
    job: &str,
) -> Vec<SourceDef> {
    let mut sources = Vec::new();
    for (table, s) in raw.iter().enumerate() {
        let span = s.span();
        let s = s.get_ref();
        let name = s.name.get_ref();
        names.define(p, name, s.name.span());
        let spec = match s.kind.get_ref().as_str() {
            "socket" => match (&s.host, s.port) {
                (Some(host), Some(port)) => Some(SourceSpec::Socket {
                    host: host.clone(),
                    port,
                }),
                _ => {
                    p.at(
                        span.clone(),
                        format!("source `{name}`: a socket source needs `host` and `port`"),
                    );
                    None
                }
            },
            "files" => match &s.dir {
                Some(dir) => Some(SourceSpec::Files {
                    dir: r.resolve(dir),
                    include_existing: s.include_existing.unwrap_or(false),
                    limits: crate::receiver::files::FileLimits {
                        max_files: s.max_files_per_batch,
                        max_bytes: s.max_bytes_per_batch,
                    },
                }),
                None => {
                    p.at(
                        span.clone(),
                        format!("source `{name}`: a files source needs `dir`"),
                    );
                    None
                }
            },
            "generator" => {
                let kind = match s
                    .generate
                    .as_ref()
                    .map(|g| (g.get_ref().as_str(), g.span()))
                {
                    None | Some(("text", _)) => GeneratorKind::Text,
                    Some(("key_value", _)) => GeneratorKind::KeyValue,
                    Some(("tweets", _)) => GeneratorKind::Tweets,
                    Some(("nexmark", _)) => GeneratorKind::Nexmark,
                    Some((other, span)) => {
                        p.at(span, format!("unknown generator output `{other}`; use \"text\", \"tweets\", \"key_value\" or \"nexmark\""));
                        GeneratorKind::Text
                    }
                };
                if kind == GeneratorKind::Nexmark {
                    if s.rate == Some(0) {
                        p.at(
                            span.clone(),
                            format!("source `{name}`: a nexmark generator needs `rate` >= 1 (events per second; event times are i × 1000 / rate ms)"),
                        );
                    }
                    for (key, given) in [
                        ("words_per_line", s.words_per_line.is_some()),
                        ("vocabulary", s.vocabulary.is_some()),
                    ] {
                        if given {
                            p.at(
                                span.clone(),
                                format!("source `{name}`: `{key}` does not apply to generate = \"nexmark\"; remove it"),
                            );
                        }
                    }
                }
                Some(SourceSpec::Generator {
                    kind,
                    rate: s.rate.unwrap_or(1000),
                    seed: s.seed.unwrap_or(42),
                    words_per_line: s.words_per_line.unwrap_or(10),
                    vocabulary: s.vocabulary.unwrap_or(10_000),
                    limit: s.limit,
                })
            }
            "kafka" => parse_kafka_source(p, job, name, span.clone(), s).map(SourceSpec::Kafka),
            other => {
                p.at(
                    s.kind.span(),
                    format!(
                        "unknown source type `{other}`; known types: {}",
                        SOURCE_TYPES.join(", ")
                    ),
                );
                None
            }
        };
        if let Some(spec) = spec {
            sources.push(SourceDef {
                name: name.clone(),
                spec,
                table: table + 1,
                paths: s.dir.iter().map(|d| ("dir", d.clone())).collect(),
            });
        }
    }
    sources
}

/// The brokers and client properties of a Kafka source or output.
fn parse_kafka_endpoint(
    p: &mut Problems<'_>,
    what: &str,
    span: Range<usize>,
    brokers: &Option<Spanned<String>>,
    properties: &Option<Spanned<BTreeMap<String, toml::Value>>>,
) -> Option<KafkaEndpoint> {
    let Some(brokers) = brokers else {
        p.at(
            span,
            format!("{what} needs `brokers` (host:port[,host:port...])"),
        );
        return None;
    };
    if let Err(e) = KafkaEndpoint::check_brokers(brokers.get_ref()) {
        p.at(brokers.span(), format!("{what}: {e}"));
        return None;
    }
    let mut props = BTreeMap::new();
    if let Some(table) = properties {
        for (k, v) in table.get_ref() {
            if RESERVED_PROPERTIES.contains(&k.as_str()) {
                p.at(
                    table.span(),
                    format!("{what}: property `{k}` is set by weir (exact replay depends on it); remove it"),
                );
                continue;
            }
            let v = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ => {
                    p.at(
                        table.span(),
                        format!("{what}: property `{k}` must be a string, number or boolean"),
                    );
                    continue;
                }
            };
            props.insert(k.clone(), v);
        }
    }
    Some(KafkaEndpoint {
        brokers: brokers.get_ref().trim().to_owned(),
        properties: props,
    })
}

/// An `[[output]]` of type `kafka`.
fn parse_kafka_output(
    p: &mut Problems<'_>,
    span: Range<usize>,
    o: &RawOutput,
) -> Option<KafkaOutputSpec> {
    let what = format!("kafka output of stream `{}`", o.stream.get_ref());
    let endpoint = parse_kafka_endpoint(p, &what, span.clone(), &o.brokers, &o.properties);
    let topic = match &o.topic {
        Some(t) if !t.get_ref().is_empty() => t.get_ref().clone(),
        Some(t) => {
            p.at(t.span(), format!("{what}: `topic` is empty"));
            return None;
        }
        None => {
            p.at(span, format!("{what} needs `topic`"));
            return None;
        }
    };
    let partitioner = match o
        .partitioner
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None => Partitioner::KeyHash("murmur2".into()),
        Some(("partition", _)) => Partitioner::Partition,
        Some((h, _)) if KEY_HASH_PARTITIONERS.contains(&h) => Partitioner::KeyHash(h.into()),
        Some((other, span)) => {
            p.at(
                span,
                format!(
                    "{what}: unknown partitioner `{other}`; use \"partition\" (weir partition p → topic partition p mod n) or a key hash: {} (random ones would make replay differ)",
                    KEY_HASH_PARTITIONERS.join(", ")
                ),
            );
            return None;
        }
    };
    let format = match o.format.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("raw", _)) => ValueFormat::Raw,
        Some(("text", _)) => ValueFormat::Text,
        Some((other, span)) => {
            p.at(
                span,
                format!("{what}: unknown format `{other}`; use \"raw\" or \"text\""),
            );
            return None;
        }
    };
    let delivery = match o
        .delivery
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("idempotent", _)) => Delivery::Idempotent,
        Some(("transactional", _)) => Delivery::Transactional,
        Some((other, span)) => {
            p.at(
                span,
                format!(
                    "{what}: unknown delivery `{other}`; use \"idempotent\" or \"transactional\""
                ),
            );
            return None;
        }
    };
    Some(KafkaOutputSpec {
        endpoint: endpoint?,
        topic,
        partitioner,
        transactional_id: o.transactional_id.clone(),
        format,
        delivery,
    })
}

/// A `[[source]]` of type `kafka`.
fn parse_kafka_source(
    p: &mut Problems<'_>,
    job: &str,
    name: &str,
    span: Range<usize>,
    s: &RawSource,
) -> Option<KafkaSourceSpec> {
    let what = format!("kafka source `{name}`");
    let endpoint = parse_kafka_endpoint(p, &what, span.clone(), &s.brokers, &s.properties);
    let topics = match &s.topics {
        Some(t) if !t.get_ref().is_empty() && t.get_ref().iter().all(|t| !t.is_empty()) => {
            t.get_ref().clone()
        }
        Some(t) => {
            p.at(
                t.span(),
                format!("{what}: `topics` must name at least one topic, none empty"),
            );
            return None;
        }
        None => {
            p.at(
                span,
                format!("{what} needs `topics` (a list of topic names)"),
            );
            return None;
        }
    };
    let mut starting = StartingOffsets::default();
    match s.starting_offsets.as_ref().map(|v| (v.get_ref(), v.span())) {
        None => {}
        Some((toml::Value::String(w), span)) => match w.as_str() {
            "earliest" => {}
            "latest" => starting.latest = true,
            other => p.at(
                span,
                format!("{what}: unknown `starting_offsets` `{other}`; use \"earliest\", \"latest\" or a table {{ \"topic:partition\" = offset, default = \"earliest\" }}"),
            ),
        },
        Some((toml::Value::Table(t), span)) => {
            for (k, v) in t {
                match (k.as_str(), v) {
                    ("default", toml::Value::String(d)) if d == "latest" => starting.latest = true,
                    ("default", toml::Value::String(d)) if d == "earliest" => {}
                    (k, toml::Value::Integer(o)) if *o >= 0 => {
                        match k.rsplit_once(':').and_then(|(t, p)| Some((t, p.parse::<i32>().ok()?))) {
                            Some((t, part)) if topics.iter().any(|x| x == t) && part >= 0 => {
                                starting.given.insert((t.to_owned(), part), *o);
                            }
                            _ => p.at(
                                span.clone(),
                                format!("{what}: `starting_offsets` key `{k}` must be \"topic:partition\" of a topic the source reads"),
                            ),
                        }
                    }
                    (k, _) => p.at(
                        span.clone(),
                        format!("{what}: `starting_offsets.{k}` must be an offset (≥ 0), or `default` \"earliest\"/\"latest\""),
                    ),
                }
            }
        }
        Some((_, span)) => p.at(span, format!("{what}: `starting_offsets` must be a string or a table")),
    }
    if s.max_rate_per_partition == Some(0) {
        p.at(
            span.clone(),
            format!("{what}: `max_rate_per_partition` must be above zero"),
        );
    }
    Some(KafkaSourceSpec {
        endpoint: endpoint?,
        topics,
        group: s
            .group
            .clone()
            .unwrap_or_else(|| format!("weir-{job}-{name}")),
        starting_offsets: starting,
        max_rate_per_partition: s.max_rate_per_partition,
        max_records_per_batch: s.max_records_per_batch,
        metadata: s.metadata.unwrap_or(false),
    })
}

/// A `[[stream]]` key's string value, or a problem.
fn string_of<'a>(
    p: &mut Problems<'_>,
    stream: &str,
    key: &str,
    v: &'a Spanned<toml::Value>,
) -> Option<&'a str> {
    match v.get_ref().as_str() {
        Some(s) => Some(s),
        None => {
            p.at(
                v.span(),
                format!("stream `{stream}`: `{key}` must be a string"),
            );
            None
        }
    }
}

/// Reports every key of a `[[stream]]` that no operator takes; false if
/// there was one.
fn known_keys_only(p: &mut Problems<'_>, table: &RawStream) -> bool {
    let all_keys: Vec<&str> = STREAM_KEYS
        .iter()
        .copied()
        .chain(registry::all_param_keys())
        .collect();
    let mut known = true;
    for k in table.keys() {
        if !all_keys.contains(&k.get_ref().as_str()) {
            p.at(
                k.span(),
                format!(
                    "unknown field `{}`, expected one of {}",
                    k.get_ref(),
                    all_keys
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            known = false;
        }
    }
    known
}

/// The operator named `op_name` in the registry, or a problem with a hint
/// (a Spark name, an API-only operator) and the list of known operators.
fn find_operator(
    p: &mut Problems<'_>,
    name: &str,
    op_name: &str,
    span: Range<usize>,
) -> Option<&'static OpDesc> {
    if let Some(op) = registry::find(op_name).filter(|d| d.in_pipelines) {
        return Some(op);
    }

    let hint = registry::find_spark(op_name)
        .filter(|d| d.in_pipelines)
        .map(|d| format!(" (did you mean `{}`?)", d.name))
        .or_else(|| {
            registry::find(op_name)
                .map(|d| format!(" (`{}` is available in the library API only)", d.name))
        });
    let known: Vec<&str> = registry::OPERATORS
        .iter()
        .filter(|d| d.in_pipelines)
        .map(|d| d.name)
        .collect();
    p.at(
        span,
        format!(
            "stream `{name}`: unknown operator `{op_name}`{}; known operators: {}",
            hint.unwrap_or_default(),
            known.join(", ")
        ),
    );
    None
}

/// `[[stream]]` tables: each against its operator's description.
fn parse_streams(
    p: &mut Problems<'_>,
    raw: &[Spanned<RawStream>],
    names: &mut Names,
    plugins: &BTreeMap<String, PluginDef>,
    r: &Resolver,
) -> Vec<StreamDef> {
    let mut streams = Vec::new();
    for (index, table) in raw.iter().enumerate() {
        let span = table.span();
        let get = |key: &str| table.get_ref().iter().find(|(k, _)| k.get_ref() == key);
        if let Some(name) = get("name").and_then(|(_, v)| v.get_ref().as_str()) {
            names.define(p, name, span.clone());
        }
        // Keys no operator takes are refused first, as serde would.
        if !known_keys_only(p, table.get_ref()) {
            continue;
        }
        let Some((_, name)) = get("name") else {
            p.at(span, "a [[stream]] needs `name`");
            continue;
        };
        let Some(name) = string_of(p, "?", "name", name) else {
            continue;
        };
        let Some((_, op_value)) = get("op") else {
            p.at(
                span,
                format!("stream `{name}`: missing `op` (the operator)"),
            );
            continue;
        };
        let Some(op_name) = string_of(p, name, "op", op_value) else {
            continue;
        };
        let Some(op) = find_operator(p, name, op_name, op_value.span()) else {
            continue;
        };
        let inputs: Vec<String> = match (get("input"), get("inputs")) {
            (Some((_, i)), None) => match string_of(p, name, "input", i) {
                Some(i) => vec![i.to_owned()],
                None => continue,
            },
            (None, Some((_, is))) => match is.get_ref().as_array().and_then(|a| {
                a.iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            }) {
                Some(is) => is,
                None => {
                    p.at(
                        is.span(),
                        format!("stream `{name}`: `inputs` must be a list of stream names"),
                    );
                    continue;
                }
            },
            (Some(_), Some((_, is))) => {
                p.at(
                    is.span(),
                    format!("stream `{name}`: give either `input` or `inputs`, not both"),
                );
                continue;
            }
            (None, None) => {
                p.at(
                    span.clone(),
                    format!("stream `{name}`: missing `input` (the stream it reads)"),
                );
                continue;
            }
        };
        if !op.arity.accepts(inputs.len()) {
            p.at(
                span.clone(),
                format!(
                    "stream `{name}`: `{}` reads {} input streams, {} given",
                    op.name,
                    op.arity.describe(),
                    inputs.len()
                ),
            );
            continue;
        }
        let (args, sound) = parse_args(p, name, op, table.get_ref(), span.clone(), plugins, r);
        streams.push(StreamDef {
            name: name.to_owned(),
            op,
            inputs,
            args,
            sound,
            table: index + 1,
            span: span.clone(),
        });
    }
    streams
}

/// The parameters of one stream, typed by its operator's description.
fn parse_args(
    p: &mut Problems<'_>,
    name: &str,
    op: &'static OpDesc,
    table: &RawStream,
    span: Range<usize>,
    plugins: &BTreeMap<String, PluginDef>,
    r: &Resolver,
) -> (BTreeMap<&'static str, StreamArg>, bool) {
    let before = p.list.len();
    let mut args = BTreeMap::new();
    let mut function_alias: Option<String> = None;
    // `function` first: the same-plugin parameters refer to it.
    let mut entries: Vec<(&Spanned<String>, &Spanned<toml::Value>)> = table
        .iter()
        .filter(|(k, _)| !STREAM_KEYS.contains(&k.get_ref().as_str()))
        .collect();
    entries.sort_by_key(|(k, _)| k.get_ref() != "function");
    for (key, value) in entries {
        let Some(param) = op.param(key.get_ref()) else {
            let takers = registry::takers_of(key.get_ref());
            p.at(
                key.span(),
                format!(
                    "stream `{name}`: `{}` takes no `{}`{}",
                    op.name,
                    key.get_ref(),
                    if takers.is_empty() {
                        String::new()
                    } else {
                        format!(" (operators that take it: {})", takers.join(", "))
                    }
                ),
            );
            continue;
        };
        let Some(arg) = parse_value(p, name, param, value, &mut function_alias, plugins, r) else {
            continue;
        };
        let k = param.key;
        args.insert(k, arg);
    }
    for param in op.params.iter().filter(|q| q.required) {
        let given = table.keys().any(|k| k.get_ref() == param.key);
        if !given {
            let how = match param.kind {
                ParamKind::Function(_) => format!("`{} = \"PLUGIN:FUNCTION\"`", param.key),
                ParamKind::Duration => format!("`{}` (e.g. \"30s\")", param.key),
                _ => format!("`{}`", param.key),
            };
            p.at(
                span.clone(),
                format!("stream `{name}`: `{}` needs {how}", op.name),
            );
        }
    }
    if args.contains_key("filter") && !args.contains_key("inverse") {
        if let Some((k, _)) = table.iter().find(|(k, _)| k.get_ref() == "filter") {
            p.at(
                k.span(),
                format!(
                    "stream `{name}`: `filter` applies to the incremental form only; add `inverse`"
                ),
            );
        }
    }
    let sound = p.list.len() == before;
    (args, sound)
}

/// A `"PLUGIN:FUNCTION"` parameter; remembers the plugin's alias for the
/// same-plugin parameters.
fn parse_function(
    p: &mut Problems<'_>,
    name: &str,
    k: &str,
    value: &Spanned<toml::Value>,
    function_alias: &mut Option<String>,
    plugins: &BTreeMap<String, PluginDef>,
) -> Option<StreamArg> {
    let f = string_of(p, name, k, value)?;
    Some(match f.split_once(':') {
        Some((alias, func)) if !alias.is_empty() && !func.is_empty() => {
            if !plugins.contains_key(alias) {
                p.at(
                        value.span(),
                        format!(
                            "stream `{name}`: unknown plugin `{alias}`; plugins declared in [plugins]: {}",
                            if plugins.is_empty() { "(none)".into() } else { plugins.keys().cloned().collect::<Vec<_>>().join(", ") }
                        ),
                    );
            }
            *function_alias = Some(alias.to_owned());
            StreamArg::Function {
                alias: alias.to_owned(),
                function: func.to_owned(),
            }
        }
        _ => {
            p.at(
                value.span(),
                format!("stream `{name}`: `{k}` must be \"PLUGIN:FUNCTION\", e.g. \"wc:split\""),
            );
            return None;
        }
    })
}

/// One parameter's value, typed by its kind; `None` after reporting a
/// problem. `function_alias` is the plugin of the stream's `function`.
fn parse_value(
    p: &mut Problems<'_>,
    name: &str,
    param: &Param,
    value: &Spanned<toml::Value>,
    function_alias: &mut Option<String>,
    plugins: &BTreeMap<String, PluginDef>,
    r: &Resolver,
) -> Option<StreamArg> {
    let k = param.key;
    let v = value.get_ref();
    Some(match param.kind {
        ParamKind::Function(_) => parse_function(p, name, k, value, function_alias, plugins)?,
        ParamKind::SameFunction(_) => {
            let f = string_of(p, name, k, value)?;
            // When `function` itself is wrong its problem is reported;
            // this one would only repeat it.
            let alias = function_alias.clone()?;
            match f.split_once(':') {
                Some((a, func)) if a == alias && !func.is_empty() => StreamArg::Function {
                    alias,
                    function: func.to_owned(),
                },
                _ => {
                    p.at(value.span(), format!("stream `{name}`: `{k}` must be a function of the same plugin, \"{alias}:NAME\""));
                    return None;
                }
            }
        }
        ParamKind::Partitions | ParamKind::Count => match v.as_integer() {
            Some(0) if param.kind == ParamKind::Partitions => {
                p.at(
                    value.span(),
                    format!("stream `{name}`: `{k}` must be at least 1"),
                );
                return None;
            }
            Some(n) if n >= 0 => StreamArg::Value(ArgValueDef::Number(n as usize)),
            _ => {
                p.at(
                    value.span(),
                    format!("stream `{name}`: `{k}` must be a whole number"),
                );
                return None;
            }
        },
        ParamKind::Duration => {
            let text = string_of(p, name, k, value)?;
            match humantime::parse_duration(text) {
                Ok(d) if d.subsec_nanos() % 1_000_000 != 0 => {
                    p.at(
                        value.span(),
                        format!("`{k}` = {text:?}: durations are whole milliseconds"),
                    );
                    return None;
                }
                Ok(d) if !d.is_zero() => StreamArg::Value(ArgValueDef::Duration(d)),
                Ok(_) => {
                    p.at(value.span(), format!("`{k}` must be above zero"));
                    return None;
                }
                Err(e) => {
                    p.at(value.span(), format!("`{k}` = {text:?} is not a duration ({e}); write e.g. \"1s\" or \"200ms\""));
                    return None;
                }
            }
        }
        ParamKind::StateFile => {
            let text = string_of(p, name, k, value)?;
            StreamArg::StateFile {
                written: text.to_owned(),
                path: r.resolve(text),
            }
        }
        ParamKind::Choice(words) => {
            let text = string_of(p, name, k, value)?;
            if !words.contains(&text) {
                p.at(
                    value.span(),
                    format!(
                        "stream `{name}`: `{k}` = {text:?}: use one of {}",
                        words.join(", ")
                    ),
                );
                return None;
            }
            StreamArg::Value(ArgValueDef::Choice(text.to_owned()))
        }
    })
}

/// `[[output]]` tables.
fn parse_outputs(
    p: &mut Problems<'_>,
    raw: &[Spanned<RawOutput>],
    names: &Names,
    plugins: &BTreeMap<String, PluginDef>,
    r: &Resolver,
) -> Vec<OutputDef> {
    let mut outputs = Vec::new();
    for (table, o) in raw.iter().enumerate() {
        let span = o.span();
        let o = o.get_ref();
        if !names.defined.contains_key(o.stream.get_ref()) {
            p.at(
                o.stream.span(),
                format!(
                    "output writes stream `{}`, which is not defined",
                    o.stream.get_ref()
                ),
            );
        }
        // The suffix becomes part of a directory name: it may not name
        // another directory.
        if let Some(suffix) = &o.suffix {
            if suffix.is_empty() || suffix.contains(['/', '\\', '\0']) || suffix == ".." {
                p.at(
                    span.clone(),
                    format!(
                        "`suffix` = {suffix:?} must be a plain name ending, without `/` or `\\`"
                    ),
                );
            }
        }
        let kind = match (o.kind.get_ref().as_str(), &o.prefix) {
            ("print", _) => OutputKind::Print {
                num: o.num.unwrap_or(10),
            },
            ("text_files", Some(prefix)) => OutputKind::TextFiles {
                written: prefix.get_ref().clone(),
                prefix: r.resolve(prefix.get_ref()),
                suffix: o.suffix.clone(),
            },
            ("text_files", None) => {
                p.at(span.clone(), "a text_files output needs `prefix`");
                continue;
            }
            ("kafka", _) => match parse_kafka_output(p, span.clone(), o) {
                Some(spec) => OutputKind::Kafka(spec),
                None => continue,
            },
            (other, _) => {
                p.at(
                    o.kind.span(),
                    format!(
                        "unknown output type `{other}`; known types: {}",
                        OUTPUT_TYPES.join(", ")
                    ),
                );
                continue;
            }
        };
        let function = match &o.function {
            None => None,
            Some(f) => match f.get_ref().split_once(':') {
                Some((alias, function)) if !alias.is_empty() && !function.is_empty() => {
                    if !plugins.contains_key(alias) {
                        p.at(
                            f.span(),
                            format!("output: plugin `{alias}` is not in [plugins]"),
                        );
                    }
                    Some((alias.to_owned(), function.to_owned()))
                }
                _ => {
                    p.at(f.span(), "output: `function` must be \"PLUGIN:FUNCTION\"");
                    None
                }
            },
        };
        outputs.push(OutputDef {
            name: o.name.clone(),
            stream: o.stream.get_ref().clone(),
            kind,
            function,
            table: table + 1,
            span,
        });
    }
    outputs
}

/// Every stream's inputs must be defined.
fn check_inputs(p: &mut Problems<'_>, streams: &[StreamDef], names: &Names) {
    for s in streams {
        for i in &s.inputs {
            if !names.defined.contains_key(i) {
                p.at(
                    s.span.clone(),
                    format!(
                        "stream `{}` reads `{i}`, which is not defined; defined streams: {}",
                        s.name,
                        names.known()
                    ),
                );
            }
        }
    }
}

/// A state file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// It cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line without a tab.
    #[error("{}:{line}: expected `key<TAB>value`", path.display())]
    NoTab { path: PathBuf, line: usize },
    /// An `i64` value that is not a number.
    #[error("{}:{line}: {source}", path.display())]
    Number {
        path: PathBuf,
        line: usize,
        #[source]
        source: std::num::ParseIntError,
    },
    /// A `hex` value that is not hex.
    #[error("{}:{line}: {source}", path.display())]
    Hex {
        path: PathBuf,
        line: usize,
        #[source]
        source: hex::FromHexError,
    },
}

/// Reads `key<TAB>value` lines; values are `text` (raw UTF-8), `i64`
/// (decimal, stored as the canonical 8-byte count) or `hex` (the parser
/// admits no other format).
fn read_initial_state(
    path: &Path,
    format: &str,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut pairs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || (path.to_owned(), i + 1);
        let (k, v) = line.split_once('\t').ok_or_else(|| StateFileError::NoTab {
            path: path.to_owned(),
            line: i + 1,
        })?;
        let value = match format {
            "i64" => v
                .trim()
                .parse::<i64>()
                .map_err(|source| {
                    let (path, line) = at();
                    StateFileError::Number { path, line, source }
                })?
                .to_le_bytes()
                .to_vec(),
            "hex" => hex::decode(v.trim()).map_err(|source| {
                let (path, line) = at();
                StateFileError::Hex { path, line, source }
            })?,
            _ => v.as_bytes().to_vec(),
        };
        pairs.push((k.as_bytes().to_vec(), value));
    }
    Ok(pairs)
}

/// Orders streams so every stream comes after its inputs; reports cycles
/// by the streams that form them.
fn order_streams(p: &mut Problems<'_>, streams: Vec<StreamDef>) -> Vec<StreamDef> {
    match stream_order(&streams) {
        Ok(order) => {
            let mut slots: Vec<Option<StreamDef>> = streams.into_iter().map(Some).collect();
            order
                .into_iter()
                .map(|i| slots[i].take().expect("each stream once"))
                .collect()
        }
        Err(cycle) => {
            let names: Vec<&str> = cycle
                .iter()
                .chain(cycle.first())
                .map(|&c| streams[c].name.as_str())
                .collect();
            p.at(
                streams[cycle[0]].span.clone(),
                format!("streams form a cycle: {}", names.join(" → ")),
            );
            streams
        }
    }
}

/// The streams' indices with every stream after its inputs (depth-first,
/// inputs in the order written), or the first cycle found. The path is an
/// explicit stack, not recursion: a file (or a `weir serve` submission)
/// may chain any number of streams, and one stack frame per stream would
/// overflow a thread's stack and abort the process.
fn stream_order(streams: &[StreamDef]) -> Result<Vec<usize>, Vec<usize>> {
    let index: HashMap<&str, usize> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut state = vec![0u8; streams.len()]; // 0 new, 1 on path, 2 done
    let mut order = Vec::with_capacity(streams.len());
    // The streams being visited, each with the position of its next input.
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..streams.len() {
        if state[root] != 0 {
            continue;
        }
        state[root] = 1;
        path.push((root, 0));
        while let Some(top) = path.last_mut() {
            let i = top.0;
            let input = streams[i].inputs.get(top.1);
            top.1 += 1;
            let Some(input) = input else {
                path.pop();
                state[i] = 2;
                order.push(i);
                continue;
            };
            let Some(&j) = index.get(input.as_str()) else {
                continue; // a source, or undefined (reported already)
            };
            match state[j] {
                0 => {
                    state[j] = 1;
                    path.push((j, 0));
                }
                1 => {
                    let start = path.iter().position(|&(x, _)| x == j).expect("on path");
                    return Err(path[start..].iter().map(|&(x, _)| x).collect());
                }
                _ => {}
            }
        }
    }
    Ok(order)
}

impl Pipeline {
    /// Reads and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, ConfigErrors> {
        let src = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            path: path.to_owned(),
            problems: vec![format!("0:0: cannot read the pipeline file: {e}")],
        })?;
        Pipeline::parse(path, &src)
    }

    /// Checks pipeline text; `path` locates relative paths and messages.
    /// Reads no file.
    pub fn parse(path: &Path, src: &str) -> Result<Pipeline, ConfigErrors> {
        let (pipeline, problems) = Pipeline::parse_lenient(path, src)?;
        Problems {
            src,
            list: problems,
        }
        .finish(path)?;
        Ok(pipeline)
    }

    /// Checks a pipeline file completely without running it: the file's own
    /// problems and those of its plugins and functions (load failures,
    /// missing functions, wrong kinds), all in one report.
    pub fn validate(path: &Path) -> Result<Pipeline, PipelineError> {
        let src = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            path: path.to_owned(),
            problems: vec![format!("0:0: cannot read the pipeline file: {e}")],
        })?;
        let (pipeline, problems) = Pipeline::parse_lenient(path, &src)?;
        let ctx = StreamingContext::new(pipeline.config.clone()).map_err(PipelineError::Build)?;
        let mut p = Problems {
            src: &src,
            list: problems,
        };
        let ctx = pipeline.build_into(ctx, &mut p)?;
        if let Err(e) = ctx.check_scale_out() {
            p.at(
                pipeline.scale_out_span.clone().unwrap_or(0..0),
                e.to_string(),
            );
        }
        p.finish(path)?;
        Ok(pipeline)
    }

    /// Parses as far as possible: fails only when the text is not a
    /// pipeline at all (TOML syntax, unknown keys); other problems are
    /// returned next to the parts of the pipeline that are sound.
    fn parse_lenient(
        path: &Path,
        src: &str,
    ) -> Result<(Pipeline, Vec<(usize, String)>), ConfigErrors> {
        let mut p = Problems {
            src,
            list: Vec::new(),
        };
        let raw: RawFile = match toml::from_str(src) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.message().trim().to_owned();
                p.at(e.span().unwrap_or(0..0), msg);
                return Err(p.finish(path).expect_err("a parse error was recorded"));
            }
        };
        let r = Resolver {
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let (mut config, job_paths) = parse_job(&mut p, path, &raw.job, &raw.limits, &r);
        if let Some(so) = &raw.scale_out {
            config.scale_out = parse_scale_out(&mut p, so.get_ref());
            if raw.job.partitions.is_none() {
                // Each task (input partition) is one partition: the
                // instance's tasks run side by side.
                config.partitions = 1;
            }
        }
        let plugins: BTreeMap<String, PluginDef> = raw
            .plugins
            .iter()
            .map(|(alias, path)| {
                let def = PluginDef {
                    written: path.get_ref().clone(),
                    path: r.resolve(path.get_ref()),
                    span: path.span(),
                };
                (alias.clone(), def)
            })
            .collect();
        let mut names = Names::default();
        let sources = parse_sources(&mut p, &raw.sources, &mut names, &r, &config.job_name);
        let streams = parse_streams(&mut p, &raw.streams, &mut names, &plugins, &r);
        check_inputs(&mut p, &streams, &names);
        let streams = order_streams(&mut p, streams);
        let outputs = parse_outputs(&mut p, &raw.outputs, &names, &plugins, &r);
        if raw.outputs.is_empty() {
            p.at(0..0, "the pipeline has no [[output]]: add one, e.g. { stream = \"...\", type = \"print\" }");
        }
        if raw.sources.is_empty() {
            p.at(0..0, "the pipeline has no [[source]]");
        }
        let pipeline = Pipeline {
            path: path.to_owned(),
            src: src.to_owned(),
            config,
            job_paths,
            plugins,
            sources,
            streams,
            outputs,
            scale_out_span: raw.scale_out.as_ref().map(|s| s.span()),
        };
        Ok((pipeline, p.list))
    }

    /// Every file or directory path the pipeline names, as written, with
    /// where: what `weir serve` confines to a job's directory. Read from
    /// the typed definitions, so a new path option is covered when its
    /// type is.
    pub fn paths(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .job_paths
            .iter()
            .map(|(k, v)| (format!("[job] {k}"), v.as_str()))
            .collect();
        for (alias, def) in &self.plugins {
            out.push((format!("plugins.{alias}"), &def.written));
        }
        for s in &self.sources {
            for (k, v) in &s.paths {
                out.push((format!("[[source]] #{} {k}", s.table), v));
            }
        }
        for s in &self.streams {
            for (k, arg) in &s.args {
                if let StreamArg::StateFile { written, .. } = arg {
                    out.push((format!("[[stream]] #{} {k}", s.table), written));
                }
            }
        }
        for o in &self.outputs {
            if let OutputKind::TextFiles { written, .. } = &o.kind {
                out.push((format!("[[output]] #{} prefix", o.table), written));
            }
        }
        out
    }

    /// The pipeline as far as it parses, for checks that must run before
    /// anything is written (problems are left for [`Pipeline::parse`] to
    /// report); `None` when the text is not a pipeline at all.
    pub fn parse_unchecked(path: &Path, src: &str) -> Option<Pipeline> {
        Pipeline::parse_lenient(path, src).ok().map(|(p, _)| p)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(d) = o.batch_interval {
            self.config.batch_interval = d;
        }
        if let Some(n) = o.partitions {
            self.config.partitions = n;
        }
        if let Some(n) = o.workers {
            self.config.workers = n;
        }
        if o.simulated_clock {
            self.config.clock = ClockMode::Simulated { start_ms: 0 };
        }
        if let Some(s) = &o.stats_file {
            self.config.stats_file = Some(s.clone());
        }
        if let Some(dir) = &o.checkpoint {
            let interval = self.config.batch_interval.as_millis().max(1);
            let every_batches = (Duration::from_secs(10)
                .max(self.config.batch_interval)
                .as_millis()
                .div_ceil(interval) as u64)
                .max(1);
            let base = CheckpointConfig {
                dir: dir.clone(),
                every_batches,
                keep: 2,
                write_ahead_log: true,
            };
            self.config.checkpoint = Some(match self.config.checkpoint.take() {
                Some(c) => CheckpointConfig {
                    dir: dir.clone(),
                    ..c
                },
                None => base,
            });
        }
        self.config.fresh_start = o.fresh;
        if let (Some(name), Some(so)) = (&o.instance, &mut self.config.scale_out) {
            so.instance = name.clone();
        }
    }

    /// Loads the plugins and builds the job on a new context. Every plugin
    /// and function problem is reported, not only the first.
    pub fn build(&self) -> Result<StreamingContext, PipelineError> {
        let ctx = StreamingContext::new(self.config.clone()).map_err(PipelineError::Build)?;
        self.build_on(ctx)
    }

    /// As [`Pipeline::build`], on `host` (its wasm runtime, receiver
    /// runtime and worker pool) shared with other jobs, as `weir serve`
    /// runs them.
    pub fn build_on_host(&self, host: Host) -> Result<StreamingContext, PipelineError> {
        let ctx =
            StreamingContext::with_host(self.config.clone(), host).map_err(PipelineError::Build)?;
        self.build_on(ctx)
    }

    fn build_on(&self, ctx: StreamingContext) -> Result<StreamingContext, PipelineError> {
        let mut p = Problems {
            src: &self.src,
            list: Vec::new(),
        };
        let ctx = self.build_into(ctx, &mut p)?;
        p.finish(&self.path)?;
        Ok(ctx)
    }

    /// Loads every plugin (the modules a checkpoint kept, when recovering),
    /// reporting those that fail.
    fn load_plugins(&self, ctx: &StreamingContext, p: &mut Problems<'_>) -> HashMap<&str, Plugin> {
        // Recovering: run the modules the checkpoint kept, not files that
        // may have changed since.
        let stored = match &self.config.checkpoint {
            Some(c) if !self.config.fresh_start => crate::checkpoint::stored_modules(&c.dir),
            _ => BTreeMap::new(),
        };
        let mut plugins: HashMap<&str, Plugin> = HashMap::new();
        for (alias, def) in &self.plugins {
            let name = def
                .path
                .file_stem()
                .map_or_else(|| alias.clone(), |s| s.to_string_lossy().into_owned());
            let loaded = match stored.get(&name) {
                Some(kept) => {
                    tracing::info!(plugin = %name, module = %kept.display(), "using the module kept in the checkpoint");
                    ctx.load_plugin_as(&name, kept)
                }
                None => ctx.load_plugin(&def.path),
            };
            match loaded {
                Ok(plugin) => {
                    plugins.insert(alias, plugin);
                }
                Err(e) => p.at(def.span.clone(), format!("plugin `{alias}`: {e}")),
            }
        }
        plugins
    }

    /// A stream's arguments with functions resolved to loaded plugins and
    /// state files read; `None` when a plugin failed to load (already
    /// reported) or a state file cannot be read (reported here).
    fn resolve_args(
        &self,
        s: &StreamDef,
        plugins: &HashMap<&str, Plugin>,
        p: &mut Problems<'_>,
    ) -> Option<BTreeMap<&'static str, ArgValue>> {
        let mut args = BTreeMap::new();
        for (key, arg) in &s.args {
            let value = match arg {
                StreamArg::Function { alias, function } => {
                    let Some(plugin) = plugins.get(alias.as_str()) else {
                        return None; // its plugin failed to load
                    };
                    ArgValue::Function(FunctionRef {
                        plugin: plugin.clone(),
                        function: function.as_str().into(),
                    })
                }
                StreamArg::StateFile { path, .. } => {
                    let format = match s.args.get("initial_state_format") {
                        Some(StreamArg::Value(ArgValueDef::Choice(f))) => f.as_str(),
                        _ => "text",
                    };
                    match read_initial_state(path, format) {
                        Ok(pairs) => ArgValue::Pairs(pairs),
                        Err(e) => {
                            p.at(s.span.clone(), format!("stream `{}`: {key}: {e}", s.name));
                            return None;
                        }
                    }
                }
                // Read with the state file.
                StreamArg::Value(ArgValueDef::Choice(_)) => continue,
                StreamArg::Value(ArgValueDef::Number(n)) => ArgValue::Number(*n),
                StreamArg::Value(ArgValueDef::Duration(d)) => ArgValue::Duration(*d),
            };
            args.insert(*key, value);
        }
        Some(args)
    }

    /// Loads the plugins and builds the streams and outputs on `ctx`,
    /// adding every plugin and function problem to `p`. Parts that depend
    /// on something broken are skipped (their problem is reported already).
    fn build_into(
        &self,
        ctx: StreamingContext,
        p: &mut Problems<'_>,
    ) -> Result<StreamingContext, PipelineError> {
        let plugins = self.load_plugins(&ctx, p);
        let mut streams: HashMap<&str, Stream> = HashMap::new();
        for s in &self.sources {
            let st = ctx
                .source(Some(&s.name), s.spec.clone())
                .map_err(PipelineError::Build)?;
            streams.insert(&s.name, st);
        }
        for s in self.streams.iter().filter(|s| s.sound) {
            let Some(inputs) = s
                .inputs
                .iter()
                .map(|i| streams.get(i.as_str()).cloned())
                .collect::<Option<Vec<Stream>>>()
            else {
                continue; // an input failed to build; its problem is already reported
            };
            let Some(args) = self.resolve_args(s, &plugins, p) else {
                continue; // its plugin failed to load, or its state file cannot be read
            };
            let others: Vec<&Stream> = inputs[1..].iter().collect();
            let result = inputs[0]
                .apply_named(s.op, &others, args)
                .and_then(|st| st.named(&s.name));
            match result {
                Ok(st) => {
                    streams.insert(&s.name, st);
                }
                // The library names the operator after its input stream (the
                // new stream has no name yet); name the stream being defined
                // and the function as the file writes it.
                Err(BuildError::Function { op, message, .. }) => {
                    let written = s
                        .function_written()
                        .map(|f| format!(", function \"{f}\""))
                        .unwrap_or_default();
                    p.at(
                        s.span.clone(),
                        format!("stream `{}` ({op}{written}): {message}", s.name),
                    )
                }
                Err(e) => p.at(s.span.clone(), format!("stream `{}`: {e}", s.name)),
            }
        }
        for o in &self.outputs {
            let Some(st) = streams.get(o.stream.as_str()) else {
                continue;
            };
            let formatted;
            let st = match &o.function {
                None => st,
                Some((alias, function)) => {
                    let Some(plugin) = plugins.get(alias.as_str()) else {
                        continue; // its plugin failed to load: reported already
                    };
                    match st.map_partitions(plugin, function) {
                        Ok(f) => {
                            formatted = f;
                            &formatted
                        }
                        Err(e) => {
                            p.at(
                                o.span.clone(),
                                format!(
                                    "output of stream `{}`, function \"{alias}:{function}\": {e}",
                                    o.stream
                                ),
                            );
                            continue;
                        }
                    }
                }
            };
            let r = match &o.kind {
                OutputKind::Print { num } => st.print(*num),
                OutputKind::TextFiles { prefix, suffix, .. } => match &o.name {
                    Some(n) => st.save_as_text_files_named(n, prefix, suffix.as_deref()),
                    None => st.save_as_text_files(prefix, suffix.as_deref()),
                },
                // The name is the transactional id's and the records'
                // headers': it must not change between runs.
                OutputKind::Kafka(spec) => match &o.name {
                    Some(n) => st.to_kafka(n, spec.clone()),
                    None => st.to_kafka(&format!("to-{}", spec.topic), spec.clone()),
                },
            };
            r.map_err(PipelineError::Build)?;
        }
        Ok(ctx)
    }
}

impl PipelineError {
    /// A stable, machine-readable name of the problem (the serve API's
    /// error code).
    pub fn code(&self) -> &'static str {
        match self {
            PipelineError::Config(_) => "invalid_pipeline",
            PipelineError::Build(e) => e.code(),
        }
    }
}

/// A pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Problems located in the file.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// Anything else.
    #[error(transparent)]
    Build(BuildError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"
[plugins]
wc = "wc.wat"

[[source]]
name = "lines"
type = "generator"
"#;

    fn parse(streams: &str) -> Result<Pipeline, Vec<String>> {
        let text = format!("{HEAD}{streams}\n[[output]]\nstream = \"lines\"\ntype = \"print\"\n");
        Pipeline::parse(Path::new("/p/pipe.toml"), &text).map_err(|e| e.problems)
    }

    #[test]
    fn job_section_defaults_and_overrides() {
        let p = parse("").unwrap();
        let d = StreamingConfig::default();
        assert_eq!(p.config.job_name, "pipe");
        assert_eq!(p.config.batch_interval, d.batch_interval);
        assert_eq!(p.config.partitions, d.partitions);
        assert!(p.config.checkpoint.is_none());
        let text = format!(
            "[job]\nname = \"j\"\nbatch_interval = \"2s\"\ncheckpoint = \"ck\"\n{HEAD}\n[[output]]\nstream = \"lines\"\ntype = \"print\"\n"
        );
        let p = Pipeline::parse(Path::new("/p/pipe.toml"), &text).unwrap();
        let ck = p.config.checkpoint.unwrap();
        assert_eq!(ck.dir, Path::new("/p/ck"), "relative to the file");
        assert_eq!(ck.every_batches, 5, "max(10 s, interval) in whole batches");
        assert_eq!(p.config.job_name, "j");
    }

    #[test]
    fn stream_parameters_are_typed_by_the_operator() {
        let p = parse(
            r#"
[[stream]]
name = "w"
op = "reduce_by_key_and_window"
input = "lines"
function = "wc:sum"
inverse = "wc:subtract"
length = "30s"
slide = "10s"
partitions = 3
"#,
        )
        .unwrap();
        let s = &p.streams[0];
        assert_eq!(s.op.name, "reduce_by_key_and_window");
        assert_eq!(s.partitions(), Some(3));
        assert!(matches!(
            s.args.get("length"),
            Some(StreamArg::Value(ArgValueDef::Duration(d))) if *d == Duration::from_secs(30)
        ));
        assert!(matches!(
            s.args.get("inverse"),
            Some(StreamArg::Function { alias, function }) if alias == "wc" && function == "subtract"
        ));
    }

    #[test]
    fn stream_problems_name_the_key_and_what_takes_it() {
        let problems = parse(
            r#"
[[stream]]
name = "a"
op = "flat_map"
input = "lines"
function = "wc:split"
timeout = "5s"

[[stream]]
name = "b"
op = "reduce_by_key"
input = "lines"
function = "wc:sum"
partitions = 0

[[stream]]
name = "c"
op = "reduce_by_key_and_window"
input = "lines"
function = "wc:sum"
inverse = "other:sub"
length = "soon"
"#,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0]
            .contains("`flat_map` takes no `timeout` (operators that take it: map_with_state)"));
        assert!(problems[1].contains("stream `b`: `partitions` must be at least 1"));
        assert!(
            problems[2].contains("`inverse` must be a function of the same plugin, \"wc:NAME\"")
        );
        assert!(problems[3].contains("`length` = \"soon\" is not a duration"));
    }

    #[test]
    fn one_problem_is_reported_once_and_every_problem_is_reported() {
        let problems = parse(
            r#"
[[stream]]
name = "w"
op = "reduce_by_key_and_window"
input = "lines"
function = "nope"
inverse = "wc:subtract"
slide = "1500us"
"#,
        )
        .unwrap_err();
        // The malformed function (not also the inverse that refers to
        // it), the sub-millisecond slide, and the missing length.
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("`reduce_by_key_and_window` needs `length`"));
        assert!(problems[1].contains("`function` must be \"PLUGIN:FUNCTION\""));
        assert!(problems[2].contains("durations are whole milliseconds"));
    }

    #[test]
    fn missing_parameters_and_api_only_operators() {
        let problems = parse(
            r#"
[[stream]]
name = "w"
op = "window"
input = "lines"

[[stream]]
name = "s"
op = "slice"
input = "lines"
"#,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].contains("`window` needs `length` (e.g. \"30s\")"));
        assert!(problems[1].contains("`slice` is available in the library API only"));
    }

    #[test]
    fn paths_are_listed_as_written() {
        let text = format!(
            r#"[job]
checkpoint = "ck"
{HEAD}
[[source]]
name = "files"
type = "files"
dir = "in"

[[stream]]
name = "s"
op = "update_state_by_key"
input = "lines"
function = "wc:count"
initial_state = "init.tsv"

[[output]]
stream = "s"
type = "text_files"
prefix = "out/s"
"#
        );
        let p = Pipeline::parse(Path::new("/p/pipe.toml"), &text).unwrap();
        let paths: Vec<(String, &str)> = p.paths();
        assert_eq!(
            paths,
            vec![
                ("[job] checkpoint".to_string(), "ck"),
                ("plugins.wc".to_string(), "wc.wat"),
                ("[[source]] #2 dir".to_string(), "in"),
                ("[[stream]] #1 initial_state".to_string(), "init.tsv"),
                ("[[output]] #1 prefix".to_string(), "out/s"),
            ]
        );
    }
}
