//! `weir replay`: builds the job from the pipeline file, loads the
//! candidate module, hands both to [`StreamingContext::replay`] and prints
//! the report (text or JSON). The replay itself lives in
//! [`crate::job::replay`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CliError, Outcome};
use crate::config::{Overrides, Pipeline, PipelineError};
use crate::job::replay::{BatchSelection, ReplayReport, ReplayRequest};
use crate::wasm::LoadError;

/// What `weir replay` was asked.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The checkpoint directory of the job (only read).
    pub checkpoint: PathBuf,
    /// The candidate module (.wasm or .wat).
    #[arg(long)]
    pub module: PathBuf,
    /// The plugin the candidate replaces [default: the module's file stem].
    #[arg(long)]
    pub plugin: Option<String>,
    /// The pipeline file the job ran with (the checkpoint keeps only its
    /// fingerprint, which the file must match).
    #[arg(long)]
    pub pipeline: PathBuf,
    /// Batches to compare: batch numbers A..B (from 1, inclusive; 5..,
    /// ..9 and 4 too) or batch times 3000ms..7000ms [default: every
    /// batch the directory can replay].
    #[arg(long)]
    pub batches: Option<BatchSelection>,
    /// Compare the candidate with the recorded modules and report the
    /// differences [default: print the candidate's outputs].
    #[arg(long)]
    pub diff: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Differing records shown per stream and batch.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// The batch interval override the job ran with, if any.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub batch_interval: Option<Duration>,
    /// The partitions override the job ran with, if any.
    #[arg(long)]
    pub partitions: Option<usize>,
}

/// Runs `weir replay`.
pub fn replay(args: ReplayArgs) -> Result<Outcome, CliError> {
    let mut pipeline = Pipeline::load(&args.pipeline).map_err(PipelineError::from)?;
    pipeline.apply(&Overrides {
        batch_interval: args.batch_interval,
        partitions: args.partitions,
        // Plugins load from the modules the checkpoint kept.
        checkpoint: Some(args.checkpoint.clone()),
        ..Overrides::default()
    });
    let ctx = pipeline.build()?;
    let plugin = match &args.plugin {
        Some(p) => p.clone(),
        None => stem(&args.module),
    };
    let bytes = std::fs::read(&args.module).map_err(|source| LoadError::Read {
        path: args.module.clone(),
        source,
    })?;
    let candidate = ctx.runtime().load_bytes(&plugin, &bytes)?;
    let request = ReplayRequest {
        dir: args.checkpoint.clone(),
        candidate,
        batches: args.batches.unwrap_or_default(),
        samples: args.samples,
        print: (!args.diff).then_some(10),
    };
    let report = ctx.replay(&request)?;
    let differs = args.diff && report.outputs_differ();
    if args.json {
        let json = serde_json::json!({
            "outputs_differ": report.outputs_differ(),
            "report": report,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).expect("report serializes")
        );
    } else if args.diff {
        print!("{}", render(&report));
    } else {
        for p in &report.printed {
            print!("{}", p.text);
        }
    }
    Ok(if differs {
        Outcome::Differences
    } else {
        Outcome::Done
    })
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The report as text: what was replayed, then every differing batch.
pub fn render(r: &ReplayReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "replay of job `{}` from {}",
        r.job,
        r.checkpoint.display()
    );
    let _ = writeln!(
        s,
        "  plugin `{}`: recorded module {} → candidate {}{}",
        r.plugin,
        short(&r.baseline_module),
        short(&r.candidate_module),
        if r.migrated_keys > 0 {
            format!(" (state of {} key(s) migrated)", r.migrated_keys)
        } else {
            String::new()
        }
    );
    let from = r
        .from_checkpoint
        .map_or("the job's start".to_string(), |c| format!("checkpoint {c}"));
    let _ = writeln!(
        s,
        "  batches {}..{} ({}..{} ms), from the state of {from}{}",
        r.batches.0,
        r.batches.1,
        r.batch_times_ms.0,
        r.batch_times_ms.1,
        if r.warm_up_batches > 0 {
            format!(
                " ({} earlier batch(es) replayed first, not compared)",
                r.warm_up_batches
            )
        } else {
            String::new()
        }
    );
    if !r.verified_checkpoints.is_empty() {
        let list: Vec<String> = r.verified_checkpoints.iter().map(u64::to_string).collect();
        let _ = writeln!(
            s,
            "  baseline reproduces the recorded state at checkpoint(s) {}",
            list.join(", ")
        );
    }
    for d in &r.damaged {
        let _ = writeln!(s, "  warning: {d}");
    }
    for b in &r.differences {
        let _ = writeln!(s, "batch {} ({} ms):", b.batch, b.batch_time_ms);
        for st in &b.streams {
            let role = if st.output { "output" } else { "intermediate" };
            let order = if st.reordered {
                ", same records in another order"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  stream `{}` ({}, {role}): {} changed, {} added, {} removed{order}",
                st.stream, st.op, st.changed, st.added, st.removed
            );
            for sample in &st.samples {
                let _ = writeln!(s, "    {sample}");
            }
        }
    }
    let _ = writeln!(
        s,
        "{}",
        if r.outputs_differ() {
            let n = r
                .differences
                .iter()
                .filter(|b| b.streams.iter().any(|st| st.output && st.differs()))
                .count();
            format!("outputs differ in {n} batch(es)")
        } else if r.differences.is_empty() {
            "no differences".to_string()
        } else {
            "no differences in the outputs (only intermediate streams differ)".to_string()
        }
    );
    s
}
