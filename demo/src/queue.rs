//! Jobs on RabbitMQ: one persistent message `{"id": "<document id>"}` per upload, on a durable
//! queue (`uploads` unless `UPLOAD_QUEUE` says otherwise) that both programs declare, so either
//! may start first.

use anyhow::{anyhow, Context};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::Mutex;

use crate::mask::mask_uri;

/// How long opening a connection may take before it counts as failed (an unreachable host
/// would otherwise hang for the kernel's TCP timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a publish may wait for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// AMQP delivery mode 2: the broker writes the message to disk, so jobs survive its restart.
const PERSISTENT: u8 = 2;

/// The message the app publishes and the worker consumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Id of the document to process, as a 24-digit hex string.
    pub id: String,
}

/// Opens a connection named `name` (shown in RabbitMQ's management UI), within
/// [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(anyhow!(error))
            .with_context(|| format!("cannot connect to RabbitMQ at {}", mask_uri(url))),
        Err(_) => Err(anyhow!(
            "cannot connect to RabbitMQ at {}: no answer within {:?}",
            mask_uri(url),
            CONNECT_TIMEOUT
        )),
    }
}

/// Declares the durable job queue; returns its ready-message and consumer counts.
pub async fn declare(channel: &Channel, queue: &str) -> anyhow::Result<lapin::Queue> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot declare the queue {queue:?}"))
}

/// The app's side of the queue: publishes jobs over one lazily (re)opened connection.
///
/// No background task: the connection is opened on first use and reopened by the first
/// publish after it was lost, so the app recovers as soon as RabbitMQ is back, and a request
/// during an outage fails within [`CONNECT_TIMEOUT`].
pub struct Publisher {
    /// AMQP URI (may hold a password: only printed masked).
    url: String,
    /// Queue the jobs go to.
    queue: String,
    /// The open connection and its confirm-mode channel, if any.
    link: Mutex<Option<Link>>,
}

/// An open connection with a channel in publisher-confirm mode.
struct Link {
    /// Kept so the connection lives as long as its channel, and can be checked.
    connection: Connection,
    /// Publishes with confirms: a job counts as queued only once RabbitMQ has it.
    channel: Channel,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

impl Publisher {
    /// A publisher for `queue` on the broker at `url`; connects on first use.
    pub fn new(url: &str, queue: &str) -> Self {
        Self {
            url: url.to_owned(),
            queue: queue.to_owned(),
            link: Mutex::new(None),
        }
    }

    /// Queue the jobs go to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Opens the connection if it is not open; proves RabbitMQ is reachable.
    pub async fn ensure_connected(&self) -> anyhow::Result<()> {
        let mut link = self.link.lock().await;
        self.ensure_link(&mut link).await.map(|_| ())
    }

    /// Publishes `job` persistently and waits for RabbitMQ's confirm.
    ///
    /// A connection that broke since its last use may still look open; if publishing on a
    /// reused connection fails, it is replaced and the job published once more, so the first
    /// upload after a RabbitMQ restart does not fail. (Should the first attempt have reached
    /// the queue after all, the job runs twice, which is harmless: processing is idempotent.)
    pub async fn publish(&self, job: &Job) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(job)?;
        let mut link = self.link.lock().await;
        let reused = link.is_some();
        let channel = self.ensure_link(&mut link).await?.channel.clone();
        let mut result = self.publish_on(&channel, &payload).await;
        if result.is_err() {
            Self::discard(&mut link).await;
            if reused {
                tracing::warn!(rabbitmq = %mask_uri(&self.url), "publishing on the open connection failed; reconnecting");
                let channel = self.ensure_link(&mut link).await?.channel.clone();
                result = self.publish_on(&channel, &payload).await;
                if result.is_err() {
                    Self::discard(&mut link).await;
                }
            }
        }
        result
    }

    /// Drops the connection so the next use opens a fresh one.
    async fn discard(link: &mut Option<Link>) {
        if let Some(stale) = link.take() {
            let _ = stale.connection.close(0, "publish failed".into()).await;
        }
    }

    async fn publish_on(&self, channel: &Channel, payload: &[u8]) -> anyhow::Result<()> {
        let confirm = channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(PERSISTENT),
            )
            .await
            .context("cannot publish the job to RabbitMQ")?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| anyhow!("RabbitMQ did not confirm the job within {CONFIRM_TIMEOUT:?}"))?
            .context("RabbitMQ did not confirm the job")?;
        match confirmation {
            Confirmation::Ack(_) => Ok(()),
            Confirmation::Nack(_) => Err(anyhow!("RabbitMQ refused the job (nack)")),
            Confirmation::NotRequested => Err(anyhow!("publisher confirms are not enabled")),
        }
    }

    async fn ensure_link<'a>(&self, link: &'a mut Option<Link>) -> anyhow::Result<&'a Link> {
        if link.as_ref().is_some_and(|open| !open.usable()) {
            tracing::warn!(rabbitmq = %mask_uri(&self.url), "RabbitMQ connection lost; reconnecting");
            *link = None;
        }
        if link.is_none() {
            let connection = connect(&self.url, "demo-app").await?;
            let channel = connection
                .create_channel()
                .await
                .context("cannot open a RabbitMQ channel")?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .context("cannot enable publisher confirms")?;
            declare(&channel, &self.queue).await?;
            tracing::info!(rabbitmq = %mask_uri(&self.url), queue = %self.queue, "connected to RabbitMQ");
            *link = Some(Link {
                connection,
                channel,
            });
        }
        Ok(link.as_ref().expect("link was just opened"))
    }

    /// Closes the connection, if open: part of a clean shutdown.
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            let _ = link.connection.close(200, "demo-app stopping".into()).await;
        }
    }
}
