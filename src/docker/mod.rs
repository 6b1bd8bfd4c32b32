//! The Docker Engine as medic sees it: containers, their health, their events, and a restart.
//!
//! [`Engine`] is the one seam between medic and Docker; [`BollardEngine`] is its implementation
//! over the Engine API (unix socket or `DOCKER_HOST`, version negotiated). Everything above this
//! module works on the plain data in [`Container`] and [`EngineEvent`].
//!
//! Two engines speak this API: Docker Engine and Podman's Docker-compatible service. Where they
//! differ (Podman puts no health in the container list, and its health events do not say the
//! state), [`BollardEngine`] fills the gap so that the layers above see the same data from both.

mod bollard_engine;
pub mod compose;
pub mod endpoints;
pub mod scope;

pub(crate) use bollard_engine::engine_error;
pub use bollard_engine::{BollardEngine, DEFAULT_ENGINE_TIMEOUT};
pub use compose::{component_of, project_of, LABEL_PODMAN_PROJECT, LABEL_PROJECT, LABEL_SERVICE};
pub use endpoints::{Denials, Endpoint};

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::BoxStream;

/// Label: `true` brings a container into scope, `false` takes one out.
pub const LABEL_ENABLE: &str = "medic.enable";
/// Label: `false` means medic alerts about the container but never restarts it.
pub const LABEL_RESTART: &str = "medic.restart";
/// Label: seconds (or a duration) Docker waits for the container to stop during a restart.
pub const LABEL_STOP_TIMEOUT: &str = "medic.stop-timeout";

/// What went wrong talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine did not answer: socket missing, connection refused, timeout.
    #[error("Docker engine unreachable: {0}")]
    Unreachable(String),
    /// The container does not exist (any more).
    #[error("no such container: {0}")]
    NotFound(String),
    /// The engine answered with an error.
    #[error("Docker engine error: {0}")]
    Api(String),
    /// A socket proxy in front of the engine refused the call (403 from its rules). Nothing is
    /// wrong with the engine: the proxy needs one more permission, which `hint` names.
    #[error("the socket proxy denied {endpoint}: {hint}")]
    Denied {
        /// The call, as `METHOD /path` with `{id}` for ids.
        endpoint: String,
        /// What to set on the proxy, e.g. `set EVENTS=1`.
        hint: String,
    },
}

/// A container's run state, as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown,
}

impl RunState {
    fn parse(s: &str) -> RunState {
        match s {
            "created" => RunState::Created,
            "running" => RunState::Running,
            "paused" => RunState::Paused,
            "restarting" => RunState::Restarting,
            "removing" => RunState::Removing,
            "exited" => RunState::Exited,
            "dead" => RunState::Dead,
            _ => RunState::Unknown,
        }
    }
}

/// The result of a container's own HEALTHCHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The container declares no healthcheck.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    fn parse(s: &str) -> Health {
        match s {
            "starting" => Health::Starting,
            "healthy" => Health::Healthy,
            "unhealthy" => Health::Unhealthy,
            _ => Health::None,
        }
    }

    /// Reads the health from a container list's status text, e.g. `Up 3 minutes (unhealthy)`.
    fn from_status_text(status: &str) -> Health {
        if status.contains("(unhealthy)") {
            Health::Unhealthy
        } else if status.contains("(healthy)") {
            Health::Healthy
        } else if status.contains("(health: starting)") {
            Health::Starting
        } else {
            Health::None
        }
    }
}

/// A container and what medic needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Full container id.
    pub id: String,
    /// Container name without Docker's leading slash.
    pub name: String,
    /// All labels, scope and per-container settings are read from them.
    pub labels: HashMap<String, String>,
    /// Run state.
    pub state: RunState,
    /// HEALTHCHECK status.
    pub health: Health,
    /// `Config.StopTimeout`, when the container sets one (inspect only).
    pub stop_timeout: Option<Duration>,
    /// The healthcheck's `start_period`, when set (inspect only): medic's grace after a restart.
    pub start_period: Option<Duration>,
}

impl Container {
    /// The compose project, if the container belongs to one.
    pub fn project(&self) -> Option<&str> {
        project_of(&self.labels)
    }

    /// The component this container belongs to: its compose service, else its name.
    pub fn component(&self) -> String {
        component_of(&self.labels, &self.name)
    }

    /// False when labelled `medic.restart=false`.
    pub fn restart_allowed(&self) -> bool {
        !label_is_false(&self.labels, LABEL_RESTART)
    }
}

fn label_is_false(labels: &HashMap<String, String>, key: &str) -> bool {
    labels
        .get(key)
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no"))
}

fn label_is_true(labels: &HashMap<String, String>, key: &str) -> bool {
    labels
        .get(key)
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// What happened to a container, from the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `health_status: healthy|unhealthy|starting`.
    Health(Health),
    /// A bare `health_status`: Podman sends one per healthcheck run, with the state in a field
    /// outside the action (and, in 4.3, the state from before the run). The engine layer looks
    /// the container up and turns it into [`EventKind::Health`] before anyone else sees it.
    HealthUnstated,
    /// The container's process exited.
    Die,
    /// The kernel killed a process of the container for memory.
    Oom,
    /// The container started.
    Start,
    /// The container was stopped through the API (an operator, compose, or a restart).
    Stop,
    /// A signal was sent through the API.
    Kill,
    /// The container was removed.
    Destroy,
    /// Anything else; kept so the log can say what it was.
    Other(String),
}

impl EventKind {
    /// Parses Docker's action text (`health_status: unhealthy`, `die`, ...).
    pub fn parse(action: &str) -> EventKind {
        if let Some(status) = action.strip_prefix("health_status:") {
            return EventKind::Health(Health::parse(status.trim()));
        }
        match action {
            "health_status" => EventKind::HealthUnstated,
            "die" => EventKind::Die,
            "oom" => EventKind::Oom,
            "start" => EventKind::Start,
            "stop" => EventKind::Stop,
            "kill" => EventKind::Kill,
            "destroy" => EventKind::Destroy,
            other => EventKind::Other(other.to_string()),
        }
    }
}

/// One container event.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineEvent {
    /// The container's id.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// The container's name and labels as the engine attached them to the event.
    pub attributes: HashMap<String, String>,
    /// When the engine emitted the event, in nanoseconds since the epoch.
    pub time_nanos: i64,
}

impl EngineEvent {
    /// The container name carried by the event.
    pub fn name(&self) -> &str {
        self.attributes
            .get("name")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Which engine answers on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum EngineKind {
    /// Docker Engine (Moby).
    #[serde(rename = "Docker Engine")]
    Docker,
    /// Podman's Docker-compatible service (`podman system service`).
    #[serde(rename = "Podman")]
    Podman,
}

impl EngineKind {
    /// The engine's name as medic shows it.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "Docker Engine",
            EngineKind::Podman => "Podman",
        }
    }

    /// The short name, for sentences: `Docker`, `Podman`.
    pub fn short(self) -> &'static str {
        match self {
            EngineKind::Docker => "Docker",
            EngineKind::Podman => "Podman",
        }
    }

    /// Tells the engines apart by the components `/version` lists: Podman names its own
    /// "Podman Engine"; Docker's is "Engine".
    pub fn from_components<'a>(names: impl IntoIterator<Item = &'a str>) -> EngineKind {
        if names
            .into_iter()
            .any(|n| n.to_ascii_lowercase().contains("podman"))
        {
            EngineKind::Podman
        } else {
            EngineKind::Docker
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The engine's own words for the action (`health_status: unhealthy`, `die`), for logs.
impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let health = |h: &Health| match h {
            Health::None => "none",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        };
        match self {
            EventKind::Health(h) => write!(f, "health_status: {}", health(h)),
            EventKind::Die => f.write_str("die"),
            EventKind::Oom => f.write_str("oom"),
            EventKind::Start => f.write_str("start"),
            EventKind::Stop => f.write_str("stop"),
            EventKind::Kill => f.write_str("kill"),
            EventKind::Destroy => f.write_str("destroy"),
            EventKind::HealthUnstated => f.write_str("health_status"),
            EventKind::Other(action) => f.write_str(action),
        }
    }
}

/// Facts about the engine for logs and `/health/detailed`.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineVersion {
    /// Docker Engine or Podman.
    pub kind: EngineKind,
    /// The engine's version, e.g. 20.10.24.
    pub version: String,
    /// The API version medic talks, after negotiation.
    pub api_version: String,
}

/// The engine medic observes and heals through: the workloads it can list, inspect, watch and
/// restart. Today a workload is a container of a compose project (or one labelled
/// `medic.enable=true`), described by [`Container`]. A Swarm service, where a restart is a
/// forced update, would be a second implementation of this trait: the healing step
/// ([`crate::heal::decide`]) names what it restarts only by workload id and name, by
/// [`crate::model::ServiceKey`] and [`crate::model::ComponentId`], so it would not change.
#[async_trait::async_trait]
pub trait Engine: Send + Sync {
    /// Engine and negotiated API versions; also the cheapest "is it there" call.
    async fn version(&self) -> Result<EngineVersion, EngineError>;
    /// Every container, running or not, that carries one of these `key=value` labels.
    async fn list_labelled(&self, labels: &[String]) -> Result<Vec<Container>, EngineError>;
    /// One container in full; `Ok(None)` when it no longer exists.
    async fn inspect(&self, id: &str) -> Result<Option<Container>, EngineError>;
    /// Restarts a container, giving it `stop_timeout` to stop before it is killed.
    async fn restart(&self, id: &str, stop_timeout: Duration) -> Result<(), EngineError>;
    /// Container events from now on. The stream ends or errors when the engine goes away.
    fn events(&self) -> BoxStream<'static, Result<EngineEvent, EngineError>>;
}

/// Finds the id of the container medic itself runs in, if any, from what the kernel shows it.
pub fn own_container_id() -> Option<String> {
    for path in ["/proc/self/mountinfo", "/proc/self/cgroup"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(id) = find_container_id(&text) {
                return Some(id);
            }
        }
    }
    None
}

/// Finds a 64-hex-digit container id after `/containers/` (mountinfo under cgroup v2) or
/// `/docker/` or `docker-` (cgroup v1 and systemd scopes), or `libpod-` (a Podman container's
/// cgroup, where cgroups are not namespaced; else the hostname finds it). Not Podman's
/// `overlay-containers/`: the host's own mountinfo lists that for every running container.
fn find_container_id(text: &str) -> Option<String> {
    for marker in ["/containers/", "/docker/", "docker-", "libpod-"] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let candidate: String = rest.chars().take(64).collect();
            if candidate.len() == 64 && candidate.chars().all(|c| c.is_ascii_hexdigit()) {
                return Some(candidate);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_read_from_status_text() {
        assert_eq!(
            Health::from_status_text("Up 2 minutes (unhealthy)"),
            Health::Unhealthy
        );
        assert_eq!(
            Health::from_status_text("Up 2 minutes (healthy)"),
            Health::Healthy
        );
        assert_eq!(
            Health::from_status_text("Up 1 second (health: starting)"),
            Health::Starting
        );
        assert_eq!(Health::from_status_text("Up 2 minutes"), Health::None);
    }

    #[test]
    fn event_actions_parse() {
        assert_eq!(
            EventKind::parse("health_status: unhealthy"),
            EventKind::Health(Health::Unhealthy)
        );
        assert_eq!(EventKind::parse("die"), EventKind::Die);
        // Podman: the action alone, the state elsewhere.
        assert_eq!(EventKind::parse("health_status"), EventKind::HealthUnstated);
        assert_eq!(
            EventKind::parse("exec_start: sh"),
            EventKind::Other("exec_start: sh".into())
        );
    }

    #[test]
    fn container_id_is_found_in_mountinfo_and_cgroup() {
        let id = "a".repeat(64);
        let mountinfo = format!(
            "1234 567 0:45 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4"
        );
        assert_eq!(find_container_id(&mountinfo), Some(id.clone()));
        let cgroup = format!("12:memory:/docker/{id}\n");
        assert_eq!(find_container_id(&cgroup), Some(id.clone()));
        assert_eq!(find_container_id("0::/init.scope\n"), None);
        // Podman 4.3 as root: a container's cgroup, and the host's mountinfo, which lists every
        // running container's storage and must not be taken for medic's own.
        let host_mount = format!(
            "725 30 0:52 / /var/lib/containers/storage/overlay-containers/{id}/userdata/shm rw - tmpfs shm rw"
        );
        assert_eq!(find_container_id(&host_mount), None);
        let podman_cgroup = format!("0::/libpod_parent/libpod-{id}\n");
        assert_eq!(find_container_id(&podman_cgroup), Some(id.clone()));
    }

    #[test]
    fn the_engine_is_told_by_its_components() {
        assert_eq!(
            EngineKind::from_components(["Podman Engine", "Conmon", "OCI Runtime (runc)"]),
            EngineKind::Podman
        );
        assert_eq!(
            EngineKind::from_components(["Engine", "containerd", "runc", "docker-init"]),
            EngineKind::Docker
        );
        assert_eq!(EngineKind::from_components([]), EngineKind::Docker);
    }
}
