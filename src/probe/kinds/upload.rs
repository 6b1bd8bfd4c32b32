//! The `upload` probe: the app's whole pipeline, as a user would drive it.
//!
//! 1. `upload`: POST a generated text file carrying a unique token as multipart (field `file`
//!    unless configured) and take the id from the JSON answer (pointer `/id`).
//! 2. `process`: poll the status URL (`{id}` substituted) until the status pointer (`/status`)
//!    equals the done value (`done`); a failed value (`failed`, `error`) stops at once.
//! 3. `check text`: the text pointer (`/text`) must contain the token: the worker really read
//!    the file.
//! 4. `delete`: DELETE what was made. It runs whenever an id was obtained, also after a failed
//!    step, within the time the probe keeps in reserve for cleanup.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::reply::{
    describe, json_equals, parse_json, read_bounded, read_prefix, request_secrets, snippet,
    status_error, with_headers, Header, ERROR_BODY, MAX_BODY,
};
use crate::probe::secret::mask_url;
use crate::probe::{human, Failure, ProbeContext, Recorder};

/// Settings of an `upload` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadSettings {
    /// Where the multipart POST goes.
    pub url: reqwest::Url,
    /// Headers sent with every request (authentication).
    pub headers: Vec<Header>,
    /// Multipart field name (default `file`).
    pub field: String,
    /// File name of the generated file (default `medic-probe.txt`).
    pub filename: String,
    /// JSON pointer to the id in the upload's answer (default `/id`).
    pub id_pointer: String,
    /// Status URL template with `{id}`; absolute, or a path resolved against `url`.
    pub status_url: String,
    /// JSON pointer to the status in the status answer (default `/status`).
    pub status_pointer: String,
    /// Status value meaning processed (default `done`).
    pub done_value: String,
    /// Status values meaning processing failed, which stop polling at once (default `failed`,
    /// `error`).
    pub failed_values: Vec<String>,
    /// JSON pointer to the extracted text (default `/text`).
    pub text_pointer: String,
    /// DELETE URL template with `{id}` (default: the status URL).
    pub delete_url: String,
    /// Pause between two status polls (default 1s).
    pub poll_interval: Duration,
}

impl Kind for UploadSettings {
    const TYPE: &'static str = "upload";
    const KEYS: &'static [Key] = &[
        ("url", Shape::Scalar),
        ("headers", Shape::Headers),
        ("field", Shape::Scalar),
        ("filename", Shape::Scalar),
        ("id_pointer", Shape::Scalar),
        ("status_url", Shape::Scalar),
        ("status_pointer", Shape::Scalar),
        ("done_value", Shape::Scalar),
        ("failed_values", Shape::List),
        ("text_pointer", Shape::Scalar),
        ("delete_url", Shape::Scalar),
        ("poll_interval", Shape::Scalar),
    ];

    fn resolve(r: &Resolver) -> Res<UploadSettings> {
        let url = r.url(
            "url",
            "where to POST the file, e.g. http://app:8000/api/upload",
        )?;
        let template = |key: &str| -> Res<Option<String>> {
            let Some(t) = r.text(key)? else {
                return Ok(None);
            };
            if !t.contains("{id}") {
                return Err(r.err(
                    Some(key),
                    format!("{t:?} must contain {{id}}, where the upload's id goes"),
                ));
            }
            if !t.starts_with('/') && reqwest::Url::parse(&t.replace("{id}", "x")).is_err() {
                return Err(r.err(
                    Some(key),
                    format!("{t:?} is neither an absolute URL nor a path starting with /"),
                ));
            }
            Ok(Some(t))
        };
        let status_url = template("status_url")?.ok_or_else(|| {
            r.err(
                Some("status_url"),
                "is required: where to poll, e.g. /api/documents/{id}",
            )
        })?;
        let delete_url = template("delete_url")?.unwrap_or_else(|| status_url.clone());
        Ok(UploadSettings {
            url,
            headers: r.headers()?,
            field: r.text_or("field", "file")?,
            filename: r.text_or("filename", "medic-probe.txt")?,
            id_pointer: r.pointer("id_pointer", "/id")?,
            status_url,
            status_pointer: r.pointer("status_pointer", "/status")?,
            done_value: r.text_or("done_value", "done")?,
            failed_values: r
                .list("failed_values")?
                .unwrap_or_else(|| vec!["failed".into(), "error".into()]),
            text_pointer: r.pointer("text_pointer", "/text")?,
            delete_url,
            poll_interval: r
                .duration("poll_interval")?
                .unwrap_or(Duration::from_secs(1)),
        })
    }

    fn target(&self) -> String {
        mask_url(self.url.as_str())
    }

    fn secret_values(&self) -> Vec<String> {
        request_secrets(&self.url, &self.headers)
    }

    async fn run(&self, ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, ctx, rec).await
    }
}

async fn run(s: &UploadSettings, ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
    let token = format!("medic-probe-{}", uuid::Uuid::new_v4().simple());
    let content = format!(
        "This file was uploaded by medic's upload probe `{}`.\nToken: {token}\n",
        rec.probe()
    );

    let id = rec
        .step("upload", async {
            let part = reqwest::multipart::Part::text(content)
                .file_name(s.filename.clone())
                .mime_str("text/plain")
                .map_err(describe)?;
            let form = reqwest::multipart::Form::new().part(s.field.clone(), part);
            let request = with_headers(ctx.http.post(s.url.clone()), &s.headers).multipart(form);
            let response = request.send().await.map_err(describe)?;
            let status = response.status();
            if !status.is_success() {
                let body = read_prefix(response, ERROR_BODY).await;
                return Err(status_error(status, &body));
            }
            let body = read_bounded(response, MAX_BODY).await?;
            let json = parse_json(&body, "the answer")?;
            match json.pointer(&s.id_pointer) {
                Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(format!(
                    "the answer has no id at {}: {}",
                    s.id_pointer,
                    snippet(&body, 200)
                )),
            }
        })
        .await?;
    rec.note(format!("id {id}"));
    rec.detail("id", id.clone());

    let checked = async {
        let status_url = resolve(s, &s.status_url, &id)?;
        let document = rec
            .step("process", poll(s, ctx, rec, status_url.clone()))
            .await?;
        rec.step("check text", async {
            match document.pointer(&s.text_pointer) {
                Some(Value::String(text)) if text.contains(&token) => Ok(()),
                Some(Value::String(text)) => Err(format!(
                    "the extracted text does not contain the token: {}",
                    snippet(text.as_bytes(), 100)
                )),
                _ => Err(format!(
                    "the status answer has no text at {}",
                    s.text_pointer
                )),
            }
        })
        .await
    }
    .await;

    let deleted = rec
        .cleanup("delete", async {
            let url = resolve(s, &s.delete_url, &id).map_err(|f| f.message)?;
            let response = with_headers(ctx.http.delete(url), &s.headers)
                .timeout(rec.remaining())
                .send()
                .await
                .map_err(describe)?;
            let status = response.status();
            if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
                Ok(format!("HTTP {}", status.as_u16()))
            } else {
                let body = read_prefix(response, ERROR_BODY).await;
                Err(status_error(status, &body))
            }
        })
        .await;
    if let Ok(note) = &deleted {
        rec.note(note.clone());
    }
    checked?;
    deleted?;
    Ok(())
}

/// Fills `{id}` into a URL template; a template starting with `/` is resolved against `url`.
fn resolve(s: &UploadSettings, template: &str, id: &str) -> Result<reqwest::Url, Failure> {
    let encoded: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                c.to_string()
            } else {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect();
    let filled = template.replace("{id}", &encoded);
    let url = if filled.starts_with('/') {
        s.url.join(&filled)
    } else {
        reqwest::Url::parse(&filled)
    };
    url.map_err(|e| Failure::new(format!("{template:?} with id {id:?} is not a URL: {e}")))
}

/// The least time left worth starting another status poll with.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Polls the status URL until the document is done (returns it), failed, or time runs out.
async fn poll(
    s: &UploadSettings,
    ctx: &ProbeContext,
    rec: &Recorder,
    url: reqwest::Url,
) -> Result<Value, String> {
    let started = Instant::now();
    // Leave a moment before the step's own limit, so the error says what was last seen.
    let until = started + rec.budget().saturating_sub(Duration::from_millis(200));
    let mut polls = 0u32;
    // What the last answer said; a last poll cut short by the deadline does not replace it.
    let mut last_seen = String::new();
    loop {
        polls += 1;
        let left = until.saturating_duration_since(Instant::now());
        let request = with_headers(ctx.http.get(url.clone()), &s.headers).timeout(left);
        last_seen = match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    let body = read_bounded(response, MAX_BODY).await?;
                    let json = parse_json(&body, "the status answer")?;
                    match json.pointer(&s.status_pointer) {
                        Some(v) if json_equals(v, &s.done_value) => return Ok(json),
                        Some(v) if s.failed_values.iter().any(|f| json_equals(v, f)) => {
                            let reason = json
                                .pointer("/error")
                                .and_then(Value::as_str)
                                .map(|e| format!(" ({})", snippet(e.as_bytes(), 200)))
                                .unwrap_or_default();
                            return Err(format!("processing failed: status {v}{reason}"));
                        }
                        Some(v) => format!("status {v}"),
                        None => format!("no status at {}", s.status_pointer),
                    }
                } else {
                    format!("HTTP {}", status.as_u16())
                }
            }
            Err(e) if e.is_timeout() && !last_seen.is_empty() => {
                const CUT_SHORT: &str = ", then a poll that timed out";
                if last_seen.ends_with(CUT_SHORT) {
                    last_seen
                } else {
                    format!("{last_seen}{CUT_SHORT}")
                }
            }
            Err(e) => describe(e),
        };
        // A poll started with only a few milliseconds left would time out and say nothing.
        if Instant::now() + s.poll_interval + MIN_POLL >= until {
            return Err(format!(
                "not {:?} after {} ({polls} polls); last seen: {last_seen}",
                s.done_value,
                human(started.elapsed())
            ));
        }
        tokio::time::sleep(s.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::kinds::from_yaml;
    use crate::probe::kinds::ProbeKind;

    #[test]
    fn templates_need_an_id_and_delete_defaults_to_status() {
        let e = from_yaml("type: upload\nurl: http://app/up\nstatus_url: /docs/1").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("status_url"));
        assert!(e.to_string().contains("must contain {id}"), "{e}");
        let spec = from_yaml("type: upload\nurl: http://app/up\nstatus_url: /docs/{id}").unwrap();
        let ProbeKind::Upload(u) = &spec.kind else {
            panic!()
        };
        assert_eq!(u.delete_url, "/docs/{id}");
        assert_eq!(u.failed_values, ["failed", "error"]);
        assert_eq!(u.poll_interval, Duration::from_secs(1));
        assert_eq!(
            (u.id_pointer.as_str(), u.text_pointer.as_str()),
            ("/id", "/text")
        );
    }
}
