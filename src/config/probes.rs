//! Where probes come from: the YAML file (`MEDIC_CONFIG`) and `medic.probe.*` labels on
//! watched containers, merged into one list with unique names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::docker::scope::Scope;
use crate::docker::Container;
use crate::probe::{parse_labels, parse_yaml, ProbeSpec, LABEL_PREFIX};

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

/// The probes declared in the file. Every error names the file, line and key.
pub fn file_probes(path: &Path) -> Result<Vec<ProbeSpec>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read MEDIC_CONFIG {}: {e}", path.display()))?;
    parse_yaml(&text, &path.display().to_string(), &env_lookup).map_err(|e| e.to_string())
}

/// The probes declared by labels on the watched containers, and the label errors found (each
/// names the container, label and key). Replicas of one service carry the same labels: their
/// identical probes are kept once.
pub fn label_probes(containers: &[Container], scope: &Scope) -> (Vec<ProbeSpec>, Vec<String>) {
    let mut specs: Vec<ProbeSpec> = Vec::new();
    let mut errors = Vec::new();
    for c in containers {
        if !scope.contains(&c.id, &c.labels)
            || !c.labels.keys().any(|k| k.starts_with(LABEL_PREFIX))
        {
            continue;
        }
        match parse_labels(&c.name, &c.component(), &c.labels, &env_lookup) {
            Ok(found) => {
                for spec in found {
                    if !specs.iter().any(|s| s.name == spec.name) {
                        specs.push(spec);
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    (specs, errors)
}

/// File and label probes together; a name declared in both is an error naming both places.
pub fn merge(file: &[ProbeSpec], labels: Vec<ProbeSpec>) -> (Vec<ProbeSpec>, Vec<String>) {
    let mut all = file.to_vec();
    let mut errors = Vec::new();
    for spec in labels {
        match all.iter().find(|s| s.name == spec.name) {
            Some(existing) => errors.push(format!(
                "probe `{}` is declared twice: in {} and in {}; rename one",
                spec.name, existing.declared_in, spec.declared_in
            )),
            None => all.push(spec),
        }
    }
    (all, errors)
}
