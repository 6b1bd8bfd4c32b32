//! The HTTP API of a running medic: every route, its status codes, the token cases, the JSON
//! shape, the Prometheus text, the status page in headless Chromium, and silences holding
//! restarts of a real unhealthy container.
//!
//! Probes point at 127.0.0.1 ports the test controls: one held open by a listener, one closed.

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::browser::{artifacts, chromium};
use support::{detailed, free_port, http_exchange as request, http_get, wait_for, Medic, TestRun};

const TOKEN: &str = "test-token-4f1c";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn post(addr: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let (status, _, body) = request(addr, "POST", path, &headers, body);
    (status, body)
}

/// Writes a config with a probe `down` (closed port, fails) and `up` (the listener, passes),
/// plus `secretive`, a MongoDB probe whose URI carries a password, against the closed port.
fn probe_config(dir: &std::path::Path, open: u16) -> PathBuf {
    let closed = free_port();
    let path = dir.join("medic.yaml");
    std::fs::write(
        &path,
        format!(
            "probes:
  down:
    type: tcp
    host: 127.0.0.1
    port: {closed}
    interval: 1s
    timeout: 1s
  up:
    type: tcp
    host: 127.0.0.1
    port: {open}
    interval: 1s
    timeout: 1s
  secretive:
    type: mongodb
    uri: mongodb://medic:hunter2-very-secret@127.0.0.1:{closed}/?serverSelectionTimeoutMS=200
    interval: 2s
    timeout: 2s
"
        ),
    )
    .unwrap();
    path
}

/// A strict reader of the text format `/metrics` answers (OpenMetrics 1.0, which Prometheus
/// scrapes): every line is a HELP, TYPE or UNIT comment, a sample of a declared family, or the
/// final `# EOF`. Panics on anything else.
#[derive(Debug, Default)]
struct Scrape {
    /// family name → type.
    types: BTreeMap<String, String>,
    /// (sample name, labels, value).
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.last(),
            Some(&"# EOF"),
            "the exposition ends with # EOF"
        );
        for line in &lines[..lines.len() - 1] {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kind, name, value) = (
                    parts.next().unwrap(),
                    parts.next().expect("a metric name"),
                    parts.next().unwrap_or(""),
                );
                valid_name(name);
                match kind {
                    "TYPE" => {
                        assert!(
                            [
                                "counter",
                                "gauge",
                                "histogram",
                                "info",
                                "stateset",
                                "unknown"
                            ]
                            .contains(&value),
                            "bad type in {line}"
                        );
                        scrape.types.insert(name.to_string(), value.to_string());
                    }
                    "HELP" | "UNIT" => {}
                    _ => panic!("unexpected comment: {line}"),
                }
                continue;
            }
            let (name, rest) = match line.find('{') {
                Some(i) => (&line[..i], &line[i..]),
                None => line.split_at(line.find(' ').expect("a sample has a value")),
            };
            valid_name(name);
            let mut labels = BTreeMap::new();
            let rest = if let Some(body) = rest.strip_prefix('{') {
                let mut chars = body.char_indices().peekable();
                let end;
                loop {
                    let (start, c) = chars.next().expect("labels close");
                    if c == '}' {
                        end = start;
                        break;
                    }
                    if c == ',' {
                        continue;
                    }
                    let eq = body[start..].find('=').expect("label =") + start;
                    let key = &body[start..eq];
                    valid_name(key);
                    while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                        chars.next();
                    }
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("label value closes") {
                            (_, '\\') => match chars.next().unwrap().1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            (_, '"') => break,
                            (_, c) => value.push(c),
                        }
                    }
                    labels.insert(key.to_string(), value);
                }
                &body[end + 1..]
            } else {
                rest
            };
            let value = rest.trim();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let family = ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| scrape.types.contains_key(*f))
                })
                .unwrap_or(name);
            assert!(
                scrape.types.contains_key(family),
                "sample {name} has no TYPE line"
            );
            scrape.samples.push((name.to_string(), labels, value));
        }
        scrape
    }

    /// The value of the sample `name` whose labels include every pair of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }
}

fn valid_name(name: &str) {
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "invalid metric or label name {name:?}"
    );
}

fn scrape(addr: &str) -> Scrape {
    let (status, head, body) = request(addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    Scrape::parse(&body)
}

#[test]
fn every_route_answers_with_the_right_status_and_token_rules() {
    let run = TestRun::new("apiroutes");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path(), listener.local_addr().unwrap().port());
    let medic = Medic::start(&[
        ("MEDIC_PROJECT", &run.id),
        ("MEDIC_CONFIG", config.to_str().unwrap()),
        ("MEDIC_API_TOKEN", TOKEN),
        ("MEDIC_FAILURE_THRESHOLD", "2"),
    ]);
    let addr = medic.addr();

    let (status, body) = http_get(&addr, "/health");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"healthy"}"#));

    // The detailed view needs the token once one is set.
    let (status, head, body) = request(&addr, "GET", "/health/detailed", &[], "");
    assert_eq!(status, 401, "{body}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, _, _) = request(
        &addr,
        "GET",
        "/health/detailed",
        &[("Authorization", "Bearer wrong")],
        "",
    );
    assert_eq!(status, 401);

    wait_for(
        "down unhealthy, up healthy",
        Duration::from_secs(30),
        || {
            let d = detailed(&addr, Some(TOKEN));
            d["components"]["down"]["status"] == "unhealthy"
                && d["components"]["up"]["status"] == "healthy"
        },
    );
    let d = detailed(&addr, Some(TOKEN));
    assert_eq!(d["status"], "unhealthy", "{d:#}");
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["uptime_seconds"].as_i64().unwrap() >= 0);
    assert!(d["started_at"].is_string());
    assert_eq!(d["project"], run.id.as_str());
    assert_eq!(d["docker"]["reachable"], true);
    assert!(d["docker"]["api_version"].is_string(), "{d:#}");
    assert!(d["docker"]["version"].is_string());
    assert_eq!(d["docker"]["engine"], "Docker Engine", "{d:#}");
    assert_eq!(d["email"]["configured"], false);
    let down = &d["components"]["down"];
    assert_eq!(down["name"], "down");
    assert!(
        down["consecutive_failures"].as_u64().unwrap() >= 2,
        "{down:#}"
    );
    assert_eq!(down["last_check"]["check"], "probe:down");
    assert_eq!(down["last_check"]["ok"], false);
    assert!(down["last_check"]["at"].is_string());
    assert!(down["last_check"]["latency_ms"].is_u64());
    assert!(down["last_check"]["error"]
        .as_str()
        .unwrap()
        .contains("connect"));
    assert_eq!(down["probes"]["down"]["type"], "tcp");
    assert_eq!(down["probes"]["down"]["ok"], false);
    assert_eq!(down["probes"]["down"]["severity"], "critical");
    assert!(down["probes"]["down"]["steps"].is_array());
    assert!(down["containers"].as_array().unwrap().is_empty());
    assert!(down["silenced_until"].is_null());
    let up = &d["components"]["up"];
    assert_eq!(up["last_check"]["ok"], true);
    assert!(up["last_check"]["error"].is_null());
    assert_eq!(up["consecutive_failures"], 0);

    // No secret in any answer: the MongoDB probe's password is never shown.
    wait_for("the secretive probe ran", Duration::from_secs(20), || {
        detailed(&addr, Some(TOKEN))["components"]["secretive"]["probes"]["secretive"].is_object()
    });
    for path in ["/health/detailed", "/metrics", "/"] {
        let (_, _, body) = request(&addr, "GET", path, &[("Authorization", &bearer(TOKEN))], "");
        assert!(!body.contains("hunter2"), "{path} shows a password: {body}");
    }

    // Admin routes: 401 without or with a wrong token.
    for path in [
        "/api/v1/probes/down/run",
        "/api/v1/components/down/silence?duration=1h",
        "/api/v1/report/send",
    ] {
        assert_eq!(post(&addr, path, None, "").0, 401, "{path}");
        assert_eq!(post(&addr, path, Some("nope"), "").0, 401, "{path}");
    }

    // Run a probe now: its result, whether it passed or not.
    let (status, body) = post(&addr, "/api/v1/probes/up/run", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let result: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(result["name"], "up");
    assert_eq!(result["ok"], true);
    let (status, body) = post(&addr, "/api/v1/probes/down/run", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ok"], false);
    let (status, body) = post(&addr, "/api/v1/probes/nosuch/run", Some(TOKEN), "");
    assert_eq!(status, 404);
    assert!(body.contains("down") && body.contains("up"), "{body}");

    // Silence: the duration from the query or a JSON body; bad input is a 400.
    let (status, body) = post(&addr, "/api/v1/components/down/silence", Some(TOKEN), "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("duration"), "{body}");
    let path = "/api/v1/components/down/silence?duration=soon";
    assert_eq!(post(&addr, path, Some(TOKEN), "").0, 400);
    let path = "/api/v1/components/nosuch/silence?duration=1h";
    assert_eq!(post(&addr, path, Some(TOKEN), "").0, 404);
    let (status, body) = post(
        &addr,
        "/api/v1/components/down/silence",
        Some(TOKEN),
        r#"{"duration": "2h"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["component"], "down");
    let until = answer["silenced_until"].as_str().unwrap().to_string();
    let d = detailed(&addr, Some(TOKEN));
    assert_eq!(d["components"]["down"]["silenced_until"], until.as_str());
    let m = scrape(&addr);
    assert_eq!(
        m.value("medic_component_silenced", &[("component", "down")]),
        Some(1.0)
    );

    // The report goes through the notifiers' hook: queued (200), refused by delivery (502), or
    // 501 with a clear message in a build without the hook. Always a JSON answer.
    let (status, body) = post(&addr, "/api/v1/report/send", Some(TOKEN), "");
    assert!(matches!(status, 200 | 501 | 502), "{status}: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(answer.is_object(), "{body}");

    // The page and the metrics need no token; unknown routes are 404.
    let (status, head, body) = request(&addr, "GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("http-equiv=\"refresh\""));
    assert!(!body.contains("<script") && !body.contains("<link") && !body.contains("src="));
    assert_eq!(http_get(&addr, "/nosuch").0, 404);
    drop(listener);
}

#[test]
fn admin_routes_are_forbidden_until_a_token_is_configured() {
    let run = TestRun::new("apinotoken");
    let medic = Medic::start(&[
        ("MEDIC_PROJECT", &run.id),
        ("MAIL_SERVER", "127.0.0.1"),
        ("MAIL_PORT", "2525"),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    let addr = medic.addr();
    for path in [
        "/api/v1/probes/any/run",
        "/api/v1/components/any/silence?duration=1h",
        "/api/v1/report/send",
    ] {
        let (status, body) = post(&addr, path, Some("anything"), "");
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("MEDIC_API_TOKEN"), "{body}");
    }
    // Without a token configured the detailed view is open.
    let d = detailed(&addr, None);
    assert_eq!(d["email"]["configured"], true);
    assert!(d["components"].is_object());
}

#[test]
fn a_silenced_component_is_neither_restarted_nor_alerted_while_unhealthy() {
    let run = TestRun::new("apisilence");
    let medic = Medic::start(&[("MEDIC_PROJECT", &run.id), ("MEDIC_API_TOKEN", TOKEN)]);
    let addr = medic.addr();
    let web = run.offline_service("web", &[]);
    wait_for("web healthy", Duration::from_secs(30), || {
        detailed(&addr, Some(TOKEN))["components"]["web"]["status"] == "healthy"
    });
    let (status, body) = post(
        &addr,
        "/api/v1/components/web/silence?duration=1h",
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 200, "{body}");

    run.break_health(&web);
    wait_for("web reported unhealthy", Duration::from_secs(30), || {
        let d = detailed(&addr, Some(TOKEN));
        d["components"]["web"]["status"] == "unhealthy"
    });
    // Several reconciles (1 s each) while unhealthy: still no restart, and the alert is held.
    medic.wait_log("the restart held", Duration::from_secs(20), |l| {
        l.contains("not restarting") && l.contains("silenced")
    });
    medic.wait_checked(&format!("docker:{web}"), 4, Duration::from_secs(30));
    assert_eq!(run.restarts(&web), 0, "{}", medic.dump());
    let d = detailed(&addr, Some(TOKEN));
    let view = &d["components"]["web"];
    assert!(view["silenced_until"].is_string(), "{view:#}");
    assert_eq!(view["containers"][0]["health"], "unhealthy");
    assert_eq!(view["restarts"]["count_24h"], 0);
    let m = scrape(&addr);
    assert_eq!(
        m.value("medic_alerts_held_total", &[("reason", "silenced")]),
        Some(1.0),
        "the CRITICAL alert is held back"
    );
    assert!(medic
        .current_lines()
        .iter()
        .any(|l| l.contains("alert not sent")));

    // Lifting the silence lets medic heal it.
    let (status, body) = post(
        &addr,
        "/api/v1/components/web/silence?duration=0",
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["silenced_until"].is_null());
    wait_for("web restarted", Duration::from_secs(30), || {
        run.restarts(&web) >= 1
    });
}

#[test]
fn metrics_parse_and_count_probe_failures_and_restarts() {
    let run = TestRun::new("apimetrics");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path(), listener.local_addr().unwrap().port());
    let medic = Medic::start(&[
        ("MEDIC_PROJECT", &run.id),
        ("MEDIC_CONFIG", config.to_str().unwrap()),
    ]);
    let addr = medic.addr();
    let web = run.offline_service("web", &[]);
    let service = format!("{}/web", run.id);
    wait_for("web healthy", Duration::from_secs(30), || {
        detailed(&addr, None)["components"]["web"]["status"] == "healthy"
    });

    let failed = |m: &Scrape| {
        m.value(
            "medic_probe_runs_total",
            &[("probe", "down"), ("result", "critical")],
        )
        .unwrap_or(0.0)
    };
    let first = scrape(&addr);
    assert_eq!(first.types["medic_probe_runs"], "counter");
    assert_eq!(first.types["medic_probe_duration_seconds"], "histogram");
    assert_eq!(first.types["medic_restarts"], "counter");
    assert_eq!(first.value("medic_docker_reachable", &[]), Some(1.0));
    assert_eq!(first.value("medic_up", &[]), Some(1.0));
    assert_eq!(first.value("medic_outbox_depth", &[]), Some(0.0));
    assert_eq!(
        first.value("medic_probe_success", &[("probe", "up")]),
        Some(1.0)
    );
    assert_eq!(
        first.value(
            "medic_restarts_total",
            &[("service", &service), ("component", "web")]
        ),
        Some(0.0)
    );
    let before = failed(&first);
    wait_for("a probe failure counted", Duration::from_secs(20), || {
        failed(&scrape(&addr)) > before
    });
    let m = scrape(&addr);
    assert_eq!(
        m.value("medic_probe_success", &[("probe", "down")]),
        Some(0.0)
    );
    assert!(
        m.value(
            "medic_check_consecutive_failures",
            &[("check", "probe:down")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        m.value("medic_probe_duration_seconds_count", &[("probe", "down")])
            .unwrap()
            >= 1.0
    );
    // Every scheduled run is counted in the lag histogram, and none waited anywhere near a second
    // on this idle medic (two probes, 32 run slots).
    assert_eq!(m.types["medic_probe_schedule_lag_seconds"], "histogram");
    let lag_runs = m
        .value("medic_probe_schedule_lag_seconds_count", &[])
        .unwrap();
    assert!(lag_runs >= 2.0, "lag observed for {lag_runs} runs");
    assert_eq!(
        m.value("medic_probe_schedule_lag_seconds_bucket", &[("le", "1.0")]),
        Some(lag_runs),
        "every run started within a second of its schedule"
    );

    run.break_health(&web);
    wait_for("web restarted", Duration::from_secs(30), || {
        run.restarts(&web) >= 1
    });
    wait_for("the restart counted", Duration::from_secs(10), || {
        scrape(&addr).value("medic_restarts_total", &[("service", &service)]) == Some(1.0)
    });
    let m = scrape(&addr);
    assert_eq!(
        m.value("medic_restarts_24h", &[("service", &service)]),
        Some(1.0)
    );
    assert_eq!(
        m.value("medic_restart_budget_left", &[("service", &service)]),
        Some(2.0)
    );
    drop(listener);
}

#[test]
fn the_status_page_shows_every_component_in_chromium() {
    let run = TestRun::new("apipage");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path(), listener.local_addr().unwrap().port());
    let medic = Medic::start(&[
        ("MEDIC_PROJECT", &run.id),
        ("MEDIC_CONFIG", config.to_str().unwrap()),
        ("MEDIC_API_TOKEN", TOKEN),
    ]);
    let addr = medic.addr();
    let _web = run.offline_service("web", &[]);
    wait_for("every component checked", Duration::from_secs(30), || {
        let d = detailed(&addr, Some(TOKEN));
        d["components"]["web"]["status"] == "healthy"
            && d["components"]["down"]["status"] == "unhealthy"
            && d["components"]["up"]["status"] == "healthy"
    });
    let path = "/api/v1/components/down/silence?duration=1h";
    assert_eq!(post(&addr, path, Some(TOKEN), "").0, 200);

    let url = format!("http://{addr}/");
    let screenshot = artifacts().join("status.png");
    let _ = std::fs::remove_file(&screenshot);
    chromium(&[
        &format!("--screenshot={}", screenshot.display()),
        "--window-size=1000,1400",
        &url,
    ]);
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "the screenshot was written"
    );
    let phone = artifacts().join("status-phone.png");
    chromium(&[
        &format!("--screenshot={}", phone.display()),
        "--window-size=390,1200",
        &url,
    ]);

    let dom = chromium(&["--dump-dom", &url]);
    let card = |name: &str| -> String {
        let start = dom
            .find(&format!("data-component=\"{name}\""))
            .unwrap_or_else(|| panic!("no card for {name} in {dom}"));
        let end = dom[start..].find("</section>").map(|e| start + e).unwrap();
        dom[start..end].to_string()
    };
    let web = card("web");
    assert!(web.contains(">healthy<"), "{web}");
    assert!(web.contains("Restarts"), "{web}");
    assert!(web.contains(&format!("{}-web", run.id)), "{web}");
    let down = card("down");
    assert!(down.contains(">unhealthy<"), "{down}");
    assert!(down.contains(">silenced<"), "{down}");
    assert!(down.contains("Latency"), "{down}");
    assert!(down.contains("class=\"strip\""), "{down}");
    assert!(down.contains("failed"), "{down}");
    let up = card("up");
    assert!(up.contains(">healthy<"), "{up}");
    assert!(dom.contains("id=\"overall\">unhealthy<"), "{dom}");
    assert!(!dom.contains("hunter2"));
    drop(listener);
}

#[test]
fn docker_unreachable_is_degraded_not_a_failed_health_check() {
    // An engine that went away: nothing listens on the port.
    let medic = Medic::start(&[
        ("DOCKER_HOST", &format!("tcp://127.0.0.1:{}", free_port())),
        ("MEDIC_PROJECT", "nothing"),
    ]);
    let addr = medic.addr();
    wait_for("the engine error reported", Duration::from_secs(20), || {
        detailed(&addr, None)["docker"]["error"].is_string()
    });
    // Load balancers keep medic: it is fine and keeps retrying.
    let (status, body) = http_get(&addr, "/health");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"healthy"}"#));
    let d = detailed(&addr, None);
    assert_eq!(d["status"], "degraded", "{d:#}");
    assert_eq!(d["docker"]["reachable"], false);
    let m = scrape(&addr);
    assert_eq!(m.value("medic_docker_reachable", &[]), Some(0.0));
    assert_eq!(m.value("medic_up", &[]), Some(1.0));
}
