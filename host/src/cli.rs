//! Command-line interface: argument definitions and the commands behind
//! them. `main.rs` only parses, calls [`execute`] and maps the result to an
//! exit code.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Plugin(PluginCommand::Inspect { module }) => inspect(&module),
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
