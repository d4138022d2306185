//! The pipeline file: a TOML description of a job that maps onto the
//! library API one to one. Parsing turns raw text into a [`Pipeline`]
//! (checked for shape: known keys, known operators, defined streams, no
//! cycles); [`Pipeline::build`] loads the plugins and builds the job on a
//! [`StreamingContext`], checking every function's kind. Every problem is
//! reported with `file:line:col`, all of them at once.
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
use crate::receiver::generator::GeneratorKind;
use crate::stream::{
    ClockMode, JoinKind, SourceSpec, StateOptions, Stream, StreamingConfig, StreamingContext,
};
use crate::wasm::{Limits, Plugin, Runtime};

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
    generate: Option<Spanned<String>>,
    rate: Option<u64>,
    seed: Option<u64>,
    words_per_line: Option<usize>,
    vocabulary: Option<usize>,
    limit: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: Spanned<String>,
    op: Spanned<String>,
    input: Option<Spanned<String>>,
    inputs: Option<Spanned<Vec<String>>>,
    function: Option<Spanned<String>>,
    partitions: Option<Spanned<usize>>,
    length: Option<Spanned<String>>,
    slide: Option<Spanned<String>>,
    inverse: Option<Spanned<String>>,
    filter: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    initial_state: Option<Spanned<String>>,
    initial_state_format: Option<Spanned<String>>,
    n: Option<Spanned<usize>>,
}

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
}

/// Every operator the pipeline file knows, with its Spark name.
pub const OPERATORS: &[(&str, &str)] = &[
    ("map", "map"),
    ("flat_map", "flatMap"),
    ("filter", "filter"),
    ("map_partitions", "mapPartitions"),
    ("transform", "transform"),
    ("repartition", "repartition"),
    ("union", "union"),
    ("count", "count"),
    ("reduce", "reduce"),
    ("count_by_value", "countByValue"),
    ("reduce_by_key", "reduceByKey"),
    ("group_by_key", "groupByKey"),
    ("join", "join"),
    ("left_outer_join", "leftOuterJoin"),
    ("right_outer_join", "rightOuterJoin"),
    ("full_outer_join", "fullOuterJoin"),
    ("cogroup", "cogroup"),
    ("window", "window"),
    ("count_by_window", "countByWindow"),
    ("reduce_by_window", "reduceByWindow"),
    ("reduce_by_key_and_window", "reduceByKeyAndWindow"),
    ("count_by_value_and_window", "countByValueAndWindow"),
    ("update_state_by_key", "updateStateByKey"),
    ("map_with_state", "mapWithState"),
    ("state_snapshots", "stateSnapshots"),
    ("top", "top"),
];

const WINDOW_OPS: &[&str] = &[
    "window",
    "count_by_window",
    "reduce_by_window",
    "reduce_by_key_and_window",
    "count_by_value_and_window",
];
const STATE_OPS: &[&str] = &["update_state_by_key", "map_with_state"];

const SOURCE_TYPES: &[&str] = &["socket", "files", "generator"];
const OUTPUT_TYPES: &[&str] = &["print", "text_files"];

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
}

/// A derived stream as the pipeline describes it.
#[derive(Debug, Clone)]
pub struct StreamDef {
    /// Stream name.
    pub name: String,
    /// Operator name (one of [`OPERATORS`]).
    pub op: String,
    /// Input stream names.
    pub inputs: Vec<String>,
    /// `(plugin alias, function)`.
    pub function: Option<(String, String)>,
    /// Partition count, where the operator takes one.
    pub partitions: Option<usize>,
    /// Window length and slide.
    pub window: Option<(Duration, Duration)>,
    /// Inverse reduce function (same plugin).
    pub inverse: Option<String>,
    /// Filter function of an incremental window (same plugin).
    pub filter: Option<String>,
    /// Idle timeout of map_with_state.
    pub timeout: Option<Duration>,
    /// Initial state.
    pub initial_state: Vec<(Vec<u8>, Vec<u8>)>,
    /// Records kept by `top`.
    pub n: usize,
    span: Range<usize>,
}

/// An output as the pipeline describes it.
#[derive(Debug, Clone)]
pub struct OutputDef {
    /// Output name.
    pub name: Option<String>,
    /// The stream it writes.
    pub stream: String,
    /// `print` or `text_files`.
    pub kind: String,
    /// Records to print.
    pub num: usize,
    /// Text-files prefix (resolved against the pipeline file's directory).
    pub prefix: Option<PathBuf>,
    /// Text-files suffix.
    pub suffix: Option<String>,
}

/// A parsed, shape-checked pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file.
    pub path: PathBuf,
    src: String,
    /// Job configuration.
    pub config: StreamingConfig,
    /// Plugin alias → module path (resolved against the file's directory).
    pub plugins: BTreeMap<String, (PathBuf, Range<usize>)>,
    /// Sources.
    pub sources: Vec<SourceDef>,
    /// Derived streams, in an order where inputs come first.
    pub streams: Vec<StreamDef>,
    /// Outputs.
    pub outputs: Vec<OutputDef>,
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
        pipeline.build_into(ctx, &mut p)?;
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
                p.finish(path)?;
                unreachable!("a parse error was recorded");
            }
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |s: &str| {
            if Path::new(s).is_absolute() {
                PathBuf::from(s)
            } else {
                base.join(s)
            }
        };

        // [job] and [limits]
        let d = StreamingConfig::default();
        let j = &raw.job;
        let positive =
            |p: &mut Problems<'_>, v: &Option<Spanned<usize>>, key: &str, default: usize| match v {
                Some(s) if *s.get_ref() == 0 => {
                    p.at(s.span(), format!("`{key}` must be at least 1"));
                    default
                }
                Some(s) => *s.get_ref(),
                None => default,
            };
        let batch_interval = duration(
            &mut p,
            &j.batch_interval,
            "batch_interval",
            d.batch_interval,
        );
        let block_interval = duration(
            &mut p,
            &j.block_interval,
            "block_interval",
            d.block_interval,
        );
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
            fuel: raw.limits.fuel.unwrap_or(dl.fuel),
            memory_bytes: raw.limits.memory_mb.map_or(dl.memory_bytes, |m| m << 20),
            output_bytes: raw.limits.output_mb.map_or(dl.output_bytes, |m| m << 20),
            deadline: duration(&mut p, &raw.limits.deadline, "deadline", dl.deadline),
            log_bytes: dl.log_bytes,
        };
        let config = StreamingConfig {
            job_name: j.name.clone().unwrap_or_else(|| {
                path.file_stem()
                    .map_or_else(|| "weir".into(), |s| s.to_string_lossy().into_owned())
            }),
            batch_interval,
            block_interval,
            partitions: positive(&mut p, &j.partitions, "partitions", d.partitions),
            workers: positive(&mut p, &j.workers, "workers", d.workers),
            limits,
            clock,
            max_pending_blocks: positive(
                &mut p,
                &j.max_pending_blocks,
                "max_pending_blocks",
                d.max_pending_blocks,
            ),
            stats_file: j.stats_file.as_deref().map(resolve),
            progress: true,
            checkpoint: j.checkpoint.as_deref().map(|dir| {
                // Spark's default: every max(10 s, batch interval), rounded
                // to whole batches.
                let every = duration(&mut p, &j.checkpoint_interval, "checkpoint_interval", Duration::from_secs(10).max(batch_interval));
                let every_batches = (every.as_millis().div_ceil(batch_interval.as_millis().max(1)) as u64).max(1);
                let keep = match &j.keep_checkpoints {
                    Some(k) if *k.get_ref() < 2 => {
                        p.at(k.span(), "`keep_checkpoints` must be at least 2, so a damaged checkpoint has a fallback");
                        2
                    }
                    Some(k) => *k.get_ref(),
                    None => 2,
                };
                CheckpointConfig { dir: resolve(dir), every_batches, keep, write_ahead_log: j.write_ahead_log.unwrap_or(true) }
            }),
            fresh_start: false,
            max_retries: raw.limits.max_retries.unwrap_or(0),
            max_state_bytes: raw.limits.max_state_mb.map(|m| m << 20),
        };

        let plugins: BTreeMap<String, (PathBuf, Range<usize>)> = raw
            .plugins
            .iter()
            .map(|(alias, path)| (alias.clone(), (resolve(path.get_ref()), path.span())))
            .collect();

        // Names must be unique across sources and streams.
        let mut defined: HashMap<String, Range<usize>> = HashMap::new();
        let mut define = |p: &mut Problems<'_>, name: &Spanned<String>| {
            if let Some(first) = defined.get(name.get_ref()) {
                let (l, c) = p.location(first.start);
                p.at(
                    name.span(),
                    format!(
                        "stream `{}` is defined twice (first at {l}:{c})",
                        name.get_ref()
                    ),
                );
            } else {
                defined.insert(name.get_ref().clone(), name.span());
            }
        };

        let mut sources = Vec::new();
        for s in &raw.sources {
            let span = s.span();
            let s = s.get_ref();
            define(&mut p, &s.name);
            let spec = match s.kind.get_ref().as_str() {
                "socket" => match (&s.host, s.port) {
                    (Some(host), Some(port)) => Some(SourceSpec::Socket {
                        host: host.clone(),
                        port,
                    }),
                    _ => {
                        p.at(
                            span.clone(),
                            format!(
                                "source `{}`: a socket source needs `host` and `port`",
                                s.name.get_ref()
                            ),
                        );
                        None
                    }
                },
                "files" => match &s.dir {
                    Some(dir) => Some(SourceSpec::Files {
                        dir: resolve(dir),
                        include_existing: s.include_existing.unwrap_or(false),
                    }),
                    None => {
                        p.at(
                            span.clone(),
                            format!("source `{}`: a files source needs `dir`", s.name.get_ref()),
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
                        Some((other, span)) => {
                            p.at(span, format!("unknown generator output `{other}`; use \"text\", \"tweets\" or \"key_value\""));
                            GeneratorKind::Text
                        }
                    };
                    Some(SourceSpec::Generator {
                        kind,
                        rate: s.rate.unwrap_or(1000),
                        seed: s.seed.unwrap_or(42),
                        words_per_line: s.words_per_line.unwrap_or(10),
                        vocabulary: s.vocabulary.unwrap_or(10_000),
                        limit: s.limit,
                    })
                }
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
                    name: s.name.get_ref().clone(),
                    spec,
                });
            }
        }

        let mut streams = Vec::new();
        for s in &raw.streams {
            let span = s.span();
            let s = s.get_ref();
            define(&mut p, &s.name);
            let name = s.name.get_ref();
            let op = s.op.get_ref().as_str();
            if !OPERATORS.iter().any(|(o, _)| *o == op) {
                let hint = OPERATORS
                    .iter()
                    .find(|(_, spark)| spark.eq_ignore_ascii_case(op))
                    .map(|(o, _)| format!(" (did you mean `{o}`?)"));
                p.at(
                    s.op.span(),
                    format!(
                        "stream `{name}`: unknown operator `{op}`{}; known operators: {}",
                        hint.unwrap_or_default(),
                        OPERATORS
                            .iter()
                            .map(|(o, _)| *o)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            }
            let two_inputs = matches!(
                op,
                "join" | "left_outer_join" | "right_outer_join" | "full_outer_join" | "cogroup"
            );
            let inputs: Vec<String> = match (&s.input, &s.inputs) {
                (Some(i), None) => vec![i.get_ref().clone()],
                (None, Some(is)) => is.get_ref().clone(),
                (Some(_), Some(is)) => {
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
            let arity_ok = match op {
                "union" => !inputs.is_empty(),
                _ if two_inputs => inputs.len() == 2,
                _ => inputs.len() == 1,
            };
            if !arity_ok {
                let want = if op == "union" {
                    "one or more"
                } else if two_inputs {
                    "exactly two (left, right)"
                } else {
                    "exactly one"
                };
                p.at(
                    span.clone(),
                    format!(
                        "stream `{name}`: `{op}` reads {want} input streams, {} given",
                        inputs.len()
                    ),
                );
                continue;
            }
            let needs_function = matches!(
                op,
                "map"
                    | "flat_map"
                    | "filter"
                    | "map_partitions"
                    | "transform"
                    | "reduce"
                    | "reduce_by_key"
                    | "reduce_by_window"
                    | "reduce_by_key_and_window"
                    | "update_state_by_key"
                    | "map_with_state"
            );
            let function = match (&s.function, needs_function) {
                (Some(f), true) => match f.get_ref().split_once(':') {
                    Some((alias, func)) if !alias.is_empty() && !func.is_empty() => {
                        if !plugins.contains_key(alias) {
                            p.at(
                                f.span(),
                                format!(
                                    "stream `{name}`: unknown plugin `{alias}`; plugins declared in [plugins]: {}",
                                    if plugins.is_empty() { "(none)".into() } else { plugins.keys().cloned().collect::<Vec<_>>().join(", ") }
                                ),
                            );
                        }
                        Some((alias.to_owned(), func.to_owned()))
                    }
                    _ => {
                        p.at(f.span(), format!("stream `{name}`: `function` must be \"PLUGIN:FUNCTION\", e.g. \"wc:split\""));
                        None
                    }
                },
                (None, true) => {
                    p.at(
                        span.clone(),
                        format!("stream `{name}`: `{op}` needs `function = \"PLUGIN:FUNCTION\"`"),
                    );
                    None
                }
                (Some(f), false) => {
                    p.at(
                        f.span(),
                        format!("stream `{name}`: `{op}` takes no `function`"),
                    );
                    None
                }
                (None, false) => None,
            };
            let takes_partitions = !matches!(
                op,
                "map"
                    | "flat_map"
                    | "filter"
                    | "map_partitions"
                    | "transform"
                    | "union"
                    | "count"
                    | "reduce"
                    | "window"
                    | "count_by_window"
                    | "reduce_by_window"
                    | "state_snapshots"
                    | "top"
            );
            let partitions = match &s.partitions {
                Some(n) if !takes_partitions => {
                    p.at(
                        n.span(),
                        format!("stream `{name}`: `{op}` takes no `partitions`"),
                    );
                    None
                }
                Some(n) if *n.get_ref() == 0 => {
                    p.at(
                        n.span(),
                        format!("stream `{name}`: `partitions` must be at least 1"),
                    );
                    None
                }
                Some(n) => Some(*n.get_ref()),
                None if op == "repartition" => {
                    p.at(
                        span.clone(),
                        format!("stream `{name}`: `repartition` needs `partitions`"),
                    );
                    None
                }
                None => None,
            };
            let extra = stream_extras(&mut p, s, name, op, batch_interval, &function, &resolve);
            streams.push(StreamDef {
                name: name.clone(),
                op: op.to_owned(),
                inputs,
                function,
                partitions,
                window: extra.window,
                inverse: extra.inverse,
                filter: extra.filter,
                timeout: extra.timeout,
                initial_state: extra.initial_state,
                n: match &s.n {
                    Some(n) if op != "top" => {
                        p.at(n.span(), format!("stream `{name}`: `{op}` takes no `n`"));
                        0
                    }
                    Some(n) => *n.get_ref(),
                    None => 10,
                },
                span: span.clone(),
            });
        }

        // Every input must be defined; order streams so inputs come first.
        for s in &streams {
            for i in &s.inputs {
                if !defined.contains_key(i) {
                    let mut known: Vec<&String> = defined.keys().collect();
                    known.sort();
                    p.at(
                        s.span.clone(),
                        format!(
                            "stream `{}` reads `{i}`, which is not defined; defined streams: {}",
                            s.name,
                            known
                                .iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }
        let streams = order_streams(&mut p, streams);

        let mut outputs = Vec::new();
        for o in &raw.outputs {
            let span = o.span();
            let o = o.get_ref();
            if !defined.contains_key(o.stream.get_ref()) {
                p.at(
                    o.stream.span(),
                    format!(
                        "output writes stream `{}`, which is not defined",
                        o.stream.get_ref()
                    ),
                );
            }
            // The suffix becomes part of a directory name: it may not
            // name another directory.
            if let Some(suffix) = &o.suffix {
                if suffix.is_empty() || suffix.contains(['/', '\\', '\0']) || suffix == ".." {
                    p.at(span.clone(), format!("`suffix` = {suffix:?} must be a plain name ending, without `/` or `\\`"));
                }
            }
            match o.kind.get_ref().as_str() {
                "print" => {}
                "text_files" if o.prefix.is_none() => {
                    p.at(span.clone(), "a text_files output needs `prefix`")
                }
                "text_files" => {}
                other => p.at(
                    o.kind.span(),
                    format!(
                        "unknown output type `{other}`; known types: {}",
                        OUTPUT_TYPES.join(", ")
                    ),
                ),
            }
            outputs.push(OutputDef {
                name: o.name.clone(),
                stream: o.stream.get_ref().clone(),
                kind: o.kind.get_ref().clone(),
                num: o.num.unwrap_or(10),
                prefix: o.prefix.as_ref().map(|s| resolve(s.get_ref())),
                suffix: o.suffix.clone(),
            });
        }
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
            plugins,
            sources,
            streams,
            outputs,
        };
        Ok((pipeline, p.list))
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
    }

    /// Loads the plugins and builds the job on a new context. Every plugin
    /// and function problem is reported, not only the first.
    pub fn build(&self) -> Result<StreamingContext, PipelineError> {
        let ctx = StreamingContext::new(self.config.clone()).map_err(PipelineError::Build)?;
        self.build_on(ctx)
    }

    /// As [`Pipeline::build`], on a context sharing `runtime` (its engine and
    /// module cache) with other jobs, as `weir serve` runs them.
    pub fn build_with_runtime(&self, runtime: Runtime) -> Result<StreamingContext, PipelineError> {
        let ctx = StreamingContext::with_runtime(self.config.clone(), runtime)
            .map_err(PipelineError::Build)?;
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

    /// Loads the plugins and builds the streams and outputs on `ctx`,
    /// adding every plugin and function problem to `p`. Parts that depend
    /// on something broken are skipped (their problem is reported already).
    fn build_into(
        &self,
        ctx: StreamingContext,
        p: &mut Problems<'_>,
    ) -> Result<StreamingContext, PipelineError> {
        // Recovering: run the modules the checkpoint kept, not files that
        // may have changed since.
        let stored = match &self.config.checkpoint {
            Some(c) if !self.config.fresh_start => crate::checkpoint::stored_modules(&c.dir),
            _ => BTreeMap::new(),
        };
        let mut plugins: HashMap<&str, Plugin> = HashMap::new();
        for (alias, (path, span)) in &self.plugins {
            let name = path
                .file_stem()
                .map_or_else(|| alias.clone(), |s| s.to_string_lossy().into_owned());
            let loaded = match stored.get(&name) {
                Some(kept) => {
                    tracing::info!(plugin = %name, module = %kept.display(), "using the module kept in the checkpoint");
                    ctx.load_plugin_as(&name, kept)
                }
                None => ctx.load_plugin(path),
            };
            match loaded {
                Ok(plugin) => {
                    plugins.insert(alias, plugin);
                }
                Err(e) => p.at(span.clone(), format!("plugin `{alias}`: {e}")),
            }
        }
        let mut streams: HashMap<&str, Stream> = HashMap::new();
        for s in &self.sources {
            match ctx.source(Some(&s.name), s.spec.clone()) {
                Ok(st) => {
                    streams.insert(&s.name, st);
                }
                Err(e) => return Err(PipelineError::Build(e)),
            }
        }
        for s in &self.streams {
            let Some(inputs) = s
                .inputs
                .iter()
                .map(|i| streams.get(i.as_str()).cloned())
                .collect::<Option<Vec<Stream>>>()
            else {
                continue; // an input failed to build; its problem is already reported
            };
            let func = s
                .function
                .as_ref()
                .and_then(|(alias, f)| plugins.get(alias.as_str()).map(|pl| (pl, f.as_str())));
            if s.function.is_some() && func.is_none() {
                continue; // its plugin failed to load
            }
            let result = build_stream(s, &inputs, func).and_then(|st| st.named(&s.name));
            match result {
                Ok(st) => {
                    streams.insert(&s.name, st);
                }
                // The library names the operator after its input stream (the
                // new stream has no name yet); name the stream being defined
                // and the function as the file writes it.
                Err(BuildError::Function { op, message, .. }) => {
                    let written = s
                        .function
                        .as_ref()
                        .map(|(alias, f)| format!(", function \"{alias}:{f}\""))
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
            let r = match o.kind.as_str() {
                "print" => st.print(o.num),
                _ => {
                    let Some(prefix) = o.prefix.clone() else {
                        continue;
                    };
                    match &o.name {
                        Some(n) => st.save_as_text_files_named(n, prefix, o.suffix.as_deref()),
                        None => st.save_as_text_files(prefix, o.suffix.as_deref()),
                    }
                }
            };
            r.map_err(PipelineError::Build)?;
        }
        Ok(ctx)
    }
}

struct Extras {
    window: Option<(Duration, Duration)>,
    inverse: Option<String>,
    filter: Option<String>,
    timeout: Option<Duration>,
    initial_state: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The window and state keys of a stream, checked against its operator.
fn stream_extras(
    p: &mut Problems<'_>,
    s: &RawStream,
    name: &str,
    op: &str,
    batch_interval: Duration,
    function: &Option<(String, String)>,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Extras {
    let windowed = WINDOW_OPS.contains(&op);
    let stateful = STATE_OPS.contains(&op);
    let not_for = |p: &mut Problems<'_>, key: &str, span: Range<usize>| {
        p.at(span, format!("stream `{name}`: `{op}` takes no `{key}`"));
    };
    let window = if windowed {
        match &s.length {
            None => {
                p.at(s.op.span(), format!("stream `{name}`: `{op}` needs `length` (e.g. \"30s\"); `slide` defaults to the batch interval"));
                None
            }
            Some(_) => Some((
                duration(p, &s.length, "length", batch_interval),
                duration(p, &s.slide, "slide", batch_interval),
            )),
        }
    } else {
        for (key, v) in [("length", &s.length), ("slide", &s.slide)] {
            if let Some(v) = v {
                not_for(p, key, v.span());
            }
        }
        None
    };
    let same_plugin = |p: &mut Problems<'_>, key: &str, v: &Spanned<String>| -> Option<String> {
        let alias = function
            .as_ref()
            .map(|(a, _)| a.as_str())
            .unwrap_or_default();
        match v.get_ref().split_once(':') {
            Some((a, f)) if a == alias && !f.is_empty() => Some(f.to_owned()),
            _ => {
                p.at(v.span(), format!("stream `{name}`: `{key}` must be a function of the same plugin, \"{alias}:NAME\""));
                None
            }
        }
    };
    let (mut inverse, mut filter) = (None, None);
    for (key, v, slot) in [
        ("inverse", &s.inverse, &mut inverse),
        ("filter", &s.filter, &mut filter),
    ] {
        if let Some(v) = v {
            if op == "reduce_by_key_and_window" {
                *slot = same_plugin(p, key, v);
            } else {
                not_for(p, key, v.span());
            }
        }
    }
    if filter.is_some() && inverse.is_none() && s.inverse.is_none() {
        if let Some(f) = &s.filter {
            p.at(
                f.span(),
                format!(
                    "stream `{name}`: `filter` applies to the incremental form only; add `inverse`"
                ),
            );
        }
    }
    let timeout = match &s.timeout {
        Some(_) if op == "map_with_state" => {
            Some(duration(p, &s.timeout, "timeout", Duration::from_secs(1)))
        }
        Some(t) => {
            not_for(p, "timeout", t.span());
            None
        }
        None => None,
    };
    let mut initial_state = Vec::new();
    match (&s.initial_state, stateful) {
        (Some(path), true) => {
            let format = s
                .initial_state_format
                .as_ref()
                .map_or("text", |f| f.get_ref().as_str());
            match read_initial_state(&resolve(path.get_ref()), format) {
                Ok(pairs) => initial_state = pairs,
                Err(e) => p.at(path.span(), format!("stream `{name}`: initial_state: {e}")),
            }
        }
        (Some(path), false) => not_for(p, "initial_state", path.span()),
        (None, _) => {}
    }
    Extras {
        window,
        inverse,
        filter,
        timeout,
        initial_state,
    }
}

/// Reads `key<TAB>value` lines; values are `text` (raw UTF-8), `i64`
/// (decimal, stored as the canonical 8-byte count) or `hex`.
fn read_initial_state(path: &Path, format: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut pairs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (k, v) = line
            .split_once('\t')
            .ok_or_else(|| format!("{}:{}: expected `key<TAB>value`", path.display(), i + 1))?;
        let value = match format {
            "text" => v.as_bytes().to_vec(),
            "i64" => v
                .trim()
                .parse::<i64>()
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?
                .to_le_bytes()
                .to_vec(),
            "hex" => {
                hex::decode(v.trim()).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?
            }
            other => {
                return Err(format!(
                    "unknown initial_state_format `{other}`; use \"text\", \"i64\" or \"hex\""
                ))
            }
        };
        pairs.push((k.as_bytes().to_vec(), value));
    }
    Ok(pairs)
}

fn build_stream(
    s: &StreamDef,
    inputs: &[Stream],
    func: Option<(&Plugin, &str)>,
) -> Result<Stream, BuildError> {
    let input = &inputs[0];
    let f = || func.expect("checked at parse: this operator has a function");
    let win = || {
        s.window
            .expect("checked at parse: window operators have a length")
    };
    match s.op.as_str() {
        "map" => input.map(f().0, f().1),
        "flat_map" => input.flat_map(f().0, f().1),
        "filter" => input.filter(f().0, f().1),
        "map_partitions" | "transform" => input.map_partitions(f().0, f().1),
        "repartition" => input.repartition(s.partitions.unwrap_or(1)),
        "union" => input.union(&inputs[1..].iter().collect::<Vec<_>>()),
        "count" => input.count(),
        "reduce" => input.reduce(f().0, f().1),
        "count_by_value" => input.count_by_value(s.partitions),
        "reduce_by_key" => input.reduce_by_key(f().0, f().1, s.partitions),
        "group_by_key" => input.group_by_key(s.partitions),
        "join" => input.join_with(JoinKind::Inner, &inputs[1], s.partitions),
        "left_outer_join" => input.join_with(JoinKind::LeftOuter, &inputs[1], s.partitions),
        "right_outer_join" => input.join_with(JoinKind::RightOuter, &inputs[1], s.partitions),
        "full_outer_join" => input.join_with(JoinKind::FullOuter, &inputs[1], s.partitions),
        "cogroup" => input.cogroup(&inputs[1], s.partitions),
        "window" => input.window(win().0, win().1),
        "count_by_window" => input.count_by_window(win().0, win().1),
        "reduce_by_window" => input.reduce_by_window(f().0, f().1, win().0, win().1),
        "reduce_by_key_and_window" => match &s.inverse {
            None => input.reduce_by_key_and_window(f().0, f().1, win().0, win().1, s.partitions),
            Some(inv) => input.reduce_by_key_and_window_inv(
                f().0,
                f().1,
                inv,
                win().0,
                win().1,
                s.partitions,
                s.filter.as_deref(),
            ),
        },
        "count_by_value_and_window" => {
            input.count_by_value_and_window(win().0, win().1, s.partitions)
        }
        "update_state_by_key" | "map_with_state" => {
            let options = StateOptions {
                partitions: s.partitions,
                timeout: s.timeout,
                initial_state: s.initial_state.clone(),
            };
            if s.op == "map_with_state" {
                input.map_with_state(f().0, f().1, options)
            } else {
                input.update_state_by_key(f().0, f().1, options)
            }
        }
        "state_snapshots" => input.state_snapshots(),
        "top" => input.top(s.n),
        other => Err(BuildError::Invalid(format!("unknown operator `{other}`"))),
    }
}

/// Orders streams so every stream comes after its inputs; reports cycles
/// by the streams that form them.
fn order_streams(p: &mut Problems<'_>, streams: Vec<StreamDef>) -> Vec<StreamDef> {
    let index: HashMap<&str, usize> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut state = vec![0u8; streams.len()]; // 0 new, 1 on path, 2 done
    let mut order = Vec::with_capacity(streams.len());
    fn visit(
        i: usize,
        streams: &[StreamDef],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        match state[i] {
            2 => return None,
            1 => {
                let start = path.iter().position(|&x| x == i).expect("on path");
                return Some(path[start..].to_vec());
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for input in &streams[i].inputs {
            if let Some(&j) = index.get(input.as_str()) {
                if let Some(cycle) = visit(j, streams, index, state, order, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        state[i] = 2;
        order.push(i);
        None
    }
    for i in 0..streams.len() {
        if let Some(cycle) = visit(i, &streams, &index, &mut state, &mut order, &mut Vec::new()) {
            let names: Vec<&str> = cycle
                .iter()
                .chain(cycle.first())
                .map(|&c| streams[c].name.as_str())
                .collect();
            p.at(
                streams[cycle[0]].span.clone(),
                format!("streams form a cycle: {}", names.join(" → ")),
            );
            return streams;
        }
    }
    let mut slots: Vec<Option<StreamDef>> = streams.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| slots[i].take().expect("each stream once"))
        .collect()
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
