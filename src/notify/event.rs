//! What the supervisor tells the notifiers: one [`Alert`] per thing a person should hear about.
//!
//! The supervisor decides *that* something happened (a component broke, recovered, or medic
//! gave up on it) and what it did about it; rate limits, grouping into one email per round,
//! the outbox and rendering are the notifiers' business.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The kinds of alert of SPEC "Alerts and the daily report".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A check reached its failure threshold: `🚨 CRITICAL`.
    Critical,
    /// A component that was critical passes again: `✅ RECOVERED`.
    Recovered,
    /// The restart budget is spent: `⛔ GAVE UP`.
    GaveUp,
}

/// One thing to tell people about one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What kind of alert.
    pub kind: AlertKind,
    /// The component (compose service, or container name).
    pub component: String,
    /// The check that decided it: `docker` for the container's own HEALTHCHECK, else the probe's
    /// name.
    pub check: String,
    /// The check's type: `docker`, or the probe type (`upload`, `mongodb`, ...), so a message
    /// can recommend actions that fit.
    pub check_type: String,
    /// The component's status in a few words (`unhealthy`, `failing`, `healthy`).
    pub status: String,
    /// The error details, when failing.
    pub error: Option<String>,
    /// Consecutive failures when raised.
    pub consecutive_failures: u32,
    /// What medic did about it: the restart, or why it did not restart.
    pub action: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

#[cfg(test)]
impl Alert {
    /// A CRITICAL-shaped alert about `web`'s Docker health check, for tests.
    pub(crate) fn sample(kind: AlertKind, at: DateTime<Utc>, action: &str) -> Alert {
        Alert {
            kind,
            component: "web".into(),
            check: "docker".into(),
            check_type: "docker".into(),
            status: "unhealthy".into(),
            error: Some("down".into()),
            consecutive_failures: 1,
            action: action.into(),
            at,
        }
    }
}
