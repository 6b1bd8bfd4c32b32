//! The HTTP server on `MEDIC_LISTEN`: what load balancers, dashboards and people ask.
//!
//! | route | module |
//! |---|---|
//! | `GET /health` | here: medic itself, for load balancers and the image's HEALTHCHECK |
//! | `GET /health/detailed` | [`detailed`]: JSON for dashboards (token when one is set) |
//! | `GET /metrics` | [`metrics`]: Prometheus text format |
//! | `GET /` | [`page`]: the status page a person reads |
//! | `POST /api/v1/...` | [`admin`]: run a probe, silence a component, send the report |
//!
//! The server loop with its timeouts and connection bound is [`server`]; the admin routes
//! check the token before any body is read ([`gate`]).
//!
//! Handlers read what the loops published in [`Status`] (and the store, for the page's
//! history); admin commands go to the brain over a channel, because the brain owns the state.

pub mod admin;
pub mod detailed;
pub mod gate;
pub mod metrics;
pub mod page;
pub mod server;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::mpsc;

use crate::heal::Command;
use crate::status::Status;
use crate::store::Store;

/// Sends the daily report now, for `POST /api/v1/report/send`. Hook for the notifiers: until
/// one is given to [`ApiState::report`], the route answers 501.
#[async_trait::async_trait]
pub trait ReportTrigger: Send + Sync {
    /// Sends the report; `Ok` carries what to tell the caller (recipients, subject, …).
    async fn send_now(&self) -> Result<serde_json::Value, String>;
}

/// What every handler can read.
#[derive(Clone)]
pub struct ApiState {
    /// Live facts about the daemon.
    pub status: Arc<Status>,
    /// The store, for the status page's 24-hour history.
    pub store: Option<Arc<Store>>,
    /// Where admin commands go (the brain); `None` answers 503.
    pub commands: Option<mpsc::Sender<Command>>,
    /// `MEDIC_API_TOKEN` ([`crate::config::Settings::api_token`]): needed by the admin routes
    /// and `/health/detailed`; without it the admin routes answer 403.
    pub token: Option<Arc<str>>,
    /// Sends the daily report now; `None` until the notifiers provide it.
    pub report: Option<Arc<dyn ReportTrigger>>,
    /// The last `/metrics` text, served again for up to a second (see [`metrics::Cache`]).
    pub metrics_cache: Arc<metrics::Cache>,
    /// The status page's history, reused for a few seconds (see [`page::StripCache`]).
    pub page_cache: Arc<page::StripCache>,
}

impl ApiState {
    /// A state with only the live status (no store, no admin, no token).
    pub fn new(status: Arc<Status>) -> ApiState {
        ApiState {
            status,
            store: None,
            commands: None,
            token: None,
            report: None,
            metrics_cache: Default::default(),
            page_cache: Default::default(),
        }
    }
}

/// All routes.
pub fn router(state: ApiState) -> Router {
    // The gate runs before the handlers' extractors, so the token is checked before any body
    // is read.
    let admin = Router::new()
        .route("/api/v1/probes/{name}/run", post(admin::run_probe))
        .route("/api/v1/components/{name}/silence", post(admin::silence))
        .route("/api/v1/report/send", post(admin::send_report))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::admin,
        ));
    Router::new()
        .route("/", get(page::status_page))
        .route("/health", get(health))
        .route("/health/detailed", get(detailed::detailed))
        .route("/metrics", get(metrics::metrics))
        .merge(admin)
        .layer(axum::middleware::map_response(redact_body))
        .with_state(state)
}

/// The most of a response body [`redact_body`] reads: far above what any route answers (the
/// status page of 1,000 components is well under this); a bigger body is refused rather than
/// sent unscrubbed.
const MAX_BODY: usize = 64 << 20;

/// The edge where HTTP answers leave: every body is scrubbed of the secrets medic knows
/// ([`crate::redact`]), whatever route built it and whatever it quotes (a probe's error, an
/// SMTP server's reply).
async fn redact_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!("cannot read a response body to scrub it: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "response too large");
        }
    };
    let scrubbed = crate::redact::global().scrub_bytes(&bytes);
    if scrubbed.len() != bytes.len() {
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    }
    Response::from_parts(parts, axum::body::Body::from(scrubbed))
}

/// A JSON error answer: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into_response()
}

/// An error answer, small enough to pass around in a `Result`.
#[derive(Debug)]
pub(crate) struct ApiError {
    /// The HTTP status.
    status: StatusCode,
    /// What to tell the caller.
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({"error": self.message}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"medic\""),
            );
        }
        response
    }
}

/// Checks `Authorization: Bearer <token>` against `expected`, in constant time. `Err` is the
/// 401 answer.
pub(crate) fn authorize(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(given) = given else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this route needs the header Authorization: Bearer $MEDIC_API_TOKEN",
        ));
    };
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not MEDIC_API_TOKEN",
        ))
    }
}

/// Compares without stopping at the first difference, so timing tells nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Masks the password of every URI in a message (`scheme://user:***@host`).
pub(crate) fn mask_uris(message: &str) -> String {
    message
        .split_inclusive(char::is_whitespace)
        .map(|word| {
            if word.contains("://") {
                crate::probe::mask_uri(word)
            } else {
                word.to_string()
            }
        })
        .collect()
}

/// 200 `{"status":"healthy"}`, or 503 with the reason medic itself is not well.
async fn health(State(state): State<ApiState>) -> (StatusCode, Json<serde_json::Value>) {
    match state.status.problem() {
        None => (StatusCode::OK, Json(json!({"status": "healthy"}))),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "reason": reason})),
        ),
    }
}

/// Asks the daemon listening on `listen` for its `/health`, as the image's HEALTHCHECK does:
/// `Ok` on 200, else why not. A wildcard address is asked on loopback.
pub async fn probe_own_health(listen: SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, listen.port());
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut reply = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply).into_owned())
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("no answer from http://{addr}/health within 5s"))?
        .map_err(|e| format!("cannot ask http://{addr}/health: {e}"))?;
    let status = reply.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        Err(format!("http://{addr}/health answered {status}: {body}"))
    }
}
