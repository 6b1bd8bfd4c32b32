//! The healing loop: turns engine events, probe results, restart completions and operator
//! commands into [`Observation`]s, runs them through [`decide::step`], and carries out the
//! effects in the order the step gives them (history, alerts kept before the state that says
//! they were raised, restarts on their own tasks). It also owns what is not a decision: the
//! probe scheduler, the views it publishes for the API, and the store's heartbeat.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};

use super::decide::{
    self, Effect, HealState, Now, Observation, ProbeRun, RestartOrder, RestartResult,
    INTERRUPTED_RESTART_WINDOW,
};
use super::restart::RestartTask;
use super::watcher::Watcher;
use crate::config::probes::LabelError;
use crate::config::HealingSettings;
use crate::docker::scope::Scope;
use crate::docker::{Container, Denials, Engine, EngineEvent};
use crate::model::{HistoryKind, ServiceKey, WorkloadId};
use crate::policy::{CheckState, Instant, ServiceState};
use crate::probe::{ProbeContext, ProbeSpec};
use crate::scheduler::{ProbeReport, Scheduler};
use crate::status::Status;
use crate::store::Store;

/// How often, at most, the loop publishes its views for the API: 100 probes reporting in the
/// same second rebuild the views a few times, not 100 times.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// What the watcher and the restart tasks tell the loop.
#[derive(Debug)]
pub(super) enum Message {
    /// A container event.
    Event(EngineEvent),
    /// Every watched container, as listed just now.
    Snapshot(Vec<Container>),
    /// The engine is back after being unreachable.
    Reconnected,
    /// A restart task finished.
    RestartDone {
        /// The service whose restart it was part of.
        service: ServiceKey,
        /// The workload restarted.
        workload: WorkloadId,
        /// How it ended.
        result: RestartResult,
    },
}

/// An operator's request from the admin API; the brain owns the state, so it answers.
#[derive(Debug)]
pub enum Command {
    /// Run a probe now; the result also feeds the policy like a scheduled run.
    RunProbe {
        /// The probe's name.
        name: String,
        /// Where the result goes.
        reply: tokio::sync::oneshot::Sender<Result<crate::probe::ProbeResult, CommandError>>,
    },
    /// Silence a component until an instant (`None` lifts the silence): it is neither
    /// restarted nor alerted about meanwhile.
    Silence {
        /// The component's name.
        component: String,
        /// Until when.
        until: Option<Instant>,
        /// The silence now in force.
        reply: tokio::sync::oneshot::Sender<Result<Option<Instant>, CommandError>>,
    },
}

/// Why a [`Command`] could not be carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No such probe or component; the message lists the known names.
    #[error("{0}")]
    NotFound(String),
    /// medic is not ready for it yet (probes start once Docker has answered).
    #[error("{0}")]
    Unavailable(String),
}

/// Settings the supervisor needs.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// The compose project from `MEDIC_PROJECT`; else discovered from medic's own container.
    pub project: Option<String>,
    /// The healing policy.
    pub healing: HealingSettings,
    /// How often to list every watched container.
    pub reconcile_interval: Duration,
    /// Probes declared in the configuration file; label probes are found at run time.
    pub file_probes: Vec<ProbeSpec>,
    /// The Docker endpoint, for `exec` probes.
    pub docker_host: Option<String>,
    /// The variables `${VAR}` in labels may read (`MEDIC_LABEL_VARIABLES`).
    pub label_variables: crate::probe::vars::LabelVariables,
}

/// Containers medic restarted shortly before this start (see `HealState::interrupted_restarts`).
fn restarts_before_start(store: &Store) -> HashMap<String, tokio::time::Instant> {
    let since = Utc::now()
        - chrono::Duration::from_std(INTERRUPTED_RESTART_WINDOW)
            .unwrap_or(chrono::Duration::zero());
    let until = tokio::time::Instant::now() + INTERRUPTED_RESTART_WINDOW;
    match store.all_restarts_since(since) {
        Ok(records) => records.into_iter().map(|r| (r.container, until)).collect(),
        Err(e) => {
            warn!(error = %format!("{e:#}"), "cannot read the last restarts; a restart interrupted by a crash may look like an operator's stop");
            HashMap::new()
        }
    }
}

/// Where the outside world reaches a running loop.
pub struct Handles {
    /// The admin API's commands.
    pub commands: mpsc::Sender<Command>,
    /// Probe results (the scheduler's own sender is a clone of this one).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) probes: mpsc::Sender<ProbeReport>,
}

/// Starts the watcher and the loop on `tracker`; both stop when `shutdown` is cancelled.
/// Returns where the admin API sends its [`Command`]s (and, for tests, where probe results go).
pub fn spawn(
    settings: SupervisorSettings,
    engine: Arc<dyn Engine>,
    store: Arc<Store>,
    status: Arc<Status>,
    alerts: mpsc::Sender<crate::notify::Incoming>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<Handles> {
    let (tx, rx) = mpsc::channel(4096);
    let (command_tx, command_rx) = mpsc::channel(64);
    let (probe_tx, probe_rx) = mpsc::channel(1024);
    let (scope_tx, scope_rx) = tokio::sync::watch::channel(None::<Scope>);
    let mut state = HealState::new(
        settings.healing.clone(),
        store.load_services()?,
        store.load_checks()?,
        store.load_silences()?,
    );
    state.interrupted_restarts = restarts_before_start(&store);
    let denials = Arc::new(Denials::default());
    let healer = Healer {
        state,
        denials: denials.clone(),
        alerts,
        probes: ProbeState {
            file: settings.file_probes.clone(),
            docker_host: settings.docker_host.clone(),
            label_variables: settings.label_variables.clone(),
            tx: probe_tx.clone(),
            scheduler: None,
            reported_errors: HashSet::new(),
            shutdown: shutdown.clone(),
            current: Vec::new(),
            ctx: None,
            broken: Vec::new(),
        },
        last_probes: HashMap::new(),
        last_publish: tokio::time::Instant::now()
            .checked_sub(PUBLISH_EVERY)
            .unwrap_or_else(tokio::time::Instant::now),
        publish_due: None,
        engine: engine.clone(),
        store,
        status: status.clone(),
        tx: tx.clone(),
        scope_rx,
        tracker: tracker.clone(),
        store_watch: Default::default(),
    };
    tracker.spawn(healer.run(rx, probe_rx, command_rx, shutdown.clone()));
    let watcher = Watcher {
        engine,
        denials,
        status,
        tx,
        settings,
        scope_tx,
        own_container: crate::docker::own_container_id,
    };
    tracker.spawn(watcher.run(shutdown));
    Ok(Handles {
        commands: command_tx,
        probes: probe_tx,
    })
}

/// The probes and their scheduler, owned by the brain.
struct ProbeState {
    /// Probes from the configuration file.
    file: Vec<ProbeSpec>,
    /// The Docker endpoint, for the `exec` probes' client.
    docker_host: Option<String>,
    /// The variables `${VAR}` in labels may read.
    label_variables: crate::probe::vars::LabelVariables,
    /// Where probe loops send their results.
    tx: mpsc::Sender<ProbeReport>,
    /// Started once the scope is known (exec probes need the project).
    scheduler: Option<Scheduler>,
    /// Label errors already logged, so each is logged once.
    reported_errors: HashSet<String>,
    shutdown: CancellationToken,
    /// Every probe as last configured (file and labels), for runs on request.
    current: Vec<ProbeSpec>,
    /// The context the scheduler runs probes with, for runs on request.
    ctx: Option<ProbeContext>,
    /// Label probes that cannot run (a bad key, a `${VAR}` labels may not read), shown as
    /// failing on their component so the error is seen where the probe would be, not only
    /// in the log. They never count towards a restart or an alert.
    broken: Vec<Arc<crate::probe::ProbeResult>>,
}

/// The loop's own state beside the decisions': what it needs to carry effects out.
struct Healer {
    /// What the healing decisions remember.
    state: HealState,
    /// Calls a socket proxy denied, handed to each restart task.
    denials: Arc<Denials>,
    /// Where alerts go (the notifiers).
    alerts: mpsc::Sender<crate::notify::Incoming>,
    probes: ProbeState,
    /// Each probe's last run, by probe name, for the API.
    last_probes: HashMap<String, ProbeReport>,
    /// When the views were last published.
    last_publish: tokio::time::Instant,
    /// A publish held back by [`PUBLISH_EVERY`], due then.
    publish_due: Option<tokio::time::Instant>,
    engine: Arc<dyn Engine>,
    store: Arc<Store>,
    status: Arc<Status>,
    /// For restart tasks to report back.
    tx: mpsc::Sender<Message>,
    scope_rx: tokio::sync::watch::Receiver<Option<Scope>>,
    tracker: TaskTracker,
    /// The store's health from one heartbeat to the next.
    store_watch: crate::store::faults::StoreWatch,
}

impl Healer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Message>,
        mut probe_rx: mpsc::Receiver<ProbeReport>,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut heartbeat = tokio::time::interval(Duration::from_secs(2));
        loop {
            let publish_due = self.publish_due;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = async {
                    match publish_due {
                        Some(due) => tokio::time::sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = heartbeat.tick() => self.beat(),
                changed = self.scope_rx.changed() => {
                    if changed.is_ok() {
                        let scope = self.scope_rx.borrow().clone();
                        self.observe(Observation::Scope(scope));
                        self.start_probes().await;
                    }
                }
                Some(report) = probe_rx.recv() => self.on_probe(report),
                Some(command) = commands.recv() => self.on_command(command),
                message = rx.recv() => match message {
                    None => return,
                    Some(Message::Event(e)) => self.observe(Observation::Event(e)),
                    Some(Message::Snapshot(list)) => self.observe(Observation::Snapshot(list)),
                    Some(Message::Reconnected) => self.observe(Observation::Reconnected),
                    Some(Message::RestartDone { service, workload, result }) => {
                        self.observe(Observation::RestartDone { service, workload, result })
                    }
                },
            }
            self.publish_soon();
        }
    }

    /// Runs one observation through the decisions and carries out what they say, in order.
    fn observe(&mut self, observation: Observation) {
        let now = Now {
            wall: Utc::now(),
            mono: tokio::time::Instant::now(),
        };
        for effect in decide::step(&mut self.state, observation, now) {
            self.carry_out(effect);
        }
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::SaveCheck(key, state) => self.save_check(key.as_str(), &state),
            Effect::SaveService(key, state) => self.save_service(key.as_str(), &state),
            Effect::SaveSilence(component, until) => {
                if let Err(e) = self.store.save_silence(&component, until) {
                    error!(error = %format!("{e:#}"), "cannot save the silence");
                }
            }
            Effect::History {
                component,
                kind,
                message,
                at,
            } => self.history(at, component.as_str(), kind, &message),
            Effect::Alert(alert) => {
                // Kept in the store before anything records that it was raised: a crash from
                // here on cannot lose it.
                let incoming = crate::notify::keep_alert(&self.store, Utc::now(), alert);
                if self.alerts.try_send(incoming).is_err() {
                    error!("the alert queue is full or closed; the alert waits in the store's inbox until medic starts again");
                }
            }
            Effect::AlertHeld(component, kind) => {
                let kind = kind.as_str();
                self.status
                    .metrics
                    .alert_held(component.as_str(), &kind["alert_".len()..]);
            }
            Effect::Restart(order) => self.start_restarts(order),
            Effect::RefreshProbes => self.refresh_probes(),
            Effect::PublishNow => self.publish_now(),
        }
    }

    /// One restart task per workload of the order.
    fn start_restarts(&self, order: RestartOrder) {
        for (id, name) in order.workloads {
            let span =
                tracing::info_span!("restart", component = %order.component, container = %name);
            let task = RestartTask {
                engine: self.engine.clone(),
                denials: self.denials.clone(),
                store: self.store.clone(),
                tx: self.tx.clone(),
                service: order.service.clone(),
                container_id: id.to_string(),
                container_name: name,
                reason: order.reason.clone(),
                default_stop_timeout: self.state.healing.default_stop_timeout,
                default_grace: self.state.healing.default_grace,
                at: order.at,
                event_nanos: order.event_nanos,
            };
            self.tracker.spawn(task.run().instrument(span));
        }
    }

    /// Records a probe run for the report and the API, then feeds it to the decisions.
    fn on_probe(&mut self, report: ProbeReport) {
        let result: &crate::probe::ProbeResult = &report.result;
        let recorded = self.store.record_check_run(&result.into());
        let what = "cannot record the probe run for the report";
        self.logged(recorded, what, &report.spec.name);
        self.status.metrics.probe_ran(result, report.lag);
        self.last_probes
            .insert(report.spec.name.clone(), report.clone());
        self.observe(Observation::Probe(ProbeRun {
            spec: report.spec.clone(),
            error: report.result.error.clone(),
            latency: report.result.latency,
        }));
    }

    fn beat(&mut self) {
        self.status.beat();
        self.observe(Observation::Tick);
        self.watch_store();
    }

    /// Publishes now if the last publish is old enough, else schedules one.
    fn publish_soon(&mut self) {
        let now = tokio::time::Instant::now();
        if now >= self.last_publish + PUBLISH_EVERY {
            self.publish_now();
        } else if self.publish_due.is_none() {
            self.publish_due = Some(self.last_publish + PUBLISH_EVERY);
        }
    }

    /// Publishes now (an operator's command is shown at once).
    fn publish_now(&mut self) {
        self.publish();
        self.last_publish = tokio::time::Instant::now();
        self.publish_due = None;
    }

    /// Publishes every component's view for the API.
    fn publish(&self) {
        let now = Utc::now();
        let probes = self
            .last_probes
            .values()
            .map(|r| {
                let threshold = r
                    .spec
                    .failure_threshold
                    .unwrap_or(self.state.healing.failure_threshold);
                (&r.result, threshold)
            })
            .chain(self.probes.broken.iter().map(|r| (r, 1)))
            .collect();
        let views = crate::status::build_views(&crate::status::ViewInputs {
            containers: &self.state.containers,
            services: &self.state.services,
            checks: &self.state.checks,
            probes,
            silenced: &self.state.silenced,
            restarts_24h: self
                .store
                .restart_counts_since(now - chrono::Duration::hours(24))
                .unwrap_or_default(),
            healing: &self.state.healing,
            now,
        });
        self.status.publish(views);
    }

    /// Carries out an operator's request from the admin API.
    fn on_command(&mut self, command: Command) {
        match command {
            Command::RunProbe { name, reply } => {
                let Some(spec) = self.probes.current.iter().find(|s| s.name == name).cloned()
                else {
                    let mut known: Vec<&str> = self
                        .probes
                        .current
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect();
                    known.sort();
                    let _ = reply.send(Err(not_found("probe", &name, &known)));
                    return;
                };
                let Some(ctx) = self.probes.ctx.clone() else {
                    let _ = reply.send(Err(CommandError::Unavailable(
                        "probes start once the Docker engine has answered; try again shortly"
                            .into(),
                    )));
                    return;
                };
                let tx = self.probes.tx.clone();
                info!(probe = %name, "running a probe on request");
                self.tracker.spawn(async move {
                    let spec = Arc::new(spec);
                    let result = crate::probe::run(&spec, &ctx).await;
                    let _ = tx
                        .send(ProbeReport {
                            spec,
                            result: Arc::new(result.clone()),
                            lag: Duration::ZERO,
                        })
                        .await;
                    let _ = reply.send(Ok(result));
                });
            }
            Command::Silence {
                component,
                until,
                reply,
            } => {
                let known = self
                    .state
                    .containers
                    .iter()
                    .any(|c| c.component() == component)
                    || self.probes.current.iter().any(|s| s.component == component)
                    || self.state.silenced.contains_key(&component);
                if !known {
                    let mut names: Vec<String> = self
                        .state
                        .containers
                        .iter()
                        .map(|c| c.component())
                        .chain(self.probes.current.iter().map(|s| s.component.clone()))
                        .collect();
                    names.sort();
                    names.dedup();
                    let _ = reply.send(Err(not_found("component", &component, &names)));
                    return;
                }
                self.observe(Observation::Silence { component, until });
                let _ = reply.send(Ok(until));
            }
        }
    }

    /// Acts on the store's faults: reported at ERROR and on `/health` while they last; once the
    /// store takes writes again (or a fresh one replaced a lost one), the state kept in memory
    /// is written back and one email says what happened.
    fn watch_store(&mut self) {
        use crate::store::faults::StoreEvent;
        let now = Utc::now();
        for event in self.store_watch.step(&self.store, now) {
            match event {
                StoreEvent::Failed(reason) => error!(
                    %reason,
                    "the state store is not writable: healing goes on with its state kept in memory; /health answers 503 until the store takes writes again"
                ),
                StoreEvent::Writable { since, reason } => {
                    let late = self.write_back_state();
                    self.observe(Observation::StoreWritable {
                        since,
                        reason,
                        late,
                    });
                }
                StoreEvent::Lost(what) => {
                    error!("{what}");
                    let late = self.write_back_state();
                    self.observe(Observation::StoreLost { what, late });
                }
            }
        }
        self.status
            .set_store_error(self.store_watch.fault().map(String::from));
    }

    /// Writes every service's, check's and silence's state kept in memory to the store, and the
    /// restarts it could not record; returns how many restarts were recorded late.
    fn write_back_state(&mut self) -> usize {
        let mut failed = None;
        for (service, state) in &self.state.services {
            if let Err(e) = self.store.save_service(service, state) {
                failed.get_or_insert(e);
            }
        }
        for (key, state) in &self.state.checks {
            if let Err(e) = self.store.save_check(key, state) {
                failed.get_or_insert(e);
            }
        }
        for (component, until) in &self.state.silenced {
            if let Err(e) = self.store.save_silence(component, Some(*until)) {
                failed.get_or_insert(e);
            }
        }
        let late = match self.store.write_unrecorded_restarts() {
            Ok(n) => n,
            Err(e) => {
                failed.get_or_insert(e);
                0
            }
        };
        if let Some(e) = failed {
            error!(error = %format!("{e:#}"), "cannot write medic's state back to the store");
        }
        late
    }

    /// Starts the probe scheduler once the scope is known.
    async fn start_probes(&mut self) {
        if self.probes.scheduler.is_some() {
            return;
        }
        let mut ctx = ProbeContext::new();
        match ProbeContext::connect_docker(self.probes.docker_host.as_deref()).await {
            Ok(docker) => ctx = ctx.with_docker(docker),
            Err(e) => warn!(error = %e, "exec probes cannot reach Docker"),
        }
        if let Some(scope) = self.state.scope.clone() {
            ctx = ctx.with_scope(scope);
        }
        self.probes.ctx = Some(ctx.clone());
        self.probes.scheduler = Some(Scheduler::new(
            ctx,
            self.probes.tx.clone(),
            crate::scheduler::DEFAULT_CONCURRENCY,
            self.tracker.clone(),
            self.probes.shutdown.clone(),
        ));
        self.refresh_probes();
    }

    /// Runs the file's probes plus those declared by labels on the watched containers.
    fn refresh_probes(&mut self) {
        let Some(scope) = self.state.scope.clone() else {
            return;
        };
        let (labelled, mut errors) = crate::config::probes::label_probes(
            &self.state.containers,
            &scope,
            &self.probes.label_variables,
        );
        let (all, merge_errors) = crate::config::probes::merge(&self.probes.file, labelled);
        errors.extend(merge_errors.into_iter().map(|text| LabelError {
            component: String::new(),
            probe: None,
            text,
        }));
        let mut broken = Vec::new();
        for e in errors {
            if self.probes.reported_errors.insert(e.text.clone()) {
                error!("probe configuration ignored: {e}");
            }
            if let Some(probe) = &e.probe {
                // Kept from the last refresh when unchanged, so its time says since when.
                let known = self
                    .probes
                    .broken
                    .iter()
                    .find(|r| r.name == *probe && r.error.as_deref() == Some(e.text.as_str()));
                broken.push(match known {
                    Some(r) => Arc::clone(r),
                    None => Arc::new(config_error_result(probe, &e)),
                });
            }
        }
        self.probes.broken = broken;
        if let Some(scheduler) = self.probes.scheduler.as_mut() {
            scheduler.set(&all);
        }
        self.last_probes
            .retain(|name, _| all.iter().any(|s| s.name == *name));
        self.probes.current = all;
    }

    fn save_service(&self, service: &str, state: &ServiceState) {
        let result = self.store.save_service(service, state);
        self.logged(result, "cannot save service state", service);
    }

    fn save_check(&self, key: &str, state: &CheckState) {
        let result = self.store.save_check(key, state);
        self.logged(result, "cannot save check state", key);
    }

    fn history(&self, at: Instant, component: &str, kind: HistoryKind, message: &str) {
        let result = self
            .store
            .record_history(at, component, kind.as_str(), message);
        self.logged(result, "cannot record history", component);
    }

    /// Logs a failed write to the store. While a store fault is known (reported at ERROR once,
    /// and on /health), each failing write logs at DEBUG: 300 probes must not turn one fault
    /// into 300 ERROR lines a second. The state stays in memory and is written back when the
    /// store works again.
    fn logged<T>(&self, result: anyhow::Result<T>, what: &str, key: &str) {
        if let Err(e) = result {
            if self.store.fault_known() {
                debug!(%key, error = %format!("{e:#}"), "{what}");
            } else {
                error!(%key, error = %format!("{e:#}"), "{what}");
            }
        }
    }
}

/// `no probe named "x"; probes: a, b` (or `none`), for a command naming what does not exist.
fn not_found(what: &str, name: &str, known: &[impl AsRef<str>]) -> CommandError {
    let known: Vec<&str> = known.iter().map(AsRef::as_ref).collect();
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    CommandError::NotFound(format!("no {what} named {name:?}; {what}s: {known}"))
}

/// The failing result shown in place of a label probe that cannot run.
fn config_error_result(probe: &str, error: &LabelError) -> crate::probe::ProbeResult {
    crate::probe::ProbeResult {
        name: probe.to_string(),
        kind: "config",
        component: error.component.clone(),
        ok: false,
        severity: crate::probe::Severity::Critical,
        latency: Duration::ZERO,
        error: Some(error.text.clone()),
        steps: Vec::new(),
        details: serde_json::Map::new(),
        checked_at: Utc::now(),
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
