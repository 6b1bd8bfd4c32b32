//! What the daily report reads: history, restarts and probe runs over a time window.
//!
//! `check_runs` keeps one row per synthetic probe run (its latency and outcome), so the report
//! can show probe latency and the last upload, AI and git results; rows older than a week are
//! pruned when the report is built.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use serde::Serialize;

use super::outbox::stamp;
use super::Store;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS check_runs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    component  TEXT NOT NULL,
    probe      TEXT NOT NULL,
    probe_type TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    error      TEXT,
    details    TEXT
);
CREATE INDEX IF NOT EXISTS check_runs_by_time ON check_runs (at);
";

/// Creates the report's tables; called by [`Store::open`].
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// One line of history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    /// When.
    pub at: DateTime<Utc>,
    /// The component.
    pub component: String,
    /// `unhealthy`, `recovered`, `probe_failed`, `alert_critical`, ...
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// One synthetic probe run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRun {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// The component it belongs to.
    pub component: String,
    /// The probe's name.
    pub probe: String,
    /// The probe's type (`upload`, `ai`, `git`, ...).
    pub probe_type: String,
    /// Whether it passed.
    pub ok: bool,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Type-specific findings as JSON (branch, commit, queue depths, ...).
    pub details: Option<String>,
}

impl From<&crate::probe::ProbeResult> for CheckRun {
    fn from(r: &crate::probe::ProbeResult) -> CheckRun {
        CheckRun {
            at: r.checked_at,
            component: r.component.clone(),
            probe: r.name.clone(),
            probe_type: r.kind.to_string(),
            ok: r.ok,
            latency_ms: r.latency.as_millis() as u64,
            error: r.error.clone(),
            details: (!r.details.is_empty())
                .then(|| serde_json::to_string(&r.details).unwrap_or_default()),
        }
    }
}

impl Store {
    /// Records one probe run for the report.
    pub fn record_check_run(&self, run: &CheckRun) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO check_runs (at, component, probe, probe_type, ok, latency_ms, error, details)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                stamp(run.at),
                run.component,
                run.probe,
                run.probe_type,
                run.ok,
                run.latency_ms as i64,
                run.error,
                run.details
            ],
        )?;
        Ok(())
    }

    /// Probe runs since `since`, oldest first.
    pub fn check_runs_since(&self, since: DateTime<Utc>) -> anyhow::Result<Vec<CheckRun>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, component, probe, probe_type, ok, latency_ms, error, details
             FROM check_runs WHERE at >= ?1 ORDER BY at, id",
        )?;
        let rows = stmt.query_map(params![stamp(since)], |r| {
            Ok(CheckRun {
                at: parse_time(&r.get::<_, String>(0)?),
                component: r.get(1)?,
                probe: r.get(2)?,
                probe_type: r.get(3)?,
                ok: r.get(4)?,
                latency_ms: r.get::<_, i64>(5)?.max(0) as u64,
                error: r.get(6)?,
                details: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets probe runs older than `before`.
    pub fn prune_check_runs(&self, before: DateTime<Utc>) -> anyhow::Result<()> {
        self.conn().execute(
            "DELETE FROM check_runs WHERE at < ?1",
            params![stamp(before)],
        )?;
        Ok(())
    }

    /// Every history line, oldest first. History times are compared after parsing (their text
    /// has a varying number of fraction digits); `since` bounds the scan loosely.
    pub fn history_since(&self, since: DateTime<Utc>) -> anyhow::Result<Vec<HistoryRow>> {
        // A day earlier than asked, as text, is safely before any row of the window.
        let loose = (since - chrono::Duration::days(1)).to_rfc3339();
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, component, kind, message FROM history WHERE at >= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![loose], |r| {
            Ok(HistoryRow {
                at: parse_time(&r.get::<_, String>(0)?),
                component: r.get(1)?,
                kind: r.get(2)?,
                message: r.get(3)?,
            })
        })?;
        let mut out: Vec<HistoryRow> = rows.collect::<Result<_, _>>()?;
        out.retain(|h| h.at >= since);
        Ok(out)
    }

    /// The last alert line (`alert_critical` or `alert_recovered`) of each component before
    /// `before`: whether it was down when a window began.
    pub fn last_alerts_before(
        &self,
        before: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT component, kind, at FROM history
             WHERE kind IN ('alert_critical', 'alert_recovered') ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut last: std::collections::BTreeMap<String, String> = Default::default();
        for row in rows {
            let (component, kind, at) = row?;
            if parse_time(&at) < before {
                last.insert(component, kind);
            }
        }
        Ok(last.into_iter().collect())
    }

    /// Restarts of every service since `since`, oldest first.
    pub fn all_restarts_since(
        &self,
        since: DateTime<Utc>,
    ) -> anyhow::Result<Vec<super::RestartRecord>> {
        let loose = (since - chrono::Duration::days(1)).to_rfc3339();
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, service, container, reason, error FROM restarts WHERE at >= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![loose], |r| {
            Ok(super::RestartRecord {
                at: parse_time(&r.get::<_, String>(0)?),
                service: r.get(1)?,
                container: r.get(2)?,
                reason: r.get(3)?,
                error: r.get(4)?,
            })
        })?;
        let mut out: Vec<_> = rows.collect::<Result<_, _>>()?;
        out.retain(|r| r.at >= since);
        Ok(out)
    }
}
