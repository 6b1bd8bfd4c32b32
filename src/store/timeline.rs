//! What the status page and the admin API read and write beside the policy state: the last
//! 24 hours of events per component (from `history` and `restarts`), and silences.
//!
//! A history line that folds repeated failures is an event at its first and at its last time.
//!
//! Silences live in their own table, created on first use, so they survive a restart of medic
//! like every other decision a person made.

use std::collections::HashMap;

use rusqlite::params;

use super::Store;
use crate::policy::Instant;

const SILENCES: &str = "CREATE TABLE IF NOT EXISTS silences (
    component TEXT PRIMARY KEY,
    until     TEXT NOT NULL
);";

/// One thing that happened to a component, for the history strip.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEvent {
    /// When.
    pub at: Instant,
    /// The component (for restarts: the service part of the service key).
    pub component: String,
    /// The history kind (`unhealthy`, `probe_failed`, `recovered`, …), or `restart`.
    pub kind: String,
}

fn parse_time(text: &str) -> Option<Instant> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

impl Store {
    /// Every history line and restart since `since`, oldest first.
    pub fn timeline_since(&self, since: Instant) -> anyhow::Result<Vec<TimelineEvent>> {
        let conn = self.conn();
        let mut out = Vec::new();
        let mut stmt = conn.prepare_cached(
            "SELECT at, component, kind FROM history WHERE at >= ?1
             UNION ALL
             SELECT last_at, component, kind FROM history WHERE last_at >= ?1
             UNION ALL
             SELECT at, service, 'restart' FROM restarts WHERE at >= ?1
             ORDER BY 1",
        )?;
        let rows = stmt.query_map(params![since.to_rfc3339()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (at, component, kind) = row?;
            let Some(at) = parse_time(&at) else { continue };
            // Restarts are kept per service key `project/service`.
            let component = match (kind.as_str(), component.rsplit_once('/')) {
                ("restart", Some((_, service))) => service.to_string(),
                _ => component,
            };
            out.push(TimelineEvent {
                at,
                component,
                kind,
            });
        }
        Ok(out)
    }

    /// The status page's strips: for each component, kind and hour-long cell since `since`
    /// (cell 0 starts at `since`), one event in the middle of that cell. Only the kinds in
    /// `kinds` are read, plus restarts. Grouped in SQLite, so the answer is at most
    /// components × kinds × hours rows however many lines history holds: a failing probe
    /// writes a line per run, and reading each of them made the page take seconds.
    pub fn timeline_cells_since(
        &self,
        since: Instant,
        kinds: &[&str],
    ) -> anyhow::Result<Vec<TimelineEvent>> {
        let conn = self.conn();
        let kinds_json = serde_json::to_string(kinds)?;
        let mut stmt = conn.prepare_cached(
            "SELECT component, kind, CAST((julianday(at) - julianday(?1)) * 24 AS INTEGER) AS cell
               FROM history
              WHERE at >= ?1 AND kind IN (SELECT value FROM json_each(?2))
              GROUP BY component, kind, cell
             UNION ALL
             SELECT service, 'restart', CAST((julianday(at) - julianday(?1)) * 24 AS INTEGER) AS cell
               FROM restarts
              WHERE at >= ?1
              GROUP BY service, cell",
        )?;
        let rows = stmt.query_map(params![since.to_rfc3339(), kinds_json], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (component, kind, cell) = row?;
            let component = match (kind.as_str(), component.rsplit_once('/')) {
                ("restart", Some((_, service))) => service.to_string(),
                _ => component,
            };
            out.push(TimelineEvent {
                at: since + chrono::Duration::hours(cell.max(0)) + chrono::Duration::minutes(30),
                component,
                kind,
            });
        }
        Ok(out)
    }

    /// Restarts per service key since `since` (attempts, failed ones included).
    pub fn restart_counts_since(&self, since: Instant) -> anyhow::Result<HashMap<String, u32>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT service, COUNT(*) FROM restarts WHERE at >= ?1 GROUP BY service",
        )?;
        let rows = stmt.query_map(params![since.to_rfc3339()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every silence still recorded, by component.
    pub fn load_silences(&self) -> anyhow::Result<HashMap<String, Instant>> {
        let conn = self.conn();
        conn.execute_batch(SILENCES)?;
        let mut stmt = conn.prepare("SELECT component, until FROM silences")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = HashMap::new();
        for row in rows {
            let (component, until) = row?;
            if let Some(until) = parse_time(&until) {
                out.insert(component, until);
            }
        }
        Ok(out)
    }

    /// Silences `component` until `until`, or lifts its silence with `None`.
    pub fn save_silence(&self, component: &str, until: Option<Instant>) -> anyhow::Result<()> {
        let conn = self.conn();
        conn.execute_batch(SILENCES)?;
        match until {
            Some(until) => conn.execute(
                "INSERT INTO silences (component, until) VALUES (?1, ?2)
                 ON CONFLICT(component) DO UPDATE SET until = excluded.until",
                params![component, until.to_rfc3339()],
            )?,
            None => conn.execute(
                "DELETE FROM silences WHERE component = ?1",
                params![component],
            )?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RestartRecord;
    use chrono::{DateTime, Duration};

    #[test]
    fn timeline_merges_history_and_restarts_and_silences_persist() {
        let dir = tempfile::tempdir().unwrap();
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .record_history(t, "web", "unhealthy", "web is unhealthy")
                .unwrap();
            store
                .record_restart(&RestartRecord {
                    at: t + Duration::seconds(1),
                    service: "shop/web".into(),
                    container: "shop-web-1".into(),
                    reason: "unhealthy".into(),
                    error: None,
                })
                .unwrap();
            store
                .record_history(t - Duration::hours(30), "web", "old", "too old")
                .unwrap();
            store.save_silence("web", Some(t)).unwrap();
            store.save_silence("db", Some(t)).unwrap();
            store.save_silence("db", None).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let events = store.timeline_since(t - Duration::hours(24)).unwrap();
        let kinds: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.component.as_str(), e.kind.as_str()))
            .collect();
        assert_eq!(kinds, [("web", "unhealthy"), ("web", "restart")]);
        assert_eq!(
            store.restart_counts_since(t).unwrap(),
            HashMap::from([("shop/web".into(), 1)])
        );
        assert_eq!(
            store.load_silences().unwrap(),
            HashMap::from([("web".into(), t)])
        );
    }

    #[test]
    fn cells_fold_each_hour_of_history_into_one_event_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let since = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 60 failures in the first hour (one a minute), one in the third, and noise.
        for minute in 0..60 {
            let at = since + Duration::minutes(minute);
            store
                .record_history(at, "web", "probe_failed", "x")
                .unwrap();
        }
        let third = since + Duration::minutes(2 * 60 + 5);
        store
            .record_history(third, "web", "probe_failed", "x")
            .unwrap();
        store
            .record_history(third, "web", "recovered", "x")
            .unwrap();
        store
            .record_history(since - Duration::minutes(1), "web", "probe_failed", "old")
            .unwrap();
        store
            .record_restart(&RestartRecord {
                at: third,
                service: "shop/web".into(),
                container: "shop-web-1".into(),
                reason: "probe".into(),
                error: None,
            })
            .unwrap();
        let mut cells: Vec<(String, String, i64)> = store
            .timeline_cells_since(since, &["probe_failed", "unhealthy"])
            .unwrap()
            .into_iter()
            .map(|e| (e.component, e.kind, (e.at - since).num_minutes()))
            .collect();
        cells.sort();
        assert_eq!(
            cells,
            [
                ("web".into(), "probe_failed".into(), 30),
                ("web".into(), "probe_failed".into(), 150),
                ("web".into(), "restart".into(), 150),
            ]
        );
    }
}
