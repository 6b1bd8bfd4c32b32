//! Admin actions: run a probe now, silence a component, send the report now.
//!
//! All need `Authorization: Bearer $MEDIC_API_TOKEN`. Without a token configured they answer
//! 403 saying how to enable them; a missing or wrong token is 401. Commands go to the brain
//! over a channel and wait for its answer: the brain owns the state.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;
use tokio::sync::oneshot;

use super::{authorize, error, ApiError, ApiState};
use crate::heal::{Command, CommandError};

/// How long a request waits for the brain (a probe run is bounded by its own timeout on top).
const BRAIN_WAIT: Duration = Duration::from_secs(10);

/// The admin gate: 403 without a configured token, 401 without the right one.
pub(super) fn admin_gate(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin actions are disabled: set MEDIC_API_TOKEN (or MEDIC_API_TOKEN_FILE) on medic \
             and send the header Authorization: Bearer <token>",
        ));
    };
    authorize(headers, token)
}

fn command_error(e: CommandError) -> ApiError {
    match e {
        CommandError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
        CommandError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

/// Sends a command and waits for the answer, at most `wait`.
async fn ask<T>(
    state: &ApiState,
    wait: Duration,
    make: impl FnOnce(oneshot::Sender<Result<T, CommandError>>) -> Command,
) -> Result<T, ApiError> {
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "medic's supervisor is not answering; try again shortly",
        )
    };
    let Some(commands) = &state.commands else {
        return Err(unavailable());
    };
    let (reply, answer) = oneshot::channel();
    commands
        .send(make(reply))
        .await
        .map_err(|_| unavailable())?;
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(command_error(e)),
        _ => Err(unavailable()),
    }
}

/// `POST /api/v1/probes/<name>/run`: runs the probe now and answers its result (200 whether it
/// passed or not; `ok` says which).
pub async fn run_probe(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(denied) = admin_gate(&state, &headers) {
        return denied.into_response();
    }
    // A probe's own timeout bounds the run; the default is 30s, the longest allowed is long.
    match ask(&state, Duration::from_secs(15 * 60), |reply| {
        Command::RunProbe { name, reply }
    })
    .await
    {
        Ok(result) => Json(result).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/components/<name>/silence?duration=1h` (or a JSON body
/// `{"duration": "1h"}`): silences the component for that long; `0` lifts the silence.
pub async fn silence(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(component): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(denied) = admin_gate(&state, &headers) {
        return denied.into_response();
    }
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => v.get("duration").map(|d| match d {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body is not JSON ({e}); send {{\"duration\": \"1h\"}} or ?duration=1h"
                    ),
                )
            }
        }
    };
    let Some(text) = query.get("duration").cloned().or(from_body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "say for how long: ?duration=1h or a JSON body {\"duration\": \"1h\"}; 0 lifts the silence",
        );
    };
    let duration = match crate::config::parse_duration("duration", text.trim()) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let until = if duration.is_zero() {
        None
    } else {
        match chrono::Duration::from_std(duration)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d))
        {
            Some(t) => Some(t),
            None => return error(StatusCode::BAD_REQUEST, "duration is too long"),
        }
    };
    let name = component.clone();
    match ask(&state, BRAIN_WAIT, |reply| Command::Silence {
        component,
        until,
        reply,
    })
    .await
    {
        Ok(until) => Json(json!({"component": name, "silenced_until": until})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/report/send`: sends the daily report now, through the notifiers' hook.
pub async fn send_report(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(denied) = admin_gate(&state, &headers) {
        return denied.into_response();
    }
    let Some(report) = state.report.clone() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "sending the report from the API is not available in this build yet",
        );
    };
    match report.send_now().await {
        Ok(details) => Json(json!({"sent": true, "details": details})).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, super::mask_uris(&e)),
    }
}
