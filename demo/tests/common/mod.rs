//! Helpers shared by the demo's integration tests, which talk to the real RabbitMQ and MongoDB
//! wire server of `scripts/testenv.sh up` (`MEDIC_TEST_RABBITMQ_URL`, `MEDIC_TEST_MONGODB_URL`;
//! loopback defaults).
//!
//! Each test uses its own queue and database ([`Scratch`]), removed when the test ends, also
//! when it fails, so tests run in parallel and leave nothing behind.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use demo::config::Backends;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use serde_json::Value;

/// AMQP URI of the test RabbitMQ.
pub fn rabbitmq_url() -> String {
    std::env::var("MEDIC_TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// URI of the test MongoDB (wire server).
pub fn mongodb_url() -> String {
    std::env::var("MEDIC_TEST_MONGODB_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_owned())
}

/// A name no other test (or earlier run) uses: `prefix_<pid>_<counter>_<time>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A queue and a database of one test's own; deleted on drop.
pub struct Scratch {
    /// The test's job queue.
    pub queue: String,
    /// The test's MongoDB database.
    pub database: String,
}

impl Scratch {
    /// Fresh names; nothing is created until the programs under test declare and write.
    pub fn new(test: &str) -> Self {
        Self {
            queue: unique(&format!("demo_test_{test}")),
            database: unique("demo_test"),
        }
    }

    /// Backends pointing at the test services with this scratch queue and database.
    pub fn backends(&self) -> Backends {
        self.backends_via(&rabbitmq_url())
    }

    /// Same as [`Scratch::backends`] but reaching RabbitMQ at `rabbitmq_url`.
    pub fn backends_via(&self, rabbitmq_url: &str) -> Backends {
        Backends {
            mongodb_url: mongodb_url(),
            mongodb_db: Some(self.database.clone()),
            rabbitmq_url: rabbitmq_url.to_owned(),
            upload_queue: self.queue.clone(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Drop may run inside a test's runtime, which cannot block: clean up on a thread of
        // its own, with a runtime of its own, bounded in time.
        let queue = self.queue.clone();
        let database = self.database.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let work = async {
                    if let Ok(connection) =
                        demo::queue::connect(&rabbitmq_url(), "demo-test-cleanup").await
                    {
                        if let Ok(channel) = connection.create_channel().await {
                            let _ = channel
                                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                                .await;
                        }
                        let _ = connection.close(200, "cleanup".into()).await;
                    }
                    if let Ok(client) = mongodb::Client::with_uri_str(mongodb_url()).await {
                        let _ = client.database(&database).drop().await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(15), work).await;
            });
        });
        let _ = cleanup.join();
    }
}

/// Ready messages and consumers of `queue`, as RabbitMQ counts them (passive declare).
pub async fn queue_counts(queue: &str) -> anyhow::Result<(u32, u32)> {
    let connection = demo::queue::connect(&rabbitmq_url(), "demo-test-inspect").await?;
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let _ = connection.close(200, "inspected".into()).await;
    let declared = declared?;
    Ok((declared.message_count(), declared.consumer_count()))
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `limit`; panics naming
/// `what` (and the last value seen) if it never does.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Typed calls to a running demo-app.
pub struct AppClient {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Shared connection pool; each call has its own timeout.
    http: reqwest::Client,
}

impl AppClient {
    /// A client for the app listening on 127.0.0.1:`port`.
    pub fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    /// `GET path`: status and JSON body (`Null` if the body is not JSON).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// `DELETE path`: status and JSON body.
    pub async fn delete(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// `POST path` without a body: status and JSON body.
    pub async fn post(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Uploads `content` as multipart field `file`: status and JSON body.
    pub async fn upload(&self, filename: &str, content: Vec<u8>) -> anyhow::Result<(u16, Value)> {
        let part = reqwest::multipart::Part::bytes(content)
            .file_name(filename.to_owned())
            .mime_str("text/plain")?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let response = self
            .http
            .post(format!("{}/api/upload", self.base))
            .multipart(form)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Uploads and returns the new document's id, asserting the upload was accepted.
    pub async fn upload_ok(&self, filename: &str, content: &str) -> String {
        let (status, body) = self
            .upload(filename, content.as_bytes().to_vec())
            .await
            .expect("upload request");
        assert_eq!(status, 200, "upload answered {status}: {body}");
        assert_eq!(body["status"], "queued", "{body}");
        body["id"]
            .as_str()
            .expect("id in the upload answer")
            .to_owned()
    }

    /// The document's JSON; panics unless it exists.
    pub async fn document(&self, id: &str) -> Value {
        let (status, body) = self
            .get(&format!("/api/documents/{id}"))
            .await
            .expect("document request");
        assert_eq!(status, 200, "GET document {id} answered {status}: {body}");
        body
    }

    /// Waits until the document leaves `queued`/`processing`; returns it.
    pub async fn wait_processed(&self, id: &str, limit: Duration) -> Value {
        wait_for(&format!("document {id} to be processed"), limit, || async {
            let document = self.document(id).await;
            match document["status"].as_str() {
                Some("done" | "failed") => Some(document),
                _ => None,
            }
        })
        .await
    }

    /// Waits until the app answers `GET /health` with 200.
    pub async fn wait_healthy(&self, limit: Duration) {
        wait_for("demo-app /health", limit, || async {
            matches!(self.get("/health").await, Ok((200, _))).then_some(())
        })
        .await
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
