//! Every healing decision, as one pure step: `step(state, observation, now)` updates the state
//! and returns the effects to carry out, in order. The rules, in the order a newcomer meets them:
//!
//! - a check alerts exactly when its run of failures reaches the threshold (once per outage),
//!   and a RECOVERED follows only an outage that alerted;
//! - a container Docker reports unhealthy comes with threshold 1 (Docker counted its retries);
//! - a probe restarts the services its `restart:` names, in its own project;
//! - stop/kill/destroy events are an operator's (and hold restarts of the project), except the
//!   echo of medic's own restarts: while one is under way, for [`OWN_RESTART_ECHO`] after it,
//!   and restarts a crash interrupted just before medic started;
//! - silences, opt-outs, operator holds, grace, cooldown and the budget (`policy::decide_restart`)
//!   hold a restart; a restart that made nothing gives its budget slot back;
//! - the store's faults are told in one email when they are over.
//!
//! Nothing here does I/O or reads a clock: `now` is passed in. The loop around it
//! ([`super::runner`]) turns what happens into [`Observation`]s and carries out the [`Effect`]s.

use std::time::Duration;

use tracing::{debug, error, info, warn};

pub use super::state::{
    Effect, HealState, InFlight, Now, Observation, ProbeRun, RestartOrder, RestartResult,
    INTERRUPTED_RESTART_WINDOW, OWN_RESTART_ECHO,
};
use super::targets::{container_from_event, hold_key, restart_targets, service_key};
use crate::docker::{Container, EngineEvent, EventKind, Health, RunState};
use crate::model::{CheckKey, ComponentId, HistoryKind, ServiceKey, WorkloadId};
use crate::notify::{Alert, AlertKind};
use crate::policy::{
    decide_restart, record_check, restarted, CheckVerdict, Decision, HoldReason, Instant, Outcome,
    RestartContext, ServiceState,
};
use crate::probe::ProbeSpec;

/// Runs one observation through the healing rules.
pub fn step(state: &mut HealState, observation: Observation, now: Now) -> Vec<Effect> {
    let mut step = Step {
        state,
        now,
        effects: Vec::new(),
    };
    match observation {
        Observation::Scope(scope) => step.state.scope = scope,
        Observation::Event(event) => step.on_event(event),
        Observation::Snapshot(list) => step.on_snapshot(list),
        Observation::Reconnected => step.on_reconnected(),
        Observation::Probe(run) => step.on_probe(run),
        Observation::RestartDone {
            service,
            workload,
            result,
        } => step.on_restart_done(service, workload, result),
        Observation::Silence { component, until } => step.on_silence(component, until),
        Observation::Tick => step.on_tick(),
        Observation::StoreWritable {
            since,
            reason,
            late,
        } => {
            let down = (now.wall - since).num_seconds();
            warn!(
                down_for_s = down,
                restarts_recorded_late = late,
                "the state store takes writes again; medic's state was written back"
            );
            step.store_alert(
                since,
                format!("the state store could not be written for {down}s: {reason}"),
                format!(
                    "healing went on with medic's state kept in memory; it was written back when the store took writes again{}",
                    recorded_late(late)
                ),
            );
        }
        Observation::StoreLost { what, late } => step.store_alert(
            now.wall,
            what,
            format!(
                "healing goes on; medic's current state (failure counts, restart budgets, silences) was written to the fresh store{}",
                recorded_late(late)
            ),
        ),
    }
    step.effects
}

/// `; 2 restarts made meanwhile were recorded late`, or nothing.
fn recorded_late(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "; 1 restart made meanwhile was recorded late".into(),
        n => format!("; {n} restarts made meanwhile were recorded late"),
    }
}

/// What an alert is about: every [`Alert`] is built here.
struct Subject {
    component: String,
    check: String,
    check_type: String,
}

impl Subject {
    fn docker(container: &Container) -> Subject {
        Subject {
            component: container.component(),
            check: "docker".into(),
            check_type: "docker".into(),
        }
    }

    fn probe(spec: &ProbeSpec) -> Subject {
        Subject {
            component: spec.component.clone(),
            check: spec.name.clone(),
            check_type: spec.kind.type_name().into(),
        }
    }

    /// A whole service, for GAVE UP: no one check decided it.
    fn service(component: &ComponentId) -> Subject {
        Subject {
            component: component.to_string(),
            check: String::new(),
            check_type: String::new(),
        }
    }

    fn store() -> Subject {
        Subject {
            component: "medic".into(),
            check: "store".into(),
            check_type: "store".into(),
        }
    }

    fn alert(
        &self,
        kind: AlertKind,
        status: &str,
        error: Option<String>,
        consecutive_failures: u32,
        action: String,
        at: Instant,
    ) -> Alert {
        Alert {
            kind,
            component: self.component.clone(),
            check: self.check.clone(),
            check_type: self.check_type.clone(),
            status: status.into(),
            error,
            consecutive_failures,
            action,
            at,
        }
    }

    fn recovered(&self, action: String, at: Instant) -> Alert {
        self.alert(AlertKind::Recovered, "healthy", None, 0, action, at)
    }
}

struct Step<'a> {
    state: &'a mut HealState,
    now: Now,
    effects: Vec<Effect>,
}

impl Step<'_> {
    fn history(&mut self, component: &str, kind: HistoryKind, message: String) {
        self.effects.push(Effect::History {
            component: ComponentId::new(component),
            kind,
            message,
            at: self.now.wall,
        });
    }

    fn save_service(&mut self, key: &ServiceKey, state: ServiceState) {
        self.effects
            .push(Effect::SaveService(key.clone(), state.clone()));
        self.state.services.insert(key.as_str().to_string(), state);
    }

    /// Raises an alert: kept in history either way, sent unless the component is silenced.
    fn alert(&mut self, alert: Alert) {
        let kind = match alert.kind {
            AlertKind::Critical => HistoryKind::AlertCritical,
            AlertKind::Recovered => HistoryKind::AlertRecovered,
            AlertKind::GaveUp => HistoryKind::AlertGaveUp,
        };
        self.history(&alert.component, kind, alert.action.clone());
        if let Some(until) = self.state.silenced_until(&alert.component, self.now.wall) {
            info!(component = %alert.component, %until, "alert not sent: the component is silenced");
            self.effects
                .push(Effect::AlertHeld(ComponentId::new(&alert.component), kind));
            return;
        }
        self.effects.push(Effect::Alert(alert));
    }

    fn on_event(&mut self, event: EngineEvent) {
        if !self.state.in_scope(&event.id, &event.attributes) {
            return;
        }
        let name = event.name().to_string();
        let component = crate::docker::component_of(&event.attributes, &name);
        let span = tracing::info_span!("event", %component, container = %name);
        let _enter = span.enter();
        if let EventKind::Health(health) = &event.kind {
            if !self.state.event_health.changed(&event.id, *health) {
                debug!(health = ?health, "health unchanged: nothing to do");
                return;
            }
        }
        if matches!(
            event.kind,
            EventKind::Start
                | EventKind::Die
                | EventKind::Stop
                | EventKind::Kill
                | EventKind::Destroy
        ) {
            self.state.event_health.forget(&event.id);
        }
        match &event.kind {
            EventKind::Health(Health::Unhealthy) => {
                let container = container_from_event(&event);
                self.observe_docker_health(&container, Some(event.time_nanos));
            }
            EventKind::Health(Health::Healthy) => {
                let container = container_from_event(&event);
                self.observe_docker_health(&container, None);
            }
            EventKind::Stop | EventKind::Kill | EventKind::Destroy => {
                if self.state.is_own_echo(&event.id, &name, self.now.mono) {
                    debug!(action = %event.kind, "echo of medic's own restart");
                    return;
                }
                let key = hold_key(&event.attributes, &name);
                let until = self.now.wall
                    + chrono::Duration::from_std(self.state.healing.operator_hold)
                        .unwrap_or(chrono::Duration::zero());
                if self
                    .state
                    .operator_holds
                    .insert(key.clone(), until)
                    .is_none()
                {
                    info!(
                        action = %event.kind,
                        hold_until = %until,
                        "stopped by an operator: medic will not start it, and holds restarts in {key}"
                    );
                }
                self.history(
                    &component,
                    HistoryKind::OperatorStop,
                    format!("{name}: {:?} by an operator", event.kind),
                );
            }
            EventKind::Die => {
                let code = event
                    .attributes
                    .get("exitCode")
                    .cloned()
                    .unwrap_or_default();
                debug!(exit_code = %code, "container exited");
            }
            EventKind::Oom => {
                warn!("container ran out of memory");
                self.history(
                    &component,
                    HistoryKind::Oom,
                    format!("{name} ran out of memory"),
                );
            }
            _ => {}
        }
    }

    /// A restart of the engine stops every container with kill and stop events that look like
    /// an operator's. Containers stopped then stay stopped anyway (medic never starts one), so
    /// the holds are lifted and what came back broken can be healed.
    fn on_reconnected(&mut self) {
        self.state.event_health.clear();
        if !self.state.operator_holds.is_empty() {
            info!("the engine restarted: lifting holds set while it was shutting down");
            self.state.operator_holds.clear();
        }
    }

    fn on_snapshot(&mut self, containers: Vec<Container>) {
        let watched: Vec<Container> = containers
            .into_iter()
            .filter(|c| self.state.in_scope(&c.id, &c.labels))
            .collect();
        self.state.containers = watched.clone();
        self.effects.push(Effect::RefreshProbes);
        for container in watched {
            if container.state != RunState::Running {
                continue;
            }
            if matches!(container.health, Health::Unhealthy | Health::Healthy) {
                let span = tracing::info_span!("reconcile", component = %container.component(), container = %container.name);
                let _enter = span.enter();
                self.observe_docker_health(&container, None);
            }
        }
    }

    fn on_tick(&mut self) {
        let (mono, wall) = (self.now.mono, self.now.wall);
        self.state.own_restarts.retain(|_, until| *until > mono);
        self.state
            .interrupted_restarts
            .retain(|_, until| *until > mono);
        self.state.operator_holds.retain(|_, until| *until > wall);
    }

    fn on_silence(&mut self, component: String, until: Option<Instant>) {
        self.effects
            .push(Effect::SaveSilence(component.clone(), until));
        match until {
            Some(until) => {
                info!(%component, %until, "silenced by an operator");
                self.history(
                    &component,
                    HistoryKind::Silenced,
                    format!("silenced until {until}"),
                );
                self.state.silenced.insert(component, until);
            }
            None => {
                info!(%component, "silence lifted by an operator");
                self.history(&component, HistoryKind::Unsilenced, "silence lifted".into());
                self.state.silenced.remove(&component);
            }
        }
        self.effects.push(Effect::PublishNow);
    }

    /// One email about the store: a CRITICAL saying what went wrong and what medic did, and
    /// the RECOVERED that closes it, raised together so they go out as one message (the fault
    /// is over by the time an email can be kept in the store at all).
    fn store_alert(&mut self, since: Instant, error: String, action: String) {
        let subject = Subject::store();
        let critical = subject.alert(
            AlertKind::Critical,
            "state store failed",
            Some(error),
            0,
            action,
            since,
        );
        self.alert(critical);
        let recovered =
            subject.recovered("the state store takes writes again".into(), self.now.wall);
        self.alert(recovered);
    }

    /// Feeds a probe result into the policy; restarts the services it names at its threshold.
    fn on_probe(&mut self, run: ProbeRun) {
        let spec = &run.spec;
        let now = self.now.wall;
        let span = tracing::info_span!("probe", probe = %spec.name, component = %spec.component);
        let _enter = span.enter();
        let (targets, refused) = restart_targets(
            spec,
            &self.state.containers,
            self.state.scope.as_ref().and_then(|s| s.project.as_deref()),
        );
        let in_grace = targets.iter().any(|(key, _)| {
            self.state
                .services
                .get(key.as_str())
                .is_some_and(|s| s.in_grace(now))
        });
        let outcome = match &run.error {
            None => Outcome::Pass,
            Some(e) => Outcome::Fail(e.clone()),
        };
        let threshold = spec
            .failure_threshold
            .unwrap_or(self.state.healing.failure_threshold);
        let check_key = CheckKey::probe(&spec.name);
        let before = self.state.check(&check_key);
        let (check, verdict) = record_check(&before, &outcome, now, threshold, in_grace);
        self.state
            .checks
            .insert(check_key.to_string(), check.clone());
        let error = run.error.clone().unwrap_or_default();
        let subject = Subject::probe(spec);
        match verdict {
            CheckVerdict::Passed { recovered: true } => {
                info!(
                    latency_ms = run.latency.as_millis() as u64,
                    "probe passes again"
                );
                let message = format!("probe {} passes again", spec.name);
                if before.consecutive_failures >= threshold {
                    self.alert(subject.recovered(message.clone(), now));
                }
                self.history(&spec.component, HistoryKind::Recovered, message);
                for (key, _) in &targets {
                    let gave_up = self.state.services.get(key.as_str()).filter(|s| s.gave_up);
                    if let Some(next) = gave_up.map(ServiceState::recovered) {
                        self.save_service(key, next);
                    }
                }
            }
            CheckVerdict::Passed { recovered: false } => {}
            CheckVerdict::IgnoredInGrace => {
                debug!(%error, "probe failed during the grace after a restart")
            }
            CheckVerdict::Failing { consecutive } => {
                warn!(consecutive, threshold, %error, "probe failed");
                self.history(
                    &spec.component,
                    HistoryKind::ProbeFailed,
                    format!("probe {}: {error}", spec.name),
                );
            }
            CheckVerdict::ThresholdReached { consecutive } => {
                warn!(consecutive, threshold, %error, "probe failed: threshold reached");
                self.history(
                    &spec.component,
                    HistoryKind::ProbeFailed,
                    format!("probe {}: {error}", spec.name),
                );
                let reason = format!(
                    "probe {} failed {consecutive} times in a row: {error}",
                    spec.name
                );
                let action = if spec.restart.is_empty() {
                    "none: this probe only alerts".to_string()
                } else if let Some(refused) = &refused {
                    warn!(services = ?spec.restart, "{refused}");
                    format!("not restarted: {refused}")
                } else if targets.is_empty() {
                    warn!(services = %spec.restart.join(","), "no running watched container of the services to restart");
                    format!(
                        "not restarted: no running watched container of {}",
                        spec.restart.join(", ")
                    )
                } else {
                    let mut actions = Vec::new();
                    for (key, containers) in targets {
                        actions.push(self.consider_restart(&key, &containers, &reason, None));
                    }
                    actions.join("; ")
                };
                if consecutive == threshold {
                    self.alert(subject.alert(
                        AlertKind::Critical,
                        "failing",
                        Some(error.clone()),
                        consecutive,
                        action,
                        now,
                    ));
                }
            }
        }
        // Saved after the alert above is kept: a crash in between then raises it again on the
        // next run (the rate limit absorbs a repeat) instead of losing it.
        self.effects.push(Effect::SaveCheck(check_key, check));
    }

    /// Feeds a container's Docker health into the policy and acts on the verdict.
    fn observe_docker_health(&mut self, container: &Container, event_nanos: Option<i64>) {
        let now = self.now.wall;
        let service = service_key(container);
        let check_key = CheckKey::docker(&container.name);
        let outcome = match container.health {
            Health::Unhealthy => Outcome::Fail("Docker reports the container unhealthy".into()),
            _ => Outcome::Pass,
        };
        let service_state = self.state.service(&service);
        let in_grace = service_state.in_grace(now);
        let before = self.state.check(&check_key);
        // Docker has already counted its own healthcheck retries: unhealthy is the threshold.
        let (check, verdict) = record_check(&before, &outcome, now, 1, in_grace);
        // Saved after the alerts below are kept (see on_probe).
        let saved = (check != before).then(|| Effect::SaveCheck(check_key.clone(), check.clone()));
        self.state.checks.insert(check_key.to_string(), check);
        let subject = Subject::docker(container);
        match verdict {
            CheckVerdict::Passed { recovered: true } => {
                info!("healthy again");
                let message = format!("{} is healthy again", container.name);
                self.alert(subject.recovered(message.clone(), now));
                self.history(&subject.component, HistoryKind::Recovered, message);
                if service_state.gave_up {
                    self.save_service(&service, service_state.recovered());
                }
                self.state.last_hold.remove(&service);
            }
            CheckVerdict::Passed { recovered: false } | CheckVerdict::Failing { .. } => {}
            CheckVerdict::IgnoredInGrace => debug!("unhealthy during the grace after a restart"),
            CheckVerdict::ThresholdReached { consecutive } => {
                if consecutive == 1 {
                    warn!("Docker reports the container unhealthy");
                    self.history(
                        &subject.component,
                        HistoryKind::Unhealthy,
                        format!("{} is unhealthy", container.name),
                    );
                }
                let action = self.consider_restart(
                    &service,
                    std::slice::from_ref(container),
                    "Docker reports the container unhealthy",
                    event_nanos,
                );
                if consecutive == 1 {
                    self.alert(subject.alert(
                        AlertKind::Critical,
                        "unhealthy",
                        Some(format!(
                            "Docker reports {} unhealthy: its HEALTHCHECK failed",
                            container.name
                        )),
                        consecutive,
                        action,
                        now,
                    ));
                }
            }
        }
        self.effects.extend(saved);
    }

    /// Decides about restarting `service`, whose running containers are `containers`, and
    /// orders one restart per container when the policy allows. Returns what was done, for
    /// the alert.
    fn consider_restart(
        &mut self,
        service: &ServiceKey,
        containers: &[Container],
        reason: &str,
        event_nanos: Option<i64>,
    ) -> String {
        let now = self.now.wall;
        if self.state.in_flight.contains_key(service) {
            debug!("a restart is already under way");
            return "a restart is already under way".into();
        }
        let scope = self.state.scope.as_ref();
        let containers: Vec<&Container> = containers
            .iter()
            .filter(|c| !scope.is_some_and(|s| s.is_own(&c.id)))
            .collect();
        let Some(first) = containers.first() else {
            return "nothing to restart".into();
        };
        let component = ComponentId::new(first.component());
        let state = self.state.service(service);
        let ctx = RestartContext {
            opted_out: containers.iter().any(|c| !c.restart_allowed()),
            operator_hold_until: self
                .state
                .operator_holds
                .get(&hold_key(&first.labels, &first.name))
                .copied(),
            silenced_until: self.state.silenced_until(component.as_str(), now),
        };
        let healing = self.state.healing.clone();
        let (next, decision) = decide_restart(&state, now, &healing, &ctx);
        match decision {
            Decision::Hold(hold) => {
                self.log_hold(service, &component, &hold);
                format!("not restarted: {hold}")
            }
            Decision::GiveUp { next_slot } => {
                error!(%component, %next_slot, budget = healing.restart_budget, "GAVE UP: restart budget spent; no restart until a slot frees");
                let window = humantime::format_duration(healing.budget_window);
                self.history(
                    component.as_str(),
                    HistoryKind::GaveUp,
                    format!(
                        "{} restarts within {window} spent; next slot at {next_slot}",
                        healing.restart_budget
                    ),
                );
                let action = format!(
                    "gave up: {} restarts within {window} spent; no restart until {next_slot}",
                    healing.restart_budget
                );
                // The alert is kept before the state that says it was raised (see on_probe).
                self.alert(Subject::service(&component).alert(
                    AlertKind::GaveUp,
                    "failing",
                    Some(reason.to_string()),
                    0,
                    action.clone(),
                    now,
                ));
                self.save_service(service, next);
                action
            }
            Decision::Restart => {
                // Recorded before the call: a crash of medic right after still counts it.
                let after = restarted(&next, now, healing.default_grace, &healing);
                self.save_service(service, after);
                let workloads: Vec<(WorkloadId, String)> = containers
                    .iter()
                    .map(|c| (WorkloadId::new(&c.id), c.name.clone()))
                    .collect();
                let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                let action = format!("restarted {}", names.join(", "));
                self.state.in_flight.insert(
                    service.clone(),
                    InFlight {
                        before: state,
                        component: component.clone(),
                        workloads: workloads.iter().map(|(id, _)| id.clone()).collect(),
                        remaining: workloads.len(),
                        grace: None,
                    },
                );
                self.state.last_hold.remove(service);
                self.effects.push(Effect::Restart(RestartOrder {
                    service: service.clone(),
                    component,
                    workloads,
                    reason: reason.to_string(),
                    at: now,
                    event_nanos,
                }));
                action
            }
        }
    }

    fn log_hold(&mut self, service: &ServiceKey, component: &ComponentId, hold: &HoldReason) {
        let kind = match hold {
            HoldReason::OptedOut => "opted_out",
            HoldReason::Silenced { .. } => "silenced",
            HoldReason::OperatorStopping { .. } => "operator",
            HoldReason::InGrace { .. } => "grace",
            HoldReason::Cooldown { .. } => "cooldown",
            HoldReason::BudgetSpent { .. } => "budget",
        };
        if self.state.last_hold.get(service) != Some(&kind) {
            info!(hold = kind, "not restarting: {hold}");
            self.history(component.as_str(), HistoryKind::Held, hold.to_string());
            self.state.last_hold.insert(service.clone(), kind);
        }
    }

    fn on_restart_done(
        &mut self,
        service: ServiceKey,
        workload: WorkloadId,
        result: RestartResult,
    ) {
        self.state
            .own_restarts
            .insert(workload, self.now.mono + OWN_RESTART_ECHO);
        let Some(in_flight) = self.state.in_flight.get_mut(&service) else {
            return;
        };
        in_flight.remaining = in_flight.remaining.saturating_sub(1);
        let component = in_flight.component.clone();
        match result {
            RestartResult::Restarted { grace } => {
                in_flight.grace = Some(in_flight.grace.map_or(grace, |g| g.max(grace)));
            }
            RestartResult::Skipped(why) => {
                info!(%service, "restart not made: {why}");
            }
            RestartResult::Failed(error) => {
                // An attempt all the same: it keeps its budget slot, without grace.
                in_flight.grace.get_or_insert(Duration::ZERO);
                // Keyed by component like every other line, so the status page shows it.
                self.history(component.as_str(), HistoryKind::RestartFailed, error);
            }
        }
        if self
            .state
            .in_flight
            .get(&service)
            .is_some_and(|f| f.remaining > 0)
        {
            return;
        }
        let Some(in_flight) = self.state.in_flight.remove(&service) else {
            return;
        };
        match in_flight.grace {
            Some(grace) => {
                if let Some(state) = self.state.services.get(service.as_str()).cloned() {
                    let next = ServiceState {
                        grace_until: Some(
                            self.now.wall + chrono::Duration::from_std(grace).unwrap_or_default(),
                        ),
                        ..state
                    };
                    self.save_service(&service, next);
                }
            }
            // Nothing was restarted: the budget slot is given back.
            None => self.save_service(&service, in_flight.before),
        }
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
