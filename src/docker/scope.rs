//! Which containers are medic's to watch and heal (SPEC "What is watched").
//!
//! In scope: every container of the watched compose project, and any container labelled
//! `medic.enable=true`. Out of scope: everything else, any container labelled
//! `medic.enable=false`, and medic's own container, always. The project is read from
//! Compose's `com.docker.compose.project` label or podman-compose's `io.podman.compose.project`.

use std::collections::HashMap;

use super::{
    label_is_false, label_is_true, own_container_id, project_of, Engine, EngineError, LABEL_ENABLE,
    LABEL_PODMAN_PROJECT, LABEL_PROJECT,
};

/// The rule that decides whether a container is medic's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// The compose project watched as a whole, if any.
    pub project: Option<String>,
    /// medic's own container id, never touched.
    pub own_id: Option<String>,
}

impl Scope {
    /// True when the container with this id and these labels is watched.
    pub fn contains(&self, id: &str, labels: &HashMap<String, String>) -> bool {
        if self.is_own(id) || label_is_false(labels, LABEL_ENABLE) {
            return false;
        }
        if label_is_true(labels, LABEL_ENABLE) {
            return true;
        }
        match (&self.project, project_of(labels)) {
            (Some(watched), Some(project)) => watched == project,
            _ => false,
        }
    }

    /// Why the container with this id and these labels is not medic's, in words for a probe's
    /// error; `None` when it is in scope. Every action on a container (an `exec` probe, a
    /// restart) asks this first, so none reaches past the scope.
    pub fn why_not(&self, id: &str, labels: &HashMap<String, String>) -> Option<String> {
        if self.contains(id, labels) {
            return None;
        }
        Some(if self.is_own(id) {
            "it is medic's own container, which medic never acts on".to_string()
        } else if label_is_false(labels, LABEL_ENABLE) {
            format!("it is labelled {LABEL_ENABLE}=false")
        } else {
            let watched = match &self.project {
                Some(p) => format!("the watched compose project is {p:?}"),
                None => "no compose project is watched".to_string(),
            };
            match labels.get(LABEL_PROJECT) {
                Some(project) => format!(
                    "it belongs to compose project {project:?} and {watched}; label it \
                     {LABEL_ENABLE}=true to let medic act on it"
                ),
                None => format!(
                    "it belongs to no compose project and has no {LABEL_ENABLE}=true label ({watched})"
                ),
            }
        })
    }

    /// True for medic's own container (ids may be given short).
    pub fn is_own(&self, id: &str) -> bool {
        match &self.own_id {
            Some(own) if !id.is_empty() => own.starts_with(id) || id.starts_with(own.as_str()),
            _ => false,
        }
    }

    /// The `key=value` label filters that together list every candidate container.
    pub fn label_filters(&self) -> Vec<String> {
        let mut filters = vec![format!("{LABEL_ENABLE}=true")];
        if let Some(project) = &self.project {
            filters.push(format!("{LABEL_PROJECT}={project}"));
            // Containers podman-compose labelled in its own namespace only.
            filters.push(format!("{LABEL_PODMAN_PROJECT}={project}"));
        }
        filters
    }
}

/// Finds medic's own container (from what the kernel shows, else the hostname Docker set) and
/// the project to watch: `project` when given, else the own container's compose project.
pub async fn discover(engine: &dyn Engine, project: Option<String>) -> Result<Scope, EngineError> {
    discover_from(engine, project, own_container_id()).await
}

/// [`discover`] with medic's own container id as the kernel showed it (`None` when it shows
/// none), so a test can say what the kernel would.
pub async fn discover_from(
    engine: &dyn Engine,
    project: Option<String>,
    mut own_id: Option<String>,
) -> Result<Scope, EngineError> {
    if own_id.is_none() {
        // Docker sets the hostname to the short container id unless told otherwise.
        if let Ok(hostname) = std::env::var("HOSTNAME") {
            if hostname.len() >= 12 && hostname.chars().all(|c| c.is_ascii_hexdigit()) {
                if let Some(c) = engine.inspect(&hostname).await? {
                    if c.id.starts_with(&hostname) {
                        own_id = Some(c.id);
                    }
                }
            }
        }
    }
    let mut own_project = None;
    if let Some(id) = &own_id {
        if let Some(own) = engine.inspect(id).await? {
            own_project = own.project().map(str::to_string);
        }
    }
    Ok(Scope {
        project: project.or(own_project),
        own_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn scope_table() {
        let own = "f".repeat(64);
        let scope = Scope {
            project: Some("shop".into()),
            own_id: Some(own.clone()),
        };
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            ("a1", &[(LABEL_PROJECT, "shop")], true),
            ("a2", &[(LABEL_PROJECT, "other")], false),
            ("a3", &[], false),
            ("a4", &[(LABEL_ENABLE, "true")], true),
            (
                "a5",
                &[(LABEL_PROJECT, "other"), (LABEL_ENABLE, "true")],
                true,
            ),
            (
                "a6",
                &[(LABEL_PROJECT, "shop"), (LABEL_ENABLE, "false")],
                false,
            ),
            (&own[..12], &[(LABEL_PROJECT, "shop")], false),
            (&own, &[(LABEL_ENABLE, "true")], false),
            ("p1", &[(LABEL_PODMAN_PROJECT, "shop")], true),
            ("p2", &[(LABEL_PODMAN_PROJECT, "other")], false),
            (
                "p3",
                &[(LABEL_PODMAN_PROJECT, "shop"), (LABEL_PROJECT, "shop")],
                true,
            ),
        ];
        for (id, l, expected) in cases {
            assert_eq!(scope.contains(id, &labels(l)), *expected, "{id} {l:?}");
        }
    }

    #[test]
    fn why_not_names_the_reason_for_every_out_of_scope_container() {
        let own = "f".repeat(64);
        let scope = Scope {
            project: Some("shop".into()),
            own_id: Some(own.clone()),
        };
        assert_eq!(
            scope.why_not("a1", &labels(&[(LABEL_PROJECT, "shop")])),
            None
        );
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&own, &[(LABEL_PROJECT, "shop")], "medic's own container"),
            (&own, &[(LABEL_ENABLE, "true")], "medic's own container"),
            (
                "a2",
                &[(LABEL_PROJECT, "shop"), (LABEL_ENABLE, "false")],
                "medic.enable=false",
            ),
            (
                "a3",
                &[(LABEL_PROJECT, "other")],
                "compose project \"other\" and the watched compose project is \"shop\"",
            ),
            ("a4", &[], "no compose project and has no medic.enable=true"),
        ];
        for (id, l, expected) in cases {
            let why = scope.why_not(id, &labels(l)).unwrap();
            assert!(why.contains(expected), "{id} {l:?}: {why}");
        }
    }

    #[test]
    fn without_a_project_only_enabled_containers_count() {
        let scope = Scope::default();
        assert!(!scope.contains("x", &labels(&[(LABEL_PROJECT, "shop")])));
        assert!(scope.contains("x", &labels(&[(LABEL_ENABLE, "true")])));
        assert_eq!(scope.label_filters(), vec!["medic.enable=true".to_string()]);
    }
}
