//! What alert emails say: subjects exactly as SPEC, a plain-text body and an HTML body.
//!
//! One email carries one round of alerts (one or more components). The HTML comes from
//! `templates/alert.html` through minijinja, which escapes every value, so an error text full of
//! `<` and `&` cannot break the layout. Times are shown in `TZ`.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::Environment;
use serde::Serialize;

use super::email::Email;
use super::event::{Alert, AlertKind};
use super::limiter::HeldBack;

/// What every message needs besides its alerts.
#[derive(Debug, Clone)]
pub struct RenderContext {
    /// The stack's name, as subjects end.
    pub stack: String,
    /// The zone times are shown in.
    pub tz: Tz,
    /// The status page, when `MEDIC_PUBLIC_URL` is set.
    pub public_url: Option<String>,
    /// `MEDIC_ALERT_INTERVAL`, to explain held-back counts.
    pub alert_interval: std::time::Duration,
    /// When the message is made (a reminder says how long the outage has lasted so far).
    pub now: DateTime<Utc>,
}

/// One alert as an email shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertItem {
    /// The alert.
    pub alert: Alert,
    /// What the rate limit held back about this component before it.
    pub held: HeldBack,
    /// True for a reminder of an outage that goes on.
    pub reminder: bool,
    /// When the outage began (RECOVERED: how long it lasted; reminders: since when).
    pub outage_since: Option<DateTime<Utc>>,
}

pub(crate) fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("header.html", include_str!("templates/header.html"))
            .expect("templates/header.html is valid");
        env.add_template("footer.html", include_str!("templates/footer.html"))
            .expect("templates/footer.html is valid");
        env.add_template("alert.html", include_str!("templates/alert.html"))
            .expect("templates/alert.html is valid");
        env.add_template(
            "report.html",
            include_str!("../report/templates/report.html"),
        )
        .expect("templates/report.html is valid");
        env
    })
}

/// `2026-11-22 15:02:03 CET`.
pub fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `1h 5m`, `42s`: a short human duration.
pub fn short_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

fn label(kind: AlertKind) -> (&'static str, &'static str) {
    match kind {
        AlertKind::Critical => ("🚨", "CRITICAL"),
        AlertKind::Recovered => ("✅", "RECOVERED"),
        AlertKind::GaveUp => ("⛔", "GAVE UP"),
    }
}

/// The subject of one email: exactly SPEC's for one alert, e.g.
/// `🚨 CRITICAL: web failure - shop`; for several, each kind with its components:
/// `🚨 CRITICAL: web, worker failure · ✅ RECOVERED: db - shop`.
pub fn subject(items: &[AlertItem], stack: &str) -> String {
    let mut parts = Vec::new();
    for kind in [AlertKind::Critical, AlertKind::GaveUp, AlertKind::Recovered] {
        let mut names: Vec<&str> = Vec::new();
        for item in items.iter().filter(|i| i.alert.kind == kind) {
            if !names.contains(&item.alert.component.as_str()) {
                names.push(&item.alert.component);
            }
        }
        if names.is_empty() {
            continue;
        }
        let (emoji, name) = label(kind);
        let list = names.join(", ");
        parts.push(match kind {
            AlertKind::Critical => format!("{emoji} {name}: {list} failure"),
            _ => format!("{emoji} {name}: {list}"),
        });
    }
    // Names come from outside (containers, labels): one line, whatever they hold.
    crate::redact::header_line(&format!("{} - {stack}", parts.join(" · ")))
}

/// What a person should do next, fitting the kind of check that failed.
pub fn recommended_actions(alert: &Alert) -> Vec<String> {
    let c = &alert.component;
    let mut out = Vec::new();
    match alert.check_type.as_str() {
        "docker" | "" => {
            out.push(format!(
                "Read the service's recent logs: docker compose logs --tail 200 {c}"
            ));
            out.push(format!(
                "See why its healthcheck fails: docker inspect --format '{{{{json .State.Health}}}}' <container of {c}>"
            ));
        }
        "store" => {
            out.push("Check the free space and the mount of medic's data folder (MEDIC_DATA_DIR): df -h /data; mount | grep /data".into());
            out.push(format!(
                "Read medic's log for what it did meanwhile: docker compose logs --tail 200 {c}"
            ));
        }
        "upload" => {
            out.push(format!(
                "Read the app's and the worker's logs: docker compose logs --tail 200 {c} worker"
            ));
            out.push("Check that the worker is running and consuming its queue, and that the upload folder has free space".into());
        }
        "mongodb" => {
            out.push("Check MongoDB is running and accepts writes: docker compose logs --tail 200 mongodb".into());
            out.push(
                "Check its disk space and that the credentials in the probe's URI are still valid"
                    .into(),
            );
        }
        "rabbitmq" => {
            out.push("Check RabbitMQ is up and the queues have consumers: rabbitmqctl list_queues name messages consumers".into());
            out.push("Restart stuck consumers (the worker) if messages pile up".into());
        }
        "ai" => {
            out.push(
                "Check the model provider's status page and the API key's quota and validity"
                    .into(),
            );
            out.push("Check outbound network access from the stack to the provider".into());
        }
        "http" => {
            out.push(format!("Open the URL the probe checks and read the service's logs: docker compose logs --tail 200 {c}"));
            out.push("Compare the status, body and latency with what the probe expects".into());
        }
        "tcp" => {
            out.push(format!(
                "Check that {c} is running and listening: docker compose ps {c}"
            ));
            out.push("Check the port mapping and network between medic and the service".into());
        }
        "exec" => {
            out.push(format!(
                "Run the probe's command by hand: docker compose exec {c} <command>"
            ));
            out.push(format!(
                "Read the service's logs: docker compose logs --tail 200 {c}"
            ));
        }
        "disk" => {
            out.push(
                "Free disk space: docker system df; docker image prune; clear old logs and backups"
                    .into(),
            );
        }
        "memory" => {
            out.push(
                "Find what uses memory: docker stats --no-stream; consider memory limits".into(),
            );
        }
        "git" => {
            out.push("Check the deployed repository: git status, git fetch, and the remote's reachability".into());
        }
        _ => {
            out.push(format!(
                "Read the service's recent logs: docker compose logs --tail 200 {c}"
            ));
        }
    }
    if alert.kind == AlertKind::GaveUp {
        out.push(format!(
            "medic stopped restarting {c} for now: fix the cause, then restart it yourself (docker compose restart {c})"
        ));
    } else if alert.action.starts_with("not restarted") || alert.action.starts_with("none") {
        out.push(format!(
            "If it does not recover, restart it: docker compose restart {c}"
        ));
    }
    out
}

/// One alert as the template and the text body show it: every value already formatted.
#[derive(Serialize)]
struct ItemView {
    /// 🚨, ✅ or ⛔.
    emoji: &'static str,
    /// `CRITICAL`, `RECOVERED` or `GAVE UP`.
    kind: &'static str,
    /// The heading's colour.
    color: &'static str,
    /// The component.
    component: String,
    /// Its status in a few words.
    status: String,
    /// `Docker HEALTHCHECK` or `probe <name> (<type>)`; empty when unknown.
    check: String,
    /// The error details.
    error: Option<String>,
    /// What the time is: `Time of failure`, `Recovered at`, ...
    time_label: &'static str,
    /// The time, in `TZ`.
    time: String,
    /// How long the outage lasted (RECOVERED) or has lasted (reminders).
    outage: Option<String>,
    /// Consecutive failures when raised.
    consecutive: u32,
    /// What medic did.
    action: String,
    /// What a person should do.
    recommended: Vec<String>,
    /// The held-back summary.
    held: Option<String>,
    /// True for a reminder.
    reminder: bool,
}

fn held_text(held: &HeldBack, ctx: &RenderContext) -> Option<String> {
    if held.is_empty() {
        return None;
    }
    let first = held
        .first
        .map(|t| local_time(t, ctx.tz))
        .unwrap_or_default();
    let last = held.last.map(|t| local_time(t, ctx.tz)).unwrap_or_default();
    Some(format!(
        "{} alert{} held back by the rate limit (one per component per {}) between {first} and {last}: {}",
        held.total(),
        if held.total() == 1 { "" } else { "s" },
        humantime::format_duration(ctx.alert_interval),
        held.breakdown()
    ))
}

fn view(item: &AlertItem, ctx: &RenderContext) -> ItemView {
    let a = &item.alert;
    let (emoji, kind) = label(a.kind);
    let color = match a.kind {
        AlertKind::Critical => "#c62828",
        AlertKind::Recovered => "#2e7d32",
        AlertKind::GaveUp => "#6a1b9a",
    };
    let time_label = match a.kind {
        AlertKind::Critical if item.reminder => "Failing since",
        AlertKind::Critical => "Time of failure",
        AlertKind::Recovered => "Recovered at",
        AlertKind::GaveUp => "Gave up at",
    };
    let time = if item.reminder {
        local_time(item.outage_since.unwrap_or(a.at), ctx.tz)
    } else {
        local_time(a.at, ctx.tz)
    };
    let outage = item.outage_since.map(|since| {
        let end = if item.reminder { ctx.now } else { a.at };
        format!(
            "down since {} ({})",
            local_time(since, ctx.tz),
            short_duration(end - since)
        )
    });
    let check = match (a.check.as_str(), a.check_type.as_str()) {
        ("", "") => String::new(),
        ("docker", _) => "Docker HEALTHCHECK".to_string(),
        (_, "store") => "medic's state store".to_string(),
        (name, t) => format!("probe {name} ({t})"),
    };
    ItemView {
        emoji,
        kind,
        color,
        component: a.component.clone(),
        status: a.status.clone(),
        check,
        error: a.error.clone(),
        time_label,
        time,
        outage,
        consecutive: a.consecutive_failures,
        action: a.action.clone(),
        recommended: match a.kind {
            AlertKind::Recovered => Vec::new(),
            _ => recommended_actions(a),
        },
        held: held_text(&item.held, ctx),
        reminder: item.reminder,
    }
}

/// The email for one round of alerts.
pub fn alert_email(items: &[AlertItem], ctx: &RenderContext) -> Email {
    let subject = subject(items, &ctx.stack);
    let views: Vec<ItemView> = items.iter().map(|i| view(i, ctx)).collect();
    let mut text = format!("{subject}\n");
    for v in &views {
        text.push_str(&format!(
            "\n{} {}{}: {}\n",
            v.emoji,
            v.kind,
            if v.reminder { " (reminder)" } else { "" },
            v.component
        ));
        text.push_str(&format!("  Component:  {}\n", v.component));
        text.push_str(&format!("  Status:     {}\n", v.status));
        if !v.check.is_empty() {
            text.push_str(&format!("  Check:      {}\n", v.check));
        }
        if let Some(e) = &v.error {
            text.push_str(&format!("  Error:      {e}\n"));
        }
        text.push_str(&format!("  {}: {}\n", v.time_label, v.time));
        if let Some(o) = &v.outage {
            text.push_str(&format!("  Outage:     {o}\n"));
        }
        if v.consecutive > 0 {
            text.push_str(&format!("  Consecutive failures: {}\n", v.consecutive));
        }
        text.push_str(&format!("  Actions taken: {}\n", v.action));
        if !v.recommended.is_empty() {
            text.push_str("  Recommended manual actions:\n");
            for r in &v.recommended {
                text.push_str(&format!("    - {r}\n"));
            }
        }
        if let Some(h) = &v.held {
            text.push_str(&format!("  Held back: {h}\n"));
        }
    }
    if let Some(url) = &ctx.public_url {
        text.push_str(&format!("\nStatus page: {url}/\n"));
    }
    text.push_str(&format!(
        "\nTimes are in {}. Sent by medic {}.\n",
        ctx.tz,
        env!("CARGO_PKG_VERSION")
    ));
    let context = minijinja::context! {
        subject => &subject,
        stack => &ctx.stack,
        items => &views,
        public_url => &ctx.public_url,
        tz => ctx.tz.name(),
        version => env!("CARGO_PKG_VERSION"),
    };
    html_email(subject, text, "alert.html", "alert", context)
}

/// An email with the HTML of `template` rendered from `context` beside `text`; text only when
/// the template cannot render (logged, naming `what` the email is): a template bug must not
/// stop the message.
pub(crate) fn html_email(
    subject: String,
    text: String,
    template: &str,
    what: &str,
    context: minijinja::Value,
) -> Email {
    let html = templates()
        .get_template(template)
        .and_then(|t| t.render(context))
        .map_err(
            |e| tracing::error!(error = %e, "cannot render the {what}'s HTML; sending text only"),
        )
        .ok();
    Email {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: AlertKind, component: &str, check_type: &str) -> AlertItem {
        AlertItem {
            alert: Alert {
                kind,
                component: component.into(),
                check: if check_type == "docker" {
                    "docker".into()
                } else {
                    "p".into()
                },
                check_type: check_type.into(),
                status: "unhealthy".into(),
                error: Some("HEALTHCHECK <failed> & more".into()),
                consecutive_failures: 1,
                action: "restarted shop-web-1".into(),
                at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            },
            held: HeldBack::default(),
            reminder: false,
            outage_since: None,
        }
    }

    #[test]
    fn subjects_are_spec_exact_for_one_alert_and_list_components_for_several() {
        assert_eq!(
            subject(&[item(AlertKind::Critical, "web", "docker")], "shop"),
            "🚨 CRITICAL: web failure - shop"
        );
        assert_eq!(
            subject(&[item(AlertKind::Recovered, "web", "docker")], "shop"),
            "✅ RECOVERED: web - shop"
        );
        assert_eq!(
            subject(&[item(AlertKind::GaveUp, "web", "docker")], "shop"),
            "⛔ GAVE UP: web - shop"
        );
        assert_eq!(
            subject(
                &[
                    item(AlertKind::Critical, "web", "docker"),
                    item(AlertKind::Critical, "worker", "docker"),
                    item(AlertKind::Recovered, "db", "mongodb"),
                ],
                "shop"
            ),
            "🚨 CRITICAL: web, worker failure · ✅ RECOVERED: db - shop"
        );
    }

    #[test]
    fn a_critical_email_says_everything_in_tz_and_escapes_html() {
        let ctx = RenderContext {
            stack: "shop".into(),
            tz: chrono_tz::Europe::Berlin,
            public_url: Some("https://medic.example.com".into()),
            alert_interval: std::time::Duration::from_secs(3600),
            now: Utc::now(),
        };
        let mut it = item(AlertKind::Critical, "web", "mongodb");
        it.held = HeldBack {
            critical: 2,
            first: it.alert.at.into(),
            last: it.alert.at.into(),
            ..Default::default()
        };
        let email = alert_email(&[it], &ctx);
        // 1_800_000_000 is 2027-01-15 08:00:00 UTC: 09:00 in Berlin (CET).
        assert!(
            email.text.contains("2027-01-15 09:00:00 CET"),
            "{}",
            email.text
        );
        assert!(email.text.contains("Actions taken: restarted shop-web-1"));
        assert!(email.text.contains("MongoDB"));
        assert!(email.text.contains("2 alerts held back"));
        assert!(email.text.contains("https://medic.example.com/"));
        let html = email.html.unwrap();
        assert!(
            html.contains("HEALTHCHECK &lt;failed&gt; &amp; more"),
            "{html}"
        );
        assert!(html.contains("Recommended manual actions"));
        // minijinja escapes `/` as `&#x2f;` inside attributes; browsers read it back.
        assert!(html.contains("medic.example.com") && html.contains("Open the status page"));
    }

    #[test]
    fn every_check_type_has_recommendations() {
        for t in [
            "docker", "upload", "mongodb", "rabbitmq", "ai", "http", "tcp", "exec", "disk",
            "memory", "git",
        ] {
            assert!(!recommended_actions(&item(AlertKind::Critical, "web", t).alert).is_empty());
        }
    }
}
