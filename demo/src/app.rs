//! `demo-app`: the HTTP API that takes uploads and shows their processing.
//!
//! | route | does |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}` while the process serves HTTP (liveness only, on purpose) |
//! | `GET /health/ready` | pings MongoDB and RabbitMQ: 200, or 503 naming what is down |
//! | `POST /api/upload` | multipart field `file`: stored as `queued`, job published, `{"id": ...}` |
//! | `GET /api/documents/{id}` | `{id, filename, status, text?, error?, ...}`, 404 if unknown |
//! | `DELETE /api/documents/{id}` | deletes it: 200, or 404 if unknown |
//!
//! `/health` does not look at MongoDB or RabbitMQ: an app whose `/health` is green while uploads
//! fail is exactly the failure medic's upload probe catches.

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mongodb::bson::oid::ObjectId;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::AppSettings;
use crate::queue::{Job, Publisher};
use crate::store::{DocumentSummary, Store};

/// Room for the multipart framing around the file itself.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    /// The `documents` collection.
    store: Store,
    /// Publishes upload jobs.
    publisher: Arc<Publisher>,
}

/// The app, bound to its port and ready to serve.
pub struct Application {
    /// Bound before serving so tests can ask for port 0 and read the real one back.
    listener: TcpListener,
    /// The routes.
    router: Router,
    /// Closed at shutdown.
    publisher: Arc<Publisher>,
}

impl Application {
    /// Connects the clients (without waiting for the services) and binds `0.0.0.0:<port>`.
    pub async fn build(settings: AppSettings) -> anyhow::Result<Self> {
        let store = Store::connect(&settings.backends, "demo-app").await?;
        let publisher = Arc::new(Publisher::new(
            &settings.backends.rabbitmq_url,
            &settings.backends.upload_queue,
        ));
        let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], settings.port)))
            .await
            .with_context(|| format!("cannot listen on port {} (APP_PORT)", settings.port))?;
        let router = router(
            AppState {
                store,
                publisher: publisher.clone(),
            },
            settings.max_upload_bytes,
        );
        Ok(Self {
            listener,
            router,
            publisher,
        })
    }

    /// The port the app listens on.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or(0)
    }

    /// Serves until `shutdown` is cancelled, then finishes the requests in flight.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "demo-app listening");
        // Connect early so the logs show at start whether RabbitMQ is reachable; requests
        // reconnect by themselves either way.
        tokio::spawn(warm_up(self.publisher.clone(), shutdown.clone()));
        let stopping = shutdown.clone();
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stopping.cancelled().await })
            .await
            .context("HTTP server failed")?;
        self.publisher.close().await;
        tracing::info!("demo-app stopped");
        Ok(())
    }
}

async fn warm_up(publisher: Arc<Publisher>, shutdown: CancellationToken) {
    let mut backoff = Backoff::default();
    loop {
        match publisher.ensure_connected().await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "RabbitMQ not reachable yet; will retry");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

fn router(state: AppState, max_upload_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/api/upload", post(upload))
        .route(
            "/api/documents/{id}",
            get(get_document).delete(delete_document),
        )
        .layer(DefaultBodyLimit::max(
            max_upload_bytes.saturating_add(MULTIPART_OVERHEAD),
        ))
        .with_state(state)
}

/// An error answer: a status and a message safe to show (never a raw driver error).
#[derive(Debug)]
struct ApiError {
    /// HTTP status.
    status: StatusCode,
    /// `{"error": message}`.
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no document with id {id:?}"))
    }

    /// Logs the cause and answers 503 without it.
    fn unavailable(what: &str, cause: &anyhow::Error) -> Self {
        tracing::warn!(error = %format!("{cause:#}"), "{what} unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} unavailable, try again later"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<AppState>) -> Response {
    let (mongodb, rabbitmq) = tokio::join!(state.store.ping(), state.publisher.ensure_connected());
    let describe = |result: &anyhow::Result<()>| match result {
        Ok(()) => "ok",
        Err(_) => "unreachable",
    };
    for (name, result) in [("MongoDB", &mongodb), ("RabbitMQ", &rabbitmq)] {
        if let Err(error) = result {
            tracing::warn!(error = %format!("{error:#}"), "readiness: {name} unreachable");
        }
    }
    let ok = mongodb.is_ok() && rabbitmq.is_ok();
    let body = Json(json!({
        "status": if ok { "ok" } else { "unavailable" },
        "mongodb": describe(&mongodb),
        "rabbitmq": describe(&rabbitmq),
    }));
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn upload(
    State(state): State<AppState>,
    mut multipart: Multipart,
) -> Result<Json<Value>, ApiError> {
    let multipart_error = |error: axum::extract::multipart::MultipartError| {
        ApiError::new(error.status(), error.body_text())
    };
    let mut file = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().unwrap_or("upload").to_owned();
        let content_type = field.content_type().map(str::to_owned);
        let bytes = field.bytes().await.map_err(multipart_error)?;
        file = Some((filename, content_type, bytes));
        break;
    }
    let Some((filename, content_type, bytes)) = file else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "send the file as multipart/form-data in a field named `file`",
        ));
    };

    let size = bytes.len();
    let id = state
        .store
        .insert_queued(&filename, content_type.as_deref(), bytes.to_vec())
        .await
        .map_err(|error| ApiError::unavailable("database", &error))?;
    let job = Job { id: id.to_hex() };
    if let Err(error) = state.publisher.publish(&job).await {
        // A document no worker will ever see would stay `queued` forever: take it back.
        if let Err(cleanup) = state.store.delete(id).await {
            tracing::warn!(id = %job.id, error = %format!("{cleanup:#}"), "cannot remove the unqueued upload");
        }
        return Err(ApiError::unavailable("queue", &error));
    }
    tracing::info!(id = %job.id, %filename, size, queue = state.publisher.queue(), "upload queued");
    Ok(Json(json!({ "id": job.id, "status": "queued" })))
}

async fn get_document(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let object_id = ObjectId::parse_str(&id).map_err(|_| ApiError::not_found(&id))?;
    let summary = state
        .store
        .summary(object_id)
        .await
        .map_err(|error| ApiError::unavailable("database", &error))?
        .ok_or_else(|| ApiError::not_found(&id))?;
    Ok(Json(document_json(&summary)))
}

async fn delete_document(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let object_id = ObjectId::parse_str(&id).map_err(|_| ApiError::not_found(&id))?;
    let deleted = state
        .store
        .delete(object_id)
        .await
        .map_err(|error| ApiError::unavailable("database", &error))?;
    if !deleted {
        return Err(ApiError::not_found(&id));
    }
    tracing::info!(%id, "document deleted");
    Ok(Json(json!({ "id": id, "deleted": true })))
}

/// The API's view of a document: `text` only once done, `error` only once failed.
fn document_json(summary: &DocumentSummary) -> Value {
    let time = |t: &Option<mongodb::bson::DateTime>| t.and_then(|t| t.try_to_rfc3339_string().ok());
    let mut body = json!({
        "id": summary.id.to_hex(),
        "filename": summary.filename,
        "status": summary.status,
        "size": summary.size,
        "content_type": summary.content_type,
        "created_at": time(&summary.created_at),
        "updated_at": time(&summary.updated_at),
    });
    if let Some(text) = &summary.text {
        body["text"] = json!(text);
    }
    if let Some(error) = &summary.error {
        body["error"] = json!(error);
    }
    body
}
