//! Watching served jobs: each job's web UI, JSON API and event stream
//! (the same as `weir run --http`, from [`crate::observe`]) under
//! `/jobs/{id}/`, and a page listing the tenant's jobs, behind the
//! tenant's token.
//!
//! | path | answer |
//! |------|--------|
//! | `GET /ui?token=TOKEN` | the tenant's jobs, with links to their pages |
//! | `GET /jobs/{id}/ui?token=TOKEN` | the job's web UI |
//! | `GET /jobs/{id}/api/v1/...` | the job's JSON API (`job`, `statistics`, `batches`, ...) |
//! | `GET /jobs/{id}/events` | the job's server-sent events (also `/jobs/{id}/api/v1/events`) |
//!
//! A browser cannot set an `Authorization` header when it follows a link,
//! so these routes take the token as `?token=` too, and the page passes it
//! on to its API calls. No token: 401; another tenant's job: 403.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::config::TenantConfig;
use super::server::AppState;
use super::ApiError;
use crate::observe::http::{respond, PageContext};

/// The tenant of a request, from `Authorization: Bearer` or `?token=`,
/// and the token (to pass on to the page's own requests).
struct Viewer(TenantConfig, String);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        let token = header.or_else(|| query_param(parts.uri.query()?, "token"));
        let Some(token) = token else {
            return Err(ApiError::unauthorized(
                "no token: add ?token=TOKEN to the address, or an `Authorization: Bearer TOKEN` header",
            ));
        };
        match state.registry.authenticate(&token) {
            Some(t) => Ok(Viewer(t.clone(), token)),
            None => Err(ApiError::unauthorized("unknown token")),
        }
    }
}

/// The value of `name` in a query string, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok();
        match (bytes[i], hex().and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `/ui`: the tenant's jobs.
async fn job_list(State(s): State<AppState>, Viewer(tenant, token): Viewer) -> Html<String> {
    let token = encode_component(&token);
    let rows: String = s
        .registry
        .list(&tenant)
        .iter()
        .map(|job| {
            let info = job.info(false);
            let id = escape_html(&encode_component(&info.id));
            format!(
                "<tr><td><a href=\"/jobs/{id}/ui?token={token}\">{}</a></td><td>{}</td><td>{}</td><td class=num>{}</td><td>{}</td></tr>\n",
                escape_html(&info.id),
                escape_html(&info.name),
                info.state,
                info.batches,
                escape_html(&info.error.map(|e| e.message).unwrap_or_default()),
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>weir · {tenant}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:20px;color:#1d2430}}table{{border-collapse:collapse}}\
th,td{{padding:4px 10px;border-bottom:1px solid #e4e7ec;text-align:left}}td.num{{text-align:right}}</style></head>\
<body><h1>Jobs of {tenant}</h1><table id=jobs><thead><tr><th>job</th><th>name</th><th>state</th><th>batches</th><th>error</th></tr></thead>\
<tbody>\n{rows}</tbody></table></body></html>",
        tenant = escape_html(&tenant.name),
    ))
}

/// `/jobs/{id}/...`: the job's page, API and events.
async fn job_view(
    State(s): State<AppState>,
    viewer: Result<Viewer, ApiError>,
    Path((id, rest)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Viewer(tenant, token) = viewer?;
    let job = s.registry.job(&tenant, &id)?;
    if rest.trim_matches('/') == "metrics" {
        return Ok(tenant_metrics(&s, &tenant.name));
    }
    let page = PageContext {
        base: format!("/jobs/{}", encode_component(&id)),
        token: Some(token),
    };
    let Some(watched) = job.watched() else {
        return Err(ApiError::conflict(format!(
            "job `{id}` has not run since the host started: its pages, API and events are gone (its status is at /v1/jobs/{id}, its outputs in its directory)"
        )));
    };
    Ok(respond(&watched, &rest, &page).into_response())
}

/// `/metrics`: the Prometheus metrics of the tenant's jobs (each series
/// labelled with its job and tenant).
async fn metrics(State(s): State<AppState>, Viewer(tenant, _): Viewer) -> Response {
    tenant_metrics(&s, &tenant.name)
}

fn tenant_metrics(s: &AppState, tenant: &str) -> Response {
    (
        [(header::CONTENT_TYPE, crate::observe::metrics::CONTENT_TYPE)],
        s.registry.metrics(tenant).encode(),
    )
        .into_response()
}

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(job_list))
        .route("/metrics", get(metrics))
        .route("/jobs/{id}/{*rest}", get(job_view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_decoded() {
        assert_eq!(
            query_param("a=1&token=ab%2Bc+d", "token").as_deref(),
            Some("ab+c d")
        );
        assert_eq!(query_param("a=1", "token"), None);
        assert_eq!(encode_component("a b/c"), "a%20b%2Fc");
    }
}
