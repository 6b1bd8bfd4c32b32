//! The one interface every notification channel implements, so that a channel is one file
//! (`channels/<name>.rs`) and one line of [`super::channels::REGISTRY`].
//!
//! A channel turns a round of alerts into its own payload when the round is written to the
//! outbox ([`Channel::render`]), and later delivers that payload from the outbox
//! ([`Channel::deliver`]), saying whether a failure is worth another try ([`Failure`]). Rate
//! limits, grouping, the outbox, retries and the status stay with the notifier, the same for
//! every channel.

use std::any::Any;
use std::fmt::Debug;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::render::{AlertItem, RenderContext};
pub use crate::store::outbox::ChannelId;

/// A round of alerts rendered into one channel's payload, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The subject (email) or a one-line summary, for logs and listings.
    pub subject: String,
    /// What [`Channel::deliver`] is given back: the email as JSON, the webhook's body, ...
    pub body: String,
}

/// One message taken from the outbox for a delivery attempt.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The outbox row's id: with `identity` it names the message across attempts.
    pub id: i64,
    /// The payload [`Channel::render`] made.
    pub body: &'a str,
    /// The database's name ([`crate::store::Store::outbox_identity`]), so every attempt at
    /// one message carries the same Message-ID or idempotency key; `None` when unreadable.
    pub identity: Option<&'a str>,
}

/// What to do after a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again with the outbox's backoff (network errors, 5xx, SMTP 4xx).
    Backoff,
    /// The server said when to come back (`Retry-After`): not before this long.
    After(Duration),
    /// Trying again cannot help until a setting changes: keep the message as failed.
    Never,
}

/// Why a delivery failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What happened, for logs and the status (never holds a secret).
    pub error: String,
    /// What the outbox does next.
    pub retry: Retry,
}

impl Failure {
    /// A failure that may pass ([`Retry::Backoff`]) or not ([`Retry::Never`]).
    pub fn new(error: impl Into<String>, transient: bool) -> Failure {
        Failure {
            error: error.into(),
            retry: if transient {
                Retry::Backoff
            } else {
                Retry::Never
            },
        }
    }

    /// Whether another attempt can succeed without a change of settings.
    pub fn is_transient(&self) -> bool {
        self.retry != Retry::Never
    }
}

/// One configured notification channel (email, a webhook, ...).
///
/// Implementations are built from the environment by their registry entry
/// ([`super::channels::Kind::configure`]), which also validates their settings.
pub trait Channel: Any + Debug + Send + Sync {
    /// The id the outbox stores and the status is keyed by (`email`, `webhook`).
    fn id(&self) -> ChannelId;

    /// Where it delivers, for `/health/detailed`: a host, never a secret.
    fn target(&self) -> String;

    /// Renders one round of alerts into this channel's payload.
    fn render(&self, items: &[AlertItem], ctx: &RenderContext) -> Payload;

    /// Delivers one payload. `Ok` only once the server accepted it.
    fn deliver<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<(), Failure>>;
}

/// The wait before attempt `attempts + 1` after `failure`: the outbox's backoff (2 s
/// doubling, at most `max`), or the server's own wait when it named a longer one.
pub fn retry_delay(failure: &Failure, attempts: u32, max: Duration) -> Duration {
    let backoff = super::service::backoff(attempts, max);
    match failure.retry {
        Retry::After(wait) => wait.max(backoff),
        Retry::Backoff | Retry::Never => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_retry_after_is_honoured_when_longer_than_the_backoff() {
        let max = Duration::from_secs(300);
        let after = |secs| Failure {
            error: "429".into(),
            retry: Retry::After(Duration::from_secs(secs)),
        };
        assert_eq!(retry_delay(&after(3600), 1, max), Duration::from_secs(3600));
        assert_eq!(retry_delay(&after(1), 3, max), Duration::from_secs(8));
        assert_eq!(
            retry_delay(&Failure::new("down", true), 9, max),
            Duration::from_secs(300)
        );
        assert!(!Failure::new("535", false).is_transient());
    }
}
