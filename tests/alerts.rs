//! Alerts end to end: a real medic process, real containers on the real engine, and the test
//! environment's real SMTP servers (aiosmtpd, scripts/smtp_server.py; see shared TESTING.md).
//!
//! The SMTP folders are shared by tests running in parallel, so each test sends to its own
//! unique recipient and reads only the messages addressed to it. Start the servers first:
//! `scripts/testenv.sh up` (scripts/test.sh does it).
//!
//! The rate limit over two simulated hours and the report's schedule run under tokio's paused
//! clock in the unit tests of src/notify (limiter.rs, service.rs, report.rs); here everything
//! is real time, in seconds.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use support::mail::{mails_to, plain_dir, plain_port, unique_rcpt, wait_mails, Mail, OwnSmtp};
use support::{free_port, http_request as request, state_dir, var, wait_for, Medic, TestRun};

fn count(mails: &[Mail], prefix: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.subject.starts_with(prefix))
        .count()
}

/// Mail variables for the plain test server.
fn plain_mail(rcpt: &str) -> Vec<(String, String)> {
    mail_on(&plain_port(), rcpt)
}

/// Mail variables for a plain SMTP server on 127.0.0.1:`port` (the test's own, or the shared one).
fn mail_on(port: &str, rcpt: &str) -> Vec<(String, String)> {
    vec![
        ("MAIL_SERVER".into(), "127.0.0.1".into()),
        ("MAIL_PORT".into(), port.into()),
        ("MAIL_USE_TLS".into(), "false".into()),
        ("ADMIN_EMAIL".into(), rcpt.into()),
        ("MAIL_DEFAULT_SENDER".into(), "medic@stack.test".into()),
    ]
}

/// A container that fails past its threshold: one CRITICAL with the restart under "actions
/// taken"; its recovery: one RECOVERED; failing again with the budget spent: one GAVE UP.
#[test]
fn critical_recovered_and_gave_up_each_arrive_once() {
    let run = TestRun::new("alertcycle");
    let rcpt = unique_rcpt("cycle");
    let stack = format!("stack-{}", run.id);
    let mut vars = plain_mail(&rcpt);
    vars.extend([
        ("MEDIC_PROJECT".to_string(), run.id.clone()),
        ("MEDIC_STACK_NAME".into(), stack.clone()),
        ("MEDIC_ALERT_GROUP_WINDOW".into(), "1s".into()),
        ("MEDIC_RESTART_BUDGET".into(), "1".into()),
        ("MEDIC_RESTART_COOLDOWN".into(), "1s".into()),
        ("TZ".into(), "Europe/Berlin".into()),
        (
            "MEDIC_PUBLIC_URL".into(),
            "http://medic.stack.test:8080".into(),
        ),
    ]);
    let medic = Medic::start_owned(&vars);
    let web = run.healthy_web();

    run.break_health(&web);
    let mails = wait_mails(&plain_dir(), &rcpt, Duration::from_secs(60), &medic, |m| {
        count(m, "✅ RECOVERED") >= 1
    });
    let critical = &mails[0];
    assert_eq!(
        critical.subject,
        format!("🚨 CRITICAL: web failure - {stack}")
    );
    assert!(
        critical
            .text
            .contains(&format!("Actions taken: restarted {web}")),
        "{}",
        critical.text
    );
    assert!(
        critical.text.contains("Status:     unhealthy"),
        "{}",
        critical.text
    );
    assert!(critical.text.contains("Error:"), "{}", critical.text);
    assert!(
        critical.text.contains("CET") || critical.text.contains("CEST"),
        "times in TZ: {}",
        critical.text
    );
    assert!(
        critical.text.contains("docker compose logs"),
        "{}",
        critical.text
    );
    assert!(critical.text.contains("http://medic.stack.test:8080/"));
    assert!(critical.html.contains("Recommended manual actions"));
    assert!(critical.html.contains("Actions taken"));
    assert_eq!(
        mails[1].subject,
        format!("✅ RECOVERED: web - {stack}"),
        "{mails:?}"
    );

    // Broken again: the budget of one restart is spent.
    wait_for("web healthy again", Duration::from_secs(30), || {
        run.health(&web) == "healthy"
    });
    run.break_health(&web);
    let mails = wait_mails(&plain_dir(), &rcpt, Duration::from_secs(60), &medic, |m| {
        count(m, "⛔ GAVE UP") >= 1
    });
    let gave_up = mails.iter().find(|m| m.subject.starts_with("⛔")).unwrap();
    assert_eq!(gave_up.subject, format!("⛔ GAVE UP: web - {stack}"));
    assert!(gave_up.text.contains("gave up"), "{}", gave_up.text);
    // Let further rounds pass: nothing more arrives, each kind came exactly once (the second
    // CRITICAL falls under the hourly limit and is counted in the GAVE UP email instead).
    // Evidence that they passed: medic saw web failing five more times (well past the 1 s
    // group window of any alert those looks raised).
    medic.wait_checked(&format!("docker:{web}"), 5, Duration::from_secs(30));
    let mails = mails_to(&plain_dir(), &rcpt);
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(count(&mails, "🚨 CRITICAL"), 1, "{subjects:?}");
    assert_eq!(count(&mails, "✅ RECOVERED"), 1, "{subjects:?}");
    assert_eq!(count(&mails, "⛔ GAVE UP"), 1, "{subjects:?}");
    assert!(
        gave_up.text.contains("held back") && gave_up.text.contains("1 CRITICAL"),
        "the held CRITICAL is summarised: {}",
        gave_up.text
    );
}

/// Two components failing in the same round: one email naming both.
#[test]
fn two_components_failing_in_one_round_make_one_email() {
    let run = TestRun::new("alerttwo");
    let rcpt = unique_rcpt("two");
    let stack = format!("stack-{}", run.id);
    let mut vars = plain_mail(&rcpt);
    vars.extend([
        ("MEDIC_PROJECT".to_string(), run.id.clone()),
        ("MEDIC_STACK_NAME".into(), stack.clone()),
        ("MEDIC_ALERT_GROUP_WINDOW".into(), "3s".into()),
    ]);
    let medic = Medic::start_owned(&vars);
    let api = run.offline_service("api", &[]);
    let db = run.offline_service("db", &[]);
    for c in [&api, &db] {
        wait_for("healthy", Duration::from_secs(30), || {
            run.health(c) == "healthy"
        });
    }
    run.break_health(&api);
    run.break_health(&db);
    wait_mails(&plain_dir(), &rcpt, Duration::from_secs(60), &medic, |m| {
        count(m, "🚨 CRITICAL") >= 1
    });
    // A second email for the round would be sent within the 3 s group window: medic looks at
    // both failing services four more times (a reconcile a second) before counting.
    for c in [&api, &db] {
        medic.wait_checked(&format!("docker:{c}"), 4, Duration::from_secs(30));
    }
    let mails: Vec<Mail> = mails_to(&plain_dir(), &rcpt)
        .into_iter()
        .filter(|m| m.subject.starts_with("🚨"))
        .collect();
    assert_eq!(mails.len(), 1, "one email for the round: {mails:?}");
    // A container without network restarts in a second: its recovery may share the round.
    let subject = &mails[0].subject;
    let critical_part = subject.split(" failure").next().unwrap();
    assert!(
        critical_part == "🚨 CRITICAL: api, db" || critical_part == "🚨 CRITICAL: db, api",
        "{subject}"
    );
    assert!(subject.ends_with(&format!(" - {stack}")), "{subject}");
    assert!(mails[0].text.contains(&format!("restarted {api}")));
    assert!(mails[0].text.contains(&format!("restarted {db}")));
}

/// The SMTP server is down while alerts happen; medic is SIGKILLed and started again; the
/// server comes back: every alert arrives, exactly once.
#[test]
fn alerts_survive_smtp_down_and_sigkill_and_arrive_exactly_once() {
    let run = TestRun::new("alertoutbox");
    let rcpt = unique_rcpt("outbox");
    let stack = format!("stack-{}", run.id);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = mail_on(&port.to_string(), &rcpt);
    vars.extend([
        ("MEDIC_PROJECT".into(), run.id.clone()),
        ("MEDIC_STACK_NAME".into(), stack.clone()),
        ("MEDIC_ALERT_GROUP_WINDOW".into(), "1s".into()),
        ("MEDIC_OUTBOX_RETRY_MAX".into(), "2s".into()),
    ]);
    let medic = Medic::start_owned(&vars);
    let web = run.healthy_web();
    run.break_health(&web);
    // Both the CRITICAL and the RECOVERED wait in the outbox, the server being down.
    let db = medic::store::Store::open(medic.data_dir()).unwrap();
    let pending = |db: &medic::store::Store| {
        db.outbox_recent(100)
            .unwrap()
            .into_iter()
            .filter(|m| m.state == "pending")
            .map(|m| m.subject)
            .collect::<Vec<_>>()
    };
    wait_for("two alerts in the outbox", Duration::from_secs(60), || {
        pending(&db).len() == 2
    });
    medic.wait_log("a failed delivery", Duration::from_secs(10), |l| {
        l.contains("delivery failed; the message waits in the outbox")
    });

    let medic = medic.sigkill_and_restart();
    assert_eq!(pending(&db).len(), 2, "the outbox survived the SIGKILL");
    let _server = OwnSmtp::start(port, dir.path(), &[]);
    let mails = wait_mails(dir.path(), &rcpt, Duration::from_secs(30), &medic, |m| {
        m.len() >= 2
    });
    // Nothing is sent twice: once the outbox has noted both as delivered (and logged it),
    // nothing is due, so no copy can follow.
    wait_for(
        "both rows sent in the outbox",
        Duration::from_secs(30),
        || pending(&db).is_empty(),
    );
    wait_for("two deliveries logged", Duration::from_secs(10), || {
        medic
            .current_lines()
            .iter()
            .filter(|l| l.contains("\"delivered\""))
            .count()
            >= 2
    });
    let mails_after = mails_to(dir.path(), &rcpt);
    let subjects: Vec<&str> = mails_after.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(mails_after.len(), 2, "{subjects:?}");
    assert_eq!(count(&mails, "🚨 CRITICAL: web failure"), 1, "{subjects:?}");
    assert_eq!(count(&mails, "✅ RECOVERED: web"), 1, "{subjects:?}");
    assert!(pending(&db).is_empty());
}

/// STARTTLS with AUTH against the test server with the test's own CA; the report goes out
/// through the outbox when asked over the admin API.
#[test]
fn starttls_with_auth_delivers() {
    let rcpt = unique_rcpt("tls");
    let stack = format!("tls-{}", std::process::id());
    let token = "alerts-test-token";
    let medic = Medic::start_owned(&[
        ("MAIL_SERVER".into(), "127.0.0.1".into()),
        ("MAIL_PORT".into(), var("MEDIC_TEST_SMTP_TLS_PORT", "2526")),
        ("MAIL_USE_TLS".into(), "true".into()),
        ("MAIL_USERNAME".into(), var("MEDIC_TEST_SMTP_USER", "medic")),
        (
            "MAIL_PASSWORD".into(),
            var("MEDIC_TEST_SMTP_PASSWORD", "medic-secret"),
        ),
        (
            "MEDIC_SMTP_CA_FILE".into(),
            var(
                "MEDIC_TEST_SMTP_CA",
                &state_dir().join("tls/ca.pem").display().to_string(),
            ),
        ),
        ("ADMIN_EMAIL".into(), rcpt.clone()),
        ("MEDIC_STACK_NAME".into(), stack.clone()),
        (
            "MEDIC_PROJECT".into(),
            format!("nothing{}", std::process::id()),
        ),
        ("MEDIC_API_TOKEN".into(), token.into()),
    ]);
    let (status, body) = request(&medic.addr(), "POST", "/api/v1/report/send", Some(token));
    assert_eq!(status, 200, "{body}");
    let tls_dir = PathBuf::from(var(
        "MEDIC_TEST_SMTP_TLS_DIR",
        &state_dir().join("smtp/tls").display().to_string(),
    ));
    let mails = wait_mails(&tls_dir, &rcpt, Duration::from_secs(30), &medic, |m| {
        !m.is_empty()
    });
    assert_eq!(
        mails[0].subject,
        format!("✅ Daily Health Report - {stack}")
    );
    assert!(mails[0].tls, "sent over STARTTLS");
    assert_eq!(mails[0].auth_user.as_deref(), Some("medic"));
    let (_, detailed) = request(&medic.addr(), "GET", "/health/detailed", Some(token));
    let v: serde_json::Value = serde_json::from_str(&detailed).unwrap();
    assert_eq!(v["email"]["configured"], true, "{detailed}");
    assert!(v["email"]["last_error"].is_null(), "{detailed}");
}

/// A wrong password: a clear error in the log and email failing in /health/detailed; the
/// password itself appears nowhere.
#[test]
fn a_wrong_password_is_a_clear_error_in_the_log_and_the_detailed_health() {
    let rcpt = unique_rcpt("badpw");
    let token = "alerts-test-token";
    let password = "not-the-password-4711";
    let medic = Medic::start_owned(&[
        ("MAIL_SERVER".into(), "127.0.0.1".into()),
        ("MAIL_PORT".into(), var("MEDIC_TEST_SMTP_TLS_PORT", "2526")),
        ("MAIL_USE_TLS".into(), "true".into()),
        ("MAIL_USERNAME".into(), var("MEDIC_TEST_SMTP_USER", "medic")),
        ("MAIL_PASSWORD".into(), password.into()),
        (
            "MEDIC_SMTP_CA_FILE".into(),
            var(
                "MEDIC_TEST_SMTP_CA",
                &state_dir().join("tls/ca.pem").display().to_string(),
            ),
        ),
        ("ADMIN_EMAIL".into(), rcpt.clone()),
        (
            "MEDIC_PROJECT".into(),
            format!("nothing{}", std::process::id()),
        ),
        ("MEDIC_API_TOKEN".into(), token.into()),
    ]);
    let (status, body) = request(&medic.addr(), "POST", "/api/v1/report/send", Some(token));
    assert_eq!(status, 200, "{body}");
    medic.wait_log("the permanent failure", Duration::from_secs(30), |l| {
        l.contains("delivery failed permanently")
            && l.contains("authentication failed for user medic")
    });
    let (_, detailed) = request(&medic.addr(), "GET", "/health/detailed", Some(token));
    let v: serde_json::Value = serde_json::from_str(&detailed).unwrap();
    assert_eq!(v["email"]["configured"], true, "{detailed}");
    let error = v["email"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("authentication failed"), "{detailed}");
    assert!(error.contains("535"), "{detailed}");
    assert!(!detailed.contains(password));
    assert!(
        !medic.dump().contains(password),
        "the password leaked into the log"
    );
}

/// A small HTTP receiver for webhooks (no Slack is reachable here): answers the first request
/// 503 and every later one 200, and keeps each request's path and body with its answer.
type Hooked = (String, String, u16, String);

struct HookReceiver {
    port: u16,
    /// (path, body, status answered, Idempotency-Key header).
    requests: std::sync::Arc<std::sync::Mutex<Vec<Hooked>>>,
}

impl HookReceiver {
    fn start() -> HookReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let mut length = 0;
                let mut key = String::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        if name.eq_ignore_ascii_case("idempotency-key") {
                            key = value.trim().to_string();
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let mut all = sink.lock().unwrap();
                let status = if all.is_empty() { 503 } else { 200 };
                all.push((
                    path,
                    String::from_utf8_lossy(&body).into_owned(),
                    status,
                    key,
                ));
                drop(all);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        HookReceiver { port, requests }
    }

    fn requests(&self) -> Vec<Hooked> {
        self.requests.lock().unwrap().clone()
    }
}

/// Webhooks carry the same alerts, Slack-shaped, through the outbox: a 503 is retried, the URL's
/// token never appears in the log.
#[test]
fn slack_webhooks_carry_the_alerts_and_are_retried() {
    let run = TestRun::new("alerthook");
    let stack = format!("stack-{}", run.id);
    let hook = HookReceiver::start();
    let url = format!(
        "http://127.0.0.1:{}/services/T0/B0/secret-hook-token",
        hook.port
    );
    let medic = Medic::start_owned(&[
        ("MEDIC_PROJECT".into(), run.id.clone()),
        ("MEDIC_STACK_NAME".into(), stack.clone()),
        ("MEDIC_WEBHOOK_URL".into(), url),
        ("MEDIC_WEBHOOK_FORMAT".into(), "slack".into()),
        ("MEDIC_ALERT_GROUP_WINDOW".into(), "1s".into()),
        ("MEDIC_OUTBOX_RETRY_MAX".into(), "1s".into()),
    ]);
    let web = run.healthy_web();
    run.break_health(&web);
    wait_for("the alerts delivered", Duration::from_secs(60), || {
        hook.requests()
            .iter()
            .filter(|(_, body, status, _)| *status == 200 && body.contains("RECOVERED"))
            .count()
            == 1
    });
    let requests = hook.requests();
    assert_eq!(requests[0].2, 503, "the first attempt was refused");
    // Every attempt at one message carries the same Idempotency-Key, each message its own.
    let refused = &requests[0];
    assert!(refused.3.starts_with("medic-"), "{refused:?}");
    let retried: Vec<&Hooked> = requests[1..].iter().filter(|r| r.1 == refused.1).collect();
    assert_eq!(retried.len(), 1, "{requests:?}");
    assert_eq!(retried[0].3, refused.3);
    let keys: std::collections::HashSet<&str> = requests.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(keys.len(), requests.len() - 1, "{requests:?}");
    let delivered: Vec<serde_json::Value> = requests
        .iter()
        .filter(|(_, _, status, _)| *status == 200)
        .map(|(path, body, _, _)| {
            assert_eq!(path, "/services/T0/B0/secret-hook-token");
            serde_json::from_str(body).unwrap()
        })
        .collect();
    let texts: Vec<&str> = delivered
        .iter()
        .map(|v| v["text"].as_str().unwrap())
        .collect();
    let critical = format!("🚨 CRITICAL: web failure - {stack}");
    assert_eq!(
        texts.iter().filter(|t| **t == critical).count(),
        1,
        "{texts:?}"
    );
    let first = delivered.iter().find(|v| v["text"] == critical).unwrap();
    let section = first["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(section.contains(&format!("restarted {web}")), "{section}");
    medic.wait_log("the retry", Duration::from_secs(5), |l| {
        l.contains("webhook to 127.0.0.1 failed: answered 503")
    });
    assert!(!medic.dump().contains("secret-hook-token"));
}

/// A synthetic probe (exec, from labels) that fails past its threshold: the CRITICAL names the
/// probe, says what medic did and recommends actions that fit an exec probe.
#[test]
fn a_failing_probe_raises_a_critical_with_actions_for_its_type() {
    let run = TestRun::new("alertprobe");
    let rcpt = unique_rcpt("probe");
    let stack = format!("stack-{}", run.id);
    let mut vars = plain_mail(&rcpt);
    vars.extend([
        ("MEDIC_PROJECT".to_string(), run.id.clone()),
        ("MEDIC_STACK_NAME".into(), stack.clone()),
        ("MEDIC_ALERT_GROUP_WINDOW".into(), "1s".into()),
    ]);
    let medic = Medic::start_owned(&vars);
    let worker = run.container(
        "worker",
        &[
            ("com.docker.compose.project", run.id.as_str()),
            ("com.docker.compose.service", "worker"),
            ("medic.probe.alive.type", "exec"),
            ("medic.probe.alive.command", "test -f /tmp/alive"),
            ("medic.probe.alive.interval", "1s"),
            ("medic.probe.alive.timeout", "5s"),
            ("medic.probe.alive.failure_threshold", "2"),
        ],
        &["--network", "none"],
    );
    let mails = wait_mails(&plain_dir(), &rcpt, Duration::from_secs(60), &medic, |m| {
        count(m, "🚨 CRITICAL") >= 1
    });
    let critical = &mails[0];
    assert_eq!(
        critical.subject,
        format!("🚨 CRITICAL: worker failure - {stack}")
    );
    assert!(
        critical.text.contains("Check:      probe alive (exec)"),
        "{}",
        critical.text
    );
    assert!(
        critical.text.contains("Consecutive failures: 2"),
        "{}",
        critical.text
    );
    assert!(
        critical
            .text
            .contains(&format!("Actions taken: restarted {worker}")),
        "{}",
        critical.text
    );
    assert!(
        critical.text.contains("docker compose exec worker"),
        "exec-specific advice: {}",
        critical.text
    );
}

/// Delivery is at least once: a message the server stored but answered too late (as when medic
/// dies between the server's 250 and noting it) goes out again, and the copy carries the same
/// Message-ID as the first, so it shows as the same message and not as a second alert.
#[test]
fn an_email_sent_again_carries_the_message_id_of_the_first_copy() {
    let run = TestRun::new("alertresend");
    let rcpt = unique_rcpt("resend");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // The first message is stored, then answered after 8 s; medic gives up after 2 s.
    let _server = OwnSmtp::start(
        port,
        dir.path(),
        &["--late-accept", "1", "--late-seconds", "8"],
    );
    let mut vars = mail_on(&port.to_string(), &rcpt);
    vars.extend([
        ("MEDIC_PROJECT".into(), run.id.clone()),
        ("MEDIC_ALERT_GROUP_WINDOW".into(), "1s".into()),
        ("MEDIC_SMTP_TIMEOUT".into(), "2s".into()),
        ("MEDIC_OUTBOX_RETRY_MAX".into(), "2s".into()),
    ]);
    let medic = Medic::start_owned(&vars);
    let web = run.healthy_web();
    // It turns unhealthy: the CRITICAL goes out late, then again; the restart makes it healthy
    // again (its command creates /tmp/ok): the RECOVERED.
    run.break_health(&web);
    let mails = wait_mails(dir.path(), &rcpt, Duration::from_secs(90), &medic, |m| {
        count(m, "🚨 CRITICAL: web failure") >= 2 && count(m, "✅ RECOVERED: web") >= 1
    });
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert!(
        medic.dump().contains("did not answer within 2s"),
        "the first attempt should have timed out:\n{}",
        medic.dump()
    );
    let critical: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.subject.starts_with("🚨 CRITICAL: web failure"))
        .collect();
    let recovered: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.subject.starts_with("✅ RECOVERED: web"))
        .collect();
    assert_eq!((critical.len(), recovered.len()), (2, 1), "{subjects:?}");
    assert_eq!(
        critical[1].message_id, critical[0].message_id,
        "the copy is the same message"
    );
    assert_eq!(critical[1].text, critical[0].text);
    assert_ne!(recovered[0].message_id, critical[0].message_id);

    // The outbox holds each once, sent, and each Message-ID names its outbox row.
    let db = medic::store::Store::open(medic.data_dir()).unwrap();
    let outbox = db.outbox_recent(10).unwrap();
    assert_eq!(outbox.len(), 2, "{outbox:?}");
    for (row, mail) in [(&outbox[1], critical[0]), (&outbox[0], recovered[0])] {
        assert_eq!(mail.subject, row.subject, "{row:?}");
        assert_eq!(row.state, "sent", "{row:?}");
        let prefix = format!("outbox.{}.", row.id);
        assert!(
            mail.message_id.starts_with(&prefix) && mail.message_id.ends_with(".medic@stack.test"),
            "{} for outbox row {}",
            mail.message_id,
            row.id
        );
    }
    assert_eq!(
        outbox[1].attempts, 1,
        "one failed attempt before the delivery"
    );
    // Nothing more arrives: the late answer to the first copy changes nothing. The server
    // answers 8 s after it stored that copy (the oldest file in its folder): wait until then,
    // and a second past it for medic to act on it, from that file's time rather than a guess.
    let first_stored = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .min()
        .expect("the server stored the first copy");
    let answered = first_stored + Duration::from_secs(8 + 1);
    wait_for(
        "the server's late answer to the first copy",
        Duration::from_secs(20),
        || std::time::SystemTime::now() >= answered,
    );
    assert_eq!(mails_to(dir.path(), &rcpt).len(), 3, "{subjects:?}");
}
