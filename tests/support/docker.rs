//! Docker helpers for integration tests against the real engine: the `docker` CLI, a
//! [`TestRun`] owning the containers a test starts, and compose projects.
//!
//! Every container a test creates carries `medic.test=true` and a run label unique to the test;
//! [`TestRun`] removes them all when it is dropped, also when the test fails.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait_for;

/// The offline busybox image built by scripts/testenv.sh.
pub fn busybox_image() -> String {
    std::env::var("MEDIC_TEST_BUSYBOX_IMAGE").unwrap_or_else(|_| "medic-test/busybox:latest".into())
}

/// Runs `docker` with these arguments against `host` (None: the default engine).
pub fn docker_at(host: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    if let Some(h) = host {
        cmd.arg("-H").arg(h);
    }
    cmd.args(args)
        .output()
        .expect("the docker CLI must be installed (scripts/testenv.sh installs it)")
}

/// Runs `docker` and returns stdout, panicking with stderr on failure.
pub fn docker_ok(host: Option<&str>, args: &[&str]) -> String {
    let out = docker_at(host, args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Something a test started that it must clean up: containers under one run label.
pub struct TestRun {
    /// Unique per test: used as the run label and the compose project name.
    pub id: String,
    /// The engine (None: the default one).
    pub host: Option<String>,
    /// `docker events` following this run's restarts, from when the run began.
    events: Child,
    /// (container id, container name, time in ns) of every restart event seen.
    restarts: Arc<Mutex<Vec<(String, String, i64)>>>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestRun {
    pub fn new(name: &str) -> TestRun {
        TestRun::on(name, None)
    }

    pub fn on(name: &str, host: Option<&str>) -> TestRun {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!(
            "medictest{}{}{n}",
            name.replace(['_', '-'], ""),
            std::process::id()
        );
        // The engine keeps only its last 256 events for `--since`, and healthchecks flood it,
        // so restarts are followed live from the start of the run.
        let mut cmd = Command::new("docker");
        if let Some(h) = host {
            cmd.arg("-H").arg(h);
        }
        let mut events = cmd
            .args([
                "events",
                "--filter",
                &format!("label=medic.test.run={id}"),
                "--filter",
                "event=restart",
                "--format",
                "{{.ID}} {{.Actor.Attributes.name}} {{.TimeNano}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        let stdout = events.stdout.take().unwrap();
        let restarts = Arc::new(Mutex::new(Vec::new()));
        let sink = restarts.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let [id, name, nanos] = parts[..] {
                    if let Ok(nanos) = nanos.parse() {
                        sink.lock()
                            .unwrap()
                            .push((id.to_string(), name.to_string(), nanos));
                    }
                }
            }
        });
        // Let the subscription reach the engine before the test acts.
        std::thread::sleep(Duration::from_millis(300));
        TestRun {
            id,
            host: host.map(str::to_string),
            events,
            restarts,
        }
    }

    fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Starts a busybox container with a file-driven healthcheck: healthy while `/tmp/ok`
    /// exists (created at start), unless `extra` brings its own `--health-cmd`. `labels` come on
    /// top of the test labels; `extra` are more `docker run` options. Returns its name.
    pub fn container(&self, name: &str, labels: &[(&str, &str)], extra: &[&str]) -> String {
        let full = format!("{}-{name}", self.id);
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            full.clone(),
            "--label".into(),
            "medic.test=true".into(),
            "--label".into(),
            format!("medic.test.run={}", self.id),
            "--health-interval".into(),
            "1s".into(),
            "--health-retries".into(),
            "1".into(),
            "--health-timeout".into(),
            "1s".into(),
        ];
        if !extra.contains(&"--health-cmd") {
            args.extend(["--health-cmd".into(), "test -f /tmp/ok".into()]);
        }
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(busybox_image());
        args.extend(["sh", "-c", "touch /tmp/ok; exec sleep 100000"].map(String::from));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(self.host(), &refs);
        full
    }

    /// A container of this test's compose project, as service `service`.
    pub fn service(&self, service: &str, extra_labels: &[(&str, &str)]) -> String {
        let mut labels = vec![
            ("com.docker.compose.project", self.id.as_str()),
            ("com.docker.compose.service", service),
        ];
        labels.extend_from_slice(extra_labels);
        self.container(service, &labels, &[])
    }

    /// A container of the run's compose project as `service`, without a network: its
    /// healthcheck (healthy while `/tmp/ok` exists, unless `extra` brings its own) needs none,
    /// and the test then does not depend on the engine's default bridge. `extra` are more
    /// `docker run` options. Returns its name.
    pub fn offline_service(&self, service: &str, extra: &[&str]) -> String {
        let mut args = vec!["--network", "none"];
        args.extend_from_slice(extra);
        self.container(
            service,
            &[
                ("com.docker.compose.project", self.id.as_str()),
                ("com.docker.compose.service", service),
            ],
            &args,
        )
    }

    /// Makes a container's healthcheck fail from now on.
    pub fn break_health(&self, name: &str) {
        docker_ok(self.host(), &["exec", name, "rm", "-f", "/tmp/ok"]);
    }

    /// The container's health status (`healthy`, `unhealthy`, `starting`) or run state.
    pub fn health(&self, name: &str) -> String {
        docker_ok(
            self.host(),
            &[
                "inspect",
                "-f",
                "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                name,
            ],
        )
    }

    /// The run's `web` service (healthy while /tmp/ok exists, which its command creates), once
    /// Docker reports it healthy.
    pub fn healthy_web(&self) -> String {
        let web = self.offline_service("web", &[]);
        wait_for("web healthy", Duration::from_secs(30), || {
            self.health(&web) == "healthy"
        });
        web
    }

    pub fn state(&self, name: &str) -> String {
        docker_ok(self.host(), &["inspect", "-f", "{{.State.Status}}", name])
    }

    /// How many times the engine restarted the container since the test began, from Docker's
    /// own event log (API restarts emit a `restart` event).
    pub fn restarts(&self, name: &str) -> usize {
        self.restart_times(name).len()
    }

    /// The time of each restart event of the container (name or id) since the test began.
    pub fn restart_times(&self, container: &str) -> Vec<i64> {
        self.restarts
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, name, _)| name == container || id.starts_with(container))
            .map(|(_, _, t)| *t)
            .collect()
    }
}

impl Drop for TestRun {
    fn drop(&mut self) {
        let _ = self.events.kill();
        let _ = self.events.wait();
        let ids = docker_at(
            self.host(),
            &[
                "ps",
                "-aq",
                "--filter",
                &format!("label=medic.test.run={}", self.id),
            ],
        );
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = docker_at(self.host(), &args);
        }
    }
}

/// A compose project written by a test, taken down (volumes too) when dropped.
pub struct Compose {
    /// Keeps the compose file alive.
    dir: tempfile::TempDir,
    /// The project name.
    pub project: String,
}

impl Compose {
    /// Writes `yaml` as the project's compose file.
    pub fn new(project: &str, yaml: &str) -> Compose {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        Compose {
            dir,
            project: project.to_string(),
        }
    }

    /// Runs `docker-compose` on the project.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .arg("-f")
            .arg(self.dir.path().join("compose.yaml"))
            .arg("-p")
            .arg(&self.project)
            .args(args)
            .output()
            .expect("docker-compose is installed by scripts/testenv.sh")
    }

    /// Runs `docker-compose` and panics with its stderr if it fails.
    pub fn ok(&self, args: &[&str]) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The id of the container running `service`.
    pub fn container(&self, service: &str) -> String {
        compose_container(&self.project, service)
    }
}

/// The id of the container running `service` in compose project `project`.
pub fn compose_container(project: &str, service: &str) -> String {
    docker_ok(
        None,
        &[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ],
    )
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "-t", "1"]);
    }
}

/// Builds the images of `set` (scripts/build-images.sh), once per test process.
pub fn build_images(set: &str) {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built.iter().any(|s| s == set) {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-images.sh");
    let status = Command::new(script).arg(set).status().unwrap();
    assert!(status.success(), "scripts/build-images.sh {set} failed");
    built.push(set.to_string());
}
