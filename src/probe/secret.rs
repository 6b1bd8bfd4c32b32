//! Secrets in probe settings: values that must never reach a log line, an email, an API answer or
//! a probe result.
//!
//! Three layers keep them out:
//! - [`Secret`] and [`SecretUri`] hold the value; their `Debug` and `Display` print a mask, so a
//!   `{:?}` of a whole [`ProbeSpec`](super::ProbeSpec) is safe.
//! - [`mask_uri`] prints a URI with its password replaced, for messages that must say which
//!   server was meant.
//! - [`scrub`] removes every known secret value from free text (driver errors, server replies)
//!   before it is stored in a [`ProbeResult`](super::ProbeResult).
//!
//! Constructing a [`Secret`] or [`SecretUri`] also registers the value with [`crate::redact`],
//! the process-wide set every output edge scrubs with.

use std::fmt;

pub use crate::redact::MASK;

pub use crate::redact::Secret;

/// A connection URI that may carry a password (`mongodb://user:pass@host`, `amqp://…`).
/// Printing it shows the URI with the password masked.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUri(String);

impl SecretUri {
    /// Wraps a URI and registers its password with [`crate::redact`], unless the password is
    /// the user name: every URI shows its user, so that password is no secret (RabbitMQ's
    /// `guest:guest`), and masking it everywhere would mask the user name in every message.
    pub fn new(uri: impl Into<String>) -> SecretUri {
        let uri = SecretUri(uri.into());
        let user = password_range(&uri.0).map(|(from, _)| {
            let start = uri.0.find("://").map_or(0, |i| i + 3);
            percent_decode(&uri.0[start..from - 1])
        });
        for form in uri.password_forms() {
            if user.as_deref() != Some(percent_decode(&form).as_str()) {
                crate::redact::register(&form);
            }
        }
        uri
    }

    /// The URI with its password, for the connect call only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URI with its password masked.
    pub fn masked(&self) -> String {
        mask_uri(&self.0)
    }

    /// The password in the URI, as written and percent-decoded, so that [`scrub`] can remove it
    /// from driver errors that quote it either way.
    pub fn password_forms(&self) -> Vec<String> {
        match userinfo_password(&self.0) {
            Some(raw) if !raw.is_empty() => {
                let decoded = percent_decode(raw);
                if decoded == raw {
                    vec![raw.to_string()]
                } else {
                    vec![raw.to_string(), decoded]
                }
            }
            _ => Vec::new(),
        }
    }
}

impl fmt::Debug for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUri({:?})", self.masked())
    }
}

impl fmt::Display for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl serde::Serialize for SecretUri {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

/// The byte range of the password inside `scheme://user:password@host/...`, if there is one.
fn password_range(uri: &str) -> Option<(usize, usize)> {
    let start = uri.find("://")? + 3;
    let rest = &uri[start..];
    // The authority ends at the path, query or fragment; a password may itself hold an
    // unencoded '/', so the last '@' before the query decides where the user info ends.
    let before_query = rest.find(['?', '#']).map_or(rest, |i| &rest[..i]);
    let at = before_query.rfind('@')?;
    let userinfo = &before_query[..at];
    let colon = userinfo.find(':')?;
    Some((start + colon + 1, start + at))
}

fn userinfo_password(uri: &str) -> Option<&str> {
    password_range(uri).map(|(from, to)| &uri[from..to])
}

/// `scheme://user:password@host/...` becomes `scheme://user:***@host/...`; anything else is
/// returned unchanged. Works for multi-host MongoDB URIs too.
pub fn mask_uri(uri: &str) -> String {
    match password_range(uri) {
        Some((from, to)) => format!("{}{MASK}{}", &uri[..from], &uri[to..]),
        None => uri.to_string(),
    }
}

/// [`mask_uri`], and every value of the query string masked too (`?key=***&page=***`): query
/// strings carry API keys and signatures as often as URIs carry passwords, and a target shown
/// in a table needs only the parameter names.
pub fn mask_url(url: &str) -> String {
    let masked = mask_uri(url);
    let Some(q) = masked.find('?') else {
        return masked;
    };
    let (base, rest) = masked.split_at(q + 1);
    let (query, fragment) = match rest.find('#') {
        Some(h) => rest.split_at(h),
        None => (rest, ""),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}{}{fragment}", query.join("&"))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces every occurrence of each of these secrets in `text` with [`MASK`], then scrubs it
/// of every secret the process knows ([`crate::redact::scrub`], which also finds the wire
/// encodings). The first step covers what the process set leaves out on purpose (a password
/// equal to its user name, see [`SecretUri::new`]) with a plain replace, cheap enough for every
/// text of every result. Secrets shorter than four characters are left alone: masking every
/// "1" or "ab" would garble messages and hide nothing.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    let mut sorted: Vec<&String> = secrets
        .iter()
        .filter(|s| s.len() >= crate::redact::MIN_LEN)
        .collect();
    // Longest first, so a secret that contains another is masked whole.
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in sorted {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    crate::redact::scrub(&out)
}

/// Applies [`scrub`] to every string inside a JSON value.
pub fn scrub_json(value: &mut serde_json::Value, secrets: &[String]) {
    match value {
        serde_json::Value::String(s) => *s = scrub(s, secrets),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| scrub_json(v, secrets)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| scrub_json(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_in_uris() {
        let cases = [
            (
                "mongodb://user:pa55@db:27017/app",
                "mongodb://user:***@db:27017/app",
            ),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "mongodb://u:p@a:1,b:2/?replicaSet=rs",
                "mongodb://u:***@a:1,b:2/?replicaSet=rs",
            ),
            ("mongodb://u:p/w@db/x", "mongodb://u:***@db/x"),
            ("mongodb://db:27017", "mongodb://db:27017"),
            ("mongodb://user@db", "mongodb://user@db"),
            ("not a uri", "not a uri"),
            ("https://h/x?mail=a@b", "https://h/x?mail=a@b"),
        ];
        for (input, expected) in cases {
            assert_eq!(mask_uri(input), expected, "{input}");
        }
    }

    #[test]
    fn a_uri_password_is_registered_for_every_output_unless_it_is_the_user_name() {
        let _ = SecretUri::new("amqp://zq8user:zq8pass%21@h/");
        assert!(crate::redact::global().finds("said zq8pass! there"));
        assert!(crate::redact::global().finds("said zq8pass%21 there"));
        let _ = SecretUri::new("amqp://zq9user:zq9user@h/");
        assert!(!crate::redact::global().finds("zq9user"));
    }

    #[test]
    fn query_values_are_masked_in_targets() {
        assert_eq!(
            mask_url("https://u:pw@h/x?key=abc&page=2&flag#top"),
            "https://u:***@h/x?key=***&page=***&flag#top"
        );
        assert_eq!(mask_url("http://h/health"), "http://h/health");
    }

    #[test]
    fn password_forms_include_the_decoded_password() {
        let uri = SecretUri::new("amqp://u:p%40ss@h/");
        assert_eq!(uri.password_forms(), vec!["p%40ss", "p@ss"]);
        assert!(SecretUri::new("amqp://h/").password_forms().is_empty());
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let key = Secret::new("sk-live-123456");
        assert_eq!(format!("{key}"), "***");
        assert!(!format!("{key:?}").contains("sk-live"));
        let uri = SecretUri::new("mongodb://u:hunter22@h");
        assert!(!format!("{uri:?} {uri}").contains("hunter22"));
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"***\"");
    }

    #[test]
    fn scrub_removes_secrets_longest_first() {
        let secrets = vec!["abcd".to_string(), "abcdef".to_string(), "x".to_string()];
        assert_eq!(
            scrub("key abcdef and abcd and x", &secrets),
            "key *** and *** and x"
        );
        let mut json = serde_json::json!({"a": ["abcd"], "b": {"c": "zz abcdef"}});
        scrub_json(&mut json, &secrets);
        assert_eq!(
            json,
            serde_json::json!({"a": ["***"], "b": {"c": "zz ***"}})
        );
    }
}
