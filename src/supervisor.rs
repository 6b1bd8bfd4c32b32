//! The healing loop: Docker events and periodic reconciles in, restarts out.
//!
//! Two tasks cooperate:
//! - the *watcher* keeps a connection to the engine (reconnecting with backoff when it goes
//!   away), forwards container events as they happen, and lists every watched container on each
//!   reconcile tick and right after every (re)connect;
//! - the *brain* owns all policy state. It turns what the watcher saw into observations, runs the
//!   pure policy, persists the result, and spawns one task per restart, so restarts of different
//!   services run in parallel while decisions about one service stay in order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};

use crate::config::probes::LabelError;
use crate::config::{parse_duration, HealingSettings};
use crate::docker::scope::Scope;
use crate::docker::{
    Container, Denials, Engine, EngineError, EngineEvent, EventKind, Health, RunState,
    LABEL_STOP_TIMEOUT,
};
use crate::notify::{Alert, AlertKind};
use crate::policy::{
    decide_restart, record_check, restarted, CheckState, CheckVerdict, Decision, HoldReason,
    Instant, Outcome, RestartContext, ServiceState,
};
use crate::probe::{ProbeContext, ProbeSpec};
use crate::scheduler::{ProbeReport, Scheduler};
use crate::status::{DockerStatus, Status};
use crate::store::{RestartRecord, Store};

/// How often, at most, the brain publishes its views for the API: 100 probes reporting in the
/// same second rebuild the views a few times, not 100 times.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// How long events caused by medic's own restart of a container are not taken for an operator's.
const OWN_RESTART_ECHO: Duration = Duration::from_secs(15);

/// What the watcher and the restart tasks tell the brain.
#[derive(Debug)]
enum Message {
    /// A container event.
    Event(EngineEvent),
    /// Every watched container, as listed just now.
    Snapshot(Vec<Container>),
    /// The engine is back after being unreachable.
    Reconnected,
    /// A restart task finished.
    RestartDone(RestartDone),
}

#[derive(Debug)]
struct RestartDone {
    service: String,
    container_id: String,
    result: RestartResult,
}

#[derive(Debug)]
enum RestartResult {
    /// The engine restarted the container; failures count again after `grace`.
    Restarted { grace: Duration },
    /// Nothing was done, for this reason, and the budget slot is given back.
    Skipped(String),
    /// The engine refused or failed.
    Failed(String),
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

/// How long before its start medic looks for restarts of its own a crash may have interrupted,
/// and how long after it it still takes the engine's stop and kill events for their echo.
const INTERRUPTED_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Containers medic restarted shortly before this start (see `Brain::interrupted_restarts`).
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

/// Starts the watcher and the brain on `tracker`; both stop when `shutdown` is cancelled.
/// Returns where the admin API sends its [`Command`]s.
pub fn spawn(
    settings: SupervisorSettings,
    engine: Arc<dyn Engine>,
    store: Arc<Store>,
    status: Arc<Status>,
    alerts: mpsc::Sender<crate::notify::Incoming>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<mpsc::Sender<Command>> {
    let (tx, rx) = mpsc::channel(4096);
    let (command_tx, command_rx) = mpsc::channel(64);
    let (probe_tx, probe_rx) = mpsc::channel(1024);
    let (scope_tx, scope_rx) = tokio::sync::watch::channel(None::<Scope>);
    let interrupted_restarts = restarts_before_start(&store);
    let denials = Arc::new(Denials::default());
    let brain = Brain {
        denials: denials.clone(),
        alerts,
        probes: ProbeState {
            file: settings.file_probes.clone(),
            docker_host: settings.docker_host.clone(),
            label_variables: settings.label_variables.clone(),
            tx: probe_tx,
            scheduler: None,
            reported_errors: HashSet::new(),
            shutdown: shutdown.clone(),
            current: Vec::new(),
            ctx: None,
            broken: Vec::new(),
        },
        last_probes: HashMap::new(),
        silenced: store.load_silences()?,
        last_publish: tokio::time::Instant::now()
            .checked_sub(PUBLISH_EVERY)
            .unwrap_or_else(tokio::time::Instant::now),
        publish_due: None,
        containers: Vec::new(),
        healing: settings.healing.clone(),
        services: store.load_services()?,
        checks: store.load_checks()?,
        engine: engine.clone(),
        store,
        status: status.clone(),
        tx: tx.clone(),
        scope: None,
        scope_rx,
        in_flight: HashMap::new(),
        own_restarts: HashMap::new(),
        interrupted_restarts,
        operator_holds: HashMap::new(),
        last_hold: HashMap::new(),
        event_health: HealthEvents::default(),
        tracker: tracker.clone(),
        store_watch: Default::default(),
    };
    tracker.spawn(brain.run(rx, probe_rx, command_rx, shutdown.clone()));
    let watcher = Watcher {
        engine,
        denials,
        status,
        tx,
        settings,
        scope_tx,
    };
    tracker.spawn(watcher.run(shutdown));
    Ok(command_tx)
}

struct Watcher {
    engine: Arc<dyn Engine>,
    /// Calls a socket proxy denied, each reported once (shared with the restart tasks).
    denials: Arc<Denials>,
    status: Arc<Status>,
    tx: mpsc::Sender<Message>,
    settings: SupervisorSettings,
    scope_tx: tokio::sync::watch::Sender<Option<Scope>>,
}

impl Watcher {
    async fn run(self, shutdown: CancellationToken) {
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
        let scope =
            crate::docker::scope::discover(self.engine.as_ref(), self.settings.project.clone())
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

/// A restart of a service in progress (one task per container).
struct InFlight {
    /// The service state before the restart, restored if nothing was restarted.
    before: ServiceState,
    /// Restart tasks not finished yet.
    remaining: usize,
    /// The longest grace among the containers restarted so far.
    grace: Option<Duration>,
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

struct Brain {
    /// Calls a socket proxy denied, handed to each restart task.
    denials: Arc<Denials>,
    /// Where alerts go (the notifiers).
    alerts: mpsc::Sender<crate::notify::Incoming>,
    probes: ProbeState,
    /// Each probe's last run, by probe name, for the API.
    last_probes: HashMap<String, ProbeReport>,
    /// Silenced components and until when (persisted).
    silenced: HashMap<String, Instant>,
    /// When the views were last published.
    last_publish: tokio::time::Instant,
    /// A publish held back by [`PUBLISH_EVERY`], due then.
    publish_due: Option<tokio::time::Instant>,
    /// Every watched container as last listed, to find the containers of a service.
    containers: Vec<Container>,
    healing: HealingSettings,
    /// Restart state per service (`project/service`, or the container name).
    services: HashMap<String, ServiceState>,
    /// Failure tally per check (`docker:<container name>`).
    checks: HashMap<String, CheckState>,
    engine: Arc<dyn Engine>,
    store: Arc<Store>,
    status: Arc<Status>,
    /// For restart tasks to report back.
    tx: mpsc::Sender<Message>,
    /// Scope, once the watcher has discovered it.
    scope: Option<Scope>,
    scope_rx: tokio::sync::watch::Receiver<Option<Scope>>,
    /// Services with a restart under way.
    in_flight: HashMap<String, InFlight>,
    /// Containers medic restarted, and until when their stop/kill events are medic's own echo.
    own_restarts: HashMap<String, tokio::time::Instant>,
    /// Container names medic restarted in the minute before it started, mapped to when their
    /// echo stops being expected: a restart a crash interrupted still makes the engine stop the
    /// container, and that must not look like an operator's stop.
    interrupted_restarts: HashMap<String, tokio::time::Instant>,
    /// Projects (or lone containers) an operator is stopping, and until when restarts wait.
    operator_holds: HashMap<String, Instant>,
    /// The last hold logged per service, so a steady hold is logged once.
    last_hold: HashMap<String, String>,
    /// What each container's last health event said (see [`HealthEvents`]).
    event_health: HealthEvents,
    tracker: TaskTracker,
    /// The store's health from one heartbeat to the next.
    store_watch: crate::store::faults::StoreWatch,
}

/// The health each container's last health event said, by container id. Podman sends an event
/// per healthcheck run, Docker one per change: only a change is acted on, so both engines heal
/// alike. A container's entry is forgotten when it starts, stops or goes away, and all are on a
/// reconnect, since the next health after that is news whatever it is.
#[derive(Debug, Default)]
struct HealthEvents(HashMap<String, Health>);

impl HealthEvents {
    /// Records what an event says of container `id`; true when it differs from the last one.
    fn changed(&mut self, id: &str, health: Health) -> bool {
        self.0.insert(id.to_string(), health) != Some(health)
    }

    /// The container started, stopped or went: its next health event is news.
    fn forget(&mut self, id: &str) {
        self.0.remove(id);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
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

/// The running containers a probe's `restart:` names, grouped by service key, and why none is
/// restarted when the names are ambiguous. A name means that service in the probe's own project
/// (the labelled container's for label probes, else the watched project), never a same-named
/// service of another project, even one labelled `medic.enable=true`; `containers` are the
/// watched ones only. With no project to go by, a name found in two projects restarts nothing.
fn restart_targets(
    spec: &ProbeSpec,
    containers: &[Container],
    watched_project: Option<&str>,
) -> (Vec<(String, Vec<Container>)>, Option<String>) {
    let project = spec.project.as_deref().or(watched_project);
    let mut targets: Vec<(String, Vec<Container>)> = Vec::new();
    for name in &spec.restart {
        for c in containers.iter().filter(|c| {
            c.component() == *name
                && c.state == RunState::Running
                && match (project, c.project()) {
                    (Some(wanted), Some(theirs)) => wanted == theirs,
                    _ => true,
                }
        }) {
            let key = service_key(c);
            match targets.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(c.clone()),
                None => targets.push((key, vec![c.clone()])),
            }
        }
    }
    if project.is_none() {
        let mut projects: Vec<&str> = targets
            .iter()
            .flat_map(|(_, list)| list.iter().filter_map(|c| c.project()))
            .collect();
        projects.sort();
        projects.dedup();
        if projects.len() > 1 {
            let refused = format!(
                "{} names services of several compose projects ({}) and no project is watched; \
                 set MEDIC_PROJECT or declare the probe in labels of the project's containers",
                spec.restart.join(", "),
                projects.join(", ")
            );
            return (Vec::new(), Some(refused));
        }
    }
    (targets, None)
}

/// The key of a service for restart state: `project/service`, or the container name alone.
fn service_key(c: &Container) -> String {
    match c.project() {
        Some(p) => format!("{p}/{}", c.component()),
        None => c.component(),
    }
}

/// The key operator holds are kept under: the project, or the container for lone ones.
fn hold_key(labels: &HashMap<String, String>, name: &str) -> String {
    crate::docker::project_of(labels)
        .map(|p| format!("project:{p}"))
        .unwrap_or_else(|| format!("container:{name}"))
}

impl Brain {
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
                        self.scope = self.scope_rx.borrow().clone();
                        self.start_probes().await;
                    }
                }
                Some(report) = probe_rx.recv() => self.on_probe(report),
                Some(command) = commands.recv() => self.on_command(command),
                message = rx.recv() => match message {
                    None => return,
                    Some(Message::Event(e)) => self.on_event(e),
                    Some(Message::Snapshot(list)) => self.on_snapshot(list),
                    Some(Message::Reconnected) => self.on_reconnected(),
                    Some(Message::RestartDone(done)) => self.on_restart_done(done),
                },
            }
            self.publish_soon();
        }
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
                    .unwrap_or(self.healing.failure_threshold);
                (&r.result, threshold)
            })
            .chain(self.probes.broken.iter().map(|r| (r, 1)))
            .collect();
        let views = crate::status::build_views(&crate::status::ViewInputs {
            containers: &self.containers,
            services: &self.services,
            checks: &self.checks,
            probes,
            silenced: &self.silenced,
            restarts_24h: self
                .store
                .restart_counts_since(now - chrono::Duration::hours(24))
                .unwrap_or_default(),
            healing: &self.healing,
            now,
        });
        self.status.publish(views);
    }

    /// True while a person has silenced `component`.
    fn silenced_until(&self, component: &str, now: Instant) -> Option<Instant> {
        self.silenced.get(component).copied().filter(|u| *u > now)
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
                    let _ = reply.send(Err(CommandError::NotFound(format!(
                        "no probe named {name:?}; probes: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ))));
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
                let known = self.containers.iter().any(|c| c.component() == component)
                    || self.probes.current.iter().any(|s| s.component == component)
                    || self.silenced.contains_key(&component);
                if !known {
                    let mut names: Vec<String> = self
                        .containers
                        .iter()
                        .map(|c| c.component())
                        .chain(self.probes.current.iter().map(|s| s.component.clone()))
                        .collect();
                    names.sort();
                    names.dedup();
                    let _ = reply.send(Err(CommandError::NotFound(format!(
                        "no component named {component:?}; components: {}",
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    ))));
                    return;
                }
                if let Err(e) = self.store.save_silence(&component, until) {
                    error!(error = %format!("{e:#}"), "cannot save the silence");
                }
                match until {
                    Some(until) => {
                        info!(%component, %until, "silenced by an operator");
                        self.history(&component, "silenced", &format!("silenced until {until}"));
                        self.silenced.insert(component, until);
                    }
                    None => {
                        info!(%component, "silence lifted by an operator");
                        self.history(&component, "unsilenced", "silence lifted");
                        self.silenced.remove(&component);
                    }
                }
                self.publish_now();
                let _ = reply.send(Ok(until));
            }
        }
    }

    fn beat(&mut self) {
        self.status.beat();
        let now = tokio::time::Instant::now();
        self.own_restarts.retain(|_, until| *until > now);
        self.interrupted_restarts.retain(|_, until| *until > now);
        let wall = Utc::now();
        self.operator_holds.retain(|_, until| *until > wall);
        self.watch_store();
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
                    let down = (now - since).num_seconds();
                    warn!(
                        down_for_s = down,
                        restarts_recorded_late = late,
                        "the state store takes writes again; medic's state was written back"
                    );
                    self.store_alert(
                        since,
                        format!("the state store could not be written for {down}s: {reason}"),
                        format!(
                            "healing went on with medic's state kept in memory; it was written back when the store took writes again{}",
                            recorded_late(late)
                        ),
                    );
                }
                StoreEvent::Lost(what) => {
                    error!("{what}");
                    let late = self.write_back_state();
                    self.store_alert(
                        now,
                        what,
                        format!(
                            "healing goes on; medic's current state (failure counts, restart budgets, silences) was written to the fresh store{}",
                            recorded_late(late)
                        ),
                    );
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
        for (service, state) in &self.services {
            if let Err(e) = self.store.save_service(service, state) {
                failed.get_or_insert(e);
            }
        }
        for (key, state) in &self.checks {
            if let Err(e) = self.store.save_check(key, state) {
                failed.get_or_insert(e);
            }
        }
        for (component, until) in &self.silenced {
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

    /// One email about the store: a CRITICAL saying what went wrong and what medic did, and
    /// the RECOVERED that closes it, raised together so they go out as one message (the fault
    /// is over by the time an email can be kept in the store at all).
    fn store_alert(&self, since: Instant, error: String, action: String) {
        let alert = |kind, status: &str, error: Option<String>, action: String, at| Alert {
            kind,
            component: "medic".into(),
            check: "store".into(),
            check_type: "store".into(),
            status: status.into(),
            error,
            consecutive_failures: 0,
            action,
            at,
        };
        self.alert(alert(
            AlertKind::Critical,
            "state store failed",
            Some(error),
            action,
            since,
        ));
        self.alert(alert(
            AlertKind::Recovered,
            "healthy",
            None,
            "the state store takes writes again".into(),
            Utc::now(),
        ));
    }

    fn in_scope(&self, id: &str, labels: &HashMap<String, String>) -> bool {
        self.scope
            .as_ref()
            .is_some_and(|scope| scope.contains(id, labels))
    }

    fn on_event(&mut self, event: EngineEvent) {
        if !self.in_scope(&event.id, &event.attributes) {
            return;
        }
        let name = event.name().to_string();
        let component = crate::docker::component_of(&event.attributes, &name);
        let span = tracing::info_span!("event", %component, container = %name);
        let _enter = span.enter();
        let now = Utc::now();
        if let EventKind::Health(health) = &event.kind {
            if !self.event_health.changed(&event.id, *health) {
                debug!(health = ?health, "health unchanged: nothing to do");
                return;
            }
        }
        if matches!(
            event.kind,
            EventKind::Start
                | EventKind::Die
                | EventKind::Stop
                | EventKind::Kill
                | EventKind::Destroy
        ) {
            self.event_health.forget(&event.id);
        }
        match &event.kind {
            EventKind::Health(Health::Unhealthy) => {
                let container = container_from_event(&event);
                self.observe_docker_health(&container, now, Some(event.time_nanos));
            }
            EventKind::Health(Health::Healthy) => {
                let container = container_from_event(&event);
                self.observe_docker_health(&container, now, None);
            }
            EventKind::Stop | EventKind::Kill | EventKind::Destroy => {
                let still = |until: &tokio::time::Instant| *until > tokio::time::Instant::now();
                let own = self.own_restarts.get(&event.id).is_some_and(still)
                    || self.interrupted_restarts.get(&name).is_some_and(still);
                if own {
                    debug!(action = %event.kind, "echo of medic's own restart");
                    return;
                }
                let key = hold_key(&event.attributes, &name);
                let until = now
                    + chrono::Duration::from_std(self.healing.operator_hold)
                        .unwrap_or(chrono::Duration::zero());
                if self.operator_holds.insert(key.clone(), until).is_none() {
                    info!(
                        action = %event.kind,
                        hold_until = %until,
                        "stopped by an operator: medic will not start it, and holds restarts in {key}"
                    );
                }
                self.history(
                    &component,
                    "operator_stop",
                    &format!("{name}: {:?} by an operator", event.kind),
                );
            }
            EventKind::Die => {
                let code = event
                    .attributes
                    .get("exitCode")
                    .cloned()
                    .unwrap_or_default();
                debug!(exit_code = %code, "container exited");
            }
            EventKind::Oom => {
                warn!("container ran out of memory");
                self.history(&component, "oom", &format!("{name} ran out of memory"));
            }
            _ => {}
        }
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
        if let Some(scope) = self.scope.clone() {
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
        let Some(scope) = self.scope.clone() else {
            return;
        };
        let (labelled, mut errors) = crate::config::probes::label_probes(
            &self.containers,
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

    /// Feeds a probe result into the policy; restarts the services it names at its threshold.
    fn on_probe(&mut self, report: ProbeReport) {
        let spec = &report.spec;
        let result: &crate::probe::ProbeResult = &report.result;
        let span = tracing::info_span!("probe", probe = %spec.name, component = %spec.component);
        let _enter = span.enter();
        if let Err(e) = self.store.record_check_run(&result.into()) {
            if self.store.fault_known() {
                debug!(error = %format!("{e:#}"), "cannot record the probe run for the report");
            } else {
                error!(error = %format!("{e:#}"), "cannot record the probe run for the report");
            }
        }
        let now = Utc::now();
        self.status.metrics.probe_ran(result, report.lag);
        self.last_probes.insert(spec.name.clone(), report.clone());
        // The containers of each service the probe restarts, grouped by service key.
        let (targets, refused) = restart_targets(
            spec,
            &self.containers,
            self.scope.as_ref().and_then(|s| s.project.as_deref()),
        );
        let in_grace = targets
            .iter()
            .any(|(key, _)| self.services.get(key).is_some_and(|s| s.in_grace(now)));
        let outcome = match &result.error {
            None => Outcome::Pass,
            Some(e) => Outcome::Fail(e.clone()),
        };
        let threshold = spec
            .failure_threshold
            .unwrap_or(self.healing.failure_threshold);
        let check_key = format!("probe:{}", spec.name);
        let before = self.checks.get(&check_key).cloned().unwrap_or_default();
        let (check, verdict) = record_check(&before, &outcome, now, threshold, in_grace);
        // Saved after the alert below is kept: a crash in between then raises it again on the
        // next run (the rate limit absorbs a repeat) instead of losing it.
        let saved = (check_key.clone(), check.clone());
        self.checks.insert(check_key, check);
        let error = result.error.clone().unwrap_or_default();
        match verdict {
            CheckVerdict::Passed { recovered: true } => {
                info!(
                    latency_ms = result.latency.as_millis() as u64,
                    "probe passes again"
                );
                if before.consecutive_failures >= threshold {
                    self.alert(Alert {
                        kind: AlertKind::Recovered,
                        component: spec.component.clone(),
                        check: spec.name.clone(),
                        check_type: spec.kind.type_name().into(),
                        status: "healthy".into(),
                        error: None,
                        consecutive_failures: 0,
                        action: format!("probe {} passes again", spec.name),
                        at: now,
                    });
                }
                self.history(
                    &spec.component,
                    "recovered",
                    &format!("probe {} passes again", spec.name),
                );
                for (key, _) in &targets {
                    if let Some(state) = self.services.get(key).filter(|s| s.gave_up).cloned() {
                        let next = state.recovered();
                        self.save_service(key, &next);
                        self.services.insert(key.clone(), next);
                    }
                }
            }
            CheckVerdict::Passed { recovered: false } => {}
            CheckVerdict::IgnoredInGrace => {
                debug!(%error, "probe failed during the grace after a restart")
            }
            CheckVerdict::Failing { consecutive } => {
                warn!(consecutive, threshold, %error, "probe failed");
                self.history(
                    &spec.component,
                    "probe_failed",
                    &format!("probe {}: {error}", spec.name),
                );
            }
            CheckVerdict::ThresholdReached { consecutive } => {
                warn!(consecutive, threshold, %error, "probe failed: threshold reached");
                self.history(
                    &spec.component,
                    "probe_failed",
                    &format!("probe {}: {error}", spec.name),
                );
                let reason = format!(
                    "probe {} failed {consecutive} times in a row: {error}",
                    spec.name
                );
                let action = if spec.restart.is_empty() {
                    "none: this probe only alerts".to_string()
                } else if let Some(refused) = &refused {
                    warn!(services = ?spec.restart, "{refused}");
                    format!("not restarted: {refused}")
                } else if targets.is_empty() {
                    warn!(services = %spec.restart.join(","), "no running watched container of the services to restart");
                    format!(
                        "not restarted: no running watched container of {}",
                        spec.restart.join(", ")
                    )
                } else {
                    let mut actions = Vec::new();
                    for (key, containers) in targets {
                        actions.push(self.consider_restart(&key, &containers, &reason, now, None));
                    }
                    actions.join("; ")
                };
                if consecutive == threshold {
                    self.alert(Alert {
                        kind: AlertKind::Critical,
                        component: spec.component.clone(),
                        check: spec.name.clone(),
                        check_type: spec.kind.type_name().into(),
                        status: "failing".into(),
                        error: Some(error.clone()),
                        consecutive_failures: consecutive,
                        action,
                        at: now,
                    });
                }
            }
        }
        self.save_check(&saved.0, &saved.1);
    }

    /// A restart of the engine stops every container with kill and stop events that look like
    /// an operator's. Containers stopped then stay stopped anyway (medic never starts one), so
    /// the holds are lifted and what came back broken can be healed.
    fn on_reconnected(&mut self) {
        self.event_health.clear();
        if !self.operator_holds.is_empty() {
            info!("the engine restarted: lifting holds set while it was shutting down");
            self.operator_holds.clear();
        }
    }

    fn on_snapshot(&mut self, containers: Vec<Container>) {
        let now = Utc::now();
        self.containers = containers
            .iter()
            .filter(|c| self.in_scope(&c.id, &c.labels))
            .cloned()
            .collect();
        self.refresh_probes();
        for container in containers {
            if !self.in_scope(&container.id, &container.labels) {
                continue;
            }
            if container.state != RunState::Running {
                continue;
            }
            if matches!(container.health, Health::Unhealthy | Health::Healthy) {
                let span = tracing::info_span!("reconcile", component = %container.component(), container = %container.name);
                let _enter = span.enter();
                self.observe_docker_health(&container, now, None);
            }
        }
    }

    /// Feeds a container's Docker health into the policy and acts on the verdict.
    fn observe_docker_health(
        &mut self,
        container: &Container,
        now: Instant,
        event_nanos: Option<i64>,
    ) {
        let service = service_key(container);
        let check_key = format!("docker:{}", container.name);
        let outcome = match container.health {
            Health::Unhealthy => Outcome::Fail("Docker reports the container unhealthy".into()),
            _ => Outcome::Pass,
        };
        let service_state = self.services.get(&service).cloned().unwrap_or_default();
        let in_grace = service_state.in_grace(now);
        let before = self.checks.get(&check_key).cloned().unwrap_or_default();
        // Docker has already counted its own healthcheck retries: unhealthy is the threshold.
        let (check, verdict) = record_check(&before, &outcome, now, 1, in_grace);
        // Saved after the alerts below are kept (see on_probe).
        let saved = (check != before).then(|| (check_key.clone(), check.clone()));
        self.checks.insert(check_key, check);
        match verdict {
            CheckVerdict::Passed { recovered: true } => {
                info!("healthy again");
                self.alert(Alert {
                    kind: AlertKind::Recovered,
                    component: container.component(),
                    check: "docker".into(),
                    check_type: "docker".into(),
                    status: "healthy".into(),
                    error: None,
                    consecutive_failures: 0,
                    action: format!("{} is healthy again", container.name),
                    at: now,
                });
                self.history(
                    &container.component(),
                    "recovered",
                    &format!("{} is healthy again", container.name),
                );
                if service_state.gave_up {
                    let next = service_state.recovered();
                    self.save_service(&service, &next);
                    self.services.insert(service.clone(), next);
                }
                self.last_hold.remove(&service);
            }
            CheckVerdict::Passed { recovered: false } | CheckVerdict::Failing { .. } => {}
            CheckVerdict::IgnoredInGrace => debug!("unhealthy during the grace after a restart"),
            CheckVerdict::ThresholdReached { consecutive } => {
                if consecutive == 1 {
                    warn!("Docker reports the container unhealthy");
                    self.history(
                        &container.component(),
                        "unhealthy",
                        &format!("{} is unhealthy", container.name),
                    );
                }
                let action = self.consider_restart(
                    &service,
                    std::slice::from_ref(container),
                    "Docker reports the container unhealthy",
                    now,
                    event_nanos,
                );
                if consecutive == 1 {
                    self.alert(Alert {
                        kind: AlertKind::Critical,
                        component: container.component(),
                        check: "docker".into(),
                        check_type: "docker".into(),
                        status: "unhealthy".into(),
                        error: Some(format!(
                            "Docker reports {} unhealthy: its HEALTHCHECK failed",
                            container.name
                        )),
                        consecutive_failures: consecutive,
                        action,
                        at: now,
                    });
                }
            }
        }
        if let Some((key, check)) = saved {
            self.save_check(&key, &check);
        }
    }

    /// Decides about restarting `service`, whose running containers are `containers`, and
    /// starts one restart task per container when the policy allows.
    fn consider_restart(
        &mut self,
        service: &str,
        containers: &[Container],
        reason: &str,
        now: Instant,
        event_nanos: Option<i64>,
    ) -> String {
        if self.in_flight.contains_key(service) {
            debug!("a restart is already under way");
            return "a restart is already under way".into();
        }
        let containers: Vec<&Container> = containers
            .iter()
            .filter(|c| !self.scope.as_ref().is_some_and(|s| s.is_own(&c.id)))
            .collect();
        let Some(first) = containers.first() else {
            return "nothing to restart".into();
        };
        let component = first.component();
        let state = self.services.get(service).cloned().unwrap_or_default();
        let ctx = RestartContext {
            opted_out: containers.iter().any(|c| !c.restart_allowed()),
            operator_hold_until: self
                .operator_holds
                .get(&hold_key(&first.labels, &first.name))
                .copied(),
            silenced_until: self.silenced_until(&component, now),
        };
        let (next, decision) = decide_restart(&state, now, &self.healing, &ctx);
        match decision {
            Decision::Hold(hold) => {
                self.log_hold(service, &component, &hold);
                format!("not restarted: {hold}")
            }
            Decision::GiveUp { next_slot } => {
                error!(%component, %next_slot, budget = self.healing.restart_budget, "GAVE UP: restart budget spent; no restart until a slot frees");
                self.history(
                    &component,
                    "gave_up",
                    &format!(
                        "{} restarts within {} spent; next slot at {next_slot}",
                        self.healing.restart_budget,
                        humantime::format_duration(self.healing.budget_window)
                    ),
                );
                let action = format!(
                    "gave up: {} restarts within {} spent; no restart until {next_slot}",
                    self.healing.restart_budget,
                    humantime::format_duration(self.healing.budget_window)
                );
                // The alert is kept before the state that says it was raised (see on_probe).
                self.alert(Alert {
                    kind: AlertKind::GaveUp,
                    component: component.clone(),
                    check: String::new(),
                    check_type: String::new(),
                    status: "failing".into(),
                    error: Some(reason.to_string()),
                    consecutive_failures: 0,
                    action: action.clone(),
                    at: now,
                });
                self.save_service(service, &next);
                self.services.insert(service.to_string(), next);
                action
            }
            Decision::Restart => {
                // Recorded before the call: a crash of medic right after still counts it.
                let after = restarted(&next, now, self.healing.default_grace, &self.healing);
                self.save_service(service, &after);
                self.services.insert(service.to_string(), after);
                self.in_flight.insert(
                    service.to_string(),
                    InFlight {
                        before: state,
                        remaining: containers.len(),
                        grace: None,
                    },
                );
                self.last_hold.remove(service);
                for container in &containers {
                    self.own_restarts.insert(
                        container.id.clone(),
                        tokio::time::Instant::now() + Duration::from_secs(600),
                    );
                    let task = RestartTask {
                        engine: self.engine.clone(),
                        denials: self.denials.clone(),
                        store: self.store.clone(),
                        tx: self.tx.clone(),
                        service: service.to_string(),
                        container_id: container.id.clone(),
                        container_name: container.name.clone(),
                        reason: reason.to_string(),
                        default_stop_timeout: self.healing.default_stop_timeout,
                        default_grace: self.healing.default_grace,
                        at: now,
                        event_nanos,
                    };
                    let span = tracing::info_span!("restart", component = %container.component(), container = %container.name);
                    self.tracker.spawn(task.run().instrument(span));
                }
                format!(
                    "restarted {}",
                    containers
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    }

    /// Hands an alert to the notifiers; it is kept in history either way.
    fn alert(&self, alert: Alert) {
        let kind = match alert.kind {
            AlertKind::Critical => "alert_critical",
            AlertKind::Recovered => "alert_recovered",
            AlertKind::GaveUp => "alert_gave_up",
        };
        self.history(&alert.component, kind, &alert.action);
        if let Some(until) = self.silenced_until(&alert.component, Utc::now()) {
            info!(component = %alert.component, %until, "alert not sent: the component is silenced");
            self.status
                .metrics
                .alert_held(&alert.component, &kind["alert_".len()..]);
            return;
        }
        // Kept in the store before anything records that it was raised: a crash from here on
        // cannot lose it.
        let incoming = crate::notify::keep_alert(&self.store, Utc::now(), alert);
        if self.alerts.try_send(incoming).is_err() {
            error!("the alert queue is full or closed; the alert waits in the store's inbox until medic starts again");
        }
    }

    fn on_restart_done(&mut self, done: RestartDone) {
        self.own_restarts.insert(
            done.container_id.clone(),
            tokio::time::Instant::now() + OWN_RESTART_ECHO,
        );
        let Some(in_flight) = self.in_flight.get_mut(&done.service) else {
            return;
        };
        in_flight.remaining = in_flight.remaining.saturating_sub(1);
        match done.result {
            RestartResult::Restarted { grace } => {
                in_flight.grace = Some(in_flight.grace.map_or(grace, |g| g.max(grace)));
            }
            RestartResult::Skipped(why) => {
                info!(service = %done.service, "restart not made: {why}");
            }
            RestartResult::Failed(error) => {
                // An attempt all the same: it keeps its budget slot, without grace.
                in_flight.grace.get_or_insert(Duration::ZERO);
                self.history(&done.service, "restart_failed", &error);
            }
        }
        let Some(in_flight) = self.in_flight.get(&done.service) else {
            return;
        };
        if in_flight.remaining > 0 {
            return;
        }
        let Some(in_flight) = self.in_flight.remove(&done.service) else {
            return;
        };
        let now = Utc::now();
        match in_flight.grace {
            Some(grace) => {
                if let Some(state) = self.services.get(&done.service).cloned() {
                    let next = ServiceState {
                        grace_until: Some(
                            now + chrono::Duration::from_std(grace).unwrap_or_default(),
                        ),
                        ..state
                    };
                    self.save_service(&done.service, &next);
                    self.services.insert(done.service, next);
                }
            }
            // Nothing was restarted: the budget slot is given back.
            None => {
                self.save_service(&done.service, &in_flight.before);
                self.services.insert(done.service, in_flight.before);
            }
        }
    }

    fn log_hold(&mut self, service: &str, component: &str, hold: &HoldReason) {
        let kind = match hold {
            HoldReason::OptedOut => "opted_out",
            HoldReason::Silenced { .. } => "silenced",
            HoldReason::OperatorStopping { .. } => "operator",
            HoldReason::InGrace { .. } => "grace",
            HoldReason::Cooldown { .. } => "cooldown",
            HoldReason::BudgetSpent { .. } => "budget",
        };
        if self.last_hold.get(service).map(String::as_str) != Some(kind) {
            info!(hold = kind, "not restarting: {hold}");
            self.history(component, "held", &hold.to_string());
            self.last_hold.insert(service.to_string(), kind.to_string());
        }
    }

    // While a store fault is known (reported at ERROR once, and on /health), each failing
    // write logs at DEBUG: 300 probes must not turn one fault into 300 ERROR lines a second.
    // The state stays in memory and is written back when the store works again.
    fn save_service(&self, service: &str, state: &ServiceState) {
        if let Err(e) = self.store.save_service(service, state) {
            if self.store.fault_known() {
                debug!(%service, error = %format!("{e:#}"), "cannot save service state");
            } else {
                error!(%service, error = %format!("{e:#}"), "cannot save service state");
            }
        }
    }

    fn save_check(&self, key: &str, state: &CheckState) {
        if let Err(e) = self.store.save_check(key, state) {
            if self.store.fault_known() {
                debug!(check = %key, error = %format!("{e:#}"), "cannot save check state");
            } else {
                error!(check = %key, error = %format!("{e:#}"), "cannot save check state");
            }
        }
    }

    fn history(&self, component: &str, kind: &str, message: &str) {
        if let Err(e) = self
            .store
            .record_history(Utc::now(), component, kind, message)
        {
            if self.store.fault_known() {
                debug!(error = %format!("{e:#}"), "cannot record history");
            } else {
                error!(error = %format!("{e:#}"), "cannot record history");
            }
        }
    }
}

/// `; 2 restarts made meanwhile were recorded late`, or nothing.
fn recorded_late(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "; 1 restart made meanwhile was recorded late".into(),
        n => format!("; {n} restarts made meanwhile were recorded late"),
    }
}

/// The container as far as an event describes it: labels and name, presumed running.
fn container_from_event(event: &EngineEvent) -> Container {
    let health = match &event.kind {
        EventKind::Health(h) => *h,
        _ => Health::None,
    };
    let mut labels = event.attributes.clone();
    labels.remove("name");
    labels.remove("image");
    Container {
        id: event.id.clone(),
        name: event.name().to_string(),
        labels,
        state: RunState::Running,
        health,
        stop_timeout: None,
        start_period: None,
    }
}

/// One restart, run on its own task.
struct RestartTask {
    engine: Arc<dyn Engine>,
    /// Calls a socket proxy denied: a denied restart is reported once, not on every attempt.
    denials: Arc<Denials>,
    store: Arc<Store>,
    tx: mpsc::Sender<Message>,
    service: String,
    container_id: String,
    container_name: String,
    reason: String,
    default_stop_timeout: Duration,
    default_grace: Duration,
    /// When the decision was made.
    at: Instant,
    /// When Docker emitted the event that led here, for the reaction time.
    event_nanos: Option<i64>,
}

impl RestartTask {
    async fn run(self) {
        let result = self.restart().await;
        let _ = self
            .tx
            .send(Message::RestartDone(RestartDone {
                service: self.service.clone(),
                container_id: self.container_id.clone(),
                result,
            }))
            .await;
    }

    async fn restart(&self) -> RestartResult {
        // Look again right before acting: an operator may have stopped it meanwhile.
        let container = match self.engine.inspect(&self.container_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return RestartResult::Skipped("the container no longer exists".into()),
            Err(e) => {
                if !self.denials.report(&e) {
                    warn!(error = %e, "cannot inspect before restarting");
                }
                return RestartResult::Skipped(format!("cannot inspect it: {e}"));
            }
        };
        if container.state != RunState::Running {
            return RestartResult::Skipped(format!(
                "it is {:?}, not running; medic never starts a stopped container",
                container.state
            ));
        }
        let stop_timeout = match container.labels.get(LABEL_STOP_TIMEOUT) {
            Some(value) => match parse_duration(LABEL_STOP_TIMEOUT, value) {
                Ok(d) => d,
                Err(e) => {
                    error!(container = %self.container_name, "label {e}; using the container's own stop timeout");
                    container.stop_timeout.unwrap_or(self.default_stop_timeout)
                }
            },
            None => container.stop_timeout.unwrap_or(self.default_stop_timeout),
        };
        let grace = container.start_period.unwrap_or(self.default_grace);
        let record = RestartRecord {
            at: self.at,
            service: self.service.clone(),
            container: self.container_name.clone(),
            reason: self.reason.clone(),
            error: None,
        };
        // Recorded before the call, so a crash right after still counts it against the budget.
        // When the store cannot take it, the restart is made all the same: healing must not
        // stop because the disk is full or read-only. The supervisor's budget in memory still
        // counts it, and the record is written once the store works again; only a crash of
        // medic before then forgets it.
        let row = self.store.record_restart(&record);
        if let Err(e) = &row {
            error!(
                error = %format!("{e:#}"),
                "restart not recorded: the state store failed; restarting anyway, the record is kept in memory and written when the store takes writes again"
            );
        }
        let reaction_ms = self
            .event_nanos
            .map(|n| (Utc::now().timestamp_nanos_opt().unwrap_or(n) - n) as f64 / 1e6);
        info!(
            reason = %self.reason,
            stop_timeout = %humantime::format_duration(stop_timeout),
            grace = %humantime::format_duration(grace),
            reaction_ms,
            "restarting"
        );
        match self.engine.restart(&self.container_id, stop_timeout).await {
            Ok(()) => {
                info!("restarted");
                RestartResult::Restarted { grace }
            }
            Err(e) => {
                // A denied restart still counts as an attempt (cooldown and budget apply), so
                // medic does not retry it hot; the denial itself is logged once per endpoint.
                if !self.denials.report(&e) {
                    error!(error = %e, "restart failed");
                }
                if let Ok(id) = row {
                    let _ = self.store.restart_failed(id, &e.to_string());
                }
                RestartResult::Failed(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_of_health_are_news() {
        let mut seen = HealthEvents::default();
        // Podman: one event per healthcheck run.
        let runs = [
            (Health::Starting, true),
            (Health::Healthy, true),
            (Health::Healthy, false),
            (Health::Healthy, false),
            (Health::Unhealthy, true),
            (Health::Unhealthy, false),
        ];
        for (i, (health, news)) in runs.into_iter().enumerate() {
            assert_eq!(seen.changed("a", health), news, "run {i}: {health:?}");
        }
        // Another container has its own history.
        assert!(seen.changed("b", Health::Unhealthy));
        // Restarted and unhealthy again without passing through healthy (Docker sends exactly
        // this): news, since the container started in between.
        seen.forget("a");
        assert!(seen.changed("a", Health::Unhealthy));
        seen.clear();
        assert!(seen.changed("b", Health::Unhealthy));
    }

    fn container(name: &str, project: Option<&str>, service: &str) -> Container {
        let mut labels = HashMap::from([(
            "com.docker.compose.service".to_string(),
            service.to_string(),
        )]);
        if let Some(p) = project {
            labels.insert("com.docker.compose.project".into(), p.into());
        }
        Container {
            id: format!("id-{name}"),
            name: name.into(),
            labels,
            state: RunState::Running,
            health: Health::None,
            stop_timeout: None,
            start_period: None,
        }
    }

    fn spec(project: Option<&str>) -> ProbeSpec {
        let text = "probes:\n  p:\n    type: tcp\n    host: web\n    port: 1\n    restart: web\n";
        let mut spec = crate::probe::parse_yaml(text, "m.yaml", &|_| None)
            .unwrap()
            .remove(0);
        spec.project = project.map(str::to_string);
        spec
    }

    fn names(targets: &[(String, Vec<Container>)]) -> Vec<String> {
        targets
            .iter()
            .flat_map(|(_, list)| list.iter().map(|c| c.name.clone()))
            .collect()
    }

    /// `other-web-1` is watched too (say it is labelled medic.enable=true), yet `restart: web`
    /// never reaches it from a probe of the shop project.
    #[test]
    fn restart_means_the_service_of_the_probes_own_project() {
        let containers = [
            container("shop-web-1", Some("shop"), "web"),
            container("other-web-1", Some("other"), "web"),
            container("solo", None, "web"),
        ];
        let (file, refused) = restart_targets(&spec(None), &containers, Some("shop"));
        assert_eq!(refused, None);
        assert_eq!(names(&file), vec!["shop-web-1", "solo"]);
        let (label, _) = restart_targets(&spec(Some("other")), &containers, Some("shop"));
        assert_eq!(names(&label), vec!["other-web-1", "solo"]);
        let (none, refused) = restart_targets(&spec(None), &containers, None);
        assert!(none.is_empty());
        let refused = refused.unwrap();
        assert!(refused.contains("other, shop"), "{refused}");
        let (one, refused) = restart_targets(&spec(None), &containers[..1], None);
        assert_eq!(
            (names(&one), refused),
            (vec!["shop-web-1".to_string()], None)
        );
    }
}
