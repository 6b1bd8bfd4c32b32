//! `demo-worker`: consumes upload jobs, extracts the text, stores it.
//!
//! One job is one step ([`process_job`]) so a test can run exactly one. Around it, [`Worker::run`]
//! keeps a RabbitMQ session alive: it reconnects with backoff whenever the connection drops, never
//! exits on a lost service, and obeys the fault switch ([`Fault`]) between and during jobs.

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use mongodb::bson::oid::ObjectId;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::WorkerSettings;
use crate::extract::extract_text;
use crate::fault::Fault;
use crate::mask::mask_uri;
use crate::queue::{self, Job};
use crate::store::{Outcome, Store};

/// How often an idle worker checks that its connection is still up.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// Jobs a worker holds unacknowledged at once: one, so a hung job holds back only itself.
const PREFETCH: u16 = 1;

/// How one job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Text extracted and stored; status `done`.
    Done,
    /// Not plain text; status `failed` with this reason.
    Failed(String),
    /// The document was deleted before or while the job ran: nothing to do.
    Missing,
    /// The message is not a job (bad JSON or id): dropped, retrying cannot help.
    Invalid(String),
}

/// Runs one job: reads the document, extracts its text, stores the result.
///
/// `Err` means MongoDB could not be reached: the job should be retried later.
pub async fn process_job(store: &Store, payload: &[u8]) -> anyhow::Result<JobOutcome> {
    let job: Job = match serde_json::from_slice(payload) {
        Ok(job) => job,
        Err(error) => return Ok(JobOutcome::Invalid(format!("not a job message: {error}"))),
    };
    let Ok(id) = ObjectId::parse_str(&job.id) else {
        return Ok(JobOutcome::Invalid(format!(
            "not a document id: {:?}",
            job.id
        )));
    };
    let Some(record) = store.record(id).await? else {
        return Ok(JobOutcome::Missing);
    };
    if !store.mark_processing(id).await? {
        return Ok(JobOutcome::Missing);
    }
    let outcome = match extract_text(&record.content.bytes) {
        Ok(text) => Outcome::Done(text),
        Err(unsupported) => Outcome::Failed(unsupported.to_string()),
    };
    if !store.finish(id, &outcome).await? {
        return Ok(JobOutcome::Missing);
    }
    Ok(match outcome {
        Outcome::Done(_) => JobOutcome::Done,
        Outcome::Failed(reason) => JobOutcome::Failed(reason),
    })
}

/// What the worker is doing, shared with its admin API.
#[derive(Debug)]
pub struct WorkerState {
    /// The fault switch; watchers react as soon as it moves.
    fault: watch::Sender<Fault>,
    /// A RabbitMQ connection and channel are open.
    connected: AtomicBool,
    /// A consumer is registered on the queue.
    consuming: AtomicBool,
    /// Stuck on a job because of the `hang` fault.
    hanging: AtomicBool,
    /// Jobs finished with status `done` since start.
    processed: AtomicU64,
    /// Jobs finished with status `failed` since start.
    failed: AtomicU64,
}

/// A snapshot of [`WorkerState`], as `GET /health` on the admin port shows it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    /// Always `ok`: the process is up. Whether it works is what the other fields (and medic) tell.
    pub status: &'static str,
    /// Fault switch position.
    pub fault: String,
    /// `connected` or `disconnected`.
    pub rabbitmq: &'static str,
    /// Whether a consumer is registered on the queue.
    pub consuming: bool,
    /// Whether it is stuck on a job (fault `hang`).
    pub hanging: bool,
    /// Jobs finished with status `done` since start.
    pub processed: u64,
    /// Jobs finished with status `failed` since start.
    pub failed: u64,
}

impl WorkerState {
    /// A fresh state with the switch at `fault`.
    pub fn new(fault: Fault) -> Self {
        Self {
            fault: watch::Sender::new(fault),
            connected: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
            hanging: AtomicBool::new(false),
            processed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The switch position.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Moves the switch; returns where it was.
    pub fn set_fault(&self, fault: Fault) -> Fault {
        self.fault.send_replace(fault)
    }

    /// A receiver that wakes on each move of the switch.
    pub fn watch_fault(&self) -> watch::Receiver<Fault> {
        self.fault.subscribe()
    }

    /// What the worker is doing now.
    pub fn status(&self) -> WorkerStatus {
        WorkerStatus {
            status: "ok",
            fault: self.fault().to_string(),
            rabbitmq: if self.connected.load(Ordering::Relaxed) {
                "connected"
            } else {
                "disconnected"
            },
            consuming: self.consuming.load(Ordering::Relaxed),
            hanging: self.hanging.load(Ordering::Relaxed),
            processed: self.processed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// The consumer loop.
pub struct Worker {
    /// Where RabbitMQ is and which queue to consume.
    settings: WorkerSettings,
    /// Where documents are.
    store: Store,
    /// Fault switch and status, shared with the admin API.
    state: Arc<WorkerState>,
}

impl Worker {
    /// A worker consuming `settings`' queue into `store`.
    pub fn new(settings: WorkerSettings, store: Store, state: Arc<WorkerState>) -> Self {
        Self {
            settings,
            store,
            state,
        }
    }

    /// Consumes until `shutdown` is cancelled, reconnecting with backoff whenever RabbitMQ
    /// goes away. Never returns early on a lost connection.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            let result = self.session(&shutdown, &mut backoff).await;
            self.state.connected.store(false, Ordering::Relaxed);
            self.state.consuming.store(false, Ordering::Relaxed);
            if let Err(error) = result {
                let delay = backoff.next_delay();
                tracing::warn!(error = %format!("{error:#}"), retry_in = ?delay, "RabbitMQ session ended; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
        tracing::info!("worker stopped");
    }

    /// One connection's life: `Ok` only when shutting down.
    async fn session(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> anyhow::Result<()> {
        let connection =
            queue::connect(&self.settings.backends.rabbitmq_url, "demo-worker").await?;
        let result = self.consume_on(&connection, shutdown, backoff).await;
        if connection.status().connected() {
            let _ = connection.close(200, "demo-worker stopping".into()).await;
        }
        result
    }

    async fn consume_on(
        &self,
        connection: &Connection,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> anyhow::Result<()> {
        let queue_name = self.settings.backends.upload_queue.as_str();
        let channel = connection
            .create_channel()
            .await
            .context("cannot open a RabbitMQ channel")?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .context("cannot set the prefetch count")?;
        queue::declare(&channel, queue_name).await?;
        backoff.reset();
        self.state.connected.store(true, Ordering::Relaxed);
        tracing::info!(
            rabbitmq = %mask_uri(&self.settings.backends.rabbitmq_url),
            queue = queue_name,
            "connected to RabbitMQ"
        );

        let mut faults = self.state.watch_fault();
        let mut job_backoff = Backoff::default();
        let mut generation = 0u32;
        loop {
            if self.state.fault() == Fault::StopConsuming {
                tracing::warn!(
                    "fault switch `stop-consuming`: not consuming; the process stays up"
                );
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = faults.changed() => {
                            if self.state.fault() != Fault::StopConsuming {
                                break;
                            }
                        }
                        _ = tokio::time::sleep(LIVENESS_CHECK) => {
                            if !connection.status().connected() {
                                bail!("RabbitMQ connection lost");
                            }
                        }
                    }
                }
            }

            generation += 1;
            let tag = format!("demo-worker-{}-{generation}", std::process::id());
            let mut consumer = channel
                .basic_consume(
                    queue_name.into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("cannot consume from the queue {queue_name:?}"))?;
            self.state.consuming.store(true, Ordering::Relaxed);
            tracing::info!(queue = queue_name, consumer = %tag, "consuming");

            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = faults.changed() => {}
                    delivery = consumer.next() => match delivery {
                        None => bail!("RabbitMQ cancelled the consumer (was the queue deleted?)"),
                        Some(Err(error)) => return Err(anyhow!(error)).context("consuming failed"),
                        Some(Ok(delivery)) => {
                            self.handle(delivery, &mut faults, shutdown, &mut job_backoff).await?;
                        }
                    },
                }
                // Checked after every event, not only on a change notification: a change seen
                // while hanging on a job was consumed there.
                if self.state.fault() == Fault::StopConsuming {
                    channel
                        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                        .await
                        .context("cannot cancel the consumer")?;
                    requeue_prefetched(&mut consumer).await;
                    self.state.consuming.store(false, Ordering::Relaxed);
                    break;
                }
            }
        }
    }

    /// Handles one delivery: hangs first if the switch says so, then runs the job and
    /// acknowledges it. `Err` only when RabbitMQ is gone (the session must restart).
    async fn handle(
        &self,
        delivery: Delivery,
        faults: &mut watch::Receiver<Fault>,
        shutdown: &CancellationToken,
        job_backoff: &mut Backoff,
    ) -> anyhow::Result<()> {
        let job = String::from_utf8_lossy(&delivery.data).into_owned();
        if self.state.fault() == Fault::Hang {
            self.state.hanging.store(true, Ordering::Relaxed);
            tracing::warn!(%job, "fault switch `hang`: stuck on this job until the switch moves");
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        // Unacknowledged: RabbitMQ requeues it when the connection closes.
                        self.state.hanging.store(false, Ordering::Relaxed);
                        return Ok(());
                    }
                    _ = faults.changed() => {
                        if self.state.fault() != Fault::Hang {
                            break;
                        }
                    }
                }
            }
            self.state.hanging.store(false, Ordering::Relaxed);
            tracing::info!(%job, "hang released; processing the job");
        }

        match process_job(&self.store, &delivery.data).await {
            Ok(outcome) => {
                job_backoff.reset();
                match &outcome {
                    JobOutcome::Done => {
                        self.state.processed.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%job, "text extracted; document done");
                    }
                    JobOutcome::Failed(reason) => {
                        self.state.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%job, %reason, "no text extracted; document failed");
                    }
                    JobOutcome::Missing => {
                        tracing::info!(%job, "document deleted before processing; job dropped");
                    }
                    JobOutcome::Invalid(reason) => {
                        tracing::warn!(%job, %reason, "invalid job dropped");
                    }
                }
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .context("cannot acknowledge the job")?;
            }
            Err(error) => {
                // MongoDB is down: give the job back after a pause, so it is retried once the
                // database is back instead of being lost or spun on.
                let delay = job_backoff.next_delay();
                tracing::warn!(%job, error = %format!("{error:#}"), retry_in = ?delay, "job failed; requeueing");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
                    .context("cannot requeue the job")?;
            }
        }
        Ok(())
    }
}

/// After a cancel, gives back any delivery that arrived before the cancel took effect, so it
/// counts as ready in the queue instead of sitting unacknowledged on an idle channel.
async fn requeue_prefetched(consumer: &mut Consumer) {
    let drain = async {
        while let Some(Ok(delivery)) = consumer.next().await {
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}
