//! The HTTP server on `MEDIC_LISTEN`: what load balancers, dashboards and people ask.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::status::Status;

/// What every handler can read.
#[derive(Clone)]
pub struct ApiState {
    /// Live facts about the daemon.
    pub status: Arc<Status>,
}

/// All routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
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
