//! The configuration shipped with medic (compose.yaml's labels, docker/medic.yaml) is valid:
//! a user who starts from it gets running probes, not configuration errors.

use std::collections::HashMap;

fn repo(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn docker_medic_yaml_parses() {
    let specs =
        medic::probe::parse_yaml(&repo("docker/medic.yaml"), "docker/medic.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app-ready", "database", "disk"]);
}

#[test]
fn compose_yaml_probe_labels_parse() {
    let compose: yaml_serde::Value = yaml_serde::from_str(&repo("compose.yaml")).unwrap();
    let mut found = Vec::new();
    for service in ["app", "worker"] {
        let labels: HashMap<String, String> = compose["services"][service]["labels"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_string(),
                    v.as_str().unwrap().to_string(),
                )
            })
            .collect();
        let specs = medic::probe::parse_labels(
            service,
            service,
            &labels,
            &|_| None,
            &medic::probe::vars::LabelVariables::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        found.extend(specs.into_iter().map(|s| (s.name, s.restart)));
    }
    assert_eq!(
        found,
        vec![
            ("upload".to_string(), vec!["worker".to_string()]),
            ("queue".to_string(), vec!["worker".to_string()]),
        ]
    );
}
