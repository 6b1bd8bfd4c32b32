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

use crate::policy::{CheckState, Instant, ServiceState};

pub mod outbox;
pub mod report;

pub mod timeline;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS service_state (
    service TEXT PRIMARY KEY,
    state   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS check_state (
    check_key TEXT PRIMARY KEY,
    state     TEXT NOT NULL
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
    message   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_component ON history (component, at);
";

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
    /// One connection; every operation is a short transaction.
    conn: Mutex<Connection>,
    /// The database file, for messages.
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `dir/medic.db`.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create MEDIC_DATA_DIR {}; create it or point MEDIC_DATA_DIR at a writable folder",
                dir.display()
            )
        })?;
        let path = dir.join("medic.db");
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // 512 KiB of page cache instead of SQLite's 2 MiB: the working set (policy state, the
        // outbox, the current quarter hour of probe runs) is a few pages; the daily report's
        // one scan gains nothing from a cache, and medic's memory is part of its promise.
        conn.pragma_update(None, "cache_size", -512)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)
            .and_then(|()| outbox::create_tables(&conn))
            .and_then(|()| report::create_tables(&conn))
            .with_context(|| {
                format!(
                    "cannot set up the state database {}; is it writable?",
                    path.display()
                )
            })?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection itself intact.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Saves one check's failure tally.
    pub fn save_check(&self, key: &str, state: &CheckState) -> anyhow::Result<()> {
        self.save_json("check_state", "check_key", key, state)
    }

    /// Appends a restart to history and returns its row id.
    pub fn record_restart(&self, record: &RestartRecord) -> anyhow::Result<i64> {
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
    pub fn record_history(
        &self,
        at: Instant,
        component: &str,
        kind: &str,
        message: &str,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO history (at, component, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![at.to_rfc3339(), component, kind, message],
        )?;
        Ok(())
    }

    /// Proves the store can still commit a write (for `/health`).
    pub fn check_writable(&self) -> anyhow::Result<()> {
        let conn = self.conn();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS liveness (id INTEGER PRIMARY KEY, at TEXT);
             INSERT INTO liveness (id, at) VALUES (1, datetime('now'))
             ON CONFLICT(id) DO UPDATE SET at = excluded.at;",
        )
        .with_context(|| format!("the state database {} is not writable", self.path.display()))?;
        let _: Option<String> = conn
            .query_row("SELECT at FROM liveness WHERE id = 1", [], |r| r.get(0))
            .optional()?;
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
    fn an_unwritable_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = Store::open(&file).err().unwrap();
        assert!(format!("{err:#}").contains("MEDIC_DATA_DIR"), "{err:#}");
    }
}
