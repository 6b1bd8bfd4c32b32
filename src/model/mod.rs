//! The names medic's modules share: a component, a service's restart key, a check's key and
//! the kinds of history lines. Each was a string built in one module and matched in another;
//! here each is built in one place. They are stored as the same strings as before, so the
//! store, the API and the status page read what they always read.
//!
//! Nothing here imports from above it: every layer may use these types.

use std::fmt;

/// A component: what the status page shows one line for, the compose service of a container
/// (else its name), or the component a probe names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId(String);

/// The key restart state is kept under: `project/service`, or the component alone for a
/// workload of no project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey(String);

/// The key a check's failure tally is kept under: `docker:<container name>` for a container's
/// own HEALTHCHECK, `probe:<probe name>` for a probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckKey(String);

/// A workload medic can observe and restart, by the engine's id: a container today, a Swarm
/// service tomorrow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadId(String);

impl WorkloadId {
    /// The workload the engine knows by `id`.
    pub fn new(id: impl Into<String>) -> WorkloadId {
        WorkloadId(id.into())
    }

    /// The engine's id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ComponentId {
    /// The component named `name`.
    pub fn new(name: impl Into<String>) -> ComponentId {
        ComponentId(name.into())
    }

    /// The name as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ServiceKey {
    /// The service `component` of compose project `project`, or the lone component.
    pub fn new(project: Option<&str>, component: &str) -> ServiceKey {
        match project {
            Some(p) => ServiceKey(format!("{p}/{component}")),
            None => ServiceKey(component.to_string()),
        }
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl CheckKey {
    /// The check of a container's own HEALTHCHECK.
    pub fn docker(container_name: &str) -> CheckKey {
        CheckKey(format!("docker:{container_name}"))
    }

    /// The check of a probe.
    pub fn probe(probe_name: &str) -> CheckKey {
        CheckKey(format!("probe:{probe_name}"))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    )*};
}
display_as_str!(ComponentId, ServiceKey, CheckKey, HistoryKind, WorkloadId);

/// What a line of history records. Stored as the text [`HistoryKind::as_str`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryKind {
    /// Docker reports the container unhealthy.
    Unhealthy,
    /// A probe failed.
    ProbeFailed,
    /// A check passes again.
    Recovered,
    /// A CRITICAL alert was raised.
    AlertCritical,
    /// A RECOVERED alert was raised.
    AlertRecovered,
    /// A GAVE UP alert was raised.
    AlertGaveUp,
    /// An alert was held back (rate limit or silence).
    AlertHeld,
    /// A restart was called for and held, with the reason.
    Held,
    /// The restart budget is spent.
    GaveUp,
    /// The engine refused or failed a restart.
    RestartFailed,
    /// An operator stopped, killed or removed a container.
    OperatorStop,
    /// The kernel killed a process of the container for memory.
    Oom,
    /// A person silenced the component.
    Silenced,
    /// A person lifted the silence.
    Unsilenced,
}

impl HistoryKind {
    /// Every kind, for parsing.
    pub const ALL: [HistoryKind; 14] = [
        HistoryKind::Unhealthy,
        HistoryKind::ProbeFailed,
        HistoryKind::Recovered,
        HistoryKind::AlertCritical,
        HistoryKind::AlertRecovered,
        HistoryKind::AlertGaveUp,
        HistoryKind::AlertHeld,
        HistoryKind::Held,
        HistoryKind::GaveUp,
        HistoryKind::RestartFailed,
        HistoryKind::OperatorStop,
        HistoryKind::Oom,
        HistoryKind::Silenced,
        HistoryKind::Unsilenced,
    ];

    /// The text stored in the `history` table.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Unhealthy => "unhealthy",
            HistoryKind::ProbeFailed => "probe_failed",
            HistoryKind::Recovered => "recovered",
            HistoryKind::AlertCritical => "alert_critical",
            HistoryKind::AlertRecovered => "alert_recovered",
            HistoryKind::AlertGaveUp => "alert_gave_up",
            HistoryKind::AlertHeld => "alert_held",
            HistoryKind::Held => "held",
            HistoryKind::GaveUp => "gave_up",
            HistoryKind::RestartFailed => "restart_failed",
            HistoryKind::OperatorStop => "operator_stop",
            HistoryKind::Oom => "oom",
            HistoryKind::Silenced => "silenced",
            HistoryKind::Unsilenced => "unsilenced",
        }
    }

    /// The kind stored as `text`; `None` for text no version of medic wrote.
    pub fn parse(text: &str) -> Option<HistoryKind> {
        HistoryKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kinds that mean the component was failing (the status page's red cells).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            HistoryKind::Unhealthy
                | HistoryKind::ProbeFailed
                | HistoryKind::GaveUp
                | HistoryKind::RestartFailed
                | HistoryKind::Oom
                | HistoryKind::AlertCritical
                | HistoryKind::AlertGaveUp
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_kinds_round_trip_through_their_stored_text() {
        for kind in HistoryKind::ALL {
            assert_eq!(HistoryKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(HistoryKind::parse("restart"), None);
    }

    #[test]
    fn keys_are_stored_as_before() {
        assert_eq!(ServiceKey::new(Some("shop"), "web").as_str(), "shop/web");
        assert_eq!(ServiceKey::new(None, "solo").as_str(), "solo");
        assert_eq!(CheckKey::docker("shop-web-1").as_str(), "docker:shop-web-1");
        assert_eq!(CheckKey::probe("api").as_str(), "probe:api");
    }
}
