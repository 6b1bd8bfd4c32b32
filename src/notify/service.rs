//! Starting the notifier and what its tasks share: the clock, the context the rest of medic
//! gives, and the handle it gets back.
//!
//! The tasks are [`super::rounds`] (alerts into the outbox), [`super::delivery`] (the outbox
//! out through each message's channel) and the daily report's schedule
//! ([`crate::report::schedule`]). Every task takes its time from a [`Clock`] and sleeps on
//! tokio's timer, so tests drive them with tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::channels::{self, email};
use super::delivery::Delivery;
use super::event::Alert;
use super::render::RenderContext;
use super::rounds::Rounds;
use super::settings::NotifySettings;
use super::status::NotifyStatus;
use crate::config::ConfigError;
use crate::report::schedule::ReportTask;
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
    pub(crate) fn render_context(&self) -> RenderContext {
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
/// with `shutdown`. The channels were set up (and their settings checked) with the settings.
pub fn spawn(
    settings: NotifySettings,
    store: Arc<Store>,
    context: NotifyContext,
    alerts: mpsc::Receiver<Incoming>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<NotifyHandle, ConfigError> {
    let status = Arc::new(NotifyStatus::new(channels::REGISTRY.iter().map(|kind| {
        let configured = settings.channels.iter().find(|c| c.id() == kind.id);
        (kind.id, configured.map(|c| c.target()))
    })));
    if !settings.channels.iter().any(|c| c.id() == email::ID) {
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
    let delivery = Delivery::new(shared.clone(), outbox_identity);
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
    /// The alert.
    pub(crate) alert: Alert,
    /// Its row in the inbox; `None` when not kept yet or when keeping it failed.
    pub(crate) inbox_id: Option<i64>,
    /// Whether [`keep_alert`] was called for it.
    pub(crate) kept: bool,
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

/// How long from `now` until `at` (zero when past).
pub(crate) fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// The wait before attempt `attempts + 1`: 2 s doubling, at most `max`.
pub fn backoff(attempts: u32, max: Duration) -> Duration {
    crate::backoff::Backoff::nth(Duration::from_secs(2), max, attempts)
}

/// What the notifier's task tests share: settings, a [`Shared`] on a store, alerts.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::notify::event::AlertKind;

    pub(crate) use crate::config::vars_of as vars;

    /// Settings with email to a closed local port, plus `pairs`.
    pub(crate) fn settings(pairs: &[(&str, &str)]) -> NotifySettings {
        let mut vars = vars(pairs);
        vars.entry("MAIL_SERVER".into())
            .or_insert("127.0.0.1".into());
        vars.entry("MAIL_PORT".into()).or_insert("1".into());
        vars.entry("MAIL_USE_TLS".into()).or_insert("false".into());
        vars.entry("ADMIN_EMAIL".into())
            .or_insert("ops@example.com".into());
        NotifySettings::from_vars(&vars).unwrap()
    }

    pub(crate) fn shared(
        store: Arc<Store>,
        settings: NotifySettings,
        clock: Arc<dyn Clock>,
    ) -> Shared {
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

    pub(crate) fn alert(kind: AlertKind, component: &str, at: DateTime<Utc>) -> Alert {
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

    pub(crate) fn subjects(store: &Store) -> Vec<String> {
        let mut all: Vec<String> = store
            .outbox_recent(1000)
            .unwrap()
            .into_iter()
            .map(|m| m.subject)
            .collect();
        all.reverse();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let max = Duration::from_secs(300);
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 128, 256, 300]);
    }
}
