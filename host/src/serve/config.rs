//! The `weir serve` configuration file (TOML): where to listen, where jobs
//! keep their files, the tenants with their tokens, and the per-job limits.
//! `examples/serve.toml` shows every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::api::JobLimits;
use super::ServeError;

/// Default listening address: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:7878";

/// Shortest token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    bind: Option<String>,
    data_dir: Option<String>,
    max_body_mb: Option<usize>,
    max_jobs: Option<usize>,
    max_jobs_per_tenant: Option<usize>,
    keep_resident_kb: Option<usize>,
    quota_check_interval: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    quota: RawQuota,
    #[serde(default, rename = "tenant")]
    tenants: Vec<RawTenant>,
    #[serde(default)]
    kafka: RawKafka,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    #[serde(default)]
    brokers: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<u64>,
    memory_mb: Option<u64>,
    output_mb: Option<u64>,
    deadline: Option<String>,
    workers: Option<usize>,
    partitions: Option<usize>,
    max_retries: Option<u32>,
    max_state_mb: Option<u64>,
    max_batch_records: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    jobs: Option<usize>,
    disk_mb: Option<u64>,
    fuel_per_second: Option<u64>,
    memory_mb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    token: Option<String>,
    token_sha256: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    quota: RawQuota,
    kafka_topics: Option<Vec<String>>,
    kafka_groups: Option<Vec<String>>,
}

/// Per-job limits: each job of a tenant runs under these (a pipeline's own
/// `[limits]` may only lower them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLimitsConfig {
    /// Fuel per plugin call (per operator, partition and batch). Deterministic.
    pub fuel: u64,
    /// Linear memory per instance, bytes. Deterministic.
    pub memory_bytes: u64,
    /// Output per call, bytes.
    pub output_bytes: u64,
    /// Wall-clock safety net per call.
    pub deadline: Duration,
    /// Worker threads per job: its share of the host's cores.
    pub workers: usize,
    /// Most partitions a job (or one of its shuffles) may have.
    pub partitions: usize,
    /// Retries of a failed batch before the job fails.
    pub max_retries: u32,
    /// Keyed and window state per job, bytes.
    pub max_state_bytes: u64,
    /// Records a generator source may make per batch (rate × interval):
    /// they live in host memory.
    pub max_batch_records: u64,
}

impl Default for JobLimitsConfig {
    fn default() -> Self {
        JobLimitsConfig {
            fuel: 2_000_000_000,
            memory_bytes: 128 << 20,
            output_bytes: 64 << 20,
            deadline: Duration::from_secs(30),
            workers: 1,
            partitions: 8,
            max_retries: 2,
            max_state_bytes: 256 << 20,
            max_batch_records: 200_000,
        }
    }
}

impl JobLimitsConfig {
    /// As the API reports them.
    pub fn to_api(&self, partitions: usize) -> JobLimits {
        JobLimits {
            fuel: self.fuel,
            memory_bytes: self.memory_bytes,
            output_bytes: self.output_bytes,
            deadline_ms: self.deadline.as_millis() as u64,
            workers: self.workers,
            partitions,
            max_retries: self.max_retries,
            max_state_bytes: self.max_state_bytes,
            max_batch_records: self.max_batch_records,
        }
    }
}

/// A tenant: a name (its directory under the data directory) and the
/// SHA-256 of the bearer token its requests carry.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// `[a-z0-9_-]`, 1 to 64 characters.
    pub name: String,
    /// SHA-256 of its bearer token (`token_sha256`, or the hash of a
    /// plain-text `token`).
    pub token_sha256: [u8; 32],
    /// The configuration holds the token in plain text (`token`), not its
    /// hash: the host warns at start-up.
    pub plain_token: bool,
    /// Its jobs' limits.
    pub limits: JobLimitsConfig,
    /// What all its jobs together may use.
    pub quota: TenantQuota,
    /// What its Kafka sources and outputs may reach.
    pub kafka: KafkaPolicy,
}

/// What all of a tenant's jobs together may use (`[quota]`, overridden by
/// `[tenant.quota]`). `None`: no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantQuota {
    /// Jobs running at once [default: `max_jobs_per_tenant`].
    pub jobs: usize,
    /// Bytes of its job directories: outputs, checkpoints and batch logs,
    /// pipelines and modules. Over it, its jobs are paused.
    pub disk_bytes: Option<u64>,
    /// Fuel its plugin calls may burn per second of wall-clock time, over
    /// all its jobs: its share of the CPU. Past it, its batches wait.
    pub fuel_per_second: Option<u64>,
    /// Bytes of its running (and paused) jobs' modules and state. Over
    /// it, its jobs are paused.
    pub memory_bytes: Option<u64>,
}

/// What a tenant's pipelines may reach on Kafka: the brokers the host
/// allows, and name prefixes of the topics, and of the consumer groups and
/// transactional ids, the tenant may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaPolicy {
    /// `host:port` of the brokers allowed (none: no Kafka at all).
    pub brokers: Vec<String>,
    /// Topic name prefixes [default: `TENANT.`].
    pub topic_prefixes: Vec<String>,
    /// Consumer group and transactional id prefixes [default: `TENANT.`].
    pub group_prefixes: Vec<String>,
}

impl std::fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfig")
            .field("name", &self.name)
            .field("token_sha256", &"<redacted>")
            .field("plain_token", &self.plain_token)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A checked `weir serve` configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listening address [default: 127.0.0.1:7878].
    pub bind: SocketAddr,
    /// Where tenants' jobs keep their files: `<data_dir>/<tenant>/jobs/<id>/`.
    pub data_dir: PathBuf,
    /// Largest request body [default: 64 MiB].
    pub max_body_bytes: usize,
    /// Jobs running on the host at once [default: 128].
    pub max_jobs: usize,
    /// Jobs one tenant may have running at once [default: 32].
    pub max_jobs_per_tenant: usize,
    /// Bytes of each pooled wasm memory kept resident between calls
    /// [default: 1 MiB].
    pub keep_resident_bytes: usize,
    /// How often the disk and memory quotas are measured [default: 1 s].
    pub quota_check_interval: Duration,
    /// Tenants.
    pub tenants: Vec<TenantConfig>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl ServeConfig {
    /// Reads and checks a configuration file; `data_dir` is relative to it.
    pub fn load(path: &Path) -> Result<ServeConfig, ServeError> {
        let src = std::fs::read_to_string(path).map_err(|e| ServeError::Config {
            path: path.to_owned(),
            message: format!("cannot read it: {e}"),
        })?;
        warn_if_readable_by_others(path);
        let config = Self::parse(path, &src)?;
        for t in config.tenants.iter().filter(|t| t.plain_token) {
            tracing::warn!(
                config = %path.display(),
                tenant = %t.name,
                "the tenant's token is in plain text; store its hash instead: `token_sha256 = \"...\"` from `weir serve hash-token`"
            );
        }
        Ok(config)
    }

    /// Checks configuration text; `path` locates `data_dir` and messages.
    pub fn parse(path: &Path, src: &str) -> Result<ServeConfig, ServeError> {
        let err = |message: String| ServeError::Config {
            path: path.to_owned(),
            message,
        };
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let before = &src[..s.start.min(src.len())];
                    format!("line {}: ", before.matches('\n').count() + 1)
                })
                .unwrap_or_default();
            err(format!("{at}{}", e.message().trim()))
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let bind_text = raw.bind.as_deref().unwrap_or(DEFAULT_BIND);
        let bind: SocketAddr = bind_text.parse().map_err(|e| {
            err(format!(
                "`bind` = {bind_text:?} is not an address (write e.g. \"127.0.0.1:7878\"): {e}"
            ))
        })?;
        let data_dir = match raw.data_dir.as_deref() {
            None => base.join("weir-serve-data"),
            Some(d) if Path::new(d).is_absolute() => PathBuf::from(d),
            Some(d) => base.join(d),
        };
        let defaults = merge_limits(&JobLimitsConfig::default(), &raw.limits)
            .map_err(|m| err(format!("[limits]: {m}")))?;
        let positive = |v: Option<usize>, key: &str, default: usize| match v {
            Some(0) => Err(err(format!("`{key}` must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let max_jobs_per_tenant = positive(raw.max_jobs_per_tenant, "max_jobs_per_tenant", 32)?;
        let default_quota = merge_quota(
            &TenantQuota {
                jobs: max_jobs_per_tenant,
                disk_bytes: None,
                fuel_per_second: None,
                memory_bytes: None,
            },
            &raw.quota,
        )
        .map_err(|m| err(format!("[quota]: {m}")))?;
        if raw.tenants.is_empty() {
            return Err(err(
                "no [[tenant]]: add at least one, with `name` and `token`".into(),
            ));
        }
        let mut tenants: Vec<TenantConfig> = Vec::new();
        for t in &raw.tenants {
            if !is_name(&t.name) {
                return Err(err(format!(
                    "tenant name {:?}: use 1 to 64 of a-z, 0-9, `_` and `-` (it names a directory)",
                    t.name
                )));
            }
            let (token_sha256, plain_token) = tenant_token(t).map_err(&err)?;
            if tenants.iter().any(|o| o.name == t.name) {
                return Err(err(format!("tenant `{}` is defined twice", t.name)));
            }
            if tenants.iter().any(|o| o.token_sha256 == token_sha256) {
                return Err(err(format!(
                    "tenant `{}` has the same token as another tenant; tokens must be unique",
                    t.name
                )));
            }
            let limits = merge_limits(&defaults, &t.limits)
                .map_err(|m| err(format!("tenant `{}` limits: {m}", t.name)))?;
            let quota = merge_quota(&default_quota, &t.quota)
                .map_err(|m| err(format!("tenant `{}` quota: {m}", t.name)))?;
            let own = vec![format!("{}.", t.name)];
            let prefixes = |v: &Option<Vec<String>>, key: &str| match v {
                Some(list) if list.iter().any(String::is_empty) => Err(err(format!(
                    "tenant `{}`: `{key}` may not hold an empty prefix (it would allow everything)",
                    t.name
                ))),
                Some(list) => Ok(list.clone()),
                None => Ok(own.clone()),
            };
            tenants.push(TenantConfig {
                name: t.name.clone(),
                token_sha256,
                plain_token,
                limits,
                quota,
                kafka: KafkaPolicy {
                    brokers: raw.kafka.brokers.clone(),
                    topic_prefixes: prefixes(&t.kafka_topics, "kafka_topics")?,
                    group_prefixes: prefixes(&t.kafka_groups, "kafka_groups")?,
                },
            });
        }
        let quota_check_interval = match raw.quota_check_interval.as_deref() {
            None => Duration::from_secs(1),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    return Err(err(format!(
                        "`quota_check_interval` = {text:?} is not a duration above zero; write e.g. \"1s\""
                    )))
                }
            },
        };
        Ok(ServeConfig {
            bind,
            data_dir,
            max_body_bytes: positive(raw.max_body_mb, "max_body_mb", 64)? << 20,
            max_jobs: positive(raw.max_jobs, "max_jobs", 128)?,
            max_jobs_per_tenant,
            keep_resident_bytes: raw.keep_resident_kb.unwrap_or(1024) << 10,
            quota_check_interval,
            tenants,
        })
    }

    /// Instances the shared wasm runtime must be able to hold at once: one
    /// per worker of every job that may run.
    pub fn max_instances(&self) -> u32 {
        let most_workers = self
            .tenants
            .iter()
            .map(|t| t.limits.workers)
            .max()
            .unwrap_or(1);
        (self.max_jobs * most_workers + 8).min(10_000) as u32
    }

    /// The largest memory any tenant's instance may have.
    pub fn max_memory_bytes(&self) -> u64 {
        self.tenants
            .iter()
            .map(|t| t.limits.memory_bytes)
            .max()
            .unwrap_or(JobLimitsConfig::default().memory_bytes)
    }
}

/// SHA-256 of a bearer token, as `token_sha256` holds it (hex) and as
/// `weir serve hash-token` prints it.
pub fn hash_token(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// The tenant's token hash from `token_sha256` (64 hex digits, optionally
/// after `sha256:`) or a plain-text `token` (hashed here); and whether it
/// was plain text.
fn tenant_token(t: &RawTenant) -> Result<([u8; 32], bool), String> {
    match (&t.token, &t.token_sha256) {
        (Some(_), Some(_)) => Err(format!(
            "tenant `{}`: give either `token_sha256` or `token`, not both",
            t.name
        )),
        (None, None) => Err(format!(
            "tenant `{}`: no token: add `token_sha256 = \"...\"` (from `weir serve hash-token`)",
            t.name
        )),
        (Some(token), None) => {
            if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
                return Err(format!(
                    "tenant `{}`: the token must be at least {MIN_TOKEN_LEN} characters without spaces (e.g. from `openssl rand -hex 24`)",
                    t.name
                ));
            }
            Ok((hash_token(token), true))
        }
        (None, Some(hex_text)) => {
            let digits = hex_text.strip_prefix("sha256:").unwrap_or(hex_text);
            let mut hash = [0u8; 32];
            hex::decode_to_slice(digits, &mut hash).map_err(|e| {
                format!(
                    "tenant `{}`: `token_sha256` must be 64 hex digits (from `weir serve hash-token`): {e}",
                    t.name
                )
            })?;
            Ok((hash, false))
        }
    }
}

/// A `[limits]` value out of range.
#[derive(Debug, thiserror::Error)]
enum LimitError {
    #[error("`{key}` must be above zero")]
    Zero { key: &'static str },
    #[error("`deadline` = {value:?} is not a duration ({source}); write e.g. \"30s\"")]
    Duration {
        value: String,
        #[source]
        source: humantime::DurationError,
    },
}

fn merge_quota(base: &TenantQuota, raw: &RawQuota) -> Result<TenantQuota, LimitError> {
    let nonzero = |v: Option<u64>, key: &'static str| match v {
        Some(0) => Err(LimitError::Zero { key }),
        _ => Ok(v),
    };
    Ok(TenantQuota {
        jobs: nonzero(raw.jobs.map(|j| j as u64), "jobs")?.map_or(base.jobs, |j| j as usize),
        disk_bytes: nonzero(raw.disk_mb, "disk_mb")?
            .map(|m| m << 20)
            .or(base.disk_bytes),
        fuel_per_second: nonzero(raw.fuel_per_second, "fuel_per_second")?.or(base.fuel_per_second),
        memory_bytes: nonzero(raw.memory_mb, "memory_mb")?
            .map(|m| m << 20)
            .or(base.memory_bytes),
    })
}

fn merge_limits(base: &JobLimitsConfig, raw: &RawLimits) -> Result<JobLimitsConfig, LimitError> {
    let nonzero = |v: Option<u64>, key: &'static str| match v {
        Some(0) => Err(LimitError::Zero { key }),
        _ => Ok(v),
    };
    let deadline = match &raw.deadline {
        None => base.deadline,
        Some(d) => match humantime::parse_duration(d) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => return Err(LimitError::Zero { key: "deadline" }),
            Err(source) => {
                return Err(LimitError::Duration {
                    value: d.clone(),
                    source,
                })
            }
        },
    };
    Ok(JobLimitsConfig {
        fuel: nonzero(raw.fuel, "fuel")?.unwrap_or(base.fuel),
        memory_bytes: nonzero(raw.memory_mb, "memory_mb")?.map_or(base.memory_bytes, |m| m << 20),
        output_bytes: nonzero(raw.output_mb, "output_mb")?.map_or(base.output_bytes, |m| m << 20),
        deadline,
        workers: nonzero(raw.workers.map(|w| w as u64), "workers")?
            .map_or(base.workers, |w| w as usize),
        partitions: nonzero(raw.partitions.map(|w| w as u64), "partitions")?
            .map_or(base.partitions, |w| w as usize),
        max_retries: raw.max_retries.unwrap_or(base.max_retries),
        max_state_bytes: nonzero(raw.max_state_mb, "max_state_mb")?
            .map_or(base.max_state_bytes, |m| m << 20),
        max_batch_records: nonzero(raw.max_batch_records, "max_batch_records")?
            .unwrap_or(base.max_batch_records),
    })
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                config = %path.display(),
                "the configuration holds tenant tokens but other users may read it; `chmod 600` it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<ServeConfig, String> {
        ServeConfig::parse(Path::new("/etc/weir/serve.toml"), src).map_err(|e| e.to_string())
    }

    const T: &str = "[[tenant]]\nname = \"alice\"\ntoken = \"0123456789abcdef\"\n";

    #[test]
    fn defaults_are_loopback_and_sane() {
        let c = parse(T).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:7878");
        assert!(c.bind.ip().is_loopback());
        assert_eq!(c.data_dir, Path::new("/etc/weir/weir-serve-data"));
        assert_eq!(c.tenants[0].limits, JobLimitsConfig::default());
        assert_eq!(c.tenants[0].limits.workers, 1);
        assert_eq!(c.tenants[0].limits.max_retries, 2);
        let q = &c.tenants[0].quota;
        assert_eq!(q.jobs, 32);
        assert_eq!(
            (q.disk_bytes, q.fuel_per_second, q.memory_bytes),
            (None, None, None)
        );
    }

    #[test]
    fn tenant_quotas_override_the_defaults() {
        let c = parse(&format!(
            "max_jobs_per_tenant = 5\n[quota]\ndisk_mb = 100\nfuel_per_second = 1000\n{T}[tenant.quota]\njobs = 2\nmemory_mb = 8\n"
        ))
        .unwrap();
        let q = &c.tenants[0].quota;
        assert_eq!(q.jobs, 2);
        assert_eq!(q.disk_bytes, Some(100 << 20));
        assert_eq!(q.fuel_per_second, Some(1000));
        assert_eq!(q.memory_bytes, Some(8 << 20));
        let e = parse(&format!("{T}[tenant.quota]\ndisk_mb = 0\n")).unwrap_err();
        assert!(e.contains("disk_mb") && e.contains("above zero"), "{e}");
    }

    #[test]
    fn tenant_limits_override_the_defaults() {
        let c = parse(&format!(
            "[limits]\nfuel = 1000\nmemory_mb = 16\n{T}[tenant.limits]\nworkers = 2\n"
        ))
        .unwrap();
        let l = &c.tenants[0].limits;
        assert_eq!((l.fuel, l.memory_bytes, l.workers), (1000, 16 << 20, 2));
    }

    #[test]
    fn refuses_bad_configurations() {
        for (src, needle) in [
            ("", "no [[tenant]]"),
            ("bogus = 1\n", "unknown field"),
            (
                "[[tenant]]\nname = \"Al/ice\"\ntoken = \"0123456789abcdef\"\n",
                "tenant name",
            ),
            (
                "[[tenant]]\nname = \"a\"\ntoken = \"short\"\n",
                "at least 16",
            ),
            (
                &format!("{T}[[tenant]]\nname = \"bob\"\ntoken = \"0123456789abcdef\"\n"),
                "same token",
            ),
            (&format!("{T}{T}"), "defined twice"),
            (&format!("bind = \"nowhere\"\n{T}"), "not an address"),
            (&format!("[limits]\nworkers = 0\n{T}"), "above zero"),
            (
                &format!("[limits]\ndeadline = \"soon\"\n{T}"),
                "not a duration",
            ),
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.contains(needle), "{src:?}: {e}");
        }
    }

    #[test]
    fn debug_hides_tokens() {
        let c = parse(T).unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        assert!(!format!("{c:?}").contains(&hex::encode(hash_token("0123456789abcdef"))));
    }

    #[test]
    fn tokens_are_kept_as_hashes() {
        let plain = parse(T).unwrap();
        assert!(plain.tenants[0].plain_token);
        assert_eq!(
            plain.tenants[0].token_sha256,
            hash_token("0123456789abcdef")
        );
        let hex_hash = hex::encode(hash_token("0123456789abcdef"));
        for value in [hex_hash.clone(), format!("sha256:{hex_hash}")] {
            let c = parse(&format!(
                "[[tenant]]\nname = \"alice\"\ntoken_sha256 = \"{value}\"\n"
            ))
            .unwrap();
            assert!(!c.tenants[0].plain_token);
            assert_eq!(c.tenants[0].token_sha256, plain.tenants[0].token_sha256);
        }
        for (src, needle) in [
            ("token_sha256 = \"abc\"", "64 hex digits"),
            ("token_sha256 = \"zz\"", "64 hex digits"),
            (
                &format!("token = \"0123456789abcdef\"\ntoken_sha256 = \"{hex_hash}\""),
                "not both",
            ),
            ("", "no token"),
        ] {
            let e = parse(&format!("[[tenant]]\nname = \"a\"\n{src}\n")).unwrap_err();
            assert!(e.contains(needle), "{src}: {e}");
        }
        // One token, once plain and once hashed: still the same token.
        let e = parse(&format!(
            "{T}[[tenant]]\nname = \"bob\"\ntoken_sha256 = \"{hex_hash}\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("same token"), "{e}");
    }
}
