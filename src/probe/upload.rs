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

use super::http::{
    describe, json_equals, parse_json, read_bounded, read_prefix, snippet, status_error,
    with_headers, ERROR_BODY, MAX_BODY,
};
use super::spec::UploadSettings;
use super::{human, Failure, ProbeContext, Recorder};

pub(crate) async fn run(
    s: &UploadSettings,
    ctx: &ProbeContext,
    rec: &Recorder,
) -> Result<(), Failure> {
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
