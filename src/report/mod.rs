//! The daily health report: what happened to each component over the last 24 hours, when it
//! is due (`MEDIC_REPORT_CRON` in `TZ`), and how it reads (HTML with inline styles, from
//! `templates/report.html`, plus plain text).
//!
//! Building the report is a pure function of rows read from the store ([`build_report`]), and
//! its schedule a pure function of the time ([`next_report_after`]), so both are tested without
//! a database clock or a real wait. [`schedule`] is the task that sends it when due.
//!
//! It sits beside the notifier rather than in it: it reads the store's history and hands an
//! email to the notifier's outbox, like any other sender.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::model::HistoryKind;
use crate::notify::email::Email;
use crate::notify::render::{html_email, local_time, short_duration};
use crate::probe::spec::CronSchedule;
use crate::store::report::{HistoryRow, ProbeRuns};
use crate::store::{RestartRecord, Store};

pub mod schedule;

/// The first time strictly after `now` that `cron` fires, reading the cron in `tz`
/// (`0 8 * * *` with `TZ=Europe/Berlin` is 08:00 Berlin time, summer or winter).
pub fn next_report_after(now: DateTime<Utc>, cron: &CronSchedule, tz: Tz) -> Option<DateTime<Utc>> {
    cron.next_after(&now.with_timezone(&tz))
        .map(|t| t.with_timezone(&Utc))
}

/// The overall verdict of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Everything healthy and nothing happened: ✅.
    Healthy,
    /// Everything healthy now, but failures, restarts or alerts in the last 24 h: ⚠️.
    Degraded,
    /// Something is failing now: ❌.
    Critical,
}

impl Overall {
    /// The subject's emoji.
    pub fn emoji(self) -> &'static str {
        match self {
            Overall::Healthy => "✅",
            Overall::Degraded => "⚠️",
            Overall::Critical => "❌",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Overall::Healthy => "All healthy",
            Overall::Degraded => "Healthy now, with incidents in the last 24 hours",
            Overall::Critical => "Something is failing now",
        }
    }
}

/// One hour of a component's status strip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hour {
    /// No failure in that hour.
    Ok,
    /// Failures, but not down.
    Degraded,
    /// Down for some of the hour.
    Down,
}

/// One component's day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentReport {
    /// The component.
    pub name: String,
    /// `healthy` or `failing`, at the end of the window.
    pub status: String,
    /// Share of the window it was up, in percent.
    pub uptime_percent: f64,
    /// Time it was down.
    pub downtime_secs: i64,
    /// Failures seen (Docker unhealthy, failed probe runs).
    pub failures: u32,
    /// Restarts medic made.
    pub restarts: u32,
    /// Alerts raised (CRITICAL, RECOVERED, GAVE UP).
    pub alerts: u32,
    /// Alerts the rate limit held back.
    pub held_back: u32,
    /// Average latency of its probes' runs, when it has probes.
    pub probe_latency_ms: Option<u64>,
    /// 24 hours, oldest first.
    pub strip: Vec<Hour>,
}

/// The last run of one probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeLine {
    /// The probe's name.
    pub name: String,
    /// Its type (`upload`, `ai`, `git`, ...).
    pub probe_type: String,
    /// The component.
    pub component: String,
    /// Whether its last run passed.
    pub ok: bool,
    /// Runs and failures over the window.
    pub runs: u32,
    /// Failed runs over the window.
    pub failed: u32,
    /// Latency of the last run.
    pub latency_ms: u64,
    /// When it last ran, in `TZ`.
    pub last_run: String,
    /// The last error, or findings (`branch=main, commit=abc123`).
    pub note: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The stack's name.
    pub stack: String,
    /// The verdict.
    pub overall: Overall,
    /// Window start.
    pub from: DateTime<Utc>,
    /// Window end (when it was made).
    pub to: DateTime<Utc>,
    /// Components, by name.
    pub components: Vec<ComponentReport>,
    /// Probes, by name.
    pub probes: Vec<ProbeLine>,
    /// Failures over all components.
    pub total_failures: u32,
    /// Restarts over all components.
    pub total_restarts: u32,
    /// Alerts raised.
    pub total_alerts: u32,
    /// Alerts held back.
    pub total_held_back: u32,
    /// Average uptime over components.
    pub average_uptime_percent: f64,
}

const DOWN_START: &[HistoryKind] = &[
    HistoryKind::AlertCritical,
    HistoryKind::Unhealthy,
    HistoryKind::GaveUp,
];
const DOWN_END: &[HistoryKind] = &[HistoryKind::AlertRecovered, HistoryKind::Recovered];

/// The component a restart's service key names (`project/service` → `service`).
fn restart_component(r: &RestartRecord) -> &str {
    r.service.rsplit('/').next().unwrap_or(&r.service)
}

/// Builds the report for the 24 hours before `now`. `known` names components watched now (a
/// quiet one has a row too); `history` holds lines from at least the
/// window (older lines only add components), `down_before` each component's last alert before
/// the window (`alert_critical`: it was down as the window began).
pub fn build_report(
    stack: &str,
    now: DateTime<Utc>,
    known: &[String],
    history: &[HistoryRow],
    down_before: &[(String, String)],
    restarts: &[RestartRecord],
    runs: &ProbeRuns,
) -> Report {
    let from = now - Duration::hours(24);
    let mut names: BTreeSet<String> = known.iter().cloned().collect();
    names.extend(history.iter().map(|h| h.component.clone()));
    names.extend(down_before.iter().map(|(c, _)| c.clone()));
    names.extend(restarts.iter().map(|r| restart_component(r).to_string()));
    names.extend(runs.buckets.iter().map(|b| b.component.clone()));
    names.retain(|n| !n.is_empty());

    let mut components = Vec::new();
    for name in &names {
        let mut down_since: Option<DateTime<Utc>> = down_before
            .iter()
            .find(|(c, k)| c == name && HistoryKind::parse(k) == Some(HistoryKind::AlertCritical))
            .map(|_| from);
        let mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        let mut failure_times = Vec::new();
        let (mut failures, mut alerts, mut held) = (0, 0, 0);
        for h in history
            .iter()
            .filter(|h| &h.component == name && h.at >= from && h.at <= now)
        {
            let Some(kind) = HistoryKind::parse(&h.kind) else {
                continue;
            };
            if DOWN_START.contains(&kind) && down_since.is_none() {
                down_since = Some(h.at);
            }
            if DOWN_END.contains(&kind) {
                if let Some(start) = down_since.take() {
                    intervals.push((start, h.at));
                }
            }
            if matches!(kind, HistoryKind::Unhealthy | HistoryKind::ProbeFailed) {
                failures += h.count;
                failure_times.push(h.at);
            }
            if matches!(
                kind,
                HistoryKind::AlertCritical | HistoryKind::AlertRecovered | HistoryKind::AlertGaveUp
            ) {
                alerts += 1;
            }
            if kind == HistoryKind::AlertHeld {
                held += 1;
            }
        }
        let failing_now = down_since.is_some();
        if let Some(start) = down_since {
            intervals.push((start, now));
        }
        let down: i64 = intervals.iter().map(|(a, b)| (*b - *a).num_seconds()).sum();
        let window = (now - from).num_seconds().max(1);
        // Quarter hours of probe runs; one starting before the window counts in its first hour.
        let my_buckets: Vec<_> = runs
            .buckets
            .iter()
            .filter(|b| &b.component == name)
            .collect();
        let run_count: u64 = my_buckets.iter().map(|b| u64::from(b.runs)).sum();
        let probe_latency_ms = (run_count > 0)
            .then(|| my_buckets.iter().map(|b| b.latency_sum_ms).sum::<u64>() / run_count);
        let strip = (0..24)
            .map(|i| {
                let a = from + Duration::hours(i);
                let b = a + Duration::hours(1);
                if intervals.iter().any(|(s, e)| *s < b && *e > a) {
                    Hour::Down
                } else if failure_times.iter().any(|t| *t >= a && *t < b)
                    || my_buckets.iter().any(|q| {
                        let t = q.start.max(from);
                        q.failed > 0 && t >= a && t < b
                    })
                {
                    Hour::Degraded
                } else {
                    Hour::Ok
                }
            })
            .collect();
        components.push(ComponentReport {
            name: name.clone(),
            status: if failing_now { "failing" } else { "healthy" }.into(),
            uptime_percent: (100.0 * (window - down).max(0) as f64 / window as f64 * 100.0).round()
                / 100.0,
            downtime_secs: down,
            failures,
            restarts: restarts
                .iter()
                .filter(|r| restart_component(r) == name && r.at >= from)
                .count() as u32,
            alerts,
            held_back: held,
            probe_latency_ms,
            strip,
        });
    }

    let mut probes: BTreeMap<String, ProbeLine> = BTreeMap::new();
    for b in &runs.buckets {
        let line = probes.entry(b.probe.clone()).or_insert_with(|| ProbeLine {
            name: b.probe.clone(),
            probe_type: b.probe_type.clone(),
            component: b.component.clone(),
            ok: true,
            runs: 0,
            failed: 0,
            latency_ms: 0,
            last_run: String::new(),
            note: String::new(),
        });
        line.runs += b.runs;
        line.failed += b.failed;
    }
    for r in &runs.last {
        if let Some(line) = probes.get_mut(&r.probe) {
            line.probe_type = r.probe_type.clone();
            line.component = r.component.clone();
            line.ok = r.ok;
            line.latency_ms = r.latency_ms;
            line.last_run = r.at.to_rfc3339();
            line.note = match &r.error {
                Some(e) => e.clone(),
                None => details_note(r.details.as_deref()),
            };
        }
    }

    let failing = components.iter().any(|c| c.status == "failing");
    let eventful = components
        .iter()
        .any(|c| c.failures > 0 || c.restarts > 0 || c.alerts > 0 || c.held_back > 0);
    let overall = if failing {
        Overall::Critical
    } else if eventful || probes.values().any(|p| !p.ok) {
        Overall::Degraded
    } else {
        Overall::Healthy
    };
    let average_uptime_percent = if components.is_empty() {
        100.0
    } else {
        (components.iter().map(|c| c.uptime_percent).sum::<f64>() / components.len() as f64 * 100.0)
            .round()
            / 100.0
    };
    Report {
        stack: stack.to_string(),
        overall,
        from,
        to: now,
        total_failures: components.iter().map(|c| c.failures).sum(),
        total_restarts: components.iter().map(|c| c.restarts).sum(),
        total_alerts: components.iter().map(|c| c.alerts).sum(),
        total_held_back: components.iter().map(|c| c.held_back).sum(),
        average_uptime_percent,
        components,
        probes: probes.into_values().collect(),
    }
}

/// A few of a probe's findings, `key=value`, for the report's table.
fn details_note(details: Option<&str>) -> String {
    let Some(map) = details
        .and_then(|d| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(d).ok())
    else {
        return "ok".into();
    };
    let parts: Vec<String> = map
        .iter()
        .filter(|(_, v)| !v.is_object() && !v.is_array())
        .take(4)
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    if parts.is_empty() {
        "ok".into()
    } else {
        parts.join(", ")
    }
}

/// Reads the last 24 hours from the store and builds the report.
pub fn report_from_store(
    store: &Store,
    stack: &str,
    now: DateTime<Utc>,
    known: &[String],
) -> anyhow::Result<Report> {
    let from = now - Duration::hours(24);
    // A week of history names the components that had a quiet day too.
    let history = store.history_since(now - Duration::days(7))?;
    let down_before = store.last_alerts_before(from)?;
    let restarts = store.all_restarts_since(from)?;
    // Old rows are pruned in the background (store::retention), not here.
    let runs = store.probe_runs_since(from)?;
    // Services medic ever restarted (`project/service`) are components too.
    let mut known = known.to_vec();
    if let Ok(services) = store.load_services() {
        known.extend(
            services
                .keys()
                .map(|k| k.rsplit('/').next().unwrap_or(k).to_string()),
        );
    }
    Ok(build_report(
        stack,
        now,
        &known,
        &history,
        &down_before,
        &restarts,
        &runs,
    ))
}

/// `✅ Daily Health Report - shop`.
pub fn report_subject(report: &Report) -> String {
    format!(
        "{} Daily Health Report - {}",
        report.overall.emoji(),
        report.stack
    )
}

fn fmt_latency(ms: Option<u64>) -> String {
    ms.map(|m| format!("{m} ms")).unwrap_or_else(|| "—".into())
}

/// The report as an email: HTML (inline styles, a 24-hour strip per component) and text.
pub fn report_email(report: &Report, tz: Tz, public_url: Option<&str>) -> Email {
    let subject = report_subject(report);
    let mut text = format!(
        "{subject}\n\n{}.\nWindow: {} to {}\n\n",
        report.overall.word(),
        local_time(report.from, tz),
        local_time(report.to, tz)
    );
    text.push_str(&format!(
        "Summary: {} components, average uptime {:.2}%, {} failures, {} restarts, {} alerts, {} held back by the rate limit\n\n",
        report.components.len(),
        report.average_uptime_percent,
        report.total_failures,
        report.total_restarts,
        report.total_alerts,
        report.total_held_back
    ));
    text.push_str(&format!(
        "{:<20} {:<8} {:>8} {:>8} {:>8} {:>8} {:>10}  last 24 h (oldest first; # down, ~ failures, . ok)\n",
        "component", "status", "uptime", "failures", "restarts", "held", "latency"
    ));
    for c in &report.components {
        let strip: String = c
            .strip
            .iter()
            .map(|h| match h {
                Hour::Ok => '.',
                Hour::Degraded => '~',
                Hour::Down => '#',
            })
            .collect();
        text.push_str(&format!(
            "{:<20} {:<8} {:>7.2}% {:>8} {:>8} {:>8} {:>10}  {strip}\n",
            c.name,
            c.status,
            c.uptime_percent,
            c.failures,
            c.restarts,
            c.held_back,
            fmt_latency(c.probe_latency_ms)
        ));
    }
    if !report.probes.is_empty() {
        text.push_str("\nProbes (last run):\n");
        for p in &report.probes {
            text.push_str(&format!(
                "  {} ({}, {}): {} in {} ms, {}/{} runs failed: {}\n",
                p.name,
                p.probe_type,
                p.component,
                if p.ok { "ok" } else { "FAILED" },
                p.latency_ms,
                p.failed,
                p.runs,
                p.note
            ));
        }
    }
    if let Some(url) = public_url {
        text.push_str(&format!("\nStatus page: {url}/\n"));
    }
    text.push_str(&format!(
        "\nTimes are in {tz}. Sent by medic {}.\n",
        env!("CARGO_PKG_VERSION")
    ));

    /// One component's row as the template shows it.
    #[derive(Serialize)]
    struct Row<'a> {
        /// The figures.
        c: &'a ComponentReport,
        /// `420 ms` or `—`.
        latency: String,
        /// `97.92%`.
        uptime: String,
        /// The status word's colour.
        status_color: &'static str,
        /// The strip: (colour, `08:00 down`) per hour.
        cells: Vec<(&'static str, String)>,
    }
    let rows: Vec<Row> = report
        .components
        .iter()
        .map(|c| Row {
            c,
            latency: fmt_latency(c.probe_latency_ms),
            uptime: format!("{:.2}%", c.uptime_percent),
            status_color: if c.status == "failing" {
                "#c62828"
            } else {
                "#2e7d32"
            },
            cells: c
                .strip
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let start = report.from + Duration::hours(i as i64);
                    let color = match h {
                        Hour::Ok => "#43a047",
                        Hour::Degraded => "#fbc02d",
                        Hour::Down => "#e53935",
                    };
                    let label = format!(
                        "{} {}",
                        start.with_timezone(&tz).format("%H:00"),
                        match h {
                            Hour::Ok => "ok",
                            Hour::Degraded => "failures",
                            Hour::Down => "down",
                        }
                    );
                    (color, label)
                })
                .collect(),
        })
        .collect();
    let probes: Vec<serde_json::Value> = report
        .probes
        .iter()
        .map(|p| {
            let last = DateTime::parse_from_rfc3339(&p.last_run)
                .map(|t| local_time(t.with_timezone(&Utc), tz))
                .unwrap_or_default();
            serde_json::json!({"p": p, "last": last})
        })
        .collect();
    let (banner_bg, banner_fg) = match report.overall {
        Overall::Healthy => ("#e8f5e9", "#1b5e20"),
        Overall::Degraded => ("#fff8e1", "#8d6e00"),
        Overall::Critical => ("#ffebee", "#b71c1c"),
    };
    let first_hour = report.from.with_timezone(&tz).format("%H:%M").to_string();
    let context = minijinja::context! {
        subject => &subject,
        report => report,
        overall_word => report.overall.word(),
        emoji => report.overall.emoji(),
        banner_bg => banner_bg,
        banner_fg => banner_fg,
        rows => &rows,
        probes => &probes,
        from => local_time(report.from, tz),
        to => local_time(report.to, tz),
        first_hour => first_hour,
        uptime => format!("{:.2}%", report.average_uptime_percent),
        public_url => public_url,
        tz => tz.name(),
        version => env!("CARGO_PKG_VERSION"),
        downtime => report.components.iter().map(|c| (c.name.clone(), short_duration(Duration::seconds(c.downtime_secs)))).collect::<BTreeMap<_, _>>(),
    };
    html_email(subject, text, "report.html", "report", context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::report::CheckRun;
    use chrono::TimeZone;

    fn h(at: DateTime<Utc>, component: &str, kind: &str) -> HistoryRow {
        HistoryRow {
            at,
            component: component.into(),
            kind: kind.into(),
            message: String::new(),
            count: 1,
        }
    }

    #[test]
    fn the_report_is_due_at_eight_in_tz_summer_and_winter() {
        let cron = CronSchedule::parse("0 8 * * *").unwrap();
        let berlin = chrono_tz::Europe::Berlin;
        // Winter (CET, UTC+1): 08:00 Berlin is 07:00 UTC.
        let now = Utc.with_ymd_and_hms(2026, 1, 10, 6, 59, 0).unwrap();
        assert_eq!(
            next_report_after(now, &cron, berlin),
            Some(Utc.with_ymd_and_hms(2026, 1, 10, 7, 0, 0).unwrap())
        );
        // Summer (CEST, UTC+2): 06:00 UTC; just after it, the next day's.
        let now = Utc.with_ymd_and_hms(2026, 7, 10, 6, 0, 0).unwrap();
        assert_eq!(
            next_report_after(now, &cron, berlin),
            Some(Utc.with_ymd_and_hms(2026, 7, 11, 6, 0, 0).unwrap())
        );
        // UTC by default.
        assert_eq!(
            next_report_after(now, &cron, Tz::UTC),
            Some(Utc.with_ymd_and_hms(2026, 7, 10, 8, 0, 0).unwrap())
        );
        // The night the clocks go forward (29 March 2026) the report still comes at 08:00 CEST.
        let now = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        assert_eq!(
            next_report_after(now, &cron, berlin),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 6, 0, 0).unwrap())
        );
    }

    #[test]
    fn a_known_history_gives_the_right_uptime_failures_and_restarts() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let t = |hours_ago: i64, minutes: i64| {
            now - Duration::hours(hours_ago) + Duration::minutes(minutes)
        };
        let history = vec![
            // web: down 30 minutes, 10 hours ago, one restart.
            h(t(10, 0), "web", "unhealthy"),
            h(t(10, 0), "web", "alert_critical"),
            h(t(10, 30), "web", "recovered"),
            h(t(10, 30), "web", "alert_recovered"),
            // worker: two failed probe runs, never down.
            h(t(3, 0), "worker", "probe_failed"),
            h(t(3, 5), "worker", "probe_failed"),
            // db: down since 2 hours ago, still down; one alert held back.
            h(t(2, 0), "db", "probe_failed"),
            h(t(2, 0), "db", "alert_critical"),
            h(t(1, 0), "db", "alert_held"),
            // older than the window: counts for nothing but the name.
            h(now - Duration::hours(30), "cache", "unhealthy"),
        ];
        let restarts = vec![RestartRecord {
            at: t(10, 0),
            service: "shop/web".into(),
            container: "shop-web-1".into(),
            reason: "unhealthy".into(),
            error: None,
        }];
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .record_check_run(&CheckRun {
                at: t(3, 0),
                component: "worker".into(),
                probe: "upload".into(),
                probe_type: "upload".into(),
                ok: false,
                latency_ms: 300,
                error: Some("token not found".into()),
                details: None,
            })
            .unwrap();
        let runs = store.probe_runs_since(now - Duration::hours(24)).unwrap();
        let r = build_report(
            "shop",
            now,
            &["quiet".to_string()],
            &history,
            &[],
            &restarts,
            &runs,
        );
        let get = |n: &str| r.components.iter().find(|c| c.name == n).unwrap();
        let web = get("web");
        assert_eq!(
            (web.failures, web.restarts, web.status.as_str()),
            (1, 1, "healthy")
        );
        assert_eq!(web.downtime_secs, 1800);
        assert_eq!(web.uptime_percent, 97.92);
        assert_eq!(web.strip[14], Hour::Down);
        assert_eq!(web.strip.iter().filter(|h| **h == Hour::Down).count(), 1);
        let worker = get("worker");
        assert_eq!((worker.failures, worker.restarts), (2, 0));
        assert_eq!(worker.uptime_percent, 100.0);
        assert_eq!(worker.probe_latency_ms, Some(300));
        assert_eq!(worker.strip[21], Hour::Degraded);
        let db = get("db");
        assert_eq!(db.status, "failing");
        assert_eq!(db.downtime_secs, 7200);
        assert_eq!(db.held_back, 1);
        let quiet = get("quiet");
        assert_eq!(
            (quiet.status.as_str(), quiet.uptime_percent),
            ("healthy", 100.0)
        );
        let cache = get("cache");
        assert_eq!((cache.failures, cache.uptime_percent), (0, 100.0));
        assert_eq!(r.overall, Overall::Critical);
        assert_eq!(report_subject(&r), "❌ Daily Health Report - shop");
        assert_eq!(
            (r.total_failures, r.total_restarts, r.total_held_back),
            (4, 1, 1)
        );

        let email = report_email(&r, chrono_tz::Europe::Berlin, None);
        assert!(email.text.contains("97.92%"), "{}", email.text);
        let html = email.html.unwrap();
        assert!(html.contains("Daily Health Report"));
        assert!(html.contains("token not found"));
    }

    #[test]
    fn a_component_down_before_the_window_counts_from_its_start() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let history = vec![h(now - Duration::hours(6), "web", "alert_recovered")];
        let r = build_report(
            "shop",
            now,
            &[],
            &history,
            &[("web".into(), "alert_critical".into())],
            &[],
            &ProbeRuns::default(),
        );
        assert_eq!(r.components[0].downtime_secs, 18 * 3600);
        assert_eq!(r.components[0].uptime_percent, 25.0);
        assert_eq!(r.overall, Overall::Degraded);
    }
}
