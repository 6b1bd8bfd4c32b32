//! medic behind a least-privilege socket proxy: a real HAProxy (Debian's) in front of
//! /var/run/docker.sock, with the rules of the proxy users run (Tecnativa's docker-socket-proxy:
//! anything but GET needs `POST=1`, each API section needs its variable, the rest is denied with
//! HAProxy's 403 page). The configuration is written here; the permissions come from the
//! README's least-privilege table, so the table is what is tested.
//!
//! - With the README's permissions for healing, medic heals through the proxy, and the proxy
//!   denied nothing it asked.
//! - With restarts denied, medic says once which variable to set, keeps going (and keeps
//!   `/health` at 200), and does not retry the restart faster than its cooldown.
//! - Without events, medic says so once and heals from its reconcile.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{free_port, http_get, wait_for, Medic, TestRun};

/// The proxy's sections: the variable that opens each, and the API path it covers. The same
/// rules as docker-socket-proxy's, for the sections medic could touch and a few it must not.
const SECTIONS: &[(&str, &str)] = &[
    (
        "ALLOW_RESTARTS",
        r"/containers/[a-zA-Z0-9_.-]+/(stop|restart|kill)",
    ),
    ("ALLOW_START", r"/containers/[a-zA-Z0-9_.-]+/start"),
    ("ALLOW_STOP", r"/containers/[a-zA-Z0-9_.-]+/stop"),
    ("CONTAINERS", "/containers"),
    ("EVENTS", "/events"),
    ("EXEC", "/exec"),
    ("IMAGES", "/images"),
    ("INFO", "/info"),
    ("NETWORKS", "/networks"),
    ("PING", "/_ping"),
    ("SERVICES", "/services"),
    ("SWARM", "/swarm"),
    ("SYSTEM", "/system"),
    ("TASKS", "/tasks"),
    ("VERSION", "/version"),
    ("VOLUMES", "/volumes"),
];

/// A HAProxy on 127.0.0.1 in front of the machine's Docker socket, killed when dropped.
struct SocketProxy {
    child: Child,
    port: u16,
    /// One line per request (method, path, status), from HAProxy's log on its stdout.
    requests: Arc<Mutex<Vec<String>>>,
    /// Keeps the configuration file alive.
    _dir: tempfile::TempDir,
}

impl SocketProxy {
    /// Starts HAProxy with these proxy variables set to 1 (every other one unset: denied).
    fn start(allowed: &[String]) -> SocketProxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, proxy_config(port)).unwrap();
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db")
            .arg("-f")
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for var in allowed {
            cmd.env(var, "1");
        }
        let mut child = cmd
            .spawn()
            .expect("haproxy must be installed (scripts/testenv.sh installs it)");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = requests.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        wait_for("haproxy listening", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        SocketProxy {
            child,
            port,
            requests,
            _dir: dir,
        }
    }

    fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Every request the proxy logged so far, as `STATUS METHOD PATH`.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests the proxy denied so far.
    fn denied(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.starts_with("403 "))
            .collect()
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy's configuration: deny writes unless `POST`, then allow each section whose variable
/// is true, deny the rest. Each request is logged to stdout as `STATUS METHOD PATH`.
fn proxy_config(port: u16) -> String {
    let mut rules = String::new();
    for (var, path) in SECTIONS {
        rules.push_str(&format!(
            "    http-request allow if {{ path,url_dec -m reg -i ^(/v[0-9.]+)?{path} }} {{ env({var}) -m bool }}\n"
        ));
    }
    format!(
        r#"global
    log stdout format raw local0
    maxconn 256

defaults
    mode http
    log global
    log-format "%ST %HM %HP"
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout http-request 10s

frontend engine_api
    bind 127.0.0.1:{port}
    http-request deny unless METH_GET || {{ env(POST) -m bool }}
{rules}    http-request deny
    default_backend engine

backend engine
    server docker /var/run/docker.sock
"#
    )
}

/// The proxy variables the README's least-privilege table names for `feature` (its row starts
/// with `| feature`), e.g. `CONTAINERS=1 EVENTS=1` -> ["CONTAINERS", "EVENTS"].
fn readme_permissions(feature: &str) -> Vec<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(readme).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("| {feature}")))
        .unwrap_or_else(|| panic!("README.md has no least-privilege row for {feature}"));
    let cell = row.trim_end_matches('|').rsplit('|').next().unwrap();
    let vars: Vec<String> = cell
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_' || c == '=' || c.is_ascii_digit()))
        .filter_map(|w| w.strip_suffix("=1"))
        .map(str::to_string)
        .collect();
    assert!(!vars.is_empty(), "no VAR=1 in the README row: {row}");
    vars
}

/// A container of the run's compose project (only this test's medic watches it), with a
/// healthcheck that fails once `/tmp/ok` is gone.
fn watched(run: &TestRun) -> String {
    run.offline_service("web", &["--stop-timeout", "1"])
}

fn medic_through(proxy: &SocketProxy, run: &TestRun, extra: &[(&str, &str)]) -> Medic {
    let host = proxy.docker_host();
    let mut vars = vec![
        ("DOCKER_HOST", host.as_str()),
        ("MEDIC_PROJECT", run.id.as_str()),
    ];
    vars.extend_from_slice(extra);
    let medic = Medic::start(&vars);
    medic.wait_log(
        "medic connects through the proxy",
        Duration::from_secs(30),
        |l| l.contains("connected to the Docker engine"),
    );
    medic
}

fn error_lines(medic: &Medic, containing: &str) -> Vec<String> {
    medic
        .lines()
        .into_iter()
        .filter(|l| l.contains(r#""level":"ERROR""#) && l.contains(containing))
        .collect()
}

#[test]
fn medic_heals_through_a_proxy_that_allows_only_what_the_readme_lists() {
    let allowed = readme_permissions("Healing");
    let proxy = SocketProxy::start(&allowed);
    let run = TestRun::new("proxyheal");
    let web = watched(&run);
    let medic = medic_through(&proxy, &run, &[]);
    wait_for("web healthy", Duration::from_secs(30), || {
        run.health(&web) == "healthy"
    });
    run.break_health(&web);
    wait_for(
        "medic restarts web through the proxy",
        Duration::from_secs(30),
        || run.restarts(&web) >= 1,
    );
    medic.wait_log("medic logs the restart", Duration::from_secs(10), |l| {
        l.contains(r#""message":"restarted""#)
    });
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("POST") && r.contains("/restart")),
        "the restart did not go through the proxy: {requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("/events")),
        "medic did not follow events through the proxy: {requests:#?}"
    );
    assert_eq!(
        proxy.denied(),
        Vec::<String>::new(),
        "with the README's permissions ({allowed:?}) the proxy denied calls medic made"
    );
    assert_eq!(error_lines(&medic, ""), Vec::<String>::new());
}

#[test]
fn a_denied_restart_is_reported_once_naming_the_variable_and_medic_keeps_going() {
    // The healing permissions without POST: everything medic reads is allowed, its restart not.
    let allowed: Vec<String> = readme_permissions("Healing")
        .into_iter()
        .filter(|v| v != "POST")
        .collect();
    let proxy = SocketProxy::start(&allowed);
    let run = TestRun::new("proxydeny");
    let web = watched(&run);
    // A short cooldown and a large budget: medic tries again every 2 s, so the test sees that
    // repeated attempts are paced by the cooldown and reported only once.
    let medic = medic_through(
        &proxy,
        &run,
        &[
            ("MEDIC_RESTART_COOLDOWN", "2s"),
            ("MEDIC_RESTART_BUDGET", "100"),
        ],
    );
    wait_for("web healthy", Duration::from_secs(30), || {
        run.health(&web) == "healthy"
    });
    run.break_health(&web);
    let denied_restarts = || {
        proxy
            .denied()
            .into_iter()
            .filter(|r| r.contains("POST") && r.contains("/restart"))
            .count()
    };
    wait_for(
        "three denied restart attempts",
        Duration::from_secs(30),
        || denied_restarts() >= 3,
    );
    let started = std::time::Instant::now();
    let before = denied_restarts();
    // Watch a stretch of time: attempts go on at the cooldown's pace, not faster. The stretch
    // holds six of medic's looks at web (a reconcile a second), each a chance to retry.
    medic.wait_checked(&format!("docker:{web}"), 6, Duration::from_secs(40));
    let attempts = denied_restarts() - before;
    let window = started.elapsed().as_secs_f64();
    assert!(
        (attempts as f64) <= window / 2.0 + 1.0,
        "{attempts} restart attempts in {window:.1}s with a 2s cooldown: medic retries hot"
    );

    let messages = error_lines(&medic, "socket proxy denied");
    assert_eq!(
        messages.len(),
        1,
        "the denial must be reported exactly once:\n{}",
        medic.dump()
    );
    let message = &messages[0];
    assert!(
        message.contains("POST /containers/{id}/restart") && message.contains("set POST=1"),
        "the message names neither the call nor the variable: {message}"
    );
    assert_eq!(run.restarts(&web), 0, "the proxy let a restart through");
    assert_eq!(
        error_lines(&medic, "").len(),
        1,
        "other errors besides the denial:\n{}",
        medic.dump()
    );
    // medic is alive and well: its own health answers, and it keeps watching (a reconcile
    // through the proxy happened after the last denial).
    let (status, body) = http_get(&medic.addr(), "/health");
    assert_eq!(status, 200, "{body}");
    let seen = proxy.requests().len();
    wait_for("medic keeps reconciling", Duration::from_secs(10), || {
        proxy.requests()[seen..]
            .iter()
            .any(|r| r.starts_with("200 GET") && r.contains("/containers/json"))
    });
}

#[test]
fn without_events_medic_says_so_once_and_heals_from_its_reconcile() {
    let allowed: Vec<String> = readme_permissions("Healing")
        .into_iter()
        .filter(|v| v != "EVENTS")
        .collect();
    let proxy = SocketProxy::start(&allowed);
    let run = TestRun::new("proxynoevents");
    let web = watched(&run);
    let medic = medic_through(&proxy, &run, &[]);
    medic.wait_log(
        "medic says events are denied",
        Duration::from_secs(30),
        |l| l.contains("socket proxy denied GET /events") && l.contains("set EVENTS=1"),
    );
    wait_for("web healthy", Duration::from_secs(30), || {
        run.health(&web) == "healthy"
    });
    run.break_health(&web);
    wait_for(
        "medic restarts web from a reconcile",
        Duration::from_secs(30),
        || run.restarts(&web) >= 1,
    );
    assert_eq!(
        error_lines(&medic, "socket proxy denied").len(),
        1,
        "{}",
        medic.dump()
    );
    let events_asked = proxy
        .requests()
        .iter()
        .filter(|r| r.contains("/events"))
        .count();
    assert_eq!(events_asked, 1, "medic kept asking for denied events");
}

#[test]
fn without_the_container_list_medic_says_so_once_and_asks_again_slowly() {
    let allowed: Vec<String> = readme_permissions("Healing")
        .into_iter()
        .filter(|v| v != "CONTAINERS")
        .collect();
    let proxy = SocketProxy::start(&allowed);
    let run = TestRun::new("proxynolist");
    let medic = medic_through(&proxy, &run, &[]);
    medic.wait_log(
        "medic says the list is denied",
        Duration::from_secs(30),
        |l| {
            l.contains("socket proxy denied GET /containers/json") && l.contains("set CONTAINERS=1")
        },
    );
    let listed = || {
        proxy
            .denied()
            .iter()
            .filter(|r| r.contains("/containers/json"))
            .count()
    };
    let first_denial = std::time::Instant::now();
    // The retries back off (0.5 s doubling): give them 8 s, in which a hot loop would ask
    // hundreds of times and the backoff about five.
    wait_for("a few retries", Duration::from_secs(20), || listed() >= 4);
    std::thread::sleep(Duration::from_secs(8).saturating_sub(first_denial.elapsed()));
    assert!(
        listed() <= 6,
        "{} denied lists in 8 s: medic retries hot",
        listed()
    );
    assert_eq!(error_lines(&medic, "").len(), 1, "{}", medic.dump());
    let (status, body) = http_get(&medic.addr(), "/health");
    assert_eq!(status, 200, "{body}");
}
