//! Typed settings, read once from the environment and validated before anything starts.
//!
//! [`Settings::from_vars`] reads the whole tree from one map of variables (taken once from the
//! process environment by [`environment`]): the core settings, the API token and the notifiers'
//! settings ([`NotifySettings`]). Every value is parsed here, so the rest of the program never
//! sees a raw string and never reads the environment again. A bad value
//! is a [`ConfigError`] that names the variable, shows what it got and says what it expects; the
//! command line turns it into exit code 2 so a half-configured daemon never starts.

pub mod probes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::notify::NotifySettings;
use crate::probe::vars::{LabelVariables, LABEL_VARIABLES_VAR};
use crate::redact::Secret;

/// A configuration problem a user must fix. Its text names the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable is set to something that does not parse.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The environment variable at fault.
        var: String,
        /// What it was set to (never a secret: secrets are not validated through here).
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// A variable's name or value is not UTF-8 text, so medic cannot read it.
    #[error(
        "the environment variable {name} is not UTF-8 text; medic reads its settings as UTF-8: \
         fix its value or unset it"
    )]
    NotUtf8 {
        /// The variable's name, non-UTF-8 bytes replaced (its value is never shown).
        name: String,
    },
}

/// The process environment as text. A variable whose name or value is not UTF-8 is an error
/// naming it, where `std::env::vars()` would panic (exit 101, so the image's HEALTHCHECK and
/// every command would fail without a word about why).
pub fn environment() -> Result<HashMap<String, String>, ConfigError> {
    environment_from(std::env::vars_os())
}

/// [`environment`] over any list of variables, so tests need not set non-UTF-8 variables in
/// their own process.
pub fn environment_from(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<HashMap<String, String>, ConfigError> {
    let mut out = HashMap::new();
    for (name, value) in vars {
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => {
                out.insert(name, value);
            }
            (Ok(name), Err(_)) => return Err(ConfigError::NotUtf8 { name }),
            (Err(name), _) => {
                return Err(ConfigError::NotUtf8 {
                    name: name.to_string_lossy().into_owned(),
                })
            }
        }
    }
    Ok(out)
}

impl ConfigError {
    /// `var` set to `value` does not parse; `reason` says what was expected.
    pub fn invalid(var: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            var: var.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The value of `name` in `vars`, trimmed, with the name for error messages; `None` when unset
/// or blank, so a blank variable means its default everywhere (as `VAR=` in a compose file).
pub fn lookup<'a>(
    vars: &'a HashMap<String, String>,
    name: &'static str,
) -> Option<(&'static str, &'a str)> {
    vars.get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| (name, v))
}

/// A map of variables from pairs, for tests of settings.
#[cfg(test)]
pub(crate) fn vars_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, the default.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// `MEDIC_LOG_FORMAT` alone: the command line sets up logging with it before the rest of
    /// the settings is read, so warnings given while reading them are written as asked.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<LogFormat, ConfigError> {
        match lookup(vars, "MEDIC_LOG_FORMAT") {
            None => Ok(LogFormat::Text),
            Some((_, v)) if v.eq_ignore_ascii_case("text") => Ok(LogFormat::Text),
            Some((_, v)) if v.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
            Some((var, v)) => Err(ConfigError::invalid(var, v, "expected text or json")),
        }
    }
}

/// The healing policy's knobs; see SPEC "Healing policy".
#[derive(Debug, Clone, PartialEq)]
pub struct HealingSettings {
    /// Consecutive synthetic-probe failures before a restart.
    pub failure_threshold: u32,
    /// Minimum time between two restarts of one service.
    pub restart_cooldown: Duration,
    /// Restarts allowed per service within `budget_window`.
    pub restart_budget: u32,
    /// The rolling window the budget counts over (one hour unless tests shorten it).
    pub budget_window: Duration,
    /// Grace after a restart when the container declares no healthcheck `start_period`.
    pub default_grace: Duration,
    /// Stop timeout used when neither the label nor the container sets one.
    pub default_stop_timeout: Duration,
    /// How long restarts in a project are held after an operator stopped one of its containers.
    pub operator_hold: Duration,
}

impl Default for HealingSettings {
    fn default() -> Self {
        HealingSettings {
            failure_threshold: 3,
            restart_cooldown: Duration::from_secs(600),
            restart_budget: 3,
            budget_window: Duration::from_secs(3600),
            default_grace: Duration::from_secs(60),
            default_stop_timeout: Duration::from_secs(10),
            operator_hold: Duration::from_secs(120),
        }
    }
}

/// The HTTP server's limits against slow, idle and too many clients (docs/http.md, Limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `MEDIC_HTTP_HEADER_TIMEOUT`: how long a connection may take to send a whole request head,
    /// counted from its opening or its previous answer, so it is also the keep-alive idle time.
    pub header_timeout: Duration,
    /// `MEDIC_HTTP_MAX_CONNECTIONS`: connections held open at once; beyond it the one that has
    /// been silent longest is closed, so a flood of idle connections cannot lock out `/health`.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(5),
            max_connections: 256,
        }
    }
}

/// Everything `medic run` needs, parsed and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Compose project to watch in addition to `medic.enable=true` containers. When unset, the
    /// project of medic's own container is used, if medic runs in one.
    pub project: Option<String>,
    /// The Docker endpoint (`DOCKER_HOST`), or the local socket when unset.
    pub docker_host: Option<String>,
    /// How long one engine call may take before medic reports the engine as not answering
    /// (`MEDIC_ENGINE_TIMEOUT`); the event stream is bounded only until it starts.
    pub engine_timeout: Duration,
    /// Where state survives restarts of medic.
    pub data_dir: PathBuf,
    /// Address of the HTTP server.
    pub listen: SocketAddr,
    /// The HTTP server's timeouts and connection bound.
    pub http: HttpLimits,
    /// How often every watched container is inspected, in case an event was missed.
    pub reconcile_interval: Duration,
    /// Healing policy.
    pub healing: HealingSettings,
    /// Log line format.
    pub log_format: LogFormat,
    /// The YAML configuration file (`MEDIC_CONFIG`, else /etc/medic/medic.yaml if present).
    pub config_file: Option<PathBuf>,
    /// The variables `${VAR}` in labels may read (`MEDIC_LABEL_VARIABLES`); none unless set.
    pub label_variables: LabelVariables,
    /// How long and how much history the store keeps.
    pub retention: crate::store::retention::Retention,
    /// How often the store file is read through for corruption (`MEDIC_STORE_CHECK_INTERVAL`).
    pub store_check_interval: Duration,
    /// `MEDIC_API_TOKEN` (or the file `MEDIC_API_TOKEN_FILE` names): needed by the admin routes
    /// and `/health/detailed`; `None` leaves the admin routes closed (403).
    pub api_token: Option<Secret>,
    /// Email, webhooks, rate limits and the daily report (docs/alerts.md).
    pub notify: NotifySettings,
}

/// The shortest `MEDIC_RECONCILE_INTERVAL`: each reconcile lists every watched container, and
/// shorter intervals keep the engine and a core busy for nothing events do not already tell.
pub const MIN_RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// The `MEDIC_*` variables of the core settings. With the notifiers' own lists
/// ([`crate::notify::NOTIFY_VARIABLES`] and each channel's, kept beside the code that reads
/// it) they are every variable medic reads; anything else starting with `MEDIC_` draws a warning.
pub const KNOWN_VARIABLES: &[&str] = &[
    "MEDIC_PROJECT",
    "MEDIC_DATA_DIR",
    "MEDIC_LISTEN",
    "MEDIC_RECONCILE_INTERVAL",
    "MEDIC_FAILURE_THRESHOLD",
    "MEDIC_RESTART_COOLDOWN",
    "MEDIC_RESTART_BUDGET",
    "MEDIC_RESTART_BUDGET_WINDOW",
    "MEDIC_RESTART_GRACE",
    "MEDIC_STOP_TIMEOUT",
    "MEDIC_OPERATOR_HOLD",
    "MEDIC_LOG_FORMAT",
    "MEDIC_LOG",
    "MEDIC_CONFIG",
    "MEDIC_API_TOKEN",
    "MEDIC_API_TOKEN_FILE",
    "MEDIC_ENGINE_TIMEOUT",
    "MEDIC_LABEL_VARIABLES",
    "MEDIC_HTTP_HEADER_TIMEOUT",
    "MEDIC_HTTP_MAX_CONNECTIONS",
    "MEDIC_HISTORY_RETENTION",
    "MEDIC_HISTORY_MAX_ROWS",
    "MEDIC_STORE_CHECK_INTERVAL",
];

/// Every `MEDIC_*` variable medic reads: the core ones, the notifier's and each channel's
/// (from the channel registry, so a new channel's variables are listed once, in its file).
fn known_variables() -> Vec<&'static str> {
    KNOWN_VARIABLES
        .iter()
        .chain(crate::notify::NOTIFY_VARIABLES)
        .copied()
        .chain(crate::notify::channels::variables())
        .filter(|name| name.starts_with("MEDIC_"))
        .collect()
}

impl Settings {
    /// Reads settings from the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_vars(&environment()?)
    }

    /// Reads settings from a map of variables, so tests need not touch the process environment.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        let get = |name: &'static str| lookup(vars, name);
        let defaults = HealingSettings::default();

        let failure_threshold =
            match get("MEDIC_FAILURE_THRESHOLD").or_else(|| get("MAX_CONSECUTIVE_FAILURES")) {
                Some((var, v)) => parse_count(var, v, 1)?,
                None => defaults.failure_threshold,
            };
        let restart_cooldown = match get("MEDIC_RESTART_COOLDOWN") {
            Some((var, v)) => parse_duration(var, v)?,
            None => match get("RESTART_COOLDOWN_MINUTES") {
                Some((var, v)) => {
                    let minutes: u64 = v.parse().map_err(|_| {
                        ConfigError::invalid(var, v, "expected a whole number of minutes, e.g. 10")
                    })?;
                    minutes
                        .checked_mul(60)
                        .map(Duration::from_secs)
                        .filter(|d| *d <= MAX_DURATION)
                        .ok_or_else(|| too_long(var, v))?
                }
                None => defaults.restart_cooldown,
            },
        };
        let healing = HealingSettings {
            failure_threshold,
            restart_cooldown,
            restart_budget: opt(get("MEDIC_RESTART_BUDGET"), |var, v| parse_count(var, v, 0))?
                .unwrap_or(defaults.restart_budget),
            budget_window: opt(get("MEDIC_RESTART_BUDGET_WINDOW"), parse_nonzero_duration)?
                .unwrap_or(defaults.budget_window),
            default_grace: opt(get("MEDIC_RESTART_GRACE"), parse_duration)?
                .unwrap_or(defaults.default_grace),
            default_stop_timeout: opt(get("MEDIC_STOP_TIMEOUT"), parse_duration)?
                .unwrap_or(defaults.default_stop_timeout),
            operator_hold: opt(get("MEDIC_OPERATOR_HOLD"), parse_duration)?
                .unwrap_or(defaults.operator_hold),
        };

        let listen = match get("MEDIC_LISTEN") {
            Some((var, v)) => v.parse().map_err(|_| {
                ConfigError::invalid(var, v, "expected an address and port, e.g. 0.0.0.0:8080")
            })?,
            None => SocketAddr::from(([0, 0, 0, 0], 8080)),
        };
        let http_defaults = HttpLimits::default();
        let http = HttpLimits {
            // Under a second would drop honest clients on a busy network; over ten minutes
            // would let idle connections pile up for no use.
            header_timeout: opt(get("MEDIC_HTTP_HEADER_TIMEOUT"), |var, v| {
                let d = parse_duration(var, v)?;
                if d < Duration::from_secs(1) || d > Duration::from_secs(600) {
                    return Err(ConfigError::invalid(
                        var,
                        v,
                        "expected a duration from 1s to 10m, e.g. 5s",
                    ));
                }
                Ok(d)
            })?
            .unwrap_or(http_defaults.header_timeout),
            // Below 8 one browser's parallel connections would evict each other.
            max_connections: opt(get("MEDIC_HTTP_MAX_CONNECTIONS"), |var, v| {
                parse_count(var, v, 8)
            })?
            .map_or(http_defaults.max_connections, |n| n as usize),
        };
        let log_format = LogFormat::from_vars(vars)?;
        let project = match get("MEDIC_PROJECT") {
            Some((var, v)) => Some(parse_project(var, v)?),
            None => None,
        };

        Ok(Settings {
            project,
            docker_host: get("DOCKER_HOST").map(|(_, v)| v.to_string()),
            engine_timeout: match get("MEDIC_ENGINE_TIMEOUT") {
                Some((var, v)) => parse_engine_timeout(var, v)?,
                None => crate::docker::DEFAULT_ENGINE_TIMEOUT,
            },
            data_dir: get("MEDIC_DATA_DIR")
                .map(|(_, v)| PathBuf::from(v))
                .unwrap_or_else(|| PathBuf::from("/data")),
            listen,
            http,
            reconcile_interval: opt(get("MEDIC_RECONCILE_INTERVAL"), |var, v| {
                parse_at_least(var, v, MIN_RECONCILE_INTERVAL)
            })?
            .unwrap_or(Duration::from_secs(30)),
            healing,
            log_format,
            retention: parse_retention(&get)?,
            store_check_interval: opt(get("MEDIC_STORE_CHECK_INTERVAL"), |var, v| {
                parse_at_least(var, v, Duration::from_secs(1))
            })?
            .unwrap_or(Duration::from_secs(600)),
            config_file: probes::config_file(vars).map_err(|reason| ConfigError::Invalid {
                var: "MEDIC_CONFIG".into(),
                value: vars.get("MEDIC_CONFIG").cloned().unwrap_or_default(),
                reason,
            })?,
            label_variables: match vars.get(LABEL_VARIABLES_VAR) {
                Some(v) => LabelVariables::parse(v)
                    .map_err(|reason| ConfigError::invalid(LABEL_VARIABLES_VAR, v, reason))?,
                None => LabelVariables::default(),
            },
            // Last, so the core settings' errors are reported first (fields are read in order).
            api_token: api_token(vars)?,
            notify: NotifySettings::from_vars(vars)?,
        })
    }

    /// The configuration file's probes, none without a file; `Err` names the file, line and key.
    /// The daemon and the one-shot commands load them the same way.
    pub fn file_probes(&self) -> Result<Vec<crate::probe::ProbeSpec>, String> {
        match &self.config_file {
            Some(path) => probes::file_probes(path),
            None => Ok(Vec::new()),
        }
    }

    /// A client of the engine at `DOCKER_HOST` whose calls are bounded by
    /// `MEDIC_ENGINE_TIMEOUT`, as the daemon and the one-shot commands use it.
    pub fn engine(&self) -> Result<crate::docker::BollardEngine, crate::docker::EngineError> {
        Ok(
            crate::docker::BollardEngine::connect(self.docker_host.as_deref())?
                .with_timeout(self.engine_timeout),
        )
    }

    /// `MEDIC_*` variables that medic does not know, each with the closest known name, so a typo
    /// is reported instead of silently ignored.
    pub fn unknown_variables(
        vars: &HashMap<String, String>,
    ) -> Vec<(String, Option<&'static str>)> {
        let known = known_variables();
        let mut unknown: Vec<_> = vars
            .keys()
            .filter(|k| k.starts_with("MEDIC_") && !known.contains(&k.as_str()))
            .filter(|k| !k.starts_with("MEDIC_TEST_"))
            .map(|k| (k.clone(), closest(k, &known)))
            .collect();
        unknown.sort();
        unknown
    }
}

/// The engine timeout: whole seconds, at least one (the engine client counts in seconds).
fn parse_engine_timeout(var: &str, value: &str) -> Result<Duration, ConfigError> {
    let timeout = parse_duration(var, value)?;
    if timeout < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            var,
            value,
            "expected at least 1s, e.g. 30s",
        ));
    }
    Ok(timeout)
}

fn opt<T>(
    found: Option<(&str, &str)>,
    parse: impl Fn(&str, &str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    found.map(|(var, v)| parse(var, v)).transpose()
}

/// The longest duration any setting or label takes: 100 years (`100y`). Longer is a mistake,
/// and medic adds durations to the clock (probe deadlines, restart holds, alert times): from
/// about 300,000 years on, those sums overflow and panic.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses `30s`, `10m`, `1h30m` or a bare number of seconds, at most [`MAX_DURATION`].
pub fn parse_duration(var: &str, value: &str) -> Result<Duration, ConfigError> {
    let duration = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(value).map_err(|e| {
            ConfigError::invalid(
                var,
                value,
                format!("{e}; expected a duration such as 30s, 10m or 1h"),
            )
        })?,
    };
    if duration > MAX_DURATION {
        return Err(too_long(var, value));
    }
    Ok(duration)
}

fn too_long(var: &str, value: &str) -> ConfigError {
    ConfigError::invalid(
        var,
        value,
        "longer than 100 years, the longest duration medic accepts",
    )
}

fn parse_nonzero_duration(var: &str, value: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(var, value)?;
    if d.is_zero() {
        return Err(ConfigError::invalid(var, value, "must be longer than zero"));
    }
    Ok(d)
}

/// A duration of at least `min`.
fn parse_at_least(var: &str, value: &str, min: Duration) -> Result<Duration, ConfigError> {
    let d = parse_duration(var, value)?;
    if d < min {
        return Err(ConfigError::invalid(
            var,
            value,
            format!(
                "the shortest is {}: shorter ones keep the engine and a core busy",
                humantime::format_duration(min)
            ),
        ));
    }
    Ok(d)
}

/// `MEDIC_API_TOKEN`, else the contents of `MEDIC_API_TOKEN_FILE` (trimmed); `None` when neither
/// is set. Set but blank (the variable, the file's name or the file itself) is an error: read as
/// "no token" it would silently leave the admin routes and the detailed health open to anyone,
/// though the operator meant to close them. The value itself is never shown.
fn api_token(vars: &HashMap<String, String>) -> Result<Option<Secret>, ConfigError> {
    let blank = |var: &str, value: &str| {
        ConfigError::invalid(
            var,
            value,
            "is set but blank; set a token (e.g. from `openssl rand -hex 32`) or unset it to \
             disable the admin routes",
        )
    };
    if let Some(token) = vars.get("MEDIC_API_TOKEN") {
        if token.trim().is_empty() {
            return Err(blank("MEDIC_API_TOKEN", ""));
        }
        return Ok(Some(Secret::new(token.trim())));
    }
    let Some(path) = vars.get("MEDIC_API_TOKEN_FILE") else {
        return Ok(None);
    };
    if path.trim().is_empty() {
        return Err(blank("MEDIC_API_TOKEN_FILE", path));
    }
    match std::fs::read_to_string(path.trim()) {
        Ok(token) if token.trim().is_empty() => Err(ConfigError::invalid(
            "MEDIC_API_TOKEN_FILE",
            path,
            "the file is empty; write the token into it",
        )),
        Ok(token) => Ok(Some(Secret::new(token.trim()))),
        Err(e) => Err(ConfigError::invalid(
            "MEDIC_API_TOKEN_FILE",
            path,
            format!("cannot be read: {e}"),
        )),
    }
}

fn parse_count(var: &str, value: &str, min: u32) -> Result<u32, ConfigError> {
    match value.parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(ConfigError::invalid(
            var,
            value,
            format!("expected a whole number of at least {min}"),
        )),
    }
}

/// The shortest retention: the daily report and the status page read the last 24 hours.
const MIN_RETENTION: Duration = Duration::from_secs(86_400);
/// The smallest row cap: below it a busy day would push out the hours the report reads.
const MIN_MAX_ROWS: u64 = 1_000;

fn parse_retention<'a>(
    get: &impl Fn(&'static str) -> Option<(&'static str, &'a str)>,
) -> Result<crate::store::retention::Retention, ConfigError> {
    let defaults = crate::store::retention::Retention::default();
    let keep_for = match get("MEDIC_HISTORY_RETENTION") {
        Some((var, v)) => {
            let d = parse_duration(var, v)?;
            if d < MIN_RETENTION {
                return Err(ConfigError::invalid(
                    var,
                    v,
                    "must be at least 1d: the daily report and the status page read the last 24 hours",
                ));
            }
            d
        }
        None => defaults.keep_for,
    };
    let max_rows = match get("MEDIC_HISTORY_MAX_ROWS") {
        Some((var, v)) => match v.replace('_', "").parse::<u64>() {
            Ok(n) if n >= MIN_MAX_ROWS => n,
            _ => {
                return Err(ConfigError::invalid(
                    var,
                    v,
                    format!("expected a whole number of rows per table, at least {MIN_MAX_ROWS}"),
                ))
            }
        },
        None => defaults.max_rows,
    };
    Ok(crate::store::retention::Retention { keep_for, max_rows })
}

fn parse_project(var: &str, value: &str) -> Result<String, ConfigError> {
    let valid = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid {
        return Err(ConfigError::invalid(
            var,
            value,
            "a compose project name has only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(value.to_string())
}

/// The known name nearest to `name` by edit distance, if it is plausibly a typo of it.
fn closest(name: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), *k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars_of as vars;

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::from_vars(&vars(&[])).unwrap();
        assert_eq!(s.healing.failure_threshold, 3);
        assert_eq!(s.healing.restart_cooldown, Duration::from_secs(600));
        assert_eq!(s.healing.restart_budget, 3);
        assert_eq!(s.healing.budget_window, Duration::from_secs(3600));
        assert_eq!(s.healing.default_grace, Duration::from_secs(60));
        assert_eq!(s.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(s.data_dir, PathBuf::from("/data"));
        assert_eq!(s.log_format, LogFormat::Text);
        assert!(s.project.is_none());
        assert_eq!(s.http.header_timeout, Duration::from_secs(5));
        assert_eq!(s.http.max_connections, 256);
        assert_eq!(s.retention.keep_for, Duration::from_secs(30 * 86_400));
        assert_eq!(s.retention.max_rows, 50_000);
        assert_eq!(s.store_check_interval, Duration::from_secs(600));
    }

    #[test]
    fn http_limits_are_read() {
        let s = Settings::from_vars(&vars(&[
            ("MEDIC_HTTP_HEADER_TIMEOUT", "2s"),
            ("MEDIC_HTTP_MAX_CONNECTIONS", "64"),
        ]))
        .unwrap();
        assert_eq!(s.http.header_timeout, Duration::from_secs(2));
        assert_eq!(s.http.max_connections, 64);
    }

    #[test]
    fn retention_is_read() {
        let s = Settings::from_vars(&vars(&[
            ("MEDIC_HISTORY_RETENTION", "7d"),
            ("MEDIC_HISTORY_MAX_ROWS", "50_000"),
        ]))
        .unwrap();
        assert_eq!(s.retention.keep_for, Duration::from_secs(7 * 86_400));
        assert_eq!(s.retention.max_rows, 50_000);
    }

    #[test]
    fn aliases_are_read() {
        let s = Settings::from_vars(&vars(&[
            ("MAX_CONSECUTIVE_FAILURES", "5"),
            ("RESTART_COOLDOWN_MINUTES", "2"),
        ]))
        .unwrap();
        assert_eq!(s.healing.failure_threshold, 5);
        assert_eq!(s.healing.restart_cooldown, Duration::from_secs(120));
    }

    #[test]
    fn the_medic_name_wins_over_the_alias() {
        let s = Settings::from_vars(&vars(&[
            ("MEDIC_RESTART_COOLDOWN", "30s"),
            ("RESTART_COOLDOWN_MINUTES", "2"),
        ]))
        .unwrap();
        assert_eq!(s.healing.restart_cooldown, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("MEDIC_RESTART_COOLDOWN", "ten"),
            ("MEDIC_FAILURE_THRESHOLD", "0"),
            ("MEDIC_RESTART_BUDGET", "-1"),
            ("MEDIC_LISTEN", "8080"),
            ("MEDIC_LOG_FORMAT", "xml"),
            ("MEDIC_PROJECT", "my project"),
            ("MEDIC_RECONCILE_INTERVAL", "0s"),
            ("MEDIC_RECONCILE_INTERVAL", "1ns"),
            ("MEDIC_RECONCILE_INTERVAL", "999ms"),
            ("RESTART_COOLDOWN_MINUTES", "1.5"),
            ("MEDIC_LABEL_VARIABLES", "API_HOST,*"),
            ("MEDIC_API_TOKEN_FILE", "/nonexistent/medic-token"),
            ("MEDIC_HTTP_HEADER_TIMEOUT", "100ms"),
            ("MEDIC_HTTP_HEADER_TIMEOUT", "1h"),
            ("MEDIC_HTTP_MAX_CONNECTIONS", "2"),
            ("MEDIC_HISTORY_RETENTION", "12h"),
            ("MEDIC_HISTORY_RETENTION", "a month"),
            ("MEDIC_HISTORY_MAX_ROWS", "999"),
            ("MEDIC_HISTORY_MAX_ROWS", "lots"),
            ("MEDIC_STORE_CHECK_INTERVAL", "100ms"),
        ];
        for (var, value) in cases {
            let err = Settings::from_vars(&vars(&[(var, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var), "{text} should name {var}");
            assert!(text.contains(value), "{text} should show {value}");
        }
    }

    /// Found by fuzzing (fuzz/fuzz_targets/values.rs, settings.rs): these parsed, and medic
    /// then panicked adding them to the clock (`medic probe` with such a probe `timeout`:
    /// "overflow when adding duration to instant").
    #[test]
    fn durations_too_long_to_add_to_the_clock_are_refused() {
        for value in [
            "18446744073709551615",
            "4week65d7812d777777787m7777777777777830s",
            "101y",
        ] {
            let err = parse_duration("MEDIC_RESTART_GRACE", value).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("MEDIC_RESTART_GRACE"), "{text}");
            assert!(text.contains("100 years"), "{text}");
        }
        assert_eq!(parse_duration("X", "100y").unwrap(), MAX_DURATION);
        let err = Settings::from_vars(&vars(&[(
            "MEDIC_RECONCILE_INTERVAL",
            "18446744073709551615",
        )]))
        .unwrap_err();
        assert!(
            err.to_string().contains("MEDIC_RECONCILE_INTERVAL"),
            "{err}"
        );
    }

    /// Found by fuzzing (fuzz/fuzz_targets/settings.rs): the minutes were multiplied by 60
    /// unchecked, an overflow panic in debug builds and a wrong cooldown in release builds.
    #[test]
    fn cooldown_minutes_too_many_for_the_clock_are_refused() {
        for minutes in ["18446744073709551615", "52596001"] {
            let err =
                Settings::from_vars(&vars(&[("RESTART_COOLDOWN_MINUTES", minutes)])).unwrap_err();
            assert!(
                err.to_string().contains("RESTART_COOLDOWN_MINUTES"),
                "{err}"
            );
            assert!(err.to_string().contains("100 years"), "{err}");
        }
        let s = Settings::from_vars(&vars(&[("RESTART_COOLDOWN_MINUTES", "52596000")])).unwrap();
        assert_eq!(s.healing.restart_cooldown, MAX_DURATION);
    }

    #[test]
    fn typos_are_found_with_a_suggestion() {
        let unknown = Settings::unknown_variables(&vars(&[
            ("MEDIC_RESTART_COOLDWN", "1m"),
            ("MEDIC_RESTART_BUDGET", "3"),
            ("MEDIC_TEST_SMTP_PORT", "2525"),
            ("PATH", "/bin"),
        ]));
        assert_eq!(
            unknown,
            vec![(
                "MEDIC_RESTART_COOLDWN".to_string(),
                Some("MEDIC_RESTART_COOLDOWN")
            )]
        );
        // The notifiers' variables are known too, and suggested.
        let unknown = Settings::unknown_variables(&vars(&[
            ("MEDIC_ALERT_INTERVAL", "1h"),
            ("MEDIC_SMTP_TIMEOUT", "10s"),
            ("MEDIC_WEBHOOK_FROMAT", "slack"),
        ]));
        assert_eq!(
            unknown,
            vec![(
                "MEDIC_WEBHOOK_FROMAT".to_string(),
                Some("MEDIC_WEBHOOK_FORMAT")
            )]
        );
        let mut known = known_variables();
        let count = known.len();
        known.sort_unstable();
        known.dedup();
        assert_eq!(known.len(), count, "each variable in one list");
        assert_eq!(count, 34);
    }

    #[test]
    fn the_reconcile_interval_has_a_minimum() {
        let s = Settings::from_vars(&vars(&[("MEDIC_RECONCILE_INTERVAL", "1s")])).unwrap();
        assert_eq!(s.reconcile_interval, MIN_RECONCILE_INTERVAL);
        let e = Settings::from_vars(&vars(&[("MEDIC_RECONCILE_INTERVAL", "1ns")])).unwrap_err();
        assert!(e.to_string().contains("the shortest is 1s"), "{e}");
    }

    #[test]
    fn the_label_allow_list_is_read() {
        let s = Settings::from_vars(&vars(&[("MEDIC_LABEL_VARIABLES", "API_HOST, APP_TOKEN")]))
            .unwrap();
        assert!(s.label_variables.allows("API_HOST"));
        assert!(s.label_variables.allows("APP_TOKEN"));
        assert!(!s.label_variables.allows("MAIL_PASSWORD"));
        let s = Settings::from_vars(&vars(&[])).unwrap();
        assert_eq!(s.label_variables, LabelVariables::default());
        assert!(Settings::unknown_variables(&vars(&[("MEDIC_LABEL_VARIABLES", "X")])).is_empty());
    }

    #[test]
    fn a_blank_token_is_an_error_not_an_open_door() {
        for token in ["", "  ", "\t"] {
            let e = Settings::from_vars(&vars(&[("MEDIC_API_TOKEN", token)])).unwrap_err();
            assert!(e.to_string().contains("MEDIC_API_TOKEN"), "{e}");
            assert!(e.to_string().contains("blank"), "{e}");
        }
        let e = Settings::from_vars(&vars(&[("MEDIC_API_TOKEN_FILE", " ")])).unwrap_err();
        assert!(e.to_string().contains("MEDIC_API_TOKEN_FILE"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        let path = path.to_str().unwrap();
        let e = Settings::from_vars(&vars(&[("MEDIC_API_TOKEN_FILE", path)])).unwrap_err();
        assert!(e.to_string().contains("the file is empty"), "{e}");
        std::fs::write(path, "s3cret-token\n").unwrap();
        Settings::from_vars(&vars(&[("MEDIC_API_TOKEN_FILE", path)])).unwrap();
        Settings::from_vars(&vars(&[("MEDIC_API_TOKEN", "s3cret-token")])).unwrap();
    }

    /// The token is read with the rest, trimmed, from the variable first, else from the file.
    #[test]
    fn the_token_is_in_the_settings() {
        let token = |pairs: &[(&str, &str)]| {
            Settings::from_vars(&vars(pairs))
                .unwrap()
                .api_token
                .map(|t| t.expose().to_string())
        };
        assert_eq!(token(&[]), None);
        assert_eq!(
            token(&[("MEDIC_API_TOKEN", " s3cret-token\n")]).as_deref(),
            Some("s3cret-token")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "fr0m-the-file\n").unwrap();
        let path = path.to_str().unwrap();
        assert_eq!(
            token(&[("MEDIC_API_TOKEN_FILE", path)]).as_deref(),
            Some("fr0m-the-file")
        );
        assert_eq!(
            token(&[
                ("MEDIC_API_TOKEN", "v4riable"),
                ("MEDIC_API_TOKEN_FILE", path)
            ])
            .as_deref(),
            Some("v4riable")
        );
    }

    /// One read gives the notifiers' settings too, and their errors stop the whole tree, after
    /// the core settings' own.
    #[test]
    fn the_notify_settings_are_read_with_the_rest() {
        let s =
            Settings::from_vars(&vars(&[("MEDIC_ALERT_INTERVAL", "5m"), ("TZ", "UTC")])).unwrap();
        assert_eq!(s.notify.alert_interval, Duration::from_secs(300));
        let e = Settings::from_vars(&vars(&[("MEDIC_ALERT_INTERVAL", "hourly")])).unwrap_err();
        assert!(
            e.to_string().starts_with("MEDIC_ALERT_INTERVAL=\"hourly\""),
            "{e}"
        );
        let e = Settings::from_vars(&vars(&[("MAIL_SERVER", "smtp.example.com")])).unwrap_err();
        assert!(e.to_string().contains("ADMIN_EMAIL"), "{e}");
        let e = Settings::from_vars(&vars(&[
            ("MEDIC_ALERT_INTERVAL", "hourly"),
            ("MEDIC_RESTART_COOLDOWN", "ten"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("MEDIC_RESTART_COOLDOWN"), "{e}");
    }

    #[test]
    fn a_non_utf8_variable_is_an_error_naming_it() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let good = (OsString::from("PATH"), OsString::from("/bin"));
        let bad_value = (
            OsString::from("MAIL_PASSWORD"),
            OsString::from_vec(vec![b'p', 0xff, b'w']),
        );
        let e = environment_from([good.clone(), bad_value]).unwrap_err();
        assert!(e.to_string().contains("MAIL_PASSWORD"), "{e}");
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        let bad_name = (OsString::from_vec(vec![b'X', 0xfe]), OsString::from("1"));
        let e = environment_from([bad_name]).unwrap_err();
        assert!(e.to_string().contains("X\u{fffd}"), "{e}");
        assert_eq!(environment_from([good]).unwrap()["PATH"], "/bin");
    }
}
