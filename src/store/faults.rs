//! What medic does when its store breaks: a corrupt file at start, the file deleted or replaced
//! while medic runs, a folder that turned read-only or full.
//!
//! Healing never waits for the store. A corrupt database is moved aside (kept for inspection)
//! and a fresh one started; a deleted one is recreated; while the store cannot be written, the
//! supervisor keeps its state in memory, `/health` answers 503 with the reason, and once the
//! store works again the state is written back and an alert says what happened. The supervisor
//! drives this from its heartbeat ([`Store::reopen_if_replaced`], [`Store::check_writable`]).
//! A database that turns corrupt while medic runs (a failing disk, a stray write) is found by
//! a read of every page every `MEDIC_STORE_CHECK_INTERVAL` ([`spawn_integrity_check`], off the
//! async runtime) and moved aside at the next heartbeat like a corrupt one at start.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::Context;
use rusqlite::{Connection, ErrorCode};

use super::{lock, open_connection, Store};

/// The identity of a file on disk: its device and inode. A path naming another file (deleted
/// and recreated, or a filesystem mounted over the folder) has another identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// The device the file is on.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
}

/// The identity of the file at `path`, or `None` when there is none.
pub fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// True for the errors SQLite gives for a file that is not (or no longer) a database.
fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// `medic.db` → `medic.db.corrupt-20261201T143000Z` (and its `-wal` and `-shm` beside it).
fn aside_name(path: &Path, at: chrono::DateTime<chrono::Utc>) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{}", at.format("%Y%m%dT%H%M%SZ")));
    PathBuf::from(name)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens `path`; when it holds a corrupt database, moves it aside and starts a fresh one.
/// Returns the connection and, when a file was moved aside, a sentence saying so.
pub(super) fn open_or_move_aside(path: &Path) -> anyhow::Result<(Connection, Option<String>)> {
    let problem = match open_connection(path) {
        Ok(conn) => match quick_check(&conn) {
            Ok(()) => return Ok((conn, None)),
            Err(problem) => {
                drop(conn);
                problem
            }
        },
        Err(e) if is_corrupt(&e) => e.to_string(),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot open the state database {}; is it writable?",
                    path.display()
                )
            })
        }
    };
    let aside = aside_name(path, chrono::Utc::now());
    std::fs::rename(path, &aside).with_context(|| {
        format!(
            "the state database {} is corrupt ({problem}) and cannot be moved aside to {}",
            path.display(),
            aside.display()
        )
    })?;
    // Its write-ahead log belongs to it: a fresh database must not replay the old one's.
    for suffix in ["-wal", "-shm"] {
        let from = with_suffix(path, suffix);
        if from.exists() {
            let _ = std::fs::rename(&from, with_suffix(&aside, suffix));
        }
    }
    let notice = format!(
        "the state database {} was corrupt ({problem}); it was moved aside to {} for inspection \
         and a fresh one started: history, restart budgets, silences and unsent alerts kept in \
         it are lost",
        path.display(),
        aside.display()
    );
    tracing::error!("{notice}");
    let conn = open_connection(path).with_context(|| {
        format!(
            "cannot start a fresh state database {} after moving the corrupt one aside",
            path.display()
        )
    })?;
    Ok((conn, Some(notice)))
}

/// SQLite's `quick_check` (a read of every page, without the slower index cross-checks).
fn quick_check(conn: &Connection) -> Result<(), String> {
    let verdict: Result<String, rusqlite::Error> =
        conn.query_row("PRAGMA quick_check", [], |r| r.get(0));
    match verdict {
        Ok(v) if v == "ok" => Ok(()),
        Ok(v) => Err(format!("quick_check: {v}")),
        Err(e) if is_corrupt(&e) => Err(e.to_string()),
        // Not a verdict on the file (e.g. an I/O error): let the caller's first use report it.
        Err(_) => Ok(()),
    }
}

/// Reads every page of the file at `path` through a connection of its own, so that nothing
/// medic's connection holds in its cache hides what is on disk. `Some(problem)` when SQLite
/// finds it corrupt or not a database; anything else (the file missing, an I/O error) is left
/// to the other checks, which report it in their own words.
fn integrity_problem(path: &Path) -> Option<String> {
    use rusqlite::OpenFlags;
    let conn = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(conn) => conn,
        Err(e) if is_corrupt(&e) => return Some(e.to_string()),
        Err(_) => return None,
    };
    quick_check(&conn).err()
}

/// Every `every`, reads the store file through for corruption (off the async runtime: on a
/// large database it takes a moment) and notes what it finds for the supervisor's next
/// heartbeat, which moves the file aside.
pub fn spawn_integrity_check(
    store: std::sync::Arc<Store>,
    every: std::time::Duration,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.check_integrity()).await {
                Ok(Some(problem)) => tracing::error!(
                    %problem,
                    "the state database is corrupt; it is moved aside and a fresh one started"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "the store's integrity check stopped"),
            }
        }
    });
}

impl Store {
    /// Reads the file on disk through ([`integrity_problem`]); when it is corrupt, notes it for
    /// [`Store::replace_if_corrupt`] and returns what is wrong.
    pub fn check_integrity(&self) -> Option<String> {
        let problem = integrity_problem(&self.path)?;
        *lock(&self.corrupt_found) = Some(problem.clone());
        Some(problem)
    }

    /// When [`Store::check_integrity`] found the file corrupt: closes it, moves it aside and
    /// starts a fresh database. Returns what happened, for the log and the alert.
    pub fn replace_if_corrupt(&self) -> anyhow::Result<Option<String>> {
        let Some(problem) = lock(&self.corrupt_found).take() else {
            return Ok(None);
        };
        let mut opened = lock(&self.opened);
        let mut conn = lock(&self.conn);
        drop(std::mem::replace(&mut *conn, Connection::open_in_memory()?));
        match open_or_move_aside(&self.path) {
            Ok((fresh, notice)) => {
                *conn = fresh;
                drop(conn);
                *opened = file_id(&self.path);
                Ok(Some(match notice {
                    Some(notice) => format!("found while medic runs: {notice}"),
                    None => format!(
                        "the state database {} read as corrupt while medic runs ({problem}) but \
                         reads cleanly after reopening; it is kept",
                        self.path.display()
                    ),
                }))
            }
            Err(e) => {
                // No fresh file could be made: go on with the old one (its failing writes are
                // reported; an in-memory stand-in would hide the fault) and try again at the
                // next heartbeat.
                *lock(&self.corrupt_found) = Some(problem);
                if let Ok(old) = open_connection(&self.path) {
                    *conn = old;
                }
                Err(e)
            }
        }
    }
    /// What was done at open about a corrupt database, once (for the alert).
    pub fn take_corrupt_notice(&self) -> Option<String> {
        lock(&self.corrupt_notice).take()
    }

    /// When the path no longer names the file the connection has open (deleted, replaced, or a
    /// filesystem mounted over the folder), opens the path again, creating a fresh database if
    /// none is there. Returns what happened when it did.
    pub fn reopen_if_replaced(&self) -> anyhow::Result<Option<String>> {
        let now = file_id(&self.path);
        let mut opened = lock(&self.opened);
        if now.is_some() && now == *opened {
            return Ok(None);
        }
        let what = match now {
            None => format!(
                "the state database {} was deleted while medic runs; a fresh one was created",
                self.path.display()
            ),
            Some(_) => format!(
                "the state database {} was replaced by another file while medic runs; medic \
                 now uses that file",
                self.path.display()
            ),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot recreate the data folder {}", dir.display()))?;
        }
        // The old connection is closed first (held locked meanwhile, so nothing writes in
        // between): as the file's last connection it checkpoints into the old file and removes
        // its write-ahead log, which a fresh database beside it must not pick up.
        let mut conn = lock(&self.conn);
        drop(std::mem::replace(&mut *conn, Connection::open_in_memory()?));
        if now.is_none() {
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(with_suffix(&self.path, suffix));
            }
        }
        let (fresh, notice) = open_or_move_aside(&self.path)?;
        *conn = fresh;
        drop(conn);
        *opened = file_id(&self.path);
        if let Some(notice) = notice {
            *lock(&self.corrupt_notice) = Some(notice);
        }
        Ok(Some(what))
    }

    /// Proves the store can still commit a write and its folder still take new data (for
    /// `/health`). SQLite alone can keep writing into the free room of its write-ahead log for
    /// a while on a full disk, so a small file is also written and removed beside it.
    pub fn check_writable(&self) -> anyhow::Result<()> {
        // The folder first: its error is the operating system's own ("No space left on
        // device", "Read-only file system"), where SQLite's says "disk I/O error".
        let probe = with_suffix(&self.path, ".write-check");
        let written = std::fs::write(&probe, [0u8; 4096]);
        let _ = std::fs::remove_file(&probe);
        written.with_context(|| {
            format!(
                "the data folder of {} cannot take new data",
                self.path.display()
            )
        })?;
        let conn = self.conn();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS liveness (id INTEGER PRIMARY KEY, at TEXT);
             INSERT INTO liveness (id, at) VALUES (1, datetime('now'))
             ON CONFLICT(id) DO UPDATE SET at = excluded.at;",
        )
        .with_context(|| format!("the state database {} is not writable", self.path.display()))?;
        Ok(())
    }

    /// Writes the restarts that could not be recorded while the store failed; returns how many.
    pub fn write_unrecorded_restarts(&self) -> anyhow::Result<usize> {
        let pending = std::mem::take(&mut *lock(&self.unrecorded_restarts));
        let n = pending.len();
        for (i, record) in pending.iter().enumerate() {
            if let Err(e) = self.insert_restart(record) {
                lock(&self.unrecorded_restarts).extend(pending[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(n)
    }

    /// How many restarts wait to be recorded.
    pub fn unrecorded_restarts(&self) -> usize {
        lock(&self.unrecorded_restarts).len()
    }

    /// Notes whether a fault of the store is known (reported), so each failing write need not
    /// log at ERROR again.
    pub fn set_fault_known(&self, known: bool) {
        self.fault_known.store(known, Ordering::Relaxed);
    }

    /// True while a fault of the store is known and reported.
    pub fn fault_known(&self) -> bool {
        self.fault_known.load(Ordering::Relaxed)
    }
}

/// Something about the store the supervisor must act on (log, `/health`, alert, write back).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// The store stopped taking writes: ERROR log, `/health` 503 with this reason.
    Failed(String),
    /// It takes writes again after failing since `since` for `reason`: the supervisor writes
    /// its state back and alerts.
    Writable {
        /// When the fault was first seen.
        since: chrono::DateTime<chrono::Utc>,
        /// The first error seen.
        reason: String,
    },
    /// The database was lost and a fresh one is in use (corrupt at start, deleted or replaced
    /// while running): the supervisor writes its state back and alerts.
    Lost(String),
}

/// Follows the store's health from one heartbeat to the next.
#[derive(Debug, Default)]
pub struct StoreWatch {
    /// The ongoing fault: since when, and the first error.
    fault: Option<(chrono::DateTime<chrono::Utc>, String)>,
}

impl StoreWatch {
    /// One look at the store at `now`: reopens a replaced file, proves a write, and says what
    /// changed since the last look.
    pub fn step(&mut self, store: &Store, now: chrono::DateTime<chrono::Utc>) -> Vec<StoreEvent> {
        let mut events = Vec::new();
        if let Some(notice) = store.take_corrupt_notice() {
            events.push(StoreEvent::Lost(notice));
        }
        let reopened = store.reopen_if_replaced();
        if let Ok(Some(what)) = &reopened {
            match &mut self.fault {
                // Part of the ongoing fault (e.g. the disk mounted again): told with its end.
                Some((_, reason)) => reason.push_str(&format!("; then {what}")),
                None => events.push(StoreEvent::Lost(what.clone())),
            }
        }
        if let Some(notice) = store.take_corrupt_notice() {
            events.push(StoreEvent::Lost(notice));
        }
        let replaced = store.replace_if_corrupt();
        if let Ok(Some(what)) = &replaced {
            match &mut self.fault {
                Some((_, reason)) => reason.push_str(&format!("; then {what}")),
                None => events.push(StoreEvent::Lost(what.clone())),
            }
        }
        let writable = reopened
            .and(replaced.map(|_| ()))
            .and_then(|_| store.check_writable());
        match (writable, &self.fault) {
            (Err(e), None) => {
                let reason = format!("{e:#}");
                self.fault = Some((now, reason.clone()));
                store.set_fault_known(true);
                events.push(StoreEvent::Failed(reason));
            }
            (Err(_), Some(_)) | (Ok(()), None) => {}
            (Ok(()), Some((since, reason))) => {
                events.push(StoreEvent::Writable {
                    since: *since,
                    reason: reason.clone(),
                });
                self.fault = None;
                store.set_fault_known(false);
            }
        }
        events
    }

    /// The ongoing fault's reason, if any.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_ref().map(|(_, r)| r.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RestartRecord;

    #[test]
    fn a_corrupt_file_is_moved_aside_and_a_fresh_store_started() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("medic.db");
        std::fs::write(
            &db,
            b"this is not an SQLite database, just garbage bytes".repeat(200),
        )
        .unwrap();
        std::fs::write(dir.path().join("medic.db-wal"), b"stale log").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let notice = store.take_corrupt_notice().expect("a notice");
        assert!(notice.contains("moved aside"), "{notice}");
        assert!(store.take_corrupt_notice().is_none());
        store.check_writable().unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let aside = names
            .iter()
            .find(|n| n.starts_with("medic.db.corrupt-") && !n.ends_with("-wal"))
            .unwrap_or_else(|| panic!("{names:?}"));
        assert!(notice.contains(aside.as_str()), "{notice}");
        // The stale log is not the fresh store's (SQLite may have dropped it as invalid, or it
        // was moved aside with the file).
        let wal = std::fs::read(dir.path().join("medic.db-wal")).unwrap_or_default();
        assert!(!wal.starts_with(b"stale log"), "{names:?}");
        // The garbage is kept as it was.
        let kept = std::fs::read(dir.path().join(aside)).unwrap();
        assert!(kept.starts_with(b"this is not an SQLite database"));
    }

    #[test]
    fn a_file_turned_corrupt_while_open_is_found_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.check_writable().unwrap();
        assert_eq!(store.check_integrity(), None);
        assert!(store.replace_if_corrupt().unwrap().is_none());
        // As after medic has run a while: the pages live in the file, not only in its log.
        store
            .conn()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        // A failing disk or a stray write: every byte of the file on disk replaced while
        // medic's connection holds it open.
        let db = dir.path().join("medic.db");
        let len = std::fs::metadata(&db).unwrap().len() as usize;
        std::fs::write(&db, b"garbage!".repeat(len / 8 + 1)).unwrap();
        let problem = store.check_integrity().expect("corruption found");
        assert!(!problem.is_empty());
        let what = store.replace_if_corrupt().unwrap().expect("moved aside");
        assert!(what.contains("while medic runs"), "{what}");
        assert!(what.contains("moved aside"), "{what}");
        assert!(store.replace_if_corrupt().unwrap().is_none());
        store.check_writable().unwrap();
        assert_eq!(store.check_integrity(), None);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("medic.db.corrupt-") && !n.ends_with("-wal"))
            .expect("the corrupt file kept");
        let kept = std::fs::read(dir.path().join(aside)).unwrap();
        assert!(kept.starts_with(b"garbage!"));
    }

    #[test]
    fn a_healthy_store_is_not_moved() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let store = Store::open(dir.path()).unwrap();
        assert!(store.take_corrupt_notice().is_none());
    }

    #[test]
    fn a_deleted_file_is_noticed_and_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.reopen_if_replaced().unwrap().is_none());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("medic.db{suffix}")));
        }
        let what = store.reopen_if_replaced().unwrap().expect("noticed");
        assert!(what.contains("deleted"), "{what}");
        assert!(dir.path().join("medic.db").exists());
        store.check_writable().unwrap();
        assert!(store.reopen_if_replaced().unwrap().is_none());
    }

    /// The watch reports a fault once, however many heartbeats it lasts, and its end once.
    /// (The folder check is made to fail by a directory where its file goes: a real failing
    /// write, without mounts; tests/store_faults.rs makes real disks full and read-only.)
    #[test]
    fn a_fault_is_reported_once_and_its_end_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut watch = StoreWatch::default();
        let t = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(watch.step(&store, t).is_empty());
        let blocker = dir.path().join("medic.db.write-check");
        std::fs::create_dir(&blocker).unwrap();
        let events = watch.step(&store, t);
        assert!(
            matches!(&events[..], [StoreEvent::Failed(r)] if r.contains("cannot take new data")),
            "{events:?}"
        );
        assert!(store.fault_known());
        for i in 1..5 {
            let later = t + chrono::Duration::seconds(2 * i);
            assert!(watch.step(&store, later).is_empty());
            assert!(watch.fault().is_some());
        }
        std::fs::remove_dir(&blocker).unwrap();
        let events = watch.step(&store, t + chrono::Duration::seconds(10));
        assert!(
            matches!(&events[..], [StoreEvent::Writable { since, .. }] if *since == t),
            "{events:?}"
        );
        assert!(!store.fault_known());
        assert!(watch.fault().is_none());
        assert!(watch
            .step(&store, t + chrono::Duration::seconds(12))
            .is_empty());
    }

    #[test]
    fn an_unrecorded_restart_is_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        lock(&store.unrecorded_restarts).push(RestartRecord {
            at: t,
            service: "shop/web".into(),
            container: "shop-web-1".into(),
            reason: "unhealthy".into(),
            error: None,
        });
        assert_eq!(store.unrecorded_restarts(), 1);
        assert_eq!(store.write_unrecorded_restarts().unwrap(), 1);
        assert_eq!(store.unrecorded_restarts(), 0);
        assert_eq!(store.restarts_since("shop/web", t).unwrap().len(), 1);
    }
}
