//! The demo's programs run in-process against the real RabbitMQ and MongoDB wire server: the
//! whole upload pipeline, one worker step at a time, and reconnection after RabbitMQ was away
//! (through a TCP relay the test cuts and restores, so the shared broker is never touched).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{queue_counts, wait_for, AppClient, Scratch};
use demo::app::Application;
use demo::config::{AppSettings, Backends, WorkerSettings};
use demo::fault::Fault;
use demo::store::Store;
use demo::worker::{process_job, JobOutcome, Worker, WorkerState};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, DropGuard};

const PROCESSING_LIMIT: Duration = Duration::from_secs(20);

/// An app and a worker running in this process; both stop when this is dropped.
struct Stack {
    /// Talks to the app.
    app: AppClient,
    /// The worker's switch and status.
    worker: Arc<WorkerState>,
    /// Cancels both on drop, even when the test panics.
    _stop: DropGuard,
}

async fn spawn_stack(backends: Backends) -> Stack {
    spawn_split_stack(backends.clone(), backends).await
}

/// Like [`spawn_stack`], with the worker reaching the services at other addresses.
async fn spawn_split_stack(backends: Backends, worker_backends: Backends) -> Stack {
    let stop = CancellationToken::new();
    let app = Application::build(AppSettings {
        backends: backends.clone(),
        port: 0,
        max_upload_bytes: 1024 * 1024,
    })
    .await
    .expect("app builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped(stop.clone()));

    let worker_state = Arc::new(WorkerState::new(Fault::None));
    let store = Store::connect(&worker_backends, "demo-test-worker")
        .await
        .expect("worker store");
    let worker = Worker::new(
        WorkerSettings {
            backends: worker_backends,
            admin_port: 0,
            initial_fault: Fault::None,
        },
        store,
        worker_state.clone(),
    );
    tokio::spawn(worker.run(stop.clone()));

    let app = AppClient::new(port);
    app.wait_healthy(Duration::from_secs(10)).await;
    Stack {
        app,
        worker: worker_state,
        _stop: stop.drop_guard(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_is_processed_read_back_and_deleted() {
    let scratch = Scratch::new("pipeline");
    let stack = spawn_stack(scratch.backends()).await;
    let app = &stack.app;

    let (status, ready) = app.get("/health/ready").await.unwrap();
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["mongodb"], "ok");
    assert_eq!(ready["rabbitmq"], "ok");

    let token = common::unique("token");
    let id = app
        .upload_ok(
            "note.txt",
            &format!("héllo from the pipeline test {token}\n"),
        )
        .await;
    let document = app.wait_processed(&id, PROCESSING_LIMIT).await;
    assert_eq!(document["status"], "done", "{document}");
    assert_eq!(document["id"], id.as_str());
    assert_eq!(document["filename"], "note.txt");
    assert!(
        document["text"].as_str().unwrap().contains(&token),
        "{document}"
    );
    assert!(document.get("error").is_none(), "{document}");
    assert_eq!(stack.worker.status().processed, 1);

    // Not text: processed all the same, as `failed` with the reason.
    let (status, body) = app
        .upload("image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let binary_id = body["id"].as_str().unwrap().to_owned();
    let failed = app.wait_processed(&binary_id, PROCESSING_LIMIT).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("not plain text"),
        "{failed}"
    );
    assert!(failed.get("text").is_none(), "{failed}");

    for id in [&id, &binary_id] {
        let (status, body) = app.delete(&format!("/api/documents/{id}")).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let (status, _) = app.get(&format!("/api/documents/{id}")).await.unwrap();
        assert_eq!(status, 404, "deleted document {id} still readable");
    }
    let (status, _) = app.delete(&format!("/api/documents/{id}")).await.unwrap();
    assert_eq!(status, 404, "deleting twice");
    let (status, _) = app.get("/api/documents/not-an-id").await.unwrap();
    assert_eq!(status, 404);

    let (messages, consumers) = queue_counts(&scratch.queue).await.unwrap();
    assert_eq!((messages, consumers), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_clearly() {
    let scratch = Scratch::new("refusals");
    let stack = spawn_stack(scratch.backends()).await;
    let http = reqwest::Client::new();

    // A form without a `file` field.
    let form = reqwest::multipart::Form::new().text("name", "value");
    let response = http
        .post(format!("{}/api/upload", stack.app.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("`file`"), "{body}");

    // Over MAX_UPLOAD_BYTES (1 MiB in this stack).
    let (status, body) = stack
        .app
        .upload("big.txt", vec![b'a'; 2 * 1024 * 1024])
        .await
        .unwrap();
    assert_eq!(status, 413, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_step_at_a_time() {
    let scratch = Scratch::new("steps");
    let store = Store::connect(&scratch.backends(), "demo-test")
        .await
        .unwrap();

    let id = store
        .insert_queued("a.txt", Some("text/plain"), b"step by step".to_vec())
        .await
        .unwrap();
    let job = format!(r#"{{"id":"{}"}}"#, id.to_hex());
    assert_eq!(
        process_job(&store, job.as_bytes()).await.unwrap(),
        JobOutcome::Done
    );
    let summary = store.summary(id).await.unwrap().unwrap();
    assert_eq!(summary.text.as_deref(), Some("step by step"));
    assert_eq!(summary.status, demo::store::Status::Done);
    assert!(summary.updated_at.is_some(), "updated_at reads back");

    // Running a job twice (a redelivery) is harmless.
    assert_eq!(
        process_job(&store, job.as_bytes()).await.unwrap(),
        JobOutcome::Done
    );

    assert!(store.delete(id).await.unwrap());
    assert_eq!(
        process_job(&store, job.as_bytes()).await.unwrap(),
        JobOutcome::Missing
    );
    assert!(matches!(
        process_job(&store, b"not json").await.unwrap(),
        JobOutcome::Invalid(_)
    ));
    assert!(matches!(
        process_job(&store, br#"{"id":"nope"}"#).await.unwrap(),
        JobOutcome::Invalid(_)
    ));
}

/// A TCP relay to a service that the test can take down (closing every relayed connection and
/// refusing new ones) and bring back on the same port.
struct Relay {
    /// Where the programs under test connect.
    port: u16,
    /// The real service.
    upstream: SocketAddr,
    /// The accept loop and every relayed connection, while up.
    tasks: JoinSet<()>,
}

impl Relay {
    /// A relay in front of the service of `url`, on a free port, down until [`Relay::up`].
    async fn new(url: &str, default_port: u16) -> Self {
        let (_, authority, _) = split_uri(url);
        let host_port = &authority[authority.rfind('@').map(|at| at + 1).unwrap_or(0)..];
        let host_port = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:{default_port}")
        };
        let upstream = tokio::net::lookup_host(host_port)
            .await
            .unwrap()
            .next()
            .unwrap();
        Self {
            port: common::free_port(),
            upstream,
            tasks: JoinSet::new(),
        }
    }

    fn up(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .expect("relay port still free");
        let listener: TcpListener = socket.listen(64).unwrap();
        let upstream = self.upstream;
        self.tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
    }

    /// Closes the listener and every relayed connection (aborting the accept task drops its
    /// JoinSet, which aborts the connections).
    async fn down(&mut self) {
        self.tasks.abort_all();
        // Wait until the listener is really closed, so `up` can bind the port again.
        while self.tasks.join_next().await.is_some() {}
    }

    /// `url` with its host and port replaced by the relay's (credentials and path kept).
    fn url(&self, url: &str) -> String {
        let (scheme, authority, rest) = split_uri(url);
        let credentials = authority
            .rfind('@')
            .map(|at| &authority[..=at])
            .unwrap_or("");
        format!("{scheme}{credentials}127.0.0.1:{}{rest}", self.port)
    }
}

/// `scheme://`, the authority, and whatever follows it.
fn split_uri(url: &str) -> (&str, &str, &str) {
    let authority_start = url.find("://").unwrap() + 3;
    let after = &url[authority_start..];
    let authority_len = after.find(['/', '?']).unwrap_or(after.len());
    (
        &url[..authority_start],
        &after[..authority_len],
        &after[authority_len..],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_programs_start_without_rabbitmq_and_reconnect_when_it_comes_back() {
    let scratch = Scratch::new("reconnect");
    let mut relay = Relay::new(&common::rabbitmq_url(), 5672).await;
    let stack = spawn_stack(scratch.backends_via(&relay.url(&common::rabbitmq_url()))).await;
    let app = &stack.app;

    // RabbitMQ "down": both stay up; the app says so and refuses uploads without leaving a
    // document behind.
    let (status, ready) = app.get("/health/ready").await.unwrap();
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["rabbitmq"], "unreachable", "{ready}");
    assert_eq!(ready["mongodb"], "ok", "{ready}");
    let (status, body) = app
        .upload("early.txt", b"too early".to_vec())
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        !body.to_string().contains("guest"),
        "no credentials in answers: {body}"
    );
    assert_eq!(stack.worker.status().rabbitmq, "disconnected");
    assert_eq!(
        app.get("/health").await.unwrap().0,
        200,
        "liveness unaffected"
    );

    // RabbitMQ "back": the worker finds it by itself, uploads flow.
    relay.up();
    wait_for("the worker to connect", Duration::from_secs(15), || async {
        stack.worker.status().consuming.then_some(())
    })
    .await;
    let id = app
        .upload_ok("first.txt", "after the broker came back")
        .await;
    assert_eq!(
        app.wait_processed(&id, PROCESSING_LIMIT).await["status"],
        "done"
    );

    // Connections cut while both run: both notice and reconnect.
    relay.down().await;
    wait_for("the worker to notice", Duration::from_secs(15), || async {
        (stack.worker.status().rabbitmq == "disconnected").then_some(())
    })
    .await;
    relay.up();
    wait_for(
        "the worker to reconnect",
        Duration::from_secs(15),
        || async { stack.worker.status().consuming.then_some(()) },
    )
    .await;
    let id = app
        .upload_ok("second.txt", "after the connections were cut")
        .await;
    let document = app.wait_processed(&id, PROCESSING_LIMIT).await;
    assert_eq!(document["status"], "done", "{document}");
    assert_eq!(document["text"], "after the connections were cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_meets_mongodb_down_is_retried_when_it_comes_back() {
    let scratch = Scratch::new("mongo_outage");
    let mut relay = Relay::new(&common::mongodb_url(), 27017).await;
    relay.up();
    let mut worker_backends = scratch.backends();
    worker_backends.mongodb_url = relay.url(&common::mongodb_url());
    let stack = spawn_split_stack(scratch.backends(), worker_backends).await;
    let app = &stack.app;

    let id = app.upload_ok("before.txt", "before the outage").await;
    assert_eq!(
        app.wait_processed(&id, PROCESSING_LIMIT).await["status"],
        "done"
    );

    // The worker loses MongoDB: the job cannot be processed, stays queued, and is not lost.
    relay.down().await;
    let id = app.upload_ok("during.txt", "during the outage").await;
    wait_for(
        "the worker to take the job",
        Duration::from_secs(15),
        || async { (queue_counts(&scratch.queue).await.ok()? == (0, 1)).then_some(()) },
    )
    .await;
    assert_eq!(app.document(&id).await["status"], "queued");
    assert!(stack.worker.status().consuming);

    // MongoDB back: the requeued job goes through.
    relay.up();
    let document = app.wait_processed(&id, Duration::from_secs(60)).await;
    assert_eq!(document["status"], "done", "{document}");
    assert_eq!(document["text"], "during the outage");
}
