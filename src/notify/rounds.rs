//! Rounds of alerts into the outbox.
//!
//! An alert is kept in the store's inbox the moment it arrives; alerts arriving within
//! `MEDIC_ALERT_GROUP_WINDOW` of the first form one round. The rate limit ([`super::limiter`])
//! decides about each; what passes becomes one message per configured channel, written to the
//! outbox in the same transaction that empties the inbox and saves the limits. Reminders of
//! ongoing outages are rounds of their own.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::event::{Alert, AlertKind};
use super::limiter::{self, LimitState, Verdict};
use super::render::AlertItem;
use super::service::{keep_alert, until, Incoming, Shared};
use crate::store::outbox::{NewMessage, RoundCommit};

/// How often rounds the store could not take are tried again.
const UNSAVED_RETRY: Duration = Duration::from_secs(2);

/// Turns alerts into rounds and rounds into outbox messages.
pub(crate) struct Rounds {
    /// Settings, store, status, clock.
    shared: Shared,
    /// Rate-limit state per component, mirrored in the store.
    limits: HashMap<String, LimitState>,
    /// Rounds the store could not take (full, read-only, gone), with their time, committed
    /// in order once it takes writes again: alerts raised during a store fault are late, not
    /// lost (while medic keeps running).
    unsaved: Vec<(DateTime<Utc>, RoundCommit)>,
}

impl Rounds {
    pub(crate) fn new(shared: Shared) -> Rounds {
        let mut limits = HashMap::new();
        match shared.store.load_alert_limits() {
            Ok(rows) => {
                for (component, json) in rows {
                    match serde_json::from_str(&json) {
                        Ok(state) => {
                            limits.insert(component, state);
                        }
                        Err(e) => {
                            warn!(%component, error = %e, "ignoring unreadable alert limit state")
                        }
                    }
                }
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "cannot read the alert limits; starting afresh")
            }
        }
        Rounds {
            shared,
            limits,
            unsaved: Vec::new(),
        }
    }

    pub(crate) async fn run(
        mut self,
        mut alerts: mpsc::Receiver<Incoming>,
        shutdown: CancellationToken,
    ) {
        // Alerts a crash left between arrival and their round. The supervisor may already be
        // keeping new ones: those read here are skipped when they also arrive on the channel.
        let mut recovered = std::collections::HashSet::new();
        match self.shared.store.inbox_pending() {
            Ok(rows) if !rows.is_empty() => {
                recovered.extend(rows.iter().map(|(id, _)| *id));
                let batch: Vec<(Option<i64>, Alert)> = rows
                    .into_iter()
                    .filter_map(|(id, json)| match serde_json::from_str(&json) {
                        Ok(alert) => Some((Some(id), alert)),
                        Err(e) => {
                            warn!(error = %e, "dropping an unreadable alert from the inbox");
                            None
                        }
                    })
                    .collect();
                info!(
                    alerts = batch.len(),
                    "handling alerts received before medic stopped"
                );
                self.round(batch);
            }
            Ok(_) => {}
            Err(e) => error!(error = %format!("{e:#}"), "cannot read the alert inbox"),
        }
        loop {
            let reminder_due = self.next_reminder();
            let wait = reminder_due
                .map(|due| until(self.shared.clock.now(), due))
                .unwrap_or(Duration::from_secs(3600));
            let retry_unsaved = !self.unsaved.is_empty();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait), if reminder_due.is_some() => self.reminders(),
                _ = tokio::time::sleep(UNSAVED_RETRY), if retry_unsaved => self.commit_unsaved(),
                first = alerts.recv() => {
                    let Some(first) = first else { return };
                    let mut batch: Vec<_> = self.keep(first, &recovered).into_iter().collect();
                    let deadline = tokio::time::Instant::now() + self.shared.settings.group_window;
                    let mut closed = false;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(deadline) => break,
                            _ = shutdown.cancelled() => { closed = true; break }
                            more = alerts.recv() => match more {
                                Some(alert) => batch.extend(self.keep(alert, &recovered)),
                                None => { closed = true; break }
                            },
                        }
                    }
                    if !batch.is_empty() {
                        self.round(batch);
                    }
                    if closed {
                        return;
                    }
                }
            }
        }
    }

    /// An arriving alert with its inbox row, keeping it now if its sender did not; `None` when
    /// the start-up read of the inbox (`recovered`) already handled it.
    fn keep(
        &self,
        incoming: Incoming,
        recovered: &std::collections::HashSet<i64>,
    ) -> Option<(Option<i64>, Alert)> {
        let incoming = if incoming.kept {
            incoming
        } else {
            keep_alert(&self.shared.store, self.shared.clock.now(), incoming.alert)
        };
        if incoming.inbox_id.is_some_and(|id| recovered.contains(&id)) {
            return None;
        }
        Some((incoming.inbox_id, incoming.alert))
    }

    fn next_reminder(&self) -> Option<DateTime<Utc>> {
        let s = &self.shared.settings;
        self.limits
            .values()
            .filter_map(|l| limiter::next_reminder_at(l, s.reminder_interval, s.alert_interval))
            .min()
    }

    /// Decides about one round of alerts and commits it.
    pub(crate) fn round(&mut self, batch: Vec<(Option<i64>, Alert)>) {
        let now = self.shared.clock.now();
        let interval = self.shared.settings.alert_interval;
        let mut commit = RoundCommit::default();
        let mut items = Vec::new();
        let mut touched = Vec::new();
        for (id, alert) in batch {
            commit.inbox_ids.extend(id);
            warn!(
                kind = ?alert.kind,
                component = %alert.component,
                check = %alert.check,
                error = alert.error.as_deref().unwrap_or(""),
                action = %alert.action,
                "alert"
            );
            let state = self
                .limits
                .get(&alert.component)
                .cloned()
                .unwrap_or_default();
            let (next, verdict) = limiter::admit(&state, &alert, now, interval);
            self.limits.insert(alert.component.clone(), next);
            if !touched.contains(&alert.component) {
                touched.push(alert.component.clone());
            }
            match verdict {
                Verdict::Send { held, outage_since } => items.push(AlertItem {
                    outage_since: (alert.kind == AlertKind::Recovered)
                        .then_some(outage_since)
                        .flatten(),
                    alert,
                    held,
                    reminder: false,
                }),
                Verdict::Hold => {
                    info!(
                        component = %alert.component,
                        kind = ?alert.kind,
                        interval = %humantime::format_duration(interval),
                        "alert held back by the rate limit; it will be counted in the next email"
                    );
                    commit.history.push((
                        alert.component.clone(),
                        crate::model::HistoryKind::AlertHeld.as_str().into(),
                        format!(
                            "{:?} held back by the rate limit: {}",
                            alert.kind, alert.action
                        ),
                    ));
                    self.shared.status.add_alerts_held(1);
                }
            }
        }
        // What the limit held in this same round goes into the email sent about the component.
        for item in &mut items {
            if let Some(state) = self.limits.get_mut(&item.alert.component) {
                item.held.merge(std::mem::take(&mut state.held));
            }
        }
        self.commit(now, commit, touched, items, "alert");
    }

    /// Sends the reminders that are due.
    fn reminders(&mut self) {
        let now = self.shared.clock.now();
        let s = self.shared.settings.clone();
        let mut items = Vec::new();
        let mut touched = Vec::new();
        for (component, state) in self.limits.iter_mut() {
            if let Some((next, alert, held)) =
                limiter::reminder(state, now, s.reminder_interval, s.alert_interval)
            {
                info!(%component, "the outage goes on: sending a reminder");
                items.push(AlertItem {
                    outage_since: next.outage_since,
                    alert,
                    held,
                    reminder: true,
                });
                *state = next;
                touched.push(component.clone());
            }
        }
        if !items.is_empty() {
            self.commit(now, RoundCommit::default(), touched, items, "reminder");
        }
    }

    fn commit(
        &mut self,
        now: DateTime<Utc>,
        mut commit: RoundCommit,
        touched: Vec<String>,
        items: Vec<AlertItem>,
        kind: &str,
    ) {
        for component in touched {
            if let Some(state) = self.limits.get(&component) {
                if let Ok(json) = serde_json::to_string(state) {
                    commit.limits.push((component, json));
                }
            }
        }
        if !items.is_empty() {
            commit.messages = messages(&self.shared, &items, kind);
            if commit.messages.is_empty() {
                warn!(
                    "neither email nor a webhook is configured: the alert is kept in history only"
                );
            }
        }
        let sent = commit.messages.len();
        self.commit_unsaved();
        if !self.unsaved.is_empty() {
            // Kept in order behind the rounds the store could not take yet.
            self.unsaved.push((now, commit));
            return;
        }
        match self.shared.store.commit_round(now, &commit) {
            Ok(_) => {
                if sent > 0 {
                    self.shared.status.add_alerts_sent(items.len() as u64);
                    self.shared.wake.notify_one();
                }
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "cannot write the alerts to the outbox; they are kept in memory and written when the store takes writes again");
                self.unsaved.push((now, commit));
            }
        }
    }

    /// Commits the rounds the store could not take, oldest first, until one fails again.
    fn commit_unsaved(&mut self) {
        while let Some((at, commit)) = self.unsaved.first() {
            match self.shared.store.commit_round(*at, commit) {
                Ok(_) => {
                    let (_, commit) = self.unsaved.remove(0);
                    info!(
                        messages = commit.messages.len(),
                        "alerts kept in memory during a store fault are in the outbox now"
                    );
                    self.shared.wake.notify_one();
                }
                Err(e) => {
                    debug!(error = %format!("{e:#}"), "the store still cannot take the alerts");
                    return;
                }
            }
        }
    }
}

/// The outbox messages for one round: one per configured channel, in registry order.
fn messages(shared: &Shared, items: &[AlertItem], kind: &str) -> Vec<NewMessage> {
    let ctx = shared.render_context();
    shared
        .settings
        .channels
        .iter()
        .map(|channel| {
            let payload = channel.render(items, &ctx);
            NewMessage {
                channel: channel.id(),
                kind: kind.into(),
                subject: payload.subject,
                payload: payload.body,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::notify::email::Email;
    use crate::notify::service::test_support::{alert, settings, shared, subjects};
    use crate::notify::{Clock, TokioClock};
    use crate::store::Store;

    /// A rounds task running on a fresh store, with tokio's clock at 2026-11-22 10:00 UTC:
    /// the store's folder, the store, that time, the clock, the alerts' sender, the stop
    /// button and the task.
    type Running = (
        tempfile::TempDir,
        Arc<Store>,
        DateTime<Utc>,
        Arc<TokioClock>,
        mpsc::Sender<Incoming>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    );

    /// Starts rounds with these settings, after `before` had the store (e.g. to leave an
    /// alert in the inbox as a crash would).
    fn start(pairs: &[(&str, &str)], before: impl FnOnce(&Store, DateTime<Utc>)) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        before(&store, t0);
        let clock = Arc::new(TokioClock::starting_at(t0));
        let rounds = Rounds::new(shared(store.clone(), settings(pairs), clock.clone()));
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(rounds.run(rx, stop.clone()));
        (dir, store, t0, clock, tx, stop, task)
    }

    /// Two components failing within one group window: one email naming both.
    #[tokio::test(start_paused = true)]
    async fn alerts_of_one_round_make_one_email() {
        let (_dir, store, t0, clock, tx, stop, task) = start(&[], |_, _| {});
        tx.send(alert(AlertKind::Critical, "web", t0).into())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        tx.send(alert(AlertKind::Critical, "worker", clock.now()).into())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            subjects(&store),
            vec!["🚨 CRITICAL: web, worker failure - shop"]
        );
        let email: Email =
            serde_json::from_str(&store.outbox_recent(1).unwrap()[0].payload).unwrap();
        assert!(email.text.contains("restarted shop-web-1"));
        assert!(email.text.contains("restarted shop-worker-1"));
        stop.cancel();
        task.await.unwrap();
        assert!(store.inbox_pending().unwrap().is_empty());
    }

    /// The rounds loop under a paused clock: a component flapping every 10 minutes for two
    /// hours sends two CRITICAL emails; the second counts what was held back.
    #[tokio::test(start_paused = true)]
    async fn flapping_for_two_simulated_hours_sends_two_criticals() {
        let (_dir, store, t0, clock, tx, stop, task) = start(&[], |_, _| {});
        for step in 0..24 {
            let kind = if step % 2 == 0 {
                AlertKind::Critical
            } else {
                AlertKind::Recovered
            };
            tx.send(alert(kind, "web", clock.now()).into())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(300)).await;
        }
        let all = subjects(&store);
        let criticals: Vec<_> = all.iter().filter(|s| s.contains("CRITICAL")).collect();
        assert_eq!(criticals.len(), 2, "{all:?}");
        let second = &store
            .outbox_recent(1000)
            .unwrap()
            .into_iter()
            .filter(|m| m.subject.contains("CRITICAL"))
            .map(|m| serde_json::from_str::<Email>(&m.payload).unwrap())
            .collect::<Vec<_>>()[0];
        assert!(
            second.text.contains("10 alerts held back")
                && second.text.contains("5 CRITICAL, 5 RECOVERED"),
            "{}",
            second.text
        );
        let held = store
            .history_since(t0)
            .unwrap()
            .into_iter()
            .filter(|h| h.kind == "alert_held")
            .count();
        assert_eq!(held, 20, "every held alert is in history for the report");
        stop.cancel();
        task.await.unwrap();
    }

    /// An outage that goes on is reminded of every MEDIC_REMINDER_INTERVAL, on tokio's paused
    /// clock; the recovery ends the reminders.
    #[tokio::test(start_paused = true)]
    async fn reminders_repeat_an_ongoing_outage() {
        let (_dir, store, t0, clock, tx, stop, task) =
            start(&[("MEDIC_REMINDER_INTERVAL", "4h")], |_, _| {});
        tx.send(alert(AlertKind::Critical, "web", t0).into())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
        assert_eq!(subjects(&store).len(), 1);
        tokio::time::sleep(Duration::from_secs(3600 + 10)).await;
        assert_eq!(subjects(&store).len(), 2, "a reminder after 4 hours");
        let reminder: Email =
            serde_json::from_str(&store.outbox_recent(1).unwrap()[0].payload).unwrap();
        assert_eq!(reminder.subject, "🚨 CRITICAL: web failure - shop");
        assert!(reminder.text.contains("(reminder)"), "{}", reminder.text);
        assert!(
            reminder
                .text
                .contains("Failing since: 2026-11-22 10:00:00 UTC"),
            "{}",
            reminder.text
        );
        tx.send(alert(AlertKind::Recovered, "web", clock.now()).into())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
        let all = subjects(&store);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[2], "✅ RECOVERED: web - shop");
        stop.cancel();
        task.await.unwrap();
    }

    /// An alert received just before a SIGKILL (in the inbox, its round not committed) is sent
    /// after the restart.
    #[tokio::test(start_paused = true)]
    async fn alerts_left_in_the_inbox_by_a_crash_are_sent_after_restart() {
        let (_dir, store, _, _, _tx, stop, task) = start(&[], |store, t0| {
            let json = serde_json::to_string(&alert(AlertKind::Critical, "web", t0)).unwrap();
            store.inbox_push(t0, &json).unwrap();
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(subjects(&store), vec!["🚨 CRITICAL: web failure - shop"]);
        assert!(store.inbox_pending().unwrap().is_empty());
        stop.cancel();
        task.await.unwrap();
    }
}
