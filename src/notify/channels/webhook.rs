//! The webhook channel (`MEDIC_WEBHOOK_URL`): the same rounds of alerts as the emails, as a
//! generic JSON body or Slack's incoming-webhook shape, through the same rate limits and outbox.
//!
//! The URL is treated as a secret (Slack's carry their token in the path): errors name only its
//! host.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::Kind;
use crate::config::ConfigError;
use crate::notify::channel::{Channel, ChannelId, Failure, Outgoing, Payload};
use crate::notify::render::{local_time, recommended_actions, AlertItem, RenderContext};
use crate::notify::settings::{invalid, var};

/// The webhook channel's id in the outbox.
pub const ID: ChannelId = ChannelId::new("webhook");

/// The registry's entry.
pub const KIND: Kind = Kind {
    id: ID,
    variables: &["MEDIC_WEBHOOK_URL", "MEDIC_WEBHOOK_FORMAT"],
    configure,
};

/// The body a webhook carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// medic's own JSON: `{"stack", "alerts": [...]}`.
    Json,
    /// Slack's incoming-webhook shape (`text` plus `blocks`); Mattermost and Discord's
    /// `/slack` endpoints read it too.
    Slack,
}

/// Where webhooks go and in which shape.
#[derive(Clone, PartialEq)]
pub struct WebhookSettings {
    /// `MEDIC_WEBHOOK_URL`. Treated as a secret (Slack's URLs are credentials): never logged.
    pub url: reqwest::Url,
    /// `MEDIC_WEBHOOK_FORMAT`.
    pub format: WebhookFormat,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("host", &self.url.host_str())
            .field("format", &self.format)
            .finish()
    }
}

impl WebhookSettings {
    /// Reads `MEDIC_WEBHOOK_URL` and `MEDIC_WEBHOOK_FORMAT`; `None` when no URL is set.
    pub fn from_vars(
        vars: &HashMap<String, String>,
    ) -> Result<Option<WebhookSettings>, ConfigError> {
        let Some((name, v)) = var(vars, "MEDIC_WEBHOOK_URL") else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(v)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                // The URL may hold a token: show only that it is malformed.
                invalid(name, "***", "expected an http:// or https:// URL")
            })?;
        let format = match var(vars, "MEDIC_WEBHOOK_FORMAT") {
            None if url.host_str() == Some("hooks.slack.com") => WebhookFormat::Slack,
            None => WebhookFormat::Json,
            Some((_, f)) if f.eq_ignore_ascii_case("json") => WebhookFormat::Json,
            Some((_, f)) if f.eq_ignore_ascii_case("slack") => WebhookFormat::Slack,
            Some((name, f)) => return Err(invalid(name, f, "expected json or slack")),
        };
        // The whole URL is a credential (Slack's carry their token in the path); its path
        // and query alone too, as receivers quote what was asked.
        crate::redact::register(url.as_str());
        crate::redact::register(url.path().trim_matches('/'));
        if let Some(query) = url.query() {
            crate::redact::register(query);
        }
        Ok(Some(WebhookSettings { url, format }))
    }
}

/// Posts to one webhook.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    /// Where and in which shape.
    pub settings: WebhookSettings,
}

fn configure(vars: &HashMap<String, String>) -> Result<Option<Arc<dyn Channel>>, ConfigError> {
    Ok(WebhookSettings::from_vars(vars)?
        .map(|settings| Arc::new(WebhookChannel { settings }) as Arc<dyn Channel>))
}

impl Channel for WebhookChannel {
    fn id(&self) -> ChannelId {
        ID
    }

    fn target(&self) -> String {
        self.settings.url.host_str().unwrap_or("?").to_string()
    }

    fn render(&self, items: &[AlertItem], ctx: &RenderContext) -> Payload {
        Payload {
            subject: crate::notify::render::subject(items, &ctx.stack),
            body: body(items, ctx, self.settings.format).to_string(),
        }
    }

    fn deliver<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let key = message
                .identity
                .map(|identity| format!("medic-{identity}-{}", message.id));
            post(super::http(), &self.settings, message.body, key.as_deref())
                .await
                .map_err(|e| Failure::new(e.to_string(), e.transient))
        })
    }
}

/// Why a webhook was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook to {host} failed: {detail}")]
pub struct WebhookError {
    /// The URL's host (never the whole URL).
    pub host: String,
    /// What happened.
    pub detail: String,
    /// Whether trying again later can help (network errors, 408, 429, 5xx).
    pub transient: bool,
}

/// The body for one round of alerts, in the configured format.
pub fn body(items: &[AlertItem], ctx: &RenderContext, format: WebhookFormat) -> Value {
    let subject = crate::notify::render::subject(items, &ctx.stack);
    match format {
        WebhookFormat::Json => json!({
            "source": "medic",
            "stack": ctx.stack,
            "summary": subject,
            "status_page": ctx.public_url,
            "alerts": items.iter().map(|i| {
                let a = &i.alert;
                json!({
                    "kind": a.kind,
                    "component": a.component,
                    "check": a.check,
                    "check_type": a.check_type,
                    "status": a.status,
                    "error": a.error,
                    "consecutive_failures": a.consecutive_failures,
                    "action": a.action,
                    "at": a.at,
                    "reminder": i.reminder,
                    "outage_since": i.outage_since,
                    "held_back": if i.held.is_empty() { Value::Null } else { json!(i.held) },
                    "recommended_actions": recommended_actions(a),
                })
            }).collect::<Vec<_>>(),
        }),
        WebhookFormat::Slack => {
            let mut blocks = vec![json!({
                "type": "header",
                "text": {"type": "plain_text", "text": subject},
            })];
            for i in items {
                let a = &i.alert;
                let mut lines = vec![
                    format!("*{}* — {}", mrkdwn(&a.component), mrkdwn(&a.status)),
                    format!("*Time:* {}", local_time(a.at, ctx.tz)),
                ];
                if let Some(e) = &a.error {
                    lines.push(format!("*Error:* {}", mrkdwn(e)));
                }
                lines.push(format!("*Actions taken:* {}", mrkdwn(&a.action)));
                if !i.held.is_empty() {
                    lines.push(format!("*Held back:* {}", mrkdwn(&i.held.breakdown())));
                }
                blocks.push(json!({
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": lines.join("\n")},
                }));
            }
            if let Some(url) = &ctx.public_url {
                blocks.push(json!({
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": format!("<{url}/|Status page>")}],
                }));
            }
            json!({ "text": mrkdwn(&subject), "blocks": blocks })
        }
    }
}

/// Text from outside (names, errors, server replies) for Slack's `mrkdwn`: `&`, `<` and `>` are
/// escaped as Slack asks, so a name cannot become a link or a mention (`<!channel>`).
pub fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Posts a body; `Ok` on any 2xx (whose body is not read). Of any other answer only the start
/// of the body is read, for the error; a receiver that answers gigabytes, garbage or nothing
/// costs at most that and the timeout. `idempotency_key` goes in an `Idempotency-Key` header,
/// the same on every attempt at one message, so a receiver can drop a copy sent again.
pub async fn post(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    body: &str,
    idempotency_key: Option<&str>,
) -> Result<(), WebhookError> {
    let host = settings.url.host_str().unwrap_or("?").to_string();
    let mut request = client
        .post(settings.url.clone())
        .header("content-type", "application/json");
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    // The edge where a webhook leaves: no secret medic knows goes out in it.
    let result = request
        .body(crate::redact::scrub(body))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            let reply = crate::probe::read_prefix(response, crate::probe::ERROR_BODY).await;
            let text = without_url(&String::from_utf8_lossy(&reply), &settings.url);
            let text: String = crate::redact::scrub(&text)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(200)
                .collect();
            let detail = match text.trim() {
                "" => format!("answered {status}"),
                text => format!("answered {status}: {text}"),
            };
            Err(WebhookError {
                host,
                detail,
                transient: status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT,
            })
        }
        Err(e) => Err(WebhookError {
            host,
            // Without the URL: reqwest's errors print it, token and all.
            detail: crate::probe::describe(e),
            transient: true,
        }),
    }
}

/// A receiver's answer without the webhook's URL, path or query in it: some quote what was
/// asked ("Cannot POST /services/T0/B0/<token>"), and Slack's URLs carry their token there.
fn without_url(text: &str, url: &reqwest::Url) -> String {
    let mut out = text.replace(url.as_str(), "***");
    for part in [url.path(), url.query().unwrap_or("")] {
        if part.len() > 1 {
            out = out.replace(part, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::{Alert, AlertKind};
    use crate::notify::limiter::HeldBack;

    fn items() -> Vec<AlertItem> {
        vec![AlertItem {
            alert: Alert::sample(
                AlertKind::Critical,
                chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                "restarted shop-web-1",
            ),
            held: HeldBack {
                critical: 2,
                ..Default::default()
            },
            reminder: false,
            outage_since: None,
        }]
    }

    fn ctx() -> RenderContext {
        RenderContext {
            stack: "shop".into(),
            tz: chrono_tz::UTC,
            public_url: Some("https://medic.example.com".into()),
            alert_interval: Duration::from_secs(3600),
            now: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_json_body_carries_every_alert_field() {
        let v = body(&items(), &ctx(), WebhookFormat::Json);
        assert_eq!(v["summary"], "🚨 CRITICAL: web failure - shop");
        assert_eq!(v["stack"], "shop");
        let a = &v["alerts"][0];
        assert_eq!(a["kind"], "critical");
        assert_eq!(a["component"], "web");
        assert_eq!(a["action"], "restarted shop-web-1");
        assert_eq!(a["held_back"]["critical"], 2);
        assert!(a["recommended_actions"]
            .as_array()
            .is_some_and(|r| !r.is_empty()));
    }

    #[test]
    fn a_receivers_answer_loses_the_url() {
        let url: reqwest::Url = "https://hooks.example.com/services/T0/B0/s3cr3t?x=tok"
            .parse()
            .unwrap();
        assert_eq!(
            without_url(
                "Cannot POST /services/T0/B0/s3cr3t (https://hooks.example.com/services/T0/B0/s3cr3t?x=tok)",
                &url
            ),
            "Cannot POST *** (***)"
        );
        assert_eq!(without_url("x=tok", &url), "***");
        assert_eq!(without_url("not found /", &url), "not found /");
    }

    #[test]
    fn the_slack_body_has_text_and_blocks() {
        let v = body(&items(), &ctx(), WebhookFormat::Slack);
        assert_eq!(v["text"], "🚨 CRITICAL: web failure - shop");
        assert_eq!(v["blocks"][0]["type"], "header");
        let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("*web* — unhealthy"), "{section}");
        assert!(section.contains("2 CRITICAL"), "{section}");
        assert_eq!(
            v["blocks"][2]["elements"][0]["text"],
            "<https://medic.example.com/|Status page>"
        );
    }

    #[test]
    fn names_and_errors_from_outside_cannot_become_slack_markup() {
        let mut items = items();
        items[0].alert.component = "<!channel> & <https://evil.example|click>".into();
        items[0].alert.error = Some("reply <b>x</b> & more".into());
        let v = body(&items, &ctx(), WebhookFormat::Slack);
        let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("*&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;*"),
            "{section}"
        );
        assert!(
            section.contains("reply &lt;b&gt;x&lt;/b&gt; &amp; more"),
            "{section}"
        );
        assert!(!v["text"].as_str().unwrap().contains('<'), "{v}");
    }
}
