//! What medic knows about itself right now, shared between its loops and the HTTP server.
//!
//! The loops write; the HTTP handlers only read, so `/health` never waits on Docker or the store.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use crate::policy::Instant;

/// The engine connection as last seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DockerStatus {
    /// True while the engine answers.
    pub reachable: bool,
    /// The engine's version, once known.
    pub version: Option<String>,
    /// The negotiated API version, once known.
    pub api_version: Option<String>,
    /// The last connection error.
    pub error: Option<String>,
}

/// Live facts about the running daemon.
pub struct Status {
    /// When the daemon started.
    pub started_at: Instant,
    /// The supervisor's last heartbeat, in milliseconds since the epoch.
    heartbeat_ms: AtomicI64,
    /// How long without a heartbeat before the loop counts as stalled.
    pub stall_after: Duration,
    /// `None` while the store accepts writes, else the error.
    store_error: RwLock<Option<String>>,
    /// The engine connection.
    docker: RwLock<DockerStatus>,
    /// The compose project being watched, once discovered.
    project: RwLock<Option<String>>,
}

impl Status {
    /// A fresh status; the loop counts as stalled after `stall_after` without a heartbeat.
    pub fn new(stall_after: Duration) -> Status {
        let now = Utc::now();
        Status {
            started_at: now,
            heartbeat_ms: AtomicI64::new(now.timestamp_millis()),
            stall_after,
            store_error: RwLock::new(None),
            docker: RwLock::new(DockerStatus::default()),
            project: RwLock::new(None),
        }
    }

    /// The supervisor is alive.
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Why medic itself is not healthy, if it is not.
    pub fn problem(&self) -> Option<String> {
        let since_beat = Utc::now().timestamp_millis() - self.heartbeat_ms.load(Ordering::Relaxed);
        if since_beat > self.stall_after.as_millis() as i64 {
            return Some(format!(
                "medic's supervisor loop has stalled: no heartbeat for {}s",
                since_beat / 1000
            ));
        }
        read(&self.store_error)
            .as_ref()
            .map(|e| format!("the state store is not writable: {e}"))
    }

    /// Records whether the store accepted its last write check.
    pub fn set_store_error(&self, error: Option<String>) {
        *write(&self.store_error) = error;
    }

    /// The engine connection as last seen.
    pub fn docker(&self) -> DockerStatus {
        read(&self.docker).clone()
    }

    /// Updates the engine connection.
    pub fn set_docker(&self, docker: DockerStatus) {
        *write(&self.docker) = docker;
    }

    /// The watched compose project.
    pub fn project(&self) -> Option<String> {
        read(&self.project).clone()
    }

    /// Sets the watched compose project.
    pub fn set_project(&self, project: Option<String>) {
        *write(&self.project) = project;
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}
