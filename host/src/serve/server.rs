//! The HTTP control API (axum on hyper). Every `/v1/jobs` route needs a
//! tenant's bearer token and sees only that tenant's jobs; blocking work
//! (writing files, compiling modules, waiting for a batch boundary) runs on
//! tokio's blocking pool, never on the threads that serve requests.
//!
//! | method and path | body | answer |
//! |-----------------|------|--------|
//! | `GET /v1/health` | | `{"ok": true}` (no token needed) |
//! | `POST /v1/jobs` | [`SubmitRequest`] | 201 [`JobInfo`] |
//! | `GET /v1/jobs` | | [`JobList`] |
//! | `GET /v1/jobs/{id}` | | [`JobInfo`] with `recent` batches |
//! | `POST /v1/jobs/{id}/stop` | | [`JobInfo`] (200 once stopped, 202 while stopping) |
//! | `DELETE /v1/jobs/{id}` | | [`DeleteInfo`] (200 once its files are gone, 202 while its batch ends) |
//! | `GET /v1/tenant` | | [`TenantStatus`]: the caller's quotas and use |
//! | `POST /v1/jobs/{id}/upgrade` | [`UpgradeRequest`] | [`SwapInfo`] |
//! | `POST /v1/jobs/{id}/rollback` | [`RollbackRequest`] | [`SwapInfo`] |
//! | `GET /ui`, `GET /jobs/{id}/ui`, `/jobs/{id}/api/v1/...`, `/jobs/{id}/events` | | pages, JSON and events of [`super::watch`] (token also as `?token=`) |
//!
//! Errors are [`ErrorBody`] with 400 (bad request, pipeline or module), 401
//! (no or unknown token), 403 (another tenant's job), 404, 409 (job not
//! running, swap rejected), 413 (body too large; disk or memory quota),
//! 429 (too many jobs; jobs or fuel quota).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;

#[allow(unused_imports)] // named in the docs above
use super::api::{DeleteInfo, ErrorBody, JobInfo, SwapInfo, TenantStatus};
use super::api::{JobList, RollbackRequest, SubmitRequest, UpgradeRequest};
use super::config::{ServeConfig, TenantConfig};
use super::registry::Registry;
use super::{ApiError, ServeError};
use crate::host::{Host, HostConfig};
use crate::wasm::RuntimeConfig;

/// How long `stop` waits for the job's current batch before answering 202.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// How long a shutdown waits for the jobs to finish their batches.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) registry: Arc<Registry>,
}

/// The authenticated tenant of a request.
struct Caller(TenantConfig);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing `Authorization: Bearer TOKEN` header",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer TOKEN`")
            })?;
        match state.registry.authenticate(token) {
            Some(t) => Ok(Caller(t.clone())),
            None => Err(ApiError::unauthorized("unknown token")),
        }
    }
}

/// A JSON body: read within the body limit, parsed with a clear 400.
///
/// Handlers with a body read it (within the limit) before refusing a
/// request without a valid token: answering before the body is read would
/// make the server close the connection while the client is still
/// sending, and the client would see a broken connection instead of 401.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("the request body is larger than the server's `max_body_mb`")
        } else {
            ApiError::bad_request(format!("cannot read the request body: {r}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

/// Runs blocking registry work off the request threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("the request failed: {e}"))))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true }))
}

async fn submit(
    State(s): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Caller(tenant) = caller?;
    let req: SubmitRequest = json_body(body)?;
    let info = blocking(move || s.registry.submit(&tenant, req)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn list(State(s): State<AppState>, Caller(tenant): Caller) -> Json<JobList> {
    let jobs = s.registry.list(&tenant);
    Json(JobList {
        jobs: jobs.iter().map(|j| j.info(false)).collect(),
    })
}

async fn tenant_status(State(s): State<AppState>, Caller(tenant): Caller) -> Json<TenantStatus> {
    Json(s.registry.tenant_status(&tenant))
}

async fn status(
    State(s): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = s.registry.job(&tenant, &id)?;
    Ok(Json(job.info(true)).into_response())
}

async fn stop(
    State(s): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (ended, info) = blocking(move || s.registry.stop(&tenant, &id, STOP_WAIT)).await?;
    let code = if ended {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(info)).into_response())
}

async fn delete(
    State(s): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let removed = {
        let id = id.clone();
        blocking(move || s.registry.delete(&tenant, &id, STOP_WAIT)).await?
    };
    let code = if removed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(DeleteInfo { id, removed })).into_response())
}

async fn upgrade(
    State(s): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Caller(tenant) = caller?;
    let job = s.registry.job(&tenant, &id)?;
    let req: UpgradeRequest = json_body(body)?;
    let module = base64::engine::general_purpose::STANDARD
        .decode(&req.module)
        .map_err(|e| ApiError::bad_request(format!("`module` is not valid base64: {e}")))?;
    let info = blocking(move || s.registry.upgrade(&job, &req.plugin, &module)).await?;
    Ok(Json(info).into_response())
}

async fn rollback(
    State(s): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Caller(tenant) = caller?;
    let job = s.registry.job(&tenant, &id)?;
    let req: RollbackRequest = json_body(body)?;
    let info = blocking(move || s.registry.rollback(&job, &req.plugin)).await?;
    Ok(Json(info).into_response())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; the API lives under /v1/jobs")
}

fn router(registry: Arc<Registry>) -> Router {
    let limit = registry.config().max_body_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(status).delete(delete))
        .route("/v1/tenant", get(tenant_status))
        .route("/v1/jobs/{id}/stop", post(stop))
        .route("/v1/jobs/{id}/upgrade", post(upgrade))
        .route("/v1/jobs/{id}/rollback", post(rollback))
        // Each job's web UI, JSON API and event stream (`/ui`, `/jobs/{id}/...`).
        .merge(super::watch::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(AppState { registry })
}

/// A bound, not yet serving, `weir serve` host.
pub struct Server {
    registry: Arc<Registry>,
    listener: std::net::TcpListener,
    host: Host,
}

impl Server {
    /// Creates the data directory and the process's host (wasm runtime,
    /// one tokio runtime for the API and every job's receivers, the worker
    /// pool), binds the listening socket (port 0 picks a free port) and
    /// brings back the jobs of the data directory
    /// ([`Registry::recover`]): those that were running start again from
    /// their checkpoints.
    pub fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| ServeError::DataDir {
            path: config.data_dir.clone(),
            source: e,
        })?;
        let host = Host::new(&HostConfig {
            wasm: RuntimeConfig {
                max_instances: config.max_instances(),
                max_memory_bytes: config.max_memory_bytes() as usize,
                memory_keep_resident: config.keep_resident_bytes,
                ..RuntimeConfig::default()
            },
            io_threads: 2,
            ..HostConfig::default()
        })?;
        let listener = std::net::TcpListener::bind(config.bind).map_err(|e| ServeError::Bind {
            addr: config.bind,
            source: e,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ServeError::Bind {
                addr: config.bind,
                source: e,
            })?;
        if !config.bind.ip().is_loopback() {
            tracing::warn!(
                bind = %config.bind,
                "listening beyond loopback: tokens travel in clear text over plain HTTP; put a TLS proxy in front"
            );
        }
        let registry = Arc::new(Registry::new(config, host.clone()));
        let restarted = registry.recover();
        if restarted > 0 {
            tracing::info!(
                jobs = restarted,
                "jobs running before the restart started again"
            );
        }
        let tenants = &registry.config().tenants;
        if tenants
            .iter()
            .any(|t| t.quota.disk_bytes.is_some() || t.quota.memory_bytes.is_some())
        {
            super::enforce::spawn_monitor(
                Arc::downgrade(&registry),
                registry.config().quota_check_interval,
            );
        }
        Ok(Server {
            registry,
            listener,
            host,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound socket has an address")
    }

    /// The job registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves until `shutdown` completes, then stops every job (each
    /// finishes its current batch; the running ones start again with the
    /// next host on this data directory) and returns.
    pub fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            registry,
            listener,
            host,
        } = self;
        let addr = listener.local_addr().ok();
        let app = router(registry.clone());
        let served = host.io().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tracing::info!(addr = ?addr, "serving the control API");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        });
        tracing::info!("shutting down: stopping every job after its current batch");
        registry.shutdown(SHUTDOWN_WAIT);
        served.map_err(ServeError::Serve)
    }

    /// Serves on a background thread; [`ServerHandle::shutdown`] stops it.
    pub fn spawn(self) -> Result<ServerHandle, ServeError> {
        let addr = self.local_addr();
        let registry = self.registry.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weir-serve-main".into())
            .spawn(move || {
                self.run_until(async move {
                    let _ = rx.await;
                })
            })
            .map_err(ServeError::Thread)?;
        Ok(ServerHandle {
            addr,
            registry,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A server running on a background thread.
pub struct ServerHandle {
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The job registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Stops serving and every job, and waits for it.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(ServeError::Panicked)),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
