//! Where a bad probe setting was written, and the error a user must fix: every message names
//! `file:line:column` for the YAML file, or the container and full label, then the probe and
//! the key.

use std::fmt;

/// Where a bad value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// The YAML file, with the position when it is known.
    File {
        /// The file's path as given.
        path: String,
        /// 1-based line.
        line: Option<u32>,
        /// 1-based column.
        column: Option<u32>,
    },
    /// A container label.
    Label {
        /// The container's name.
        container: String,
        /// The full label name (`medic.probe.db.timeout`).
        label: String,
    },
}

/// A probe configuration a user must fix. Its text names the file and line, or the container
/// and label, then the probe and key, then what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfigError {
    /// Where the value came from.
    pub origin: ConfigOrigin,
    /// The probe, when the error is inside one.
    pub probe: Option<String>,
    /// The key at fault, when one is.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ProbeConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            ConfigOrigin::File { path, line, column } => {
                write!(f, "{path}")?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                    if let Some(column) = column {
                        write!(f, ":{column}")?;
                    }
                }
                write!(f, ": ")?;
            }
            ConfigOrigin::Label { container, label } => {
                write!(f, "container {container:?}, label {label:?}: ")?;
            }
        }
        match (&self.probe, &self.key) {
            (Some(p), Some(k)) => write!(f, "probe `{p}`, key `{k}`: ")?,
            (Some(p), None) => write!(f, "probe `{p}`: ")?,
            (None, Some(k)) => write!(f, "key `{k}`: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProbeConfigError {}

/// Best effort: the line and column of `key` inside probe `probe` of a block-style YAML file,
/// for errors found after parsing (a bad duration, a key of the wrong type). Without `key`, the
/// probe's own line.
pub(crate) fn locate(text: &str, probe: &str, key: Option<&str>) -> Option<(u32, u32)> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_key = |l: &str, k: &str| {
        let t = l.trim_start();
        let t = t.strip_prefix("- ").unwrap_or(t);
        let unquoted = t
            .strip_prefix(k)
            .or_else(|| t.strip_prefix(&format!("\"{k}\"")))
            .or_else(|| t.strip_prefix(&format!("'{k}'")));
        matches!(unquoted, Some(rest) if rest.trim_start().starts_with(':'))
    };
    let probes_line = lines
        .iter()
        .position(|l| indent(l) == 0 && is_key(l, "probes"))?;
    let (probe_line, probe_indent) = lines
        .iter()
        .enumerate()
        .skip(probes_line + 1)
        .take_while(|(_, l)| {
            l.trim().is_empty() || l.starts_with(char::is_whitespace) || l.starts_with('#')
        })
        .find(|(_, l)| is_key(l, probe))
        .map(|(i, l)| (i, indent(l)))?;
    let Some(key) = key else {
        return Some(((probe_line + 1) as u32, (probe_indent + 1) as u32));
    };
    let top = key.split('.').next().unwrap_or(key);
    lines
        .iter()
        .enumerate()
        .skip(probe_line + 1)
        .take_while(|(_, l)| {
            l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > probe_indent
        })
        .find(|(_, l)| is_key(l, top))
        .map(|(i, l)| ((i + 1) as u32, (indent(l) + 1) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_probe_and_key_lines() {
        let text = "other: 1\nprobes:\n  db:\n    type: mongodb\n    timeout: 3x\n  web:\n    timeout: 1s\n";
        assert_eq!(locate(text, "db", Some("timeout")), Some((5, 5)));
        assert_eq!(locate(text, "web", Some("timeout")), Some((7, 5)));
        assert_eq!(locate(text, "web", None), Some((6, 3)));
        assert_eq!(locate(text, "db", Some("url")), None);
    }
}
