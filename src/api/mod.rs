//! The HTTP server on `MEDIC_LISTEN`: what load balancers, dashboards and people ask.

use std::sync::Arc;

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
