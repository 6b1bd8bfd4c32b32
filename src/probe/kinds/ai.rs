//! The `ai` probe: one real model call. It asks "Say 'OK' if you can read this" and passes when
//! the reply contains OK as a word (any case). Providers:
//! - `openai`: `POST {base}/v1/chat/completions` with `Authorization: Bearer <key>`;
//! - `openai-compatible`: the same shape at any base URL (Ollama, vLLM, LM Studio), key optional;
//! - `gemini`: `POST {base}/v1beta/models/{model}:generateContent` with the key in the
//!   `x-goog-api-key` header, never in the URL, where error texts and proxies would show it.
//!
//! The reply body is read by chunks up to 1 MiB, so a provider (or a proxy) that answers with
//! megabytes of garbage fails cleanly; of an error reply only the start is read, so its status
//! is what the message says. An expired key (401/403), quota (429) and provider errors
//! (5xx) each get a message that says which; the key itself never appears in any of them.

use std::fmt;

use serde_json::{json, Value};

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::reply::{
    describe, parse_json, read_bounded, read_prefix, snippet, ERROR_BODY, MAX_BODY,
};
use crate::probe::secret::Secret;
use crate::probe::{Failure, ProbeContext, Recorder};

/// Which model API an `ai` probe calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiProvider {
    /// OpenAI chat completions.
    OpenAi,
    /// Google Gemini generateContent.
    Gemini,
    /// Any server with the OpenAI chat-completions shape (Ollama, vLLM, LM Studio).
    OpenAiCompatible,
}

impl fmt::Display for AiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AiProvider::OpenAi => "openai",
            AiProvider::Gemini => "gemini",
            AiProvider::OpenAiCompatible => "openai-compatible",
        })
    }
}

/// Settings of an `ai` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct AiSettings {
    /// The API shape.
    pub provider: AiProvider,
    /// Base URL without the API path (`https://api.openai.com`, `http://ollama:11434/v1`).
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// API key; optional only for `openai-compatible`.
    pub api_key: Option<Secret>,
    /// Word the reply must contain, case-insensitively and as a whole word (default `OK`).
    pub expect: String,
}

impl Kind for AiSettings {
    const TYPE: &'static str = "ai";
    const KEYS: &'static [Key] = &[
        ("provider", Shape::Scalar),
        ("model", Shape::Scalar),
        ("base_url", Shape::Scalar),
        ("api_key", Shape::Scalar),
        ("expect", Shape::Scalar),
    ];

    /// Without `api_key`, the provider's own variable (`OPENAI_API_KEY`, `GEMINI_API_KEY`) is
    /// read: from the file's environment, or for labels only when the operator allowed it.
    fn resolve(r: &Resolver) -> Res<AiSettings> {
        let provider_text = r.required("provider", "openai, gemini or openai-compatible")?;
        let provider = match provider_text.as_str() {
            "openai" => AiProvider::OpenAi,
            "gemini" => AiProvider::Gemini,
            "openai-compatible" | "openai_compatible" => AiProvider::OpenAiCompatible,
            other => {
                return Err(r.err(
                    Some("provider"),
                    format!(
                        "unknown provider {other:?}; expected openai, gemini or openai-compatible"
                    ),
                ))
            }
        };
        let (default_base, default_model, key_var) = match provider {
            AiProvider::OpenAi => (
                Some("https://api.openai.com"),
                Some("gpt-4o-mini"),
                Some("OPENAI_API_KEY"),
            ),
            AiProvider::Gemini => (
                Some("https://generativelanguage.googleapis.com"),
                Some("gemini-2.0-flash"),
                Some("GEMINI_API_KEY"),
            ),
            AiProvider::OpenAiCompatible => (None, None, None),
        };
        let base_url = match (r.text("base_url")?, default_base) {
            (Some(b), _) if !b.is_empty() => b,
            (_, Some(d)) => d.to_string(),
            _ => return Err(r.err(
                Some("base_url"),
                "is required for openai-compatible: the server's URL, e.g. http://ollama:11434/v1",
            )),
        };
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| r.err(Some("base_url"), format!("{base_url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(r.err(Some("base_url"), "expected an http:// or https:// URL"));
        }
        let model = match (r.text("model")?, default_model) {
            (Some(m), _) if !m.is_empty() => m,
            (_, Some(d)) => d.to_string(),
            _ => {
                return Err(r.err(
                    Some("model"),
                    "is required for openai-compatible: the model name",
                ))
            }
        };
        let api_key = match (r.text("api_key")?, key_var) {
            (Some(k), _) if !k.is_empty() => Some(Secret::new(k)),
            (_, Some(var)) => match r.env_var("api_key", var)? {
                Some(k) if !k.is_empty() => Some(Secret::new(k)),
                _ => {
                    return Err(r.err(
                        Some("api_key"),
                        format!("no API key: set {var} (or {var}_FILE) in medic's environment, or api_key: ${{VAR}}"),
                    ))
                }
            },
            _ => None,
        };
        Ok(AiSettings {
            provider,
            base_url: base_url.trim_end_matches('/').to_string(),
            model,
            api_key,
            expect: r.text_or("expect", "OK")?,
        })
    }

    fn target(&self) -> String {
        format!("{} {} at {}", self.provider, self.model, self.base_url)
    }

    fn secret_values(&self) -> Vec<String> {
        self.api_key
            .iter()
            .map(|k| k.expose().to_string())
            .collect()
    }

    async fn run(&self, ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, ctx, rec).await
    }
}

/// The prompt of SPEC "Probes".
pub(crate) const PROMPT: &str = "Say 'OK' if you can read this";

/// The chat-completions URL for a base URL, whether or not the base already ends in `/v1`.
fn chat_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    }
}

/// The generateContent URL, whether or not the base already ends in `/v1beta`.
fn gemini_url(base: &str, model: &str) -> String {
    let base = base.trim_end_matches('/');
    let model = model.strip_prefix("models/").unwrap_or(model);
    if base.ends_with("/v1beta") || base.ends_with("/v1") {
        format!("{base}/models/{model}:generateContent")
    } else {
        format!("{base}/v1beta/models/{model}:generateContent")
    }
}

async fn run(s: &AiSettings, ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
    rec.detail("provider", s.provider.to_string());
    rec.detail("model", s.model.clone());
    let (url, body) = match s.provider {
        AiProvider::OpenAi | AiProvider::OpenAiCompatible => (
            chat_url(&s.base_url),
            json!({
                "model": s.model,
                "messages": [{ "role": "user", "content": PROMPT }],
            }),
        ),
        AiProvider::Gemini => (
            gemini_url(&s.base_url, &s.model),
            json!({ "contents": [{ "role": "user", "parts": [{ "text": PROMPT }] }] }),
        ),
    };

    let (status, reply) = rec
        .step("request", async {
            let mut request = ctx.http.post(&url).json(&body);
            if let Some(key) = &s.api_key {
                request = match s.provider {
                    AiProvider::Gemini => request.header("x-goog-api-key", key.expose()),
                    _ => request.bearer_auth(key.expose()),
                };
            }
            let response = request.send().await.map_err(describe)?;
            let status = response.status();
            rec.detail("status", status.as_u16());
            if !status.is_success() {
                let body = read_prefix(response, ERROR_BODY).await;
                return Err(explain_status(status, &body));
            }
            let reply = read_bounded(response, MAX_BODY).await?;
            Ok::<_, String>((status, reply))
        })
        .await?;
    rec.note(format!("HTTP {}", status.as_u16()));

    let text = rec
        .step("parse reply", async { extract_text(s.provider, &reply) })
        .await?;
    rec.detail("reply", snippet(text.as_bytes(), 100));
    rec.step("check reply", async {
        if contains_word(&text, &s.expect) {
            Ok(())
        } else {
            Err(format!(
                "the model replied {:?}, which does not contain {}",
                snippet(text.as_bytes(), 100),
                s.expect
            ))
        }
    })
    .await?;
    Ok(())
}

/// An error answer in words: what the status means, and the provider's own message.
fn explain_status(status: reqwest::StatusCode, body: &[u8]) -> String {
    let code = status.as_u16();
    let what = match code {
        401 | 403 => "the API key was refused (expired, revoked or wrong)",
        404 => "the model or the URL does not exist",
        429 => "rate limited or out of quota",
        500..=599 => "the provider failed",
        100..=399 => "the provider answered without a reply",
        _ => "the provider rejected the request",
    };
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.pointer("/error"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| snippet(body, 200));
    if message.is_empty() {
        format!("{what} (HTTP {code})")
    } else {
        format!("{what} (HTTP {code}): {}", snippet(message.as_bytes(), 200))
    }
}

/// The model's text from a reply of the provider's shape.
fn extract_text(provider: AiProvider, reply: &[u8]) -> Result<String, String> {
    let json = parse_json(reply, "the reply")?;
    match provider {
        AiProvider::OpenAi | AiProvider::OpenAiCompatible => json
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "the reply has no choices[0].message.content: {}",
                    snippet(reply, 200)
                )
            }),
        AiProvider::Gemini => {
            let parts = json
                .pointer("/candidates/0/content/parts")
                .and_then(Value::as_array);
            match parts {
                Some(parts) => Ok(parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("")),
                None => match json.pointer("/promptFeedback/blockReason") {
                    Some(reason) => Err(format!("the prompt was blocked: {reason}")),
                    None => Err(format!(
                        "the reply has no candidates[0].content.parts: {}",
                        snippet(reply, 200)
                    )),
                },
            }
        }
    }
}

/// True when `word` appears in `text` as a whole word, ignoring case ("Ok." yes, "books" no).
fn contains_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::kinds::from_yaml;

    #[test]
    fn urls_accept_bases_with_or_without_the_version() {
        assert_eq!(
            chat_url("https://api.openai.com"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            chat_url("http://ollama:11434/v1/"),
            "http://ollama:11434/v1/chat/completions"
        );
        assert_eq!(
            gemini_url("https://g.example", "models/gemini-2.0-flash"),
            "https://g.example/v1beta/models/gemini-2.0-flash:generateContent"
        );
    }

    #[test]
    fn ok_must_be_a_word() {
        assert!(contains_word("OK", "OK"));
        assert!(contains_word("Ok. I can read it", "OK"));
        assert!(!contains_word("I read books", "OK"));
        assert!(!contains_word("", "OK"));
    }

    #[test]
    fn replies_of_both_shapes_are_read() {
        let openai = br#"{"choices":[{"message":{"role":"assistant","content":"OK"}}]}"#;
        assert_eq!(extract_text(AiProvider::OpenAi, openai).unwrap(), "OK");
        let gemini = br#"{"candidates":[{"content":{"parts":[{"text":"O"},{"text":"K"}]}}]}"#;
        assert_eq!(extract_text(AiProvider::Gemini, gemini).unwrap(), "OK");
        assert!(extract_text(AiProvider::Gemini, b"{}").is_err());
        assert!(extract_text(AiProvider::OpenAi, b"<html>")
            .unwrap_err()
            .contains("not JSON"));
    }

    #[test]
    fn error_statuses_are_explained() {
        let m = explain_status(
            reqwest::StatusCode::UNAUTHORIZED,
            br#"{"error":{"message":"Incorrect API key provided"}}"#,
        );
        assert_eq!(
            m,
            "the API key was refused (expired, revoked or wrong) (HTTP 401): Incorrect API key provided"
        );
        assert!(explain_status(reqwest::StatusCode::BAD_GATEWAY, b"")
            .starts_with("the provider failed (HTTP 502)"));
    }

    #[test]
    fn a_file_probe_without_a_key_names_the_providers_variable() {
        let e = from_yaml("type: ai\nprovider: gemini").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("api_key"));
        assert!(e.to_string().contains("GEMINI_API_KEY"), "{e}");
        let spec = from_yaml(
            "type: ai\nprovider: openai-compatible\nbase_url: http://ollama:11434/v1/\nmodel: m",
        )
        .unwrap();
        assert_eq!(
            spec.kind.target(),
            "openai-compatible m at http://ollama:11434/v1"
        );
        assert!(spec.kind.secret_values().is_empty());
        let e = from_yaml("type: ai\nprovider: claude").unwrap_err();
        assert!(e.to_string().contains("unknown provider"), "{e}");
    }
}
