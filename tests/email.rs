//! Email delivery against the test environment's real SMTP servers (aiosmtpd, see
//! scripts/smtp_server.py and shared TESTING.md): plain on MEDIC_TEST_SMTP_PORT, STARTTLS + AUTH
//! on MEDIC_TEST_SMTP_TLS_PORT, implicit TLS + AUTH on MEDIC_TEST_SMTPS_PORT, and instances a
//! test starts itself (`--reject`). Each stored message is a JSON file; the folders are shared
//! by tests running in parallel, so every test finds its own message by a unique subject.
//!
//! Start the servers first: `scripts/testenv.sh up` (scripts/test.sh does it).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use medic::notify::email::{Email, MailSettings, Mailer, Security, SendError};
use support::free_port;
use support::mail::unique_token;

/// Where the test environment's SMTP servers are: scripts/testenv.sh's exports, or the
/// same defaults it uses when the variables are not exported.
struct SmtpEnv {
    host: String,
    port: u16,
    dir: PathBuf,
    tls_port: u16,
    tls_dir: PathBuf,
    smtps_port: u16,
    smtps_dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    user: String,
    password: String,
    script: PathBuf,
    python: PathBuf,
}

fn smtp_env() -> SmtpEnv {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let state = root.join(".testenv");
    let var = |name: &str, default: String| std::env::var(name).unwrap_or(default);
    let port = |name: &str, default: u16| {
        var(name, default.to_string())
            .parse::<u16>()
            .unwrap_or_else(|_| panic!("{name} is not a port"))
    };
    let path =
        |name: &str, default: PathBuf| PathBuf::from(var(name, default.display().to_string()));
    let env = SmtpEnv {
        host: var("MEDIC_TEST_SMTP_HOST", "127.0.0.1".into()),
        port: port("MEDIC_TEST_SMTP_PORT", 2525),
        dir: path("MEDIC_TEST_SMTP_DIR", state.join("smtp/plain")),
        tls_port: port("MEDIC_TEST_SMTP_TLS_PORT", 2526),
        tls_dir: path("MEDIC_TEST_SMTP_TLS_DIR", state.join("smtp/tls")),
        smtps_port: port("MEDIC_TEST_SMTPS_PORT", 2527),
        smtps_dir: path("MEDIC_TEST_SMTPS_DIR", state.join("smtp/smtps")),
        ca: path("MEDIC_TEST_SMTP_CA", state.join("tls/ca.pem")),
        cert: path("MEDIC_TEST_SMTP_TLS_CERT", state.join("tls/server.pem")),
        key: path("MEDIC_TEST_SMTP_TLS_KEY", state.join("tls/server.key")),
        user: var("MEDIC_TEST_SMTP_USER", "medic".into()),
        password: var("MEDIC_TEST_SMTP_PASSWORD", "medic-secret".into()),
        script: path(
            "MEDIC_TEST_SMTP_SCRIPT",
            root.join("scripts/smtp_server.py"),
        ),
        python: path("MEDIC_TEST_PYTHON", state.join("venv/bin/python")),
    };
    assert!(
        env.ca.exists() && env.python.exists(),
        "the test SMTP servers are not set up ({} missing): run scripts/testenv.sh up",
        if env.ca.exists() {
            &env.python
        } else {
            &env.ca
        }
        .display()
    );
    env
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn settings(pairs: &[(&str, &str)]) -> MailSettings {
    MailSettings::from_vars(&vars(pairs))
        .expect("valid mail settings")
        .expect("MAIL_SERVER is set")
}

fn mailer(pairs: &[(&str, &str)]) -> Mailer {
    Mailer::new(&settings(pairs)).expect("a mailer")
}

fn config_error(pairs: &[(&str, &str)]) -> String {
    match MailSettings::from_vars(&vars(pairs)) {
        Err(e) => e.to_string(),
        Ok(s) => panic!("{pairs:?} should be refused, got {s:?}"),
    }
}

fn email(subject: &str) -> Email {
    Email {
        subject: subject.to_string(),
        text: format!("plain text of {subject}"),
        html: None,
    }
}

/// One message as the test server stored it.
#[derive(Debug)]
struct Stored {
    mail_from: String,
    rcpt_tos: Vec<String>,
    data: String,
    tls: bool,
    auth_user: Option<String>,
}

impl Stored {
    fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(self.data.as_bytes())
            .expect("a parsable message")
    }
}

/// Waits (bounded) for the message whose decoded subject contains `token` to appear in `dir`.
fn find_message(dir: &Path, token: &str) -> Stored {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = scan(dir, token) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no message with {token:?} in its subject arrived in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn scan(dir: &Path, token: &str) -> Option<Stored> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let data = json["data"].as_str().unwrap_or_default().to_string();
        let matches = mail_parser::MessageParser::default()
            .parse(data.as_bytes())
            .and_then(|m| m.subject().map(|s| s.contains(token)))
            .unwrap_or(false);
        if matches {
            return Some(Stored {
                mail_from: json["mail_from"].as_str().unwrap_or_default().to_string(),
                rcpt_tos: json["rcpt_tos"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                data,
                tls: json["tls"].as_bool().unwrap_or(false),
                auth_user: json["auth_user"].as_str().map(str::to_string),
            });
        }
    }
    None
}

/// An extra instance of the test SMTP server, stopped when dropped.
struct ExtraServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl ExtraServer {
    fn start(env: &SmtpEnv, args: &[&str]) -> ExtraServer {
        let dir = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new(&env.python)
            .arg(&env.script)
            .args(["--port", "0", "--dir"])
            .arg(dir.path().join("mail"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the test SMTP server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("the test SMTP server did not start: {line:?}\n{log}")
            });
        // Keep reading its stdout: a closed pipe would break its "stored ..." lines.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout.take(u64::MAX), &mut std::io::sink());
        });
        ExtraServer { child, port, dir }
    }
}

impl Drop for ExtraServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery

#[tokio::test]
async fn plain_smtp_delivers_to_every_recipient_with_decoded_subject_text_and_html() {
    let env = smtp_env();
    let port = env.port.to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("MAIL_USE_TLS", "false"),
        (
            "ADMIN_EMAIL",
            "ops@example.com, \"On Call, Team\" <oncall@example.org>,third@example.net",
        ),
        ("MAIL_DEFAULT_SENDER", "Medic Alerts <alerts@example.com>"),
    ]);
    let token = unique_token("plain");
    let subject = format!("🚨 CRITICAL: mongodb failure - démo ✅ ⛔ {token}");
    let sent = Email {
        subject: subject.clone(),
        text: "MongoDB stopped answering.\nActions taken: restarted — Grüße".to_string(),
        html: Some("<p>MongoDB <b>stopped</b> answering. Grüße ⛔</p>".to_string()),
    };
    mailer.send(&sent).await.expect("plain send");

    let stored = find_message(&env.dir, &token);
    assert_eq!(stored.mail_from, "alerts@example.com");
    let mut rcpts = stored.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["oncall@example.org", "ops@example.com", "third@example.net"]
    );
    assert!(!stored.tls, "plain means no TLS");
    assert_eq!(stored.auth_user, None);

    let message = stored.parsed();
    assert_eq!(message.subject(), Some(subject.as_str()));
    let from = message.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.address(), Some("alerts@example.com"));
    assert_eq!(from.name(), Some("Medic Alerts"));
    assert_eq!(message.text_body_count(), 1);
    assert_eq!(message.html_body_count(), 1);
    // SMTP carries CRLF line ends.
    let text = message.body_text(0).unwrap().replace("\r\n", "\n");
    assert_eq!(text.trim_end(), sent.text);
    assert_eq!(
        message.body_html(0).unwrap().trim_end(),
        sent.html.as_deref().unwrap()
    );
    let content_type = message.header_raw("Content-Type").unwrap();
    assert!(
        content_type.contains("multipart/alternative"),
        "{content_type}"
    );
    assert!(message.date().is_some(), "a Date header");
    let id = message.message_id().expect("a Message-ID header");
    assert!(id.ends_with("@example.com"), "{id}");
    // Every header is 7-bit: the emoji subject travels RFC 2047-encoded.
    let headers = stored.data.split("\r\n\r\n").next().unwrap();
    assert!(headers.is_ascii(), "{headers}");
}

#[tokio::test]
async fn text_only_email_is_a_single_plain_part() {
    let env = smtp_env();
    let port = env.port.to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    let token = unique_token("textonly");
    mailer
        .send(&email(&format!("✅ RECOVERED: {token}")))
        .await
        .unwrap();

    let stored = find_message(&env.dir, &token);
    let message = stored.parsed();
    assert!(!stored.data.contains("text/html"), "{}", stored.data);
    assert!(message
        .header_raw("Content-Type")
        .unwrap()
        .contains("text/plain"));
    assert_eq!(
        message.body_text(0).unwrap().trim_end(),
        format!("plain text of ✅ RECOVERED: {token}")
    );
}

#[tokio::test]
async fn starttls_with_auth_trusts_the_private_ca() {
    let env = smtp_env();
    let port = env.tls_port.to_string();
    let ca = env.ca.display().to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("MAIL_USE_TLS", "true"),
        ("MAIL_USERNAME", &env.user),
        ("MAIL_PASSWORD", &env.password),
        ("MEDIC_SMTP_CA_FILE", &ca),
        ("ADMIN_EMAIL", "ops@example.com,dev@example.com"),
    ]);
    assert_eq!(mailer.settings().security, Security::StartTls);
    mailer.test_connection().await.expect("STARTTLS and login");
    let token = unique_token("starttls");
    mailer
        .send(&email(&format!("⛔ GAVE UP: worker - demo {token}")))
        .await
        .expect("STARTTLS send");

    let stored = find_message(&env.tls_dir, &token);
    assert!(stored.tls, "the message must have travelled over TLS");
    assert_eq!(stored.auth_user.as_deref(), Some(env.user.as_str()));
    assert_eq!(stored.rcpt_tos.len(), 2);
}

#[tokio::test]
async fn without_tls_settings_starttls_is_used_when_offered() {
    let env = smtp_env();
    let port = env.tls_port.to_string();
    let ca = env.ca.display().to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("MAIL_USERNAME", &env.user),
        ("MAIL_PASSWORD", &env.password),
        ("MEDIC_SMTP_CA_FILE", &ca),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    assert_eq!(mailer.settings().security, Security::Opportunistic);
    let token = unique_token("opportunistic");
    mailer.send(&email(&token)).await.expect("send");
    let stored = find_message(&env.tls_dir, &token);
    assert!(stored.tls);
    assert_eq!(stored.auth_user.as_deref(), Some(env.user.as_str()));
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers() {
    let env = smtp_env();
    let port = env.smtps_port.to_string();
    let ca = env.ca.display().to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", "localhost"),
        ("MAIL_PORT", &port),
        ("MAIL_USE_SSL", "yes"),
        ("MAIL_USERNAME", &env.user),
        ("MAIL_PASSWORD", &env.password),
        ("MEDIC_SMTP_CA_FILE", &ca),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    assert_eq!(mailer.settings().security, Security::ImplicitTls);
    let token = unique_token("smtps");
    mailer
        .send(&email(&format!("❌ Daily Health Report - demo {token}")))
        .await
        .expect("implicit TLS send");
    let stored = find_message(&env.smtps_dir, &token);
    assert!(stored.tls);
    assert_eq!(stored.auth_user.as_deref(), Some(env.user.as_str()));
}

// ---------------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn a_wrong_password_is_a_permanent_auth_error_that_never_shows_the_password() {
    let env = smtp_env();
    let port = env.tls_port.to_string();
    let ca = env.ca.display().to_string();
    let wrong = "Wr0ng-Passw0rd-xyzzy";
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("MAIL_USE_TLS", "true"),
        ("MAIL_USERNAME", &env.user),
        ("MAIL_PASSWORD", wrong),
        ("MEDIC_SMTP_CA_FILE", &ca),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    for result in [
        mailer.test_connection().await,
        mailer.send(&email(&unique_token("wrongpw"))).await,
    ] {
        let err = result.expect_err("a wrong password must fail");
        let text = err.to_string();
        eprintln!("{text}");
        assert!(
            matches!(
                err,
                SendError::Auth {
                    code: Some(535),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_transient(), "{text}");
        assert!(
            text.starts_with(&format!(
                "authentication failed for user {} at {}:{}: 535",
                env.user, env.host, env.tls_port
            )),
            "{text}"
        );
        assert!(!text.contains(wrong), "{text}");
        assert!(!format!("{err:?}").contains(wrong));
    }
    assert!(!format!("{mailer:?}").contains(wrong));
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_clear_tls_error() {
    let env = smtp_env();
    let port = env.tls_port.to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("MAIL_USE_TLS", "true"),
        ("MAIL_USERNAME", &env.user),
        ("MAIL_PASSWORD", &env.password),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    let err = mailer
        .send(&email(&unique_token("untrusted")))
        .await
        .expect_err("the test CA is not trusted without MEDIC_SMTP_CA_FILE");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(
        text.starts_with("TLS with SMTP server 127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("MEDIC_SMTP_CA_FILE"), "{text}");
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_a_tls_error() {
    let env = smtp_env();
    let port = env.port.to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("MAIL_USE_TLS", "true"),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    let err = mailer
        .send(&email(&unique_token("nostarttls")))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("does not offer STARTTLS"), "{err}");
}

#[tokio::test]
async fn implicit_tls_against_a_plain_port_says_the_server_does_not_speak_tls() {
    let env = smtp_env();
    let port = env.port.to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("MAIL_USE_SSL", "true"),
        ("MEDIC_SMTP_TIMEOUT", "5s"),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    let err = mailer
        .send(&email(&unique_token("sslplain")))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("MAIL_USE_TLS=true"), "{err}");
}

#[tokio::test]
async fn a_server_that_is_down_is_a_quick_transient_error() {
    let port = free_port().to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", "127.0.0.1"),
        ("MAIL_PORT", &port),
        ("MEDIC_SMTP_TIMEOUT", "30s"),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    // Quick: a refused connection is an answer, not a wait for the timeout. The timeout is
    // long so that the bound below, half of it, leaves a busy machine all the slack it needs.
    let started = Instant::now();
    let err = mailer
        .send(&email(&unique_token("down")))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, SendError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        text.starts_with(&format!("cannot connect to SMTP server 127.0.0.1:{port}: ")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[tokio::test]
async fn a_server_that_never_greets_times_out_within_the_limit() {
    // STARTTLS settings against the implicit-TLS port: the server waits for a TLS hello, medic
    // for a greeting, and only the timeout ends it.
    let env = smtp_env();
    let port = env.smtps_port.to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", &env.host),
        ("MAIL_PORT", &port),
        ("MAIL_USE_TLS", "true"),
        ("MEDIC_SMTP_TIMEOUT", "1s"),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    let started = Instant::now();
    let err = mailer.test_connection().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(matches!(err, SendError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.contains("did not answer within 1s"), "{text}");
    assert!(text.contains("MAIL_USE_SSL=true"), "{text}");
}

#[tokio::test]
async fn a_451_reply_is_transient_and_a_554_reply_permanent() {
    let env = smtp_env();
    for (code, transient) in [(451u16, true), (554, false)] {
        let server = ExtraServer::start(&env, &["--reject", &code.to_string()]);
        let port = server.port.to_string();
        let mailer = mailer(&[
            ("MAIL_SERVER", "127.0.0.1"),
            ("MAIL_PORT", &port),
            ("ADMIN_EMAIL", "ops@example.com"),
        ]);
        mailer.test_connection().await.expect("the server is up");
        let err = mailer
            .send(&email(&unique_token("reject")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendError::Rejected { code: c, .. } if c == code),
            "{err:?}"
        );
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.is_transient(), transient, "{err}");
        let text = err.to_string();
        eprintln!("{text}");
        assert!(
            text.starts_with(&format!("SMTP server 127.0.0.1:{port} answered {code} ")),
            "{text}"
        );
        assert!(text.ends_with("while sending the message"), "{text}");
        let stored = std::fs::read_dir(server.dir.path().join("mail"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(stored, 0, "a rejected message is not stored");
    }
}

#[tokio::test]
async fn an_extra_server_with_its_own_login_accepts_the_message() {
    // The same server script with a different account, to show the credentials are really
    // the ones from the settings.
    let env = smtp_env();
    let cert = env.cert.display().to_string();
    let key = env.key.display().to_string();
    let server = ExtraServer::start(
        &env,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--implicit-tls",
            "--auth-user",
            "reports@example.com",
            "--auth-password",
            " spaced pass ",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, " spaced pass \n").unwrap();
    let port = server.port.to_string();
    let ca = env.ca.display().to_string();
    let password_path = password_file.display().to_string();
    let mailer = mailer(&[
        ("MAIL_SERVER", "127.0.0.1"),
        ("MAIL_PORT", &port),
        ("MAIL_USE_SSL", "1"),
        ("MAIL_USERNAME", "reports@example.com"),
        ("MAIL_PASSWORD_FILE", &password_path),
        ("MEDIC_SMTP_CA_FILE", &ca),
        ("ADMIN_EMAIL", "ops@example.com"),
    ]);
    let token = unique_token("ownlogin");
    mailer.send(&email(&token)).await.expect("send");
    let stored = find_message(&server.dir.path().join("mail"), &token);
    assert_eq!(stored.auth_user.as_deref(), Some("reports@example.com"));
    // Without MAIL_DEFAULT_SENDER, a user name that is an address is the sender.
    assert_eq!(stored.mail_from, "reports@example.com");
}

// ---------------------------------------------------------------------------------------------
// Settings

#[test]
fn without_mail_server_email_is_not_configured() {
    assert!(
        MailSettings::from_vars(&vars(&[("ADMIN_EMAIL", "a@example.com")]))
            .unwrap()
            .is_none()
    );
    assert!(MailSettings::from_vars(&vars(&[])).unwrap().is_none());
}

#[test]
fn defaults_are_port_587_opportunistic_tls_and_30s() {
    let s = settings(&[
        ("MAIL_SERVER", "smtp.example.com"),
        ("ADMIN_EMAIL", "a@example.com"),
    ]);
    assert_eq!(s.port, 587);
    assert_eq!(s.security, Security::Opportunistic);
    assert_eq!(s.timeout, Duration::from_secs(30));
    assert!(s.credentials.is_none());
    assert!(s.private_ca.is_none());
    assert_eq!(s.sender.email.user(), "medic");
}

#[test]
fn tls_choice_follows_the_variables_and_port_465() {
    let base = [
        ("MAIL_SERVER", "smtp.example.com"),
        ("ADMIN_EMAIL", "a@example.com"),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        let s = settings(&pairs);
        (s.security, s.port)
    };
    assert_eq!(with(&[("MAIL_USE_TLS", "true")]), (Security::StartTls, 587));
    assert_eq!(
        with(&[("MAIL_USE_SSL", "True")]),
        (Security::ImplicitTls, 465)
    );
    assert_eq!(with(&[("MAIL_PORT", "465")]), (Security::ImplicitTls, 465));
    assert_eq!(
        with(&[("MAIL_PORT", "465"), ("MAIL_USE_SSL", "false")]),
        (Security::Opportunistic, 465)
    );
    assert_eq!(
        with(&[("MAIL_USE_TLS", "no"), ("MAIL_PORT", "1025")]),
        (Security::Plain, 1025)
    );
    assert_eq!(
        with(&[
            ("MAIL_USE_TLS", "1"),
            ("MAIL_USE_SSL", "0"),
            ("MAIL_PORT", "2525")
        ]),
        (Security::StartTls, 2525)
    );
}

#[test]
fn bad_settings_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-password");
    let missing = missing.display().to_string();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_pem = not_pem.display().to_string();
    let server = ("MAIL_SERVER", "smtp.example.com");
    let admin = ("ADMIN_EMAIL", "a@example.com");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![server, admin, ("MAIL_PORT", "abc")],
            "MAIL_PORT=\"abc\"",
        ),
        (vec![server, admin, ("MAIL_PORT", "0")], "MAIL_PORT=\"0\""),
        (
            vec![
                server,
                admin,
                ("MAIL_USE_TLS", "true"),
                ("MAIL_USE_SSL", "true"),
            ],
            "MAIL_USE_TLS and MAIL_USE_SSL are both true",
        ),
        (
            vec![server, admin, ("MAIL_USE_TLS", "maybe")],
            "MAIL_USE_TLS=\"maybe\"",
        ),
        (vec![server], "ADMIN_EMAIL"),
        (
            vec![server, ("ADMIN_EMAIL", "ops@example.com, not-an-address")],
            "ADMIN_EMAIL=",
        ),
        (vec![server, ("ADMIN_EMAIL", " , ")], "ADMIN_EMAIL"),
        (
            vec![
                server,
                admin,
                ("MAIL_USERNAME", "medic"),
                ("MAIL_PASSWORD_FILE", &missing),
            ],
            "MAIL_PASSWORD_FILE=",
        ),
        (
            vec![server, admin, ("MAIL_USERNAME", "medic")],
            "MAIL_PASSWORD",
        ),
        (vec![server, admin, ("MAIL_PASSWORD", "x")], "MAIL_USERNAME"),
        (
            vec![server, admin, ("MAIL_DEFAULT_SENDER", "Medic <nope>")],
            "MAIL_DEFAULT_SENDER=",
        ),
        (
            vec![server, admin, ("MEDIC_SMTP_CA_FILE", &missing)],
            "MEDIC_SMTP_CA_FILE=",
        ),
        (
            vec![server, admin, ("MEDIC_SMTP_CA_FILE", &not_pem)],
            "MEDIC_SMTP_CA_FILE=",
        ),
        (
            vec![server, admin, ("MEDIC_SMTP_TIMEOUT", "soon")],
            "MEDIC_SMTP_TIMEOUT=",
        ),
        (
            vec![server, admin, ("MEDIC_SMTP_TIMEOUT", "0s")],
            "MEDIC_SMTP_TIMEOUT=",
        ),
        (
            vec![("MAIL_SERVER", "smtp://smtp.example.com:587"), admin],
            "MAIL_SERVER=",
        ),
    ];
    for (pairs, expected) in cases {
        let text = config_error(&pairs);
        assert!(
            text.contains(expected),
            "{pairs:?}: {text:?} should contain {expected:?}"
        );
    }
    let text = config_error(&[server, ("ADMIN_EMAIL", "ops@example.com, not-an-address")]);
    assert!(
        text.contains("\"not-an-address\" is not an email address"),
        "{text}"
    );
    let text = config_error(&[
        server,
        admin,
        ("MAIL_USERNAME", "u"),
        ("MAIL_PASSWORD_FILE", &missing),
    ]);
    assert!(text.contains("cannot read the password file"), "{text}");
}

#[test]
fn the_password_never_shows_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "from-a-file-42\r\n").unwrap();
    let file = file.display().to_string();
    for pairs in [
        vec![("MAIL_PASSWORD", "inline-secret-17")],
        vec![("MAIL_PASSWORD_FILE", file.as_str())],
    ] {
        let mut all = vec![
            ("MAIL_SERVER", "smtp.example.com"),
            ("ADMIN_EMAIL", "a@example.com"),
            ("MAIL_USERNAME", "medic"),
        ];
        all.extend(pairs);
        let s = settings(&all);
        let password = s
            .credentials
            .as_ref()
            .unwrap()
            .password
            .expose()
            .to_string();
        assert!(
            password == "inline-secret-17" || password == "from-a-file-42",
            "{password:?}"
        );
        let debug = format!("{s:?} {:?}", Mailer::new(&s).unwrap());
        assert!(!debug.contains(&password), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }
}

#[test]
fn sender_is_the_default_sender_or_the_user_name_if_it_is_an_address() {
    let base = vec![
        ("MAIL_SERVER", "smtp.example.com"),
        ("ADMIN_EMAIL", "a@example.com"),
        ("MAIL_PASSWORD", "x"),
    ];
    let sender = |extra: &[(&str, &str)]| {
        let mut pairs = base.clone();
        pairs.extend_from_slice(extra);
        settings(&pairs).sender.to_string()
    };
    assert_eq!(
        sender(&[("MAIL_USERNAME", "me@gmail.com")]),
        "medic <me@gmail.com>"
    );
    assert!(sender(&[("MAIL_USERNAME", "apikey")]).starts_with("medic <medic@"));
    assert_eq!(
        sender(&[
            ("MAIL_USERNAME", "me@gmail.com"),
            ("MAIL_DEFAULT_SENDER", "Stack Medic <alerts@example.org>")
        ]),
        "Stack Medic <alerts@example.org>"
    );
    assert_eq!(
        sender(&[
            ("MAIL_USERNAME", "u"),
            ("MAIL_DEFAULT_SENDER", "alerts@example.org")
        ]),
        "alerts@example.org"
    );
}
