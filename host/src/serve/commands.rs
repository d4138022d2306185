//! The `weir serve` and client subcommands behind `cli.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::client::{prepare, Client, ClientError};
use super::config::ServeConfig;
use super::server::Server;
use super::{JobInfo, JobState, ServeError, SwapInfo};

/// Where the client commands connect, and as whom.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// URL of the `weir serve` host.
    #[arg(long, default_value = super::client::DEFAULT_SERVER)]
    pub server: String,
    /// The tenant's bearer token [default: the WEIR_TOKEN environment variable].
    #[arg(long)]
    pub token: Option<String>,
}

impl Connection {
    fn client(&self) -> Result<Client, ClientError> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => std::env::var("WEIR_TOKEN").map_err(|_| ClientError::NoToken)?,
        };
        Ok(Client::new(&self.server, Some(&token)))
    }
}

/// `weir serve --config FILE`: serves until SIGINT or SIGTERM, then stops
/// every job after its current batch (a second signal exits at once).
pub fn serve(config: &Path) -> Result<(), ServeError> {
    let config = ServeConfig::load(config)?;
    let tenants = config.tenants.len();
    let data_dir = config.data_dir.clone();
    let server = Server::bind(config)?;
    // The first line on stdout tells scripts and tests where to connect.
    println!(
        "weir serve: listening on http://{} ({tenants} tenant(s), data in {})",
        server.local_addr(),
        data_dir.display()
    );
    let _ = std::io::stdout().flush();
    server.run_until(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot watch for stop signals; stop the server with SIGKILL");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stop requested (signal again to exit now)");
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second stop signal: exiting without finishing the batches");
            std::process::exit(130);
        });
    })
}

/// `weir submit PIPELINE`: prints the new job's id.
pub fn submit(
    conn: &Connection,
    pipeline: &Path,
    modules: &[PathBuf],
    files: &[PathBuf],
) -> Result<(), ClientError> {
    let client = conn.client()?;
    let p = prepare(pipeline, modules, files)?;
    let info = client.submit(&p.pipeline, &p.modules, &p.files)?;
    println!("{}", info.id);
    Ok(())
}

/// `weir jobs`: one line per job.
pub fn jobs(conn: &Connection, json: bool) -> Result<(), ClientError> {
    let jobs = conn.client()?.jobs()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&jobs).expect("JSON serialises")
        );
        return Ok(());
    }
    println!(
        "{:<36} {:<20} {:<9} {:>8} {:>12} {:>12}",
        "ID", "NAME", "STATE", "BATCHES", "DELAY(ms)", "MAX DELAY"
    );
    for j in &jobs {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |d| format!("{d:.0}"));
        println!(
            "{:<36} {:<20} {:<9} {:>8} {:>12} {:>12}",
            j.id,
            j.name,
            j.state.to_string(),
            j.batches,
            ms(j.scheduling_delay.last_ms),
            ms(j.scheduling_delay.max_ms)
        );
        if let Some(e) = &j.error {
            println!("    {}: {}", e.kind, first_line(&e.message));
        }
        if let Some(why) = &j.paused {
            println!("    paused: {why}");
        }
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// `weir status JOB`: the job as JSON, with its recent batches.
pub fn status(conn: &Connection, job: &str) -> Result<(), ClientError> {
    let info = conn.client()?.status(job)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&info).expect("JSON serialises")
    );
    Ok(())
}

fn print_swap(what: &str, s: &SwapInfo) {
    let short = |h: &str| h.chars().take(12).collect::<String>();
    println!(
        "{what} plugin `{}`: {} -> {} from batch {} ms ({} state key(s) migrated)",
        s.plugin,
        short(&s.from),
        short(&s.to),
        s.first_batch_ms,
        s.migrated_keys
    );
}

/// `weir upgrade JOB --plugin NAME --module FILE`.
pub fn upgrade(
    conn: &Connection,
    job: &str,
    plugin: &str,
    module: &Path,
) -> Result<(), ClientError> {
    let bytes = std::fs::read(module).map_err(|source| ClientError::Read {
        path: module.to_owned(),
        source,
    })?;
    let s = conn.client()?.upgrade(job, plugin, &bytes)?;
    print_swap("upgraded", &s);
    Ok(())
}

/// `weir rollback JOB --plugin NAME`.
pub fn rollback(conn: &Connection, job: &str, plugin: &str) -> Result<(), ClientError> {
    let s = conn.client()?.rollback(job, plugin)?;
    print_swap("rolled back", &s);
    Ok(())
}

/// `weir tenant`: the caller's quotas and use, as JSON.
pub fn tenant(conn: &Connection) -> Result<(), ClientError> {
    let status = conn.client()?.tenant()?;
    println!(
        "{}",
        serde_json::to_string_pretty(&status).expect("JSON serialises")
    );
    Ok(())
}

/// `weir delete JOB`.
pub fn delete(conn: &Connection, job: &str) -> Result<(), ClientError> {
    let d = conn.client()?.delete(job)?;
    if d.removed {
        println!("{}: deleted", d.id);
    } else {
        println!(
            "{}: deleted (its files go once its current batch ends)",
            d.id
        );
    }
    Ok(())
}

/// `weir serve hash-token [TOKEN]`: prints the SHA-256 of the token (the
/// argument, or the first line of stdin) as hex, for `token_sha256`.
pub fn hash_token(token: Option<&str>) -> Result<(), ServeError> {
    let token = match token {
        Some(t) => t.to_owned(),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(ServeError::Stdin)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if token.len() < super::config::MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
        return Err(ServeError::Token {
            min: super::config::MIN_TOKEN_LEN,
        });
    }
    println!("{}", hex::encode(super::config::hash_token(&token)));
    Ok(())
}

/// `weir stop JOB`.
pub fn stop(conn: &Connection, job: &str) -> Result<(), ClientError> {
    let info: JobInfo = conn.client()?.stop(job)?;
    match info.state {
        JobState::Stopping => {
            println!("{}: stopping (the current batch is still running)", info.id)
        }
        state => println!("{}: {state} after {} batch(es)", info.id, info.batches),
    }
    Ok(())
}
