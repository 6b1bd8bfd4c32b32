//! Fixtures for the probe tests (tests/probes.rs): local HTTP servers in the shapes the probes talk to (no model
//! API is reachable here, and the demo stack's own test is elsewhere), a MongoDB wire server
//! the test can stop and start, and a busybox container removed on drop.
//!
//! The HTTP fixtures are fakes on purpose (TESTING.md "AI model APIs"): they answer in the
//! OpenAI chat-completions and Gemini generateContent shapes, and mimic the demo app's upload
//! API, so every failure path can be produced on demand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{free_port, test_env, unique, wait_for};

/// Serves `router` on 127.0.0.1 at a free port until the test's runtime ends.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    address
}

// ---------------------------------------------------------------------------------------------
// Model API fixture

/// How the model fixture answers.
#[derive(Debug, Clone)]
pub enum ModelMode {
    /// A well-formed reply with this text.
    Reply(String),
    /// An error status with an error body that quotes the key it got, as real providers do.
    Status(u16),
    /// A correct reply, but only after this long.
    Slow(Duration),
    /// 200 and this many bytes of garbage, streamed without a length.
    Garbage(usize),
}

/// One request the model fixture received.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// Path and query.
    pub uri: String,
    /// Header values by lower-case name.
    pub headers: HashMap<String, String>,
    /// The JSON body.
    pub body: Value,
}

/// The model fixture's shared state.
#[derive(Clone)]
pub struct ModelFixture {
    /// What to answer.
    pub mode: Arc<Mutex<ModelMode>>,
    /// What was asked.
    pub requests: Arc<Mutex<Vec<ModelRequest>>>,
}

impl ModelFixture {
    /// Starts a fixture answering `mode`; returns it and its base URL.
    pub async fn start(mode: ModelMode) -> (ModelFixture, String) {
        let fixture = ModelFixture {
            mode: Arc::new(Mutex::new(mode)),
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        let router = Router::new()
            .fallback(any(model_handler))
            .with_state(fixture.clone());
        let address = serve(router).await;
        (fixture, format!("http://{address}"))
    }

    /// Changes what it answers.
    pub fn set(&self, mode: ModelMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The last request it received.
    pub fn last(&self) -> ModelRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

async fn model_handler(
    State(fixture): State<ModelFixture>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let gemini = uri.path().contains(":generateContent");
    let key = headers
        .get("x-goog-api-key")
        .cloned()
        .or_else(|| {
            headers
                .get("authorization")
                .map(|a| a.trim_start_matches("Bearer ").to_string())
        })
        .unwrap_or_default();
    fixture.requests.lock().unwrap().push(ModelRequest {
        uri: uri.to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let mode = fixture.mode.lock().unwrap().clone();
    let reply = |text: &str| {
        if gemini {
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}]})
        } else {
            json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
        }
    };
    match mode {
        ModelMode::Reply(text) => Json(reply(&text)).into_response(),
        ModelMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Json(reply("OK")).into_response()
        }
        ModelMode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            let message = if code == 401 {
                format!("Incorrect API key provided: {key}")
            } else {
                "The server had an error while processing your request".to_string()
            };
            (
                status,
                Json(json!({"error": {"message": message, "code": code}})),
            )
                .into_response()
        }
        ModelMode::Garbage(size) => {
            let chunk = vec![b'x'; 64 * 1024];
            let chunks = size.div_ceil(chunk.len());
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Upload API fixture (the demo app's routes)

/// How the fixture's "worker" treats uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processing {
    /// Done after two polls, with the file's text extracted.
    Works,
    /// Failed after one poll, with an error.
    Fails,
    /// Processing forever (a worker that stopped consuming).
    Stuck,
    /// Done, but the extracted text is wrong.
    WrongText,
}

/// A stored upload.
#[derive(Debug, Clone)]
pub struct Document {
    /// The uploaded file's text.
    pub content: String,
    /// The multipart field it came in.
    pub field: String,
    /// How often its status was asked.
    pub polls: u32,
}

/// The upload fixture's shared state.
#[derive(Clone)]
pub struct UploadFixture {
    /// What processing does.
    pub processing: Arc<Mutex<Processing>>,
    /// Upload POSTs answer 500 when set.
    pub upload_broken: Arc<Mutex<bool>>,
    /// Documents by id.
    pub documents: Arc<Mutex<HashMap<String, Document>>>,
    /// Ids a DELETE was received for.
    pub deleted: Arc<Mutex<Vec<String>>>,
    /// The Authorization header of every request.
    pub auth: Arc<Mutex<Vec<Option<String>>>>,
}

impl UploadFixture {
    /// Starts the fixture; returns it and its base URL.
    pub async fn start(processing: Processing) -> (UploadFixture, String) {
        let fixture = UploadFixture {
            processing: Arc::new(Mutex::new(processing)),
            upload_broken: Arc::new(Mutex::new(false)),
            documents: Arc::new(Mutex::new(HashMap::new())),
            deleted: Arc::new(Mutex::new(Vec::new())),
            auth: Arc::new(Mutex::new(Vec::new())),
        };
        let router = Router::new()
            .route("/api/upload", post(upload))
            .route("/api/documents/{id}", get(document).delete(delete_document))
            .with_state(fixture.clone());
        let address = serve(router).await;
        (fixture, format!("http://{address}"))
    }

    fn record_auth(&self, headers: &HeaderMap) {
        self.auth.lock().unwrap().push(
            headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or("").to_string()),
        );
    }
}

async fn upload(
    State(fixture): State<UploadFixture>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    fixture.record_auth(&headers);
    if *fixture.upload_broken.lock().unwrap() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "store down"})),
        )
            .into_response();
    }
    let Ok(Some(field)) = multipart.next_field().await else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "no file"}))).into_response();
    };
    let name = field.name().unwrap_or("").to_string();
    let content = field.text().await.unwrap_or_default();
    let id = uuid::Uuid::new_v4().simple().to_string()[..24].to_string();
    fixture.documents.lock().unwrap().insert(
        id.clone(),
        Document {
            content,
            field: name,
            polls: 0,
        },
    );
    Json(json!({"id": id, "status": "queued"})).into_response()
}

async fn document(
    State(fixture): State<UploadFixture>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    fixture.record_auth(&headers);
    let processing = *fixture.processing.lock().unwrap();
    let mut documents = fixture.documents.lock().unwrap();
    let Some(doc) = documents.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response();
    };
    doc.polls += 1;
    let body = match (processing, doc.polls) {
        (_, 1) => json!({"id": id, "status": "processing"}),
        (Processing::Works, _) => json!({"id": id, "status": "done", "text": doc.content}),
        (Processing::WrongText, _) => json!({"id": id, "status": "done", "text": "lorem ipsum"}),
        (Processing::Fails, _) => {
            json!({"id": id, "status": "failed", "error": "text extraction crashed"})
        }
        (Processing::Stuck, _) => json!({"id": id, "status": "processing"}),
    };
    Json(body).into_response()
}

async fn delete_document(
    State(fixture): State<UploadFixture>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    fixture.record_auth(&headers);
    fixture.deleted.lock().unwrap().push(id.clone());
    match fixture.documents.lock().unwrap().remove(&id) {
        Some(_) => Json(json!({"deleted": id})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// A plain HTTP fixture for the http probe

/// Routes: `/health` (needs `X-Token: t0k3n-value`), `/slow` (1.5 s), `/down` (503).
pub async fn start_http_fixture() -> String {
    async fn health(headers: HeaderMap) -> Response {
        if headers.get("x-token").and_then(|v| v.to_str().ok()) != Some("t0k3n-value") {
            return (StatusCode::UNAUTHORIZED, "missing token").into_response();
        }
        Json(json!({"status": "ok", "checks": {"db": true, "version": 3}})).into_response()
    }
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        "slow ok"
    }
    async fn down() -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response()
    }
    async fn echo(body: String) -> String {
        format!("echo: {body}")
    }
    let router = Router::new()
        .route("/health", get(health))
        .route("/slow", get(slow))
        .route("/down", get(down))
        .route("/echo", post(echo));
    format!("http://{}", serve(router).await)
}

// ---------------------------------------------------------------------------------------------
// A MongoDB wire server of the test's own

/// An nx-27017 process this test started, on its own port; killed on drop.
pub struct WireServer {
    /// Its port.
    pub port: u16,
    /// The running process, if started.
    child: Option<Child>,
    /// Holds its pid and log files.
    dir: tempfile::TempDir,
}

impl WireServer {
    /// Starts one on a free port and waits until it accepts connections.
    pub fn start() -> WireServer {
        let mut server = WireServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    fn binary() -> std::path::PathBuf {
        let python = test_env("MEDIC_TEST_PYTHON");
        std::path::Path::new(&python).with_file_name("nx-27017")
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let dir = self.dir.path();
        let child = Command::new(Self::binary())
            .args(["--db", "memory", "--host", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("--pid-file")
            .arg(dir.join("nx.pid"))
            .arg("--log-file")
            .arg(dir.join("nx.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nx-27017 starts (scripts/testenv.sh up installs it)");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            &format!("nx-27017 to listen on {port}"),
            Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
    }

    /// Kills it and waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_for(
            &format!("port {port} to close"),
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        );
    }

    /// Its URI.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A busybox container

/// A running busybox container labelled `medic.test=true`, removed on drop.
pub struct Container {
    /// Its name.
    pub name: String,
}

impl Container {
    /// Starts `sleep` in a busybox container with these extra labels.
    pub fn start(labels: &[(&str, &str)]) -> Container {
        let name = unique("medic-probe-test");
        let mut args = vec![
            "run".to_string(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            "--label".into(),
            "medic.test=true".into(),
            // exec needs no network, and this keeps the test independent of the bridge.
            "--network".into(),
            "none".into(),
        ];
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.push(test_env("MEDIC_TEST_BUSYBOX_IMAGE"));
        args.extend(["sleep".into(), "300".into()]);
        let out = Command::new("docker")
            .args(&args)
            .output()
            .expect("docker CLI");
        // Made before the check, so that a half-created container is removed too.
        let container = Container { name };
        assert!(
            out.status.success(),
            "docker run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        container
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}
