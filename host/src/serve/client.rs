//! A blocking client of the control API (ureq): what `weir submit / jobs /
//! status / upgrade / rollback / stop / delete` use, and what tests and benchmarks
//! can use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::{
    DeleteInfo, ErrorBody, JobInfo, JobList, RollbackRequest, SubmitRequest, SwapInfo,
    TenantStatus, UpgradeRequest,
};

/// Default server URL.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

/// A request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("the server refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server could not be reached, or the connection failed.
    #[error("cannot reach the server at {url}: {message}")]
    Transport {
        /// Server URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The answer is not what the API returns.
    #[error("unexpected answer from the server ({status}): {message}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
    },
    /// A local file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No token was given.
    #[error("no token: pass --token TOKEN or set WEIR_TOKEN")]
    NoToken,
    /// A request method the client does not send.
    #[error("unsupported method {method}")]
    Method { method: String },
    /// A path without a file name.
    #[error("{} has no file name", path.display())]
    NoFileName { path: PathBuf },
    /// A pipeline file that is not text.
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    /// Two modules with one name.
    #[error("two different modules are named {name:?}; rename one")]
    ModuleNameClash { name: String },
    /// A pipeline file that is not TOML.
    #[error("{}: {source}", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// The rewritten pipeline cannot be written back as TOML.
    #[error("cannot rewrite the pipeline: {0}")]
    Rewrite(#[from] toml::ser::Error),
}

/// A client for one server and one tenant's token.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

fn loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    /// A client of the server at `url` (e.g. `http://127.0.0.1:7878`),
    /// sending `token` as a bearer token when given.
    pub fn new(url: &str, token: Option<&str>) -> Client {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)));
        if loopback_url(url) {
            // A proxy from the environment cannot reach our loopback.
            config = config.proxy(None);
        }
        Client {
            agent: config.build().into(),
            base: url.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// The same server with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Client {
        Client {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    fn transport(&self, e: ureq::Error) -> ClientError {
        ClientError::Transport {
            url: self.base.clone(),
            message: e.to_string(),
        }
    }

    /// Sends a request and returns the status and body as they are: for
    /// tests of refusals. `body` is sent as JSON text.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, String), ClientError> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let sent = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            "POST" => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                match body {
                    Some(b) => r.send(b),
                    None => r.send_empty(),
                }
            }
            other => {
                return Err(ClientError::Method {
                    method: other.into(),
                })
            }
        };
        let mut resp = sent.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| self.transport(e))?;
        Ok((status, text))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("API bodies serialise"))
            .unwrap_or_default();
        let (status, text) = self.raw(method, path, body.map(|_| bytes.as_slice()))?;
        if (200..300).contains(&status) {
            serde_json::from_str(&text).map_err(|e| ClientError::Decode {
                status,
                message: format!("{e}: {}", snippet(&text)),
            })
        } else {
            Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) => ClientError::Api {
                    status,
                    code: b.error.code,
                    message: b.error.message,
                },
                Err(_) => ClientError::Api {
                    status,
                    code: "http".into(),
                    message: snippet(&text),
                },
            })
        }
    }

    /// Submits a pipeline with its modules and data files `(file name, bytes)`.
    pub fn submit(
        &self,
        pipeline: &str,
        modules: &[(String, Vec<u8>)],
        files: &[(String, Vec<u8>)],
    ) -> Result<JobInfo, ClientError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let req = SubmitRequest {
            pipeline: pipeline.to_owned(),
            modules: modules
                .iter()
                .map(|(n, b)| (n.clone(), b64.encode(b)))
                .collect(),
            files: files
                .iter()
                .map(|(n, b)| (n.clone(), b64.encode(b)))
                .collect(),
        };
        self.call("POST", "/v1/jobs", Some(&req))
    }

    /// The tenant's jobs.
    pub fn jobs(&self) -> Result<Vec<JobInfo>, ClientError> {
        let list: JobList = self.call("GET", "/v1/jobs", None::<&()>)?;
        Ok(list.jobs)
    }

    /// One job, with its recent batches.
    pub fn status(&self, id: &str) -> Result<JobInfo, ClientError> {
        self.call("GET", &format!("/v1/jobs/{id}"), None::<&()>)
    }

    /// Stops a job after its current batch.
    pub fn stop(&self, id: &str) -> Result<JobInfo, ClientError> {
        self.call("POST", &format!("/v1/jobs/{id}/stop"), None::<&()>)
    }

    /// The tenant's quotas and what its jobs use.
    pub fn tenant(&self) -> Result<TenantStatus, ClientError> {
        self.call("GET", "/v1/tenant", None::<&()>)
    }

    /// Deletes a job: stops it and removes its files; it stays deleted
    /// across restarts of the host.
    pub fn delete(&self, id: &str) -> Result<DeleteInfo, ClientError> {
        self.call("DELETE", &format!("/v1/jobs/{id}"), None::<&()>)
    }

    /// Replaces a plugin of a running job with `module` at its next batch.
    pub fn upgrade(&self, id: &str, plugin: &str, module: &[u8]) -> Result<SwapInfo, ClientError> {
        let req = UpgradeRequest {
            plugin: plugin.to_owned(),
            module: base64::engine::general_purpose::STANDARD.encode(module),
        };
        self.call("POST", &format!("/v1/jobs/{id}/upgrade"), Some(&req))
    }

    /// Goes back to the module a plugin ran before its last upgrade.
    pub fn rollback(&self, id: &str, plugin: &str) -> Result<SwapInfo, ClientError> {
        let req = RollbackRequest {
            plugin: plugin.to_owned(),
        };
        self.call("POST", &format!("/v1/jobs/{id}/rollback"), Some(&req))
    }
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_owned(),
    }
}

/// A local pipeline file made ready for the server: every `[plugins]`
/// module is uploaded under its file name and the pipeline is rewritten to
/// name it so (the server resolves paths inside the job's directory).
/// `extra` modules and `files` are uploaded as they are, under their file
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Pipeline text to send.
    pub pipeline: String,
    /// `(file name, bytes)` of the modules.
    pub modules: Vec<(String, Vec<u8>)>,
    /// `(file name, bytes)` of data files.
    pub files: Vec<(String, Vec<u8>)>,
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.to_owned(),
        source,
    })
}

fn file_name_of(path: &Path) -> Result<String, ClientError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ClientError::NoFileName {
            path: path.to_owned(),
        })
}

/// Prepares `pipeline` (see [`Prepared`]).
pub fn prepare(
    pipeline: &Path,
    extra: &[PathBuf],
    files: &[PathBuf],
) -> Result<Prepared, ClientError> {
    let text = String::from_utf8(read(pipeline)?).map_err(|_| ClientError::NotText {
        path: pipeline.to_owned(),
    })?;
    let mut modules: Vec<(String, Vec<u8>)> = Vec::new();
    let add = |list: &mut Vec<(String, Vec<u8>)>, name: String, bytes: Vec<u8>| match list
        .iter()
        .find(|(n, _)| *n == name)
    {
        Some((_, b)) if *b == bytes => Ok(()),
        Some(_) => Err(ClientError::ModuleNameClash { name }),
        None => {
            list.push((name, bytes));
            Ok(())
        }
    };
    for m in extra {
        add(&mut modules, file_name_of(m)?, read(m)?)?;
    }
    let base = pipeline.parent().unwrap_or(Path::new("."));
    let mut doc: toml::Table = text.parse().map_err(|source| ClientError::Toml {
        path: pipeline.to_owned(),
        source,
    })?;
    let mut rewritten = false;
    if let Some(plugins) = doc.get_mut("plugins").and_then(toml::Value::as_table_mut) {
        for (_, v) in plugins.iter_mut() {
            let Some(p) = v.as_str().map(PathBuf::from) else {
                continue;
            };
            let name = file_name_of(&p)?;
            if !modules.iter().any(|(n, _)| *n == name) {
                let local = if p.is_absolute() {
                    p.clone()
                } else {
                    base.join(&p)
                };
                add(&mut modules, name.clone(), read(&local)?)?;
            }
            if p.as_os_str() != name.as_str() {
                *v = toml::Value::String(name);
                rewritten = true;
            }
        }
    }
    let pipeline_text = if rewritten {
        toml::to_string(&doc)?
    } else {
        text
    };
    let mut data = Vec::new();
    for f in files {
        data.push((file_name_of(f)?, read(f)?));
    }
    Ok(Prepared {
        pipeline: pipeline_text,
        modules,
        files: data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        for u in [
            "http://127.0.0.1:7878",
            "http://localhost:1/x",
            "http://[::1]:80",
            "127.0.0.1",
        ] {
            assert!(loopback_url(u), "{u}");
        }
        for u in ["http://example.org:7878", "http://10.0.0.1"] {
            assert!(!loopback_url(u), "{u}");
        }
    }

    #[test]
    fn prepare_uploads_modules_and_rewrites_their_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mods")).unwrap();
        std::fs::write(dir.path().join("mods/wc.wat"), "(module)").unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(
            &p,
            "[job]\nname = \"x\"\n[plugins]\nwc = \"mods/wc.wat\"\n[[source]]\nname = \"s\"\ntype = \"generator\"\n",
        )
        .unwrap();
        let prep = prepare(&p, &[], &[]).unwrap();
        assert_eq!(prep.modules, vec![("wc.wat".into(), b"(module)".to_vec())]);
        let doc: toml::Table = prep.pipeline.parse().unwrap();
        assert_eq!(doc["plugins"]["wc"].as_str(), Some("wc.wat"));
        assert_eq!(doc["source"][0]["type"].as_str(), Some("generator"));
    }
}
