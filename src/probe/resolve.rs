//! Resolving one probe's raw record into a [`ProbeSpec`]: the type is looked up in the
//! registry ([`super::kinds`]), keys that belong to another type are refused, the shared keys
//! are read ([`Common`]), then the type's own file reads the rest through the typed readers
//! here. Every reader substitutes `${VAR}` ([`super::vars`]) and builds its errors so they
//! point at the right place: the file's line and column, or the container's label.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use super::common::{Common, ProbeSpec, COMMON_KEYS, LABEL_PREFIX, MIN_PROBE_INTERVAL};
use super::error::{locate, ConfigOrigin, ProbeConfigError};
use super::kinds::{self, ProbeKind};
use super::raw::{closest, Command, List, RawProbe, Scalar, Value};
use super::reply::Header;
use super::secret::{Secret, SecretUri};
use super::vars::{self, LabelVariables, Substituted};

/// Where the record being resolved came from.
pub(crate) enum Origin<'a> {
    /// The YAML file: its path and text.
    File {
        /// Path for messages.
        path: &'a str,
        /// The text, to locate keys in.
        text: &'a str,
    },
    /// A container's labels.
    Labels {
        /// Container name.
        container: &'a str,
        /// Its compose service.
        service: &'a str,
        /// Its compose project, if it belongs to one.
        project: Option<&'a str>,
    },
}

/// Resolves one probe's raw record, building errors that point at the right place.
pub(crate) struct Resolver<'a> {
    /// The source.
    origin: &'a Origin<'a>,
    /// The probe's name.
    probe: &'a str,
    /// Variable lookup for `${VAR}`.
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The variables `${VAR}` may read: all for the file (`None`), the operator's allow-list
    /// for labels.
    allowed: Option<&'a LabelVariables>,
    /// The keys not read yet; each reader takes its key out.
    raw: RefCell<RawProbe>,
}

/// A resolved value, or the error a user must fix.
pub(crate) type Res<T> = Result<T, ProbeConfigError>;

impl<'a> Resolver<'a> {
    /// A resolver of probe `probe`'s record `raw`, read from `origin`.
    pub(crate) fn new(
        origin: &'a Origin<'a>,
        probe: &'a str,
        env: &'a dyn Fn(&str) -> Option<String>,
        allowed: Option<&'a LabelVariables>,
        raw: RawProbe,
    ) -> Resolver<'a> {
        Resolver {
            origin,
            probe,
            env,
            allowed,
            raw: RefCell::new(raw),
        }
    }

    /// The probe's name.
    pub(crate) fn probe(&self) -> &str {
        self.probe
    }

    /// An error about `key` (or the probe as a whole), located in the source.
    pub(crate) fn err(&self, key: Option<&str>, message: impl Into<String>) -> ProbeConfigError {
        let origin = match self.origin {
            Origin::File { path, text } => {
                let (line, column) = locate(text, self.probe, key).unzip();
                ConfigOrigin::File {
                    path: path.to_string(),
                    line,
                    column,
                }
            }
            Origin::Labels { container, .. } => ConfigOrigin::Label {
                container: container.to_string(),
                label: match key {
                    Some(k) => format!("{LABEL_PREFIX}{}.{k}", self.probe),
                    None => format!("{LABEL_PREFIX}{}", self.probe),
                },
            },
        };
        ProbeConfigError {
            origin,
            probe: Some(self.probe.to_string()),
            key: key.map(str::to_string),
            message: message.into(),
        }
    }

    /// The labelled container and its service, for label probes.
    pub(crate) fn labels(&self) -> Option<(&str, &str)> {
        match self.origin {
            Origin::Labels {
                container, service, ..
            } => Some((container, service)),
            Origin::File { .. } => None,
        }
    }

    /// The labelled container's compose project, for label probes.
    pub(crate) fn label_project(&self) -> Option<&str> {
        match self.origin {
            Origin::Labels { project, .. } => *project,
            Origin::File { .. } => None,
        }
    }

    /// Looks up `${VAR}`-style variable `name`, as the source may (the file any, labels only
    /// the allowed ones): `Err` names why a label may not.
    pub(crate) fn env_var(&self, key: &str, name: &str) -> Res<Option<String>> {
        if self.allowed.is_some_and(|a| !a.allows(name)) {
            return Err(self.err(
                Some(key),
                format!(
                    "a probe declared by labels does not read {name} from medic's \
                     environment; {}",
                    vars::VarError::NotAllowed(name.to_string())
                ),
            ));
        }
        vars::lookup(name, self.env).map_err(|e| self.err(Some(key), e.to_string()))
    }

    /// Whether `key` is set (and not read yet).
    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.raw.borrow().is_set(key)
    }

    /// Takes `key`'s value out of the record.
    fn take(&self, key: &str) -> Option<Value> {
        self.raw.borrow_mut().take(key)
    }

    /// Takes a scalar key. A key read in another shape than its declared one is a bug of the
    /// type's file, caught by its tests.
    fn scalar(&self, key: &str) -> Option<Scalar> {
        match self.take(key)? {
            Value::Scalar(s) => Some(s),
            other => unreachable!("key `{key}` is read as a scalar but declared as {other:?}"),
        }
    }

    /// Takes a command key (`exec`'s `command`).
    pub(crate) fn command(&self, key: &str) -> Option<Command> {
        match self.take(key)? {
            Value::Command(c) => Some(c),
            other => unreachable!("key `{key}` is read as a command but declared as {other:?}"),
        }
    }

    /// Substitutes `${VAR}` in one written value of `key`.
    pub(crate) fn subst(&self, key: &str, value: Scalar) -> Res<Substituted> {
        vars::substitute_within(&value.0, self.env, self.allowed)
            .map_err(|e| self.err(Some(key), e.to_string()))
    }

    /// A text value, trimmed.
    pub(crate) fn text(&self, key: &str) -> Res<Option<String>> {
        self.scalar(key)
            .map(|v| self.subst(key, v).map(|s| s.value.trim().to_string()))
            .transpose()
    }

    /// A text value, or `default` when unset.
    pub(crate) fn text_or(&self, key: &str, default: &str) -> Res<String> {
        Ok(self.text(key)?.unwrap_or_else(|| default.to_string()))
    }

    /// A text value that must be set and not empty; `what` says what it is.
    pub(crate) fn required(&self, key: &str, what: &str) -> Res<String> {
        match self.text(key)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.err(Some(key), format!("is required: {what}"))),
        }
    }

    /// A duration longer than zero.
    pub(crate) fn duration(&self, key: &str) -> Res<Option<Duration>> {
        let Some(text) = self.text(key)? else {
            return Ok(None);
        };
        let d = crate::config::parse_duration(key, &text)
            .map_err(|e| self.err(Some(key), e.to_string()))?;
        if d.is_zero() {
            return Err(self.err(
                Some(key),
                format!("{key}={text:?} must be longer than zero"),
            ));
        }
        Ok(Some(d))
    }

    /// A duration of at least [`MIN_PROBE_INTERVAL`], for `interval` and `timeout`.
    pub(crate) fn at_least_a_second(&self, key: &str) -> Res<Option<Duration>> {
        let d = self.duration(key)?;
        match d {
            Some(d) if d < MIN_PROBE_INTERVAL => Err(self.err(
                Some(key),
                format!(
                    "{key} {} is too short: the shortest is {}, since shorter ones keep a core \
                     and the engine busy",
                    humantime::format_duration(d),
                    humantime::format_duration(MIN_PROBE_INTERVAL)
                ),
            )),
            d => Ok(d),
        }
    }

    /// A number; `expected` describes the valid ones.
    pub(crate) fn number<T: FromStr>(&self, key: &str, expected: &str) -> Res<Option<T>> {
        let Some(text) = self.text(key)? else {
            return Ok(None);
        };
        text.parse::<T>().map(Some).map_err(|_| {
            self.err(
                Some(key),
                format!("{key}={text:?} is invalid: expected {expected}"),
            )
        })
    }

    /// A yes/no value.
    pub(crate) fn boolean(&self, key: &str, default: bool) -> Res<bool> {
        match self.text(key)?.as_deref() {
            None => Ok(default),
            Some("true" | "yes" | "on" | "1") => Ok(true),
            Some("false" | "no" | "off" | "0") => Ok(false),
            Some(other) => Err(self.err(
                Some(key),
                format!("{key}={other:?} is invalid: expected true or false"),
            )),
        }
    }

    /// A list, empty items dropped.
    pub(crate) fn list(&self, key: &str) -> Res<Option<Vec<String>>> {
        let value = match self.take(key) {
            None => None,
            Some(Value::List(l)) => Some(l),
            Some(other) => unreachable!("key `{key}` is read as a list but declared as {other:?}"),
        };
        value
            .map(|List(items)| {
                items
                    .into_iter()
                    .map(|s| self.subst(key, s).map(|s| s.value.trim().to_string()))
                    .filter(|s| !matches!(s, Ok(v) if v.is_empty()))
                    .collect::<Res<Vec<_>>>()
            })
            .transpose()
    }

    /// A required http(s) URL.
    pub(crate) fn url(&self, key: &str, what: &str) -> Res<reqwest::Url> {
        let text = self.required(key, what)?;
        let url = reqwest::Url::parse(&text).map_err(|e| {
            self.err(
                Some(key),
                format!(
                    "{key}={:?} is not a URL ({e}); expected http://host:port/path",
                    super::secret::mask_uri(&text)
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.err(
                Some(key),
                format!(
                    "expected an http:// or https:// URL, got {}://",
                    url.scheme()
                ),
            ));
        }
        Ok(url)
    }

    /// A required `uri` of one of `schemes`, its password kept secret.
    pub(crate) fn uri(&self, schemes: &[&str], example: &str) -> Res<SecretUri> {
        let uri = self.required("uri", &format!("a connection URI such as {example}"))?;
        let scheme = uri.split("://").next().unwrap_or("");
        if !uri.contains("://") || !schemes.contains(&scheme) {
            return Err(self.err(
                Some("uri"),
                format!(
                    "{:?} is not a {} URI; expected {example}",
                    super::secret::mask_uri(&uri),
                    schemes.join(" or ")
                ),
            ));
        }
        Ok(SecretUri::new(uri))
    }

    /// A JSON pointer, or `default` when unset.
    pub(crate) fn pointer(&self, key: &str, default: &str) -> Res<String> {
        let p = self.text_or(key, default)?;
        if !p.is_empty() && !p.starts_with('/') {
            return Err(self.err(
                Some(key),
                format!("{key}={p:?} is not a JSON pointer; write it like /data/0/id"),
            ));
        }
        Ok(p)
    }

    /// The `headers` map; a value that looks like a credential, or comes from the
    /// environment, is marked sensitive.
    pub(crate) fn headers(&self) -> Res<Vec<Header>> {
        let value = match self.take("headers") {
            None => BTreeMap::new(),
            Some(Value::Headers(h)) => h,
            Some(other) => unreachable!("`headers` is declared as {other:?}"),
        };
        let mut out = Vec::new();
        for (name, value) in value {
            let key = format!("headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(self.err(Some(&key), format!("{name:?} is not a valid header name")));
            }
            let s = self.subst(&key, value)?;
            if reqwest::header::HeaderValue::from_str(&s.value).is_err() {
                return Err(self.err(
                    Some(&key),
                    "the value holds characters a header cannot carry (newlines, control characters)",
                ));
            }
            let lower = name.to_ascii_lowercase();
            let sensitive = s.from_env
                || [
                    "auth", "token", "key", "secret", "cookie", "password", "session",
                ]
                .iter()
                .any(|w| lower.contains(w));
            out.push(Header {
                name,
                value: Secret::new(s.value),
                sensitive,
            });
        }
        Ok(out)
    }

    /// Resolves the whole record: its type, the shared keys, then the type's own.
    pub(crate) fn resolve(&self) -> Res<ProbeSpec> {
        let type_name = self.required(
            "type",
            &format!("the probe type, one of {}", kinds::type_names()),
        )?;
        let Some(&(type_name, type_keys)) = kinds::TYPE_KEYS.iter().find(|(t, _)| *t == type_name)
        else {
            let hint = closest(&type_name, kinds::TYPE_KEYS.iter().map(|(t, _)| *t))
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            return Err(self.err(
                Some("type"),
                format!(
                    "unknown probe type {type_name:?}; {hint}types: {}",
                    kinds::type_names()
                ),
            ));
        };
        // Keys valid for some other type only.
        let is_common = |key: &str| COMMON_KEYS.iter().any(|(k, _)| *k == key);
        let is_own = |key: &str| type_keys.iter().any(|(k, _)| *k == key);
        let present = self.raw.borrow().present();
        if let Some(key) = present.into_iter().find(|k| !is_common(k) && !is_own(k)) {
            let valid: Vec<&str> = COMMON_KEYS
                .iter()
                .chain(type_keys)
                .map(|(k, _)| *k)
                .collect();
            return Err(self.err(
                Some(key),
                format!(
                    "`{key}` is not a key of a {type_name} probe; its keys are: {}",
                    valid.join(", ")
                ),
            ));
        }
        let common = Common::resolve(self, type_name, kinds::is_informational(type_name))?;
        let kind = ProbeKind::resolve(type_name, self)?;
        Ok(ProbeSpec {
            name: self.probe.to_string(),
            kind,
            schedule: common.schedule,
            timeout: common.timeout,
            restart: common.restart,
            failure_threshold: common.failure_threshold,
            component: common.component,
            declared_in: match self.origin {
                Origin::File { path, .. } => path.to_string(),
                Origin::Labels { container, .. } => format!("container {container}"),
            },
            project: self.label_project().map(str::to_string),
        })
    }
}
