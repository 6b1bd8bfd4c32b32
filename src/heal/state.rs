//! What the healing step works on: its state ([`HealState`]), what it observes
//! ([`Observation`]), what it asks the loop to do ([`Effect`]), and the windows medic's own
//! restarts are recognised by. Plain data; the rules are in [`super::decide`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::HealingSettings;
use crate::docker::scope::Scope;
use crate::docker::{Container, EngineEvent, Health};
use crate::model::{CheckKey, ComponentId, HistoryKind, ServiceKey, WorkloadId};
use crate::notify::Alert;
use crate::policy::{CheckState, Instant, ServiceState};
use crate::probe::ProbeSpec;

/// How long after medic's own restart of a container finished its stop and kill events are
/// still taken for that restart's echo rather than an operator's. While the restart is under
/// way its events are the echo whatever their time.
pub const OWN_RESTART_ECHO: Duration = Duration::from_secs(15);

/// How long before its start medic looks for restarts of its own a crash may have interrupted,
/// and how long after it it still takes the engine's stop and kill events for their echo.
pub const INTERRUPTED_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The moment of a step: the wall time (persisted, shown) and the monotonic instant (for the
/// in-memory windows). Both are read by the loop, never here.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// The wall-clock time.
    pub wall: Instant,
    /// tokio's monotonic clock (paused in tests).
    pub mono: tokio::time::Instant,
}

/// A restart of a service in progress (one restart per workload).
#[derive(Debug, Clone)]
pub struct InFlight {
    /// The service state before the restart, restored if nothing was restarted.
    pub before: ServiceState,
    /// The component the service belongs to, for its history.
    pub component: ComponentId,
    /// The workloads being restarted: their stop and kill events are medic's own echo.
    pub workloads: Vec<WorkloadId>,
    /// Restarts not finished yet.
    pub remaining: usize,
    /// The longest grace among the workloads restarted so far.
    pub grace: Option<Duration>,
}

/// The health each container's last health event said, by container id. Podman sends an event
/// per healthcheck run, Docker one per change: only a change is acted on, so both engines heal
/// alike. A container's entry is forgotten when it starts, stops or goes away, and all are on a
/// reconnect, since the next health after that is news whatever it is.
#[derive(Debug, Default, Clone)]
pub struct HealthEvents(HashMap<String, Health>);

impl HealthEvents {
    /// Records what an event says of container `id`; true when it differs from the last one.
    pub fn changed(&mut self, id: &str, health: Health) -> bool {
        self.0.insert(id.to_string(), health) != Some(health)
    }

    /// The container started, stopped or went: its next health event is news.
    pub fn forget(&mut self, id: &str) {
        self.0.remove(id);
    }

    /// After a reconnect every health is news.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Everything the healing decisions remember.
#[derive(Debug, Clone)]
pub struct HealState {
    /// The healing policy.
    pub healing: HealingSettings,
    /// Which containers are medic's, once the watcher has discovered it.
    pub scope: Option<Scope>,
    /// Every watched container as last listed, to find the containers of a service.
    pub containers: Vec<Container>,
    /// Restart state per service (persisted).
    pub services: HashMap<String, ServiceState>,
    /// Failure tally per check (persisted).
    pub checks: HashMap<String, CheckState>,
    /// Silenced components and until when (persisted).
    pub silenced: HashMap<String, Instant>,
    /// Services with a restart under way.
    pub in_flight: HashMap<ServiceKey, InFlight>,
    /// Workloads medic restarted, and until when their stop/kill events are its own echo.
    pub own_restarts: HashMap<WorkloadId, tokio::time::Instant>,
    /// Container names medic restarted in the minute before it started, mapped to when their
    /// echo stops being expected: a restart a crash interrupted still makes the engine stop the
    /// container, and that must not look like an operator's stop.
    pub interrupted_restarts: HashMap<String, tokio::time::Instant>,
    /// Projects (or lone containers) an operator is stopping, and until when restarts wait.
    pub operator_holds: HashMap<String, Instant>,
    /// The last hold logged per service, so a steady hold is logged once.
    pub last_hold: HashMap<ServiceKey, &'static str>,
    /// What each container's last health event said.
    pub event_health: HealthEvents,
}

impl HealState {
    /// A state that knows only the policy and what the store kept.
    pub fn new(
        healing: HealingSettings,
        services: HashMap<String, ServiceState>,
        checks: HashMap<String, CheckState>,
        silenced: HashMap<String, Instant>,
    ) -> HealState {
        HealState {
            healing,
            scope: None,
            containers: Vec::new(),
            services,
            checks,
            silenced,
            in_flight: HashMap::new(),
            own_restarts: HashMap::new(),
            interrupted_restarts: HashMap::new(),
            operator_holds: HashMap::new(),
            last_hold: HashMap::new(),
            event_health: HealthEvents::default(),
        }
    }

    pub(super) fn in_scope(&self, id: &str, labels: &HashMap<String, String>) -> bool {
        self.scope
            .as_ref()
            .is_some_and(|scope| scope.contains(id, labels))
    }

    /// A check's tally; a check never seen has failed nothing.
    pub fn check(&self, key: &CheckKey) -> CheckState {
        self.checks.get(key.as_str()).cloned().unwrap_or_default()
    }

    /// A service's restart state; a service never restarted has a fresh one.
    pub fn service(&self, key: &ServiceKey) -> ServiceState {
        self.services.get(key.as_str()).cloned().unwrap_or_default()
    }

    /// Until when a person has silenced `component`, if they have.
    pub fn silenced_until(&self, component: &str, now: Instant) -> Option<Instant> {
        self.silenced.get(component).copied().filter(|u| *u > now)
    }

    /// True when a stop of workload `id` (named `name`) is medic's own restart's echo.
    pub(super) fn is_own_echo(&self, id: &str, name: &str, now: tokio::time::Instant) -> bool {
        let still = |until: &tokio::time::Instant| *until > now;
        self.own_restarts
            .get(&WorkloadId::new(id))
            .is_some_and(still)
            || self.interrupted_restarts.get(name).is_some_and(still)
            || self
                .in_flight
                .values()
                .any(|f| f.workloads.iter().any(|w| w.as_str() == id))
    }
}

/// A probe's run, as the step needs it.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    /// The probe as configured for this run.
    pub spec: Arc<ProbeSpec>,
    /// Why it failed; `None` when it passed.
    pub error: Option<String>,
    /// How long it took.
    pub latency: Duration,
}

/// How one workload's restart ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartResult {
    /// The engine restarted it; failures count again after `grace`.
    Restarted {
        /// The workload's own start period, else the default grace.
        grace: Duration,
    },
    /// Nothing was done, for this reason, and the budget slot is given back.
    Skipped(String),
    /// The engine refused or failed.
    Failed(String),
}

/// What happened, as the step sees it.
#[derive(Debug, Clone)]
pub enum Observation {
    /// The watcher discovered which containers are medic's.
    Scope(Option<Scope>),
    /// A container event.
    Event(EngineEvent),
    /// Every watched container, as listed just now.
    Snapshot(Vec<Container>),
    /// The engine is back after being unreachable.
    Reconnected,
    /// A probe ran.
    Probe(ProbeRun),
    /// One workload's restart finished.
    RestartDone {
        /// The service whose restart it was part of.
        service: ServiceKey,
        /// The workload.
        workload: WorkloadId,
        /// How it ended.
        result: RestartResult,
    },
    /// A person silenced a component (`None` lifts the silence).
    Silence {
        /// The component, known to exist.
        component: String,
        /// Until when.
        until: Option<Instant>,
    },
    /// The heartbeat: windows that ended are forgotten.
    Tick,
    /// The store takes writes again after failing since `since`; `late` restarts were written.
    StoreWritable {
        /// When it began to fail.
        since: Instant,
        /// Why it failed.
        reason: String,
        /// Restarts recorded late.
        late: usize,
    },
    /// The store was lost and replaced by a fresh one, to which the state was written.
    StoreLost {
        /// What happened.
        what: String,
        /// Restarts recorded late.
        late: usize,
    },
}

/// Restart these workloads of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartOrder {
    /// The service.
    pub service: ServiceKey,
    /// Its component.
    pub component: ComponentId,
    /// The workloads, by id and name.
    pub workloads: Vec<(WorkloadId, String)>,
    /// Why, for the restart record and the log.
    pub reason: String,
    /// When the decision was made.
    pub at: Instant,
    /// When the engine emitted the event that led here, for the reaction time.
    pub event_nanos: Option<i64>,
}

/// What the loop must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Persist a check's tally.
    SaveCheck(CheckKey, CheckState),
    /// Persist a service's restart state.
    SaveService(ServiceKey, ServiceState),
    /// Persist a silence (`None` lifts it).
    SaveSilence(String, Option<Instant>),
    /// Write a line of history.
    History {
        /// About which component.
        component: ComponentId,
        /// What kind of line.
        kind: HistoryKind,
        /// The line.
        message: String,
        /// When.
        at: Instant,
    },
    /// Keep this alert and hand it to the notifiers.
    Alert(Alert),
    /// An alert was not sent because the component is silenced (for the metrics).
    AlertHeld(ComponentId, HistoryKind),
    /// Start these restarts.
    Restart(RestartOrder),
    /// The watched containers changed: the label probes are read again.
    RefreshProbes,
    /// Publish the views now rather than soon (a person's command is shown at once).
    PublishNow,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_of_health_are_news() {
        let mut seen = HealthEvents::default();
        // Podman: one event per healthcheck run.
        let runs = [
            (Health::Starting, true),
            (Health::Healthy, true),
            (Health::Healthy, false),
            (Health::Healthy, false),
            (Health::Unhealthy, true),
            (Health::Unhealthy, false),
        ];
        for (i, (health, news)) in runs.into_iter().enumerate() {
            assert_eq!(seen.changed("a", health), news, "run {i}: {health:?}");
        }
        // Another container has its own history.
        assert!(seen.changed("b", Health::Unhealthy));
        // Restarted and unhealthy again without passing through healthy (Docker sends exactly
        // this): news, since the container started in between.
        seen.forget("a");
        assert!(seen.changed("a", Health::Unhealthy));
        seen.clear();
        assert!(seen.changed("b", Health::Unhealthy));
    }
}
