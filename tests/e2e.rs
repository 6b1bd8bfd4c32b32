//! The whole chain as users run it: medic's image and the demo images, brought up with
//! docker-compose from the shipped compose.yaml (plus docker/compose.test.yaml, which points the
//! stack at the test environment's MongoDB wire server, RabbitMQ and SMTP server on the host,
//! since no image can be pulled here). The worker is switched to stop consuming; medic, in its
//! container, fails the upload probe three times, restarts the worker, sees it recover, and
//! tells people; then `docker-compose down`, which medic must not fight.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use support::mail::{mails_to, plain_dir, plain_port};
use support::{compose_container, docker_ok, free_port, var, wait_for, TestRun};

/// The shipped compose files, run under a test project with the E2E_* variables set.
struct Stack {
    project: String,
    env: Vec<(String, String)>,
    /// Holds the compose files the test runs.
    dir: std::path::PathBuf,
}

impl Stack {
    /// Copies compose.yaml and docker/compose.test.yaml to `dir`. Host networking refuses
    /// published ports, so the copy of compose.yaml drops its `ports:`; nothing else changes.
    fn prepare(dir: &std::path::Path) {
        let root = env!("CARGO_MANIFEST_DIR");
        let text = std::fs::read_to_string(format!("{root}/compose.yaml")).unwrap();
        let mut compose: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
        for (_, service) in compose["services"].as_mapping_mut().unwrap().iter_mut() {
            service.as_mapping_mut().unwrap().remove("ports");
        }
        std::fs::write(
            dir.join("compose.yaml"),
            yaml_serde::to_string(&compose).unwrap(),
        )
        .unwrap();
        std::fs::copy(
            format!("{root}/docker/compose.test.yaml"),
            dir.join("compose.test.yaml"),
        )
        .unwrap();
    }

    fn compose(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("docker-compose")
            .current_dir(&self.dir)
            .args(["-f", "compose.yaml", "-f", "compose.test.yaml", "-p"])
            .arg(&self.project)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("docker-compose is installed by scripts/testenv.sh")
    }

    fn ok(&self, args: &[&str]) {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn container(&self, service: &str) -> String {
        compose_container(&self.project, service)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "-t", "2"]);
    }
}

#[test]
fn medic_in_compose_heals_a_worker_that_stopped_consuming() {
    support::build_images("demo");
    support::build_images("medic");
    let run = TestRun::new("e2e");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("medic.yaml");
    // The shipped docker/medic.yaml names hosts of the full stack; here the labels' probes do.
    std::fs::write(&config, "probes: {}\n").unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let medic_port = free_port();
    let admin = format!("{}@example.com", run.id);
    let socket_gid = std::fs::metadata("/var/run/docker.sock").unwrap().gid();
    Stack::prepare(dir.path());
    let stack = Stack {
        dir: dir.path().to_path_buf(),
        project: run.id.clone(),
        env: vec![
            ("E2E_PROJECT".into(), run.id.clone()),
            ("E2E_APP_PORT".into(), free_port().to_string()),
            ("E2E_WORKER_PORT".into(), free_port().to_string()),
            ("E2E_MEDIC_PORT".into(), medic_port.to_string()),
            ("E2E_MEDIC_CONFIG".into(), config.display().to_string()),
            (
                "E2E_MONGODB_URL".into(),
                var("MEDIC_TEST_MONGODB_URL", "mongodb://127.0.0.1:27017"),
            ),
            (
                "E2E_RABBITMQ_URL".into(),
                var(
                    "MEDIC_TEST_RABBITMQ_URL",
                    "amqp://guest:guest@127.0.0.1:5672/%2f",
                ),
            ),
            ("E2E_ADMIN_EMAIL".into(), admin.clone()),
            ("E2E_SMTP_PORT".into(), plain_port()),
            ("DOCKER_GID".into(), socket_gid.to_string()),
        ],
    };
    stack.ok(&["up", "-d", "--no-deps", "app", "worker", "medic"]);
    let (app, worker, medic) = (
        stack.container("app"),
        stack.container("worker"),
        stack.container("medic"),
    );
    let logs = || {
        let out = support::docker_at(None, &["logs", &medic]);
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    };
    for (name, id) in [("app", &app), ("worker", &worker), ("medic", &medic)] {
        wait_for(&format!("{name} healthy"), Duration::from_secs(90), || {
            run.health(id) == "healthy"
        });
    }
    wait_for(
        "the upload probe scheduled",
        Duration::from_secs(30),
        || logs().contains("probe scheduled") && logs().contains("\"probe\":\"upload\""),
    );
    // Two runs of the probe (every 2 s), as `/health/detailed` shows them, and no failure.
    support::wait_checked(
        &format!("127.0.0.1:{medic_port}"),
        None,
        "probe:upload",
        2,
        Duration::from_secs(60),
    );
    assert!(
        !logs().contains("probe failed"),
        "the upload probe fails on a healthy stack:\n{}",
        logs()
    );

    docker_ok(
        None,
        &["exec", &worker, "demo-worker", "fault", "stop-consuming"],
    );
    wait_for("medic restarts the worker", Duration::from_secs(60), || {
        run.restarts(&worker) >= 1
    });
    assert!(logs().contains("threshold reached"), "{}", logs());
    assert_eq!(
        run.restarts(&app),
        0,
        "the app is not at fault:\n{}",
        logs()
    );
    assert_eq!(run.restarts(&medic), 0);
    wait_for("the probe passes again", Duration::from_secs(60), || {
        logs().contains("probe passes again")
    });

    // People were told: CRITICAL with the restart under actions taken, then RECOVERED.
    let smtp_dir = plain_dir();
    let told = || {
        let subjects: Vec<String> = mails_to(&smtp_dir, &admin)
            .into_iter()
            .map(|m| m.subject)
            .collect();
        subjects
            .iter()
            .any(|s| s.starts_with("🚨 CRITICAL: worker"))
            && subjects
                .iter()
                .any(|s| s.starts_with("✅ RECOVERED: worker"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !told() {
        assert!(
            std::time::Instant::now() < deadline,
            "no CRITICAL and RECOVERED emails to {admin}; got {:?}\n{}",
            mails_to(&smtp_dir, &admin),
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mails = mails_to(&smtp_dir, &admin);
    let critical = mails
        .iter()
        .find(|m| m.subject.starts_with("🚨 CRITICAL"))
        .unwrap();
    assert!(
        critical.subject.ends_with(&format!("- {}", run.id)),
        "{}",
        critical.subject
    );
    assert!(
        critical.text.contains("restarted"),
        "actions taken name the restart:\n{}",
        critical.text
    );
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.subject.starts_with("🚨 CRITICAL"))
            .count(),
        1,
        "one CRITICAL email"
    );

    // Dashboards see the restart.
    let (status, body) = support::http_get(&format!("127.0.0.1:{medic_port}"), "/health/detailed");
    assert_eq!(status, 200, "{body}");
    let detailed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let restarts = &detailed["components"]["worker"]["restarts"];
    assert!(restarts["count_24h"].as_u64().unwrap_or(0) >= 1, "{body}");

    // docker-compose down: every container goes, medic included, and none comes back.
    stack.ok(&["down", "-t", "2"]);
    let left = docker_ok(
        None,
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", run.id),
        ],
    );
    assert!(left.is_empty(), "containers left after down: {left}");
}
