//! Delivery from the outbox through each message's channel.
//!
//! One loop takes the outbox's next due message, hands it to its [`Channel`], and marks it sent
//! only after the server accepted it. Transient failures wait with exponential backoff (2 s
//! doubling up to `MEDIC_OUTBOX_RETRY_MAX`, or longer when the server asks); permanent ones are
//! logged at ERROR, kept as `failed` and shown in [`super::NotifyStatus`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::channel::{retry_delay, Channel, ChannelId, Failure, Outgoing};
use super::channels;
use super::service::{until, Shared};
use crate::store::outbox::OutboxMessage;

/// Delivers the outbox.
pub(crate) struct Delivery {
    /// Settings, store, status, clock.
    shared: Shared,
    /// [`crate::store::Store::outbox_identity`], for Message-IDs and idempotency keys that stay
    /// the same on every attempt.
    outbox_identity: Option<String>,
}

impl Delivery {
    pub(crate) fn new(shared: Shared, outbox_identity: Option<String>) -> Delivery {
        Delivery {
            shared,
            outbox_identity,
        }
    }

    /// The configured channels' ids: only their messages are taken from the outbox.
    fn channels(&self) -> Vec<ChannelId> {
        self.shared
            .settings
            .channels
            .iter()
            .map(|c| c.id())
            .collect()
    }

    fn refresh_depth(&self) {
        for kind in channels::REGISTRY {
            if let Ok(depth) = self.shared.store.outbox_depth(kind.id) {
                self.shared.status.set_depth(kind.id, depth);
            }
        }
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let channels = self.channels();
        // The setting a permanent failure named may have been fixed since: one more try each.
        let now = self.shared.clock.now();
        match self.shared.store.outbox_requeue_failed(&channels, now - chrono::Duration::days(1), now) {
            Ok(0) => {}
            Ok(n) => info!(messages = n, "trying again the messages of the last 24 hours that failed permanently before this start"),
            Err(e) => error!(error = %format!("{e:#}"), "cannot read the outbox"),
        }
        match self.shared.store.outbox_unknown_channels() {
            Ok(unknown) => {
                for (channel, messages) in unknown {
                    warn!(
                        %channel, messages,
                        "the outbox holds messages for a channel this medic does not know \
                         (a newer medic wrote them): they are kept, not sent"
                    );
                }
            }
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
        let configured: Option<&Arc<dyn Channel>> = self
            .shared
            .settings
            .channels
            .iter()
            .find(|c| c.id() == message.channel);
        let result = match configured {
            Some(channel) => {
                let outgoing = Outgoing {
                    id: message.id,
                    body: &message.payload,
                    identity: self.outbox_identity.as_deref(),
                };
                channel.deliver(outgoing).await
            }
            // Only configured channels' messages are taken; should one slip through, it waits.
            None => Err(Failure::new(
                format!("the channel {} is not configured", message.channel.as_str()),
                true,
            )),
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
            Err(failure) if failure.is_transient() => {
                let delay = retry_delay(&failure, attempts, self.shared.settings.retry_max);
                let e = failure.error;
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
            Err(Failure { error: e, .. }) => {
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
