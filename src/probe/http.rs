//! The `http` probe: one request, then its status, body text, a JSON value and its latency are
//! checked. Also the HTTP helpers the `ai` and `upload` probes share: a body reader that stops
//! at a size bound, and error texts without URLs.

use std::time::Duration;

use tokio::time::Instant;

use super::spec::{format_size, Header, HttpSettings};
use super::{human, Failure, ProbeContext, Recorder};

/// The most of a reply body any probe reads: enough for any real answer, and a server that
/// sends gigabytes of garbage cannot exhaust medic's memory.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// Reads a reply body by chunks, stopping with an error as soon as it passes `limit` bytes.
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if let Some(length) = response.content_length() {
        if length > limit as u64 {
            return Err(format!(
                "the reply body is {}, more than the {} medic reads; refused",
                format_size(length),
                format_size(limit as u64)
            ));
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > limit {
            return Err(format!(
                "the reply body is larger than {}; stopped reading",
                format_size(limit as u64)
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error as a sentence, without the request URL (it may carry credentials) but with
/// its causes, which say what actually happened (connection refused, DNS, TLS).
pub(crate) fn describe(error: reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "reading the reply failed"
    } else if error.is_redirect() {
        "too many redirects"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    if causes.is_empty() {
        format!("{what}: {error}")
    } else {
        format!("{what}: {}", causes.join(": "))
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

pub(crate) async fn run(
    s: &HttpSettings,
    ctx: &ProbeContext,
    rec: &Recorder,
) -> Result<(), Failure> {
    let started = Instant::now();
    let response = rec
        .step("request", async {
            let mut request = ctx.http.request(s.method.clone(), s.url.clone());
            request = with_headers(request, &s.headers);
            if let Some(body) = &s.body {
                request = request.body(body.clone());
            }
            // No reqwest timeout: the step's own limit applies and names the step.
            request.send().await.map_err(describe)
        })
        .await?;
    let status = response.status().as_u16();
    rec.note(format!("HTTP {status}"));
    rec.detail("status", status);
    let body = rec
        .step("read body", read_bounded(response, MAX_BODY))
        .await?;
    let latency = started.elapsed();
    rec.detail("bytes", body.len());
    rec.step("check", async { check(s, status, &body, latency) })
        .await?;
    Ok(())
}

fn check(s: &HttpSettings, status: u16, body: &[u8], latency: Duration) -> Result<(), String> {
    if status != s.expect_status {
        return Err(format!(
            "expected HTTP {}, got {status}: {}",
            s.expect_status,
            snippet(body, 200)
        ));
    }
    if let Some(text) = &s.expect_body {
        if !String::from_utf8_lossy(body).contains(text.as_str()) {
            return Err(format!(
                "the body does not contain {text:?}: {}",
                snippet(body, 200)
            ));
        }
    }
    if let Some((pointer, expected)) = &s.expect_json {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("the body is not JSON ({e}): {}", snippet(body, 100)))?;
        match json.pointer(pointer) {
            Some(value) if json_equals(value, expected) => {}
            Some(value) => return Err(format!("{pointer} is {value}, expected {expected:?}")),
            None => return Err(format!("the JSON body has no value at {pointer}")),
        }
    }
    if let Some(bound) = s.max_latency {
        if latency > bound {
            return Err(format!(
                "took {}, more than max_latency {}",
                human(latency),
                human(bound)
            ));
        }
    }
    Ok(())
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
