//! Every notification channel medic knows, one file each, listed once in [`REGISTRY`].
//!
//! Adding a channel (ntfy, Discord, PagerDuty, ...) is a new file here that implements
//! [`Channel`] and exports a [`Kind`], and one line in [`REGISTRY`]: the settings, the outbox,
//! the delivery loop, the status and the known-variable list all read the registry.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::channel::{Channel, ChannelId};
use crate::config::ConfigError;

pub mod email;
pub mod webhook;

/// How a kind of channel is set up from the variables: `Ok(None)` when not configured.
pub type Configure = fn(&HashMap<String, String>) -> Result<Option<Arc<dyn Channel>>, ConfigError>;

/// One kind of channel: its id, the variables it reads, and how it is set up from them.
pub struct Kind {
    /// The id the outbox stores (`email`, `webhook`).
    pub id: ChannelId,
    /// Every variable `configure` reads, so a typo of one can be pointed out.
    pub variables: &'static [&'static str],
    /// Reads and validates the channel's settings; `Ok(None)` when it is not configured.
    pub configure: Configure,
}

/// The channels, in the order a round's messages are written (email first, as before).
pub const REGISTRY: &[Kind] = &[email::KIND, webhook::KIND];

/// The registry's id for `text`, if any.
pub fn known(text: &str) -> Option<ChannelId> {
    REGISTRY.iter().map(|k| k.id).find(|id| id.as_str() == text)
}

/// Every channel's variables.
pub fn variables() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().flat_map(|k| k.variables.iter().copied())
}

/// Sets up every configured channel, in registry order.
pub fn configure(vars: &HashMap<String, String>) -> Result<Vec<Arc<dyn Channel>>, ConfigError> {
    let mut configured = Vec::new();
    for kind in REGISTRY {
        configured.extend((kind.configure)(vars)?);
    }
    Ok(configured)
}

/// One HTTP client for every channel that posts over HTTP: it reuses connections.
pub fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_known() {
        let mut ids: Vec<&str> = REGISTRY.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["email", "webhook"]);
        ids.dedup();
        assert_eq!(ids.len(), REGISTRY.len());
        assert_eq!(known("webhook").map(ChannelId::as_str), Some("webhook"));
        assert_eq!(known("pager"), None);
    }
}
