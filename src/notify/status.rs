//! What the notifiers report about themselves, for `/health/detailed` and `/metrics`: per
//! channel (keyed by its id, every channel of the registry), whether it is configured, the last
//! error, the outbox's depth.
//!
//! The notifier tasks write; HTTP handlers read a [`NotifySnapshot`] without touching the store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::outbox::{ChannelId, OutboxDepth};

/// One delivery channel as last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelStatus {
    /// True when its settings are given (`MAIL_SERVER`, `MEDIC_WEBHOOK_URL`, ...).
    pub configured: bool,
    /// `not_configured`, `ok` (last delivery worked, or none tried yet) or `failing` (the last
    /// attempt failed and none succeeded since).
    pub state: &'static str,
    /// Where it delivers: `host:port` of the SMTP server, or the webhook's host (never a
    /// password or a URL's path).
    pub target: Option<String>,
    /// When a message last went out.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last delivery error (never holds a secret).
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Whether the last error was permanent (a setting must change).
    pub last_error_permanent: bool,
    /// Messages waiting in the outbox, retries included.
    pub outbox_pending: u64,
    /// Messages given up on after a permanent error (kept in the store).
    pub outbox_failed: u64,
    /// Messages delivered since medic started.
    pub sent_total: u64,
}

/// Everything the notifiers report, as one value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NotifySnapshot {
    /// Every channel of the registry, configured or not, by id.
    pub channels: BTreeMap<ChannelId, ChannelStatus>,
    /// Alerts written to the outbox (in an email or webhook) since medic started.
    pub alerts_sent_total: u64,
    /// Alerts the rate limit held back since medic started.
    pub alerts_held_total: u64,
    /// When the next daily report is due.
    pub next_report_at: Option<DateTime<Utc>>,
}

/// Called with the new snapshot after every change (e.g. to mirror it into `/health/detailed`).
pub type Listener = Box<dyn Fn(&NotifySnapshot) + Send + Sync>;

/// Shared, live notifier status. Cheap to read; hold it in an `Arc`.
#[derive(Default)]
pub struct NotifyStatus {
    /// Told of every change.
    listener: RwLock<Option<Listener>>,
    /// Per-channel state.
    channels: RwLock<NotifySnapshot>,
    /// Counter behind [`NotifySnapshot::alerts_sent_total`].
    alerts_sent: AtomicU64,
    /// Counter behind [`NotifySnapshot::alerts_held_total`].
    alerts_held: AtomicU64,
}

impl std::fmt::Debug for NotifyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NotifyStatus")
            .field(&self.snapshot())
            .finish()
    }
}

impl NotifyStatus {
    /// Calls `listener` now and after every change.
    pub fn on_change(&self, listener: impl Fn(&NotifySnapshot) + Send + Sync + 'static) {
        listener(&self.snapshot());
        *self.listener.write().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(listener));
    }

    fn changed(&self) {
        let snapshot = self.snapshot();
        if let Some(listener) = self
            .listener
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            listener(&snapshot);
        }
    }

    /// A status of these channels: each with where it delivers when configured, else `None`.
    pub fn new(channels: impl IntoIterator<Item = (ChannelId, Option<String>)>) -> NotifyStatus {
        let channel = |target: Option<String>| ChannelStatus {
            configured: target.is_some(),
            state: if target.is_some() {
                "ok"
            } else {
                "not_configured"
            },
            target,
            ..Default::default()
        };
        NotifyStatus {
            channels: RwLock::new(NotifySnapshot {
                channels: channels
                    .into_iter()
                    .map(|(id, target)| (id, channel(target)))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Everything, now.
    pub fn snapshot(&self) -> NotifySnapshot {
        let mut snap = self.read().clone();
        snap.alerts_sent_total = self.alerts_sent.load(Ordering::Relaxed);
        snap.alerts_held_total = self.alerts_held.load(Ordering::Relaxed);
        snap
    }

    /// One channel; a channel it was not told of reads as not configured.
    pub fn channel(&self, id: ChannelId) -> ChannelStatus {
        self.read().channel(id)
    }

    /// Messages waiting in the outbox over every channel (for `/metrics`).
    pub fn outbox_depth(&self) -> u64 {
        self.read()
            .channels
            .values()
            .map(|c| c.outbox_pending)
            .sum()
    }

    pub(crate) fn add_alerts_sent(&self, n: u64) {
        self.alerts_sent.fetch_add(n, Ordering::Relaxed);
        self.changed();
    }

    pub(crate) fn add_alerts_held(&self, n: u64) {
        self.alerts_held.fetch_add(n, Ordering::Relaxed);
        self.changed();
    }

    pub(crate) fn set_next_report(&self, at: Option<DateTime<Utc>>) {
        self.write().next_report_at = at;
        self.changed();
    }

    pub(crate) fn set_depth(&self, channel: ChannelId, depth: OutboxDepth) {
        let mut s = self.write();
        let c = channel_mut(&mut s, channel);
        c.outbox_pending = depth.pending;
        c.outbox_failed = depth.failed;
        drop(s);
        self.changed();
    }

    pub(crate) fn delivered(&self, channel: ChannelId, at: DateTime<Utc>) {
        let mut s = self.write();
        let c = channel_mut(&mut s, channel);
        c.state = "ok";
        c.last_success_at = Some(at);
        c.sent_total += 1;
        drop(s);
        self.changed();
    }

    pub(crate) fn failed(
        &self,
        channel: ChannelId,
        at: DateTime<Utc>,
        error: &str,
        permanent: bool,
    ) {
        let mut s = self.write();
        let c = channel_mut(&mut s, channel);
        c.state = "failing";
        c.last_error = Some(error.to_string());
        c.last_error_at = Some(at);
        c.last_error_permanent = permanent;
        drop(s);
        self.changed();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, NotifySnapshot> {
        self.channels.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, NotifySnapshot> {
        self.channels.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn channel_mut(s: &mut NotifySnapshot, channel: ChannelId) -> &mut ChannelStatus {
    s.channels.entry(channel).or_insert_with(not_configured)
}

fn not_configured() -> ChannelStatus {
    ChannelStatus {
        state: "not_configured",
        ..Default::default()
    }
}

impl NotifySnapshot {
    /// One channel; a channel it does not hold reads as not configured.
    pub fn channel(&self, id: ChannelId) -> ChannelStatus {
        self.channels
            .get(&id)
            .cloned()
            .unwrap_or_else(not_configured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channels::{email::ID as EMAIL, webhook::ID as WEBHOOK};

    #[test]
    fn the_status_is_a_map_keyed_by_channel() {
        let status = NotifyStatus::new([(EMAIL, Some("mail:587".to_string())), (WEBHOOK, None)]);
        assert_eq!(status.channel(EMAIL).state, "ok");
        assert_eq!(status.channel(WEBHOOK).state, "not_configured");
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        status.failed(EMAIL, at, "535 no", true);
        status.set_depth(
            WEBHOOK,
            OutboxDepth {
                pending: 2,
                ..Default::default()
            },
        );
        let snap = status.snapshot();
        assert_eq!(snap.channel(EMAIL).state, "failing");
        assert_eq!(snap.channel(EMAIL).target.as_deref(), Some("mail:587"));
        assert_eq!(status.outbox_depth(), 2);
    }
}
