//! Durable state in `MEDIC_DATA_DIR/medic.db`, an SQLite database.
//!
//! SQLite in WAL mode commits each write atomically and survives a SIGKILL of medic at any
//! moment; it is one file, needs no server, and lets the report and the API query history with
//! SQL. Policy state is stored as JSON per row, so adding a field needs no migration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{de::DeserializeOwned, Serialize};

use crate::model::HistoryKind;
use crate::policy::{CheckState, Instant, ServiceState};

pub mod faults;
pub mod outbox;
pub mod report;
pub mod retention;

pub mod timeline;

/// Opens `path` and sets up every table (migrating older layouts).
fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 512 KiB of page cache instead of SQLite's 2 MiB: the working set (policy state, the
    // outbox, the current quarter hour of probe runs) is a few pages; the daily report's
    // one scan gains nothing from a cache, and medic's memory is part of its promise.
    conn.pragma_update(None, "cache_size", -512)?;
    // After a checkpoint the WAL is cut back to 4 MiB: a burst of pruning must not leave a
    // large WAL file behind for good.
    conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    migrate(&conn)?;
    outbox::create_tables(&conn)?;
    report::create_tables(&conn)?;
    Ok(conn)
}

/// Columns added after the first release: history rows fold repeats (`count`, `last_at`),
/// check states say when they last changed (`updated_at`, for retention).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, column: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
            params![column],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    if !has("history", "count")? {
        conn.execute_batch("ALTER TABLE history ADD COLUMN count INTEGER NOT NULL DEFAULT 1")?;
    }
    if !has("history", "last_at")? {
        conn.execute_batch("ALTER TABLE history ADD COLUMN last_at TEXT")?;
    }
    if !has("check_state", "updated_at")? {
        conn.execute_batch("ALTER TABLE check_state ADD COLUMN updated_at TEXT")?;
    }
    // Finding a component's last line (to fold a repeat into it) must not scan its history.
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS history_last_by_component ON history (component, id)",
    )
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS service_state (
    service TEXT PRIMARY KEY,
    state   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS check_state (
    check_key  TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at TEXT
);
CREATE TABLE IF NOT EXISTS restarts (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    service   TEXT NOT NULL,
    container TEXT NOT NULL,
    reason    TEXT NOT NULL,
    error     TEXT
);
CREATE INDEX IF NOT EXISTS restarts_by_service ON restarts (service, at);
CREATE TABLE IF NOT EXISTS history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    component TEXT NOT NULL,
    kind      TEXT NOT NULL,
    message   TEXT NOT NULL,
    count     INTEGER NOT NULL DEFAULT 1,
    last_at   TEXT
);
CREATE INDEX IF NOT EXISTS history_by_component ON history (component, at);
";

/// History kinds that say a check failed: repeats of one are folded into one line with a count.
pub const FOLDED_KINDS: &[HistoryKind] = &[HistoryKind::ProbeFailed, HistoryKind::Unhealthy];

/// A lock whose holder panicked still guards intact data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One restart medic made, as kept in history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartRecord {
    /// When the restart was issued.
    pub at: Instant,
    /// The service restarted.
    pub service: String,
    /// The container restarted.
    pub container: String,
    /// Why.
    pub reason: String,
    /// The engine's error, when the restart call failed.
    pub error: Option<String>,
}

/// The database, shared by the supervisor and the HTTP server.
pub struct Store {
    /// One connection; every operation is a short transaction. Replaced when the file is
    /// deleted or replaced while medic runs ([`Store::reopen_if_replaced`]).
    conn: Mutex<Connection>,
    /// The database file, for messages.
    path: PathBuf,
    /// Which file the connection has open (device and inode), to notice the path now naming
    /// another file or none.
    opened: Mutex<Option<faults::FileId>>,
    /// Set at open when a corrupt database was moved aside: what happened, for the alert.
    corrupt_notice: Mutex<Option<String>>,
    /// Set when the periodic read-through found the file corrupt while medic runs: what was
    /// wrong, until the next heartbeat moves it aside ([`Store::replace_if_corrupt`]).
    corrupt_found: Mutex<Option<String>>,
    /// Restarts that could not be recorded while the store failed, written once it works again.
    unrecorded_restarts: Mutex<Vec<RestartRecord>>,
    /// True while a fault of the store is known (reported once; later write errors log less).
    fault_known: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens (creating if needed) `dir/medic.db`. A file that is not a database or fails
    /// SQLite's `quick_check` is moved aside (`medic.db.corrupt-<time>`) and a fresh one is
    /// started: healing must not stop because history was lost ([`Store::take_corrupt_notice`]
    /// says what happened).
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create MEDIC_DATA_DIR {}; create it or point MEDIC_DATA_DIR at a writable folder",
                dir.display()
            )
        })?;
        let path = dir.join("medic.db");
        let (conn, notice) = faults::open_or_move_aside(&path)?;
        Ok(Store {
            opened: Mutex::new(faults::file_id(&path)),
            conn: Mutex::new(conn),
            path,
            corrupt_notice: Mutex::new(notice),
            corrupt_found: Mutex::new(None),
            unrecorded_restarts: Mutex::new(Vec::new()),
            fault_known: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection itself intact.
        lock(&self.conn)
    }

    fn load_json<T: DeserializeOwned>(
        &self,
        table: &str,
        key: &str,
    ) -> anyhow::Result<HashMap<String, T>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {key}, state FROM {table}"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = HashMap::new();
        for row in rows {
            let (name, json) = row?;
            match serde_json::from_str(&json) {
                Ok(state) => {
                    out.insert(name, state);
                }
                Err(e) => tracing::warn!(%name, error = %e, "ignoring unreadable stored state"),
            }
        }
        Ok(out)
    }

    fn save_json<T: Serialize>(
        &self,
        table: &str,
        key: &str,
        name: &str,
        state: &T,
    ) -> anyhow::Result<()> {
        let json = serde_json::to_string(state)?;
        self.conn().execute(
            &format!(
                "INSERT INTO {table} ({key}, state) VALUES (?1, ?2)
                 ON CONFLICT({key}) DO UPDATE SET state = excluded.state"
            ),
            params![name, json],
        )?;
        Ok(())
    }

    /// Every service's restart state.
    pub fn load_services(&self) -> anyhow::Result<HashMap<String, ServiceState>> {
        self.load_json("service_state", "service")
    }

    /// Saves one service's restart state.
    pub fn save_service(&self, service: &str, state: &ServiceState) -> anyhow::Result<()> {
        self.save_json("service_state", "service", service, state)
    }

    /// Every check's failure tally.
    pub fn load_checks(&self) -> anyhow::Result<HashMap<String, CheckState>> {
        self.load_json("check_state", "check_key")
    }

    /// Saves one check's failure tally, with the time, so checks unchanged for the retention
    /// (containers and probes long gone) can be pruned.
    pub fn save_check(&self, key: &str, state: &CheckState) -> anyhow::Result<()> {
        let json = serde_json::to_string(state)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO check_state (check_key, state, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(check_key) DO UPDATE SET state = excluded.state,
                     updated_at = excluded.updated_at",
            )?
            .execute(params![key, json, outbox::stamp(chrono::Utc::now())])?;
        Ok(())
    }

    /// Appends a restart to history and returns its row id. When the store cannot take it, the
    /// record is kept in memory and written once the store works again
    /// ([`Store::write_unrecorded_restarts`]); the error is returned for the caller to log.
    pub fn record_restart(&self, record: &RestartRecord) -> anyhow::Result<i64> {
        let written = self.insert_restart(record);
        if written.is_err() {
            lock(&self.unrecorded_restarts).push(record.clone());
        }
        written
    }

    fn insert_restart(&self, record: &RestartRecord) -> anyhow::Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO restarts (at, service, container, reason, error) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                record.at.to_rfc3339(),
                record.service,
                record.container,
                record.reason,
                record.error
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Marks a recorded restart as failed.
    pub fn restart_failed(&self, id: i64, error: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE restarts SET error = ?1 WHERE id = ?2",
            params![error, id],
        )?;
        Ok(())
    }

    /// Restarts of a service since `since`, oldest first.
    pub fn restarts_since(
        &self,
        service: &str,
        since: Instant,
    ) -> anyhow::Result<Vec<RestartRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, service, container, reason, error FROM restarts
             WHERE service = ?1 AND at >= ?2 ORDER BY at, id",
        )?;
        let rows = stmt.query_map(params![service, since.to_rfc3339()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                RestartRecord {
                    at: Instant::default(),
                    service: r.get(1)?,
                    container: r.get(2)?,
                    reason: r.get(3)?,
                    error: r.get(4)?,
                },
            ))
        })?;
        rows.map(|row| {
            let (at, mut record) = row?;
            record.at = chrono::DateTime::parse_from_rfc3339(&at)?.with_timezone(&chrono::Utc);
            Ok(record)
        })
        .collect()
    }

    /// Appends a line of history about a component (a decision, a failure, a recovery).
    ///
    /// A failure ([`FOLDED_KINDS`]) repeating an earlier line of the same UTC hour word for word
    /// (same check, same error), with only failures of the component since, is folded into
    /// that line (`count` + 1, `last_at` = `at`) instead of adding one: a probe failing every second for a week is 168 lines, not 604,800. The hour
    /// bound keeps every line's time within an hour of each failure it counts, so the daily
    /// report and the 24-hour strip still place failures in the right hour.
    pub fn record_history(
        &self,
        at: Instant,
        component: &str,
        kind: &str,
        message: &str,
    ) -> anyhow::Result<()> {
        let at = at.to_rfc3339();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut folded = false;
        if HistoryKind::parse(kind).is_some_and(|k| FOLDED_KINDS.contains(&k)) {
            // The same failure of the same check earlier in this hour, with nothing but
            // failures of the component after it (a recovery ends the run of repeats).
            let hour = at.get(..13).unwrap_or(&at);
            let repeat: Option<i64> = tx
                .prepare_cached(
                    "SELECT id FROM history
                     WHERE component = ?1 AND at >= ?2 AND substr(at, 1, 13) = ?2
                       AND kind = ?3 AND message = ?4
                       AND NOT EXISTS (SELECT 1 FROM history AS later
                           WHERE later.component = ?1 AND later.id > history.id
                             AND later.kind NOT IN ('probe_failed', 'unhealthy'))
                     ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![component, hour, kind, message], |r| r.get(0))
                .optional()?;
            if let Some(id) = repeat {
                tx.prepare_cached(
                    "UPDATE history SET count = count + 1, last_at = ?2 WHERE id = ?1",
                )?
                .execute(params![id, at])?;
                folded = true;
            }
        }
        if !folded {
            tx.prepare_cached(
                "INSERT INTO history (at, component, kind, message) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![at, component, kind, message])?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let state = ServiceState {
                recent_restarts: vec![t],
                last_restart: Some(t),
                grace_until: Some(t),
                gave_up: true,
                restarts_total: 7,
            };
            store.save_service("shop/web", &state).unwrap();
            store
                .save_check(
                    "docker:shop/web",
                    &CheckState {
                        consecutive_failures: 2,
                        ..Default::default()
                    },
                )
                .unwrap();
            let id = store
                .record_restart(&RestartRecord {
                    at: t,
                    service: "shop/web".into(),
                    container: "abc".into(),
                    reason: "unhealthy".into(),
                    error: None,
                })
                .unwrap();
            store.restart_failed(id, "engine said no").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let services = store.load_services().unwrap();
        assert_eq!(services["shop/web"].restarts_total, 7);
        assert!(services["shop/web"].gave_up);
        assert_eq!(
            store.load_checks().unwrap()["docker:shop/web"].consecutive_failures,
            2
        );
        let restarts = store.restarts_since("shop/web", t).unwrap();
        assert_eq!(restarts.len(), 1);
        assert_eq!(restarts[0].at, t);
        assert_eq!(restarts[0].error.as_deref(), Some("engine said no"));
        store.check_writable().unwrap();
    }

    #[test]
    fn repeated_identical_failures_fold_into_one_line_per_hour() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = DateTime::from_timestamp(1_800_000_000 / 3600 * 3600, 0).unwrap();
        // An hour of one failure a second: one line counting 3,600.
        for i in 0..3600 {
            store
                .record_history(
                    t0 + chrono::Duration::seconds(i),
                    "web",
                    "probe_failed",
                    "probe api: 500",
                )
                .unwrap();
        }
        let rows = store.history_since(t0).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].count, 3600);
        assert_eq!(rows[0].at, t0);
        // Another hour, another message, or another line in between start a new line.
        let t1 = t0 + chrono::Duration::hours(1);
        for (at, kind, message) in [
            (t1, "probe_failed", "probe api: 500"),
            (t1, "probe_failed", "probe api: 502"),
            (t1, "recovered", "probe api passes again"),
            (t1, "probe_failed", "probe api: 502"),
            (t1, "probe_failed", "probe api: 502"),
            (t1, "recovered", "probe api passes again"),
            (t1, "recovered", "probe api passes again"),
        ] {
            store.record_history(at, "web", kind, message).unwrap();
        }
        let counts: Vec<(String, u32)> = store
            .history_since(t0)
            .unwrap()
            .into_iter()
            .map(|r| (r.kind, r.count))
            .collect();
        let expected: Vec<(String, u32)> = [
            ("probe_failed", 3600),
            ("probe_failed", 1),
            ("probe_failed", 1),
            ("recovered", 1),
            ("probe_failed", 2),
            ("recovered", 1),
            ("recovered", 1),
        ]
        .iter()
        .map(|(k, n)| (k.to_string(), *n))
        .collect();
        assert_eq!(counts, expected);
        // The 24-hour strip sees a folded line at its first and at its last time.
        let events = store.timeline_since(t0).unwrap();
        assert!(events
            .iter()
            .any(|e| e.at == t0 + chrono::Duration::seconds(3599)));
    }

    #[test]
    fn an_unwritable_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = Store::open(&file).err().unwrap();
        assert!(format!("{err:#}").contains("MEDIC_DATA_DIR"), "{err:#}");
    }
}
