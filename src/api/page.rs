//! `GET /`: the status page a person opens in a browser.
//!
//! Server-rendered HTML with inline CSS and no script or external asset, so it works on an
//! offline network and on a phone; it refreshes itself every 15 s. Each component shows its
//! status, last check, latency, restarts, silence, and a strip of the last 24 hours (one cell
//! per hour) from the store's history and restarts.
//!
//! Bounded for large stacks: at most [`MAX_CARDS`] cards (those that need attention most; the
//! other components are listed by name, `?all` shows every card), the history is grouped by
//! hour in the store and read at most once per [`STRIPS_FOR`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::{Duration, Utc};

use super::detailed::{snapshot, Detailed};
use super::ApiState;
use crate::model::HistoryKind;
use crate::policy::Instant;
use crate::status::{ComponentView, Level};
use crate::store::timeline::TimelineEvent;
use crate::store::Store;

/// Hours in the history strip.
const HOURS: usize = 24;

/// What one hour of a component looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cell {
    /// Before medic knew anything.
    NoData,
    /// Nothing went wrong.
    Ok,
    /// medic restarted it (and nothing worse).
    Restarted,
    /// It failed.
    Failed,
}

fn kind_cell(kind: &str) -> Option<Cell> {
    match kind {
        "restart" => Some(Cell::Restarted),
        // The history kinds that colour a cell red.
        kind if HistoryKind::parse(kind).is_some_and(HistoryKind::is_failure) => Some(Cell::Failed),
        _ => None,
    }
}

/// The strip of each component: cell `i` is the hour ending `HOURS - 1 - i` hours ago.
fn strips(
    events: &[TimelineEvent],
    components: &BTreeMap<String, ComponentView>,
    since: Instant,
    known_since: Instant,
) -> HashMap<String, [Cell; HOURS]> {
    let mut out: HashMap<String, [Cell; HOURS]> = HashMap::new();
    let first_known = ((known_since - since).num_seconds().max(0) / 3600) as usize;
    let base = std::array::from_fn(|i| {
        if i >= first_known {
            Cell::Ok
        } else {
            Cell::NoData
        }
    });
    for (name, view) in components {
        let mut strip = base;
        if view.status == Level::Unhealthy {
            strip[HOURS - 1] = Cell::Failed;
        }
        out.insert(name.clone(), strip);
    }
    for e in events {
        let Some(cell) = kind_cell(&e.kind) else {
            continue;
        };
        let Some(strip) = out.get_mut(&e.component) else {
            continue;
        };
        let i = ((e.at - since).num_seconds().max(0) / 3600) as usize;
        if let Some(slot) = strip.get_mut(i.min(HOURS - 1)) {
            *slot = (*slot).max(cell);
        }
    }
    out
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "12s ago", "5m ago", "3h ago".
fn ago(at: Instant, now: Instant) -> String {
    let s = (now - at).num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=172_799 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn time(at: Instant) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

const CSS: &str = "
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f4f5f7;color:#1d2330}
header{padding:16px 20px;background:#1d2330;color:#fff}
header h1{margin:0 0 4px;font-size:22px}
header .meta{font-size:13px;color:#c5cad6}
main{padding:12px;max-width:1100px;margin:0 auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}
.card{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.12);border-left:6px solid #9aa1ad}
.card.healthy{border-left-color:#1f9d55}.card.degraded{border-left-color:#d69e2e}.card.unhealthy{border-left-color:#d64545}
.card h2{margin:0;font-size:18px;display:flex;justify-content:space-between;align-items:center;gap:8px;word-break:break-all}
.badge{font-size:12px;font-weight:700;text-transform:uppercase;padding:2px 8px;border-radius:10px;color:#fff;background:#7b8494;white-space:nowrap}
.badge.healthy{background:#1f9d55}.badge.degraded{background:#b7791f}.badge.unhealthy{background:#c53030}
.badge.silenced{background:#5a67d8;margin-left:4px}
.overall{font-size:14px;margin-left:8px;vertical-align:middle}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:10px 0 8px;font-size:14px}
dt{color:#5f6b7a}dd{margin:0;word-break:break-word}
.err{color:#9b2c2c;font-size:13px;margin:4px 0;word-break:break-word}
.strip{display:flex;gap:2px;margin-top:8px}
.strip span{flex:1;height:22px;border-radius:2px;background:#d5d9e0}
.strip .ok{background:#48bb78}.strip .restarted{background:#ecc94b}.strip .failed{background:#e53e3e}
.axis{display:flex;justify-content:space-between;font-size:11px;color:#5f6b7a}
.legend{font-size:13px;color:#5f6b7a;margin:14px 4px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
.empty{background:#fff;border-radius:8px;padding:20px}
.more{background:#fff;border-radius:8px;padding:14px 16px;margin-top:12px;box-shadow:0 1px 2px rgba(0,0,0,.12)}
.more h2{margin:0 0 6px;font-size:18px}.more p{margin:0 0 8px;font-size:14px;color:#5f6b7a}
.more ul{columns:14em;margin:0;padding-left:18px;font-size:14px}
.more li{word-break:break-all}.more li.unhealthy{color:#c53030}.more li.degraded{color:#b7791f}.more li.unknown{color:#5f6b7a}
@media (max-width:480px){header h1{font-size:19px}main{padding:8px}.grid{grid-template-columns:1fr}}
";

/// Cards on the page by default. With more components, the cards go to those that need
/// attention most (unhealthy, degraded, unknown, then by name) and the rest are listed by name:
/// 1,000 cards made a 1.8 MB page that a phone renders slowly and nobody reads. `?all` shows
/// every card.
pub const MAX_CARDS: usize = 100;

/// Renders the page with at most [`MAX_CARDS`] cards.
pub fn render(detailed: &Detailed, events: &[TimelineEvent], now: Instant) -> String {
    render_cards(detailed, events, now, Some(MAX_CARDS))
}

/// Renders the page with at most `max_cards` cards (`None`: one per component).
pub fn render_cards(
    detailed: &Detailed,
    events: &[TimelineEvent],
    now: Instant,
    max_cards: Option<usize>,
) -> String {
    let mut carded: Vec<(&String, &ComponentView)> = detailed.components.iter().collect();
    let listed = match max_cards.filter(|max| carded.len() > *max) {
        Some(max) => {
            carded.sort_by(|a, b| b.1.status.cmp(&a.1.status).then_with(|| a.0.cmp(b.0)));
            let mut listed = carded.split_off(max);
            listed.sort_by(|a, b| a.0.cmp(b.0));
            listed
        }
        None => Vec::new(),
    };
    let since = now - Duration::hours(HOURS as i64);
    let known_since = events
        .iter()
        .map(|e| e.at)
        .min()
        .unwrap_or(detailed.started_at)
        .min(detailed.started_at);
    let strips = strips(events, &detailed.components, since, known_since);
    let mut h = String::with_capacity(8 * 1024 + 2 * 1024 * carded.len() + 64 * listed.len());
    let title = match &detailed.project {
        Some(p) => format!("medic · {p}"),
        None => "medic".to_string(),
    };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"15\"><title>{} — {}</title><style>{CSS}</style></head><body>",
        esc(&title),
        detailed.status
    );
    let docker = if detailed.docker.reachable {
        format!(
            "{} {} (API {})",
            esc(detailed.docker.engine.as_deref().unwrap_or("Docker")),
            esc(detailed.docker.version.as_deref().unwrap_or("?")),
            esc(detailed.docker.api_version.as_deref().unwrap_or("?"))
        )
    } else {
        format!(
            "Docker unreachable: {}",
            esc(detailed
                .docker
                .error
                .as_deref()
                .unwrap_or("not connected yet"))
        )
    };
    let email = if detailed.email.configured {
        "email configured"
    } else {
        "email not configured"
    };
    let _ = write!(
        h,
        "<header><h1>{} <span class=\"badge {s} overall\" id=\"overall\">{s}</span></h1>\
         <div class=\"meta\">{} · {} · medic {} · up {} · updated {}</div></header><main>",
        esc(&title),
        docker,
        email,
        detailed.version,
        uptime(detailed.uptime_seconds),
        time(now),
        s = detailed.status,
    );
    if let Some(reason) = &detailed.reason {
        let _ = write!(h, "<p class=\"err\">medic itself: {}</p>", esc(reason));
    }
    if detailed.components.is_empty() {
        h.push_str("<div class=\"empty\">No component is watched yet.</div>");
    }
    h.push_str("<div class=\"grid\">");
    for (name, view) in carded {
        let level = view.status.as_str();
        let _ = write!(
            h,
            "<section class=\"card {level}\" data-component=\"{n}\"><h2><span>{n}</span><span>\
             <span class=\"badge {level}\">{level}</span>",
            n = esc(name)
        );
        let silenced = view.silenced_until.filter(|u| *u > now);
        if silenced.is_some() {
            h.push_str("<span class=\"badge silenced\">silenced</span>");
        }
        h.push_str("</span></h2><dl>");
        match &view.last_check {
            Some(last) => {
                let _ = write!(
                    h,
                    "<dt>Last check</dt><dd title=\"{}\">{} · {} ({})</dd>",
                    time(last.at),
                    ago(last.at, now),
                    if last.ok { "passed" } else { "failed" },
                    esc(&last.check)
                );
                if let Some(ms) = last.latency_ms {
                    let _ = write!(h, "<dt>Latency</dt><dd>{ms} ms</dd>");
                }
            }
            None => h.push_str("<dt>Last check</dt><dd>none yet</dd>"),
        }
        if view.consecutive_failures > 0 {
            let _ = write!(
                h,
                "<dt>Failures</dt><dd>{} in a row</dd>",
                view.consecutive_failures
            );
        }
        if !view.containers.is_empty() {
            let list: Vec<String> = view
                .containers
                .iter()
                .map(|c| {
                    let health = serde_json::to_value(c.health).unwrap_or_default();
                    let state = serde_json::to_value(c.state).unwrap_or_default();
                    format!(
                        "{} ({}{})",
                        esc(&c.name),
                        state.as_str().unwrap_or("?"),
                        match health.as_str() {
                            Some("none") | None => String::new(),
                            Some(h) => format!(", {h}"),
                        }
                    )
                })
                .collect();
            let _ = write!(h, "<dt>Containers</dt><dd>{}</dd>", list.join(", "));
        }
        if !view.probes.is_empty() {
            let list: Vec<String> = view
                .probes
                .values()
                .map(|p| {
                    format!(
                        "{} {} {} ms",
                        esc(&p.name),
                        if p.ok { "ok" } else { "failed" },
                        p.latency.as_millis()
                    )
                })
                .collect();
            let _ = write!(h, "<dt>Probes</dt><dd>{}</dd>", list.join(" · "));
        }
        match &view.restarts {
            Some(r) => {
                let _ = write!(
                    h,
                    "<dt>Restarts</dt><dd>{} in 24 h · {} total{}</dd>",
                    r.count_24h,
                    r.total,
                    r.last
                        .map(|t| format!(" · last {}", ago(t, now)))
                        .unwrap_or_default()
                );
                if r.gave_up {
                    h.push_str("<dt>medic</dt><dd>gave up: restart budget spent</dd>");
                } else if let Some(until) = r.cooldown_until {
                    let _ = write!(h, "<dt>Cooldown</dt><dd>until {}</dd>", time(until));
                }
            }
            None => h.push_str("<dt>Restarts</dt><dd>none</dd>"),
        }
        if let Some(until) = silenced {
            let _ = write!(h, "<dt>Silenced</dt><dd>until {}</dd>", time(until));
        }
        h.push_str("</dl>");
        if let Some(error) = view
            .last_check
            .as_ref()
            .filter(|l| !l.ok)
            .and_then(|l| l.error.as_deref())
        {
            // The detailed view has the whole text; a card keeps to a readable length.
            let short: String = error.chars().take(300).collect();
            let more = if short.len() < error.len() { "…" } else { "" };
            let _ = write!(h, "<p class=\"err\">{}{more}</p>", esc(&short));
        }
        h.push_str("<div class=\"strip\" aria-label=\"last 24 hours\">");
        if let Some(strip) = strips.get(name) {
            for (i, cell) in strip.iter().enumerate() {
                let (class, what) = match cell {
                    Cell::NoData => ("", "no data"),
                    Cell::Ok => ("ok", "ok"),
                    Cell::Restarted => ("restarted", "restarted"),
                    Cell::Failed => ("failed", "failed"),
                };
                let _ = write!(
                    h,
                    "<span class=\"{class}\" title=\"{}h ago: {what}\"></span>",
                    HOURS - i
                );
            }
        }
        h.push_str(
            "</div><div class=\"axis\"><span>24 h ago</span><span>now</span></div></section>",
        );
    }
    h.push_str("</div>");
    if !listed.is_empty() {
        let _ = write!(
            h,
            "<section class=\"more\"><h2>{} more components</h2><p>Cards show the {} that need \
             attention most; the others by name (<a href=\"?all\">every card</a>, \
             <code>/health/detailed</code> for everything):</p><ul>",
            listed.len(),
            max_cards.unwrap_or_default()
        );
        for (name, view) in &listed {
            let level = view.status.as_str();
            let _ = write!(
                h,
                "<li class=\"{level}\" data-component=\"{n}\" title=\"{level}\">{n}</li>",
                n = esc(name)
            );
        }
        h.push_str("</ul></section>");
    }
    h.push_str(
        "<p class=\"legend\">Last 24 hours, one cell per hour:<i style=\"background:#48bb78\"></i>ok\
         <i style=\"background:#ecc94b\"></i>restarted<i style=\"background:#e53e3e\"></i>failed\
         <i style=\"background:#d5d9e0\"></i>no data</p></main></body></html>",
    );
    h
}

fn uptime(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h {}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d {}h", s / 86_400, s % 86_400 / 3600)
    }
}

/// How long the strips' history is reused. The strips have an hour's resolution and the page
/// reloads itself every 15 s: reading the store once per reload interval, however many people
/// watch, keeps the page's cost off the store (the supervisor writes to it) even with a long
/// history. The current status is always live; only a new event's colour in its hour's cell
/// can be up to 15 s late.
pub const STRIPS_FOR: std::time::Duration = std::time::Duration::from_secs(15);

/// The strips' history as last read, and when (see [`STRIPS_FOR`]).
#[derive(Default)]
pub struct StripCache(tokio::sync::Mutex<Option<(Instant, Arc<[TimelineEvent]>)>>);

/// What the page reads from the store: the strips' events since `since`, one per component,
/// kind and hour (grouped by the store, so a day of failures every few seconds stays small).
pub fn history_since(store: &Store, since: Instant) -> anyhow::Result<Vec<TimelineEvent>> {
    // The kinds that colour a cell red, as stored.
    let failed: Vec<&str> = HistoryKind::ALL
        .into_iter()
        .filter(|k| k.is_failure())
        .map(HistoryKind::as_str)
        .collect();
    store.timeline_cells_since(since, &failed)
}

/// `GET /`.
pub async fn status_page(
    State(state): State<ApiState>,
    Query(query): Query<HashMap<String, String>>,
) -> Html<String> {
    let now = Utc::now();
    let detailed = snapshot(&state.status);
    let events = match state.store.clone() {
        Some(store) => {
            let mut cached = state.page_cache.0.lock().await;
            match cached
                .as_ref()
                .filter(|(at, _)| (now - *at).to_std().is_ok_and(|age| age < STRIPS_FOR))
            {
                Some((_, events)) => events.clone(),
                None => {
                    let since = now - Duration::hours(HOURS as i64);
                    let events: Arc<[TimelineEvent]> =
                        tokio::task::spawn_blocking(move || history_since(&store, since))
                            .await
                            .ok()
                            .and_then(|r| r.ok())
                            .unwrap_or_default()
                            .into();
                    *cached = Some((now, events.clone()));
                    events
                }
            }
        }
        None => Arc::from(Vec::new()),
    };
    let max_cards = (!query.contains_key("all")).then_some(MAX_CARDS);
    Html(render_cards(&detailed, &events, now, max_cards))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<b>\"x\" & 'y'"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn past_the_cap_cards_go_to_the_worst_and_the_rest_are_listed() {
        let status = crate::status::Status::new(std::time::Duration::from_secs(30));
        let view = |i: usize| ComponentView {
            name: format!("c{i:03}"),
            status: if i % 50 == 7 {
                Level::Unhealthy
            } else {
                Level::Healthy
            },
            consecutive_failures: 0,
            last_check: None,
            checks: Default::default(),
            probes: Default::default(),
            containers: vec![],
            restarts: None,
            silenced_until: None,
        };
        status.publish((0..150).map(|i| (format!("c{i:03}"), view(i))).collect());
        let detailed = snapshot(&status);
        let page = render(&detailed, &[], Utc::now());
        assert_eq!(page.matches("<section class=\"card").count(), MAX_CARDS);
        assert!(page.contains("50 more components"), "{page}");
        // The three unhealthy ones (c007, c057, c107) have cards; c149 is only listed.
        for name in ["c007", "c057", "c107"] {
            assert!(page.contains(&format!("card unhealthy\" data-component=\"{name}\"")));
        }
        assert!(page.contains("<li class=\"healthy\" data-component=\"c149\""));
        let all = render_cards(&detailed, &[], Utc::now(), None);
        assert_eq!(all.matches("<section class=\"card").count(), 150);
        assert!(!all.contains("more components"));
    }

    #[test]
    fn strips_mark_each_hour_with_its_worst_event() {
        let now = Utc::now();
        let since = now - Duration::hours(HOURS as i64);
        let view = |status| ComponentView {
            name: "web".into(),
            status,
            consecutive_failures: 0,
            last_check: None,
            checks: Default::default(),
            probes: Default::default(),
            containers: vec![],
            restarts: None,
            silenced_until: None,
        };
        let components = BTreeMap::from([("web".to_string(), view(Level::Healthy))]);
        let event = |hours_ago: i64, kind: &str| TimelineEvent {
            at: now - Duration::hours(hours_ago) - Duration::minutes(30),
            component: "web".into(),
            kind: kind.into(),
        };
        let events = [
            event(10, "unhealthy"),
            event(10, "restart"),
            event(5, "restart"),
            event(3, "held"),
        ];
        let strips = strips(&events, &components, since, now - Duration::hours(12));
        let web = strips["web"];
        assert_eq!(web[HOURS - 11], Cell::Failed);
        assert_eq!(web[HOURS - 6], Cell::Restarted);
        assert_eq!(web[HOURS - 4], Cell::Ok);
        assert_eq!(web[0], Cell::NoData);
        assert_eq!(web[HOURS - 1], Cell::Ok);
    }
}
