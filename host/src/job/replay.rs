//! `weir replay`: a dry run of a hot swap against real past input.
//!
//! The recorded batches of a checkpointed job are run twice, side by side:
//! the *baseline* with the modules the checkpoint says ran each batch (so
//! it reproduces the recorded run; where it passes a kept checkpoint its
//! state is checked against it), and the *candidate* with a new module
//! substituted for one plugin from the first replayed batch on (state
//! migrated through the hot-swap path when its `weir_state_version`
//! differs). Both start from the state of the newest kept checkpoint before
//! the first selected batch and get exactly the logged inputs, batch times
//! and partitions, so any difference comes from the module. Every stream's
//! batch is compared (outputs and intermediate streams); nothing is written
//! anywhere and the checkpoint directory is only read.

pub mod diff;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use self::diff::StreamDiff;
use crate::checkpoint::recorded::Recorded;
use crate::checkpoint::{BatchEntry, CheckpointData, CheckpointError, ReplayError, RestoreError};
use crate::error::{BuildError, EngineError};
use crate::graph::executor::{Executor, SwapError};
use crate::graph::NodeId;
use crate::ops::Partitions;
use crate::output::print::Print;
use crate::receiver::{blocks_to_partitions, Source, SourceInput};
use crate::wasm::{Plugin, Runtime};

/// Which recorded batches to report: by batch number (from 1, as the log
/// counts them) or by batch time; both ends inclusive, either may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchSelection {
    /// Every batch that can be replayed.
    #[default]
    All,
    /// Batch numbers `from..=to`.
    Numbers {
        /// First batch number [default: the first replayable].
        from: Option<u64>,
        /// Last batch number [default: the last logged].
        to: Option<u64>,
    },
    /// Batch times `from..=to`, in ms.
    Times {
        /// Earliest batch time.
        from: Option<i64>,
        /// Latest batch time.
        to: Option<i64>,
    },
}

/// A `--batches` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("`{0}`: write batch numbers as A..B (e.g. 3..7, 5.., ..9, 4) or batch times in ms as 3000ms..7000ms")]
pub struct BadSelection(String);

impl std::str::FromStr for BatchSelection {
    type Err = BadSelection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadSelection(s.to_owned());
        let (a, b) = s.split_once("..").unwrap_or((s, s));
        let (a, b) = (a.trim(), b.trim());
        let times = a.ends_with("ms") || b.ends_with("ms");
        if times {
            let time = |t: &str| -> Result<Option<i64>, BadSelection> {
                match t {
                    "" => Ok(None),
                    t => t
                        .strip_suffix("ms")
                        .unwrap_or(t)
                        .trim()
                        .parse()
                        .map(Some)
                        .map_err(|_| bad()),
                }
            };
            return Ok(BatchSelection::Times {
                from: time(a)?,
                to: time(b)?,
            });
        }
        let number = |n: &str| -> Result<Option<u64>, BadSelection> {
            match n {
                "" => Ok(None),
                n => n.parse().map(Some).map_err(|_| bad()),
            }
        };
        Ok(BatchSelection::Numbers {
            from: number(a)?,
            to: number(b)?,
        })
    }
}

impl std::fmt::Display for BatchSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = |v: Option<String>| v.unwrap_or_default();
        match self {
            BatchSelection::All => write!(f, "all"),
            BatchSelection::Numbers { from, to } => {
                write!(
                    f,
                    "{}..{}",
                    end(from.map(|v| v.to_string())),
                    end(to.map(|v| v.to_string()))
                )
            }
            BatchSelection::Times { from, to } => write!(
                f,
                "{}..{}",
                end(from.map(|v| format!("{v}ms"))),
                end(to.map(|v| format!("{v}ms")))
            ),
        }
    }
}

/// What to replay and compare.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The checkpoint directory (only read).
    pub dir: PathBuf,
    /// The candidate module, loaded under the name of the plugin it
    /// replaces.
    pub candidate: Plugin,
    /// The batches to report.
    pub batches: BatchSelection,
    /// Differing records shown per stream and batch.
    pub samples: usize,
    /// Also render the candidate's output batches as `print` would, this
    /// many records each (replay without `--diff`).
    pub print: Option<usize>,
}

/// Why a replay could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    /// The checkpoint directory cannot be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The pipeline given is not the one that wrote the checkpoint.
    #[error(
        "the pipeline does not match the checkpoint in {}:\n{}\ngive the pipeline file the job ran with (and the same --partitions / --batch-interval overrides)",
        dir.display(),
        changes.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n")
    )]
    PipelineMismatch { dir: PathBuf, changes: Vec<String> },
    /// The selected batches cannot be replayed from what the directory holds.
    #[error("cannot replay batches {wanted} from {}: {available}", dir.display())]
    NotReplayable {
        dir: PathBuf,
        wanted: String,
        /// What the directory can replay, and why.
        available: String,
    },
    /// The candidate names no plugin of the job.
    #[error(
        "the job has no plugin `{plugin}` for the candidate module to replace; it has: {known} \
         (--plugin NAME says which one it replaces; the default is the module's file stem)"
    )]
    UnknownPlugin { plugin: String, known: String },
    /// The candidate cannot take over the plugin.
    #[error("the candidate module cannot replace plugin `{plugin}`: {source}")]
    Candidate {
        plugin: String,
        #[source]
        source: Box<SwapError>,
    },
    /// A module the checkpoint recorded cannot be run again.
    #[error("batch {seq} ({batch_time_ms} ms): the recorded module {hash} of plugin `{plugin}`: {source}")]
    RecordedModule {
        seq: u64,
        batch_time_ms: i64,
        plugin: String,
        hash: String,
        #[source]
        source: Box<SwapError>,
    },
    /// The checkpoint's state cannot be restored.
    #[error("the state of checkpoint {seq} in {}: {source}", dir.display())]
    Restore {
        dir: PathBuf,
        seq: u64,
        #[source]
        source: RestoreError,
    },
    /// A logged batch's input cannot be rebuilt.
    #[error("batch {seq} ({batch_time_ms} ms): {source}")]
    Input {
        seq: u64,
        batch_time_ms: i64,
        #[source]
        source: ReplayError,
    },
    /// A batch failed in one of the runs.
    #[error("batch {seq} ({batch_time_ms} ms) failed in the {run} run: {source}")]
    Batch {
        seq: u64,
        batch_time_ms: i64,
        /// `baseline` or `candidate`.
        run: &'static str,
        #[source]
        source: Box<EngineError>,
    },
    /// The baseline did not reproduce the recorded run.
    #[error(
        "the baseline does not reproduce the recorded run: after batch {seq} the state of `{stream}` differs from checkpoint {seq} \
         (the recording is not deterministic, or the checkpoint was changed)"
    )]
    BaselineDiverged { seq: u64, stream: String },
    /// The job could not be set up.
    #[error(transparent)]
    Build(Box<BuildError>),
}

impl From<BuildError> for ReplayFailure {
    fn from(e: BuildError) -> Self {
        ReplayFailure::Build(Box::new(e))
    }
}

/// One batch in which the candidate's streams differ from the baseline's.
#[derive(Debug, Clone, Serialize)]
pub struct BatchDiff {
    /// Batch number.
    pub batch: u64,
    /// Batch time.
    pub batch_time_ms: i64,
    /// The streams that differ, in graph order.
    pub streams: Vec<StreamDiff>,
}

/// The candidate's output batch, rendered as `print` renders it.
#[derive(Debug, Clone, Serialize)]
pub struct PrintedBatch {
    /// The stream an output writes.
    pub stream: String,
    /// `print`'s rendering (header with the batch time, records).
    pub text: String,
}

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The job's name.
    pub job: String,
    /// The checkpoint directory.
    pub checkpoint: PathBuf,
    /// The plugin the candidate replaces.
    pub plugin: String,
    /// Its module in the recorded run, at the first replayed batch.
    pub baseline_module: String,
    /// The candidate module's hash.
    pub candidate_module: String,
    /// Keys whose state went through the candidate's `migrate:state`.
    pub migrated_keys: u64,
    /// The checkpoint the replay started from (`None`: the job's start).
    pub from_checkpoint: Option<u64>,
    /// Batches run before the first reported one to rebuild its state.
    pub warm_up_batches: u64,
    /// First and last reported batch numbers.
    pub batches: (u64, u64),
    /// Their batch times.
    pub batch_times_ms: (i64, i64),
    /// Checkpoints whose state the baseline reproduced on the way.
    pub verified_checkpoints: Vec<u64>,
    /// Damaged files of the directory that were skipped.
    pub damaged: Vec<String>,
    /// Batches in which something differs.
    pub differences: Vec<BatchDiff>,
    /// The candidate's output batches (replay without `--diff`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub printed: Vec<PrintedBatch>,
}

impl ReplayReport {
    /// True when an output (sink) stream differs in some batch: what makes
    /// `weir replay --diff` exit with its "differences" status.
    pub fn outputs_differ(&self) -> bool {
        self.differences
            .iter()
            .flat_map(|b| &b.streams)
            .any(|s| s.output && s.differs())
    }
}

/// The two runs and what they replay.
pub(crate) struct Replayer {
    /// What the directory holds.
    pub recorded: Recorded,
    /// The job's sources, rebuilding logged inputs only.
    pub sources: Vec<Box<dyn Source>>,
    /// Runs the recorded modules.
    pub baseline: Executor,
    /// Runs the candidate.
    pub candidate: Executor,
    /// The streams outputs write.
    pub outputs: Vec<NodeId>,
    /// Partitions of input streams.
    pub partitions: usize,
    /// Loads recorded modules.
    pub wasm: Runtime,
}

/// A run of logged batches to replay, and the range reported.
struct Plan {
    checkpoint: Option<CheckpointData>,
    batches: Vec<BatchEntry>,
    first: u64,
}

impl Replayer {
    /// Replays the selected batches in both runs and compares them.
    pub(crate) fn run(mut self, req: &ReplayRequest) -> Result<ReplayReport, ReplayFailure> {
        let plan = self.plan(req.batches)?;
        let plugin = req.candidate.name().to_string();
        let first = plan.batches.first().expect("a plan has batches");
        let last = plan.batches.last().expect("a plan has batches");
        let mut report = ReplayReport {
            job: self.recorded.job.clone(),
            checkpoint: self.recorded.dir.clone(),
            plugin: plugin.clone(),
            baseline_module: first.modules.get(&plugin).cloned().unwrap_or_default(),
            candidate_module: req.candidate.hash_hex(),
            migrated_keys: 0,
            from_checkpoint: plan.checkpoint.as_ref().map(|c| c.seq),
            warm_up_batches: plan.first - first.seq,
            batches: (plan.first, last.seq),
            batch_times_ms: (
                plan.batches
                    .iter()
                    .find(|e| e.seq == plan.first)
                    .map_or(0, |e| e.batch_time_ms),
                last.batch_time_ms,
            ),
            verified_checkpoints: Vec::new(),
            damaged: self.recorded.damaged.clone(),
            differences: Vec::new(),
            printed: Vec::new(),
        };
        let mut modules = ModuleCache::default();
        self.restore(plan.checkpoint.as_ref(), &mut modules)?;
        report.migrated_keys = self.substitute(req.candidate.clone(), first.batch_time_ms)?;
        let recovery = self.recorded.recovery();
        for entry in &plan.batches {
            let _span = tracing::info_span!("replay", time_ms = entry.batch_time_ms).entered();
            self.align(entry, &plugin, &mut modules)?;
            let inputs = self.inputs(entry, &recovery)?;
            let fail = |run| {
                move |e| ReplayFailure::Batch {
                    seq: entry.seq,
                    batch_time_ms: entry.batch_time_ms,
                    run,
                    source: Box::new(e),
                }
            };
            let base = self
                .baseline
                .run_batch(entry.batch_time_ms, &inputs)
                .map_err(fail("baseline"))?;
            let cand = self
                .candidate
                .run_batch(entry.batch_time_ms, &inputs)
                .map_err(fail("candidate"))?;
            if entry.seq >= plan.first {
                self.compare(entry, &base, &cand, req, &mut report);
            }
            self.baseline.commit();
            self.candidate.commit();
            weir_abi::recycle::trim();
            if self.verify(entry.seq)? {
                report.verified_checkpoints.push(entry.seq);
            }
        }
        Ok(report)
    }

    /// The logged batches to run: from a kept checkpoint's state through
    /// the last selected batch.
    fn plan(&self, selection: BatchSelection) -> Result<Plan, ReplayFailure> {
        let rec = &self.recorded;
        let logged = &rec.batches;
        let (first, last) = match selection {
            BatchSelection::All => rec.replayable().unwrap_or((1, 0)),
            BatchSelection::Numbers { from, to } => {
                let (a, b) = rec.replayable().unwrap_or((1, 0));
                (from.unwrap_or(a), to.unwrap_or(b))
            }
            BatchSelection::Times { from, to } => {
                let within = |e: &&BatchEntry| {
                    from.is_none_or(|f| e.batch_time_ms >= f)
                        && to.is_none_or(|t| e.batch_time_ms <= t)
                };
                let mut chosen = logged.iter().filter(within).map(|e| e.seq);
                let a = chosen.next();
                (a.unwrap_or(1), chosen.next_back().or(a).unwrap_or(0))
            }
        };
        let start = (first <= last)
            .then(|| rec.start_for(first, last))
            .flatten();
        let Some(start) = start else {
            return Err(ReplayFailure::NotReplayable {
                dir: rec.dir.clone(),
                wanted: selection.to_string(),
                available: self.available(),
            });
        };
        Ok(Plan {
            checkpoint: start.checkpoint.cloned(),
            batches: start.batches.to_vec(),
            first,
        })
    }

    /// What the directory can replay, for messages, with the damage found.
    fn available(&self) -> String {
        let rec = &self.recorded;
        let mut text = self.replayable_text();
        for d in &rec.damaged {
            text.push_str("\n  ");
            text.push_str(d);
        }
        text
    }

    fn replayable_text(&self) -> String {
        let rec = &self.recorded;
        let time = |seq: u64| {
            rec.batches
                .iter()
                .find(|e| e.seq == seq)
                .map_or(String::new(), |e| format!("{} ms", e.batch_time_ms))
        };
        match rec.replayable() {
            Some((a, b)) => format!(
                "it can replay batches {a}..{b} (batch times {}..{}): its log holds no later batch, and the log of \
                 earlier ones is deleted once no kept checkpoint needs it (keep_checkpoints, checkpoint_interval)",
                time(a),
                time(b)
            ),
            None if rec.batches.is_empty() => "its write-ahead log holds no batch".into(),
            None => format!(
                "no kept checkpoint connects to its log (the log holds batches {}..{}; checkpoints: {})",
                rec.batches[0].seq,
                rec.batches[rec.batches.len() - 1].seq,
                rec.checkpoints.iter().map(|c| c.seq.to_string()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Both runs start from the checkpoint's state, with the modules that
    /// wrote it (no migration: its state is theirs).
    fn restore(
        &mut self,
        checkpoint: Option<&CheckpointData>,
        modules: &mut ModuleCache,
    ) -> Result<(), ReplayFailure> {
        let Some(c) = checkpoint else {
            return Ok(());
        };
        for ex in [&mut self.baseline, &mut self.candidate] {
            ex.restore(c.zero_ms, &c.nodes, c.format == 1)
                .map_err(|source| ReplayFailure::Restore {
                    dir: self.recorded.dir.clone(),
                    seq: c.seq,
                    source,
                })?;
            let at = (c.seq, c.batch_time_ms);
            align_modules(
                ex,
                &c.modules,
                None,
                at,
                false,
                modules,
                &self.recorded,
                &self.wasm,
            )?;
        }
        Ok(())
    }

    /// Swaps the candidate in, through the hot-swap path: its functions
    /// checked, state migrated if its state version differs.
    fn substitute(&mut self, candidate: Plugin, t: i64) -> Result<u64, ReplayFailure> {
        let plugin = candidate.name().to_string();
        self.candidate
            .swap(&plugin, candidate, t, true)
            .map(|r| r.migrated_keys)
            .map_err(|source| match source {
                SwapError::UnknownPlugin { plugin, known } => {
                    ReplayFailure::UnknownPlugin { plugin, known }
                }
                source => ReplayFailure::Candidate {
                    plugin,
                    source: Box::new(source),
                },
            })
    }

    /// Both runs follow the modules recorded for the batch, except that
    /// the candidate run keeps the candidate for its plugin.
    fn align(
        &mut self,
        entry: &BatchEntry,
        plugin: &str,
        modules: &mut ModuleCache,
    ) -> Result<(), ReplayFailure> {
        let at = (entry.seq, entry.batch_time_ms);
        let (rec, wasm) = (&self.recorded, &self.wasm);
        align_modules(
            &mut self.baseline,
            &entry.modules,
            None,
            at,
            true,
            modules,
            rec,
            wasm,
        )?;
        align_modules(
            &mut self.candidate,
            &entry.modules,
            Some(plugin),
            at,
            true,
            modules,
            rec,
            wasm,
        )?;
        self.baseline.set_zero(entry.zero_ms);
        self.candidate.set_zero(entry.zero_ms);
        Ok(())
    }

    /// The batch's logged input, laid out over the input partitions as
    /// when it ran.
    fn inputs(
        &mut self,
        entry: &BatchEntry,
        recovery: &crate::checkpoint::Recovery,
    ) -> Result<Vec<Option<Arc<Partitions>>>, ReplayFailure> {
        let fail = |source| ReplayFailure::Input {
            seq: entry.seq,
            batch_time_ms: entry.batch_time_ms,
            source,
        };
        if entry.sources.len() != self.sources.len() {
            return Err(fail(ReplayError::WrongInput {
                source_kind: "job",
                input: format!(
                    "{} logged source input(s) for {} source(s)",
                    entry.sources.len(),
                    self.sources.len()
                ),
            }));
        }
        let mut inputs = Vec::with_capacity(self.sources.len());
        for (source, logged) in self.sources.iter_mut().zip(&entry.sources) {
            let input =
                SourceInput::from_snapshot(logged).map_err(|e| fail(ReplayError::Snapshot(e)))?;
            let blocks = source.replay(&input, recovery).map_err(fail)?;
            inputs.push(Some(Arc::new(blocks_to_partitions(
                blocks,
                self.partitions,
            ))));
        }
        Ok(inputs)
    }

    /// Compares every stream's batch of the two runs into the report.
    fn compare(
        &self,
        entry: &BatchEntry,
        base: &[Option<Arc<Partitions>>],
        cand: &[Option<Arc<Partitions>>],
        req: &ReplayRequest,
        report: &mut ReplayReport,
    ) {
        let graph = self.candidate.graph();
        let mut streams = Vec::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            let (Some(op), Some(b), Some(c)) = (node.op(), &base[id], &cand[id]) else {
                continue;
            };
            let output = self.outputs.contains(&id);
            if let (true, Some(num)) = (output, req.print) {
                report.printed.push(PrintedBatch {
                    stream: node.name.to_string(),
                    text: Print::format(num, node.value_kind, entry.batch_time_ms, c),
                });
            }
            let Some((added, removed, changed, reordered, samples)) =
                diff::compare(node.value_kind, b, c, req.samples)
            else {
                continue;
            };
            streams.push(StreamDiff {
                stream: node.name.to_string(),
                op: op.desc().name.to_string(),
                output,
                added,
                removed,
                changed,
                reordered,
                samples,
            });
        }
        if !streams.is_empty() {
            report.differences.push(BatchDiff {
                batch: entry.seq,
                batch_time_ms: entry.batch_time_ms,
                streams,
            });
        }
    }

    /// If a kept checkpoint was taken after batch `seq`, checks that the
    /// baseline's state equals it: the replay reproduces the recording.
    fn verify(&self, seq: u64) -> Result<bool, ReplayFailure> {
        let Some(c) = self.recorded.checkpoints.iter().find(|c| c.seq == seq) else {
            return Ok(false);
        };
        if c.format != crate::checkpoint::FORMAT {
            return Ok(false);
        }
        let ours: BTreeMap<String, _> = self.baseline.snapshots().into_iter().collect();
        for (stream, snapshot) in &c.nodes {
            if ours.get(stream) != Some(snapshot) {
                return Err(ReplayFailure::BaselineDiverged {
                    seq,
                    stream: stream.clone(),
                });
            }
        }
        Ok(true)
    }
}

/// Recorded modules loaded so far, by plugin name and hash.
#[derive(Default)]
struct ModuleCache(HashMap<(String, String), Plugin>);

/// Makes `ex` run the modules `wanted` names (loaded from the checkpoint),
/// except plugin `keep`; as recovery does, migrating state where the
/// recorded run swapped modules.
#[allow(clippy::too_many_arguments)]
fn align_modules(
    ex: &mut Executor,
    wanted: &BTreeMap<String, String>,
    keep: Option<&str>,
    (seq, t): (u64, i64),
    migrate: bool,
    cache: &mut ModuleCache,
    recorded: &Recorded,
    wasm: &Runtime,
) -> Result<(), ReplayFailure> {
    let current = ex.plugins();
    for (name, hash) in wanted {
        match current.get(name) {
            Some(p) if p.hash_hex() != *hash && Some(name.as_str()) != keep => {}
            _ => continue,
        }
        let fail = |source: SwapError| ReplayFailure::RecordedModule {
            seq,
            batch_time_ms: t,
            plugin: name.clone(),
            hash: hash.clone(),
            source: Box::new(source),
        };
        let key = (name.clone(), hash.clone());
        let plugin = match cache.0.get(&key) {
            Some(p) => p.clone(),
            None => {
                let bytes = recorded.module_bytes(hash)?;
                let p = wasm.load_bytes(name, &bytes).map_err(|e| fail(e.into()))?;
                cache.0.insert(key, p.clone());
                p
            }
        };
        ex.swap(name, plugin, t, migrate).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_numbers_and_times() {
        let n = |s: &str| s.parse::<BatchSelection>().unwrap();
        assert_eq!(
            n("3..7"),
            BatchSelection::Numbers {
                from: Some(3),
                to: Some(7)
            }
        );
        assert_eq!(
            n("5.."),
            BatchSelection::Numbers {
                from: Some(5),
                to: None
            }
        );
        assert_eq!(
            n("..9"),
            BatchSelection::Numbers {
                from: None,
                to: Some(9)
            }
        );
        assert_eq!(
            n("4"),
            BatchSelection::Numbers {
                from: Some(4),
                to: Some(4)
            }
        );
        assert_eq!(
            n("3000ms..7000ms"),
            BatchSelection::Times {
                from: Some(3000),
                to: Some(7000)
            }
        );
        assert_eq!(
            n("3000ms.."),
            BatchSelection::Times {
                from: Some(3000),
                to: None
            }
        );
        assert!("x..3".parse::<BatchSelection>().is_err());
        assert!("3s..4s".parse::<BatchSelection>().is_err());
    }
}
