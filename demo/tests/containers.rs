//! The demo stack as users run it: the images from `scripts/build-images.sh`, as containers
//! (`--network host`, so they reach the test RabbitMQ and MongoDB wire server on loopback),
//! driven over HTTP and `docker exec`, and watched with `docker inspect`.
//!
//! Every container is labelled `medic.test=true` and removed when its test ends, also when it
//! fails (its logs are printed then).

mod common;

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use common::{free_port, queue_counts, unique, wait_for, AppClient, Scratch};

const APP_IMAGE: &str = "medic-demo/app:latest";
const WORKER_IMAGE: &str = "medic-demo/worker:latest";
const PROCESSING_LIMIT: Duration = Duration::from_secs(30);
const START_LIMIT: Duration = Duration::from_secs(30);

/// Builds the images once per test run; every test waits for it.
fn build_images() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-images.sh");
        let output = Command::new("bash")
            .args([script, "demo"])
            .output()
            .map_err(|error| format!("cannot run {script}: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{script} failed ({}):\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

/// A container of this test's; force-removed on drop.
struct Container {
    /// Unique name, also used to find it.
    name: String,
}

impl Container {
    /// `docker run -d` of `image` on the host network with `env`, labelled for cleanup, with a
    /// one-second healthcheck interval so health changes show within the test.
    fn run(role: &str, image: &str, env: &[(&str, String)]) -> Self {
        let container = Self {
            name: unique(&format!("medic-demo-test-{role}")),
        };
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &container.name,
            "--label",
            "medic.test=true",
            "--network",
            "host",
            "--health-interval",
            "1s",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        for (key, value) in env {
            args.push("-e".to_owned());
            args.push(format!("{key}={value}"));
        }
        args.push(image.to_owned());
        let output = Command::new("docker")
            .args(&args)
            .output()
            .expect("docker runs");
        assert!(
            output.status.success(),
            "docker run {image} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        container
    }

    /// `docker inspect --format TEMPLATE`, trimmed.
    fn inspect(&self, template: &str) -> String {
        let output = docker(&["inspect", "--format", template, &self.name]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `docker exec` of `args`: exit status success, stdout, stderr.
    fn exec(&self, args: &[&str]) -> (bool, String, String) {
        let mut full = vec!["exec", self.name.as_str()];
        full.extend_from_slice(args);
        let output = docker(&full);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn logs(&self) -> String {
        let output = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- logs of {} -----\n{}", self.name, self.logs());
        }
        let _ = docker(&["rm", "--force", "--volumes", &self.name]);
    }
}

/// The app and the worker as containers over one scratch queue and database.
struct Stack {
    /// Talks to the app.
    app: AppClient,
    /// Talks to the worker's admin port.
    admin: AppClient,
    /// The app's container. Fields drop in order: containers before their queue and database.
    app_container: Container,
    /// The worker's container.
    worker_container: Container,
    /// The queue and database of this test; removed last.
    scratch: Scratch,
}

async fn start_stack(test: &str) -> Stack {
    tokio::task::spawn_blocking(build_images).await.unwrap();
    let scratch = Scratch::new(test);
    let (app_port, admin_port) = (free_port(), free_port());
    let backends = [
        ("MONGODB_URL", common::mongodb_url()),
        ("MONGODB_DB", scratch.database.clone()),
        ("RABBITMQ_URL", common::rabbitmq_url()),
        ("UPLOAD_QUEUE", scratch.queue.clone()),
    ];
    let mut worker_env = backends.to_vec();
    worker_env.push(("WORKER_ADMIN_PORT", admin_port.to_string()));
    let worker_container = Container::run("worker", WORKER_IMAGE, &worker_env);
    let mut app_env = backends.to_vec();
    app_env.push(("APP_PORT", app_port.to_string()));
    let app_container = Container::run("app", APP_IMAGE, &app_env);

    let stack = Stack {
        app: AppClient::new(app_port),
        admin: AppClient::new(admin_port),
        app_container,
        worker_container,
        scratch,
    };
    stack.app.wait_healthy(START_LIMIT).await;
    wait_for("the worker to consume", START_LIMIT, || async {
        let (status, health) = stack.admin.get("/health").await.ok()?;
        (status == 200 && health["consuming"] == true).then_some(())
    })
    .await;
    stack
}

impl Stack {
    async fn counts(&self) -> (u32, u32) {
        queue_counts(&self.scratch.queue)
            .await
            .expect("queue counts")
    }

    async fn wait_worker_health(&self, status: &str) {
        wait_for(
            &format!("docker to report the worker {status}"),
            START_LIMIT,
            || async {
                (self.worker_container.inspect("{{.State.Health.Status}}") == status).then_some(())
            },
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_goes_through_the_containers_end_to_end() {
    let stack = start_stack("e2e").await;
    let token = unique("token");

    let id = stack
        .app
        .upload_ok(
            "report.txt",
            &format!("quarterly report {token}\nsecond line\n"),
        )
        .await;
    let document = stack.app.wait_processed(&id, PROCESSING_LIMIT).await;
    assert_eq!(document["status"], "done", "{document}");
    assert_eq!(document["filename"], "report.txt");
    assert_eq!(
        document["text"],
        format!("quarterly report {token}\nsecond line\n")
    );

    let (status, body) = stack
        .app
        .delete(&format!("/api/documents/{id}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = stack
        .app
        .get(&format!("/api/documents/{id}"))
        .await
        .unwrap();
    assert_eq!(status, 404, "the deleted document is gone");

    // The images' own healthchecks (the binaries asking themselves, no shell in scratch).
    for container in [&stack.app_container, &stack.worker_container] {
        wait_for(
            &format!("{} to be healthy", container.name),
            START_LIMIT,
            || async { (container.inspect("{{.State.Health.Status}}") == "healthy").then_some(()) },
        )
        .await;
        assert_eq!(
            container.inspect(r#"{{index .Config.Labels "medic.test"}}"#),
            "true",
            "{} is labelled for cleanup",
            container.name
        );
    }
    // Passwords are masked in the logs.
    let logs = stack.worker_container.logs() + &stack.app_container.logs();
    assert!(logs.contains("guest:***@"), "{logs}");
    assert!(!logs.contains("guest:guest"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_consuming_keeps_running_while_uploads_pile_up() {
    let stack = start_stack("stop").await;
    assert_eq!(
        stack.counts().await,
        (0, 1),
        "one consumer, nothing waiting"
    );

    // Flipped the way a drill would: docker exec into the shell-less image.
    let (ok, stdout, stderr) =
        stack
            .worker_container
            .exec(&["demo-worker", "fault", "stop-consuming"]);
    assert!(ok, "docker exec demo-worker fault: {stdout} {stderr}");
    assert!(stdout.contains("stop-consuming"), "{stdout}");
    wait_for("the consumer to go", START_LIMIT, || async {
        (stack.counts().await.1 == 0).then_some(())
    })
    .await;

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            stack
                .app
                .upload_ok(&format!("pile-{n}.txt"), "waiting")
                .await,
        );
    }
    let depth = wait_for("the queue to hold the three jobs", START_LIMIT, || async {
        let (ready, consumers) = stack.counts().await;
        (ready >= 3).then_some((ready, consumers))
    })
    .await;
    assert_eq!(depth, (3, 0), "three jobs ready, no consumer");
    for id in &ids {
        assert_eq!(stack.app.document(id).await["status"], "queued");
    }

    // Docker sees nothing wrong: running, and its healthcheck still passes.
    assert_eq!(stack.worker_container.inspect("{{.State.Running}}"), "true");
    stack.wait_worker_health("healthy").await;
    let (_, health) = stack.admin.get("/health").await.unwrap();
    assert_eq!(health["fault"], "stop-consuming", "{health}");
    assert_eq!(health["consuming"], false, "{health}");
    assert_eq!(health["rabbitmq"], "connected", "{health}");

    // Switched back (over the admin port this time), the backlog drains.
    let (status, body) = stack.admin.post("/fault/none").await.unwrap();
    assert_eq!(status, 200, "{body}");
    for id in &ids {
        let document = stack.app.wait_processed(id, PROCESSING_LIMIT).await;
        assert_eq!(document["status"], "done", "{document}");
    }
    assert_eq!(stack.counts().await, (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_holds_its_job_and_a_crashed_one_exits_non_zero() {
    let stack = start_stack("hang").await;

    let (status, body) = stack.admin.post("/fault/hang").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let held = stack.app.upload_ok("held.txt", "held").await;
    wait_for("the worker to hang on the job", START_LIMIT, || async {
        let (_, health) = stack.admin.get("/health").await.ok()?;
        (health["hanging"] == true).then_some(())
    })
    .await;
    let waiting = stack.app.upload_ok("behind.txt", "behind").await;
    wait_for(
        "the second job to wait in the queue",
        START_LIMIT,
        || async { (stack.counts().await == (1, 1)).then_some(()) },
    )
    .await;
    assert_eq!(stack.app.document(&held).await["status"], "queued");
    assert_eq!(stack.app.document(&waiting).await["status"], "queued");
    assert_eq!(stack.worker_container.inspect("{{.State.Running}}"), "true");

    let (status, body) = stack.admin.post("/fault/none").await.unwrap();
    assert_eq!(status, 200, "{body}");
    for id in [&held, &waiting] {
        assert_eq!(
            stack.app.wait_processed(id, PROCESSING_LIMIT).await["status"],
            "done"
        );
    }

    let (ok, stdout, stderr) = stack
        .worker_container
        .exec(&["demo-worker", "fault", "crash"]);
    assert!(ok, "docker exec demo-worker fault crash: {stdout} {stderr}");
    wait_for("the worker to exit", START_LIMIT, || async {
        (stack.worker_container.inspect("{{.State.Running}}") == "false").then_some(())
    })
    .await;
    assert_eq!(
        stack.worker_container.inspect("{{.State.ExitCode}}"),
        demo::fault::CRASH_EXIT_CODE.to_string()
    );
    // The app does not depend on the worker being up.
    assert_eq!(stack.app.get("/health").await.unwrap().0, 200);
}
