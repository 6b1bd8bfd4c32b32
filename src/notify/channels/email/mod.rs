//! The email channel: alerts as SMTP messages to `ADMIN_EMAIL` ([`settings`] reads the
//! variables, [`smtp`] holds the conversation). The daily report and `medic test-email` go
//! by email too, through the same [`Mailer`].

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::Kind;
use crate::config::ConfigError;
use crate::notify::channel::{Channel, ChannelId, Failure, Outgoing, Payload};
use crate::notify::render::{self, AlertItem, RenderContext};

pub mod settings;
pub mod smtp;

pub use settings::{
    Credentials, MailSettings, Mailbox, PrivateCa, Secret, Security, DEFAULT_PORT, DEFAULT_TIMEOUT,
    IMPLICIT_TLS_PORT, MAIL_VARIABLES,
};
pub use smtp::{Email, Mailer, SendError};

/// The email channel's id in the outbox.
pub const ID: ChannelId = ChannelId::new("email");

/// The registry's entry.
pub const KIND: Kind = Kind {
    id: ID,
    variables: MAIL_VARIABLES,
    configure,
};

/// Email to the recipients of [`MailSettings`].
#[derive(Debug, Clone)]
pub struct EmailChannel {
    /// Sends with the mail settings.
    pub mailer: Mailer,
}

fn configure(vars: &HashMap<String, String>) -> Result<Option<Arc<dyn Channel>>, ConfigError> {
    Ok(match MailSettings::from_vars(vars)? {
        Some(mail) => Some(Arc::new(EmailChannel {
            mailer: Mailer::new(&mail)?,
        })),
        None => None,
    })
}

impl Channel for EmailChannel {
    fn id(&self) -> ChannelId {
        ID
    }

    fn target(&self) -> String {
        self.mailer.server().to_string()
    }

    fn render(&self, items: &[AlertItem], ctx: &RenderContext) -> Payload {
        let email = render::alert_email(items, ctx);
        Payload {
            subject: email.subject.clone(),
            body: serde_json::to_string(&email).unwrap_or_default(),
        }
    }

    fn deliver<'a>(&'a self, message: Outgoing<'a>) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let email: Email = serde_json::from_str(message.body).map_err(|e| {
                Failure::new(format!("unreadable message in the outbox: {e}"), false)
            })?;
            let message_id = message
                .identity
                .map(|identity| self.mailer.outbox_message_id(identity, message.id));
            self.mailer
                .send_as(&email, message_id.as_deref())
                .await
                .map_err(|e| Failure::new(e.to_string(), e.is_transient()))
        })
    }
}
