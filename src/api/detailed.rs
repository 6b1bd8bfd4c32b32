//! `GET /health/detailed`: the whole picture as JSON, for dashboards.
//!
//! The field names are a contract (documented in docs/http.md): add fields, never rename one.
//! The answer is 200 whatever the verdict (the verdict is in `status`); with `MEDIC_API_TOKEN`
//! set it needs `Authorization: Bearer <token>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;

use super::{authorize, mask_uris, ApiState};
use crate::policy::Instant;
use crate::status::{ComponentView, DockerStatus, EmailStatus, Level, Status};

/// The body of `/health/detailed`.
#[derive(Debug, Serialize)]
pub struct Detailed {
    /// `healthy`, `degraded` or `unhealthy` (see [`Status::overall`]).
    pub status: &'static str,
    /// Why medic itself is unhealthy (stalled loop, unwritable store), as `/health` says.
    pub reason: Option<String>,
    /// medic's version.
    pub version: &'static str,
    /// When medic started.
    pub started_at: Instant,
    /// Seconds since it started.
    pub uptime_seconds: i64,
    /// The compose project watched, once known.
    pub project: Option<String>,
    /// The engine connection.
    pub docker: DockerStatus,
    /// Email delivery.
    pub email: EmailStatus,
    /// Every component, by name.
    #[serde(serialize_with = "through_arc")]
    pub components: Arc<BTreeMap<String, ComponentView>>,
}

fn through_arc<S: serde::Serializer, T: Serialize>(
    value: &Arc<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    value.as_ref().serialize(s)
}

/// Builds the detailed view from the live status.
pub fn snapshot(status: &Status) -> Detailed {
    let components = status.components();
    let overall = status.overall(&components);
    let mut docker = status.docker();
    docker.error = docker.error.as_deref().map(mask_uris);
    let mut email = status.email();
    email.last_error = email.last_error.as_deref().map(mask_uris);
    let now = Utc::now();
    Detailed {
        status: match overall {
            // Components not checked yet do not make medic degraded.
            Level::Unknown => Level::Healthy.as_str(),
            level => level.as_str(),
        },
        reason: status.problem(),
        version: env!("CARGO_PKG_VERSION"),
        started_at: status.started_at,
        uptime_seconds: (now - status.started_at).num_seconds(),
        project: status.project(),
        docker,
        email,
        components,
    }
}

/// `GET /health/detailed`.
pub async fn detailed(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.token {
        if let Err(denied) = authorize(&headers, token) {
            return denied.into_response();
        }
    }
    let status = &state.status;
    let uptime = (Utc::now() - status.started_at).num_seconds();
    let body = status.detailed_body(uptime, status.problem(), || {
        serde_json::to_vec(&snapshot(status))
            .map(axum::body::Bytes::from)
            .unwrap_or_default()
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
