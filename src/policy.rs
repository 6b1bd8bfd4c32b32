//! The healing policy, as pure functions of state, observation and time.
//!
//! Two small state machines:
//! - [`CheckState`] counts the consecutive failures of one check (a container's Docker health, or
//!   a synthetic probe) and says when its threshold is reached.
//! - [`ServiceState`] guards restarts of one service: grace after a restart, cooldown between
//!   restarts, and a rolling restart budget that, once spent, gives up until a slot frees.
//!
//! Nothing here reads a clock or does I/O; the caller passes `now` and persists what comes back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::HealingSettings;

/// A wall-clock instant; persisted, so it survives restarts of medic.
pub type Instant = DateTime<Utc>;

fn after(t: Instant, d: Duration) -> Instant {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The result of running one check once.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed with this error.
    Fail(String),
}

/// The running tally of one check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    /// Failures in a row, grace excluded.
    pub consecutive_failures: u32,
    /// When the current run of failures began.
    pub failing_since: Option<Instant>,
    /// The most recent error.
    pub last_error: Option<String>,
    /// When the check last ran.
    pub last_checked: Option<Instant>,
    /// When it last passed.
    pub last_ok: Option<Instant>,
}

/// What one outcome means for a check.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckVerdict {
    /// Passed; `recovered` when it had been failing.
    Passed { recovered: bool },
    /// Failed, below the threshold.
    Failing { consecutive: u32 },
    /// Failed and the threshold is reached: the service should be restarted.
    ThresholdReached { consecutive: u32 },
    /// Failed during the grace after a restart: not counted.
    IgnoredInGrace,
}

/// Records an outcome. `threshold` is how many failures in a row make a restart; a container
/// that Docker reports unhealthy comes with threshold 1, because Docker already counted its
/// own retries.
pub fn record_check(
    state: &CheckState,
    outcome: &Outcome,
    now: Instant,
    threshold: u32,
    in_grace: bool,
) -> (CheckState, CheckVerdict) {
    let mut next = state.clone();
    next.last_checked = Some(now);
    match outcome {
        Outcome::Pass => {
            let recovered = state.consecutive_failures > 0;
            next.consecutive_failures = 0;
            next.failing_since = None;
            next.last_ok = Some(now);
            (next, CheckVerdict::Passed { recovered })
        }
        Outcome::Fail(error) => {
            next.last_error = Some(error.clone());
            if in_grace {
                return (next, CheckVerdict::IgnoredInGrace);
            }
            next.consecutive_failures = state.consecutive_failures.saturating_add(1);
            next.failing_since.get_or_insert(now);
            let consecutive = next.consecutive_failures;
            let verdict = if consecutive >= threshold.max(1) {
                CheckVerdict::ThresholdReached { consecutive }
            } else {
                CheckVerdict::Failing { consecutive }
            };
            (next, verdict)
        }
    }
}

/// The restart history of one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// Restarts inside the current budget window, oldest first.
    pub recent_restarts: Vec<Instant>,
    /// The last restart.
    pub last_restart: Option<Instant>,
    /// Failures until this instant do not count (grace after a restart).
    pub grace_until: Option<Instant>,
    /// True once the budget is spent and the GAVE UP alert was raised, until a restart happens
    /// again or the service recovers.
    pub gave_up: bool,
    /// Restarts ever made, for metrics.
    pub restarts_total: u64,
}

impl ServiceState {
    /// True while failures are not counted after a restart.
    pub fn in_grace(&self, now: Instant) -> bool {
        self.grace_until.is_some_and(|g| now < g)
    }

    /// When the cooldown ends, if it is running.
    pub fn cooldown_until(&self, now: Instant, cooldown: Duration) -> Option<Instant> {
        self.last_restart
            .map(|t| after(t, cooldown))
            .filter(|until| now < *until)
    }

    /// Restarts counted against the budget at `now`.
    pub fn restarts_in_window(&self, now: Instant, window: Duration) -> Vec<Instant> {
        self.recent_restarts
            .iter()
            .copied()
            .filter(|t| now < after(*t, window))
            .collect()
    }

    /// Budget slots left at `now`.
    pub fn budget_left(&self, now: Instant, healing: &HealingSettings) -> u32 {
        let used = self.restarts_in_window(now, healing.budget_window).len() as u32;
        healing.restart_budget.saturating_sub(used)
    }

    /// Clears the gave-up mark once the service is healthy again.
    pub fn recovered(&self) -> ServiceState {
        ServiceState {
            gave_up: false,
            ..self.clone()
        }
    }
}

/// Facts about the moment, outside the service's own history, that can hold a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestartContext {
    /// False when the container is labelled `medic.restart=false`.
    pub opted_out: bool,
    /// An operator is stopping the project; hold until then.
    pub operator_hold_until: Option<Instant>,
    /// A person silenced the component until then.
    pub silenced_until: Option<Instant>,
}

/// Why a restart that was called for did not happen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HoldReason {
    /// The container is labelled `medic.restart=false`.
    OptedOut,
    /// A person silenced the component.
    Silenced { until: Instant },
    /// An operator is stopping or taking down the project.
    OperatorStopping { until: Instant },
    /// Just restarted; failures do not count yet.
    InGrace { until: Instant },
    /// The last restart was too recent.
    Cooldown { until: Instant },
    /// The restart budget is spent; the GAVE UP alert was already raised.
    BudgetSpent { next_slot: Instant },
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldReason::OptedOut => write!(f, "restarts are disabled by label medic.restart=false"),
            HoldReason::Silenced { until } => write!(f, "silenced until {until}"),
            HoldReason::OperatorStopping { until } => write!(
                f,
                "an operator is stopping the project; restarts held until {until}"
            ),
            HoldReason::InGrace { until } => write!(f, "in grace after a restart until {until}"),
            HoldReason::Cooldown { until } => write!(f, "in restart cooldown until {until}"),
            HoldReason::BudgetSpent { next_slot } => {
                write!(f, "restart budget spent; next slot at {next_slot}")
            }
        }
    }
}

/// What to do about a service whose check reached its threshold.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Restart it now. The caller applies [`restarted`] before making the call, so a crash of
    /// medic right after cannot forget the restart.
    Restart,
    /// Do not restart now.
    Hold(HoldReason),
    /// The budget just ran out: raise GAVE UP once; later calls return `Hold(BudgetSpent)`.
    GiveUp { next_slot: Instant },
}

/// Decides whether a service whose check reached its threshold is restarted now.
pub fn decide_restart(
    state: &ServiceState,
    now: Instant,
    healing: &HealingSettings,
    ctx: &RestartContext,
) -> (ServiceState, Decision) {
    let hold = |reason| (state.clone(), Decision::Hold(reason));
    if let Some(until) = ctx.silenced_until.filter(|u| now < *u) {
        return hold(HoldReason::Silenced { until });
    }
    if ctx.opted_out {
        return hold(HoldReason::OptedOut);
    }
    if let Some(until) = ctx.operator_hold_until.filter(|u| now < *u) {
        return hold(HoldReason::OperatorStopping { until });
    }
    if let Some(until) = state.grace_until.filter(|u| now < *u) {
        return hold(HoldReason::InGrace { until });
    }
    if let Some(until) = state.cooldown_until(now, healing.restart_cooldown) {
        return hold(HoldReason::Cooldown { until });
    }
    let in_window = state.restarts_in_window(now, healing.budget_window);
    if in_window.len() as u32 >= healing.restart_budget {
        // The oldest restart in the window leaves it first and frees a slot. With a budget of
        // zero there is no slot ever; report the end of one window from now.
        let next_slot = in_window
            .first()
            .map(|t| after(*t, healing.budget_window))
            .unwrap_or_else(|| after(now, healing.budget_window));
        if state.gave_up {
            return hold(HoldReason::BudgetSpent { next_slot });
        }
        let next = ServiceState {
            gave_up: true,
            ..state.clone()
        };
        return (next, Decision::GiveUp { next_slot });
    }
    (state.clone(), Decision::Restart)
}

/// The service state after a restart issued at `now`, with `grace` before failures count.
pub fn restarted(
    state: &ServiceState,
    now: Instant,
    grace: Duration,
    healing: &HealingSettings,
) -> ServiceState {
    let mut recent = state.restarts_in_window(now, healing.budget_window);
    recent.push(now);
    ServiceState {
        recent_restarts: recent,
        last_restart: Some(now),
        grace_until: Some(after(now, grace)),
        gave_up: false,
        restarts_total: state.restarts_total + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Instant {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// The SPEC's defaults (cooldown 10 min, budget 3 an hour, grace 60 s, threshold 3), which
    /// `HealingSettings::default()` gives; the cases below are written against these numbers.
    fn healing() -> HealingSettings {
        HealingSettings::default()
    }

    #[test]
    fn failures_count_up_to_the_threshold_and_a_pass_resets() {
        let fail = Outcome::Fail("boom".into());
        let steps: &[(i64, &Outcome, bool, CheckVerdict)] = &[
            (0, &fail, false, CheckVerdict::Failing { consecutive: 1 }),
            (10, &fail, false, CheckVerdict::Failing { consecutive: 2 }),
            (
                20,
                &fail,
                false,
                CheckVerdict::ThresholdReached { consecutive: 3 },
            ),
            (
                30,
                &fail,
                false,
                CheckVerdict::ThresholdReached { consecutive: 4 },
            ),
            (40, &fail, true, CheckVerdict::IgnoredInGrace),
            (
                50,
                &Outcome::Pass,
                false,
                CheckVerdict::Passed { recovered: true },
            ),
            (
                60,
                &Outcome::Pass,
                false,
                CheckVerdict::Passed { recovered: false },
            ),
            (70, &fail, false, CheckVerdict::Failing { consecutive: 1 }),
        ];
        let mut state = CheckState::default();
        for (at, outcome, grace, expected) in steps {
            let (next, verdict) = record_check(&state, outcome, t(*at), 3, *grace);
            assert_eq!(&verdict, expected, "at {at}");
            state = next;
        }
        assert_eq!(state.failing_since, Some(t(70)));
        assert_eq!(state.last_ok, Some(t(60)));
        assert_eq!(state.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn docker_unhealthy_uses_threshold_one() {
        let (_, verdict) = record_check(
            &CheckState::default(),
            &Outcome::Fail("unhealthy".into()),
            t(0),
            1,
            false,
        );
        assert_eq!(verdict, CheckVerdict::ThresholdReached { consecutive: 1 });
    }

    #[test]
    fn restart_decisions_follow_cooldown_budget_and_grace() {
        let h = healing();
        let ctx = RestartContext::default();
        let mut state = ServiceState::default();

        // First restart at t=0.
        let (s, d) = decide_restart(&state, t(0), &h, &ctx);
        assert_eq!(d, Decision::Restart);
        state = restarted(&s, t(0), Duration::from_secs(60), &h);

        // In grace, then in cooldown.
        let (_, d) = decide_restart(&state, t(30), &h, &ctx);
        assert_eq!(d, Decision::Hold(HoldReason::InGrace { until: t(60) }));
        let (_, d) = decide_restart(&state, t(61), &h, &ctx);
        assert_eq!(d, Decision::Hold(HoldReason::Cooldown { until: t(600) }));

        // Second and third restarts after each cooldown.
        let (s, d) = decide_restart(&state, t(600), &h, &ctx);
        assert_eq!(d, Decision::Restart);
        state = restarted(&s, t(600), Duration::from_secs(60), &h);
        let (s, d) = decide_restart(&state, t(1200), &h, &ctx);
        assert_eq!(d, Decision::Restart);
        state = restarted(&s, t(1200), Duration::from_secs(60), &h);

        // Budget of 3 per hour spent: give up once, then hold.
        let (s, d) = decide_restart(&state, t(1800), &h, &ctx);
        assert_eq!(d, Decision::GiveUp { next_slot: t(3600) });
        assert!(s.gave_up);
        state = s;
        let (s, d) = decide_restart(&state, t(2400), &h, &ctx);
        assert_eq!(
            d,
            Decision::Hold(HoldReason::BudgetSpent { next_slot: t(3600) })
        );
        state = s;

        // The oldest restart leaves the window: a slot frees.
        let (s, d) = decide_restart(&state, t(3600), &h, &ctx);
        assert_eq!(d, Decision::Restart);
        state = restarted(&s, t(3600), Duration::from_secs(60), &h);
        assert!(!state.gave_up);
        assert_eq!(state.recent_restarts, vec![t(600), t(1200), t(3600)]);
        assert_eq!(state.restarts_total, 4);
        assert_eq!(state.budget_left(t(3600), &h), 0);
        assert_eq!(state.budget_left(t(4200), &h), 1);
    }

    #[test]
    fn context_holds_come_before_history() {
        let h = healing();
        let state = ServiceState::default();
        let cases = [
            (
                RestartContext {
                    opted_out: true,
                    ..Default::default()
                },
                Decision::Hold(HoldReason::OptedOut),
            ),
            (
                RestartContext {
                    operator_hold_until: Some(t(100)),
                    ..Default::default()
                },
                Decision::Hold(HoldReason::OperatorStopping { until: t(100) }),
            ),
            (
                RestartContext {
                    operator_hold_until: Some(t(-1)),
                    ..Default::default()
                },
                Decision::Restart,
            ),
            (
                RestartContext {
                    silenced_until: Some(t(50)),
                    opted_out: true,
                    ..Default::default()
                },
                Decision::Hold(HoldReason::Silenced { until: t(50) }),
            ),
        ];
        for (ctx, expected) in cases {
            let (next, d) = decide_restart(&state, t(0), &h, &ctx);
            assert_eq!(d, expected, "{ctx:?}");
            assert_eq!(next, state, "a hold changes nothing");
        }
    }

    #[test]
    fn a_zero_budget_gives_up_at_once() {
        let h = HealingSettings {
            restart_budget: 0,
            ..healing()
        };
        let (s, d) = decide_restart(&ServiceState::default(), t(0), &h, &Default::default());
        assert_eq!(d, Decision::GiveUp { next_slot: t(3600) });
        let (_, d) = decide_restart(&s, t(1), &h, &Default::default());
        assert!(matches!(d, Decision::Hold(HoldReason::BudgetSpent { .. })));
    }

    #[test]
    fn recovery_clears_gave_up_but_keeps_history() {
        let h = healing();
        let mut state = ServiceState::default();
        for at in [0, 600, 1200] {
            state = restarted(&state, t(at), Duration::from_secs(60), &h);
        }
        let (s, _) = decide_restart(&state, t(1900), &h, &Default::default());
        assert!(s.gave_up);
        let s = s.recovered();
        assert!(!s.gave_up);
        assert_eq!(s.recent_restarts.len(), 3);
        // Failing again while the budget is still spent raises GAVE UP again: a new episode.
        let (_, d) = decide_restart(&s, t(2000), &h, &Default::default());
        assert_eq!(d, Decision::GiveUp { next_slot: t(3600) });
    }
}
