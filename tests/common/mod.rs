//! Helpers for integration tests against the real Docker Engine (see shared TESTING.md).
//!
//! Every container a test creates carries `medic.test=true` and a run label unique to the test;
//! [`TestRun`] removes them all when it is dropped, also when the test fails.
#![allow(dead_code)]

pub mod mail;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The offline busybox image built by scripts/testenv.sh.
pub fn busybox_image() -> String {
    std::env::var("MEDIC_TEST_BUSYBOX_IMAGE").unwrap_or_else(|_| "medic-test/busybox:latest".into())
}

/// The environment variable `name`, else `default`.
pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Where scripts/testenv.sh keeps its state (virtualenv, certificates, SMTP folders).
pub fn state_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".testenv")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A medic configuration file holding `yaml`, in a folder that lives as long as the returned
/// guard.
pub fn medic_config(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("medic.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
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

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
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

/// A medic daemon run as a child process, logging JSON to a file the test reads.
pub struct Medic {
    child: Child,
    pub log: PathBuf,
    pub data_dir: PathBuf,
    /// Keeps the temporary folder alive.
    _dir: Option<tempfile::TempDir>,
    /// The environment it was started with, to start it again the same way.
    env: HashMap<String, String>,
}

impl Medic {
    /// Starts medic with these variables on top of: a fresh data dir, port 0 on loopback, JSON
    /// logs, fast reconcile. Waits until it says it is running.
    pub fn start(vars: &[(&str, &str)]) -> Medic {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut env: HashMap<String, String> = HashMap::from([
            ("MEDIC_DATA_DIR".into(), data_dir.display().to_string()),
            ("MEDIC_LISTEN".into(), "127.0.0.1:0".into()),
            ("MEDIC_LOG_FORMAT".into(), "json".into()),
            (
                "MEDIC_LOG".into(),
                std::env::var("MEDIC_TEST_LOG").unwrap_or_else(|_| "info".into()),
            ),
            ("MEDIC_RECONCILE_INTERVAL".into(), "1s".into()),
            ("MEDIC_RESTART_GRACE".into(), "1s".into()),
            ("MEDIC_STOP_TIMEOUT".into(), "1s".into()),
        ]);
        for (k, v) in vars {
            env.insert(k.to_string(), v.to_string());
        }
        Medic::spawn(env, dir.path().join("medic.log"), data_dir, Some(dir))
    }

    fn spawn(
        env: HashMap<String, String>,
        log: PathBuf,
        data_dir: PathBuf,
        dir: Option<tempfile::TempDir>,
    ) -> Medic {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_medic"));
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(file);
        let child = cmd.spawn().expect("start medic");
        let medic = Medic {
            child,
            log,
            data_dir,
            _dir: dir,
            env,
        };
        medic.wait_log("medic running", Duration::from_secs(20), |l| {
            l.contains("medic is running")
        });
        medic
    }

    /// Kills medic with SIGKILL and starts it again with the same settings and data.
    pub fn sigkill_and_restart(mut self) -> Medic {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(f, "---- SIGKILL ----").unwrap();
        let env = self.env.clone();
        let log = self.log.clone();
        let data = self.data_dir.clone();
        let dir = self._dir.take();
        drop(self);
        Medic::spawn(env, log, data, dir)
    }

    /// Every log line so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Log lines written since the last SIGKILL marker.
    pub fn current_lines(&self) -> Vec<String> {
        let lines = self.lines();
        let start = lines
            .iter()
            .rposition(|l| l.starts_with("---- SIGKILL"))
            .map(|i| i + 1)
            .unwrap_or(0);
        lines[start..].to_vec()
    }

    /// Waits until a log line matches.
    pub fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        wait_for(what, timeout, || {
            self.current_lines().iter().any(|l| pred(l))
        });
    }

    /// The HTTP address from the "medic is running" line.
    pub fn addr(&self) -> String {
        let line = self
            .current_lines()
            .into_iter()
            .find(|l| l.contains("medic is running"))
            .expect("medic is running");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["listen"].as_str().unwrap().to_string()
    }

    /// The whole log, for assertion messages.
    pub fn dump(&self) -> String {
        self.lines().join("\n")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Medic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- medic log ----\n{}", self.dump());
        }
    }
}

/// Runs the medic binary once with exactly these variables (plus `PATH`), nothing inherited
/// from the test's own environment.
pub fn medic_with_only<K, V>(args: &[&str], env: &[(K, V)]) -> Output
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// One HTTP/1.0 exchange with 127.0.0.1: method, path, extra headers and body; returns the
/// status, the head in lower case, and the body.
pub fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}

/// One bodiless HTTP request to 127.0.0.1 with an optional bearer token: status and body.
pub fn http_request(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, body) = http_exchange(addr, method, path, &headers, "");
    (status, body)
}

/// A minimal HTTP GET to 127.0.0.1, returning status and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None)
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

// Drills (tests/drills.rs): restarting medic without waiting for it, stopping it cleanly.

impl Medic {
    /// The process id of the running medic.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills medic with SIGKILL and waits until it is gone (its data is then as a crash left
    /// it); [`Medic::respawn`] starts it again.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(f, "---- SIGKILL ----").unwrap();
    }

    /// Starts medic again, after [`Medic::sigkill`], with the same settings and data dir, from
    /// `binary` (a copy of the build's `medic`, which a concurrent `cargo build` may be
    /// relinking), without waiting for it to come up: a drill times that itself (from the log
    /// after [`Medic::log_len`], then `/health`).
    pub fn respawn(&mut self, binary: &Path) {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Command::new(binary)
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start medic");
    }

    /// The log's length in bytes now, to read only what a later start writes.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Asks medic to stop (SIGTERM) and waits up to `timeout` for it to exit. Returns its exit
    /// status, or None when it did not exit in time (it is then killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

/// A copy of the `medic` binary under test in `dir`, for tests that start it many times: a
/// `cargo build` running beside them may replace the original at any moment.
pub fn medic_binary_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("medic");
    std::fs::copy(env!("CARGO_BIN_EXE_medic"), &copy).expect("copy the medic binary");
    copy
}
