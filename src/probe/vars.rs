//! `${VAR}` substitution in probe settings, with Docker-secrets style `VAR_FILE`.
//!
//! Rules, the same as compose files and the official images' entrypoints:
//! - `${VAR}` is replaced by the variable's value; `${VAR:-default}` by `default` when `VAR` is
//!   unset or empty; `$$` is a literal `$`. A `$` followed by anything else is kept as is.
//! - When `VAR_FILE` is set, the file it names is read and its trailing newline dropped (that is
//!   how Docker secrets are mounted). Setting both `VAR` and `VAR_FILE` is an error, because
//!   silently preferring one hides a mistake.
//! - A variable that is set to nothing and has no default is an error naming the variable: a
//!   probe with an empty password would fail later with a far less helpful message.
//!
//! The trust boundary: the configuration file is written by whoever runs medic, labels by
//! whoever deploys a service. A label value therefore reads a variable only when the operator
//! named it in `MEDIC_LABEL_VARIABLES` ([`LabelVariables`]); any other `${VAR}` in a label is an
//! error, never an expansion, so a service author cannot make medic send its mail password or
//! API token to an address of their choosing.

/// Why a value could not be substituted. The text names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    /// Neither `VAR` nor `VAR_FILE` is set.
    #[error("${{{0}}} is used but neither {0} nor {0}_FILE is set in medic's environment")]
    Missing(String),
    /// Both forms are set.
    #[error("both {0} and {0}_FILE are set; set only one")]
    Both(String),
    /// `VAR_FILE` names a file that cannot be read.
    #[error("{var}_FILE={path:?} cannot be read: {reason}")]
    File {
        /// The variable, without `_FILE`.
        var: String,
        /// The path `VAR_FILE` holds.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// `${` without a closing brace or with an invalid name.
    #[error("invalid reference {0:?}: write ${{NAME}} with letters, digits and '_'")]
    Syntax(String),
    /// A label refers to a variable the operator has not allowed labels to read.
    #[error(
        "labels may not read ${{{0}}} from medic's environment (labels are written by whoever \
         deploys a service); declare this probe in the configuration file, or add {0} to \
         medic's MEDIC_LABEL_VARIABLES (e.g. MEDIC_LABEL_VARIABLES={0})"
    )]
    NotAllowed(String),
}

/// The variable that lists what label values may read.
pub const LABEL_VARIABLES_VAR: &str = "MEDIC_LABEL_VARIABLES";

/// The variables label values may read: the operator's `MEDIC_LABEL_VARIABLES` allow-list,
/// empty unless set. Allowing `VAR` also allows its `VAR_FILE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelVariables(std::collections::BTreeSet<String>);

impl LabelVariables {
    /// Parses a comma- or space-separated list of variable names. A name that is not one
    /// (`*`, `API-HOST`, `$X`) is an error naming it: a list that silently allows less than
    /// the operator meant would show up later as refused labels.
    pub fn parse(text: &str) -> Result<LabelVariables, String> {
        let mut names = std::collections::BTreeSet::new();
        for name in text.split([',', ' ', '\t']).filter(|n| !n.is_empty()) {
            if !valid_name(name) {
                return Err(format!(
                    "{name:?} is not a variable name; list names of letters, digits and '_' \
                     separated by commas, e.g. API_HOST,APP_TOKEN (no wildcards)"
                ));
            }
            names.insert(name.to_string());
        }
        Ok(LabelVariables(names))
    }

    /// The allow-list with these names (for tests and callers that build it in code).
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> LabelVariables {
        LabelVariables(names.into_iter().map(str::to_string).collect())
    }

    /// True when labels may read `name` (and `name_FILE`).
    pub fn allows(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// The allowed names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// A `${NAME}` name: letters, digits and `_`, not starting with a digit.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A substituted value and whether anything came from the environment (such values are
/// treated as secrets where the key allows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substituted {
    /// The text with every reference replaced.
    pub value: String,
    /// True when at least one `${VAR}` was replaced by a variable's value.
    pub from_env: bool,
}

/// Looks up `name` as `name` or `name_FILE`, following the rules of the module docs.
/// `Ok(None)` when neither is set.
pub fn lookup(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, VarError> {
    let found = lookup_unregistered(name, env)?;
    // Every value a `${VAR}` brings into probe settings is treated as a secret: which of them
    // are (a password in a query string, a token in a body) cannot be told from the key.
    if let Some(value) = &found {
        crate::redact::register(value);
    }
    Ok(found)
}

fn lookup_unregistered(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, VarError> {
    let direct = env(name);
    let file = env(&format!("{name}_FILE")).filter(|p| !p.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(VarError::Both(name.to_string())),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(text) => {
                let trimmed = text.strip_suffix('\n').unwrap_or(&text);
                let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
                Ok(Some(trimmed.to_string()))
            }
            Err(e) => Err(VarError::File {
                var: name.to_string(),
                path,
                reason: e.to_string(),
            }),
        },
        (None, None) => Ok(None),
    }
}

/// Replaces every `${VAR}` in `text`.
pub fn substitute(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, VarError> {
    substitute_within(text, env, None)
}

/// Replaces every `${VAR}` in `text`; with `allowed`, a variable not on it is
/// [`VarError::NotAllowed`], even when a default is given (the text came from a label, and a
/// default would hide that the operator's value was never read).
pub fn substitute_within(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    allowed: Option<&LabelVariables>,
) -> Result<Substituted, VarError> {
    let mut out = String::with_capacity(text.len());
    let mut from_env = false;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body
                .find('}')
                .ok_or_else(|| VarError::Syntax(format!("${{{body}")))?;
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !valid_name(name) {
                return Err(VarError::Syntax(format!("${{{inner}}}")));
            }
            if allowed.is_some_and(|allowed| !allowed.allows(name)) {
                return Err(VarError::NotAllowed(name.to_string()));
            }
            match (lookup(name, env)?, default) {
                (Some(value), _) if !value.is_empty() => {
                    out.push_str(&value);
                    from_env = true;
                }
                (_, Some(default)) => out.push_str(default),
                (_, None) => return Err(VarError::Missing(name.to_string())),
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Substituted {
        value: out,
        from_env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn substitutes_variables_defaults_and_dollars() {
        let env = env_of(&[("USER", "medic"), ("EMPTY", "")]);
        let s = substitute("a ${USER} b ${NOPE:-x} c $$ d $e ${EMPTY:-dflt}", &env).unwrap();
        assert_eq!(s.value, "a medic b x c $ d $e dflt");
        assert!(s.from_env);
        let s = substitute("plain", &env).unwrap();
        assert_eq!(s.value, "plain");
        assert!(!s.from_env);
    }

    #[test]
    fn missing_and_malformed_references_name_the_variable() {
        let env = env_of(&[("EMPTY", "")]);
        let e = substitute("${API_KEY}", &env).unwrap_err();
        assert_eq!(e, VarError::Missing("API_KEY".into()));
        assert!(e.to_string().contains("API_KEY_FILE"));
        assert_eq!(
            substitute("${EMPTY}", &env).unwrap_err(),
            VarError::Missing("EMPTY".into())
        );
        assert!(matches!(
            substitute("${OPEN", &env),
            Err(VarError::Syntax(_))
        ));
        assert!(matches!(
            substitute("${a-b}", &env),
            Err(VarError::Syntax(_))
        ));
    }

    #[test]
    fn an_allow_list_lets_only_its_variables_through() {
        let env = env_of(&[("MAIL_PASSWORD", "hunter2"), ("API_HOST", "api")]);
        let allowed = LabelVariables::parse("API_HOST, OTHER").unwrap();
        let s = substitute_within("http://${API_HOST}/x", &env, Some(&allowed)).unwrap();
        assert_eq!(s.value, "http://api/x");
        for text in [
            "http://x/?p=${MAIL_PASSWORD}",
            "${MAIL_PASSWORD:-fallback}",
            "${API_HOST}${MAIL_PASSWORD}",
        ] {
            let e = substitute_within(text, &env, Some(&allowed)).unwrap_err();
            assert_eq!(e, VarError::NotAllowed("MAIL_PASSWORD".into()), "{text}");
            let message = e.to_string();
            assert!(message.contains("${MAIL_PASSWORD}"), "{message}");
            assert!(
                message.contains("MEDIC_LABEL_VARIABLES=MAIL_PASSWORD"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
        // `$$` and plain text need no permission; the empty list allows nothing.
        let none = LabelVariables::default();
        assert_eq!(
            substitute_within("a $$ b", &env, Some(&none))
                .unwrap()
                .value,
            "a $ b"
        );
        assert!(substitute_within("${API_HOST}", &env, Some(&none)).is_err());
    }

    #[test]
    fn the_allow_list_is_validated() {
        assert_eq!(
            LabelVariables::parse(" A_1,B  C,,").unwrap(),
            LabelVariables::of(["A_1", "B", "C"])
        );
        assert_eq!(
            LabelVariables::parse("").unwrap(),
            LabelVariables::default()
        );
        for bad in ["*", "API-HOST", "${X}", "1X", "A,é"] {
            let e = LabelVariables::parse(bad).unwrap_err();
            assert!(e.contains("not a variable name"), "{bad}: {e}");
        }
    }

    #[test]
    fn var_file_is_read_and_trimmed_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let path = path.to_str().unwrap().to_string();
        let env = env_of(&[("PASS_FILE", &path)]);
        assert_eq!(substitute("${PASS}", &env).unwrap().value, "s3cret");
        let env = env_of(&[("PASS_FILE", &path), ("PASS", "x")]);
        assert_eq!(
            substitute("${PASS}", &env).unwrap_err(),
            VarError::Both("PASS".into())
        );
        let env = env_of(&[("PASS_FILE", "/nonexistent/medic")]);
        let e = substitute("${PASS}", &env).unwrap_err();
        assert!(
            e.to_string().contains("PASS_FILE=\"/nonexistent/medic\""),
            "{e}"
        );
    }
}
