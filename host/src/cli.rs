//! Command-line interface: argument definitions and the commands behind
//! them. `main.rs` only parses, calls [`execute`] and maps the result to an
//! exit code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Overrides, Pipeline, PipelineError};
use crate::scheduler::{JobFailed, StopSignal};
use crate::wasm::{LoadError, Runtime, RuntimeConfig};

/// weir: micro-batch stream processing with WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline file: receive, cut into batches, process, write.
    /// Runs until interrupted (SIGINT/SIGTERM finish the current batch,
    /// flush outputs and exit 0) or until --batches batches are done.
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Stop gracefully after this many batches [default: run until interrupted].
        #[arg(long)]
        batches: Option<u64>,
        /// Override the batch interval, e.g. 500ms or 2s [default: the file's, else 1s].
        #[arg(long, value_parser = humantime::parse_duration)]
        batch_interval: Option<Duration>,
        /// Override the number of partitions [default: the file's, else 4].
        #[arg(long)]
        partitions: Option<usize>,
        /// Override the number of worker threads [default: the file's, else the number of cores].
        #[arg(long)]
        workers: Option<usize>,
        /// Cut batches back to back on a simulated clock starting at 0 ms
        /// instead of waiting for wall-clock time [default: off].
        #[arg(long)]
        simulated_clock: bool,
        /// Append per-batch statistics to this file as JSON lines [default: the file's, else none].
        #[arg(long)]
        stats_file: Option<PathBuf>,
        /// Checkpoint directory: recover from it if it holds a checkpoint,
        /// else start fresh and checkpoint there [default: the file's `checkpoint`, else none].
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Discard the checkpoint in the checkpoint directory and start from
        /// scratch (needed after changing the pipeline) [default: off].
        #[arg(long)]
        fresh: bool,
    },
    /// Check a pipeline file without running it: parse it, load every
    /// plugin, check every function exists with the right kind and ABI
    /// version; report every problem at once.
    Validate {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
    },
    /// Work with plugin modules.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `weir plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a module's ABI version, its functions with their kinds, and its
    /// size; explain what is missing if it is not a weir plugin.
    Inspect {
        /// Path to a `.wasm` (or `.wat`) module.
        module: PathBuf,
    },
}

/// Errors a command reports before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The wasm engine could not start.
    #[error("cannot start the wasm runtime: {0:#}")]
    Runtime(wasmtime::Error),
    /// A plugin failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The pipeline file is wrong.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A batch failed.
    #[error(transparent)]
    Failed(#[from] JobFailed),
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Plugin(PluginCommand::Inspect { module }) => inspect(&module),
        Command::Validate { pipeline } => validate(&pipeline),
        Command::Run {
            pipeline,
            batches,
            batch_interval,
            partitions,
            workers,
            simulated_clock,
            stats_file,
            checkpoint,
            fresh,
        } => {
            let overrides = Overrides {
                batch_interval,
                partitions,
                workers,
                simulated_clock,
                stats_file,
                checkpoint,
                fresh,
            };
            run(&pipeline, batches, &overrides)
        }
    }
}

fn validate(path: &std::path::Path) -> Result<(), CliError> {
    let pipeline = Pipeline::load(path).map_err(PipelineError::from)?;
    pipeline.build()?;
    println!(
        "{}: ok ({} source(s), {} stream(s), {} output(s), {} plugin(s))",
        path.display(),
        pipeline.sources.len(),
        pipeline.streams.len(),
        pipeline.outputs.len(),
        pipeline.plugins.len()
    );
    Ok(())
}

fn run(
    path: &std::path::Path,
    batches: Option<u64>,
    overrides: &Overrides,
) -> Result<(), CliError> {
    let mut pipeline = Pipeline::load(path).map_err(PipelineError::from)?;
    pipeline.apply(overrides);
    let ctx = pipeline.build()?;
    tracing::info!(
        job = %pipeline.config.job_name,
        batch_interval = ?pipeline.config.batch_interval,
        partitions = pipeline.config.partitions,
        workers = pipeline.config.workers,
        "starting"
    );
    // Handlers go in before the job starts: a signal that arrives once
    // batches run must stop gracefully, never kill the process.
    let signals = StopSignals::install();
    let job = ctx
        .start(batches)
        .map_err(|e| CliError::Pipeline(PipelineError::Build(e)))?;
    watch_signals(signals, job.stop_handle());
    let summary = job.await_termination()?;
    tracing::info!(batches = summary.batches, last_batch_ms = ?summary.last_batch_ms, "stopped");
    Ok(())
}

/// SIGINT and SIGTERM handlers, registered but not yet acted on: a signal
/// that arrives before [`watch_signals`] runs is kept and acted on then.
struct StopSignals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Option<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        let installed = (|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (term, int) = {
                let _in_rt = rt.enter();
                (
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                )
            };
            Ok::<_, std::io::Error>(StopSignals { rt, term, int })
        })();
        installed
            .map_err(|e| tracing::warn!(error = %e, "cannot watch for stop signals"))
            .ok()
    }
}

/// SIGINT or SIGTERM: stop after the current batch. A second signal exits
/// at once.
fn watch_signals(signals: Option<StopSignals>, stop: Arc<StopSignal>) {
    let Some(StopSignals {
        rt,
        mut term,
        mut int,
    }) = signals
    else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                for round in 0..2 {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    if round == 0 {
                        tracing::info!("stop requested: finishing the current batch (signal again to exit now)");
                        stop.request();
                    } else {
                        tracing::warn!("second stop signal: exiting without finishing the batch");
                        std::process::exit(130);
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for stop signals");
    }
}

fn inspect(path: &std::path::Path) -> Result<(), CliError> {
    let runtime = Runtime::new(&RuntimeConfig::default()).map_err(CliError::Runtime)?;
    let plugin = runtime.load_file(path)?;
    println!("plugin:      {}", plugin.name());
    println!("file:        {}", path.display());
    println!("size:        {} bytes", plugin.size());
    println!("sha256:      {}", plugin.hash_hex());
    println!("abi version: {}", plugin.abi_version());
    println!("functions:");
    for f in plugin.functions() {
        println!("  {:<7} {}", f.kind.to_string(), f.name);
    }
    Ok(())
}
