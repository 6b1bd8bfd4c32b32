//! The daily report from a known history: `medic report` prints the right uptime, failures and
//! restarts per component; its HTML renders in headless Chromium (Debian's `chromium`, installed
//! by scripts/testenv.sh) and the screenshot is kept under `artifacts/`; `medic report --send`
//! delivers it through the test environment's plain SMTP server (aiosmtpd).
//!
//! The report's schedule (cron in `TZ`, on tokio's paused clock) is tested in
//! src/notify/service.rs and src/notify/report.rs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use medic::store::report::CheckRun;
use medic::store::{RestartRecord, Store};
use support::browser::{artifacts, chromium};

/// A store holding a known day (times mid-hour, clear of the strip's hour boundaries): `web`
/// down 30 minutes 11 hours ago and restarted once;
/// `worker` two failed upload probe runs, never down; `db` down for the last 2 hours, one alert
/// held back.
fn known_history(dir: &Path) {
    let store = Store::open(dir).unwrap();
    let now = Utc::now();
    let at = |hours: i64, minutes: i64| now - Span::hours(hours) + Span::minutes(minutes);
    for (t, component, kind) in [
        (at(11, 10), "web", "unhealthy"),
        (at(11, 10), "web", "alert_critical"),
        (at(11, 40), "web", "recovered"),
        (at(11, 40), "web", "alert_recovered"),
        (at(4, 30), "worker", "probe_failed"),
        (at(4, 35), "worker", "probe_failed"),
        (at(2, 0), "db", "probe_failed"),
        (at(2, 0), "db", "alert_critical"),
        (at(1, 0), "db", "alert_held"),
    ] {
        store.record_history(t, component, kind, "test").unwrap();
    }
    store
        .record_restart(&RestartRecord {
            at: at(11, 10),
            service: "shop/web".into(),
            container: "shop-web-1".into(),
            reason: "Docker reports the container unhealthy".into(),
            error: None,
        })
        .unwrap();
    for (minutes, ok, error) in [
        (30, false, Some("extracted text lacks the token")),
        (35, false, Some("extracted text lacks the token")),
        (90, true, None),
    ] {
        store
            .record_check_run(&CheckRun {
                at: at(4, minutes),
                component: "worker".into(),
                probe: "upload".into(),
                probe_type: "upload".into(),
                ok,
                latency_ms: 420,
                error: error.map(str::to_string),
                details: Some(r#"{"processed_in_ms":380}"#.into()),
            })
            .unwrap();
    }
}

fn medic(data: &Path, vars: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MEDIC_DATA_DIR", data)
        .env("MEDIC_STACK_NAME", "shop")
        .env("TZ", "Europe/Berlin")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The plain-text row of a component: name, status, uptime, failures, restarts, held, latency.
fn row(text: &str, component: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(component))
        .unwrap_or_else(|| panic!("no row for {component} in\n{text}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_report_of_a_known_day_has_the_right_figures() {
    let dir = tempfile::tempdir().unwrap();
    known_history(dir.path());
    let (ok, text, err) = medic(dir.path(), &[], &["report"]);
    assert!(ok, "{err}");
    assert!(text.starts_with("❌ Daily Health Report - shop"), "{text}");
    assert!(text.contains("Something is failing now"), "{text}");
    // component, status, uptime, failures, restarts, held, latency (2 words), strip
    let web = row(&text, "web");
    assert_eq!(&web[1..6], ["healthy", "97.92%", "1", "1", "0"], "{text}");
    let worker = row(&text, "worker");
    assert_eq!(
        &worker[1..6],
        ["healthy", "100.00%", "2", "0", "0"],
        "{text}"
    );
    assert_eq!(&worker[6..8], ["420", "ms"], "{text}");
    let db = row(&text, "db");
    assert_eq!(db[1], "failing", "{text}");
    assert_eq!((db[3].as_str(), db[5].as_str()), ("1", "1"), "{text}");
    let uptime: f64 = db[2].trim_end_matches('%').parse().unwrap();
    assert!(
        (91.6..=91.7).contains(&uptime),
        "db was down 2 of 24 hours: {text}"
    );
    // The strip: web down in one hour, worker's failures in one, db down the last two.
    assert_eq!(web.last().unwrap().matches('#').count(), 1, "{text}");
    assert_eq!(worker.last().unwrap().matches('~').count(), 1, "{text}");
    assert!(db.last().unwrap().ends_with("##"), "{text}");
    assert!(
        text.contains("upload (upload, worker): ok in 420 ms, 2/3 runs failed"),
        "{text}"
    );
    assert!(text.contains("Times are in Europe/Berlin"));

    // A bad setting is a configuration error: exit 2, naming the variable.
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("report")
        .env_clear()
        .env("MEDIC_DATA_DIR", dir.path())
        .env("TZ", "Mars/Olympus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TZ=\"Mars/Olympus\" is invalid"));
}

#[test]
fn the_html_report_renders_legibly_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    known_history(dir.path());
    let (ok, html, err) = medic(dir.path(), &[], &["report", "--html"]);
    assert!(ok, "{err}");
    assert!(html.contains("<table"), "{html}");
    assert!(
        !html.contains("<style"),
        "inline styles only, for mail clients"
    );
    let page = artifacts().join("daily-report.html");
    std::fs::write(&page, &html).unwrap();
    let screenshot = artifacts().join("daily-report.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("file://{}", page.display());
    chromium(&[
        &format!("--screenshot={}", screenshot.display()),
        "--window-size=1000,1400",
        &url,
    ]);
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let dom = chromium(&["--dump-dom", &url]);
    for text in [
        "Daily Health Report",
        "Something is failing now",
        "97.92%",
        "Components",
        "Probe latency",
        "processed_in_ms=380",
        "2 / 3",
        "web",
        "worker",
        "db",
        "Europe/Berlin",
    ] {
        assert!(
            dom.contains(text),
            "{text:?} missing from the rendered page"
        );
    }
    // 24 cells per component in its strip.
    assert_eq!(dom.matches("height:14px").count(), 3 * 24);
}

#[test]
fn medic_report_send_delivers_through_smtp() {
    let dir = tempfile::tempdir().unwrap();
    known_history(dir.path());
    let rcpt = format!(
        "report-{}-{}@example.com",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap()
    );
    let port = std::env::var("MEDIC_TEST_SMTP_PORT").unwrap_or_else(|_| "2525".into());
    let mail_dir = std::env::var("MEDIC_TEST_SMTP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".testenv/smtp/plain"));
    let vars = [
        ("MAIL_SERVER", "127.0.0.1"),
        ("MAIL_PORT", port.as_str()),
        ("MAIL_USE_TLS", "false"),
        ("ADMIN_EMAIL", rcpt.as_str()),
    ];
    let (ok, out, err) = medic(dir.path(), &vars, &["report", "--send"]);
    assert!(ok, "{err}");
    assert!(out.contains("sent through 127.0.0.1"), "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let data = loop {
        let found = std::fs::read_dir(&mail_dir)
            .unwrap()
            .flatten()
            .find_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let json: serde_json::Value = serde_json::from_str(&text).ok()?;
                json["rcpt_tos"]
                    .as_array()?
                    .iter()
                    .any(|r| r.as_str() == Some(&rcpt))
                    .then(|| json["data"].as_str().unwrap_or_default().to_string())
            });
        if let Some(data) = found {
            break data;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the report did not arrive"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let message = mail_parser::MessageParser::default()
        .parse(data.as_bytes())
        .unwrap();
    assert_eq!(message.subject(), Some("❌ Daily Health Report - shop"));
    assert!(message.body_text(0).unwrap().contains("97.92%"));
    assert!(message
        .body_html(0)
        .unwrap()
        .contains("Daily Health Report"));

    // test-email: exit 0 and where it went; unreachable server: exit 1 and why.
    let (ok, out, err) = medic(dir.path(), &vars, &["test-email"]);
    assert!(ok, "{err}");
    assert!(out.contains(&rcpt), "{out}");
    let (ok, _, err) = medic(
        dir.path(),
        &[
            ("MAIL_SERVER", "127.0.0.1"),
            ("MAIL_PORT", "1"),
            ("MAIL_USE_TLS", "false"),
            ("ADMIN_EMAIL", rcpt.as_str()),
        ],
        &["test-email"],
    );
    assert!(!ok);
    assert!(
        err.contains("cannot connect to SMTP server 127.0.0.1:1"),
        "{err}"
    );
    let (ok, _, err) = medic(dir.path(), &[], &["test-email"]);
    assert!(!ok);
    assert!(err.contains("email is not configured"), "{err}");
}

/// A CRITICAL email's HTML, as a mail client would show it: kept as an artifact and checked.
#[test]
fn the_critical_email_renders_legibly_in_chromium() {
    use medic::notify::render::{alert_email, AlertItem, RenderContext};
    use medic::notify::{Alert, AlertKind};
    let at = Utc::now();
    let item = AlertItem {
        alert: Alert {
            kind: AlertKind::Critical,
            component: "upload".into(),
            check: "upload-pipeline".into(),
            check_type: "upload".into(),
            status: "failing".into(),
            error: Some("step poll: the document was not processed within 60s".into()),
            consecutive_failures: 3,
            action: "restarted shop-worker-1".into(),
            at,
        },
        held: Default::default(),
        reminder: false,
        outage_since: None,
    };
    let ctx = RenderContext {
        stack: "shop".into(),
        tz: chrono_tz::Europe::Berlin,
        public_url: Some("https://medic.example.com".into()),
        alert_interval: Duration::from_secs(3600),
        now: at,
    };
    let email = alert_email(&[item], &ctx);
    assert_eq!(email.subject, "🚨 CRITICAL: upload failure - shop");
    let page = artifacts().join("alert-critical.html");
    std::fs::write(&page, email.html.unwrap()).unwrap();
    let screenshot = artifacts().join("alert-critical.png");
    let url = format!("file://{}", page.display());
    chromium(&[
        &format!("--screenshot={}", screenshot.display()),
        "--window-size=800,1000",
        &url,
    ]);
    assert!(std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000));
    let dom = chromium(&["--dump-dom", &url]);
    for text in [
        "Time of failure",
        "Actions taken",
        "restarted shop-worker-1",
        "Recommended manual actions",
        "worker",
        "Open the status page",
    ] {
        assert!(
            dom.contains(text),
            "{text:?} missing from the rendered email"
        );
    }
}
