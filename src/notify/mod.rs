//! Telling people what happened: alerts through every configured channel (email, webhooks,
//! ...) with rate limits and a durable outbox.
//!
//! Data flows one way: the supervisor raises an [`Alert`] ([`event`]); [`rounds`] groups the
//! alerts of one round, asks the pure rate limit ([`limiter`]) about each, has every configured
//! [`Channel`] render what passes ([`render`] shapes it) and writes it to the store's outbox;
//! [`delivery`] sends from the outbox through the message's channel and marks each message
//! sent only once the server took it. [`channels`] lists the channels, one file each.
//! [`status`] is what `/health/detailed` shows about all of it. The daily report is
//! [`crate::report`]'s. docs/alerts.md is the user's guide.

pub mod channel;
pub mod channels;
pub mod cli;
pub mod delivery;
pub mod event;
pub mod limiter;
pub mod render;
pub mod rounds;
pub mod service;
pub mod settings;
pub mod status;

// The paths these had before channels had a file each.
pub use channels::{email, webhook};

pub use channel::{Channel, ChannelId};
pub use email::{Email, MailSettings, Mailer, SendError};
pub use event::{Alert, AlertKind};
pub use service::{
    keep_alert, spawn, Clock, ComponentNames, Incoming, NotifyContext, NotifyHandle, StackName,
    SystemClock, TokioClock,
};
pub use settings::{NotifySettings, NOTIFY_VARIABLES};
pub use status::{ChannelStatus, NotifySnapshot, NotifyStatus};
