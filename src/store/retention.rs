//! Keeps the store bounded: every table that grows with time is pruned to a retention (days)
//! and a row cap, in the background ([`spawn_pruner`]), never on the write path.
//!
//! Delivered outbox messages are kept one day whatever the retention: their bodies are most of
//! the store's bytes, and that an alert was sent stays in history.
//!
//! What is never pruned, whatever the settings: an outbox message not yet delivered and the
//! alert inbox (unsent alerts), restarts inside the restart-budget window (the budget counts
//! them), and each component's last `alert_critical`/`alert_recovered` line (the daily report
//! reads it to know whether the component was down when its window began). Tables keyed by
//! component or service (policy state, alert limits, silences) hold one row per name; checks
//! unchanged for the retention (containers and probes long gone) and silences that ended
//! longer ago than that are dropped.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::params;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::outbox::stamp;
use super::report::bucket_start;
use super::Store;

/// How long and how much the store keeps (`MEDIC_HISTORY_RETENTION`, `MEDIC_HISTORY_MAX_ROWS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Rows older than this are pruned.
    pub keep_for: Duration,
    /// The most rows each table keeps; the oldest beyond it are pruned.
    pub max_rows: u64,
}

impl Default for Retention {
    /// 30 days (the report reads 7, the status strip 24 hours) and 50,000 rows a table: even
    /// 300 probes failing all day and 100 services restarted at their budget write about
    /// 7,200 history lines, 7,200 restarts and 28,800 probe quarter hours a day, so the cap
    /// always keeps the last 24 hours the report and the status page read.
    fn default() -> Self {
        Retention {
            keep_for: Duration::from_secs(30 * 86_400),
            max_rows: 50_000,
        }
    }
}

/// Rows removed by one pruning, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// `history` lines.
    pub history: usize,
    /// `restarts`.
    pub restarts: usize,
    /// Probe-run quarter hours and last runs.
    pub probe_runs: usize,
    /// Delivered or failed outbox messages.
    pub outbox: usize,
    /// Check states, silences.
    pub state: usize,
}

impl Pruned {
    /// Rows removed in all.
    pub fn total(&self) -> usize {
        self.history + self.restarts + self.probe_runs + self.outbox + self.state
    }
}

/// Rows deleted per statement: the store's lock is released between chunks, so the supervisor
/// and the HTTP server never wait long behind a large pruning.
const CHUNK: i64 = 5_000;

/// How often the background pruning runs (and first, a minute after start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Store {
    /// Runs `sql` (a DELETE or UPDATE whose `WHERE` ends in `rowid IN (SELECT ... LIMIT ?n)`)
    /// until a chunk is not full, one chunk per lock.
    fn delete_in_chunks(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = {
                let conn = self.conn();
                let mut stmt = conn.prepare_cached(sql)?;
                let mut all: Vec<&dyn rusqlite::ToSql> = args.to_vec();
                all.push(&CHUNK);
                stmt.execute(all.as_slice())?
            };
            total += n;
            if (n as i64) < CHUNK {
                return Ok(total);
            }
        }
    }

    /// When a table holds more than `cap` rows: the `column` value (ascending: oldest first)
    /// of the last row to remove so that `cap` remain.
    fn cap_cut(&self, table: &str, column: &str, cap: u64) -> anyhow::Result<Option<i64>> {
        let conn = self.conn();
        let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        let excess = n - cap.min(i64::MAX as u64) as i64;
        if excess <= 0 {
            return Ok(None);
        }
        Ok(Some(conn.query_row(
            &format!("SELECT {column} FROM {table} ORDER BY {column} LIMIT 1 OFFSET ?1"),
            params![excess - 1],
            |r| r.get(0),
        )?))
    }

    /// Prunes every table to `retention` at `now`. `budget_window` is the restart budget's
    /// window: restarts inside it are kept whatever the settings say.
    pub fn prune(
        &self,
        now: DateTime<Utc>,
        retention: &Retention,
        budget_window: Duration,
    ) -> anyhow::Result<Pruned> {
        let keep_for =
            chrono::Duration::from_std(retention.keep_for).unwrap_or(chrono::Duration::days(30));
        let before = now - keep_for;
        // History times are RFC 3339 text with a varying number of fraction digits: compared as
        // text they are ordered to the second, plenty for a retention in days.
        let before_text = before.to_rfc3339();
        let mut pruned = Pruned::default();

        // History, keeping each component's last alert line for the report.
        const KEEP_LAST_ALERTS: &str = "id NOT IN (SELECT MAX(id) FROM history
             WHERE kind IN ('alert_critical', 'alert_recovered') GROUP BY component)";
        pruned.history += self.delete_in_chunks(
            &format!(
                "DELETE FROM history WHERE rowid IN (SELECT id FROM history
                 WHERE at < ?1 AND {KEEP_LAST_ALERTS} ORDER BY id LIMIT ?2)"
            ),
            &[&before_text],
        )?;
        if let Some(cut) = self.cap_cut("history", "id", retention.max_rows)? {
            pruned.history += self.delete_in_chunks(
                &format!(
                    "DELETE FROM history WHERE rowid IN (SELECT id FROM history
                     WHERE id <= ?1 AND {KEEP_LAST_ALERTS} ORDER BY id LIMIT ?2)"
                ),
                &[&cut],
            )?;
        }

        // Restarts, never inside the budget window (nor the last 24 hours the views show).
        let window = chrono::Duration::from_std(budget_window)
            .unwrap_or(chrono::Duration::days(1))
            .max(chrono::Duration::days(1));
        let protected = (now - window).to_rfc3339();
        let restart_before = before_text.clone().min(protected.clone());
        pruned.restarts += self.delete_in_chunks(
            "DELETE FROM restarts WHERE rowid IN (SELECT id FROM restarts WHERE at < ?1
             ORDER BY id LIMIT ?2)",
            &[&restart_before],
        )?;
        if let Some(cut) = self.cap_cut("restarts", "id", retention.max_rows)? {
            pruned.restarts += self.delete_in_chunks(
                "DELETE FROM restarts WHERE rowid IN (SELECT id FROM restarts
                 WHERE id <= ?1 AND at < ?2 ORDER BY id LIMIT ?3)",
                &[&cut, &protected],
            )?;
        }

        // Probe runs: quarter hours older than the retention, then the oldest beyond the cap.
        pruned.probe_runs += self.prune_buckets_before(bucket_start(before).timestamp())?;
        // `probe_buckets` is keyed by quarter hour: the cap cuts at whole quarter hours.
        if let Some(cut) = self.cap_cut("probe_buckets", "start", retention.max_rows)? {
            pruned.probe_runs += self.prune_buckets_before(cut + 1)?;
        }
        pruned.probe_runs += self.conn().execute(
            "DELETE FROM probe_last WHERE at < ?1",
            params![stamp(before)],
        )?;

        // The outbox: delivered messages after a day (an email's HTML is several KB, most of
        // the store's bytes: 100 alerts an hour kept a month would be half a gigabyte; that it
        // was sent stays in history), failed ones after the retention; pending ones wait
        // however long.
        pruned.outbox += self.delete_in_chunks(
            "DELETE FROM outbox WHERE rowid IN (SELECT id FROM outbox
             WHERE (state = 'sent' AND sent_at < ?1) OR (state = 'failed' AND created_at < ?2)
             ORDER BY id LIMIT ?3)",
            &[&stamp(now - chrono::Duration::days(1)), &stamp(before)],
        )?;
        if let Some(cut) = self.cap_cut("outbox", "id", retention.max_rows)? {
            pruned.outbox += self.delete_in_chunks(
                "DELETE FROM outbox WHERE rowid IN (SELECT id FROM outbox
                 WHERE state IN ('sent', 'failed') AND id <= ?1 ORDER BY id LIMIT ?2)",
                &[&cut],
            )?;
        }

        // Checks not changed for the retention, and silences long over.
        pruned.state += self.conn().execute(
            "DELETE FROM check_state WHERE updated_at < ?1",
            params![stamp(before)],
        )?;
        let silences_exist: bool = self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'silences')",
            [],
            |r| r.get(0),
        )?;
        if silences_exist {
            pruned.state += self.conn().execute(
                "DELETE FROM silences WHERE until < ?1",
                params![before.to_rfc3339()],
            )?;
        }
        Ok(pruned)
    }

    /// Deletes probe quarter hours starting before `start` (seconds), a chunk of rows at a time
    /// (the table has no rowid: chunks are cut at a bucket start).
    fn prune_buckets_before(&self, start: i64) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let conn = self.conn();
            let cut: Option<i64> = conn
                .query_row(
                    "SELECT start FROM probe_buckets WHERE start < ?1 ORDER BY start
                     LIMIT 1 OFFSET ?2",
                    params![start, CHUNK],
                    |r| r.get(0),
                )
                .ok();
            let upto = cut.unwrap_or(start);
            let mut n =
                conn.execute("DELETE FROM probe_buckets WHERE start < ?1", params![upto])?;
            if n == 0 && cut.is_some() {
                // More than a chunk of probes in one quarter hour: take that quarter whole.
                n = conn.execute("DELETE FROM probe_buckets WHERE start = ?1", params![upto])?;
            }
            total += n;
            if cut.is_none() {
                return Ok(total);
            }
        }
    }
}

/// Prunes the store every [`PRUNE_EVERY`] (the first time a minute after start), off the async
/// runtime's workers, until `shutdown`.
pub fn spawn_pruner(
    store: Arc<Store>,
    retention: Retention,
    budget_window: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            next = tokio::time::Instant::now() + PRUNE_EVERY;
            let store = store.clone();
            let done = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                store
                    .prune(Utc::now(), &retention, budget_window)
                    .map(|p| (p, started.elapsed()))
            })
            .await;
            match done {
                Ok(Ok((pruned, took))) if pruned.total() > 0 => tracing::info!(
                    history = pruned.history,
                    restarts = pruned.restarts,
                    probe_runs = pruned.probe_runs,
                    outbox = pruned.outbox,
                    state = pruned.state,
                    took_ms = took.as_millis() as u64,
                    "pruned the store"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "cannot prune the store"),
                Err(e) => tracing::warn!(error = %e, "the store's pruning stopped"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::NewMessage;
    use crate::store::report::CheckRun;
    use crate::store::RestartRecord;
    use chrono::TimeZone;

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    fn file_size(dir: &std::path::Path) -> u64 {
        ["medic.db", "medic.db-wal", "medic.db-shm"]
            .iter()
            .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// SHOW (issue 14, item 5): a week of 300 probes failing every second, driven through the
    /// store's own write calls with simulated timestamps and the hourly background pruning,
    /// leaves every table under its cap (50,000 rows) and the file under 64 MB; with every
    /// table at its cap by the end of the week, that is also the size it keeps from then on.
    ///
    /// Every failure of a probe within one hour updates the same history line, and every run
    /// within a quarter hour the same probe-run row, in place: the rows and bytes depend on the
    /// probe-hours and probe-quarter-hours, not on the number of runs. So the test records one
    /// run per probe per quarter hour and a failure line twice an hour, which writes exactly
    /// the rows 3,600 runs an hour would (`repeated_identical_failures_fold_into_one_line_per_hour`
    /// shows an hour at every second folding into one line); only the counters are smaller (a
    /// varint of 1 byte instead of 2). Beside the probes: 3 restarts an hour of each of 100 services (the
    /// budget) and an alert email an hour per component, delivered.
    #[test]
    fn a_week_of_300_probes_failing_every_second_stays_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let retention = Retention::default();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let (probes, services) = (300, 100);
        let mut peak_size = 0;
        let mut peak_rows = 0;
        for quarter in 0..7 * 96 {
            let start = t0 + chrono::Duration::seconds(900 * quarter);
            for p in 0..probes {
                let component = format!("service-{:03}", p % services);
                let error =
                    "step `connect` failed: cannot connect: Connection refused (os error 111)";
                // Twice an hour: the second folds into the first.
                if quarter % 2 == 0 {
                    store
                        .record_history(
                            start,
                            &component,
                            "probe_failed",
                            &format!("probe check-{p:03}: {error}"),
                        )
                        .unwrap();
                }
                store
                    .record_check_run(&CheckRun {
                        at: start,
                        component,
                        probe: format!("check-{p:03}"),
                        probe_type: "http".into(),
                        ok: false,
                        latency_ms: 1000,
                        error: Some(error.into()),
                        details: None,
                    })
                    .unwrap();
            }
            if quarter % 4 == 0 {
                for s in 0..services {
                    // The budget's 3 restarts an hour, one per quarter here.
                    for k in 0..3 {
                        store
                            .record_restart(&RestartRecord {
                                at: start + chrono::Duration::seconds(k * 900),
                                service: format!("shop/service-{s:03}"),
                                container: format!("shop-service-{s:03}-1"),
                                reason: "probe failed 3 times in a row".into(),
                                error: None,
                            })
                            .unwrap();
                    }
                    let id = store
                        .outbox_enqueue(
                            start,
                            &NewMessage {
                                channel: crate::notify::email::ID,
                                kind: "alert".into(),
                                subject: format!("🚨 CRITICAL: service-{s:03} failure - shop"),
                                // About the size of a real alert email (HTML and text).
                                payload: "x".repeat(6000),
                            },
                        )
                        .unwrap();
                    store.outbox_mark_sent(id, start).unwrap();
                }
            }
            if quarter % 4 == 3 {
                // The background pruning, once an hour.
                store
                    .prune(
                        start + chrono::Duration::seconds(900),
                        &retention,
                        Duration::from_secs(3600),
                    )
                    .unwrap();
                peak_size = peak_size.max(file_size(dir.path()));
                let rows: i64 = ["history", "restarts", "probe_buckets", "outbox"]
                    .iter()
                    .map(|t| count(&store, t))
                    .sum();
                peak_rows = peak_rows.max(rows);
            }
        }
        let cap = retention.max_rows as i64;
        let rows: Vec<(&str, i64)> = [
            "history",
            "restarts",
            "probe_buckets",
            "probe_last",
            "outbox",
            "check_state",
        ]
        .iter()
        .map(|t| (*t, count(&store, t)))
        .collect();
        let size = file_size(dir.path());
        println!(
            "after a week: rows {rows:?}; file {:.1} MB (peak {:.1} MB, {peak_rows} rows)",
            size as f64 / 1e6,
            peak_size as f64 / 1e6
        );
        for (table, n) in &rows {
            assert!(*n <= cap, "{table} holds {n} rows, over the cap {cap}");
        }
        // 300 probe-hours an hour for 168 hours (50,400 lines, folded from 181 million
        // failures), cut to the cap; the probe runs (201,600 quarter hours) too, a quarter hour
        // at a time.
        assert!(rows[0].1 > cap - 300 && rows[0].1 <= cap, "{rows:?}");
        assert!(rows[2].1 > cap - 300 && rows[2].1 <= cap, "{rows:?}");
        assert!(size < 64_000_000, "{size} bytes");
        assert!(peak_size < 64_000_000, "{peak_size} bytes");
        // What the report and the budget need is still there.
        let day = store.history_since(t0 + chrono::Duration::days(6)).unwrap();
        assert_eq!(day.len(), 300 * 24);
        assert!(
            day.iter().all(|h| h.count == 2),
            "two failures an hour, folded"
        );
        let last_day = store
            .probe_runs_since(t0 + chrono::Duration::days(6))
            .unwrap();
        assert_eq!(last_day.buckets.len(), 300 * 96);
        assert_eq!(
            store
                .restarts_since("shop/service-000", t0 + chrono::Duration::days(6))
                .unwrap()
                .len(),
            3 * 24
        );
    }

    #[test]
    fn pruning_keeps_unsent_mail_the_budget_window_and_each_last_alert() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let old = now - chrono::Duration::days(40);
        let retention = Retention {
            keep_for: Duration::from_secs(30 * 86_400),
            max_rows: 1_000,
        };
        let message = |subject: &str| NewMessage {
            channel: crate::notify::email::ID,
            kind: "alert".into(),
            subject: subject.into(),
            payload: "{}".into(),
        };
        let unsent = store.outbox_enqueue(old, &message("unsent")).unwrap();
        let sent = store.outbox_enqueue(old, &message("sent")).unwrap();
        store.outbox_mark_sent(sent, old).unwrap();
        store
            .record_history(old, "db", "alert_critical", "db is down")
            .unwrap();
        store
            .record_history(old, "db", "probe_failed", "probe db: refused")
            .unwrap();
        store
            .record_history(old, "web", "alert_critical", "web is down")
            .unwrap();
        store
            .record_history(old, "web", "alert_recovered", "web is up")
            .unwrap();
        let restart = |at| RestartRecord {
            at,
            service: "shop/web".into(),
            container: "shop-web-1".into(),
            reason: "unhealthy".into(),
            error: None,
        };
        store.record_restart(&restart(old)).unwrap();
        // A budget window longer than the retention keeps its restarts.
        store
            .record_restart(&restart(now - chrono::Duration::days(35)))
            .unwrap();
        // Over the cap: 2,000 recent lines; the oldest go, each last alert stays.
        for i in 0..2_000 {
            store
                .record_history(
                    now - chrono::Duration::seconds(2_000 - i),
                    "worker",
                    "held",
                    &format!("line {i}"),
                )
                .unwrap();
        }
        let pruned = store
            .prune(now, &retention, Duration::from_secs(36 * 86_400))
            .unwrap();
        assert_eq!(pruned.outbox, 1);
        assert_eq!(pruned.restarts, 1);
        assert!(store.outbox_get(unsent).unwrap().is_some());
        assert!(store.outbox_get(sent).unwrap().is_none());
        let alerts = store.last_alerts_before(now).unwrap();
        assert_eq!(
            alerts,
            vec![
                ("db".to_string(), "alert_critical".to_string()),
                ("web".to_string(), "alert_recovered".to_string())
            ]
        );
        assert_eq!(count(&store, "history"), 1_000 + 2);
        let kept = store
            .history_since(now - chrono::Duration::days(1))
            .unwrap();
        assert_eq!(kept.first().unwrap().message, "line 1000");
        assert_eq!(
            store
                .restarts_since("shop/web", now - chrono::Duration::days(36))
                .unwrap()
                .len(),
            1
        );
    }
}
