//! The email channel's settings: the app stack's `.env` names (`ADMIN_EMAIL`, `MAIL_SERVER`,
//! `MAIL_PORT`, `MAIL_USE_TLS`, `MAIL_USE_SSL`, `MAIL_USERNAME`, `MAIL_PASSWORD` or
//! `MAIL_PASSWORD_FILE`, `MAIL_DEFAULT_SENDER`) plus medic's own `MEDIC_SMTP_CA_FILE` and
//! `MEDIC_SMTP_TIMEOUT`, parsed and checked once, at start, into [`MailSettings`].
//! docs/email.md is the user's guide to them.
//!
//! The password lives in a [`Secret`], whose `Debug` and `Display` print `***`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};

use super::smtp::error_text;
use crate::config::{parse_duration, ConfigError};

pub use lettre::message::Mailbox;

/// Every variable [`MailSettings::from_vars`] reads, so the caller can tell them from typos.
pub const MAIL_VARIABLES: &[&str] = &[
    "ADMIN_EMAIL",
    "MAIL_SERVER",
    "MAIL_PORT",
    "MAIL_USE_TLS",
    "MAIL_USE_SSL",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "MAIL_PASSWORD_FILE",
    "MAIL_DEFAULT_SENDER",
    "MEDIC_SMTP_CA_FILE",
    "MEDIC_SMTP_TIMEOUT",
];

/// Port used when `MAIL_PORT` is unset: submission with STARTTLS, as the SPEC says.
pub const DEFAULT_PORT: u16 = 587;
/// Port used when `MAIL_PORT` is unset and `MAIL_USE_SSL=true`; also the port that implies
/// implicit TLS when `MAIL_USE_SSL` is not given.
pub const IMPLICIT_TLS_PORT: u16 = 465;
/// How long one SMTP conversation may take when `MEDIC_SMTP_TIMEOUT` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::redact::Secret;

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS at all (`MAIL_USE_TLS=false`), for local relays such as Mailpit.
    Plain,
    /// Neither `MAIL_USE_TLS` nor `MAIL_USE_SSL` given: STARTTLS if the server offers it, with
    /// the certificate checked; plain otherwise.
    Opportunistic,
    /// `MAIL_USE_TLS=true`: STARTTLS is required; a server that does not offer it is an error.
    StartTls,
    /// `MAIL_USE_SSL=true` (or port 465): TLS from the first byte, also called SMTPS.
    ImplicitTls,
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Plain => "no TLS",
            Security::Opportunistic => "STARTTLS if offered",
            Security::StartTls => "STARTTLS",
            Security::ImplicitTls => "implicit TLS",
        })
    }
}

/// The account medic logs in with (SMTP AUTH PLAIN or LOGIN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `MAIL_USERNAME`.
    pub username: String,
    /// `MAIL_PASSWORD`, or the contents of `MAIL_PASSWORD_FILE` without its trailing newline.
    pub password: Secret,
}

/// A private certificate authority to trust in addition to the built-in public roots.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateCa {
    /// Where the PEM was read from (`MEDIC_SMTP_CA_FILE`), for messages.
    pub path: PathBuf,
    /// The PEM text: one or more certificates, already checked to parse.
    pub pem: Vec<u8>,
}

impl fmt::Debug for PrivateCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateCa")
            .field("path", &self.path)
            .field("pem_bytes", &self.pem.len())
            .finish()
    }
}

/// Where and how to send email, parsed and validated; see docs/email.md.
#[derive(Debug, Clone, PartialEq)]
pub struct MailSettings {
    /// Who gets alerts and reports (`ADMIN_EMAIL`, comma-separated); never empty.
    pub recipients: Vec<Mailbox>,
    /// The `From` of every message (`MAIL_DEFAULT_SENDER`, else `MAIL_USERNAME` if it is an
    /// address, else `medic@<hostname>`).
    pub sender: Mailbox,
    /// The SMTP server's host name or IP address (`MAIL_SERVER`); also the name its TLS
    /// certificate must carry.
    pub server: String,
    /// The SMTP server's port (`MAIL_PORT`).
    pub port: u16,
    /// How the connection is protected (`MAIL_USE_TLS`, `MAIL_USE_SSL`, the port).
    pub security: Security,
    /// Login, when `MAIL_USERNAME` is set.
    pub credentials: Option<Credentials>,
    /// A private CA to trust (`MEDIC_SMTP_CA_FILE`).
    pub private_ca: Option<PrivateCa>,
    /// Upper bound on one whole SMTP conversation (`MEDIC_SMTP_TIMEOUT`).
    pub timeout: Duration,
}

impl MailSettings {
    /// Reads mail settings from a map of variables. `Ok(None)` when `MAIL_SERVER` is unset:
    /// email is not configured, and none of the other mail variables is looked at. Files named
    /// by `MAIL_PASSWORD_FILE` and `MEDIC_SMTP_CA_FILE` are read here, so a bad path stops
    /// medic at start rather than at the first alert.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Option<MailSettings>, ConfigError> {
        let get = |name: &'static str| {
            vars.get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        };

        let Some((_, server)) = get("MAIL_SERVER") else {
            return Ok(None);
        };
        let server = parse_server(server)?;

        let recipients = match get("ADMIN_EMAIL") {
            Some((var, v)) => parse_recipients(var, v)?,
            None => {
                return Err(invalid(
                    "ADMIN_EMAIL",
                    "",
                    "MAIL_SERVER is set, so alerts need recipients: give one or more \
                     comma-separated addresses",
                ))
            }
        };

        let use_tls = get("MAIL_USE_TLS")
            .map(|(var, v)| parse_bool(var, v))
            .transpose()?;
        let use_ssl = get("MAIL_USE_SSL")
            .map(|(var, v)| parse_bool(var, v))
            .transpose()?;
        if use_tls == Some(true) && use_ssl == Some(true) {
            return Err(invalid(
                "MAIL_USE_SSL",
                "true",
                "MAIL_USE_TLS and MAIL_USE_SSL are both true; choose one: MAIL_USE_TLS for \
                 STARTTLS (usually port 587), MAIL_USE_SSL for implicit TLS (usually port 465)",
            ));
        }
        let port = match get("MAIL_PORT") {
            Some((var, v)) => match v.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(invalid(var, v, "expected a port number from 1 to 65535")),
            },
            None if use_ssl == Some(true) => IMPLICIT_TLS_PORT,
            None => DEFAULT_PORT,
        };
        let security = match (use_tls, use_ssl) {
            (_, Some(true)) => Security::ImplicitTls,
            (Some(true), _) => Security::StartTls,
            (_, None) if port == IMPLICIT_TLS_PORT => Security::ImplicitTls,
            (Some(false), _) => Security::Plain,
            (None, _) => Security::Opportunistic,
        };

        let username = get("MAIL_USERNAME").map(|(_, v)| v.to_string());
        // A password may legitimately start or end with spaces: take it as given.
        let inline_password = vars.get("MAIL_PASSWORD").filter(|v| !v.is_empty());
        let password = match (inline_password, get("MAIL_PASSWORD_FILE")) {
            (Some(_), Some((var, path))) => {
                return Err(invalid(
                    var,
                    path,
                    "MAIL_PASSWORD is set too; give the password one way only",
                ))
            }
            (Some(p), None) => Some(Secret::new(p.clone())),
            (None, Some((var, path))) => Some(read_password_file(var, path)?),
            (None, None) => None,
        };
        let credentials = match (username, password) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (None, None) => None,
            (Some(username), None) => {
                return Err(invalid(
                    "MAIL_PASSWORD",
                    "",
                    format!(
                        "MAIL_USERNAME={username:?} is set, so a password is needed: set \
                         MAIL_PASSWORD or MAIL_PASSWORD_FILE"
                    ),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "MAIL_USERNAME",
                    "",
                    "a mail password is set, so the user name it belongs to is needed",
                ))
            }
        };

        let sender = match get("MAIL_DEFAULT_SENDER") {
            Some((var, v)) => v.parse::<Mailbox>().map_err(|e| {
                invalid(
                    var,
                    v,
                    format!("{e}; expected an address, or a name and an address as in Medic <medic@example.com>"),
                )
            })?,
            None => default_sender(credentials.as_ref()),
        };

        let private_ca = get("MEDIC_SMTP_CA_FILE")
            .map(|(var, path)| read_private_ca(var, path))
            .transpose()?;

        let timeout = match get("MEDIC_SMTP_TIMEOUT") {
            Some((var, v)) => {
                let d = parse_duration(var, v)?;
                if d.is_zero() {
                    return Err(invalid(var, v, "must be longer than zero"));
                }
                d
            }
            None => DEFAULT_TIMEOUT,
        };

        Ok(Some(MailSettings {
            recipients,
            sender,
            server,
            port,
            security,
            credentials,
            private_ca,
            timeout,
        }))
    }
}

pub(super) fn invalid(var: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var: var.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_server(value: &str) -> Result<String, ConfigError> {
    let host = value.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() {
        return Ok(host.to_string());
    }
    if value.contains("://") || value.contains(':') || value.contains('/') {
        return Err(invalid(
            "MAIL_SERVER",
            value,
            "expected a host name or IP address alone, e.g. smtp.gmail.com; the port goes in \
             MAIL_PORT and the kind of TLS in MAIL_USE_TLS or MAIL_USE_SSL",
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(invalid("MAIL_SERVER", value, "a host name has no spaces"));
    }
    Ok(value.to_string())
}

fn parse_bool(var: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(
            var,
            value,
            "expected true or false (or 1/0, yes/no)",
        )),
    }
}

/// Splits on commas that are not inside a quoted display name (`"Doe, Jane" <jane@x.org>`).
fn split_addresses(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_recipients(var: &str, value: &str) -> Result<Vec<Mailbox>, ConfigError> {
    let mut recipients = Vec::new();
    for entry in split_addresses(value) {
        let mailbox = entry.parse::<Mailbox>().map_err(|e| {
            invalid(
                var,
                value,
                format!("{entry:?} is not an email address ({e}); separate addresses with commas"),
            )
        })?;
        recipients.push(mailbox);
    }
    if recipients.is_empty() {
        return Err(invalid(var, value, "expected at least one email address"));
    }
    Ok(recipients)
}

fn read_password_file(var: &str, path: &str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(var, path, format!("cannot read the password file: {e}")))?;
    // Editors and `echo` end files with a newline that is not part of the password.
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(invalid(var, path, "the password file is empty"));
    }
    Ok(Secret::new(password))
}

fn read_private_ca(var: &str, path: &str) -> Result<PrivateCa, ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| invalid(var, path, format!("cannot read the CA file: {e}")))?;
    let has_certificate = String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----");
    if !has_certificate {
        return Err(invalid(
            var,
            path,
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    // Build a throwaway TLS configuration with it, so a certificate rustls cannot use is
    // reported now, against the variable, instead of at the first alert.
    let check = Certificate::from_pem(&pem).and_then(|cert| {
        TlsParameters::builder("localhost".to_string())
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert)
            .build_rustls()
    });
    if let Err(e) = check {
        return Err(invalid(
            var,
            path,
            format!("not a usable CA certificate: {}", error_text(&e)),
        ));
    }
    Ok(PrivateCa {
        path: PathBuf::from(path),
        pem,
    })
}

/// `MAIL_USERNAME` when it is an address (providers such as Gmail reject other senders),
/// else `medic@<hostname>`, else `medic@localhost`.
fn default_sender(credentials: Option<&Credentials>) -> Mailbox {
    let name = Some("medic".to_string());
    if let Some(Ok(address)) = credentials.map(|c| c.username.parse::<lettre::Address>()) {
        return Mailbox::new(name, address);
    }
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let address = format!("medic@{host}")
        .parse::<lettre::Address>()
        .unwrap_or_else(|_| {
            "medic@localhost"
                .parse()
                .expect("medic@localhost is an address")
        });
    Mailbox::new(name, address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_on_commas_outside_quotes() {
        assert_eq!(
            split_addresses(r#"a@x.org, "Doe, Jane" <jane@x.org>,, b@y.org "#),
            vec!["a@x.org", r#""Doe, Jane" <jane@x.org>"#, "b@y.org"]
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
