//! Builds the daemon from settings and runs it until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::Settings;
use crate::docker::Engine;
use crate::heal::{self, SupervisorSettings};
use crate::status::Status;
use crate::store::Store;

/// The running daemon: its HTTP address and the handles that stop it.
pub struct Application {
    /// The address the HTTP server listens on (port 0 resolved).
    local_addr: SocketAddr,
    /// Cancelled to stop every task.
    shutdown: CancellationToken,
    /// Every task, so stopping waits until each has finished.
    tracker: TaskTracker,
}

impl Application {
    /// Opens the store, binds the HTTP port and starts the loops. `settings` is the whole tree,
    /// read and validated before: nothing here reads the environment.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let file_probes = settings.file_probes().map_err(anyhow::Error::msg)?;
        let store = Arc::new(Store::open(&settings.data_dir)?);
        let engine: Arc<dyn Engine> = Arc::new(settings.engine()?);
        let status = Arc::new(Status::new(Duration::from_secs(30)));
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on MEDIC_LISTEN={}", settings.listen))?;
        let local_addr = listener.local_addr()?;

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (alerts_tx, alerts_rx) = tokio::sync::mpsc::channel(1024);
        let notify_settings = settings.notify.clone();
        let stack: crate::notify::StackName = {
            let (named, status) = (notify_settings.stack_name.clone(), status.clone());
            Arc::new(move || {
                named
                    .clone()
                    .or_else(|| status.project())
                    .unwrap_or_else(|| "medic".into())
            })
        };
        let components: crate::notify::ComponentNames = {
            let status = status.clone();
            Arc::new(move || status.components().keys().cloned().collect())
        };
        let notifier = crate::notify::spawn(
            notify_settings,
            store.clone(),
            crate::notify::NotifyContext {
                stack,
                components,
                clock: Arc::new(crate::notify::SystemClock),
            },
            alerts_rx,
            &tracker,
            shutdown.clone(),
        )?;
        crate::store::faults::spawn_integrity_check(
            store.clone(),
            settings.store_check_interval,
            &tracker,
            shutdown.clone(),
        );
        crate::store::retention::spawn_pruner(
            store.clone(),
            settings.retention,
            settings.healing.budget_window,
            &tracker,
            shutdown.clone(),
        );
        let commands = heal::spawn(
            SupervisorSettings {
                project: settings.project.clone(),
                healing: settings.healing.clone(),
                reconcile_interval: settings.reconcile_interval,
                file_probes,
                docker_host: settings.docker_host.clone(),
                label_variables: settings.label_variables.clone(),
            },
            engine,
            store.clone(),
            status.clone(),
            alerts_tx,
            &tracker,
            shutdown.clone(),
        )?
        .commands;
        let mirror = status.clone();
        notifier.status().on_change(move |n| {
            mirror
                .metrics
                .set_notifier_totals(n.alerts_sent_total, n.alerts_held_total);
            let email = n.channel(crate::notify::email::ID);
            mirror.set_email(crate::status::EmailStatus {
                configured: email.configured,
                last_error: email.last_error.filter(|_| email.state == "failing"),
                outbox_depth: Some(email.outbox_pending),
            })
        });
        let app = crate::api::router(crate::api::ApiState {
            status,
            store: Some(store.clone()),
            commands: Some(commands),
            token: settings.api_token.as_ref().map(|t| Arc::from(t.expose())),
            report: Some(Arc::new(notifier)),
            metrics_cache: Default::default(),
            page_cache: Default::default(),
        });
        // The HTTP server gets its own runtime and threads: the supervisor's store writes are
        // synchronous and briefly hold a worker of the main runtime, which showed as a
        // millisecond tail on /health (docs/http.md, Performance). Load balancers should not
        // wait for the brain.
        let listener = listener.into_std()?;
        let http_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("medic-http")
            .enable_all()
            .build()
            .context("cannot start the HTTP server's runtime")?;
        let stop = shutdown.clone();
        let http = settings.http;
        tracker.spawn_blocking(move || {
            http_runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => crate::api::server::serve(listener, app, http, stop).await,
                    Err(e) => tracing::error!(error = %e, "the HTTP server failed"),
                }
            });
        });
        tracker.close();
        info!(listen = %local_addr, data = %store.path().display(), "medic is running");
        Ok(Application {
            local_addr,
            shutdown,
            tracker,
        })
    }

    /// The HTTP server's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until `signal` resolves, then stops every task and waits for them.
    pub async fn run_until_stopped(self, signal: impl Future<Output = ()>) {
        signal.await;
        info!("stopping");
        self.shutdown.cancel();
        self.tracker.wait().await;
    }
}

/// `POST /api/v1/report/send`: the report goes through the outbox like the scheduled one.
#[async_trait::async_trait]
impl crate::api::ReportTrigger for crate::notify::NotifyHandle {
    async fn send_now(&self) -> Result<serde_json::Value, String> {
        let subject = self.send_report_now().await?;
        Ok(serde_json::json!({ "queued": true, "subject": subject }))
    }
}
