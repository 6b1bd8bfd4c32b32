//! The notifier's tasks: rounds of alerts into the outbox, delivery from the outbox, and the
//! daily report's schedule.
//!
//! - **Rounds.** An alert is kept in the store's inbox the moment it arrives; alerts arriving
//!   within `MEDIC_ALERT_GROUP_WINDOW` of the first form one round. The rate limit
//!   ([`super::limiter`]) decides about each; what passes becomes one email (and one webhook),
//!   written to the outbox in the same transaction that empties the inbox and saves the limits.
//!   Reminders of ongoing outages are rounds of their own.
//! - **Delivery.** One loop takes the outbox's next due message, sends it, and marks it sent
//!   only after the server accepted it. Transient failures wait with exponential backoff
//!   (2 s doubling up to `MEDIC_OUTBOX_RETRY_MAX`); permanent ones are logged at ERROR, kept as
//!   `failed` and shown in [`NotifyStatus`].
//! - **Report.** Sleeps until `MEDIC_REPORT_CRON` fires in `TZ`, then writes the report to the
//!   outbox.
//!
//! Every task takes its time from a [`Clock`] and sleeps on tokio's timer, so tests drive them
//! with tokio's paused clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::email::{Email, Mailer};
use super::event::{Alert, AlertKind};
use super::limiter::{self, LimitState, Verdict};
use super::render::{self, AlertItem, RenderContext};
use super::report;
use super::settings::NotifySettings;
use super::status::NotifyStatus;
use super::webhook;
use crate::config::ConfigError;
use crate::store::outbox::{Channel, NewMessage, OutboxMessage, RoundCommit};
use crate::store::Store;

/// Where the notifier's tasks read the time.
pub trait Clock: Send + Sync + 'static {
    /// Now, as wall time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall time that moves with tokio's clock from a chosen start: under `tokio::time::pause()`
/// it advances exactly as far as the test advances tokio's time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    /// The wall time at `base`.
    wall: DateTime<Utc>,
    /// tokio's time when the clock was made.
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `wall` now.
    pub fn starting_at(wall: DateTime<Utc>) -> TokioClock {
        TokioClock {
            wall,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.wall + chrono::Duration::from_std(self.base.elapsed()).unwrap_or_default()
    }
}

/// Gives the stack's name at the time of sending (the compose project may be discovered after
/// the notifier starts).
pub type StackName = Arc<dyn Fn() -> String + Send + Sync>;

/// Gives the components watched now, so the daily report has a row for quiet ones too.
pub type ComponentNames = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// What the notifier asks of the rest of medic.
pub struct NotifyContext {
    /// The stack's name, at the time of sending.
    pub stack: StackName,
    /// The components watched now.
    pub components: ComponentNames,
    /// Where time comes from ([`SystemClock`] in the daemon).
    pub clock: Arc<dyn Clock>,
}

/// What the rest of medic holds of the notifier: its status and the report button.
#[derive(Clone)]
pub struct NotifyHandle {
    /// Live status, for `/health/detailed` and `/metrics`.
    status: Arc<NotifyStatus>,
    /// Asks the report task to send the report now.
    report_now: mpsc::Sender<oneshot::Sender<Result<String, String>>>,
}

impl NotifyHandle {
    /// The notifiers' live status.
    pub fn status(&self) -> Arc<NotifyStatus> {
        self.status.clone()
    }

    /// Builds the daily report now and puts it into the outbox (`POST /api/v1/report/send`).
    /// `Ok` holds the subject; `Err` says why not (email not configured, store error).
    pub async fn send_report_now(&self) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.report_now
            .send(tx)
            .await
            .map_err(|_| "medic is stopping".to_string())?;
        rx.await.map_err(|_| "medic is stopping".to_string())?
    }
}

/// Everything the tasks share.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The notifiers' settings.
    pub settings: Arc<NotifySettings>,
    /// The outbox, inbox, limits and history.
    pub store: Arc<Store>,
    /// What `/health/detailed` reads.
    pub status: Arc<NotifyStatus>,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// The stack's name.
    pub stack: StackName,
    /// The components watched now.
    pub components: ComponentNames,
    /// Wakes the delivery loop when the outbox has something new.
    pub wake: Arc<Notify>,
}

impl Shared {
    fn render_context(&self) -> RenderContext {
        RenderContext {
            stack: (self.stack)(),
            tz: self.settings.tz,
            public_url: self.settings.public_url.clone(),
            alert_interval: self.settings.alert_interval,
            now: self.clock.now(),
        }
    }
}

/// Starts the notifier: rounds, delivery and the report, each a task on `tracker` that stops
/// with `shutdown`. Fails only when the mail settings cannot make a mailer (a bad CA file).
pub fn spawn(
    settings: NotifySettings,
    store: Arc<Store>,
    context: NotifyContext,
    alerts: mpsc::Receiver<Incoming>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<NotifyHandle, ConfigError> {
    let mailer = settings.mail.as_ref().map(Mailer::new).transpose()?;
    let status = Arc::new(NotifyStatus::new(
        mailer.as_ref().map(|m| m.server().to_string()),
        settings
            .webhook
            .as_ref()
            .map(|w| w.url.host_str().unwrap_or("?").to_string()),
    ));
    if mailer.is_none() {
        info!("email is not configured (no MAIL_SERVER): alerts are logged and kept in history");
    }
    let shared = Shared {
        settings: Arc::new(settings),
        store,
        status: status.clone(),
        clock: context.clock,
        stack: context.stack,
        components: context.components,
        wake: Arc::new(Notify::new()),
    };
    let rounds = Rounds::new(shared.clone());
    tracker.spawn(rounds.run(alerts, shutdown.clone()));
    let outbox_identity = match shared.store.outbox_identity() {
        Ok(identity) => Some(identity),
        Err(e) => {
            warn!(
                error = %format!("{e:#}"),
                "cannot read this database's name: each attempt at an email gets a new \
                 Message-ID, so a copy sent again after a crash will not show as the same message"
            );
            None
        }
    };
    let delivery = Delivery {
        shared: shared.clone(),
        mailer,
        outbox_identity,
        http: reqwest::Client::new(),
    };
    tracker.spawn(delivery.run(shutdown.clone()));
    let (report_tx, report_rx) = mpsc::channel(4);
    tracker.spawn(ReportTask { shared }.run(report_rx, shutdown));
    Ok(NotifyHandle {
        status,
        report_now: report_tx,
    })
}

/// An alert on its way to the rounds: kept in the store's inbox by whoever raised it
/// ([`keep_alert`]), or not yet kept (then the rounds keep it as it arrives).
#[derive(Debug)]
pub struct Incoming {
    alert: Alert,
    /// Its row in the inbox; `None` when not kept yet or when keeping it failed.
    inbox_id: Option<i64>,
    kept: bool,
}

impl From<Alert> for Incoming {
    fn from(alert: Alert) -> Incoming {
        Incoming {
            alert,
            inbox_id: None,
            kept: false,
        }
    }
}

/// Writes `alert` to the store's inbox, so that from here on a crash cannot lose it (the rounds
/// pick up what the inbox holds when medic starts). The supervisor calls this before it saves
/// the state that says the alert was raised.
pub fn keep_alert(store: &Store, at: DateTime<Utc>, alert: Alert) -> Incoming {
    let id = serde_json::to_string(&alert)
        .map_err(anyhow::Error::from)
        .and_then(|json| store.inbox_push(at, &json));
    let inbox_id = match id {
        Ok(id) => Some(id),
        Err(e) => {
            error!(error = %format!("{e:#}"), "cannot keep the alert in the store");
            None
        }
    };
    Incoming {
        alert,
        inbox_id,
        kept: true,
    }
}

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

/// The outbox messages for one round: an email and a webhook, as configured.
fn messages(shared: &Shared, items: &[AlertItem], kind: &str) -> Vec<NewMessage> {
    let ctx = shared.render_context();
    let mut out = Vec::new();
    if shared.settings.mail.is_some() {
        let email = render::alert_email(items, &ctx);
        out.push(NewMessage {
            channel: Channel::Email,
            kind: kind.into(),
            subject: email.subject.clone(),
            payload: serde_json::to_string(&email).unwrap_or_default(),
        });
    }
    if let Some(hook) = &shared.settings.webhook {
        out.push(NewMessage {
            channel: Channel::Webhook,
            kind: kind.into(),
            subject: render::subject(items, &ctx.stack),
            payload: webhook::body(items, &ctx, hook.format).to_string(),
        });
    }
    out
}

fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// The wait before attempt `attempts + 1`: 2 s doubling, at most `max`.
pub fn backoff(attempts: u32, max: Duration) -> Duration {
    crate::backoff::Backoff::nth(Duration::from_secs(2), max, attempts)
}

/// Delivers the outbox.
struct Delivery {
    /// Settings, store, status, clock.
    shared: Shared,
    /// SMTP, when configured.
    mailer: Option<Mailer>,
    /// [`crate::store::Store::outbox_identity`], for Message-IDs that stay the same on every attempt.
    outbox_identity: Option<String>,
    /// For webhooks; reuses connections.
    http: reqwest::Client,
}

impl Delivery {
    fn channels(&self) -> Vec<Channel> {
        let mut c = Vec::new();
        if self.mailer.is_some() {
            c.push(Channel::Email);
        }
        if self.shared.settings.webhook.is_some() {
            c.push(Channel::Webhook);
        }
        c
    }

    fn refresh_depth(&self) {
        for channel in [Channel::Email, Channel::Webhook] {
            if let Ok(depth) = self.shared.store.outbox_depth(channel) {
                self.shared.status.set_depth(channel, depth);
            }
        }
    }

    async fn run(self, shutdown: CancellationToken) {
        let channels = self.channels();
        // The setting a permanent failure named may have been fixed since: one more try each.
        let now = self.shared.clock.now();
        match self.shared.store.outbox_requeue_failed(&channels, now - chrono::Duration::days(1), now) {
            Ok(0) => {}
            Ok(n) => info!(messages = n, "trying again the messages of the last 24 hours that failed permanently before this start"),
            Err(e) => error!(error = %format!("{e:#}"), "cannot read the outbox"),
        }
        let mut pruned_at: Option<tokio::time::Instant> = None;
        loop {
            if pruned_at.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                // Delivered messages older than a month go here at the latest; the store's hourly
                // pruning (store::retention) drops them after a day.
                let month_ago = self.shared.clock.now() - chrono::Duration::days(30);
                if let Err(e) = self.shared.store.outbox_prune_sent(month_ago) {
                    warn!(error = %format!("{e:#}"), "cannot prune the outbox");
                }
                pruned_at = Some(tokio::time::Instant::now());
            }
            self.refresh_depth();
            let next = self.shared.store.outbox_next(&channels);
            let wait = match next {
                Err(e) => {
                    error!(error = %format!("{e:#}"), "cannot read the outbox");
                    Some(Duration::from_secs(5))
                }
                Ok(None) => None,
                Ok(Some(message)) => {
                    let now = self.shared.clock.now();
                    if message.next_attempt_at > now {
                        Some(until(now, message.next_attempt_at))
                    } else {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = self.attempt(message) => {}
                        }
                        continue;
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(60))) => {}
            }
        }
    }

    /// One delivery attempt of one message, and its bookkeeping.
    async fn attempt(&self, message: OutboxMessage) {
        let result: Result<(), (String, bool)> = match message.channel {
            Channel::Email => match (
                &self.mailer,
                serde_json::from_str::<Email>(&message.payload),
            ) {
                (Some(mailer), Ok(email)) => {
                    let message_id = self
                        .outbox_identity
                        .as_deref()
                        .map(|identity| mailer.outbox_message_id(identity, message.id));
                    mailer
                        .send_as(&email, message_id.as_deref())
                        .await
                        .map_err(|e| (e.to_string(), e.is_transient()))
                }
                (None, _) => Err(("email is not configured".into(), true)),
                (_, Err(e)) => Err((format!("unreadable message in the outbox: {e}"), false)),
            },
            Channel::Webhook => match &self.shared.settings.webhook {
                Some(hook) => {
                    let key = self
                        .outbox_identity
                        .as_deref()
                        .map(|identity| format!("medic-{identity}-{}", message.id));
                    webhook::post(&self.http, hook, &message.payload, key.as_deref())
                        .await
                        .map_err(|e| (e.to_string(), e.transient))
                }
                None => Err(("no webhook is configured".into(), true)),
            },
        };
        let now = self.shared.clock.now();
        let channel = message.channel.as_str();
        let attempts = message.attempts + 1;
        let stored = match result {
            Ok(()) => {
                info!(id = message.id, %channel, subject = %message.subject, attempts, "delivered");
                self.shared.status.delivered(message.channel, now);
                self.shared.store.outbox_mark_sent(message.id, now)
            }
            Err((e, true)) => {
                let delay = backoff(attempts, self.shared.settings.retry_max);
                warn!(
                    id = message.id, %channel, subject = %message.subject, attempts, error = %e,
                    retry_in = %humantime::format_duration(delay),
                    "delivery failed; the message waits in the outbox and is tried again"
                );
                self.shared.status.failed(message.channel, now, &e, false);
                let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                self.shared
                    .store
                    .outbox_retry_at(message.id, attempts, next, &e)
            }
            Err((e, false)) => {
                error!(
                    id = message.id, %channel, subject = %message.subject, error = %e,
                    "delivery failed permanently: the message is kept in the outbox as failed; \
                     fix the setting the error names"
                );
                self.shared.status.failed(message.channel, now, &e, true);
                self.shared
                    .store
                    .outbox_mark_failed(message.id, attempts, &e)
            }
        };
        if let Err(e) = stored {
            error!(error = %format!("{e:#}"), "cannot update the outbox");
        }
    }
}

/// Schedules and builds the daily report.
pub(crate) struct ReportTask {
    /// Settings, store, status, clock.
    pub(crate) shared: Shared,
}

impl ReportTask {
    pub(crate) async fn run(
        self,
        mut requests: mpsc::Receiver<oneshot::Sender<Result<String, String>>>,
        shutdown: CancellationToken,
    ) {
        let settings = self.shared.settings.clone();
        let next_after = |t: DateTime<Utc>| {
            settings
                .report_cron
                .as_ref()
                .and_then(|c| report::next_report_after(t, c, settings.tz))
        };
        let mut due = next_after(self.shared.clock.now());
        loop {
            self.shared.status.set_next_report(due);
            // Wake at least every minute: wall time can jump (a suspended host, NTP).
            let wait = due.map(|d| until(self.shared.clock.now(), d).min(Duration::from_secs(60)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                request = requests.recv() => match request {
                    Some(reply) => { let _ = reply.send(self.enqueue("report")); }
                    None => return,
                },
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                    let now = self.shared.clock.now();
                    if let Some(d) = due.filter(|d| now >= *d) {
                        match self.enqueue("report") {
                            Ok(subject) => info!(%subject, "daily report written to the outbox"),
                            Err(e) => warn!("daily report not sent: {e}"),
                        }
                        due = next_after(d.max(now));
                    }
                }
            }
        }
    }

    /// Builds the report now and writes it to the outbox.
    pub(crate) fn enqueue(&self, kind: &str) -> Result<String, String> {
        if self.shared.settings.mail.is_none() {
            return Err("email is not configured: set MAIL_SERVER and ADMIN_EMAIL".into());
        }
        let now = self.shared.clock.now();
        let built = report::report_from_store(
            &self.shared.store,
            &(self.shared.stack)(),
            now,
            &(self.shared.components)(),
        )
        .map_err(|e| format!("cannot read the history for the report: {e:#}"))?;
        let email = report::report_email(
            &built,
            self.shared.settings.tz,
            self.shared.settings.public_url.as_deref(),
        );
        let message = NewMessage {
            channel: Channel::Email,
            kind: kind.into(),
            subject: email.subject.clone(),
            payload: serde_json::to_string(&email).map_err(|e| e.to_string())?,
        };
        self.shared
            .store
            .outbox_enqueue(now, &message)
            .map_err(|e| format!("cannot write the report to the outbox: {e:#}"))?;
        self.shared.wake.notify_one();
        Ok(email.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::settings::NotifySettings;
    use chrono::TimeZone;

    fn settings(pairs: &[(&str, &str)]) -> NotifySettings {
        let mut vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.entry("MAIL_SERVER".into())
            .or_insert("127.0.0.1".into());
        vars.entry("MAIL_PORT".into()).or_insert("1".into());
        vars.entry("MAIL_USE_TLS".into()).or_insert("false".into());
        vars.entry("ADMIN_EMAIL".into())
            .or_insert("ops@example.com".into());
        NotifySettings::from_vars(&vars).unwrap()
    }

    fn shared(store: Arc<Store>, settings: NotifySettings, clock: Arc<dyn Clock>) -> Shared {
        Shared {
            settings: Arc::new(settings),
            store,
            status: Arc::new(NotifyStatus::default()),
            clock,
            stack: Arc::new(|| "shop".to_string()),
            components: Arc::new(Vec::new),
            wake: Arc::new(Notify::new()),
        }
    }

    fn alert(kind: AlertKind, component: &str, at: DateTime<Utc>) -> Alert {
        Alert {
            kind,
            component: component.into(),
            check: "docker".into(),
            check_type: "docker".into(),
            status: "unhealthy".into(),
            error: Some("Docker reports it unhealthy".into()),
            consecutive_failures: 1,
            action: format!("restarted shop-{component}-1"),
            at,
        }
    }

    fn subjects(store: &Store) -> Vec<String> {
        let mut all: Vec<String> = store
            .outbox_recent(1000)
            .unwrap()
            .into_iter()
            .map(|m| m.subject)
            .collect();
        all.reverse();
        all
    }

    /// Two components failing within one group window: one email naming both.
    #[tokio::test(start_paused = true)]
    async fn alerts_of_one_round_make_one_email() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let clock = Arc::new(TokioClock::starting_at(t0));
        let rounds = Rounds::new(shared(store.clone(), settings(&[]), clock.clone()));
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(rounds.run(rx, stop.clone()));
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
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let clock = Arc::new(TokioClock::starting_at(t0));
        let rounds = Rounds::new(shared(store.clone(), settings(&[]), clock.clone()));
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(rounds.run(rx, stop.clone()));
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

    /// The report is written to the outbox when the cron fires in TZ, on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn the_report_goes_out_at_eight_in_berlin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        // 06:58 UTC in winter is 07:58 in Berlin: due at 07:00 UTC.
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 6, 58, 0).unwrap();
        let clock = Arc::new(TokioClock::starting_at(t0));
        let task = ReportTask {
            shared: shared(
                store.clone(),
                settings(&[("TZ", "Europe/Berlin")]),
                clock.clone(),
            ),
        };
        let status = task.shared.status.clone();
        let (_req_tx, req_rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(task.run(req_rx, stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            status.snapshot().next_report_at,
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap())
        );
        tokio::time::sleep(Duration::from_secs(110)).await;
        assert!(
            store.outbox_recent(10).unwrap().is_empty(),
            "not before 08:00 Berlin"
        );
        tokio::time::sleep(Duration::from_secs(15)).await;
        let sent = store.outbox_recent(10).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].subject, "✅ Daily Health Report - shop");
        assert_eq!(
            sent[0].created_at,
            Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap()
        );
        // The next one is a day later; nothing more meanwhile.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(store.outbox_recent(10).unwrap().len(), 1);
        assert_eq!(
            status.snapshot().next_report_at,
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap())
        );
        stop.cancel();
        handle.await.unwrap();
    }

    /// An outage that goes on is reminded of every MEDIC_REMINDER_INTERVAL, on tokio's paused
    /// clock; the recovery ends the reminders.
    #[tokio::test(start_paused = true)]
    async fn reminders_repeat_an_ongoing_outage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let clock = Arc::new(TokioClock::starting_at(t0));
        let rounds = Rounds::new(shared(
            store.clone(),
            settings(&[("MEDIC_REMINDER_INTERVAL", "4h")]),
            clock.clone(),
        ));
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(rounds.run(rx, stop.clone()));
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
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let json = serde_json::to_string(&alert(AlertKind::Critical, "web", t0)).unwrap();
        store.inbox_push(t0, &json).unwrap();
        let clock = Arc::new(TokioClock::starting_at(t0));
        let rounds = Rounds::new(shared(store.clone(), settings(&[]), clock));
        let (_tx, rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(rounds.run(rx, stop.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(subjects(&store), vec!["🚨 CRITICAL: web failure - shop"]);
        assert!(store.inbox_pending().unwrap().is_empty());
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let max = Duration::from_secs(300);
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 128, 256, 300]);
    }
}
