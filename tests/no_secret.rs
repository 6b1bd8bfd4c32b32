//! No secret in any output, and every string from outside escaped for where it goes (issue 14,
//! items 3 and 4), tried as an attacker would.
//!
//! A hostile server of the test's own (tests/support/hostile.rs, raw TCP on 127.0.0.1) answers
//! every request with a 500 that quotes what it received: the Authorization header (base64 of the URI's
//! user and password), the request line (the query string) and the body. Probes whose settings
//! hold `${VAR}` secrets (an `http` probe with one in the URI password, the query and the body; an
//! `exec` probe with one in its command, in a real container; an `ai` probe with a key) fail
//! against it. A compose service whose name holds `<script>`, Slack markup and CR/LF goes
//! unhealthy beside them. The secrets must then be absent, in clear, percent-encoded, JSON- or
//! HTML-escaped, or base64-encoded inside any token of the output, from: medic's log (text at
//! `MEDIC_LOG=trace`; JSON at trace for the one-shot commands), `/health/detailed`, `/metrics`,
//! `/`, the CRITICAL email the test SMTP server stored, the Slack webhook a receiver of the
//! test's got, `medic check`, `medic check --json` and `medic probe --json`. The hostile name
//! must come out escaped on the status page, in the email and the Slack payload, and as one log
//! line.
//!
//! An SMTP server that refuses AUTH quoting the AUTH exchange (`scripts/smtp_server.py
//! --echo-auth`) must not bring the mail password (or its base64) into `medic test-email`'s
//! output, `medic check`, the log or `email.last_error` in `/health/detailed`.
//!
//! Needs the test environment (`scripts/testenv.sh up`): the engine, the busybox image, the
//! plain SMTP server and the Python that runs scripts/smtp_server.py.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use support::hostile::{HostileServer, Reply};
use support::mail::{mails_to, plain_dir, plain_port, unique_rcpt, Mail, OwnSmtp};
use support::{free_port, http_request as request, medic_config, wait_for, Medic, TestRun};

/// In the `http` probe's URI password.
const URI_PASSWORD: &str = "uR1pAssW0rdZq8Lm";
/// In the `http` probe's query string (a space and a `!`, which the URL encodes or keeps).
const QUERY_SECRET: &str = "q7Kp2 mZx9!Wv4Rt";
/// In the `http` probe's body (JSON- and HTML-special characters).
const BODY_SECRET: &str = "b0dy\"S3cr<et>&Vq5";
/// In the `exec` probe's command, which prints it.
const EXEC_SECRET: &str = "ex3cS3cretYt6Hn2";
/// The `ai` probe's key.
const AI_KEY: &str = "sk-test-Ai9KeyZZ8x7w6v5u";
/// `MEDIC_API_TOKEN`.
const API_TOKEN: &str = "t0kenApiMedic42xPq";
/// The secret part of the webhook's URL, as Slack's carry one.
const WEBHOOK_SECRET: &str = "Whk5ecretP4th77Bn";
/// `MAIL_PASSWORD` for the AUTH-echoing SMTP server.
const MAIL_PASSWORD: &str = "m4ilPassw0rd!Zk3";
/// A compose service name an attacker picked: HTML, Slack markup and a forged log line.
const EVIL_SERVICE: &str = "evil<script>alert(1)</script>*bold*<!channel>\r\nFORGED level=ERROR";

/// Every form a leak of `secret` could take that a reader could undo at a glance.
fn plain_forms(secret: &str) -> Vec<String> {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let json = serde_json::to_string(secret).unwrap();
    let html = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let mut forms = vec![
        secret.to_string(),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        secret.replace(' ', "%20"),
        secret.replace(' ', "+"),
        json[1..json.len() - 1].to_string(),
        html,
    ];
    // Half of a secret is a leak too.
    forms.push(secret[..secret.len() / 2].to_string());
    forms.push(secret[secret.len() / 2..].to_string());
    forms
}

/// Decodes every base64-looking run of characters in `text` (at each of its alignments) and
/// returns what decodes, so that a secret inside `Basic`, `AUTH PLAIN` or `AUTH LOGIN` is found
/// however it was framed.
fn decoded_tokens(text: &str) -> Vec<String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let engines = [
        GeneralPurpose::new(&base64::alphabet::STANDARD, lenient),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient),
    ];
    let mut out = Vec::new();
    for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/-_".contains(c))) {
        if token.len() < 8 {
            continue;
        }
        for skip in 0..4 {
            let part = &token[skip..];
            let part = &part[..part.len() - part.len() % 4];
            for engine in &engines {
                if let Ok(bytes) = engine.decode(part) {
                    out.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
    }
    out
}

/// Panics naming the output and the form when `text` shows any of `secrets`.
fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    assert!(!text.is_empty(), "{what}: nothing to check");
    for secret in secrets {
        for form in plain_forms(secret) {
            assert!(
                !text.contains(&form),
                "{what} shows {secret:?} as {form:?}:\n{text}"
            );
        }
        let half = &secret[..secret.len() / 2];
        for decoded in decoded_tokens(text) {
            assert!(
                !decoded.contains(half),
                "{what} shows {secret:?} base64-encoded (decodes to {decoded:?}):\n{text}"
            );
        }
    }
}

/// Runs a one-shot medic command with exactly these variables (and PATH); stdout and stderr.
fn medic_command(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run medic")
}

fn text_of(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The hostile server: every request gets a 500 quoting its credentials, request line and body
/// (first, so that they fall inside the part of an error body medic quotes).
async fn echo_server() -> HostileServer {
    HostileServer::start(|request| {
        let request_line = request.head.lines().next().unwrap_or_default().to_string();
        let auth = request.header("authorization").unwrap_or_default();
        let body = String::from_utf8_lossy(&request.body);
        let body: String = body.chars().take(80).collect();
        Reply::bytes(
            500,
            format!("auth={auth} line={request_line} body={body}").into_bytes(),
        )
    })
    .await
}

/// A webhook receiver that keeps every body it gets and answers 200.
async fn webhook_receiver(bodies: Arc<Mutex<Vec<String>>>) -> HostileServer {
    HostileServer::start(move |request| {
        bodies
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&request.body).into_owned());
        Reply::bytes(200, "ok")
    })
    .await
}

/// The probes of the attack: each fails against the echo server or in its container.
fn probes_yaml(echo: &str, project: &str) -> String {
    let echo_host = echo.trim_start_matches("http://");
    format!(
        r#"probes:
  leaky-http:
    type: http
    component: leaky-http
    method: POST
    url: "http://probe:${{MEDIC_T_URI_PASSWORD}}@{echo_host}/check?key=${{MEDIC_T_QUERY}}&page=1"
    body: "${{MEDIC_T_BODY}} <script>alert(2)</script> *bold*"
    interval: 1s
    timeout: 5s
    failure_threshold: 1
    restart: []
  leaky-exec:
    type: exec
    component: leaky-exec
    project: {project}
    service: web
    command: "echo using ${{MEDIC_T_EXEC}} >&2; exit 3"
    interval: 1s
    timeout: 5s
    failure_threshold: 1
    restart: []
  leaky-ai:
    type: ai
    component: leaky-ai
    provider: openai-compatible
    base_url: {echo}/v1
    model: echo
    api_key: ${{MEDIC_T_AI_KEY}}
    interval: 1s
    timeout: 5s
    failure_threshold: 1
    restart: []
"#
    )
}

/// The secrets' variables.
fn secret_env() -> Vec<(String, String)> {
    [
        ("MEDIC_T_URI_PASSWORD", URI_PASSWORD),
        ("MEDIC_T_QUERY", QUERY_SECRET),
        ("MEDIC_T_BODY", BODY_SECRET),
        ("MEDIC_T_EXEC", EXEC_SECRET),
        ("MEDIC_T_AI_KEY", AI_KEY),
        ("MEDIC_API_TOKEN", API_TOKEN),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

const ALL_SECRETS: [&str; 7] = [
    URI_PASSWORD,
    QUERY_SECRET,
    BODY_SECRET,
    EXEC_SECRET,
    AI_KEY,
    API_TOKEN,
    WEBHOOK_SECRET,
];

#[test]
fn a_hostile_echo_server_gets_no_secret_into_any_output_and_names_are_escaped() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let echo = runtime.block_on(echo_server());
    let webhook_bodies = Arc::new(Mutex::new(Vec::new()));
    let receiver = runtime.block_on(webhook_receiver(webhook_bodies.clone()));

    let run = TestRun::new("nosecret");
    let web = run.offline_service("web", &[]);
    let evil = run.container(
        "evil",
        &[
            ("com.docker.compose.project", run.id.as_str()),
            ("com.docker.compose.service", EVIL_SERVICE),
        ],
        &["--network", "none"],
    );
    wait_for("web and evil healthy", Duration::from_secs(30), || {
        run.health(&web) == "healthy" && run.health(&evil) == "healthy"
    });
    let (_config_dir, config) = medic_config(&probes_yaml(&echo.base, &run.id));
    let rcpt = unique_rcpt("nosecret");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let webhook_url = format!("{}/services/T0/{WEBHOOK_SECRET}", receiver.base);
    let mut env = secret_env();
    env.extend(
        [
            ("MEDIC_PROJECT", run.id.as_str()),
            ("MEDIC_CONFIG", config.to_str().unwrap()),
            ("MEDIC_STACK_NAME", "shop"),
            ("MAIL_SERVER", "127.0.0.1"),
            ("MAIL_PORT", &plain_port()),
            ("MAIL_USE_TLS", "false"),
            ("ADMIN_EMAIL", &rcpt),
            ("MAIL_DEFAULT_SENDER", "medic@stack.test"),
            ("MEDIC_WEBHOOK_URL", &webhook_url),
            ("MEDIC_WEBHOOK_FORMAT", "slack"),
            ("MEDIC_ALERT_GROUP_WINDOW", "1s"),
            ("MEDIC_RESTART_COOLDOWN", "1h"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut daemon_env = env.clone();
    daemon_env.extend(
        [
            ("MEDIC_LISTEN", addr.as_str()),
            ("MEDIC_LOG_FORMAT", "text"),
            ("MEDIC_LOG", "trace"),
            ("NO_COLOR", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let refs: Vec<(&str, &str)> = daemon_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let medic = Medic::start(&refs);

    // Each probe fails with the echo in its error, and the hostile service goes unhealthy.
    run.break_health(&evil);
    let detailed = || request(&addr, "GET", "/health/detailed", Some(API_TOKEN)).1;
    wait_for(
        "every probe failed with the echo, evil restarted",
        Duration::from_secs(90),
        || {
            let d = detailed();
            d.contains("auth=Basic")
                && d.contains("line=POST /check?key=")
                && d.contains("Bearer")
                && d.contains("exited with 3")
                && run.restarts(&evil) >= 1
        },
    );
    let all_alerted = |mails: &[Mail]| {
        let text: String = mails
            .iter()
            .map(|m| format!("{} {}", m.subject, m.text))
            .collect();
        ["leaky-http", "leaky-exec", "leaky-ai", "FORGED"]
            .iter()
            .all(|c| text.contains(c))
    };
    wait_for("the CRITICAL emails", Duration::from_secs(60), || {
        all_alerted(&mails_to(&plain_dir(), &rcpt))
    });
    wait_for("the Slack webhooks", Duration::from_secs(60), || {
        let bodies = webhook_bodies.lock().unwrap().join("\n");
        ["leaky-http", "leaky-exec", "leaky-ai", "FORGED"]
            .iter()
            .all(|c| bodies.contains(c))
    });

    // The HTTP answers.
    let (status, detailed) = request(&addr, "GET", "/health/detailed", Some(API_TOKEN));
    assert_eq!(status, 200, "{detailed}");
    assert!(
        detailed.contains("auth=Basic"),
        "the echo is there: {detailed}"
    );
    assert_no_secret("/health/detailed", &detailed, &ALL_SECRETS);
    let (_, metrics) = request(&addr, "GET", "/metrics", None);
    assert_no_secret("/metrics", &metrics, &ALL_SECRETS);
    assert!(
        metrics.contains("FORGED"),
        "the evil service has series: {metrics}"
    );
    for line in metrics.lines() {
        assert!(
            !line.starts_with("FORGED"),
            "a metrics line was forged: {line:?}"
        );
    }
    let (_, page) = request(&addr, "GET", "/", None);
    assert_no_secret("the status page", &page, &ALL_SECRETS);
    assert!(
        page.contains("FORGED"),
        "the evil service is listed: {page}"
    );
    assert!(
        !page.contains("<script>"),
        "raw HTML on the status page:\n{page}"
    );
    assert!(page.contains("&lt;script&gt;"), "{page}");

    // The emails.
    let mails = mails_to(&plain_dir(), &rcpt);
    for mail in &mails {
        let all = format!("{}\n{}\n{}", mail.subject, mail.text, mail.html);
        assert_no_secret("a CRITICAL email", &all, &ALL_SECRETS);
        assert!(
            !mail.html.contains("<script>"),
            "raw HTML in an email: {}",
            mail.html
        );
        assert!(
            !mail.subject.chars().any(char::is_control),
            "a subject with control characters: {:?}",
            mail.subject
        );
    }
    assert!(
        mails.iter().any(|m| m.text.contains("auth=Basic")),
        "the echo reached an email: {:?}",
        mails.iter().map(|m| &m.text).collect::<Vec<_>>()
    );
    let evil_mail = mails
        .iter()
        .find(|m| m.subject.contains("FORGED"))
        .expect("a CRITICAL about the evil service");
    assert!(
        evil_mail
            .subject
            .contains("*bold*<!channel>  FORGED level=ERROR")
            && evil_mail.subject.ends_with(" - shop"),
        "the whole name stays in the one subject line: {:?}",
        evil_mail.subject
    );
    assert_raw_mails_have_no_forged_header(&plain_dir(), &rcpt);

    // The Slack payloads.
    let bodies = webhook_bodies.lock().unwrap().clone();
    for body in &bodies {
        assert_no_secret("a Slack webhook", body, &ALL_SECRETS);
        let payload: serde_json::Value = serde_json::from_str(body).unwrap();
        let mut texts = vec![payload["text"].as_str().unwrap_or_default().to_string()];
        for block in payload["blocks"].as_array().into_iter().flatten() {
            if block["text"]["type"] == "mrkdwn" {
                texts.push(block["text"]["text"].as_str().unwrap_or_default().into());
            }
        }
        for text in texts {
            assert!(
                !text.contains('<') || text.contains("|Status page>"),
                "unescaped markup in Slack mrkdwn: {text}"
            );
        }
    }
    assert!(
        bodies.iter().any(|b| b.contains("auth=Basic")),
        "the echo reached a webhook: {bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("&lt;script&gt;") && b.contains("&lt;!channel&gt;")),
        "{bodies:?}"
    );

    // The daemon's log, text at trace: no secret, and the forged line stays inside its event.
    let log = medic.dump();
    assert_no_secret("the text log at trace", &log, &ALL_SECRETS);
    assert!(log.contains("FORGED"), "the evil name is logged");
    for line in log.lines() {
        assert!(
            !line.starts_with("FORGED"),
            "a log line was forged: {line:?}"
        );
    }
    drop(medic);

    // The one-shot commands, JSON logs at trace on stderr.
    let mut cli_env = env.clone();
    cli_env.extend(
        [("MEDIC_LOG", "trace"), ("MEDIC_LOG_FORMAT", "json")]
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    for args in [
        vec!["check"],
        vec!["check", "--json"],
        vec!["probe", "--json"],
    ] {
        let output = medic_command(&args, &cli_env);
        let text = text_of(&output);
        assert_eq!(output.status.code(), Some(1), "medic {args:?}: {text}");
        assert!(
            text.contains("auth=Basic"),
            "medic {args:?} quotes the echo: {text}"
        );
        assert_no_secret(&format!("medic {args:?}"), &text, &ALL_SECRETS);
    }
    // The table's target column shows the query's names, not its values.
    let table = text_of(&medic_command(&["check"], &env));
    assert!(table.contains("?key=***&page=***"), "{table}");
    assert_no_secret("medic check", &table, &ALL_SECRETS);
    drop(runtime);
}

/// The raw messages to `rcpt` have no header line the evil name could have added.
fn assert_raw_mails_have_no_forged_header(dir: &Path, rcpt: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if !json["rcpt_tos"].to_string().contains(rcpt) {
            continue;
        }
        let data = json["data"].as_str().unwrap_or_default();
        let head = data.split("\r\n\r\n").next().unwrap_or(data);
        for line in head.lines() {
            assert!(
                !line.starts_with("FORGED"),
                "the subject added a header: {line:?}\n{head}"
            );
        }
    }
}

#[test]
fn an_smtp_server_echoing_the_auth_line_gets_no_password_into_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _smtp = OwnSmtp::start(port, dir.path(), &["--echo-auth"]);
    let rcpt = unique_rcpt("echoauth");
    let env: Vec<(String, String)> = [
        ("MAIL_SERVER", "127.0.0.1"),
        ("MAIL_PORT", &port.to_string()),
        ("MAIL_USE_TLS", "false"),
        ("MAIL_USERNAME", "medic"),
        ("MAIL_PASSWORD", MAIL_PASSWORD),
        ("ADMIN_EMAIL", &rcpt),
        ("MAIL_DEFAULT_SENDER", "medic@stack.test"),
        ("MEDIC_API_TOKEN", API_TOKEN),
        ("MEDIC_PROJECT", "medic-test-echo-auth-no-such-project"),
        ("MEDIC_LOG", "trace"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    let secrets = [MAIL_PASSWORD, API_TOKEN];

    for format in ["text", "json"] {
        let mut env = env.clone();
        env.push(("MEDIC_LOG_FORMAT".into(), format.into()));
        let output = medic_command(&["test-email"], &env);
        let text = text_of(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(
            text.contains("535") && text.contains("AUTH PLAIN"),
            "the server's echo reaches the output: {text}"
        );
        assert_no_secret(&format!("medic test-email ({format} log)"), &text, &secrets);
    }
    let output = medic_command(&["check", "--json"], &env);
    let text = text_of(&output);
    assert!(text.contains("AUTH PLAIN"), "{text}");
    assert_no_secret("medic check --json", &text, &secrets);

    // The daemon: a report sent now (queued) fails at AUTH; its error is in email.last_error.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut daemon_env = env.clone();
    daemon_env.extend(
        [
            ("MEDIC_LISTEN", addr.as_str()),
            ("MEDIC_LOG_FORMAT", "text"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let refs: Vec<(&str, &str)> = daemon_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let medic = Medic::start(&refs);
    let (_, answer) = request(&addr, "POST", "/api/v1/report/send", Some(API_TOKEN));
    assert_no_secret("POST /api/v1/report/send", &answer, &secrets);
    let mut detailed = String::new();
    wait_for("email.last_error", Duration::from_secs(30), || {
        detailed = request(&addr, "GET", "/health/detailed", Some(API_TOKEN)).1;
        detailed.contains("AUTH PLAIN")
    });
    let json: serde_json::Value = serde_json::from_str(&detailed).unwrap();
    let last_error = json["email"]["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("535"), "{detailed}");
    assert_no_secret("email.last_error", &detailed, &secrets);
    assert_no_secret("the daemon's log", &medic.dump(), &secrets);
}
