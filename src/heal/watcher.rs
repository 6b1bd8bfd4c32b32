//! The watcher: keeps a connection to the engine (reconnecting with backoff when it goes away),
//! discovers which containers are medic's, forwards container events as they happen, and lists
//! every watched container on each reconcile tick and right after every (re)connect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::runner::{Message, SupervisorSettings};
use crate::backoff::Backoff;
use crate::docker::scope::Scope;
use crate::docker::{Denials, Engine, EngineError};
use crate::status::{DockerStatus, Status};

pub(super) struct Watcher {
    pub(super) engine: Arc<dyn Engine>,
    /// Calls a socket proxy denied, each reported once (shared with the restart tasks).
    pub(super) denials: Arc<Denials>,
    pub(super) status: Arc<Status>,
    pub(super) tx: mpsc::Sender<Message>,
    pub(super) settings: SupervisorSettings,
    pub(super) scope_tx: tokio::sync::watch::Sender<Option<Scope>>,
    /// Finds medic's own container id from what the kernel shows (a test says what it shows).
    pub(super) own_container: fn() -> Option<String>,
}

impl Watcher {
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        // For calls that fail while the engine answers (a proxy's denial): not reset by a
        // successful `version()`, so a refusal that lasts is asked about every 30 s at most.
        let mut refused_backoff = backoff.clone();
        let mut was_connected = false;
        loop {
            let version = tokio::select! {
                _ = shutdown.cancelled() => return,
                v = self.engine.version() => v,
            };
            let version = match version {
                Ok(v) => v,
                Err(e) => {
                    self.status.set_docker(DockerStatus {
                        reachable: false,
                        error: Some(e.to_string()),
                        ..self.status.docker()
                    });
                    let delay = backoff.next_delay();
                    if !self.denials.report(&e) {
                        warn!(error = %e, retry_in = %humantime::format_duration(delay), "cannot reach the Docker engine; retrying");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            };
            backoff.reset();
            info!(
                engine = %version.kind,
                version = %version.version,
                api = %version.api_version,
                reconnected = was_connected,
                "connected to the {} engine {}",
                version.kind.short(),
                version.version
            );
            if was_connected {
                let _ = self.tx.send(Message::Reconnected).await;
            }
            was_connected = true;
            self.status.set_docker(DockerStatus {
                reachable: true,
                engine: Some(version.kind.to_string()),
                version: Some(version.version.clone()),
                api_version: Some(version.api_version.clone()),
                error: None,
            });
            if self.scope_tx.borrow().is_none() {
                match self.discover_scope().await {
                    Ok(scope) => {
                        self.status.set_project(scope.project.clone());
                        self.scope_tx.send_replace(Some(scope));
                    }
                    Err(e) => {
                        let delay = refused_backoff.next_delay();
                        if !self.denials.report(&e) {
                            warn!(error = %e, retry_in = %humantime::format_duration(delay), "cannot inspect medic's own container yet; retrying");
                        }
                        // The engine answered, so this is no outage: wait before asking again
                        // rather than spinning on a call that keeps failing.
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        continue;
                    }
                }
            }
            let scope = self.scope_tx.borrow().clone().unwrap_or_default();
            if let Err(e) = self.follow(&scope, &shutdown).await {
                self.status.set_docker(DockerStatus {
                    reachable: false,
                    error: Some(e.to_string()),
                    ..self.status.docker()
                });
                if self.denials.report(&e) {
                    // The proxy refuses the container list: nothing heals until someone
                    // changes its rules, so ask again slowly instead of reconnecting hot.
                    if !refused_backoff.wait(&shutdown).await {
                        return;
                    }
                    continue;
                }
                error!(error = %e, "lost the Docker engine; reconnecting");
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Finds medic's own container and the project to watch.
    async fn discover_scope(&self) -> Result<Scope, EngineError> {
        let scope = crate::docker::scope::discover_from(
            self.engine.as_ref(),
            self.settings.project.clone(),
            (self.own_container)(),
        )
        .await?;
        let (project, own_id) = (scope.project.clone(), scope.own_id.clone());
        match (&project, &own_id) {
            (Some(p), Some(own)) => info!(project = %p, own_container = %own, "watching compose project {p} and containers labelled medic.enable=true"),
            (Some(p), None) => info!(project = %p, "watching compose project {p} and containers labelled medic.enable=true"),
            (None, Some(own)) => info!(own_container = %own, "medic's container is in no compose project: watching containers labelled medic.enable=true"),
            (None, None) => info!("not running in a container and MEDIC_PROJECT is unset: watching containers labelled medic.enable=true"),
        }
        Ok(Scope { project, own_id })
    }

    /// Forwards events and reconciles until the engine goes away or shutdown.
    async fn follow(&self, scope: &Scope, shutdown: &CancellationToken) -> Result<(), EngineError> {
        // Subscribe first, then list, so nothing that happens in between is missed.
        let mut events = self.engine.events();
        self.reconcile(scope).await?;
        let mut tick = tokio::time::interval(self.settings.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        if self.tx.send(Message::Event(event)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Some(Err(e)) if self.denials.report(&e) => {
                        // Without events, the reconcile alone finds what turned unhealthy: a
                        // reconcile interval late, but healing goes on.
                        info!(
                            every = %humantime::format_duration(self.settings.reconcile_interval),
                            "no Docker events through the socket proxy: finding changes by listing containers"
                        );
                        events = futures_util::stream::pending().boxed();
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Err(EngineError::Unreachable("the event stream ended".into())),
                },
                _ = tick.tick() => self.reconcile(scope).await?,
            }
        }
    }

    async fn reconcile(&self, scope: &Scope) -> Result<(), EngineError> {
        let containers = self.engine.list_labelled(&scope.label_filters()).await?;
        debug!(count = containers.len(), "reconciled");
        let _ = self.tx.send(Message::Snapshot(containers)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::ScriptedEngine;
    use super::*;

    /// A scope discovery that keeps failing while the engine answers is asked again after
    /// pauses that grow (src/backoff.rs), not in a tight loop against the engine.
    #[tokio::test(start_paused = true)]
    async fn failing_scope_discovery_is_retried_with_pauses() {
        fn own() -> Option<String> {
            Some("f".repeat(64))
        }
        let (engine, _events) = ScriptedEngine::new(Vec::new());
        engine.inspect_fails.lock().unwrap().push("f".repeat(64));
        let engine = Arc::new(engine);
        let (tx, _rx) = mpsc::channel(64);
        let (scope_tx, _scope_rx) = tokio::sync::watch::channel(None);
        let shutdown = CancellationToken::new();
        let watcher = Watcher {
            engine: engine.clone(),
            denials: Arc::new(Denials::default()),
            status: Arc::new(Status::new(Duration::from_secs(60))),
            tx,
            settings: super::super::SupervisorSettings {
                project: Some("shop".into()),
                healing: super::super::scripted::healing(),
                reconcile_interval: Duration::from_secs(30),
                file_probes: Vec::new(),
                docker_host: None,
                label_variables: Default::default(),
            },
            scope_tx,
            own_container: own,
        };
        let task = tokio::spawn(watcher.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        shutdown.cancel();
        task.await.unwrap();
        let calls = engine.inspected.lock().unwrap().clone();
        let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].1 - w[0].1).collect();
        // 0.5 s, 1 s, 2 s, 4 s within 10 s: five calls, each pause twice the one before.
        assert_eq!(
            gaps,
            vec![
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4),
            ],
            "{} calls",
            calls.len()
        );
    }
}
