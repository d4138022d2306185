//! Command-line interface: argument definitions and the commands behind
//! them. `main.rs` only parses, calls [`execute`] and maps the result to an
//! exit code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

mod kafka;
pub mod plugin;
mod replay;
pub mod scaffold;
pub mod status;
mod toolchain;

use crate::config::{Overrides, Pipeline, PipelineError};
use crate::job::{JobFailed, StopSignal};
use crate::wasm::{LoadError, Runtime, RuntimeConfig};

/// What `weir --help` ends with: the exit statuses and the environment.
const AFTER_HELP: &str = "\
Exit status:
  0    success (also `weir run` stopped by SIGTERM after finishing its batch)
  1    failure: a batch failed (after its retries), a plugin or I/O error
  2    bad usage or a bad pipeline file (the problems are listed)
  3    `weir replay --diff` found an output that differs
  130  `weir run` interrupted by SIGINT (Ctrl-C) after finishing its batch

Environment:
  WEIR_LOG         log filter, e.g. `debug` or `info,weir::job=trace` (wins over -q/-v)
  WEIR_LOG_FORMAT  `json` for one JSON object per log line";

/// weir: micro-batch stream processing with WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// Warnings and errors only: no info lines, no status line, no summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log lines: -v for weir's debug lines, -vv for its trace lines.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log level the flags ask for.
    pub fn verbosity(&self) -> status::Verbosity {
        status::Verbosity {
            quiet: self.quiet,
            verbose: self.verbose,
        }
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline file: receive, cut into batches, process, write.
    /// Runs until interrupted (SIGINT/SIGTERM finish the current batch and
    /// flush outputs; then SIGTERM exits 0, SIGINT 130) or until --batches
    /// batches are done. On a terminal, a status line shows batches,
    /// records/s and delays; a summary follows at exit.
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
        /// Hot-swap plugins: when a module file of the pipeline changes, it
        /// is loaded, validated and swapped in at the next batch boundary
        /// (move new modules in atomically) [default: off].
        #[arg(long)]
        watch_plugins: bool,
        /// This instance's name in a scaled-out job [default: the file's
        /// `[scale_out] instance`, else host-pid].
        #[arg(long)]
        instance: Option<String>,
        /// Serve the job's web UI, JSON API (/api/v1/...) and event stream
        /// (/api/v1/events) on this address: HOST:PORT, or :PORT for
        /// loopback; port 0 picks a free one (the log says which)
        /// [default: off].
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// With --http: keep serving after the job ends (its batch limit,
        /// or a failure) until interrupted [default: exit when the job ends].
        #[arg(long, requires = "http")]
        keep_serving: bool,
    },
    /// Check a pipeline file without running it: parse it, load every
    /// plugin, check every function exists with the right kind and ABI
    /// version; report every problem at once.
    Validate {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
    },
    /// Dry-run a hot swap against past input: replay the batches a
    /// checkpoint directory recorded, once with the recorded modules and
    /// once with a candidate module in place of one plugin, and compare
    /// every stream. The directory is only read; no output is written.
    /// Exit status: 0 no differences, 3 an output differs (with --diff),
    /// 1 an error.
    Replay(replay::ReplayArgs),
    /// Work with plugin modules.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Kafka client commands for trying jobs: create a topic, produce
    /// lines, read a topic.
    #[command(subcommand)]
    Kafka(KafkaCommand),
    /// Run a long-lived host for many tenants' jobs, controlled over HTTP
    /// (see the README's `weir serve` section). Jobs are durable: started
    /// again on the same data directory, the host brings back every job
    /// that was running. Stops every job after its current batch on
    /// SIGINT/SIGTERM.
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Serve {
        /// The server configuration (TOML: bind, data_dir, [limits], [[tenant]]).
        #[arg(long, required = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        tool: Option<ServeTool>,
    },
    /// Submit a pipeline to a `weir serve` host; prints the job id. The
    /// modules of its [plugins] are uploaded with it.
    Submit {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Upload this module too (repeatable) [default: only the [plugins] modules].
        #[arg(long = "module")]
        modules: Vec<PathBuf>,
        /// Upload this data file (e.g. an initial_state file) into the job's directory (repeatable).
        #[arg(long = "file")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        conn: crate::serve::commands::Connection,
    },
    /// List your jobs on a `weir serve` host.
    Jobs {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: crate::serve::commands::Connection,
    },
    /// Show a job's status and recent batches (JSON).
    Status {
        /// Job id.
        job: String,
        #[command(flatten)]
        conn: crate::serve::commands::Connection,
    },
    /// Replace a plugin of a running job at its next batch boundary.
    Upgrade {
        /// Job id.
        job: String,
        /// The plugin's name (its module's file stem in the pipeline).
        #[arg(long)]
        plugin: String,
        /// The new module (.wasm or .wat).
        #[arg(long)]
        module: PathBuf,
        #[command(flatten)]
        conn: crate::serve::commands::Connection,
    },
    /// Go back to the module a plugin ran before its last upgrade.
    Rollback {
        /// Job id.
        job: String,
        /// The plugin's name.
        #[arg(long)]
        plugin: String,
        #[command(flatten)]
        conn: crate::serve::commands::Connection,
    },
    /// Stop a job after its current batch.
    Stop {
        /// Job id.
        job: String,
        #[command(flatten)]
        conn: crate::serve::commands::Connection,
    },
    /// Show your quotas on a `weir serve` host and what your jobs use (JSON).
    Tenant {
        #[command(flatten)]
        conn: crate::serve::commands::Connection,
    },
    /// Delete a job: stop it and remove its files (outputs, checkpoints);
    /// it stays deleted when the host restarts.
    Delete {
        /// Job id.
        job: String,
        #[command(flatten)]
        conn: crate::serve::commands::Connection,
    },
    /// Print a shell completion script, e.g.
    /// `weir completions bash > /etc/bash_completion.d/weir` or
    /// `weir completions fish > ~/.config/fish/completions/weir.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    /// Run the conformance suite on a module: reference cases for the
    /// word-count functions (map:split, reduce:sum, update:running_count),
    /// generic checks (no trap, valid framing, determinism) for any other.
    /// Prints one line per case; exits non-zero if any fails.
    Test {
        /// Path to a `.wasm` (or `.wat`) module.
        module: PathBuf,
        /// Test only this function, KIND:NAME [default: every function].
        #[arg(long)]
        function: Option<String>,
    },
    /// Call one function on a fresh instance; print its output as `print` does, and the fuel and time it took (stderr).
    ///
    /// Input: --text "LINES" for a map function (one unkeyed record per
    /// line), or --input FILE of JSON lines, where BYTES is a string (its
    /// UTF-8), an integer (an i64, 8 bytes little-endian) or {"hex": "ff00"}:
    ///   map:    {"key": BYTES, "value": BYTES}  (or "key_hex"/"value_hex")
    ///   reduce: {"key": BYTES, "values": [BYTES, ...]}  one group per line
    ///   update: {"key": BYTES, "state": BYTES, "timed_out": false, "values": [BYTES, ...]}
    ///           one entry per line; leave "state" out for a key without state
    #[command(verbatim_doc_comment)]
    Call {
        /// Path to a `.wasm` (or `.wat`) module.
        module: PathBuf,
        /// The function, KIND:NAME, e.g. map:split.
        function: String,
        /// Lines of text, one unkeyed record each (map functions).
        #[arg(long, conflicts_with = "input")]
        text: Option<String>,
        /// A file of JSON lines (`-` for standard input).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Fuel budget of the call [default: the runtime's default, 50000000000].
        #[arg(long)]
        fuel: Option<u64>,
        /// Batch time handed to the function, in ms since the epoch.
        #[arg(long, default_value_t = 0)]
        batch_time: i64,
    },
    /// Create a plugin project: a map, a reduce and an update function
    /// (word count: split, sum, running_count), native unit tests where the
    /// language has them, a pipeline.toml using it, a README.
    New {
        /// The plugin's name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: scaffold::Lang,
        /// Where to create it [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust: the weir-sdk crate to depend on by path [default: the sdk/
        /// of the weir source tree this binary was built from, if present].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the plugin project in DIR with its language's toolchain
    /// (detected from Cargo.toml, go.mod, *.zig, package.json, *.c or a
    /// Makefile), then load the module and show its path, size and
    /// functions.
    Build {
        /// The project directory [default: the current directory].
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

/// `weir serve ...` tools.
#[derive(Debug, Subcommand)]
pub enum ServeTool {
    /// Print the SHA-256 of a tenant token (hex), for `token_sha256` in the
    /// server configuration, so the file need not hold the token itself.
    HashToken {
        /// The token [default: the first line of stdin, which keeps it out
        /// of the shell history].
        token: Option<String>,
    },
}

/// `weir kafka ...`
#[derive(Debug, Subcommand)]
pub enum KafkaCommand {
    /// Create a topic.
    CreateTopic {
        /// Bootstrap brokers, host:port[,host:port].
        #[arg(long)]
        brokers: String,
        /// Topic name.
        topic: String,
        /// Partitions [default: 1].
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// A topic configuration, `key=value` (repeatable), e.g.
        /// `cleanup.policy=compact` for a scaled-out job's changelog.
        #[arg(long = "config", value_parser = parse_property)]
        configs: Vec<(String, String)>,
    },
    /// Produce every line of standard input as a record.
    Produce {
        /// Bootstrap brokers, host:port[,host:port].
        #[arg(long)]
        brokers: String,
        /// Topic name.
        topic: String,
        /// Split each line at the first occurrence of this text into key
        /// and value [default: no key].
        #[arg(long)]
        key_separator: Option<String>,
        /// A librdkafka property, `-X key=value` (repeatable).
        #[arg(short = 'X', value_parser = parse_property)]
        properties: Vec<(String, String)>,
    },
    /// Print every record of a topic up to its current end as
    /// `key<TAB>value` (read_committed), then exit.
    Consume {
        /// Bootstrap brokers, host:port[,host:port].
        #[arg(long)]
        brokers: String,
        /// Topic name.
        topic: String,
        /// Also show records of open or aborted transactions.
        #[arg(long)]
        uncommitted: bool,
        /// A librdkafka property, `-X key=value` (repeatable).
        #[arg(short = 'X', value_parser = parse_property)]
        properties: Vec<(String, String)>,
    },
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("`{s}`: write a property as key=value"))
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
    /// `weir serve` could not start or serve.
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    /// A request to a `weir serve` host failed.
    #[error(transparent)]
    Client(#[from] crate::serve::ClientError),
    /// `weir plugin test` or `weir plugin call` failed.
    #[error(transparent)]
    Plugin(#[from] plugin::PluginToolError),
    /// `weir plugin new` or `weir plugin build` failed.
    #[error(transparent)]
    Scaffold(#[from] scaffold::ScaffoldError),
    /// A Kafka client command failed.
    #[error(transparent)]
    Kafka(#[from] kafka::ToolError),
    /// `weir replay` could not replay.
    #[error(transparent)]
    Replay(#[from] crate::job::replay::ReplayFailure),
    /// `weir run --http` cannot serve.
    #[error(transparent)]
    Http(#[from] crate::observe::ObserveError),
}

impl CliError {
    /// The exit status for this error: 2 for a pipeline that is wrong or
    /// cannot be built (as for clap's usage errors), 1 for everything else.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Pipeline(_) => Outcome::USAGE_EXIT_STATUS,
            _ => 1,
        }
    }
}

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// `weir replay --diff` found an output that differs.
    Differences,
    /// `weir run` stopped gracefully on SIGINT.
    Interrupted,
}

impl Outcome {
    /// The exit status of a usage error or a bad pipeline file.
    pub const USAGE_EXIT_STATUS: u8 = 2;
    /// The exit status of `weir replay --diff` when an output differs
    /// (1 is an error, 2 a usage error).
    pub const DIFFERENCES_EXIT_STATUS: u8 = 3;
    /// The exit status of `weir run` stopped by SIGINT (128 + 2, as shells
    /// report a process a SIGINT ended).
    pub const INTERRUPTED_EXIT_STATUS: u8 = 130;

    /// The process's exit status.
    pub fn exit_status(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Differences => Self::DIFFERENCES_EXIT_STATUS,
            Outcome::Interrupted => Self::INTERRUPTED_EXIT_STATUS,
        }
    }
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> Result<Outcome, CliError> {
    let verbosity = cli.verbosity();
    match cli.command {
        Command::Replay(args) => replay::replay(args),
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
            watch_plugins,
            instance,
            http,
            keep_serving,
        } => {
            let overrides = Overrides {
                batch_interval,
                partitions,
                workers,
                simulated_clock,
                stats_file,
                checkpoint,
                fresh,
                instance,
            };
            let opts = RunOptions {
                batches,
                watch_plugins,
                verbosity,
                http,
                keep_serving,
            };
            run(&pipeline, &overrides, &opts)
        }
        Command::Completions { shell } => {
            completions(shell);
            Ok(Outcome::Done)
        }
        other => execute_other(other).map(|()| Outcome::Done),
    }
}

fn execute_other(command: Command) -> Result<(), CliError> {
    use crate::serve::commands as serve;
    match command {
        Command::Replay { .. } | Command::Run { .. } | Command::Completions { .. } => {
            unreachable!("handled by execute")
        }
        Command::Plugin(command) => plugin_command(command),
        Command::Kafka(KafkaCommand::CreateTopic {
            brokers,
            topic,
            partitions,
            configs,
        }) => Ok(kafka::create_topic(&brokers, &topic, partitions, &configs)?),
        Command::Kafka(KafkaCommand::Produce {
            brokers,
            topic,
            key_separator,
            properties,
        }) => {
            let stdin = std::io::stdin().lock();
            kafka::produce(
                &brokers,
                &properties,
                &topic,
                key_separator.as_deref(),
                stdin,
            )?;
            Ok(())
        }
        Command::Kafka(KafkaCommand::Consume {
            brokers,
            topic,
            uncommitted,
            properties,
        }) => {
            let out = &mut std::io::stdout().lock();
            kafka::consume(&brokers, &properties, &topic, uncommitted, out)?;
            Ok(())
        }
        Command::Serve {
            tool: Some(ServeTool::HashToken { token }),
            ..
        } => Ok(serve::hash_token(token.as_deref())?),
        Command::Serve {
            config: Some(config),
            tool: None,
        } => Ok(serve::serve(&config)?),
        Command::Serve { config: None, .. } => Err(crate::serve::ServeError::NoConfig.into()),
        Command::Submit {
            pipeline,
            modules,
            files,
            conn,
        } => Ok(serve::submit(&conn, &pipeline, &modules, &files)?),
        Command::Jobs { json, conn } => Ok(serve::jobs(&conn, json)?),
        Command::Status { job, conn } => Ok(serve::status(&conn, &job)?),
        Command::Upgrade {
            job,
            plugin,
            module,
            conn,
        } => Ok(serve::upgrade(&conn, &job, &plugin, &module)?),
        Command::Rollback { job, plugin, conn } => Ok(serve::rollback(&conn, &job, &plugin)?),
        Command::Stop { job, conn } => Ok(serve::stop(&conn, &job)?),
        Command::Delete { job, conn } => Ok(serve::delete(&conn, &job)?),
        Command::Tenant { conn } => Ok(serve::tenant(&conn)?),
        Command::Validate { pipeline } => validate(&pipeline),
    }
}

/// Runs `weir plugin ...`.
fn plugin_command(command: PluginCommand) -> Result<(), CliError> {
    match command {
        PluginCommand::Inspect { module } => inspect(&module),
        PluginCommand::Test { module, function } => plugin::test(&module, function.as_deref()),
        PluginCommand::Call {
            module,
            function,
            text,
            input,
            fuel,
            batch_time,
        } => {
            let input = match (text, input) {
                (Some(t), None) => plugin::CallInput::Text(t),
                (None, Some(p)) => plugin::CallInput::Json(p),
                _ => return Err(plugin::PluginToolError::NoInput.into()),
            };
            let opts = plugin::CallOptions {
                function,
                input,
                fuel,
                batch_time_ms: batch_time,
            };
            plugin::call(&module, &opts)
        }
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let dir = scaffold::new(&name, lang, dir.as_deref(), sdk.as_deref())?;
            println!("created plugin `{name}` ({lang}) in {}", dir.display());
            println!("next: weir plugin build {}", dir.display());
            Ok(())
        }
        PluginCommand::Build { dir } => scaffold::build(&dir),
    }
}

/// Prints the completion script for `shell`. A closed stdout (`| head`)
/// is not an error.
fn completions(shell: clap_complete::Shell) {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "weir", &mut script);
    let _ = std::io::stdout().lock().write_all(&script);
}

fn validate(path: &std::path::Path) -> Result<(), CliError> {
    let pipeline = Pipeline::validate(path)?;
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

/// `weir run`'s options beyond the pipeline's overrides.
struct RunOptions {
    batches: Option<u64>,
    watch_plugins: bool,
    verbosity: status::Verbosity,
    /// Serve the UI, API and metrics here.
    http: Option<String>,
    /// Keep serving after the job ends.
    keep_serving: bool,
}

fn run(
    path: &std::path::Path,
    overrides: &Overrides,
    opts: &RunOptions,
) -> Result<Outcome, CliError> {
    use crate::observe::{http, JobStore};
    // The address is checked and bound before anything else: a port in
    // use is an error before any batch runs.
    let listener = match &opts.http {
        Some(addr) => Some(http::bind(http::parse_addr(addr)?)?),
        None => None,
    };
    let mut pipeline = Pipeline::load(path).map_err(PipelineError::from)?;
    pipeline.apply(overrides);
    let ctx = pipeline.build()?;
    tracing::debug!(
        pipeline = %path.display(),
        sources = pipeline.sources.len(),
        streams = pipeline.streams.len(),
        outputs = pipeline.outputs.len(),
        plugins = pipeline.plugins.len(),
        "pipeline built"
    );
    let monitor = Arc::new(status::RunMonitor::new(
        pipeline.config.progress && !opts.verbosity.quiet,
    ));
    ctx.add_listener(monitor.clone());
    let watched = listener.as_ref().map(|_| {
        let interval_ms = pipeline.config.batch_interval.as_millis() as u64;
        let store = Arc::new(JobStore::new(
            &pipeline.config.job_name,
            interval_ms,
            crate::observe::store::DEFAULT_CAPACITY,
        ));
        ctx.add_listener(store.clone());
        let metrics = crate::observe::metrics::MetricsHub::new(None);
        ctx.add_listener(metrics.job_listener(&pipeline.config.job_name));
        (store, metrics)
    });
    tracing::info!(
        job = %pipeline.config.job_name,
        batch_interval = ?pipeline.config.batch_interval,
        partitions = pipeline.config.partitions,
        workers = pipeline.config.workers,
        "starting"
    );
    let io = ctx.host().io().clone();
    // Handlers go in before the job starts: a signal that arrives once
    // batches run must stop gracefully, never kill the process.
    let signals = StopSignals::install();
    let job = ctx
        .start(opts.batches)
        .map_err(|e| CliError::Pipeline(PipelineError::Build(e)))?;
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = job.stop_handle();
    watch_signals(signals, stop.clone(), interrupted.clone());
    if let (Some(listener), Some((store, metrics))) = (listener, watched) {
        let watched = crate::observe::Watched {
            store,
            control: job.control(),
        };
        let render: http::MetricsRender = Arc::new(move || metrics.encode());
        let addr = http::spawn(&io, listener, http::router(watched, Some(render)))?;
        tracing::info!(url = %format!("http://{addr}/"), "serving the job's web UI, API and metrics");
    }
    if opts.watch_plugins {
        watch_plugin_files(plugin_files(&pipeline), job.control());
    }
    let ended = job.await_termination();
    monitor.finish();
    let summary = match &ended {
        Ok(summary) => {
            tracing::info!(batches = summary.batches, last_batch_ms = ?summary.last_batch_ms, "stopped");
            summary
        }
        Err(failed) => &failed.summary,
    };
    status::RunReport::new(summary, monitor.failed_attempts()).show(opts.verbosity);
    if opts.keep_serving {
        if let Err(e) = &ended {
            tracing::error!(error = %e, "the job failed");
        }
        tracing::info!("the job ended; still serving its page and API until interrupted");
        while !stop.wait_timeout(Duration::from_secs(3600)) {}
    }
    ended?;
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        Ok(Outcome::Interrupted)
    } else {
        Ok(Outcome::Done)
    }
}

/// Plugin name → module file, of the pipeline's plugins.
fn plugin_files(pipeline: &Pipeline) -> Vec<(String, PathBuf)> {
    pipeline
        .plugins
        .values()
        .map(|def| {
            (
                def.path
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
                def.path.clone(),
            )
        })
        .collect()
}

/// Polls the pipeline's module files; a file whose contents differ from the
/// module running is loaded and swapped in (or refused, and reported).
fn watch_plugin_files(files: Vec<(String, PathBuf)>, control: crate::job::JobControl) {
    use sha2::Digest;
    let spawned = std::thread::Builder::new().name("weir-plugin-watch".into()).spawn(move || {
        let mut seen: std::collections::HashMap<String, (std::time::SystemTime, u64)> = Default::default();
        let mut tried: std::collections::HashMap<String, String> = Default::default();
        loop {
            let status = control.status();
            if status.state != crate::job::JobState::Running {
                return;
            }
            for (name, path) in &files {
                let Ok(meta) = std::fs::metadata(path) else { continue };
                let stamp = (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len());
                if seen.get(name) == Some(&stamp) {
                    continue;
                }
                seen.insert(name.clone(), stamp);
                let Ok(bytes) = std::fs::read(path) else { continue };
                let hash = hex::encode(sha2::Sha256::digest(&bytes));
                if status.modules.get(name) == Some(&hash) || tried.get(name) == Some(&hash) {
                    continue;
                }
                tried.insert(name.clone(), hash.clone());
                tracing::info!(plugin = %name, file = %path.display(), "module file changed; swapping it in");
                match control.swap_module(name, &bytes) {
                    Ok(r) => tracing::info!(plugin = %name, to = %r.to, first_batch_ms = r.first_batch_ms, migrated_keys = r.migrated_keys, "upgraded"),
                    Err(e) => tracing::warn!(plugin = %name, error = %e, "upgrade refused; still running the previous module"),
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch plugin files");
    }
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

/// SIGINT or SIGTERM: stop after the current batch, and set `interrupted`
/// if it was SIGINT. A second signal exits at once (130 after a SIGINT,
/// 143 after a SIGTERM).
fn watch_signals(
    signals: Option<StopSignals>,
    stop: Arc<StopSignal>,
    interrupted: Arc<std::sync::atomic::AtomicBool>,
) {
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
                    let sigint = tokio::select! {
                        _ = int.recv() => true,
                        _ = term.recv() => false,
                    };
                    if round == 0 {
                        interrupted.store(sigint, std::sync::atomic::Ordering::SeqCst);
                        tracing::info!("stop requested: finishing the current batch (signal again to exit now)");
                        stop.request();
                    } else {
                        tracing::warn!("second stop signal: exiting without finishing the batch");
                        std::process::exit(if sigint { 130 } else { 143 });
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
