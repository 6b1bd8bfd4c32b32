//! What the probes that speak HTTP (`http`, `ai`, `upload`, and the webhook notifier) share:
//! the headers a user configures, body readers that stop at a size bound, and error texts that
//! say what went wrong in words, without URLs.

use super::secret::{Secret, SecretUri};
use super::size::format_size;

/// An HTTP header to send. Its value is kept as a [`Secret`] because headers are where tokens go.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value (masked when printed).
    pub value: Secret,
    /// True when the value is a credential (an `Authorization`-like name, or a value taken from
    /// the environment): results are scrubbed of it.
    pub sensitive: bool,
}

/// The credentials among `headers`, as they might appear in an error text: each sensitive
/// value, and its token alone (`Bearer <token>` quoted without `Bearer`).
fn header_secrets(headers: &[Header]) -> Vec<String> {
    let mut out = Vec::new();
    for h in headers.iter().filter(|h| h.sensitive) {
        out.push(h.value.expose().to_string());
        if let Some(token) = h.value.expose().split_whitespace().nth(1) {
            out.push(token.to_string());
        }
    }
    out
}

/// What a request to `url` with `headers` carries that must not show in a result: the
/// sensitive headers, and a password written in the URL. The URL is held in clear, so building
/// its [`SecretUri`] here also registers the password with [`crate::redact`].
pub(crate) fn request_secrets(url: &reqwest::Url, headers: &[Header]) -> Vec<String> {
    let mut out = header_secrets(headers);
    out.extend(SecretUri::new(url.as_str()).password_forms());
    out
}

/// The most of a reply body any probe reads: enough for any real answer, and a server that
/// sends gigabytes of garbage cannot exhaust medic's memory.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// How much of an error reply's body is read for its message.
pub(crate) const ERROR_BODY: usize = 4 << 10;

/// How long the body of an error reply is waited for: its status already says what matters.
const ERROR_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads a reply body by chunks, stopping with an error as soon as it passes `limit` bytes.
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if let Some(length) = response.content_length() {
        if length > limit as u64 {
            return Err(format!(
                "the reply body is {}, larger than {}, the most medic reads; not read",
                format_size(length),
                format_size(limit as u64)
            ));
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > limit {
            return Err(format!(
                "the reply body is larger than {}, the most medic reads; stopped reading",
                format_size(limit as u64)
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The start of an error reply's body, for its message: at most `limit` bytes, and whatever
/// arrived within a second. Never fails: a body that is huge, broken or stalled only shortens
/// the message, it must not hide the status.
pub(crate) async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while body.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_WAIT, read).await;
    body.truncate(limit);
    body
}

/// A reqwest error as a sentence, without the request URL (it may carry credentials): what
/// went wrong in words (a reply that is not HTTP, a connection closed or reset too early, a
/// broken body), then the underlying cause, which says exactly what was seen.
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    let has = |needle: &str| causes.iter().any(|c| c.contains(needle));
    // hyper's messages for each fault; matched as text because hyper's error kinds are not
    // reachable through reqwest.
    let plain = if error.is_timeout() && (error.is_body() || error.is_decode()) {
        Some("timed out reading the reply body")
    } else if error.is_timeout() {
        Some("timed out")
    } else if error.is_redirect() {
        Some("too many redirects")
    } else if has("invalid HTTP version")
        || has("invalid HTTP status")
        || has("invalid HTTP header")
    {
        Some("the reply is not HTTP")
    } else if has("message head is too large") {
        Some("the reply's headers are too large")
    } else if has("connection closed before message completed") {
        Some("the server closed the connection before a complete reply")
    } else if has("end of file before message length reached") {
        Some("the server closed the connection before the body ended")
    } else if has("chunk") {
        Some("the body's chunked encoding is broken")
    } else if has("reset by peer") {
        Some("the server reset the connection")
    } else {
        None
    };
    let innermost = causes.last().cloned();
    match (plain, innermost) {
        (Some(plain), Some(cause)) if cause != plain && !cause.contains("timed out") => {
            format!("{plain} ({cause})")
        }
        (Some(plain), _) => plain.to_string(),
        (None, _) => {
            let what = if error.is_connect() {
                "cannot connect"
            } else if error.is_body() || error.is_decode() {
                "reading the reply failed"
            } else {
                "request failed"
            };
            if causes.is_empty() {
                format!("{what}: {error}")
            } else {
                format!("{what}: {}", causes.join(": "))
            }
        }
    }
}

/// Parses a reply body as JSON; the error calls the body `what` ("the reply") and says whether
/// it was empty or what it started with.
pub(crate) fn parse_json(body: &[u8], what: &str) -> Result<serde_json::Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("{what} is empty, not JSON"));
    }
    serde_json::from_slice(body)
        .map_err(|e| format!("{what} is not JSON ({e}): {}", snippet(body, 100)))
}

/// An unexpected status as a message: `HTTP 500`, and the start of the body if there is one.
pub(crate) fn status_error(status: reqwest::StatusCode, body: &[u8]) -> String {
    let text = snippet(body, 200);
    if text.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {text}", status.as_u16())
    }
}

/// The start of a body as printable text, for error messages.
pub(crate) fn snippet(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out.trim().to_string()
}

/// Adds configured headers to a request.
pub(crate) fn with_headers(
    mut request: reqwest::RequestBuilder,
    headers: &[Header],
) -> reqwest::RequestBuilder {
    for h in headers {
        request = request.header(h.name.as_str(), h.value.expose());
    }
    request
}

/// True when the JSON value at a pointer equals `expected`, compared as text: a string by its
/// contents, anything else by its JSON form (`42`, `true`, `null`).
pub(crate) fn json_equals(value: &serde_json::Value, expected: &str) -> bool {
    match value {
        serde_json::Value::String(s) => s == expected,
        other => serde_json::to_string(other).is_ok_and(|text| text == expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_compare_as_text() {
        assert!(json_equals(&json!("ok"), "ok"));
        assert!(json_equals(&json!(42), "42"));
        assert!(json_equals(&json!(true), "true"));
        assert!(!json_equals(&json!("42x"), "42"));
    }

    #[test]
    fn snippets_are_short_and_printable() {
        assert_eq!(snippet(b"a\nb", 10), "a b");
        assert_eq!(snippet("ééééé".as_bytes(), 2), "éé…");
    }
}
