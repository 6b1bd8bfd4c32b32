//! The `http` probe: one request, then its status, body text, a JSON value and its latency are
//! checked.

use std::time::Duration;

use tokio::time::Instant;

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::reply::{
    describe, json_equals, parse_json, read_bounded, read_prefix, request_secrets, snippet,
    with_headers, Header, ERROR_BODY, MAX_BODY,
};
use crate::probe::secret::mask_url;
use crate::probe::{human, Failure, ProbeContext, Recorder};

/// Settings of an `http` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Request method (default GET).
    pub method: reqwest::Method,
    /// Absolute http(s) URL.
    pub url: reqwest::Url,
    /// Extra request headers.
    pub headers: Vec<Header>,
    /// Request body, if any.
    pub body: Option<String>,
    /// Expected status code (default 200).
    pub expect_status: u16,
    /// Text the body must contain.
    pub expect_body: Option<String>,
    /// A JSON pointer into the body and the value it must equal (compared as text, so `42`,
    /// `true` and `ok` all work).
    pub expect_json: Option<(String, String)>,
    /// The whole request (headers and body) must complete within this.
    pub max_latency: Option<Duration>,
}

impl Kind for HttpSettings {
    const TYPE: &'static str = "http";
    const KEYS: &'static [Key] = &[
        ("url", Shape::Scalar),
        ("method", Shape::Scalar),
        ("headers", Shape::Headers),
        ("body", Shape::Scalar),
        ("expect_status", Shape::Scalar),
        ("expect_body", Shape::Scalar),
        ("expect_json_pointer", Shape::Scalar),
        ("expect_json_value", Shape::Scalar),
        ("max_latency", Shape::Scalar),
    ];

    fn resolve(r: &Resolver) -> Res<HttpSettings> {
        let method = r.text_or("method", "GET")?.to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| r.err(Some("method"), format!("{method:?} is not an HTTP method")))?;
        let url = r.url("url", "the URL to request, e.g. http://app:8000/health")?;
        let expect_status: u16 = r
            .number("expect_status", "an HTTP status such as 200")?
            .unwrap_or(200);
        if !(100..=599).contains(&expect_status) {
            return Err(r.err(
                Some("expect_status"),
                "expected an HTTP status between 100 and 599",
            ));
        }
        let pointer = match r.is_set("expect_json_pointer") {
            true => Some(r.pointer("expect_json_pointer", "")?),
            false => None,
        };
        let value = r.text("expect_json_value")?;
        let expect_json = match (pointer, value) {
            (Some(p), Some(v)) => Some((p, v)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(r.err(
                    Some("expect_json_pointer"),
                    "needs expect_json_value, the value the pointer must equal",
                ))
            }
            (None, Some(_)) => {
                return Err(r.err(
                    Some("expect_json_value"),
                    "needs expect_json_pointer, where in the JSON body to look (e.g. /status)",
                ))
            }
        };
        Ok(HttpSettings {
            method,
            url,
            headers: r.headers()?,
            body: r.text("body")?,
            expect_status,
            expect_body: r.text("expect_body")?,
            expect_json,
            max_latency: r.duration("max_latency")?,
        })
    }

    fn target(&self) -> String {
        format!("{} {}", self.method, mask_url(self.url.as_str()))
    }

    fn secret_values(&self) -> Vec<String> {
        request_secrets(&self.url, &self.headers)
    }

    async fn run(&self, ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, ctx, rec).await
    }
}

async fn run(s: &HttpSettings, ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
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
        .step("read body", async {
            if status == s.expect_status {
                read_bounded(response, MAX_BODY).await
            } else {
                // Only quoted in the error: an unexpected status must not turn into a size error.
                Ok(read_prefix(response, ERROR_BODY).await)
            }
        })
        .await?;
    let latency = started.elapsed();
    rec.detail("bytes", body.len());
    rec.step("check", async { check(s, status, &body, latency) })
        .await?;
    Ok(())
}

fn check(s: &HttpSettings, status: u16, body: &[u8], latency: Duration) -> Result<(), String> {
    if status != s.expect_status {
        let text = snippet(body, 200);
        let quoted = if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        };
        return Err(format!(
            "expected HTTP {}, got {status}{quoted}",
            s.expect_status
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
        let json = parse_json(body, "the body")?;
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
    use crate::probe::kinds::from_yaml;

    #[test]
    fn a_json_pointer_needs_its_value_and_the_method_is_upper_case() {
        let e =
            from_yaml("type: http\nurl: http://app/\nexpect_json_pointer: /status").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("expect_json_pointer"));
        assert!(e.to_string().contains("needs expect_json_value"), "{e}");
        let spec = from_yaml("type: http\nurl: http://u:pw@app/\nmethod: post").unwrap();
        assert_eq!(spec.kind.target(), "POST http://u:***@app/");
        assert!(spec.kind.secret_values().contains(&"pw".to_string()));
    }
}
