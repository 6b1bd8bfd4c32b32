//! [`Engine`] over the Docker Engine API with bollard.
//!
//! The API version is negotiated on first contact and again after every reconnect, because
//! users run engines both older (Debian's 20.10 speaks 1.41) and newer than bollard's default.
//! It always starts from bollard's own version, never from the last result, so an engine
//! upgraded while medic runs (Docker 29 refuses anything below 1.44) is met at its level.
//!
//! Every call is bounded by the engine timeout (`MEDIC_ENGINE_TIMEOUT`), so an engine that
//! accepts and never answers is reported instead of hanging; the event stream is bounded only
//! until its answer begins, then stays open as long as the engine keeps it open. Every error
//! names the call it came from, and a socket proxy's 403 becomes [`EngineError::Denied`] with
//! the variable to set.
//!
//! Podman's Docker-compatible service (checked with Debian's Podman 4.3) differs in two ways
//! this file evens out: its container list carries no health in the status text, so running
//! containers are inspected for it; and its health events are a bare `health_status` action, one
//! per healthcheck run, with the state in a field bollard does not read (and, in 4.3, the state
//! from before that run), so the container is inspected for its current health.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, ListContainersOptions, RestartContainerOptions,
};
use bollard::Docker;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::RwLock;

use super::endpoints::{self, Endpoint};
use super::{
    Container, Engine, EngineError, EngineEvent, EngineKind, EngineVersion, EventKind, Health,
    RunState,
};

/// How long one call to the engine may take when `MEDIC_ENGINE_TIMEOUT` is unset: long enough
/// for a busy engine, short enough that a hung one is reported within the minute.
pub const DEFAULT_ENGINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The engine reached through bollard.
pub struct BollardEngine {
    /// `DOCKER_HOST` as given (None: the local socket), to build a fresh client for every
    /// negotiation: bollard's clones share one version, so a negotiated client cannot go back.
    host: Option<String>,
    /// The client; replaced by a freshly negotiated one on every successful `version()` call.
    client: RwLock<Docker>,
    /// Set by `version()` when the engine is Podman, whose container list carries no health.
    podman: AtomicBool,
    /// The bound on one call (a restart gets its stop timeout on top).
    timeout: Duration,
}

impl BollardEngine {
    /// Prepares a client for `DOCKER_HOST` (unix://, tcp:// or http://) or the local socket.
    /// Nothing is sent yet: the engine may come up later.
    pub fn connect(docker_host: Option<&str>) -> Result<BollardEngine, EngineError> {
        let client = new_client(docker_host, DEFAULT_ENGINE_TIMEOUT)?;
        Ok(BollardEngine {
            host: docker_host.map(str::to_string),
            client: RwLock::new(client),
            podman: AtomicBool::new(false),
            timeout: DEFAULT_ENGINE_TIMEOUT,
        })
    }

    /// Bounds every call by `timeout` (whole seconds; at least one).
    pub fn with_timeout(self, timeout: Duration) -> BollardEngine {
        let timeout = timeout.max(Duration::from_secs(1));
        let client = self.client.into_inner().with_timeout(timeout);
        BollardEngine {
            host: self.host,
            client: RwLock::new(client),
            podman: self.podman,
            timeout,
        }
    }

    async fn client(&self) -> Docker {
        self.client.read().await.clone()
    }
}

/// A client for `docker_host` at bollard's own (newest) API version, bounded by `timeout`.
fn new_client(docker_host: Option<&str>, timeout: Duration) -> Result<Docker, EngineError> {
    let client = match docker_host {
        Some(host) => {
            let host = if host.starts_with('/') {
                format!("unix://{host}")
            } else {
                host.to_string()
            };
            Docker::connect_with_host(&host).map_err(|e| {
                EngineError::Api(format!(
                    "DOCKER_HOST={host:?} is not usable ({e}); use unix:///path/to/docker.sock or tcp://host:port"
                ))
            })?
        }
        None => Docker::connect_with_socket_defaults()
            .map_err(|e| EngineError::Api(format!("cannot use /var/run/docker.sock: {e}")))?,
    };
    Ok(client.with_timeout(timeout))
}

/// The error of a failed `endpoint` call made with `timeout`, as the rest of medic acts on it.
pub(crate) fn engine_error(
    e: bollard::errors::Error,
    endpoint: &Endpoint,
    timeout: Duration,
) -> EngineError {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code: 404,
            message,
        } => EngineError::NotFound(message),
        B::DockerResponseServerError {
            status_code,
            message,
        } if endpoints::is_proxy_denial(status_code, &message) => EngineError::Denied {
            endpoint: endpoint.to_string(),
            hint: endpoint.allow.to_string(),
        },
        B::DockerResponseServerError {
            status_code,
            message,
        } => EngineError::Api(format!("{endpoint}: {status_code}: {}", message.trim())),
        B::RequestTimeoutError => EngineError::Unreachable(format!(
            "no answer to {endpoint} within {} (MEDIC_ENGINE_TIMEOUT)",
            humantime::format_duration(timeout)
        )),
        B::HyperResponseError { .. }
        | B::IOError { .. }
        | B::HyperLegacyError { .. }
        | B::SocketNotFoundError(_) => EngineError::Unreachable(format!("{endpoint}: {e}")),
        other => EngineError::Api(format!("{endpoint}: {other}")),
    }
}

/// Maps a failed `endpoint` call's error (with the engine's usual timeout).
fn map_err(
    endpoint: &'static Endpoint,
    timeout: Duration,
) -> impl Fn(bollard::errors::Error) -> EngineError {
    move |e| engine_error(e, endpoint, timeout)
}

fn nanos(n: Option<i64>) -> Option<Duration> {
    n.filter(|n| *n > 0).map(|n| Duration::from_nanos(n as u64))
}

/// One container in full through `client`; `Ok(None)` when it no longer exists.
async fn inspect_with(
    client: &Docker,
    id: &str,
    timeout: Duration,
) -> Result<Option<Container>, EngineError> {
    let response = match client
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(map_err(&endpoints::INSPECT_CONTAINER, timeout))
    {
        Ok(r) => r,
        Err(EngineError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let config = response.config.unwrap_or_default();
    let state = response.state.unwrap_or_default();
    let run_state = state
        .status
        .map(|s| RunState::parse(s.as_ref()))
        .unwrap_or(RunState::Unknown);
    let health = state
        .health
        .and_then(|h| h.status)
        .map(|s| Health::parse(s.as_ref()))
        .unwrap_or(Health::None);
    Ok(Some(Container {
        id: response.id.unwrap_or_else(|| id.to_string()),
        name: response
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        labels: config.labels.unwrap_or_default(),
        state: run_state,
        health,
        stop_timeout: config
            .stop_timeout
            .filter(|s| *s >= 0)
            .map(|s| Duration::from_secs(s as u64)),
        start_period: config.healthcheck.and_then(|h| nanos(h.start_period)),
    }))
}

/// Podman's bare `health_status` made into the container's current health. Not running (the
/// event raced a stop) or gone: the event says nothing medic acts on.
async fn health_now(client: &Docker, id: &str, timeout: Duration) -> EventKind {
    match inspect_with(client, id, timeout).await {
        Ok(Some(c)) if c.state == RunState::Running => EventKind::Health(c.health),
        Ok(Some(c)) => EventKind::Other(format!("health_status of a {:?} container", c.state)),
        Ok(None) => EventKind::Other("health_status of a removed container".into()),
        Err(e) => EventKind::Other(format!("health_status (cannot inspect: {e})")),
    }
}

#[async_trait::async_trait]
impl Engine for BollardEngine {
    async fn version(&self) -> Result<EngineVersion, EngineError> {
        let negotiated = new_client(self.host.as_deref(), self.timeout)?
            .negotiate_version()
            .await
            .map_err(map_err(&endpoints::VERSION, self.timeout))?;
        let api_version = negotiated.client_version().to_string();
        let version = negotiated
            .version()
            .await
            .map_err(map_err(&endpoints::VERSION, self.timeout))?;
        *self.client.write().await = negotiated;
        let kind = EngineKind::from_components(
            version.components.iter().flatten().map(|c| c.name.as_str()),
        );
        self.podman
            .store(kind == EngineKind::Podman, Ordering::Relaxed);
        Ok(EngineVersion {
            kind,
            version: version.version.unwrap_or_default(),
            api_version,
        })
    }

    async fn list_labelled(&self, labels: &[String]) -> Result<Vec<Container>, EngineError> {
        let client = self.client().await;
        let mut seen = HashMap::new();
        // The API ANDs label filters, so each label is its own query and the results are merged.
        for label in labels {
            let filters = HashMap::from([("label".to_string(), vec![label.clone()])]);
            let options = ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            };
            for summary in client
                .list_containers(Some(options))
                .await
                .map_err(map_err(&endpoints::LIST_CONTAINERS, self.timeout))?
            {
                let Some(id) = summary.id.clone() else {
                    continue;
                };
                let name = summary
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| id.chars().take(12).collect());
                let state = summary
                    .state
                    .map(|s| RunState::parse(s.as_ref()))
                    .unwrap_or(RunState::Unknown);
                let health = Health::from_status_text(summary.status.as_deref().unwrap_or(""));
                seen.insert(
                    id.clone(),
                    Container {
                        id,
                        name,
                        labels: summary.labels.unwrap_or_default(),
                        state,
                        health,
                        stop_timeout: None,
                        start_period: None,
                    },
                );
            }
        }
        let mut containers: Vec<Container> = seen.into_values().collect();
        if self.podman.load(Ordering::Relaxed) {
            // Podman's list says "Up 3 minutes" whatever the health: only inspect tells.
            for c in containers.iter_mut() {
                if c.state == RunState::Running && c.health == Health::None {
                    if let Some(full) = inspect_with(&client, &c.id, self.timeout).await? {
                        c.health = full.health;
                    }
                }
            }
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(containers)
    }

    async fn inspect(&self, id: &str) -> Result<Option<Container>, EngineError> {
        inspect_with(&self.client().await, id, self.timeout).await
    }

    async fn restart(&self, id: &str, stop_timeout: Duration) -> Result<(), EngineError> {
        let seconds = i32::try_from(stop_timeout.as_secs()).unwrap_or(i32::MAX);
        let client = self
            .client()
            .await
            .with_timeout(stop_timeout + self.timeout);
        client
            .restart_container(
                id,
                Some(RestartContainerOptions {
                    t: Some(seconds),
                    signal: None,
                }),
            )
            .await
            .map_err(map_err(
                &endpoints::RESTART_CONTAINER,
                stop_timeout + self.timeout,
            ))
    }

    fn events(&self) -> BoxStream<'static, Result<EngineEvent, EngineError>> {
        let client = match self.client.try_read() {
            Ok(c) => c.clone(),
            Err(_) => {
                return futures_util::stream::once(async {
                    Err(EngineError::Unreachable("client busy reconnecting".into()))
                })
                .boxed()
            }
        };
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let options = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let timeout = self.timeout;
        let inspector = client.clone();
        client
            .events(Some(options))
            .filter_map(move |item| {
                let inspector = inspector.clone();
                async move {
                    let message = match item {
                        Err(e) => return Some(Err(engine_error(e, &endpoints::EVENTS, timeout))),
                        Ok(message) => message,
                    };
                    let actor = message.actor?;
                    let id = actor.id?;
                    let kind = match EventKind::parse(&message.action?) {
                        EventKind::HealthUnstated => health_now(&inspector, &id, timeout).await,
                        kind => kind,
                    };
                    Some(Ok(EngineEvent {
                        id,
                        kind,
                        attributes: actor.attributes.unwrap_or_default(),
                        time_nanos: message.time_nano.unwrap_or_default(),
                    }))
                }
            })
            .boxed()
    }
}
