//! What the daily report reads: history, restarts and probe runs over a time window.
//!
//! Probe runs are kept folded, not one row per run: `probe_buckets` counts each probe's runs,
//! failures and latency per quarter hour, and `probe_last` holds each probe's last run (its
//! error or findings), so the report can show probe latency and the last upload, AI and git
//! results. 300 probes every 10 s are 2.6 million runs a day; folded they are under 30,000 rows,
//! and the report reads them without loading a day of runs into memory. Old rows are pruned in
//! the background ([`super::retention`]).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use serde::Serialize;

use super::outbox::stamp;
use super::Store;

/// The width of a probe bucket: a quarter hour, so the report's hours line up with a window
/// starting at any time zone's full hour (every zone's offset is a multiple of 15 minutes).
pub const BUCKET_SECONDS: i64 = 900;

// `probe_buckets` is keyed by quarter hour first: every run of the current quarter writes to the
// last pages of the table, so SQLite's cache needs a few pages, not one per probe.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS probe_buckets (
    probe          TEXT NOT NULL,
    start          INTEGER NOT NULL,
    component      TEXT NOT NULL,
    probe_type     TEXT NOT NULL,
    runs           INTEGER NOT NULL,
    failed         INTEGER NOT NULL,
    latency_sum_ms INTEGER NOT NULL,
    PRIMARY KEY (start, probe)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe_last (
    probe      TEXT PRIMARY KEY,
    at         TEXT NOT NULL,
    component  TEXT NOT NULL,
    probe_type TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    error      TEXT,
    details    TEXT
);
";

/// Earlier versions kept one `check_runs` row per run: fold them into the new tables, once
/// (`?1` is [`BUCKET_SECONDS`]).
const FOLD_CHECK_RUNS: &str = "
INSERT INTO probe_buckets (probe, start, component, probe_type, runs, failed, latency_sum_ms)
    SELECT probe, CAST(strftime('%s', at) AS INTEGER) / ?1 * ?1, MAX(component),
           MAX(probe_type), COUNT(*), SUM(ok = 0), SUM(latency_ms)
    FROM check_runs WHERE true GROUP BY 1, 2
    ON CONFLICT (start, probe) DO UPDATE SET runs = runs + excluded.runs,
        failed = failed + excluded.failed,
        latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms";
/// Then keep each probe's last run and drop the old table, in the same transaction.
const KEEP_LAST_AND_DROP_CHECK_RUNS: &str = "
INSERT OR REPLACE INTO probe_last (probe, at, component, probe_type, ok, latency_ms, error, details)
    SELECT probe, at, component, probe_type, ok, latency_ms, error, details FROM check_runs
    WHERE id IN (SELECT MAX(id) FROM check_runs GROUP BY probe);
DROP TABLE check_runs;
";

/// Creates the report's tables; called by [`Store::open`].
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'check_runs')",
        [],
        |r| r.get(0),
    )?;
    if old {
        let tx = conn.unchecked_transaction()?;
        tx.execute(FOLD_CHECK_RUNS, params![BUCKET_SECONDS])?;
        tx.execute_batch(KEEP_LAST_AND_DROP_CHECK_RUNS)?;
        tx.commit()?;
    }
    Ok(())
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
    /// How many times: repeats of one failure within an hour are folded into one line
    /// ([`crate::store::FOLDED_KINDS`]).
    pub count: u32,
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

/// One probe's runs in one quarter hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunBucket {
    /// The probe's name.
    pub probe: String,
    /// The quarter hour's start.
    pub start: DateTime<Utc>,
    /// The component it belongs to.
    pub component: String,
    /// The probe's type.
    pub probe_type: String,
    /// Runs in the quarter hour.
    pub runs: u32,
    /// Failed runs.
    pub failed: u32,
    /// Their latencies added up.
    pub latency_sum_ms: u64,
}

/// The probe runs of a window, folded: quarter-hour buckets and each probe's last run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProbeRuns {
    /// Buckets, oldest first.
    pub buckets: Vec<RunBucket>,
    /// Each probe's last run (within the window), by probe name.
    pub last: Vec<CheckRun>,
}

/// The start of the quarter hour holding `at`.
pub fn bucket_start(at: DateTime<Utc>) -> DateTime<Utc> {
    let secs = at.timestamp().div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS;
    DateTime::from_timestamp(secs, 0).unwrap_or(at)
}

impl Store {
    /// Records one probe run for the report: adds it to its quarter hour and keeps it as the
    /// probe's last run, in one transaction.
    pub fn record_check_run(&self, run: &CheckRun) -> anyhow::Result<()> {
        let latency_ms = run.latency_ms.min(i64::MAX as u64) as i64;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // Cached statements: this runs for every probe run (30 a second with 300 probes).
        tx.prepare_cached(
            "INSERT INTO probe_buckets (probe, start, component, probe_type, runs, failed, latency_sum_ms)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)
             ON CONFLICT (start, probe) DO UPDATE SET runs = runs + 1,
                 failed = failed + excluded.failed,
                 latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms,
                 component = excluded.component, probe_type = excluded.probe_type",
        )?
        .execute(params![
            run.probe,
            bucket_start(run.at).timestamp(),
            run.component,
            run.probe_type,
            i64::from(!run.ok),
            latency_ms,
        ])?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO probe_last
                 (probe, at, component, probe_type, ok, latency_ms, error, details)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            run.probe,
            stamp(run.at),
            run.component,
            run.probe_type,
            run.ok,
            latency_ms,
            run.error,
            run.details
        ])?;
        tx.commit()?;
        Ok(())
    }

    /// The probe runs from the quarter hour holding `since` on: buckets oldest first, and the
    /// last run of each probe that ran in that time.
    pub fn probe_runs_since(&self, since: DateTime<Utc>) -> anyhow::Result<ProbeRuns> {
        let from = bucket_start(since);
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT probe, start, component, probe_type, runs, failed, latency_sum_ms
             FROM probe_buckets WHERE start >= ?1 ORDER BY start, probe",
        )?;
        let buckets = stmt
            .query_map(params![from.timestamp()], |r| {
                Ok(RunBucket {
                    probe: r.get(0)?,
                    start: DateTime::from_timestamp(r.get(1)?, 0).unwrap_or_default(),
                    component: r.get(2)?,
                    probe_type: r.get(3)?,
                    runs: r.get::<_, i64>(4)?.clamp(0, u32::MAX.into()) as u32,
                    failed: r.get::<_, i64>(5)?.clamp(0, u32::MAX.into()) as u32,
                    latency_sum_ms: r.get::<_, i64>(6)?.max(0) as u64,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT at, component, probe, probe_type, ok, latency_ms, error, details
             FROM probe_last WHERE at >= ?1 ORDER BY probe",
        )?;
        let last = stmt
            .query_map(params![stamp(from)], |r| {
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
            })?
            .collect::<Result<_, _>>()?;
        Ok(ProbeRuns { buckets, last })
    }

    /// Forgets probe runs older than `before` (and probes that last ran before it).
    pub fn prune_check_runs(&self, before: DateTime<Utc>) -> anyhow::Result<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM probe_buckets WHERE start < ?1",
            params![bucket_start(before).timestamp()],
        )?;
        conn.execute(
            "DELETE FROM probe_last WHERE at < ?1",
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
            "SELECT at, component, kind, message, count FROM history WHERE at >= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![loose], |r| {
            Ok(HistoryRow {
                at: parse_time(&r.get::<_, String>(0)?),
                component: r.get(1)?,
                kind: r.get(2)?,
                message: r.get(3)?,
                count: r.get::<_, i64>(4)?.clamp(1, u32::MAX.into()) as u32,
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn run(at: DateTime<Utc>, probe: &str, ok: bool, latency_ms: u64) -> CheckRun {
        CheckRun {
            at,
            component: "worker".into(),
            probe: probe.into(),
            probe_type: "http".into(),
            ok,
            latency_ms,
            error: (!ok).then(|| format!("failed at {at}")),
            details: None,
        }
    }

    #[test]
    fn runs_fold_into_quarter_hours_and_a_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        // A day of one run every 10 s: 8,640 runs, folded into 96 rows.
        for i in 0..8640 {
            let ok = i % 1000 != 0;
            store
                .record_check_run(&run(t0 + Duration::seconds(10 * i), "api", ok, 20))
                .unwrap();
        }
        store
            .record_check_run(&run(t0 + Duration::minutes(7), "db", false, 100))
            .unwrap();
        let runs = store.probe_runs_since(t0).unwrap();
        let api: Vec<_> = runs.buckets.iter().filter(|b| b.probe == "api").collect();
        assert_eq!(api.len(), 96);
        assert!(api.iter().all(|b| b.runs == 90 && b.latency_sum_ms == 1800));
        assert_eq!(api.iter().map(|b| b.failed).sum::<u32>(), 9);
        let db: Vec<_> = runs.buckets.iter().filter(|b| b.probe == "db").collect();
        assert_eq!((db.len(), db[0].start, db[0].failed), (1, t0, 1));
        assert_eq!(runs.last.len(), 2);
        let last_api = runs.last.iter().find(|r| r.probe == "api").unwrap();
        assert_eq!(last_api.at, t0 + Duration::seconds(86390));
        // A window starting mid-quarter starts with that quarter hour.
        let later = store.probe_runs_since(t0 + Duration::minutes(20)).unwrap();
        assert_eq!(
            later.buckets.iter().filter(|b| b.probe == "api").count(),
            95
        );
        assert!(later.last.iter().all(|r| r.probe == "api"));
        // Pruning forgets old quarter hours and probes that stopped running.
        store.prune_check_runs(t0 + Duration::hours(12)).unwrap();
        let pruned = store.probe_runs_since(t0).unwrap();
        assert_eq!(pruned.buckets.len(), 48);
        assert_eq!(pruned.last.len(), 1);
    }

    #[test]
    fn runs_kept_one_row_each_by_an_earlier_version_are_folded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("medic.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE check_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
                 component TEXT NOT NULL, probe TEXT NOT NULL, probe_type TEXT NOT NULL,
                 ok INTEGER NOT NULL, latency_ms INTEGER NOT NULL, error TEXT, details TEXT);
             INSERT INTO check_runs (at, component, probe, probe_type, ok, latency_ms, error, details)
             VALUES ('2026-11-22T08:01:00.000Z', 'worker', 'upload', 'upload', 1, 300, NULL, NULL),
                    ('2026-11-22T08:14:59.999Z', 'worker', 'upload', 'upload', 0, 500, 'no token', NULL),
                    ('2026-11-22T08:15:00.000Z', 'worker', 'upload', 'upload', 1, 100, NULL, '{\"a\":1}');",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let runs = store.probe_runs_since(t0).unwrap();
        let folded: Vec<_> = runs
            .buckets
            .iter()
            .map(|b| (b.start, b.runs, b.failed, b.latency_sum_ms))
            .collect();
        assert_eq!(
            folded,
            vec![(t0, 2, 1, 800), (t0 + Duration::minutes(15), 1, 0, 100)]
        );
        assert_eq!(runs.last.len(), 1);
        assert_eq!(runs.last[0].details.as_deref(), Some("{\"a\":1}"));
        // The old table is gone, and opening again folds nothing twice.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.probe_runs_since(t0).unwrap().buckets.len(), 2);
    }
}
