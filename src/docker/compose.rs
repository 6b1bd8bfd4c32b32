//! The compose conventions, read in one place: which labels name a container's project and
//! service (Docker Compose's, and podman-compose's own namespace), and the component a
//! container belongs to. A second orchestrator (Swarm services) would bring its own module
//! beside this one. (The probe files still spell the project and service labels in two
//! places; they are theirs to fold into these.)

use std::collections::HashMap;

/// Label: the compose project a container belongs to.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
/// Label: the compose service a container runs.
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
/// Label: the project in podman-compose's own namespace. podman-compose 1.0 sets it next to
/// Compose's `com.docker.compose.project`/`service` (checked with Debian's 1.0.3); older
/// releases labelled some objects with it alone.
pub const LABEL_PODMAN_PROJECT: &str = "io.podman.compose.project";

/// The compose project of a container with these labels: Compose's label, else the one
/// podman-compose sets in its own namespace.
pub fn project_of(labels: &HashMap<String, String>) -> Option<&str> {
    labels
        .get(LABEL_PROJECT)
        .or_else(|| labels.get(LABEL_PODMAN_PROJECT))
        .map(String::as_str)
}

/// The component name for a container with these labels and name: its compose service, else
/// its name.
pub fn component_of(labels: &HashMap<String, String>, name: &str) -> String {
    labels
        .get(LABEL_SERVICE)
        .cloned()
        .unwrap_or_else(|| name.trim_start_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_is_the_service_else_the_name() {
        let mut labels = HashMap::new();
        assert_eq!(component_of(&labels, "/web-1"), "web-1");
        labels.insert(LABEL_SERVICE.to_string(), "web".to_string());
        assert_eq!(component_of(&labels, "/web-1"), "web");
    }

    #[test]
    fn podman_compose_project_label_names_the_project() {
        let labels = HashMap::from([(LABEL_PODMAN_PROJECT.to_string(), "shop".to_string())]);
        assert_eq!(project_of(&labels), Some("shop"));
        // podman-compose 1.0 sets both with the same value; Compose's wins if they differ.
        let mut both = labels.clone();
        both.insert(LABEL_PROJECT.to_string(), "store".to_string());
        assert_eq!(project_of(&both), Some("store"));
        assert_eq!(project_of(&HashMap::new()), None);
    }
}
