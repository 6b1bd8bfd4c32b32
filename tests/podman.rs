//! medic heals containers of a real Podman (Debian's 4.3) through Podman's Docker-compatible
//! socket: what Podman's API answers differs from Docker's (no health in the container list, one
//! bare `health_status` event per healthcheck run), and these tests show medic copes.
//!
//! Each test starts its own `podman system service` on a socket in a temporary folder, runs
//! medic with `DOCKER_HOST` pointing at it, and creates its containers with the `podman` CLI.
//! Podman runs healthchecks from systemd timers and there is no systemd here: a thread running
//! `podman healthcheck run NAME` every second stands in for the timer (see shared TESTING.md).
//! Containers run with `--network=none`, so Podman adds no bridge or firewall rule on the host,
//! and with explicit rlimits, which the sandbox needs (TESTING.md "Podman").
//!
//! Needs `podman` and the busybox image built into Podman's storage by `scripts/testenv.sh up`
//! (`scripts/testenv.sh podman` does only that).

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{busybox_image, wait_for, Medic};

/// Runs the `podman` CLI.
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman must be installed: scripts/testenv.sh podman installs it")
}

/// Runs the `podman` CLI and returns stdout, panicking with stderr on failure.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `podman system service` on a socket of its own, stopped when dropped.
struct PodmanService {
    child: Child,
    /// `unix:///…/podman.sock`, medic's `DOCKER_HOST`.
    url: String,
    _dir: tempfile::TempDir,
}

impl PodmanService {
    fn start() -> PodmanService {
        let image = busybox_image();
        assert!(
            podman(&["image", "exists", &image]).status.success(),
            "Podman has no image {image}: run scripts/testenv.sh podman (or up) first"
        );
        let dir = tempfile::tempdir().unwrap();
        let socket: PathBuf = dir.path().join("podman.sock");
        let url = format!("unix://{}", socket.display());
        let child = PodmanService::spawn(&url);
        PodmanService {
            child,
            url,
            _dir: dir,
        }
    }

    /// Starts the service on `url` and waits until it answers.
    fn spawn(url: &str) -> Child {
        let child = Command::new("podman")
            .args(["system", "service", "--time=0", url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start podman system service");
        wait_for("the Podman socket answers", Duration::from_secs(20), || {
            podman(&["--url", url, "version"]).status.success()
        });
        child
    }

    /// Stops the service (containers keep running: conmon watches them, not the service), runs
    /// `meanwhile`, and starts it again on the same socket.
    fn down_while(&mut self, meanwhile: impl FnOnce()) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        meanwhile();
        self.child = PodmanService::spawn(&self.url);
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test's containers (labelled `medic.test=true` and with a run label), its healthcheck
/// loops and a `podman events` watcher of their restarts; all removed when dropped.
struct PodmanRun {
    id: String,
    events: Child,
    /// (container name, time in ns) of every restart event seen.
    restarts: Arc<Mutex<Vec<(String, i64)>>>,
    /// Stops the healthcheck loops.
    stop: Arc<AtomicBool>,
    loops: Vec<std::thread::JoinHandle<()>>,
}

impl PodmanRun {
    fn new(name: &str) -> PodmanRun {
        let id = format!("medicpodman{name}{}", std::process::id());
        let mut events = Command::new("podman")
            .args([
                "events",
                "--filter",
                &format!("label=medic.test.run={id}"),
                "--filter",
                "event=restart",
                "--format",
                "{{.Name}} {{.Time.UnixNano}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman events");
        let stdout = events.stdout.take().unwrap();
        let restarts = Arc::new(Mutex::new(Vec::new()));
        let sink = restarts.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((name, nanos)) = line.split_once(' ') {
                    if let Ok(nanos) = nanos.trim().parse() {
                        sink.lock().unwrap().push((name.to_string(), nanos));
                    }
                }
            }
        });
        PodmanRun {
            id,
            events,
            restarts,
            stop: Arc::new(AtomicBool::new(false)),
            loops: Vec::new(),
        }
    }

    /// Starts a container of this run's compose project as `service`: healthy while `/tmp/ok`
    /// exists (created at start). Returns its name.
    fn service(&self, service: &str) -> String {
        let name = format!("{}-{service}", self.id);
        let nofile = hard_nofile();
        podman_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network=none",
            "--ulimit",
            &format!("nofile={nofile}:{nofile}"),
            "--ulimit",
            "nproc=4096:4096",
            "--label",
            "medic.test=true",
            "--label",
            &format!("medic.test.run={}", self.id),
            "--label",
            &format!("com.docker.compose.project={}", self.id),
            "--label",
            &format!("com.docker.compose.service={service}"),
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "--health-timeout",
            "1s",
            "--stop-timeout",
            "1",
            &busybox_image(),
            "sh",
            "-c",
            "touch /tmp/ok; exec sleep 100000",
        ]);
        name
    }

    /// Stands in for Podman's systemd timer: runs the container's healthcheck every second
    /// until the run ends. Returns a counter of the runs made.
    fn healthcheck_loop(&mut self, name: &str) -> Arc<AtomicUsize> {
        let runs = Arc::new(AtomicUsize::new(0));
        let (stop, count, name) = (self.stop.clone(), runs.clone(), name.to_string());
        self.loops.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                // Fails while the container is stopped or restarting: the timer would too.
                let _ = podman(&["healthcheck", "run", &name]);
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(1));
            }
        }));
        runs
    }

    /// Stops every healthcheck loop of the run.
    fn stop_healthchecks(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.loops.drain(..) {
            let _ = handle.join();
        }
    }

    fn break_health(&self, name: &str) {
        podman_ok(&["exec", name, "rm", "-f", "/tmp/ok"]);
    }

    /// Health as Podman's own CLI reports it.
    fn health(&self, name: &str) -> String {
        podman_ok(&["inspect", "-f", "{{.State.Health.Status}}", name])
    }

    fn state(&self, name: &str) -> String {
        podman_ok(&["inspect", "-f", "{{.State.Status}}", name])
    }

    fn restarts(&self, name: &str) -> usize {
        self.restarts
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .count()
    }
}

impl Drop for PodmanRun {
    fn drop(&mut self) {
        self.stop_healthchecks();
        let _ = self.events.kill();
        let _ = self.events.wait();
        let ids = podman(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=medic.test.run={}", self.id),
        ]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-t", "0"];
            args.extend(ids);
            let _ = podman(&args);
        }
    }
}

/// The hard limit of open files: the sandbox refuses Podman's default (TESTING.md).
fn hard_nofile() -> String {
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("sh");
    let n = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if n.is_empty() || n == "unlimited" {
        "1048576".into()
    } else {
        n
    }
}

/// medic watching the run's project through the Podman socket.
fn medic_on(service: &PodmanService, run: &PodmanRun, extra: &[(&str, &str)]) -> Medic {
    let mut vars = vec![
        ("DOCKER_HOST", service.url.as_str()),
        ("MEDIC_PROJECT", run.id.as_str()),
    ];
    vars.extend_from_slice(extra);
    Medic::start(&vars)
}

#[test]
fn an_unhealthy_container_is_restarted_through_podman_and_healthy_runs_change_nothing() {
    let service = PodmanService::start();
    let mut run = PodmanRun::new("heal");
    let medic = medic_on(&service, &run, &[]);
    medic.wait_log("medic names the engine", Duration::from_secs(10), |l| {
        l.contains("connected to the Podman engine 4.")
    });
    let web = run.service("web");
    let checks = run.healthcheck_loop(&web);
    wait_for("web healthy", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });
    // A healthy container checked again and again (one event per run, all `healthy`).
    let seen = checks.load(Ordering::SeqCst);
    wait_for("five more healthy checks", Duration::from_secs(20), || {
        checks.load(Ordering::SeqCst) >= seen + 5
    });
    assert_eq!(run.restarts(&web), 0, "{}", medic.dump());

    run.break_health(&web);
    wait_for("web restarted", Duration::from_secs(20), || {
        run.restarts(&web) == 1
    });
    wait_for("web healthy again", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });
    medic.wait_log("recovery logged", Duration::from_secs(10), |l| {
        l.contains("healthy again")
    });
    let seen = checks.load(Ordering::SeqCst);
    wait_for("five more healthy checks", Duration::from_secs(20), || {
        checks.load(Ordering::SeqCst) >= seen + 5
    });
    assert_eq!(run.restarts(&web), 1, "{}", medic.dump());
    assert_eq!(run.state(&web), "running");
    let recoveries = medic
        .current_lines()
        .iter()
        .filter(|l| l.contains(r#""kind":"Recovered""#))
        .count();
    assert_eq!(
        recoveries, 1,
        "one RECOVERED alert, however many healthy runs"
    );

    // `/health/detailed` says which engine it is.
    let (code, body) = support::http_get(&medic.addr(), "/health/detailed");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["docker"]["engine"], "Podman", "{body}");
    assert!(
        v["docker"]["version"].as_str().unwrap().starts_with("4."),
        "{body}"
    );
}

#[test]
fn a_container_that_stays_unhealthy_is_restarted_as_often_as_policy_allows() {
    let service = PodmanService::start();
    let mut run = PodmanRun::new("stays");
    // One restart per hour at most: every later unhealthy run must change nothing.
    let medic = medic_on(&service, &run, &[("MEDIC_RESTART_COOLDOWN", "1h")]);
    let web = run.service("web");
    let checks = run.healthcheck_loop(&web);
    wait_for("web healthy", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });
    // Broken for good: the file is removed again right after each restart.
    run.break_health(&web);
    wait_for("web restarted", Duration::from_secs(20), || {
        run.restarts(&web) == 1
    });
    wait_for(
        "web running after the restart",
        Duration::from_secs(20),
        || run.state(&web) == "running",
    );
    run.break_health(&web);
    wait_for("web unhealthy again", Duration::from_secs(20), || {
        run.health(&web) == "unhealthy"
    });
    let seen = checks.load(Ordering::SeqCst);
    wait_for(
        "eight more unhealthy checks",
        Duration::from_secs(30),
        || checks.load(Ordering::SeqCst) >= seen + 8,
    );
    assert_eq!(run.restarts(&web), 1, "{}", medic.dump());
    medic.wait_log("the cooldown hold logged", Duration::from_secs(10), |l| {
        l.contains("cooldown")
    });
}

#[test]
fn a_container_stopped_with_podman_stop_is_not_started_again() {
    let service = PodmanService::start();
    let mut run = PodmanRun::new("stop");
    let medic = medic_on(&service, &run, &[("MEDIC_LOG", "medic=debug")]);
    let web = run.service("web");
    let checks = run.healthcheck_loop(&web);
    wait_for("web healthy", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });
    // Podman 4.3 sends no `stop` or `kill` event for this, only `die`: medic must not take it
    // for a crash to heal, nor start the container from a late health event.
    podman_ok(&["stop", "-t", "1", &web]);
    assert_eq!(run.state(&web), "exited");
    let reconciles = |m: &Medic| {
        m.current_lines()
            .iter()
            .filter(|l| l.contains("\"reconciled\""))
            .count()
    };
    let seen = reconciles(&medic);
    let seen_checks = checks.load(Ordering::SeqCst);
    wait_for(
        "five reconciles and healthcheck runs after the stop",
        Duration::from_secs(30),
        || reconciles(&medic) >= seen + 5 && checks.load(Ordering::SeqCst) >= seen_checks + 5,
    );
    assert_eq!(run.state(&web), "exited", "{}", medic.dump());
    assert_eq!(run.restarts(&web), 0, "{}", medic.dump());
}

#[test]
fn reconcile_finds_a_container_that_turned_unhealthy_while_medic_was_away() {
    let service = PodmanService::start();
    let mut run = PodmanRun::new("missed");
    let web = run.service("web");
    run.healthcheck_loop(&web);
    wait_for("web healthy", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });
    run.break_health(&web);
    wait_for("web unhealthy", Duration::from_secs(20), || {
        run.health(&web) == "unhealthy"
    });
    // No more healthcheck runs, so no more events: only medic's own look at the engine can
    // find the container unhealthy.
    run.stop_healthchecks();
    let medic = medic_on(&service, &run, &[]);
    wait_for("web restarted", Duration::from_secs(20), || {
        run.restarts(&web) == 1
    });
    medic.wait_log("the restart logged", Duration::from_secs(10), |l| {
        l.contains("\"restarted\"")
    });
    assert_eq!(run.state(&web), "running");
}

#[test]
fn check_names_podman_as_the_engine() {
    let service = PodmanService::start();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCKER_HOST", &service.url)
        .env("MEDIC_PROJECT", "medicpodmancheck")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let docker = stdout
        .lines()
        .find(|l| l.starts_with("docker"))
        .unwrap_or_else(|| panic!("no docker row in:\n{stdout}"));
    assert!(docker.contains(" ok "), "{stdout}");
    assert!(docker.contains("Podman 4."), "{docker}");
    assert!(docker.contains("(API 1."), "{docker}");
}

#[test]
fn medic_reconnects_to_podman_and_heals_what_broke_meanwhile() {
    let mut service = PodmanService::start();
    let mut run = PodmanRun::new("away");
    let medic = medic_on(&service, &run, &[]);
    // Podman's first answer can take seconds: medic must be connected before the service goes.
    medic.wait_log("connected", Duration::from_secs(20), |l| {
        l.contains("connected to the Podman engine")
    });
    let web = run.service("web");
    run.healthcheck_loop(&web);
    wait_for("web healthy", Duration::from_secs(20), || {
        run.health(&web) == "healthy"
    });
    service.down_while(|| {
        medic.wait_log(
            "medic notices Podman is gone",
            Duration::from_secs(20),
            |l| l.contains("lost the Docker engine"),
        );
        run.break_health(&web);
        wait_for("web unhealthy", Duration::from_secs(20), || {
            run.health(&web) == "unhealthy"
        });
        // No event can tell medic after this: only its reconcile on reconnect can.
        run.stop_healthchecks();
    });
    wait_for("web restarted", Duration::from_secs(40), || {
        run.restarts(&web) == 1
    });
    // Outside any container: nothing of Podman's on the host is taken for medic's own.
    let watching = medic
        .current_lines()
        .into_iter()
        .find(|l| l.contains("watching compose project"))
        .expect("the scope is logged");
    let v: serde_json::Value = serde_json::from_str(&watching).unwrap();
    // However the log prints "no value" (absent, null, or Rust's `None`), never an id.
    assert!(
        matches!(v.get("own_container"), None | Some(serde_json::Value::Null))
            || v["own_container"] == "None",
        "{watching}"
    );
    medic.wait_log("reconnected", Duration::from_secs(10), |l| {
        l.contains("connected to the Podman engine") && l.contains(r#""reconnected":true"#)
    });
}
