//! Telling people what happened: alert emails and webhooks with rate limits and a durable
//! outbox, and the daily report.
//!
//! Data flows one way: the supervisor raises an [`Alert`] ([`event`]); [`service`] groups the
//! alerts of one round, asks the pure rate limit ([`limiter`]) about each, renders what passes
//! ([`render`], [`webhook`]) and writes it to the store's outbox; its delivery loop sends from
//! the outbox through [`email`] (SMTP) or [`webhook`] and marks each message sent only once the
//! server took it. [`report`] builds and schedules the daily report. [`status`] is what
//! `/health/detailed` shows about all of it. docs/alerts.md is the user's guide.

pub mod cli;
pub mod email;
pub mod event;
pub mod limiter;
pub mod render;
pub mod report;
pub mod service;
pub mod settings;
pub mod status;
pub mod webhook;

pub use email::{Email, MailSettings, Mailer, SendError};
pub use event::{Alert, AlertKind};
pub use service::{
    keep_alert, spawn, Clock, ComponentNames, Incoming, NotifyContext, NotifyHandle, StackName,
    SystemClock, TokioClock,
};
pub use settings::{NotifySettings, NOTIFY_VARIABLES};
pub use status::{ChannelStatus, NotifySnapshot, NotifyStatus};
