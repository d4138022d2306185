//! The HTTP side of a watched job: one [`respond`] function that answers
//! every path under a job's prefix (the page, the JSON API, the event
//! stream), used by `weir run --http` at `/` and by `weir serve` under
//! `/jobs/{id}/`; and the router and listener of `weir run --http`.
//!
//! | path | answer |
//! |------|--------|
//! | `/` | the web UI (one page, assets inside the binary) |
//! | `/api/v1/job` | [`JobView`](super::api::JobView) |
//! | `/api/v1/statistics` | [`StatisticsView`](super::api::StatisticsView) |
//! | `/api/v1/batches` | [`BatchView`](super::api::BatchView)s, newest first |
//! | `/api/v1/batches/{batch_time_ms}` | [`BatchDetailView`](super::api::BatchDetailView) |
//! | `/api/v1/sources` | [`SourceView`](super::api::SourceView)s |
//! | `/api/v1/state` | [`StateTotalView`](super::api::StateTotalView) |
//! | `/api/v1/events` | server-sent events: `event: <Event::name()>`, `data: <the event as JSON>` |
//! | `/metrics` | Prometheus text (`weir run` only, when a renderer is given) |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, Method, StatusCode, Uri};
use axum::response::sse::{Event as SseFrame, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::mpsc;

use super::api::Watched;
use super::store::SseEvent;
use super::ObserveError;

/// Renders the Prometheus text of `/metrics` (see `observe::metrics`).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Where the page is served from: what its API calls are prefixed with,
/// and the token they pass on (`weir serve`).
#[derive(Debug, Clone, Default)]
pub struct PageContext {
    /// The job's prefix (`""` for `weir run`, `/jobs/{id}` for `weir serve`).
    pub base: String,
    /// The tenant's token, passed on as `?token=` (`weir serve`).
    pub token: Option<String>,
}

/// A JSON error answer, in the shape of `weir serve`'s:
/// `{"error": {"code": ..., "message": ...}}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message.into() } });
    (status, Json(body)).into_response()
}

/// Answers `path` (relative to the job's prefix, without a leading `/`).
pub fn respond(w: &Watched, path: &str, page: &PageContext) -> Response {
    let path = path.trim_matches('/');
    let Some(api) = path.strip_prefix("api/v1/") else {
        return match path {
            "" | "ui" => Html(super::ui::page(&page.base, page.token.as_deref())).into_response(),
            "events" => events(w),
            _ => not_found(path),
        };
    };
    match api {
        "job" => Json(w.job()).into_response(),
        "statistics" => Json(w.statistics()).into_response(),
        "batches" => Json(w.batches()).into_response(),
        "sources" => Json(w.sources()).into_response(),
        "state" => Json(w.state()).into_response(),
        "events" => events(w),
        _ => match api.strip_prefix("batches/") {
            Some(t) => batch(w, t),
            None => not_found(path),
        },
    }
}

fn not_found(path: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no `/{path}`: the API is /api/v1/job, /statistics, /batches, /batches/{{batch_time_ms}}, /sources, /state, /events"),
    )
}

fn batch(w: &Watched, t: &str) -> Response {
    let Ok(t) = t.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{t}` is not a batch time (ms)"),
        );
    };
    match w.batch(t) {
        Some(b) => Json(b).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no batch at {t} ms among the last {} batches",
                w.store.capacity()
            ),
        ),
    }
}

/// The job's events from now on, as server-sent events. A client that
/// falls behind is dropped by the store; its stream ends and the
/// connection closes.
fn events(w: &Watched) -> Response {
    let stream = EventStream(w.store.subscribe());
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    ([(header::CONNECTION, "close")], sse).into_response()
}

/// A client's queue as a stream of SSE frames.
struct EventStream(mpsc::Receiver<SseEvent>);

impl futures_core::Stream for EventStream {
    type Item = Result<SseFrame, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|e| e.map(|e| Ok(SseFrame::default().event(e.name).data(&*e.data))))
    }
}

/// The router of `weir run --http`: the job at `/`, and `/metrics`.
pub fn router(watched: Watched, metrics: Option<MetricsRender>) -> Router {
    let watched = Arc::new(watched);
    let mut router = Router::new();
    // `/metrics`: the Prometheus registry of `observe::metrics` renders
    // the text; mounted only when the caller hands in a renderer.
    if let Some(render) = metrics {
        router = router.route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
                        render(),
                    )
                }
            }),
        );
    }
    router.fallback(move |method: Method, uri: Uri| {
        let watched = watched.clone();
        async move {
            if method != Method::GET && method != Method::HEAD {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "the job's page and API are read-only: use GET",
                );
            }
            respond(&watched, uri.path(), &PageContext::default())
        }
    })
}

/// Parses `--http`'s address: `HOST:PORT`, or `:PORT` / `PORT` for
/// loopback.
pub fn parse_addr(text: &str) -> Result<SocketAddr, ObserveError> {
    let t = text.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Some(port) = t.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    t.parse().map_err(|_| ObserveError::Address {
        addr: text.to_owned(),
    })
}

/// Binds the listener (before the job starts, so a port in use is an
/// error before any batch runs).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ObserveError> {
    let bind_err = |source| ObserveError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

/// Serves `router` on `listener` as a task of `io` until the process ends.
pub fn spawn(
    io: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    router: Router,
) -> Result<SocketAddr, ObserveError> {
    let addr = listener.local_addr().map_err(|source| ObserveError::Bind {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        source,
    })?;
    let listener = {
        let _in_rt = io.enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(|source| ObserveError::Bind { addr, source })?
    };
    io.spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "the job's HTTP server stopped");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_addr(":4040").unwrap().to_string(), "127.0.0.1:4040");
        assert_eq!(parse_addr("4040").unwrap().to_string(), "127.0.0.1:4040");
        assert_eq!(
            parse_addr("localhost:4040").unwrap().to_string(),
            "127.0.0.1:4040"
        );
        assert_eq!(parse_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        let e = parse_addr("nowhere:x").unwrap_err().to_string();
        assert!(e.contains("nowhere:x"), "{e}");
        assert!(parse_addr("127.0.0.1:99999").is_err());
    }
}
