//! The alert rate limit, as a pure function of a component's state, an alert and the time.
//!
//! Rules (docs/alerts.md says them to users):
//! - CRITICAL: at most one per component per `MEDIC_ALERT_INTERVAL`; the rest are held back.
//! - RECOVERED: sent when people were told of the outage it ends; held when its CRITICAL was
//!   held (a flapping component must not send a stream of recoveries either).
//! - GAVE UP: at most one per component per interval.
//! - What is held back is counted per kind and handed to the next email about the component,
//!   which summarises it; each held alert is also written to history for the report.
//! - Reminders (`MEDIC_REMINDER_INTERVAL`, off by default): while an outage goes on, a CRITICAL
//!   reminder once the reminder interval (and the alert interval) passed since the last one.
//!   It also tells people of an outage whose CRITICAL the limit held.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::{Alert, AlertKind};

/// What the limit held back for one component since its last email.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBack {
    /// CRITICAL alerts held.
    pub critical: u32,
    /// RECOVERED alerts held.
    pub recovered: u32,
    /// GAVE UP alerts held.
    pub gave_up: u32,
    /// When the first held alert happened.
    pub first: Option<DateTime<Utc>>,
    /// When the last held alert happened.
    pub last: Option<DateTime<Utc>>,
}

impl HeldBack {
    /// How many alerts were held in all.
    pub fn total(&self) -> u32 {
        self.critical + self.recovered + self.gave_up
    }

    /// True when nothing was held.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    fn add(&mut self, kind: AlertKind, at: DateTime<Utc>) {
        match kind {
            AlertKind::Critical => self.critical += 1,
            AlertKind::Recovered => self.recovered += 1,
            AlertKind::GaveUp => self.gave_up += 1,
        }
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: HeldBack) {
        self.critical += other.critical;
        self.recovered += other.recovered;
        self.gave_up += other.gave_up;
        self.first = self.first.min(other.first).or(self.first).or(other.first);
        self.last = self.last.max(other.last);
    }

    /// `2 CRITICAL, 1 RECOVERED`.
    pub fn breakdown(&self) -> String {
        let mut parts = Vec::new();
        for (n, name) in [
            (self.critical, "CRITICAL"),
            (self.recovered, "RECOVERED"),
            (self.gave_up, "GAVE UP"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {name}"));
            }
        }
        parts.join(", ")
    }
}

/// One component's alerting state; kept in the store so limits survive restarts of medic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitState {
    /// When the last CRITICAL email (alert or reminder) about it went out.
    pub last_critical_sent: Option<DateTime<Utc>>,
    /// When the last GAVE UP email about it went out.
    pub last_gave_up_sent: Option<DateTime<Utc>>,
    /// When the ongoing outage began; `None` when none is known.
    pub outage_since: Option<DateTime<Utc>>,
    /// Whether people were told of the ongoing outage.
    pub outage_notified: bool,
    /// The alert that opened (or last described) the outage, for reminders.
    pub outage_alert: Option<Alert>,
    /// What was held back since the last email.
    pub held: HeldBack,
}

/// What to do with one alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Send it, with what was held back before it (now handed over and reset).
    Send {
        /// Held back since the last email about this component.
        held: HeldBack,
        /// When the outage it ends began (for RECOVERED).
        outage_since: Option<DateTime<Utc>>,
    },
    /// Hold it back (counted).
    Hold,
}

fn passed(since: Option<DateTime<Utc>>, now: DateTime<Utc>, interval: Duration) -> bool {
    match since {
        None => true,
        Some(t) => (now - t).to_std().unwrap_or_default() >= interval,
    }
}

/// Decides about one alert at `now` under `interval` (`MEDIC_ALERT_INTERVAL`).
pub fn admit(
    state: &LimitState,
    alert: &Alert,
    now: DateTime<Utc>,
    interval: Duration,
) -> (LimitState, Verdict) {
    let mut next = state.clone();
    let send = |next: &mut LimitState| {
        let held = std::mem::take(&mut next.held);
        Verdict::Send {
            held,
            outage_since: state.outage_since,
        }
    };
    let verdict = match alert.kind {
        AlertKind::Critical => {
            next.outage_since = Some(state.outage_since.unwrap_or(alert.at));
            next.outage_alert = Some(alert.clone());
            if passed(state.last_critical_sent, now, interval) {
                next.last_critical_sent = Some(now);
                next.outage_notified = true;
                send(&mut next)
            } else {
                if state.outage_since.is_none() {
                    next.outage_notified = false;
                }
                next.held.add(alert.kind, alert.at);
                Verdict::Hold
            }
        }
        AlertKind::Recovered => {
            // A recovery with no known outage is sent: better one email too many than silence.
            let told = state.outage_notified || state.outage_since.is_none();
            next.outage_since = None;
            next.outage_notified = false;
            next.outage_alert = None;
            if told {
                send(&mut next)
            } else {
                next.held.add(alert.kind, alert.at);
                Verdict::Hold
            }
        }
        AlertKind::GaveUp => {
            if passed(state.last_gave_up_sent, now, interval) {
                next.last_gave_up_sent = Some(now);
                send(&mut next)
            } else {
                next.held.add(alert.kind, alert.at);
                Verdict::Hold
            }
        }
    };
    (next, verdict)
}

/// When the next reminder about this component is due, if one will be.
pub fn next_reminder_at(
    state: &LimitState,
    reminder: Option<Duration>,
    interval: Duration,
) -> Option<DateTime<Utc>> {
    let reminder = reminder?;
    let since = state.outage_since?;
    state.outage_alert.as_ref()?;
    let period = chrono::Duration::from_std(reminder.max(interval)).ok()?;
    Some(state.last_critical_sent.unwrap_or(since) + period)
}

/// A reminder due at `now`: the state after sending it, the alert to repeat and what was held.
pub fn reminder(
    state: &LimitState,
    now: DateTime<Utc>,
    reminder: Option<Duration>,
    interval: Duration,
) -> Option<(LimitState, Alert, HeldBack)> {
    let due = next_reminder_at(state, reminder, interval)?;
    if now < due {
        return None;
    }
    let mut next = state.clone();
    let alert = next.outage_alert.clone()?;
    next.last_critical_sent = Some(now);
    next.outage_notified = true;
    let held = std::mem::take(&mut next.held);
    Some((next, alert, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AlertKind, at: DateTime<Utc>) -> Alert {
        Alert::sample(kind, at, "restarted web")
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// Flapping every 10 minutes for two hours: CRITICAL at 0 and at 60 minutes only, the
    /// second counting what was held back in between.
    #[test]
    fn flapping_for_two_hours_sends_at_most_two_criticals() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut state = LimitState::default();
        let mut sent = Vec::new();
        for step in 0..24 {
            // Fail at 0, 10, 20, ... minutes; recover 5 minutes later.
            let minutes = step * 5;
            let now = t0 + chrono::Duration::minutes(minutes);
            let kind = if step % 2 == 0 {
                AlertKind::Critical
            } else {
                AlertKind::Recovered
            };
            let (next, verdict) = admit(&state, &alert(kind, now), now, HOUR);
            state = next;
            if let Verdict::Send { held, .. } = verdict {
                sent.push((minutes, kind, held));
            }
        }
        let criticals: Vec<_> = sent
            .iter()
            .filter(|(_, k, _)| *k == AlertKind::Critical)
            .collect();
        assert_eq!(criticals.len(), 2, "{sent:?}");
        assert_eq!(criticals[0].0, 0);
        assert_eq!(criticals[1].0, 60);
        // Held between: criticals at 10..50 (5) and their recoveries at 15..55 (5).
        assert_eq!(criticals[1].2.critical, 5);
        assert_eq!(criticals[1].2.recovered, 5);
        assert_eq!(criticals[1].2.breakdown(), "5 CRITICAL, 5 RECOVERED");
        // Recoveries are sent only for the outages people heard of: at 5 and at 65 minutes.
        let recovered: Vec<_> = sent
            .iter()
            .filter(|(_, k, _)| *k == AlertKind::Recovered)
            .map(|(m, _, _)| *m)
            .collect();
        assert_eq!(recovered, vec![5, 65]);
    }

    #[test]
    fn recovery_follows_its_critical_and_gave_up_is_limited_separately() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let s = LimitState::default();
        let (s, v) = admit(&s, &alert(AlertKind::Critical, t0), t0, HOUR);
        assert!(matches!(v, Verdict::Send { .. }));
        let t1 = t0 + chrono::Duration::minutes(1);
        let (s, v) = admit(&s, &alert(AlertKind::GaveUp, t1), t1, HOUR);
        assert!(matches!(v, Verdict::Send { .. }));
        let (s, v) = admit(&s, &alert(AlertKind::GaveUp, t1), t1, HOUR);
        assert_eq!(v, Verdict::Hold);
        let t2 = t0 + chrono::Duration::minutes(2);
        let (s, v) = admit(&s, &alert(AlertKind::Recovered, t2), t2, HOUR);
        match v {
            Verdict::Send { held, outage_since } => {
                assert_eq!(held.gave_up, 1);
                assert_eq!(outage_since, Some(t0));
            }
            Verdict::Hold => panic!("the recovery of a notified outage is sent"),
        }
        assert!(s.outage_since.is_none() && s.held.is_empty());
    }

    #[test]
    fn reminders_repeat_an_ongoing_outage_and_tell_of_a_held_one() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let four = Some(Duration::from_secs(4 * 3600));
        let s = LimitState::default();
        let (s, _) = admit(&s, &alert(AlertKind::Critical, t0), t0, HOUR);
        assert_eq!(next_reminder_at(&s, None, HOUR), None);
        assert_eq!(
            next_reminder_at(&s, four, HOUR),
            Some(t0 + chrono::Duration::hours(4))
        );
        assert!(reminder(&s, t0 + chrono::Duration::hours(3), four, HOUR).is_none());
        let (s, again, held) = reminder(&s, t0 + chrono::Duration::hours(4), four, HOUR).unwrap();
        assert_eq!(again.kind, AlertKind::Critical);
        assert!(held.is_empty());
        assert_eq!(s.last_critical_sent, Some(t0 + chrono::Duration::hours(4)));
        // After recovery there is nothing to remind of.
        let t5 = t0 + chrono::Duration::hours(5);
        let (s, _) = admit(&s, &alert(AlertKind::Recovered, t5), t5, HOUR);
        assert_eq!(next_reminder_at(&s, four, HOUR), None);
    }
}
