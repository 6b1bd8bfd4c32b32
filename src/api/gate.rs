//! The admin routes' gate, run before anything reads the request body.
//!
//! axum extracts a handler's arguments (a `Bytes` body among them) before the handler runs, so
//! a token check inside the handler comes after the whole body was read: anyone could make
//! medic read and hold a 100 MB upload. This middleware checks the token on the headers alone,
//! then refuses a declared `Content-Length` over [`ADMIN_BODY_LIMIT`] at once (413), and only
//! then reads the body, capped at that size (413 for a chunked body that grows past it) and
//! within [`BODY_READ_TIMEOUT`] (408). An unread body is never drained: hyper closes the
//! connection after the refusal.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{admin::admin_gate, ApiError, ApiState};

/// The largest body an admin route reads. The only body any takes is `{"duration": "1h"}`.
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// How long an admin request may take to send its (small) body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The middleware on every `POST /api/v1/...` route.
pub async fn admin(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Err(denied) = admin_gate(&state, request.headers()) {
        return denied.into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > ADMIN_BODY_LIMIT as u64) {
        return too_large().into_response();
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, ADMIN_BODY_LIMIT);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_length_limit(&e) => return too_large().into_response(),
        Ok(Err(e)) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
            .into_response()
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
            .into_response()
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than {} KiB, the most an admin route reads",
            ADMIN_BODY_LIMIT / 1024
        ),
    )
}

/// Whether the body failed because it passed the limit (`http_body_util::LengthLimitError`,
/// somewhere in the error's chain).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
