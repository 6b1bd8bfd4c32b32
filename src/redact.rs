//! The one masking mechanism: every secret value medic holds, and [`scrub`] that removes them
//! from any text on its way out.
//!
//! Why one registry instead of masking field by field: a secret reaches output by paths nobody
//! lists in advance (a server that echoes a request, a driver error quoting a URI, an SMTP
//! server quoting the AUTH line). So every secret is registered once, where medic reads it
//! ([`register`]: the mail password, `MEDIC_API_TOKEN`, the webhook URL, AI keys, credential
//! headers, URI passwords, every `${VAR}` expanded in probe settings), and every edge scrubs
//! what leaves: the log writer (src/main.rs), the HTTP server's response bodies
//! ([`crate::api::router`]), each email and webhook as sent, and what the one-shot commands
//! print.
//!
//! A secret is recognised in clear and in the encodings it takes on the wire:
//! - base64 at each of the three alignments it can have inside a longer encoded text, so
//!   `Authorization: Basic base64(user:pass)`, SMTP `AUTH PLAIN base64(\0user\0pass)` and
//!   `AUTH LOGIN base64(pass)` are caught whatever the user name (standard and URL-safe
//!   alphabets);
//! - percent-encoded (every byte but the unreserved ones, or only those a URL's query or user
//!   info encodes; upper and lower case hex) and `+` for spaces as in forms;
//! - as JSON and HTML escape it.
//!
//! Secrets shorter than [`MIN_LEN`] bytes are not masked: masking every "ab" or "1" would garble
//! every message and hide nothing worth hiding. For the same reason a base64 form is used only
//! when the part of it that depends on the secret alone is at least [`MIN_LEN`] + 1 characters.

use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC};

/// What a masked value prints as.
pub const MASK: &str = "***";

/// Shorter secrets are not masked (see the module docs).
pub const MIN_LEN: usize = 4;

/// What a URL's query encodes (the WHATWG URL standard's query set), as `url` and browsers do.
const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\'');

/// What a URL's user info encodes (the WHATWG userinfo set).
const USERINFO: &AsciiSet = &QUERY
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// Everything but RFC 3986's unreserved characters (what `encodeURIComponent`-like encoders do).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The secrets known so far, with every form each may take in output.
#[derive(Default)]
struct Known {
    /// The secrets as registered (to skip a second registration).
    secrets: Vec<String>,
    /// Every form of every secret, the patterns of `matcher`.
    forms: Vec<String>,
    /// Finds the longest form at each place; `None` while nothing is registered.
    matcher: Option<AhoCorasick>,
}

/// A set of secrets and the scrubbing that removes them. The process has one, [`global`];
/// tests of pure logic may build their own.
#[derive(Default)]
pub struct Redactor {
    /// Replaced whole on each registration (rare), read on every scrub (often).
    known: RwLock<Arc<Known>>,
}

impl Redactor {
    /// An empty set.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret, in clear and in its wire encodings. Values under [`MIN_LEN`] bytes and
    /// values already known are ignored.
    pub fn register(&self, secret: &str) {
        if secret.len() < MIN_LEN {
            return;
        }
        let current = self.snapshot();
        if current.secrets.iter().any(|s| s == secret) {
            return;
        }
        let mut guard = self.known.write().unwrap_or_else(|e| e.into_inner());
        if guard.secrets.iter().any(|s| s == secret) {
            return;
        }
        let mut secrets = guard.secrets.clone();
        secrets.push(secret.to_string());
        let mut forms = guard.forms.clone();
        for form in forms_of(secret) {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
        // A contiguous NFA: built in well under a millisecond and small, where a DFA of a few
        // hundred secrets' forms would cost megabytes (medic's whole footprint is ~15 MiB);
        // it still scans a log line in microseconds.
        let matcher = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .match_kind(MatchKind::LeftmostLongest)
            .build(&forms)
            .ok();
        *guard = Arc::new(Known {
            secrets,
            forms,
            matcher,
        });
    }

    /// `text` with every known secret, in any of its forms, replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        let known = self.snapshot();
        match &known.matcher {
            Some(m) if m.is_match(text) => m.replace_all(text, &vec![MASK; known.forms.len()]),
            _ => text.to_string(),
        }
    }

    /// [`Redactor::scrub`] for bytes that may not be UTF-8 (a log line, a response body):
    /// matching is on the bytes, so nothing else is changed.
    pub fn scrub_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let known = self.snapshot();
        match &known.matcher {
            Some(m) if m.is_match(bytes) => {
                m.replace_all_bytes(bytes, &vec![MASK.as_bytes(); known.forms.len()])
            }
            _ => bytes.to_vec(),
        }
    }

    /// True when `text` holds a known secret in any of its forms.
    pub fn finds(&self, text: &str) -> bool {
        self.snapshot()
            .matcher
            .as_ref()
            .is_some_and(|m| m.is_match(text))
    }

    /// Applies [`Redactor::scrub`] to every string inside a JSON value.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if self.finds(s) => *s = self.scrub(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }

    fn snapshot(&self) -> Arc<Known> {
        self.known.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The process's secrets.
pub fn global() -> &'static Redactor {
    static GLOBAL: OnceLock<Redactor> = OnceLock::new();
    GLOBAL.get_or_init(Redactor::new)
}

/// Registers a secret with the process's [`global`] set.
pub fn register(secret: &str) {
    global().register(secret);
}

/// Scrubs `text` of the process's secrets.
pub fn scrub(text: &str) -> String {
    global().scrub(text)
}

/// A secret string (a password, an API key, a token-bearing header value) that never prints:
/// `Debug`, `Display` and `Serialize` all give [`MASK`]. The one wrapper for every secret medic
/// holds, so that masking cannot differ between the places that keep one.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value and registers it (and the token after a scheme such as `Bearer `) with the
    /// process's [`global`] set, so no output shows it.
    pub fn new(value: impl Into<String>) -> Secret {
        let value = value.into();
        register(&value);
        if let Some((_, token)) = value.trim().split_once(char::is_whitespace) {
            register(token.trim());
        }
        Secret(value)
    }

    /// The value itself, for the one place that must send it (a request header, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

/// The variables whose values are secrets by name. Registered at start-up
/// ([`register_from_env`]), before anything is logged; the code that reads each one registers
/// it again (and what its `_FILE` holds) where it reads it.
pub const SECRET_VARIABLES: &[&str] = &[
    "MAIL_PASSWORD",
    "MEDIC_API_TOKEN",
    "MEDIC_WEBHOOK_URL",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
];

/// Registers the values of [`SECRET_VARIABLES`] found in `vars`.
pub fn register_from_env(vars: &std::collections::HashMap<String, String>) {
    for name in SECRET_VARIABLES {
        if let Some(value) = vars.get(*name) {
            register(value.trim());
        }
    }
}

/// Every form `secret` may take in output (see the module docs).
fn forms_of(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    let mut add = |form: String| {
        if form.len() >= MIN_LEN && !forms.contains(&form) {
            forms.push(form);
        }
    };
    for set in [COMPONENT, QUERY, USERINFO] {
        let upper = percent_encoding::utf8_percent_encode(secret, set).to_string();
        add(lower_hex(&upper));
        add(upper.replace("%20", "+"));
        add(upper);
    }
    if let Ok(json) = serde_json::to_string(secret) {
        add(json[1..json.len() - 1].to_string());
    }
    // As the templates write it (minijinja: `'` and `/` too), and as escapers that leave `/`
    // alone write it.
    let html = html_escape(secret);
    let plain_slash = html.replace("&#x2f;", "/");
    add(plain_slash.replace("&#x27;", "&#39;"));
    add(plain_slash);
    add(html);
    for core in base64_cores(secret.as_bytes()) {
        if core.len() > MIN_LEN {
            add(core.replace('+', "-").replace('/', "_"));
            add(core);
        }
    }
    forms
}

/// The base64 characters that depend on `secret`'s bytes alone, for each of the three offsets
/// (modulo 3) at which it can start inside a longer encoded text. Whatever comes before and
/// after (a user name, a NUL, padding), the encoded text contains one of these.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    (0..3usize)
        .filter_map(|offset| {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(secret);
            let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
            // Character k covers bits 6k..6k+6: it is the secret's alone once 6k is past the
            // offset's bits, and complete while 6k+6 is within the bytes.
            let first = (8 * offset).div_ceil(6);
            let end = 8 * bytes.len() / 6;
            (end > first).then(|| encoded[first..end].to_string())
        })
        .collect()
}

fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut chars = encoded.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for h in chars.by_ref().take(2) {
                out.push(h.to_ascii_lowercase());
            }
        }
    }
    out
}

/// HTML's escaping as the status page and the email templates write it (minijinja's: `&`, `<`,
/// `>`, `"`, `'` and `/`).
pub fn html_escape(text: &str) -> String {
    minijinja::HtmlEscape(text).to_string()
}

/// `text` for one line of a text log or a one-line field: control characters (CR, LF, ESC, …)
/// are written as escapes (`\r`, `\n`, `\u{1b}`), so that a value from outside can neither start
/// a forged line nor send terminal escapes.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `text` for an email header such as the subject: CR, LF and other control characters become
/// spaces, so a name from outside cannot add a header.
pub fn header_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A log writer that scrubs each event of every known secret before it reaches `M`'s writer:
/// the edge where log lines leave, at every level and in both formats. An event is buffered
/// whole and written in one piece on drop, so a secret split across two writes is still found.
#[derive(Debug, Clone, Copy)]
pub struct RedactingWriter<M>(pub M);

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for RedactingWriter<M>
{
    type Writer = RedactedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedEvent {
            buffer: Vec::new(),
            inner: self.0.make_writer(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactedEvent {
            buffer: Vec::new(),
            inner: self.0.make_writer_for(meta),
        }
    }
}

/// One event on its way through [`RedactingWriter`].
pub struct RedactedEvent<W: std::io::Write> {
    /// The event as formatted so far.
    buffer: Vec<u8>,
    /// Where the scrubbed event goes.
    inner: W,
}

impl<W: std::io::Write> std::io::Write for RedactedEvent<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: std::io::Write> Drop for RedactedEvent<W> {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let scrubbed = global().scrub_bytes(&self.buffer);
        // Nowhere to report a failed log write; the next event tries again.
        let _ = self.inner.write_all(&scrubbed);
        let _ = self.inner.flush();
    }
}

/// The text log's field formatter: like tracing's default (`message`, then `name=value`), with
/// every control character of a message or value escaped ([`escape_controls`]), so one event
/// stays one line whatever a container name, label or server reply holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes the fields of one event or span for [`EscapedFields`].
struct EscapingVisitor<'writer> {
    writer: tracing_subscriber::fmt::format::Writer<'writer>,
    result: std::fmt::Result,
    first: bool,
}

impl tracing::field::Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let text = format!("{value:?}");
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = match field.name() {
            "message" => write!(self.writer, "{separator}{}", escape_controls(&text)),
            name => write!(self.writer, "{separator}{name}={}", escape_controls(&text)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn a_secret_is_masked_in_clear_and_in_every_wire_encoding() {
        let r = Redactor::new();
        let secret = "s3cr3t pa/ss+wörd";
        r.register(secret);
        let outputs = [
            format!("value {secret} here"),
            format!(
                "Authorization: Basic {}",
                b64(format!("alice:{secret}").as_bytes())
            ),
            format!(
                "Authorization: Basic {}",
                b64(format!("bo:{secret}").as_bytes())
            ),
            format!(
                "Authorization: Basic {}",
                b64(format!("eve:{secret}").as_bytes())
            ),
            format!(
                "AUTH PLAIN {}",
                b64(format!("\0medic\0{secret}").as_bytes())
            ),
            format!("AUTH PLAIN {}", b64(format!("\0me\0{secret}").as_bytes())),
            format!("334 {}", b64(secret.as_bytes())),
            format!(
                "GET /x?k={} HTTP/1.1",
                percent_encoding::utf8_percent_encode(secret, COMPONENT)
            ),
            format!(
                "GET /x?k={} HTTP/1.1",
                lower_hex(&percent_encoding::utf8_percent_encode(secret, COMPONENT).to_string())
            ),
            format!(
                "https://u:{}@h/",
                percent_encoding::utf8_percent_encode(secret, USERINFO)
            ),
            format!("{{\"k\":{}}}", serde_json::to_string(secret).unwrap()),
            format!("<td>{}</td>", html_escape(secret)),
            format!("<td>{}</td>", html_escape(secret).replace("&#x2f;", "/")),
        ];
        for out in outputs {
            let scrubbed = r.scrub(&out);
            assert!(!r.finds(&scrubbed), "{out} -> {scrubbed}");
            assert!(scrubbed.contains(MASK), "{out} -> {scrubbed}");
            assert!(!scrubbed.contains("s3cr3t"), "{out} -> {scrubbed}");
        }
        // The decoded base64 of what is left holds no part of the secret longer than 2 bytes.
        let basic = format!("alice:{secret}");
        let scrubbed = r.scrub(&b64(basic.as_bytes()));
        assert!(scrubbed.len() < 16, "{scrubbed}");
    }

    #[test]
    fn short_secrets_are_left_alone() {
        let r = Redactor::new();
        r.register("a");
        r.register("abc");
        assert_eq!(r.scrub("a cab abc"), "a cab abc");
        r.register("abcd");
        assert_eq!(r.scrub("abcde abc"), "***e abc");
    }

    #[test]
    fn the_longest_secret_wins_and_other_text_is_kept() {
        let r = Redactor::new();
        r.register("abcd");
        r.register("abcdef");
        assert_eq!(r.scrub("key abcdef and abcd!"), "key *** and ***!");
        assert_eq!(r.scrub_bytes(b"\xffabcd\xfe"), b"\xff***\xfe".to_vec());
        let mut json = serde_json::json!({"a": ["abcd"], "b": {"c": "zz abcdef"}, "n": 1});
        r.scrub_json(&mut json);
        assert_eq!(
            json,
            serde_json::json!({"a": ["***"], "b": {"c": "zz ***"}, "n": 1})
        );
    }

    #[test]
    fn nothing_registered_changes_nothing() {
        let r = Redactor::new();
        assert_eq!(r.scrub("anything"), "anything");
        assert!(!r.finds("anything"));
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn text_log_lines_are_scrubbed_and_stay_one_line() {
        register("zq7LogSecretVal");
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(RedactingWriter(move || sink.clone()))
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                name = "web\r\nFORGED line",
                secret = %"key=zq7LogSecretVal",
                "failed with zq7LogSecretVal\nINFO forged"
            );
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains("zq7LogSecretVal"), "{text}");
        assert!(text.contains("failed with ***\\nINFO forged"), "{text}");
        assert!(text.contains("secret=key=***"), "{text}");
        assert!(text.contains(r#"name="web\r\nFORGED line""#), "{text}");
    }

    #[test]
    fn control_characters_are_escaped_for_one_line() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\r\nINFO forged\x1b[31m"),
            "a\\r\\nINFO forged\\u{1b}[31m"
        );
        assert_eq!(header_line("web\r\nBcc: x@y"), "web  Bcc: x@y");
    }
}
