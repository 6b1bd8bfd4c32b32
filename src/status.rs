//! What medic knows about itself right now, shared between its loops and the HTTP server.
//!
//! The loops write; the HTTP handlers only read, so `/health` never waits on Docker or the store.
//! The brain publishes a [`ComponentView`] per component after each change (built by
//! [`build_views`] from its own state), and counts probe runs into [`Metrics`]; the API renders
//! both without asking the brain anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

use crate::config::HealingSettings;
use crate::docker::{Container, Health, RunState};
use crate::policy::{CheckState, Instant, ServiceState};
use crate::probe::{ProbeResult, Severity};

/// The engine connection as last seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DockerStatus {
    /// True while the engine answers.
    pub reachable: bool,
    /// Which engine answers on the socket (`Docker Engine` or `Podman`), once known.
    pub engine: Option<String>,
    /// The engine's version, once known.
    pub version: Option<String>,
    /// The negotiated API version, once known.
    pub api_version: Option<String>,
    /// The last connection error.
    pub error: Option<String>,
}

/// Live facts about the running daemon.
pub struct Status {
    /// When the daemon started.
    pub started_at: Instant,
    /// The supervisor's last heartbeat, in milliseconds since the epoch.
    heartbeat_ms: AtomicI64,
    /// How long without a heartbeat before the loop counts as stalled.
    pub stall_after: Duration,
    /// `None` while the store accepts writes, else the error.
    store_error: RwLock<Option<String>>,
    /// The engine connection.
    docker: RwLock<DockerStatus>,
    /// The compose project being watched, once discovered.
    project: RwLock<Option<String>>,
    /// Email delivery as the notifiers last reported it.
    email: RwLock<EmailStatus>,
    /// Every component as the brain last published it, by name.
    components: RwLock<Arc<BTreeMap<String, ComponentView>>>,
    /// Counters and histograms that accumulate between scrapes.
    pub metrics: Metrics,
    /// Bumped by every change the detailed view shows, so its rendering can be reused.
    generation: AtomicU64,
    /// The last rendering of `/health/detailed`: (generation, uptime second, reason, body).
    detailed_cache: Mutex<Option<CachedBody>>,
}

impl Status {
    /// A fresh status; the loop counts as stalled after `stall_after` without a heartbeat.
    pub fn new(stall_after: Duration) -> Status {
        let now = Utc::now();
        Status {
            started_at: now,
            heartbeat_ms: AtomicI64::new(now.timestamp_millis()),
            stall_after,
            store_error: RwLock::new(None),
            docker: RwLock::new(DockerStatus::default()),
            project: RwLock::new(None),
            email: RwLock::new(EmailStatus::default()),
            components: RwLock::new(Arc::new(BTreeMap::new())),
            metrics: Metrics::default(),
            generation: AtomicU64::new(0),
            detailed_cache: Mutex::new(None),
        }
    }

    /// The supervisor is alive.
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Why medic itself is not healthy, if it is not.
    pub fn problem(&self) -> Option<String> {
        let since_beat = Utc::now().timestamp_millis() - self.heartbeat_ms.load(Ordering::Relaxed);
        if since_beat > self.stall_after.as_millis() as i64 {
            return Some(format!(
                "medic's supervisor loop has stalled: no heartbeat for {}s",
                since_beat / 1000
            ));
        }
        read(&self.store_error)
            .as_ref()
            .map(|e| format!("the state store is not writable: {e}"))
    }

    /// Records whether the store accepted its last write check.
    pub fn set_store_error(&self, error: Option<String>) {
        let mut current = write(&self.store_error);
        if *current != error {
            self.changed();
        }
        *current = error;
    }

    /// The engine connection as last seen.
    pub fn docker(&self) -> DockerStatus {
        read(&self.docker).clone()
    }

    /// Updates the engine connection.
    pub fn set_docker(&self, docker: DockerStatus) {
        *write(&self.docker) = docker;
        self.changed();
    }

    /// The watched compose project.
    pub fn project(&self) -> Option<String> {
        read(&self.project).clone()
    }

    /// Sets the watched compose project.
    pub fn set_project(&self, project: Option<String>) {
        *write(&self.project) = project;
        self.changed();
    }

    /// Email delivery as last reported.
    pub fn email(&self) -> EmailStatus {
        read(&self.email).clone()
    }

    /// Hook for the notifiers: reports whether email is configured, the last delivery error and
    /// the outbox depth.
    pub fn set_email(&self, email: EmailStatus) {
        *write(&self.email) = email;
        self.changed();
    }

    /// Every component as last published, by name.
    pub fn components(&self) -> Arc<BTreeMap<String, ComponentView>> {
        read(&self.components).clone()
    }

    /// Replaces the published components (the brain calls this after each change).
    pub fn publish(&self, views: BTreeMap<String, ComponentView>) {
        *write(&self.components) = Arc::new(views);
        self.changed();
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Counts changes to what the views show, so a cached rendering knows it is stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The body of `/health/detailed`, rendered by `render` only when something it shows has
    /// changed (or a second has passed, for the uptime): dashboards polling 100 components
    /// get a copy of bytes, not a fresh serialization.
    pub fn detailed_body(
        &self,
        uptime_second: i64,
        reason: Option<String>,
        render: impl FnOnce() -> axum::body::Bytes,
    ) -> axum::body::Bytes {
        let generation = self.generation.load(Ordering::Acquire);
        let mut cache = self
            .detailed_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((g, second, r, body)) = cache.as_ref() {
            if *g == generation && *second == uptime_second && *r == reason {
                return body.clone();
            }
        }
        let body = render();
        *cache = Some((generation, uptime_second, reason, body.clone()));
        body
    }

    /// medic's overall verdict: `unhealthy` when medic itself or any component is unhealthy,
    /// `degraded` when Docker is unreachable or any component is degraded, else `healthy`.
    pub fn overall(&self, components: &BTreeMap<String, ComponentView>) -> Level {
        let worst = components
            .values()
            .map(|c| c.status)
            .max()
            .unwrap_or(Level::Healthy);
        if self.problem().is_some() {
            return Level::Unhealthy;
        }
        if !self.docker().reachable {
            return worst.max(Level::Degraded);
        }
        worst
    }
}

/// A rendering of `/health/detailed` and what it was rendered from: (generation, uptime
/// second, medic's own problem, body).
type CachedBody = (u64, i64, Option<String>, axum::body::Bytes);

/// Email delivery, as the notifiers report it through [`Status::set_email`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct EmailStatus {
    /// True when `MAIL_SERVER` is set.
    pub configured: bool,
    /// The last delivery error, if the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Emails waiting in the outbox; `None` until the outbox reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_depth: Option<u64>,
}

/// How well something is, from best to worst (the order matters: the worst wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Everything passes.
    Healthy,
    /// Nothing known yet: no check has run.
    Unknown,
    /// Something fails but has not reached its threshold, or an informational warning.
    Degraded,
    /// Broken: Docker reports it unhealthy or not running, or a probe reached its threshold.
    Unhealthy,
}

impl Level {
    /// The lowercase name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Unknown => "unknown",
            Level::Degraded => "degraded",
            Level::Unhealthy => "unhealthy",
        }
    }
}

/// One component (a compose service, or a probe's component) as dashboards see it.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentView {
    /// The component's name.
    pub name: String,
    /// Its verdict.
    pub status: Level,
    /// The most consecutive failures among its checks.
    pub consecutive_failures: u32,
    /// Its most recent check, of any kind.
    pub last_check: Option<LastCheck>,
    /// Each check's tally, by key (`docker:<container>`, `probe:<name>`).
    pub checks: SmallMap<CheckState>,
    /// Each of its probes' last result, by probe name.
    pub probes: SmallMap<Arc<ProbeResult>>,
    /// Its watched containers.
    pub containers: Vec<ContainerView>,
    /// Its restart state; `None` when medic has never restarted it and it has no containers.
    pub restarts: Option<RestartView>,
    /// While set and in the future, medic neither restarts nor alerts about it.
    pub silenced_until: Option<Instant>,
}

/// A few entries by name, sorted, serialized as a JSON object. A component has one to a few
/// checks and probes, and its view is rebuilt several times a second: a `BTreeMap` would
/// allocate room for eleven entries per component each time (about 1 KiB), this holds exactly
/// what is there.
#[derive(Debug, Clone)]
pub struct SmallMap<V>(Vec<(String, V)>);

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<V> SmallMap<V> {
    /// Sets `key` to `value`, replacing what it held.
    pub fn insert(&mut self, key: String, value: V) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.into_iter()
    }

    /// The values, by name.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<'a, V> IntoIterator for &'a SmallMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, V)>,
        fn(&'a (String, V)) -> (&'a String, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V: Serialize> Serialize for SmallMap<V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// The most recent check of a component.
#[derive(Debug, Clone, Serialize)]
pub struct LastCheck {
    /// The check's key (`docker:<container>` or `probe:<name>`).
    pub check: String,
    /// When it ran.
    pub at: Instant,
    /// Whether it passed.
    pub ok: bool,
    /// How long it took (probes only; Docker's own healthcheck reports none).
    pub latency_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A watched container of a component.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerView {
    /// The container's name.
    pub name: String,
    /// Docker's run state.
    pub state: RunState,
    /// Docker's healthcheck status (`none` without a healthcheck).
    pub health: Health,
}

/// What medic did and may still do to restart a service.
#[derive(Debug, Clone, Serialize)]
pub struct RestartView {
    /// The service's key (`project/service`, or the container name).
    pub service: String,
    /// The last restart.
    pub last: Option<Instant>,
    /// Restarts (attempts) within the last 24 hours.
    pub count_24h: u32,
    /// Restarts ever made.
    pub total: u64,
    /// No restart before this, when the cooldown runs.
    pub cooldown_until: Option<Instant>,
    /// Restarts left in the rolling budget window.
    pub budget_left: u32,
    /// True when the budget is spent and medic gave up until a slot frees.
    pub gave_up: bool,
}

/// What [`build_views`] reads from the brain's state.
pub struct ViewInputs<'a> {
    /// Every watched container as last listed.
    pub containers: &'a [Container],
    /// Restart state per service key.
    pub services: &'a HashMap<String, ServiceState>,
    /// Failure tally per check key.
    pub checks: &'a HashMap<String, CheckState>,
    /// The last result of each probe, with the probe's failure threshold.
    pub probes: Vec<(&'a Arc<ProbeResult>, u32)>,
    /// Silenced components and until when.
    pub silenced: &'a HashMap<String, Instant>,
    /// Restarts per service key over the last 24 hours, from the store (the policy state only
    /// remembers the budget window).
    pub restarts_24h: HashMap<String, u32>,
    /// The healing settings (budget, cooldown).
    pub healing: &'a HealingSettings,
    /// The moment of publishing.
    pub now: Instant,
}

/// The key of a service for restart state: `project/service`, or the container name alone
/// (the supervisor's own rule).
fn service_key(c: &Container) -> String {
    match c.project() {
        Some(p) => format!("{p}/{}", c.component()),
        None => c.component(),
    }
}

/// Builds every component's view from the brain's state.
pub fn build_views(input: &ViewInputs<'_>) -> BTreeMap<String, ComponentView> {
    let now = input.now;
    let mut views: BTreeMap<String, ComponentView> = BTreeMap::new();
    let blank = |name: &str| ComponentView {
        name: name.to_string(),
        status: Level::Unknown,
        consecutive_failures: 0,
        last_check: None,
        checks: SmallMap::default(),
        probes: SmallMap::default(),
        containers: Vec::new(),
        restarts: None,
        silenced_until: input.silenced.get(name).copied().filter(|u| *u > now),
    };
    let restart_view = |key: &str| {
        let state = input.services.get(key).cloned().unwrap_or_default();
        RestartView {
            service: key.to_string(),
            last: state.last_restart,
            count_24h: input.restarts_24h.get(key).copied().unwrap_or_else(|| {
                state
                    .restarts_in_window(now, Duration::from_secs(24 * 3600))
                    .len() as u32
            }),
            total: state.restarts_total,
            cooldown_until: state.cooldown_until(now, input.healing.restart_cooldown),
            budget_left: state.budget_left(now, input.healing),
            gave_up: state.gave_up,
        }
    };
    for c in input.containers {
        let name = c.component();
        let view = views.entry(name.clone()).or_insert_with(|| blank(&name));
        let mut level = match (c.state, c.health) {
            (RunState::Running, Health::Unhealthy) => Level::Unhealthy,
            (RunState::Running, Health::Starting) => Level::Unknown,
            (RunState::Running, _) => Level::Healthy,
            (RunState::Restarting | RunState::Created, _) => Level::Degraded,
            _ => Level::Unhealthy,
        };
        let key = format!("docker:{}", c.name);
        if let Some(check) = input.checks.get(&key) {
            note_check(view, &key, check, None);
        }
        if view.restarts.is_none() {
            let restarts = restart_view(&service_key(c));
            if restarts.gave_up {
                level = Level::Unhealthy;
            }
            view.restarts = Some(restarts);
        }
        view.status = if view.containers.is_empty() {
            level
        } else {
            view.status.max(level)
        };
        view.containers.push(ContainerView {
            name: c.name.clone(),
            state: c.state,
            health: c.health,
        });
    }
    for (result, threshold) in &input.probes {
        let name = &result.component;
        let view = views.entry(name.clone()).or_insert_with(|| blank(name));
        let key = format!("probe:{}", result.name);
        let consecutive = input
            .checks
            .get(&key)
            .map(|c| c.consecutive_failures)
            .unwrap_or(0);
        if let Some(check) = input.checks.get(&key) {
            note_check(view, &key, check, Some(result));
        }
        let level = match result.severity {
            Severity::Ok => Level::Healthy,
            Severity::Warning => Level::Degraded,
            Severity::Critical if consecutive >= (*threshold).max(1) => Level::Unhealthy,
            Severity::Critical => Level::Degraded,
        };
        view.status = if view.containers.is_empty() && view.probes.is_empty() {
            level
        } else {
            view.status.max(level)
        };
        if view.restarts.is_none() {
            if let Some(state) = input.services.get(name) {
                if state.restarts_total > 0 {
                    view.restarts = Some(restart_view(name));
                }
            }
        }
        view.probes.insert(result.name.clone(), Arc::clone(result));
    }
    views
}

/// Adds one check's tally to a view, keeping the most recent as its last check.
fn note_check(
    view: &mut ComponentView,
    key: &str,
    check: &CheckState,
    result: Option<&ProbeResult>,
) {
    view.consecutive_failures = view.consecutive_failures.max(check.consecutive_failures);
    view.checks.insert(key.to_string(), check.clone());
    let Some(at) = check.last_checked else {
        return;
    };
    if view.last_check.as_ref().is_some_and(|l| l.at >= at) {
        return;
    }
    let ok = check.last_ok == Some(at);
    view.last_check = Some(LastCheck {
        check: key.to_string(),
        at,
        ok,
        latency_ms: result.map(|r| r.latency.as_millis() as u64),
        error: if ok { None } else { check.last_error.clone() },
    });
}

/// Labels of a probe's metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The probe's name.
    pub probe: String,
    /// The component it belongs to.
    pub component: String,
}

/// Labels of a probe run counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProbeRunLabels {
    /// The probe's name.
    pub probe: String,
    /// The component it belongs to.
    pub component: String,
    /// The run's severity: `ok`, `warning` or `critical`.
    pub result: String,
}

/// Metrics that accumulate between scrapes; gauges are derived from the views at scrape time.
#[derive(Debug)]
pub struct Metrics {
    /// Probe runs, by result.
    pub probe_runs: Family<ProbeRunLabels, Counter>,
    /// Probe run durations, in seconds.
    pub probe_duration: Family<ProbeLabels, Histogram, fn() -> Histogram>,
    /// How late scheduled probe runs started, in seconds (all probes together).
    pub schedule_lag: Histogram,
    /// Alerts delivered to the outbox, as the notifiers count them.
    pub alerts_sent: AtomicU64,
    /// Alerts the notifiers' rate limit held back.
    pub alerts_held_rate_limit: AtomicU64,
    /// Alerts the brain did not send because the component was silenced.
    pub alerts_held_silenced: AtomicU64,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            probe_runs: Family::default(),
            probe_duration: Family::new_with_constructor(duration_histogram),
            schedule_lag: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            alerts_sent: AtomicU64::new(0),
            alerts_held_rate_limit: AtomicU64::new(0),
            alerts_held_silenced: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one probe run that started `lag` later than its schedule said.
    pub fn probe_ran(&self, result: &ProbeResult, lag: Duration) {
        self.schedule_lag.observe(lag.as_secs_f64());
        let labels = ProbeLabels {
            probe: result.name.clone(),
            component: result.component.clone(),
        };
        self.probe_duration
            .get_or_create(&labels)
            .observe(result.latency.as_secs_f64());
        self.probe_runs
            .get_or_create(&ProbeRunLabels {
                probe: labels.probe,
                component: labels.component,
                result: match result.severity {
                    Severity::Ok => "ok",
                    Severity::Warning => "warning",
                    Severity::Critical => "critical",
                }
                .into(),
            })
            .inc();
    }

    /// Counts an alert the brain held back because its component is silenced.
    pub fn alert_held(&self, _component: &str, _kind: &str) {
        self.alerts_held_silenced.fetch_add(1, Ordering::Relaxed);
    }

    /// Mirrors the notifiers' totals: alerts sent and held back by the rate limit.
    pub fn set_notifier_totals(&self, sent: u64, held_by_rate_limit: u64) {
        self.alerts_sent.store(sent, Ordering::Relaxed);
        self.alerts_held_rate_limit
            .store(held_by_rate_limit, Ordering::Relaxed);
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, service: &str, state: RunState, health: Health) -> Container {
        Container {
            id: format!("id-{name}"),
            name: name.into(),
            labels: HashMap::from([
                ("com.docker.compose.project".into(), "shop".into()),
                ("com.docker.compose.service".into(), service.into()),
            ]),
            state,
            health,
            stop_timeout: None,
            start_period: None,
        }
    }

    fn probe(name: &str, component: &str, severity: Severity) -> ProbeResult {
        ProbeResult {
            name: name.into(),
            kind: "tcp",
            component: component.into(),
            ok: severity == Severity::Ok,
            severity,
            latency: Duration::from_millis(12),
            error: (severity != Severity::Ok).then(|| "refused".into()),
            steps: vec![],
            details: Default::default(),
            checked_at: Utc::now(),
        }
    }

    #[test]
    fn a_small_map_keeps_names_sorted_and_serializes_as_an_object() {
        let mut m = SmallMap::default();
        m.insert("probe:b".to_string(), 2);
        m.insert("docker:a".to_string(), 1);
        m.insert("probe:b".to_string(), 3);
        let entries: Vec<(&str, i32)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(entries, [("docker:a", 1), ("probe:b", 3)]);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"docker:a":1,"probe:b":3}"#
        );
        assert_eq!(
            serde_json::to_string(&SmallMap::<u8>::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn views_take_the_worst_of_containers_and_probes() {
        let now = Utc::now();
        let containers = [
            container("shop-web-1", "web", RunState::Running, Health::Healthy),
            container("shop-web-2", "web", RunState::Running, Health::Unhealthy),
            container("shop-db-1", "db", RunState::Running, Health::None),
            container("shop-old-1", "old", RunState::Exited, Health::None),
        ];
        let checks = HashMap::from([
            (
                "probe:db-write".to_string(),
                CheckState {
                    consecutive_failures: 1,
                    last_checked: Some(now),
                    last_error: Some("refused".into()),
                    ..Default::default()
                },
            ),
            (
                "probe:api".to_string(),
                CheckState {
                    consecutive_failures: 3,
                    last_checked: Some(now),
                    ..Default::default()
                },
            ),
        ]);
        let services = HashMap::from([(
            "shop/web".to_string(),
            ServiceState {
                restarts_total: 4,
                gave_up: false,
                last_restart: Some(now),
                recent_restarts: vec![now],
                ..Default::default()
            },
        )]);
        let db = Arc::new(probe("db-write", "db", Severity::Critical));
        let api = Arc::new(probe("api", "api", Severity::Critical));
        let silenced = HashMap::from([("db".to_string(), now + chrono::Duration::hours(1))]);
        let healing = HealingSettings::default();
        let views = build_views(&ViewInputs {
            containers: &containers,
            services: &services,
            checks: &checks,
            probes: vec![(&db, 3), (&api, 3)],
            silenced: &silenced,
            restarts_24h: HashMap::from([("shop/web".to_string(), 2)]),
            healing: &healing,
            now,
        });
        assert_eq!(views["web"].status, Level::Unhealthy);
        assert_eq!(views["web"].containers.len(), 2);
        let restarts = views["web"].restarts.as_ref().unwrap();
        assert_eq!((restarts.total, restarts.count_24h), (4, 2));
        assert_eq!(restarts.budget_left, 2);
        assert!(restarts.cooldown_until.is_some());
        // One failure below the threshold of 3: degraded, with the probe's latency.
        assert_eq!(views["db"].status, Level::Degraded);
        assert_eq!(views["db"].consecutive_failures, 1);
        let last = views["db"].last_check.as_ref().unwrap();
        assert_eq!((last.ok, last.latency_ms), (false, Some(12)));
        assert!(views["db"].silenced_until.is_some());
        // A probe-only component at its threshold.
        assert_eq!(views["api"].status, Level::Unhealthy);
        assert!(views["api"].restarts.is_none());
        assert_eq!(views["old"].status, Level::Unhealthy);

        let status = Status::new(Duration::from_secs(30));
        status.set_docker(DockerStatus {
            reachable: true,
            ..Default::default()
        });
        assert_eq!(status.overall(&views), Level::Unhealthy);
        let healthy: BTreeMap<_, _> = views
            .into_iter()
            .filter(|(_, v)| v.status == Level::Healthy)
            .collect();
        assert_eq!(status.overall(&healthy), Level::Healthy);
        status.set_docker(DockerStatus::default());
        assert_eq!(status.overall(&healthy), Level::Degraded);
    }
}
