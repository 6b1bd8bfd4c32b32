//! Telling people what happened: email now; webhooks, the outbox, rate limits and the daily
//! report build on it.
//!
//! [`email`] knows how to deliver one message through SMTP and nothing about alerts: what to
//! say, to whom and how often is decided above it, so delivery can be tested on its own against
//! real mail servers.

pub mod email;
pub mod event;

pub use email::{Email, MailSettings, Mailer, SendError};
pub use event::{Alert, AlertKind};
