//! Email delivery through SMTP: a [`Mailer`] that sends one [`Email`].
//!
//! [`Mailer::send`] holds one SMTP conversation per message (connect, STARTTLS, AUTH, send,
//! QUIT). It drives lettre's connection step by step rather than through its transport so
//! that a failure says where it happened: a [`SendError`] tells a refused password from a
//! refused message from a server that is down, and [`SendError::is_transient`] tells an outbox
//! whether trying again later can help. The whole conversation is bounded by
//! `MEDIC_SMTP_TIMEOUT`, not only the TCP connect.
//!
//! Secrets: error texts are scrubbed of the password. lettre's own `tracing` feature is
//! deliberately off, since it would log the AUTH exchange.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::address::Envelope;
use lettre::message::{MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials as SmtpCredentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;

use crate::config::ConfigError;

use super::settings::{invalid, MailSettings, Security};

/// One message to every recipient of the settings. Serializable, so the outbox can keep it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Email {
    /// The subject line; any Unicode (the SPEC's subjects start with emoji).
    pub subject: String,
    /// The plain-text body, always sent.
    pub text: String,
    /// An HTML body; when given, the message is multipart/alternative with `text` first.
    pub html: Option<String>,
}

/// Why a message was not delivered. [`SendError::is_transient`] says whether trying the same
/// message again later can succeed. No variant ever holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server could not be reached: refused, unreachable, name not found, reset while
    /// connecting. Transient.
    #[error("cannot connect to SMTP server {server}: {detail}")]
    Connect {
        /// `host:port`.
        server: String,
        /// What the network said.
        detail: String,
    },
    /// The conversation did not finish within `MEDIC_SMTP_TIMEOUT`. Transient.
    #[error("SMTP server {server} did not answer within {} while {phase}{hint}", humantime::format_duration(*after))]
    Timeout {
        /// `host:port`.
        server: String,
        /// What medic was waiting for, e.g. "connecting and waiting for its greeting".
        phase: &'static str,
        /// The limit that ran out.
        after: Duration,
        /// A likely cause, starting with "; ", or empty.
        hint: String,
    },
    /// TLS could not be set up: the certificate is not trusted or not for this name, the
    /// server does not offer the STARTTLS that `MAIL_USE_TLS` requires, or it does not speak
    /// TLS at all. Permanent: it needs a change of settings.
    #[error("TLS with SMTP server {server} failed: {detail}")]
    Tls {
        /// `host:port`.
        server: String,
        /// What went wrong and what to change.
        detail: String,
    },
    /// The server refused the login. Permanent unless the server said 4xx (e.g. 454, a
    /// temporary authentication failure).
    #[error("authentication failed for user {user} at {server}: {reply}")]
    Auth {
        /// `host:port`.
        server: String,
        /// The user name tried (never the password).
        user: String,
        /// The SMTP reply code, when the server gave one.
        code: Option<u16>,
        /// The server's reply, code first, or what went wrong before it could answer.
        reply: String,
    },
    /// The server answered with an SMTP error: 4xx is transient (greylisting, a full
    /// mailbox, "try again later"), 5xx permanent.
    #[error("SMTP server {server} answered {reply} while {phase}")]
    Rejected {
        /// `host:port`.
        server: String,
        /// The SMTP reply code.
        code: u16,
        /// The server's reply, code first.
        reply: String,
        /// What medic was doing, e.g. "sending the message".
        phase: &'static str,
    },
    /// The conversation broke off or went wrong in a way that is not a reply code: the
    /// connection dropped, the reply was garbled. Transient.
    #[error("SMTP conversation with {server} broke off while {phase}: {detail}")]
    Protocol {
        /// `host:port`.
        server: String,
        /// What medic was doing.
        phase: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The message could not be built or this server cannot carry it. Permanent.
    #[error("cannot send this email through {server}: {detail}")]
    Message {
        /// `host:port`.
        server: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl SendError {
    /// True when sending the same message again later may succeed: the server was down or
    /// slow, or answered 4xx. False when something must change first (password, certificate,
    /// recipients, settings).
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Connect { .. } | SendError::Timeout { .. } | SendError::Protocol { .. } => {
                true
            }
            SendError::Auth { code, .. } => code.is_some_and(|c| (400..500).contains(&c)),
            SendError::Rejected { code, .. } => (400..500).contains(code),
            SendError::Tls { .. } | SendError::Message { .. } => false,
        }
    }

    /// The SMTP reply code, when the failure was one.
    pub fn code(&self) -> Option<u16> {
        match self {
            SendError::Auth { code, .. } => *code,
            SendError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Where a conversation is, so a failure or a timeout can say what it was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    StartTls,
    Auth,
    Send,
}

impl Phase {
    fn describe(self, security: Security) -> &'static str {
        match (self, security) {
            (Phase::Connect, Security::ImplicitTls) => {
                "connecting, setting up TLS and waiting for its greeting"
            }
            (Phase::Connect, _) => "connecting and waiting for its greeting",
            (Phase::StartTls, _) => "setting up TLS with STARTTLS",
            (Phase::Auth, _) => "logging in",
            (Phase::Send, _) => "sending the message",
        }
    }
}

/// Sends email with one set of [`MailSettings`]. Cheap to clone; share it behind an `Arc` or
/// clone it into tasks.
#[derive(Clone)]
pub struct Mailer {
    /// The settings it was built from.
    settings: MailSettings,
    /// `host:port`, as errors show it.
    server_label: String,
    /// TLS configuration (public roots plus the private CA), unless the security is `Plain`.
    tls: Option<TlsParameters>,
    /// The name medic gives in EHLO.
    hello: ClientId,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Prepares a mailer: builds the TLS configuration once. Does not connect; call
    /// [`Mailer::test_connection`] for a start-up health check.
    pub fn new(settings: &MailSettings) -> Result<Mailer, ConfigError> {
        let tls = match settings.security {
            Security::Plain => None,
            _ => {
                let mut builder = TlsParameters::builder(settings.server.clone())
                    .certificate_store(CertificateStore::WebpkiRoots);
                if let Some(ca) = &settings.private_ca {
                    let cert = Certificate::from_pem(&ca.pem).map_err(|e| {
                        invalid(
                            "MEDIC_SMTP_CA_FILE",
                            &ca.path.display().to_string(),
                            error_text(&e),
                        )
                    })?;
                    builder = builder.add_root_certificate(cert);
                }
                let params = builder.build_rustls().map_err(|e| {
                    let (var, value) = match &settings.private_ca {
                        Some(ca) => ("MEDIC_SMTP_CA_FILE", ca.path.display().to_string()),
                        None => ("MAIL_SERVER", settings.server.clone()),
                    };
                    invalid(
                        var,
                        &value,
                        format!("cannot set up TLS: {}", error_text(&e)),
                    )
                })?;
                Some(params)
            }
        };
        if settings.security == Security::Plain && settings.credentials.is_some() {
            tracing::warn!(
                server = %settings.server,
                "MAIL_USE_TLS=false with MAIL_USERNAME set: the password will cross the network \
                 unencrypted"
            );
        }
        let server_label = match settings.server.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", settings.port),
            _ => format!("{}:{}", settings.server, settings.port),
        };
        Ok(Mailer {
            settings: settings.clone(),
            server_label,
            tls,
            hello: ClientId::default(),
        })
    }

    /// The settings this mailer sends with.
    pub fn settings(&self) -> &MailSettings {
        &self.settings
    }

    /// `host:port` of the mail server, as errors name it.
    pub fn server(&self) -> &str {
        &self.server_label
    }

    /// Sends one message to every recipient: connects, sets up TLS as configured, logs in if
    /// a user is set, and sends. Returns as soon as the server has accepted the message (250
    /// after DATA); the QUIT follows in the background.
    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        self.send_as(email, None).await
    }

    /// [`Mailer::send`] with a Message-ID of the caller's (see [`Mailer::outbox_message_id`]),
    /// so every attempt at one message carries the same one; `None` makes a new one.
    pub async fn send_as(&self, email: &Email, message_id: Option<&str>) -> Result<(), SendError> {
        let message = self.build_message(email, message_id)?;
        let envelope = message.envelope().clone();
        let bytes = message.formatted();
        self.converse(Some((&envelope, &bytes))).await
    }

    /// Connects, sets up TLS and logs in exactly as [`Mailer::send`] would, then says QUIT
    /// without sending anything: a health check that proves the settings work.
    pub async fn test_connection(&self) -> Result<(), SendError> {
        self.converse(None).await
    }

    fn build_message(&self, email: &Email, message_id: Option<&str>) -> Result<Message, SendError> {
        let message_id = match message_id {
            Some(id) => id.to_string(),
            None => self.new_message_id(),
        };
        // The edge where an email leaves: no secret in any part, and no line break in the
        // subject (a name from outside could otherwise add headers).
        let redact = crate::redact::global();
        let subject = crate::redact::header_line(&redact.scrub(&email.subject));
        let text = redact.scrub(&email.text);
        let html = email.html.as_deref().map(|h| redact.scrub(h));
        let mut builder = Message::builder()
            .from(self.settings.sender.clone())
            .subject(subject)
            .date_now()
            .message_id(Some(message_id))
            .user_agent(format!("medic/{}", env!("CARGO_PKG_VERSION")));
        for recipient in &self.settings.recipients {
            builder = builder.to(recipient.clone());
        }
        let built = match html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html)),
            None => builder.singlepart(SinglePart::plain(text)),
        };
        built.map_err(|e| SendError::Message {
            server: self.server_label.clone(),
            detail: e.to_string(),
        })
    }

    /// The Message-ID of outbox message `id` of the database named `identity`
    /// ([`crate::store::Store::outbox_identity`]): the same on every attempt, different for
    /// every message and every medic.
    pub fn outbox_message_id(&self, identity: &str, id: i64) -> String {
        format!(
            "<outbox.{id}.{identity}.medic@{}>",
            self.settings.sender.email.domain()
        )
    }

    /// `<unique@sender-domain>`: the sender's domain is stable, unlike a container's hostname.
    fn new_message_id(&self) -> String {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        // RandomState is seeded randomly per process: enough to keep two medics apart.
        let random = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(sequence);
            h.finish()
        };
        format!(
            "<{nanos:x}.{sequence:x}.{random:016x}.medic@{}>",
            self.settings.sender.email.domain()
        )
    }

    async fn converse(&self, payload: Option<(&Envelope, &[u8])>) -> Result<(), SendError> {
        let mut phase = Phase::Connect;
        let limit = self.settings.timeout;
        match tokio::time::timeout(limit, self.conversation(&mut phase, payload)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(SendError::Timeout {
                server: self.server_label.clone(),
                phase: phase.describe(self.settings.security),
                after: limit,
                hint: self.timeout_hint(phase),
            }),
        }
    }

    async fn conversation(
        &self,
        phase: &mut Phase,
        payload: Option<(&Envelope, &[u8])>,
    ) -> Result<(), SendError> {
        let security = self.settings.security;
        let wrapper = match security {
            Security::ImplicitTls => self.tls.clone(),
            _ => None,
        };
        *phase = Phase::Connect;
        let mut connection = AsyncSmtpConnection::connect_tokio1(
            (self.settings.server.as_str(), self.settings.port),
            Some(self.settings.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await
        .map_err(|e| self.classify(Phase::Connect, &e))?;

        let starttls = match security {
            Security::StartTls => true,
            Security::Opportunistic => connection.can_starttls(),
            Security::Plain | Security::ImplicitTls => false,
        };
        if starttls {
            *phase = Phase::StartTls;
            if !connection.can_starttls() {
                connection.abort().await;
                return Err(SendError::Tls {
                    server: self.server_label.clone(),
                    detail: "the server does not offer STARTTLS, which MAIL_USE_TLS=true \
                             requires; if it only speaks TLS from the first byte (usually port \
                             465), set MAIL_USE_SSL=true instead"
                        .to_string(),
                });
            }
            let params = self.tls.clone().expect("TLS parameters exist unless Plain");
            connection
                .starttls(params, &self.hello)
                .await
                .map_err(|e| self.classify(Phase::StartTls, &e))?;
        }

        if let Some(credentials) = &self.settings.credentials {
            *phase = Phase::Auth;
            let login = SmtpCredentials::new(
                credentials.username.clone(),
                credentials.password.expose().to_string(),
            );
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], &login)
                .await
                .map_err(|e| self.classify(Phase::Auth, &e))?;
        }

        if let Some((envelope, bytes)) = payload {
            *phase = Phase::Send;
            connection
                .send(envelope, bytes)
                .await
                .map_err(|e| self.classify(Phase::Send, &e))?;
        }

        // The message is accepted once DATA got its 250: say so at once, so the outbox notes it
        // before anything else can happen (a SIGKILL between the 250 and that note makes the
        // message go out again), and say QUIT meanwhile. A failed QUIT changes nothing.
        if payload.is_some() {
            let limit = self.settings.timeout;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(limit, connection.quit()).await;
            });
        } else {
            // A connection test: the QUIT is part of what it checks the server does.
            let _ = connection.quit().await;
        }
        Ok(())
    }

    /// Turns lettre's error into a [`SendError`] that says where it happened.
    fn classify(&self, phase: Phase, error: &lettre::transport::smtp::Error) -> SendError {
        let server = self.server_label.clone();
        let security = self.settings.security;
        let detail = self.scrub(&error_text(error));

        if let Some(code) = error.status() {
            let code: u16 = code.to_string().parse().unwrap_or(0);
            let reply = format!("{code} {detail}");
            return match phase {
                Phase::Auth => SendError::Auth {
                    server,
                    user: self.username(),
                    code: Some(code),
                    reply,
                },
                _ => SendError::Rejected {
                    server,
                    code,
                    reply,
                    phase: phase.describe(security),
                },
            };
        }
        if error.is_timeout() {
            return SendError::Timeout {
                server,
                phase: phase.describe(security),
                after: self.settings.timeout,
                hint: self.timeout_hint(phase),
            };
        }
        // rustls failures reach here as I/O errors of kind InvalidData; a reset or EOF during
        // the handshake is a network problem, not a TLS one.
        let in_tls_handshake = (phase == Phase::StartTls
            || (phase == Phase::Connect && security == Security::ImplicitTls))
            && io_error_kind(error) == Some(std::io::ErrorKind::InvalidData);
        if error.is_tls() || in_tls_handshake {
            return SendError::Tls {
                server,
                detail: self.tls_hint(detail),
            };
        }
        match phase {
            Phase::Connect if !error.is_response() => SendError::Connect { server, detail },
            Phase::Auth if error.is_client() => {
                let mut reply = format!("{detail} (medic offers PLAIN and LOGIN)");
                if !self.settings.security.encrypts_always() {
                    reply.push_str(
                        "; servers often offer AUTH only over TLS: try MAIL_USE_TLS=true",
                    );
                }
                SendError::Auth {
                    server,
                    user: self.username(),
                    code: None,
                    reply,
                }
            }
            Phase::Send if error.is_client() => SendError::Message { server, detail },
            _ => SendError::Protocol {
                server,
                phase: phase.describe(security),
                detail,
            },
        }
    }

    fn username(&self) -> String {
        self.settings
            .credentials
            .as_ref()
            .map(|c| c.username.clone())
            .unwrap_or_default()
    }

    fn timeout_hint(&self, phase: Phase) -> String {
        match (phase, self.settings.security) {
            (Phase::Connect, Security::ImplicitTls) => String::new(),
            (Phase::Connect, _) => "; if this port expects TLS from the first byte (usually 465), \
                                    set MAIL_USE_SSL=true"
                .to_string(),
            _ => String::new(),
        }
    }

    fn tls_hint(&self, detail: String) -> String {
        let lower = detail.to_ascii_lowercase();
        if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
            format!(
                "{detail}; the server's certificate is not signed by an authority medic trusts: \
                 if it comes from a private CA, set MEDIC_SMTP_CA_FILE to that CA's PEM file"
            )
        } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
            format!(
                "{detail}; the certificate does not name {}: MAIL_SERVER must be a name the \
                 certificate carries",
                self.settings.server
            )
        } else if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
            format!(
                "{detail}; the server did not answer in TLS: if this port expects STARTTLS \
                 (usually 587), set MAIL_USE_TLS=true instead of MAIL_USE_SSL"
            )
        } else {
            detail
        }
    }

    /// Removes every secret medic knows from a server's reply: the password in clear and in
    /// the base64 of `AUTH PLAIN`/`AUTH LOGIN`, which servers that quote the command echo.
    fn scrub(&self, text: &str) -> String {
        crate::redact::scrub(text)
    }
}

impl Security {
    /// True when every byte after connecting is encrypted or the connection fails.
    fn encrypts_always(self) -> bool {
        matches!(self, Security::StartTls | Security::ImplicitTls)
    }
}

/// The innermost cause of an error: lettre's own wrappers ("Connection error: ") say less than
/// the cause they carry (the server's reply, the OS error, rustls' verdict).
pub(super) fn error_text(error: &lettre::transport::smtp::Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

fn io_error_kind(error: &lettre::transport::smtp::Error) -> Option<std::io::ErrorKind> {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transience_follows_the_reply_code() {
        let rejected = |code| SendError::Rejected {
            server: "h:1".into(),
            code,
            reply: format!("{code} no"),
            phase: "sending the message",
        };
        assert!(rejected(451).is_transient());
        assert!(!rejected(554).is_transient());
        let auth = |code| SendError::Auth {
            server: "h:1".into(),
            user: "u".into(),
            code,
            reply: String::new(),
        };
        assert!(auth(Some(454)).is_transient());
        assert!(!auth(Some(535)).is_transient());
        assert!(!auth(None).is_transient());
    }
}
