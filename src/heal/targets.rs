//! Which workloads a decision is about: the running containers a probe's `restart:` names, the
//! service key restart state is kept under, and the key operator holds are kept under.

use std::collections::HashMap;

use crate::docker::{Container, EngineEvent, EventKind, Health, RunState};
use crate::model::ServiceKey;
use crate::probe::ProbeSpec;

/// The running containers of each service a probe restarts, by service key.
pub type Targets = Vec<(ServiceKey, Vec<Container>)>;

/// The running containers a probe's `restart:` names, grouped by service key, and why none is
/// restarted when the names are ambiguous. A name means that service in the probe's own project
/// (the labelled container's for label probes, else the watched project), never a same-named
/// service of another project, even one labelled `medic.enable=true`; `containers` are the
/// watched ones only. With no project to go by, a name found in two projects restarts nothing.
pub fn restart_targets(
    spec: &ProbeSpec,
    containers: &[Container],
    watched_project: Option<&str>,
) -> (Targets, Option<String>) {
    let project = spec.project.as_deref().or(watched_project);
    let mut targets: Targets = Vec::new();
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
pub fn service_key(c: &Container) -> ServiceKey {
    ServiceKey::new(c.project(), &c.component())
}

/// The key operator holds are kept under: the project, or the container for lone ones.
pub fn hold_key(labels: &HashMap<String, String>, name: &str) -> String {
    crate::docker::project_of(labels)
        .map(|p| format!("project:{p}"))
        .unwrap_or_else(|| format!("container:{name}"))
}

/// The container as far as an event describes it: labels and name, presumed running.
pub fn container_from_event(event: &EngineEvent) -> Container {
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn container(name: &str, project: Option<&str>, service: &str) -> Container {
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

    fn names(targets: &Targets) -> Vec<String> {
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
