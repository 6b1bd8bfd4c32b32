//! Where probes come from: the YAML file (`MEDIC_CONFIG`) and `medic.probe.*` labels on
//! watched containers, merged into one list with unique names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::docker::scope::Scope;
use crate::docker::Container;
use crate::probe::vars::LabelVariables;
use crate::probe::{parse_labels_each, parse_yaml, ProbeSpec, LABEL_PREFIX};

/// The file read when `MEDIC_CONFIG` is unset, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/medic/medic.yaml";

/// The configuration file to read: `MEDIC_CONFIG`, else the default path when it exists.
pub fn config_file(vars: &HashMap<String, String>) -> Result<Option<PathBuf>, String> {
    match vars
        .get("MEDIC_CONFIG")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(format!(
                    "MEDIC_CONFIG={:?}: no such file; mount the configuration there or unset MEDIC_CONFIG",
                    path.display()
                ))
            }
        }
        None => Ok(Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file())),
    }
}

/// Reads `${VAR}` and `VAR_FILE` references from the process environment.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The top-level keys of the configuration file. Keys starting with `x-` are free for YAML
/// anchors, as in compose files.
pub const TOP_LEVEL_KEYS: &[&str] = &["probes"];

/// The probes declared in the file. Every error names the file, line and key.
pub fn file_probes(path: &Path) -> Result<Vec<ProbeSpec>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read MEDIC_CONFIG {}: {e}", path.display()))?;
    let source = path.display().to_string();
    let specs = parse_yaml(&text, &source, &env_lookup).map_err(|e| e.to_string())?;
    check_top_level(&text, &source)?;
    Ok(specs)
}

/// An unknown top-level key (`prob:` for `probes:`) is an error naming it, its line and the
/// closest known key: ignored, it would run medic with no probes and no word about why.
pub fn check_top_level(text: &str, source: &str) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct TopLevel {
        #[serde(flatten)]
        keys: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
    }
    // Not a mapping at all: parse_yaml has said so already.
    let Ok(top) = yaml_serde::from_str::<TopLevel>(text) else {
        return Ok(());
    };
    for key in top.keys.keys() {
        if TOP_LEVEL_KEYS.contains(&key.as_str()) || key.starts_with("x-") {
            continue;
        }
        let line = text
            .lines()
            .position(|l| {
                l.strip_prefix(key.as_str())
                    .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
                    .or_else(|| l.strip_prefix(&format!("'{key}'")))
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            })
            .map(|i| format!(":{}", i + 1))
            .unwrap_or_default();
        let hint = match super::closest(key, TOP_LEVEL_KEYS) {
            Some(known) => format!("did you mean `{known}`?"),
            None => format!("the known keys are: {}", TOP_LEVEL_KEYS.join(", ")),
        };
        return Err(format!(
            "{source}{line}: unknown top-level key `{key}`; {hint} (keys starting with x- are \
             free for YAML anchors)"
        ));
    }
    Ok(())
}

/// The probes declared by labels on the watched containers, and the label errors found (each
/// names the container, label and key). `${VAR}` in labels reads only the variables in
/// `allowed` (`MEDIC_LABEL_VARIABLES`). Replicas of one service carry the same labels: their
/// probes are kept once. One name declared on two different services is an error naming both
/// containers; the probe of the container whose name sorts first is kept, so the choice does
/// not change from one listing to the next.
pub fn label_probes(
    containers: &[Container],
    scope: &Scope,
    allowed: &LabelVariables,
) -> (Vec<ProbeSpec>, Vec<LabelError>) {
    let mut specs: Vec<(ProbeSpec, String)> = Vec::new();
    let mut errors = Vec::new();
    let mut sorted: Vec<&Container> = containers
        .iter()
        .filter(|c| {
            scope.contains(&c.id, &c.labels) && c.labels.keys().any(|k| k.starts_with(LABEL_PREFIX))
        })
        .collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for c in sorted {
        let replica_of = format!("{}/{}", c.project().unwrap_or_default(), c.component());
        let (found, bad) =
            parse_labels_each(&c.name, &c.component(), &c.labels, &env_lookup, allowed);
        errors.extend(bad.into_iter().map(|e| LabelError {
            component: c.component(),
            probe: e.probe.clone(),
            text: e.to_string(),
        }));
        for spec in found {
            match specs.iter().find(|(s, _)| s.name == spec.name) {
                Some((_, service)) if *service == replica_of => {}
                Some((existing, _)) => errors.push(LabelError {
                    component: spec.component.clone(),
                    // The name belongs to the probe that runs: the clash is only logged.
                    probe: None,
                    text: format!(
                        "probe `{}` is declared twice: in {} and in {}; rename one (the one in {} runs)",
                        spec.name, existing.declared_in, spec.declared_in, existing.declared_in
                    ),
                }),
                None => specs.push((spec, replica_of.clone())),
            }
        }
    }
    (specs.into_iter().map(|(s, _)| s).collect(), errors)
}

/// A label probe that cannot run, and whose component it would have fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    /// The labelled container's component.
    pub component: String,
    /// The probe, when the error belongs to one that then does not run (not for a name
    /// clash, where the name's other probe does run).
    pub probe: Option<String>,
    /// The error, naming the container, label, key and what to do.
    pub text: String,
}

impl std::fmt::Display for LabelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// File and label probes together; a name declared in both is an error naming both places.
pub fn merge(file: &[ProbeSpec], labels: Vec<ProbeSpec>) -> (Vec<ProbeSpec>, Vec<String>) {
    let mut all = file.to_vec();
    let mut errors = Vec::new();
    for spec in labels {
        match all.iter().find(|s| s.name == spec.name) {
            Some(existing) => errors.push(format!(
                "probe `{}` is declared twice: in {} and in {}; rename one (the one in {} runs)",
                spec.name, existing.declared_in, spec.declared_in, existing.declared_in
            )),
            None => all.push(spec),
        }
    }
    (all, errors)
}
