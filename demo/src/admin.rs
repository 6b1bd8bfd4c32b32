//! The worker's admin API: its health and its fault switch.
//!
//! | route | does |
//! |---|---|
//! | `GET /health` | 200 with [`WorkerStatus`](crate::worker::WorkerStatus): fault, connected, consuming, counts |
//! | `GET /fault` | `{"fault": "<position>"}` |
//! | `POST /fault/{none,stop-consuming,hang,crash}` | moves the switch; 400 for an unknown position |
//!
//! `/health` stays 200 under every fault, like a real worker whose process is fine while its
//! work is not: that is what makes these faults invisible to Docker.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

use crate::fault::Fault;
use crate::worker::WorkerState;

/// The admin routes over the worker's shared state.
pub fn router(state: Arc<WorkerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/fault", get(current_fault))
        .route("/fault/{position}", post(set_fault))
        .with_state(state)
}

async fn health(State(state): State<Arc<WorkerState>>) -> Response {
    Json(state.status()).into_response()
}

async fn current_fault(State(state): State<Arc<WorkerState>>) -> Response {
    Json(json!({ "fault": state.fault().as_str() })).into_response()
}

async fn set_fault(
    State(state): State<Arc<WorkerState>>,
    Path(position): Path<String>,
) -> Response {
    match position.parse::<Fault>() {
        Ok(fault) => {
            let previous = state.set_fault(fault);
            tracing::warn!(%fault, %previous, "fault switch moved");
            Json(json!({ "fault": fault.as_str(), "previous": previous.as_str() })).into_response()
        }
        Err(message) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
        }
    }
}
