//! `GET /`: the status page a person opens in a browser.
//!
//! Server-rendered HTML from `templates/status.html` (with `templates/status.css` inline)
//! through minijinja, the engine the emails use, which escapes every value; no script or
//! external asset, so it works on an offline network and on a phone; it refreshes itself every
//! 15 s. Each component shows its
//! status, last check, latency, restarts, silence, and a strip of the last 24 hours (one cell
//! per hour) from the store's history and restarts.
//!
//! Bounded for large stacks: at most [`MAX_CARDS`] cards (those that need attention most; the
//! other components are listed by name, `?all` shows every card), the history is grouped by
//! hour in the store and read at most once per [`STRIPS_FOR`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::{Duration, Utc};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

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
    let page = PageView {
        title: match &detailed.project {
            Some(p) => format!("medic · {p}"),
            None => "medic".to_string(),
        },
        status: detailed.status,
        engine: if detailed.docker.reachable {
            format!(
                "{} {} (API {})",
                detailed.docker.engine.as_deref().unwrap_or("Docker"),
                detailed.docker.version.as_deref().unwrap_or("?"),
                detailed.docker.api_version.as_deref().unwrap_or("?")
            )
        } else {
            format!(
                "Docker unreachable: {}",
                detailed
                    .docker
                    .error
                    .as_deref()
                    .unwrap_or("not connected yet")
            )
        },
        email: if detailed.email.configured {
            "email configured"
        } else {
            "email not configured"
        },
        version: detailed.version,
        uptime: uptime(detailed.uptime_seconds),
        updated: time(now),
        reason: detailed.reason.as_deref(),
        empty: detailed.components.is_empty(),
        cards: carded
            .into_iter()
            .map(|(name, view)| CardView::new(name, view, strips.get(name), now))
            .collect(),
        listed: listed
            .into_iter()
            .map(|(name, view)| ListedView {
                name,
                level: view.status.as_str(),
            })
            .collect(),
        max_cards: max_cards.unwrap_or_default(),
    };
    templates()
        .get_template("status.html")
        .and_then(|t| t.render(&page))
        .unwrap_or_else(|e| {
            tracing::error!("cannot render the status page: {e:#}");
            "the status page could not be rendered; see medic's log".to_string()
        })
}

/// The page's template (templates/status.html) with its style sheet, through minijinja as the
/// emails are, so every value is escaped for HTML.
fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Block tags on lines of their own leave no blank lines behind.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // A misspelt field is an error in the tests, not an empty spot on the page.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template("status.html", include_str!("templates/status.html"))
            .expect("templates/status.html is valid");
        env.add_template("status.css", include_str!("templates/status.css"))
            .expect("templates/status.css is valid");
        env
    })
}

/// What the page shows, as the template reads it.
#[derive(Serialize)]
struct PageView<'a> {
    /// `medic`, or `medic · <project>`.
    title: String,
    /// The overall level.
    status: &'a str,
    /// The engine's name and version, or why it is unreachable.
    engine: String,
    /// Whether email is configured.
    email: &'static str,
    /// medic's version.
    version: &'a str,
    /// How long medic has run.
    uptime: String,
    /// When the page was made.
    updated: String,
    /// Why medic itself is not well.
    reason: Option<&'a str>,
    /// True when no component is watched.
    empty: bool,
    /// One card per component shown in full.
    cards: Vec<CardView<'a>>,
    /// The components past the cap, by name.
    listed: Vec<ListedView<'a>>,
    /// The cap, for the text above the list.
    max_cards: usize,
}

/// One component's card.
#[derive(Serialize)]
struct CardView<'a> {
    name: &'a str,
    level: &'static str,
    last_check: Option<LastCheckView<'a>>,
    /// Consecutive failures; 0 shows no row.
    failures: u32,
    containers: Vec<ContainerLine<'a>>,
    probes: Vec<ProbeLine<'a>>,
    restarts: Option<RestartsView>,
    /// When the silence ends, if the component is silenced now.
    silenced_until: Option<String>,
    /// The last failed check's error, shortened.
    error: Option<String>,
    /// The last 24 hours, oldest first: `ok`, `restarted`, `failed` or `no data` (a plain word
    /// per cell, not a struct: a thousand cards hold 24,000 of them).
    strip: Vec<&'static str>,
}

#[derive(Serialize)]
struct LastCheckView<'a> {
    at: String,
    ago: String,
    outcome: &'static str,
    check: &'a str,
    latency_ms: Option<u64>,
}

#[derive(Serialize)]
struct ContainerLine<'a> {
    name: &'a str,
    state: String,
    /// Empty when the container declares no healthcheck.
    health: String,
}

#[derive(Serialize)]
struct ProbeLine<'a> {
    name: &'a str,
    outcome: &'static str,
    latency_ms: u64,
}

#[derive(Serialize)]
struct RestartsView {
    count_24h: u32,
    total: u64,
    /// How long ago the last one was.
    last: Option<String>,
    gave_up: bool,
    cooldown_until: Option<String>,
}

#[derive(Serialize)]
struct ListedView<'a> {
    name: &'a str,
    level: &'static str,
}

/// The longest error a card shows; the detailed view has the whole text.
const CARD_ERROR_CHARS: usize = 300;

impl<'a> CardView<'a> {
    fn new(
        name: &'a str,
        view: &'a ComponentView,
        strip: Option<&[Cell; HOURS]>,
        now: Instant,
    ) -> CardView<'a> {
        let error = view
            .last_check
            .as_ref()
            .filter(|l| !l.ok)
            .and_then(|l| l.error.as_deref())
            .map(|error| {
                let short: String = error.chars().take(CARD_ERROR_CHARS).collect();
                let more = if short.len() < error.len() { "…" } else { "" };
                short + more
            });
        CardView {
            name,
            level: view.status.as_str(),
            last_check: view.last_check.as_ref().map(|last| LastCheckView {
                at: time(last.at),
                ago: ago(last.at, now),
                outcome: if last.ok { "passed" } else { "failed" },
                check: &last.check,
                latency_ms: last.latency_ms,
            }),
            failures: view.consecutive_failures,
            containers: view
                .containers
                .iter()
                .map(|c| {
                    let word = |v: serde_json::Value| v.as_str().unwrap_or("?").to_string();
                    let health = serde_json::to_value(c.health).unwrap_or_default();
                    ContainerLine {
                        name: &c.name,
                        state: word(serde_json::to_value(c.state).unwrap_or_default()),
                        health: match health.as_str() {
                            Some("none") | None => String::new(),
                            Some(h) => h.to_string(),
                        },
                    }
                })
                .collect(),
            probes: view
                .probes
                .values()
                .map(|p| ProbeLine {
                    name: &p.name,
                    outcome: if p.ok { "ok" } else { "failed" },
                    latency_ms: u64::try_from(p.latency.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
            restarts: view.restarts.as_ref().map(|r| RestartsView {
                count_24h: r.count_24h,
                total: r.total,
                last: r.last.map(|t| ago(t, now)),
                gave_up: r.gave_up,
                cooldown_until: r.cooldown_until.map(time),
            }),
            silenced_until: view.silenced_until.filter(|u| *u > now).map(time),
            error,
            strip: strip
                .into_iter()
                .flatten()
                .map(|cell| match cell {
                    Cell::NoData => "no data",
                    Cell::Ok => "ok",
                    Cell::Restarted => "restarted",
                    Cell::Failed => "failed",
                })
                .collect(),
        }
    }
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

    /// A component with nothing but a name and a level.
    fn view(name: String, status: Level) -> ComponentView {
        ComponentView {
            name,
            status,
            consecutive_failures: 0,
            last_check: None,
            checks: Default::default(),
            probes: Default::default(),
            containers: vec![],
            restarts: None,
            silenced_until: None,
        }
    }

    /// Moved from a test of the page's own escaper: the template escapes every value, as
    /// minijinja writes HTML (`'` as `&#x27;`).
    #[test]
    fn text_is_escaped() {
        let status = crate::status::Status::new(std::time::Duration::from_secs(30));
        let name = "<b>\"x\" & 'y'".to_string();
        status.publish(
            [(name.clone(), view(name, Level::Healthy))]
                .into_iter()
                .collect(),
        );
        let page = render(&snapshot(&status), &[], Utc::now());
        assert!(
            page.contains("&lt;b&gt;&quot;x&quot; &amp; &#x27;y&#x27;"),
            "{page}"
        );
        assert!(!page.contains("<b>"), "{page}");
    }

    /// Every row a card can have, from one component that has them all.
    #[test]
    fn a_card_shows_every_row() {
        use crate::status::{ContainerView, LastCheck, RestartView};
        let now = Utc::now();
        let status = crate::status::Status::new(std::time::Duration::from_secs(30));
        let mut web = view("web".into(), Level::Unhealthy);
        web.consecutive_failures = 4;
        web.last_check = Some(LastCheck {
            check: "http".into(),
            at: now - Duration::seconds(90),
            ok: false,
            latency_ms: Some(12),
            error: Some("é".repeat(301)),
        });
        web.containers = vec![ContainerView {
            name: "shop-web-1".into(),
            state: crate::docker::RunState::Running,
            health: crate::docker::Health::Unhealthy,
        }];
        web.restarts = Some(RestartView {
            service: "web".into(),
            last: Some(now - Duration::hours(2)),
            count_24h: 2,
            total: 5,
            cooldown_until: Some(now + Duration::minutes(5)),
            budget_left: 1,
            gave_up: false,
        });
        web.silenced_until = Some(now + Duration::minutes(30));
        status.publish([("web".to_string(), web)].into_iter().collect());
        let page = render(&snapshot(&status), &[], now);
        for row in [
            "<span class=\"badge unhealthy\">unhealthy</span><span class=\"badge silenced\">",
            "<dd title=\"",
            ">1m ago · failed (http)</dd>",
            "<dt>Latency</dt><dd>12 ms</dd>",
            "<dt>Failures</dt><dd>4 in a row</dd>",
            "<dt>Containers</dt><dd>shop-web-1 (running, unhealthy)</dd>",
            "<dt>Restarts</dt><dd>2 in 24 h · 5 total · last 2h ago</dd>",
            "<dt>Cooldown</dt><dd>until ",
            "<dt>Silenced</dt><dd>until ",
            &format!("<p class=\"err\">{}…</p>", "é".repeat(300)),
            "<span class=\"failed\" title=\"1h ago: failed\"></span></div>",
        ] {
            assert!(page.contains(row), "{row} missing in {page}");
        }
        assert!(!page.contains("more components"));
    }

    #[test]
    fn past_the_cap_cards_go_to_the_worst_and_the_rest_are_listed() {
        let status = crate::status::Status::new(std::time::Duration::from_secs(30));
        let level = |i: usize| {
            if i % 50 == 7 {
                Level::Unhealthy
            } else {
                Level::Healthy
            }
        };
        status.publish(
            (0..150)
                .map(|i| (format!("c{i:03}"), view(format!("c{i:03}"), level(i))))
                .collect(),
        );
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
        let components = BTreeMap::from([("web".to_string(), view("web".into(), Level::Healthy))]);
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
