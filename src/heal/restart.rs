//! One restart of one workload, on its own task, so restarts of different services run in
//! parallel while decisions about one service stay in order. It looks again before acting,
//! records the restart before the call, and reports back how it ended.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::decide::RestartResult;
use super::runner::Message;
use crate::config::parse_duration;
use crate::docker::{Denials, Engine, RunState, LABEL_STOP_TIMEOUT};
use crate::model::{ServiceKey, WorkloadId};
use crate::policy::Instant;
use crate::store::{RestartRecord, Store};

/// One restart, run on its own task.
pub(super) struct RestartTask {
    pub(super) engine: Arc<dyn Engine>,
    /// Calls a socket proxy denied: a denied restart is reported once, not on every attempt.
    pub(super) denials: Arc<Denials>,
    pub(super) store: Arc<Store>,
    pub(super) tx: mpsc::Sender<Message>,
    pub(super) service: ServiceKey,
    pub(super) container_id: String,
    pub(super) container_name: String,
    pub(super) reason: String,
    pub(super) default_stop_timeout: Duration,
    pub(super) default_grace: Duration,
    /// When the decision was made.
    pub(super) at: Instant,
    /// When Docker emitted the event that led here, for the reaction time.
    pub(super) event_nanos: Option<i64>,
}

impl RestartTask {
    pub(super) async fn run(self) {
        let result = self.restart().await;
        let _ = self
            .tx
            .send(Message::RestartDone {
                service: self.service.clone(),
                workload: WorkloadId::new(&self.container_id),
                result,
            })
            .await;
    }

    async fn restart(&self) -> RestartResult {
        // Look again right before acting: an operator may have stopped it meanwhile.
        let container = match self.engine.inspect(&self.container_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return RestartResult::Skipped("the container no longer exists".into()),
            Err(e) => {
                if !self.denials.report(&e) {
                    warn!(error = %e, "cannot inspect before restarting");
                }
                return RestartResult::Skipped(format!("cannot inspect it: {e}"));
            }
        };
        if container.state != RunState::Running {
            return RestartResult::Skipped(format!(
                "it is {:?}, not running; medic never starts a stopped container",
                container.state
            ));
        }
        let stop_timeout = match container.labels.get(LABEL_STOP_TIMEOUT) {
            Some(value) => match parse_duration(LABEL_STOP_TIMEOUT, value) {
                Ok(d) => d,
                Err(e) => {
                    error!(container = %self.container_name, "label {e}; using the container's own stop timeout");
                    container.stop_timeout.unwrap_or(self.default_stop_timeout)
                }
            },
            None => container.stop_timeout.unwrap_or(self.default_stop_timeout),
        };
        let grace = container.start_period.unwrap_or(self.default_grace);
        let record = RestartRecord {
            at: self.at,
            service: self.service.to_string(),
            container: self.container_name.clone(),
            reason: self.reason.clone(),
            error: None,
        };
        // Recorded before the call, so a crash right after still counts it against the budget.
        // When the store cannot take it, the restart is made all the same: healing must not
        // stop because the disk is full or read-only. The supervisor's budget in memory still
        // counts it, and the record is written once the store works again; only a crash of
        // medic before then forgets it.
        let row = self.store.record_restart(&record);
        if let Err(e) = &row {
            error!(
                error = %format!("{e:#}"),
                "restart not recorded: the state store failed; restarting anyway, the record is kept in memory and written when the store takes writes again"
            );
        }
        let reaction_ms = self
            .event_nanos
            .map(|n| (Utc::now().timestamp_nanos_opt().unwrap_or(n) - n) as f64 / 1e6);
        info!(
            reason = %self.reason,
            stop_timeout = %humantime::format_duration(stop_timeout),
            grace = %humantime::format_duration(grace),
            reaction_ms,
            "restarting"
        );
        match self.engine.restart(&self.container_id, stop_timeout).await {
            Ok(()) => {
                info!("restarted");
                RestartResult::Restarted { grace }
            }
            Err(e) => {
                // A denied restart still counts as an attempt (cooldown and budget apply), so
                // medic does not retry it hot; the denial itself is logged once per endpoint.
                if !self.denials.report(&e) {
                    error!(error = %e, "restart failed");
                }
                if let Ok(id) = row {
                    let _ = self.store.restart_failed(id, &e.to_string());
                }
                RestartResult::Failed(e.to_string())
            }
        }
    }
}
