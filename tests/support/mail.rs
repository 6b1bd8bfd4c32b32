//! The test environment's SMTP servers (scripts/smtp_server.py): where they listen, reading the
//! messages they stored, and an instance of a test's own.
//!
//! The SMTP folders are shared by tests running in parallel, so each test sends to its own
//! [`unique_rcpt`] and reads only the messages addressed to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{state_dir, var, Medic};

/// The port of the test environment's plain SMTP server.
pub fn plain_port() -> String {
    var("MEDIC_TEST_SMTP_PORT", "2525")
}

/// The folder the plain SMTP server stores messages in.
pub fn plain_dir() -> PathBuf {
    PathBuf::from(var(
        "MEDIC_TEST_SMTP_DIR",
        &state_dir().join("smtp/plain").display().to_string(),
    ))
}

/// A token no other test or run uses, to find one's own message in a shared folder.
pub fn unique_token(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{label}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A recipient no other test or run uses.
pub fn unique_rcpt(label: &str) -> String {
    format!("{}@example.com", unique_token(label))
}

/// One message as the test server stored it, decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The Message-ID header, without its angle brackets ("" when there is none).
    pub message_id: String,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The user the client authenticated as, if it did.
    pub auth_user: Option<String>,
}

/// Every message addressed to `rcpt` in `dir`, in the order received.
pub fn mails_to(dir: &Path, rcpt: &str) -> Vec<Mail> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let Some(json) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            continue;
        };
        let to_me = json["rcpt_tos"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v.as_str() == Some(rcpt));
        if !to_me {
            continue;
        }
        let data = json["data"].as_str().unwrap_or_default();
        let Some(parsed) = mail_parser::MessageParser::default().parse(data.as_bytes()) else {
            continue;
        };
        out.push(Mail {
            subject: parsed.subject().unwrap_or_default().to_string(),
            text: parsed
                .body_text(0)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            html: parsed
                .body_html(0)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            message_id: parsed.message_id().unwrap_or_default().to_string(),
            tls: json["tls"].as_bool().unwrap_or(false),
            auth_user: json["auth_user"].as_str().map(str::to_string),
        });
    }
    out
}

/// The subjects of `mails`, for failure messages.
pub fn subjects(mails: &[Mail]) -> Vec<&str> {
    mails.iter().map(|m| m.subject.as_str()).collect()
}

/// Waits until the messages to `rcpt` satisfy `done`, and returns them; on timeout, panics with
/// what did arrive and medic's log.
pub fn wait_mails(
    dir: &Path,
    rcpt: &str,
    timeout: Duration,
    medic: &Medic,
    done: impl Fn(&[Mail]) -> bool,
) -> Vec<Mail> {
    let start = Instant::now();
    loop {
        let mails = mails_to(dir, rcpt);
        if done(&mails) {
            return mails;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out waiting for mail to {rcpt}; got subjects {:?}\n{}",
                subjects(&mails),
                medic.dump()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An instance of the test SMTP server the test owns, stopped when dropped.
pub struct OwnSmtp {
    child: Child,
}

impl OwnSmtp {
    /// Listens on `port` and stores messages in `dir`; `extra` are more options of the script
    /// (`--reject 451`: answer every DATA with a transient failure; `--late-accept 1`: store the
    /// first message but answer only after `--late-seconds`).
    pub fn start(port: u16, dir: &Path, extra: &[&str]) -> OwnSmtp {
        let python = var(
            "MEDIC_TEST_PYTHON",
            &state_dir().join("venv/bin/python").display().to_string(),
        );
        let script = var(
            "MEDIC_TEST_SMTP_SCRIPT",
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("scripts/smtp_server.py")
                .display()
                .to_string(),
        );
        let mut child = Command::new(python)
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test SMTP server starts (scripts/testenv.sh up installs it)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(ready.starts_with("READY"), "SMTP server said {ready:?}");
        // Keep reading: the server logs each message to stdout and dies on a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        OwnSmtp { child }
    }
}

impl Drop for OwnSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
