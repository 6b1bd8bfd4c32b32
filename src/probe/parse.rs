//! Reading the two sources of probes, the YAML file (`MEDIC_CONFIG`) and container labels
//! (`medic.probe.<name>.<key>=<value>`), into raw records ([`super::raw`]) that are then
//! resolved one probe at a time ([`super::resolve`]).
//!
//! The two sources are not trusted alike: the file expands any `${VAR}` of medic's environment,
//! labels only those the operator allowed ([`LabelVariables`], `MEDIC_LABEL_VARIABLES`), since
//! whoever can deploy a labelled service must not be able to read medic's secrets.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;

use super::common::{ProbeSpec, LABEL_PREFIX};
use super::error::{locate, ConfigOrigin, ProbeConfigError};
use super::kinds;
use super::raw::{unknown_key_message, RawProbe};
use super::resolve::{Origin, Resolver};
use super::vars::LabelVariables;

/// The top of the YAML file. Only `probes:` is read here; other top-level sections belong to
/// other parts of medic.
#[derive(Debug, Deserialize)]
struct RawFile {
    /// name → settings.
    #[serde(default)]
    probes: Option<ProbeMap>,
}

/// The probes of the file by name, refusing a name written twice: a YAML map would silently
/// keep the last one, and the first probe would never run.
#[derive(Debug, Default)]
struct ProbeMap(BTreeMap<String, RawProbe>);

impl<'de> Deserialize<'de> for ProbeMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ProbeMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of probe names to their settings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ProbeMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.contains_key(&name) {
                        return Err(serde::de::Error::custom(format!(
                            "probe `{name}` is declared twice in this file; rename one"
                        )));
                    }
                    let probe: RawProbe = map.next_value()?;
                    out.insert(name, probe);
                }
                Ok(ProbeMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses the `probes:` section of the YAML configuration file. `source` is the file's path,
/// used in messages; `env` looks up `${VAR}` references.
pub fn parse_yaml(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ProbeSpec>, ProbeConfigError> {
    let file_error = |line, column, probe, key, message| ProbeConfigError {
        origin: ConfigOrigin::File {
            path: source.to_string(),
            line,
            column,
        },
        probe,
        key,
        message,
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: RawFile = yaml_serde::from_str(text).map_err(|e| {
        let location = e.location();
        let (probe, key, message) = explain_yaml_error(&e.to_string());
        let (mut line, mut column) = (
            location.as_ref().map(|l| l.line() as u32),
            location.as_ref().map(|l| l.column() as u32),
        );
        let mut message = message;
        // The parser points at the `probes:` map; name the lines of both declarations.
        if let Some(name) = message
            .strip_prefix("probe `")
            .filter(|_| message.contains("is declared twice"))
            .and_then(|rest| rest.split('`').next())
        {
            let mut lines: Vec<(u32, u32)> = text
                .lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    let trimmed = l.trim_start();
                    let indent = l.len() - trimmed.len();
                    (indent > 0 && trimmed.strip_prefix(name)?.trim_start().starts_with(':'))
                        .then_some(((i + 1) as u32, (indent + 1) as u32))
                })
                .collect();
            // Probe names sit at one indent; a key of the same name inside a probe does not.
            if let Some(&(_, probe_column)) = lines.first() {
                lines.retain(|(_, c)| *c == probe_column);
            }
            if let [first, second, ..] = lines[..] {
                (line, column) = (Some(second.0), Some(second.1));
                message = format!(
                    "probe `{name}` is declared twice in this file, on lines {} and {}; rename one",
                    first.0, second.0
                );
            }
        }
        file_error(line, column, probe, key, message)
    })?;
    let origin = Origin::File { path: source, text };
    let mut specs = Vec::new();
    for (name, probe) in raw.probes.unwrap_or_default().0 {
        if !valid_probe_name(&name) {
            let (line, column) = locate(text, &name, None).unzip();
            return Err(file_error(
                line,
                column,
                Some(name),
                None,
                "a probe name has only letters, digits, '-' and '_'".into(),
            ));
        }
        specs.push(Resolver::new(&origin, &name, env, None, probe).resolve()?);
    }
    Ok(specs)
}

/// Turns a yaml_serde message (`probes.db: unknown field `urll`, expected one of … at line 4
/// column 5`) into the probe, the key and a short message.
fn explain_yaml_error(text: &str) -> (Option<String>, Option<String>, String) {
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    };
    let (path, message) = match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (Some(path), message),
        _ => (None, text),
    };
    let probe = path
        .and_then(|p| p.strip_prefix("probes."))
        .map(|p| p.split('.').next().unwrap_or(p).to_string());
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(key) = rest.split('`').next() {
            return (
                probe,
                Some(key.to_string()),
                unknown_key_message(key, kinds::all_keys()),
            );
        }
    }
    let key = path
        .and_then(|p| p.strip_prefix("probes."))
        .and_then(|p| p.split_once('.'))
        .map(|(_, k)| k.to_string());
    (probe, key, message.to_string())
}

/// Parses the `medic.probe.<name>.<key>` labels of one container. `container` is its name (for
/// messages), `service` its compose service: the default component, restart target, `tcp` host
/// and `exec` target (`container` then). `${VAR}` in a value reads `env` only for the variables
/// in `allowed` (the trust boundary, see the module docs); any other is an error on the label.
/// The first error fails the whole container; [`parse_labels_each`] keeps the good probes.
pub fn parse_labels(
    container: &str,
    service: &str,
    labels: &HashMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
    allowed: &LabelVariables,
) -> Result<Vec<ProbeSpec>, ProbeConfigError> {
    let (specs, mut errors) = parse_labels_each(container, service, labels, env, allowed);
    match errors.is_empty() {
        true => Ok(specs),
        false => Err(errors.remove(0)),
    }
}

/// Like [`parse_labels`], but one probe's error does not cost the container's other probes:
/// the daemon runs every probe that parses and reports each one that does not.
pub fn parse_labels_each(
    container: &str,
    service: &str,
    labels: &HashMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
    allowed: &LabelVariables,
) -> (Vec<ProbeSpec>, Vec<ProbeConfigError>) {
    let label_error =
        |label: &str, probe: Option<&str>, key: Option<&str>, message: String| ProbeConfigError {
            origin: ConfigOrigin::Label {
                container: container.to_string(),
                label: label.to_string(),
            },
            probe: probe.map(str::to_string),
            key: key.map(str::to_string),
            message,
        };
    let mut errors = Vec::new();
    // Probes with a malformed label: reported once, not resolved from their other labels.
    let mut broken: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    // name → key → value, in label order.
    let mut probes: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    let mut sorted: Vec<_> = labels.iter().collect();
    sorted.sort();
    for (label, value) in sorted {
        let Some(rest) = label.strip_prefix(LABEL_PREFIX) else {
            continue;
        };
        let Some((name, key)) = rest
            .split_once('.')
            .filter(|(n, k)| !n.is_empty() && !k.is_empty())
        else {
            errors.push(label_error(
                label,
                None,
                None,
                "a probe label is medic.probe.<name>.<key>=<value>, e.g. medic.probe.db.type=mongodb"
                    .into(),
            ));
            continue;
        };
        if broken.contains(name) {
            continue;
        }
        let problem = if !valid_probe_name(name) {
            Some((
                None,
                "a probe name has only letters, digits, '-' and '_'".to_string(),
            ))
        } else {
            let top = key.split('.').next().unwrap_or(key);
            if !kinds::all_keys().contains(&top) {
                Some((Some(key), unknown_key_message(top, kinds::all_keys())))
            } else {
                match (top, key.contains('.')) {
                    ("headers", false) => Some((
                        Some(key),
                        "write one label per header: medic.probe.<name>.headers.<Header-Name>=<value>"
                            .to_string(),
                    )),
                    (other, true) if other != "headers" => Some((
                        Some(key),
                        format!("`{other}` takes no sub-key; only headers.<Header-Name> does"),
                    )),
                    _ => None,
                }
            }
        };
        if let Some((key, message)) = problem {
            errors.push(label_error(label, Some(name), key, message));
            broken.insert(name);
            probes.remove(name);
            continue;
        }
        probes.entry(name).or_default().insert(key, value.as_str());
    }

    let origin = Origin::Labels {
        container,
        service,
        project: labels.get("com.docker.compose.project").map(String::as_str),
    };
    let mut specs = Vec::new();
    for (name, keys) in probes {
        let mut object = serde_json::Map::new();
        let mut headers = serde_json::Map::new();
        for (key, value) in keys {
            match key.strip_prefix("headers.") {
                Some(header) => {
                    headers.insert(header.to_string(), value.into());
                }
                None => {
                    object.insert(key.to_string(), value.into());
                }
            }
        }
        if !headers.is_empty() {
            object.insert("headers".into(), headers.into());
        }
        let raw: RawProbe = match serde_json::from_value(object.into()) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(label_error(
                    &format!("{LABEL_PREFIX}{name}"),
                    Some(name),
                    None,
                    e.to_string(),
                ));
                continue;
            }
        };
        match Resolver::new(&origin, name, env, Some(allowed), raw).resolve() {
            Ok(spec) => specs.push(spec),
            Err(e) => errors.push(e),
        }
    }
    (specs, errors)
}

/// True for a name made of letters, digits, `-` and `_`.
fn valid_probe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::kinds::ProbeKind;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn yaml_error_text_is_explained() {
        let (p, k, m) = explain_yaml_error(
            "probes.db: unknown field `urll`, expected one of `type`, `url` at line 4 column 5",
        );
        assert_eq!(p.as_deref(), Some("db"));
        assert_eq!(k.as_deref(), Some("urll"));
        assert_eq!(m, "unknown key `urll`; did you mean `url`?");
    }

    #[test]
    fn an_empty_probe_asks_for_its_type() {
        let e = parse_yaml("probes:\n  db:\n", "m.yaml", &no_env).unwrap_err();
        assert!(e.to_string().contains("probe `db`"), "{e}");
        assert!(e.to_string().contains("type"), "{e}");
        assert!(!e.to_string().contains("RawProbe"), "{e}");
        let e = parse_yaml("probes:\n  - db\n", "m.yaml", &no_env).unwrap_err();
        assert!(e.to_string().starts_with("m.yaml:2:"), "{e}");
    }

    /// Labels from pairs, as a container carries them.
    pub(crate) fn label_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_read_only_the_allowed_variables_and_the_file_reads_all() {
        let env = |name: &str| match name {
            "MAIL_PASSWORD" => Some("hunter2".to_string()),
            "API_HOST" => Some("api.internal".to_string()),
            "OPENAI_API_KEY" => Some("sk-live".to_string()),
            _ => None,
        };
        let leak = label_map(&[
            ("medic.probe.leak.type", "http"),
            (
                "medic.probe.leak.url",
                "http://collector:9000/?p=${MAIL_PASSWORD}",
            ),
        ]);
        let allowed = LabelVariables::of(["API_HOST"]);
        let e = parse_labels("shop-web-1", "web", &leak, &env, &allowed).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "container \"shop-web-1\", label \"medic.probe.leak.url\": probe `leak`, key `url`"
            ),
            "{text}"
        );
        assert!(text.contains("${MAIL_PASSWORD}"), "{text}");
        assert!(text.contains("MEDIC_LABEL_VARIABLES"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let fine = label_map(&[
            ("medic.probe.api.type", "http"),
            ("medic.probe.api.url", "http://${API_HOST}/health"),
        ]);
        let specs = parse_labels("shop-web-1", "web", &fine, &env, &allowed).unwrap();
        let ProbeKind::Http(h) = &specs[0].kind else {
            panic!()
        };
        assert_eq!(h.url.as_str(), "http://api.internal/health");

        // An ai probe without api_key would read the provider's variable: not from labels.
        let ai = label_map(&[
            ("medic.probe.model.type", "ai"),
            ("medic.probe.model.provider", "openai"),
            ("medic.probe.model.base_url", "http://collector:9000"),
        ]);
        let e = parse_labels("shop-web-1", "web", &ai, &env, &allowed).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("api_key"));
        assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
        assert!(!e.to_string().contains("sk-live"), "{e}");
        let specs = parse_labels(
            "shop-web-1",
            "web",
            &ai,
            &env,
            &LabelVariables::of(["OPENAI_API_KEY"]),
        )
        .unwrap();
        assert_eq!(specs.len(), 1);

        // The file is the operator's: it reads any variable.
        let text = "probes:\n  leak:\n    type: http\n    url: http://collector:9000/?p=${MAIL_PASSWORD}\n";
        assert!(parse_yaml(text, "m.yaml", &env).is_ok());
    }
}
