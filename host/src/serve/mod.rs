//! `weir serve`: one long-running host, many tenants' jobs, an HTTP control
//! API (submit, list, status, stop, delete, upgrade, rollback) and its
//! client.
//!
//! Jobs are durable: each job's directory holds its record, and a host
//! started again on the same data directory (after a graceful stop or a
//! SIGKILL) brings every job that was running back from its checkpoint,
//! with the outputs of an uninterrupted run; stopped and failed jobs stay
//! listed until deleted.
//!
//! - [`config`]: the server's TOML file — bind address (loopback by
//!   default), data directory, tenants and the SHA-256 of their bearer
//!   tokens (`token_sha256`, from `weir serve hash-token`), per-job limits.
//! - [`confine`]: a pipeline may only name paths inside its job's
//!   directory, `<data_dir>/<tenant>/jobs/<id>/`, and only loopback sockets.
//! - [`registry`]: submission, status, stop, delete, hot swap; a failing
//!   job is recorded, never fatal to the host.
//! - [`job`]: one job — its record, status, stop, deletion, how it ended.
//! - [`record`]: the durable job record (`.job.json`, replaced atomically),
//!   the job id counter, crash-safe deletion.
//! - [`recover`]: bringing the jobs back when the host starts.
//! - [`quota`]: what all of a tenant's jobs may use together (running
//!   jobs, disk, fuel per second, module and state memory) and what they
//!   use; [`enforce`] pauses and resumes jobs by it and reports it
//!   (`GET /v1/tenant`).
//! - [`server`]: the routes (axum), authentication, JSON errors.
//! - [`client`]: the blocking client behind `weir submit / jobs / status /
//!   upgrade / rollback / stop / delete`.
//! - [`api`]: the JSON bodies both sides share.
//! - [`watch`]: each job's web UI, JSON API and event stream, and the
//!   tenant's job list page (`/ui`, `/jobs/{id}/...`).

pub mod api;
pub mod client;
pub mod commands;
pub mod config;
pub mod confine;
mod enforce;
pub mod job;
pub mod quota;
pub mod record;
mod recover;
pub mod registry;
pub mod server;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

pub use api::{
    DeleteInfo, JobError, JobInfo, JobList, JobState, SubmitRequest, SwapInfo, TenantStatus,
};
pub use client::{Client, ClientError};
pub use config::{JobLimitsConfig, ServeConfig, TenantConfig, TenantQuota};
pub use server::{Server, ServerHandle};

/// The host could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration file is wrong.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The data directory cannot be created.
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The host (wasm runtime, tokio runtime) could not start.
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    /// The server thread could not start.
    #[error("cannot start the server thread: {0}")]
    Thread(#[source] std::io::Error),
    /// `weir serve` without `--config`.
    #[error("no configuration: run `weir serve --config FILE`")]
    NoConfig,
    /// `weir serve hash-token` could not read the token.
    #[error("cannot read the token from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    /// A token too short, or with spaces.
    #[error("a token must be at least {min} characters without spaces (e.g. from `openssl rand -hex 24`)")]
    Token {
        /// Shortest length.
        min: usize,
    },
    /// The server thread panicked (a bug in weir).
    #[error("the server thread panicked")]
    Panicked,
}

/// An error answer of the API: a status and an [`api::ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (see [`api::ErrorDetail`]).
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: no or unknown token.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }

    /// 403: another tenant's job.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }

    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }

    /// 400: a malformed request.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }

    /// 400: the pipeline is wrong or breaks a limit.
    pub fn pipeline(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_pipeline", m)
    }

    /// The answer for an error whose type names its code (`code()` of
    /// [`crate::BuildError`], [`crate::config::PipelineError`]).
    pub fn from_code(code: &'static str, m: impl Into<String>) -> Self {
        let status = match code {
            "internal" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, code, m)
    }

    /// 400: a module is not a usable plugin.
    pub fn module(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_module", m)
    }

    /// 400: a path outside the tenant's directory, or a host it may not
    /// reach.
    pub fn outside(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "path_outside_tenant", m)
    }

    /// 409: the job is not running.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }

    /// 409: the engine refused a swap.
    pub fn swap(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "swap_rejected", m)
    }

    /// 413.
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m)
    }

    /// 429: a job quota is full.
    pub fn too_many(m: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_jobs", m)
    }

    /// 413 (a size: disk, memory) or 429 (a count or rate: jobs, fuel):
    /// a tenant quota, named in the message.
    pub fn quota(status: StatusCode, m: impl Into<String>) -> Self {
        Self::new(status, "quota_exceeded", m)
    }

    /// 500.
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = api::ErrorBody {
            error: api::ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(body),
            )
                .into_response()
        } else {
            (self.status, Json(body)).into_response()
        }
    }
}

impl From<confine::NameError> for ApiError {
    fn from(e: confine::NameError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}
