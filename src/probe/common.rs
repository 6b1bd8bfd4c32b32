//! What every probe shares whatever its type: the spec it is resolved into, its schedule
//! (an interval or a cron expression), its timeout, the services it restarts, its failure
//! threshold and its component, and how those keys are read.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::kinds::ProbeKind;
use super::raw::{Key, Shape};
use super::resolve::{Res, Resolver};

/// How often a probe runs when neither `interval` nor `cron` is set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// How long one run may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Label prefix of probe labels: `medic.probe.<name>.<key>`.
pub const LABEL_PREFIX: &str = "medic.probe.";
/// The shortest probe `interval` and `timeout`: shorter ones spin a core and the engine (`1ns`
/// was accepted once) without telling anything a one-second probe would not.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// One configured probe, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// Unique name (the key under `probes:` or the `<name>` of the labels).
    pub name: String,
    /// The probe type and its settings.
    pub kind: ProbeKind,
    /// When it runs: a fixed interval (default 5m) or a cron expression.
    pub schedule: Schedule,
    /// How long one run may take before it counts as failed (default 30s).
    pub timeout: Duration,
    /// Compose services to restart after `failure_threshold` consecutive failures; empty means
    /// alert only. Always empty for informational probes.
    pub restart: Vec<String>,
    /// Consecutive failures before acting; `None` uses the global `MEDIC_FAILURE_THRESHOLD`.
    pub failure_threshold: Option<u32>,
    /// The component (compose service) whose status this probe feeds.
    pub component: String,
    /// Where it was declared, for messages: the file path, or `container <name>`.
    pub declared_in: String,
    /// The compose project its services (`restart`, an `exec` probe's `service`) belong to:
    /// the labelled container's project for label probes; `None` for the file, whose services
    /// are those of the watched project.
    pub project: Option<String>,
}

impl ProbeSpec {
    /// True for `git`, `disk` and `memory`: they inform and alert but never restart.
    pub fn is_informational(&self) -> bool {
        self.kind.is_informational()
    }
}

/// When a probe runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every so often, from medic's start.
    Interval(Duration),
    /// At the times of a cron expression (boxed: the parsed schedule is large).
    Cron(Box<CronSchedule>),
}

impl fmt::Display for Schedule {
    /// `every 5m` or `cron 0 3 * * *`, for tables and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Interval(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => write!(f, "cron {}", c.expression()),
        }
    }
}

/// A parsed cron expression. Five fields (`m h dom mon dow`) as users write them, or six/seven
/// with seconds (and years) as the `cron` crate reads them.
#[derive(Clone)]
pub struct CronSchedule {
    /// The expression as written, for messages.
    expression: String,
    /// The parsed schedule.
    schedule: cron::Schedule,
}

impl CronSchedule {
    /// Parses an expression; the error says what is wrong with it.
    pub fn parse(expression: &str) -> Result<CronSchedule, String> {
        let trimmed = expression.trim();
        let fields = trimmed.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {trimmed}"),
            6 | 7 => trimmed.to_string(),
            n => {
                return Err(format!(
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week), \
                     this one has {n}"
                ))
            }
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| e.to_string())?;
        Ok(CronSchedule {
            expression: trimmed.to_string(),
            schedule,
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first firing time strictly after `after`, in `after`'s time zone.
    pub fn next_after<Tz: chrono::TimeZone>(
        &self,
        after: &chrono::DateTime<Tz>,
    ) -> Option<chrono::DateTime<Tz>> {
        self.schedule.after(after).next()
    }
}

/// Two schedules are the same when their expressions are: the schedule is parsed from it.
impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.expression)
    }
}

/// The keys every probe type accepts, whatever its type.
pub(crate) const COMMON_KEYS: &[Key] = &[
    ("type", Shape::Scalar),
    ("interval", Shape::Scalar),
    ("cron", Shape::Scalar),
    ("timeout", Shape::Scalar),
    ("restart", Shape::List),
    ("failure_threshold", Shape::Scalar),
    ("component", Shape::Scalar),
];

/// What every probe has besides its type's settings, resolved from the [`COMMON_KEYS`].
pub(crate) struct Common {
    /// When it runs.
    pub(crate) schedule: Schedule,
    /// How long one run may take.
    pub(crate) timeout: Duration,
    /// The services it restarts.
    pub(crate) restart: Vec<String>,
    /// Its own failure threshold, if set.
    pub(crate) failure_threshold: Option<u32>,
    /// The component it feeds.
    pub(crate) component: String,
}

impl Common {
    /// Resolves the shared keys of a probe of type `type_name`. An informational type refuses
    /// `restart`; a label probe restarts, and belongs to, its own service by default.
    pub(crate) fn resolve(r: &Resolver, type_name: &str, informational: bool) -> Res<Common> {
        let interval = r.at_least_a_second("interval")?;
        let cron = r.text("cron")?;
        let schedule = match (interval, cron) {
            (Some(_), Some(_)) => {
                return Err(r.err(Some("cron"), "set either interval or cron, not both"))
            }
            (None, Some(expr)) => {
                Schedule::Cron(Box::new(CronSchedule::parse(&expr).map_err(|e| {
                    r.err(Some("cron"), format!("cron={expr:?} is invalid: {e}"))
                })?))
            }
            (interval, None) => Schedule::Interval(interval.unwrap_or(DEFAULT_INTERVAL)),
        };
        let timeout = r.at_least_a_second("timeout")?.unwrap_or(DEFAULT_TIMEOUT);
        let failure_threshold: Option<u32> =
            r.number("failure_threshold", "a whole number of at least 1")?;
        if failure_threshold == Some(0) {
            return Err(r.err(Some("failure_threshold"), "must be at least 1"));
        }
        let restart_given = r.is_set("restart");
        let restart = r.list("restart")?;
        if informational && restart_given {
            return Err(r.err(
                Some("restart"),
                format!(
                    "a {type_name} probe is informational: it alerts but never restarts; remove `restart`"
                ),
            ));
        }
        let restart = match (restart, r.labels()) {
            (Some(r), _) => r,
            (None, Some((_, service))) if !informational => vec![service.to_string()],
            (None, _) => Vec::new(),
        };
        let component = match (r.text("component")?, r.labels()) {
            (Some(c), _) if !c.is_empty() => c,
            (_, Some((_, service))) => service.to_string(),
            _ => restart
                .first()
                .cloned()
                .unwrap_or_else(|| r.probe().to_string()),
        };
        Ok(Common {
            schedule,
            timeout,
            restart,
            failure_threshold,
            component,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::parse::parse_yaml;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn five_field_cron_is_accepted() {
        let c = CronSchedule::parse("*/5 * * * *").unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:01:30Z").unwrap();
        assert_eq!(
            c.next_after(&t).unwrap().to_rfc3339(),
            "2026-01-01T10:05:00+00:00"
        );
        assert!(CronSchedule::parse("* *").is_err());
        assert!(CronSchedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn minimal_yaml_gets_the_defaults() {
        let text = "probes:\n  web:\n    type: http\n    url: http://app:8000/health\n    restart: [app, worker]\n";
        let specs = parse_yaml(text, "medic.yaml", &no_env).unwrap();
        assert_eq!(specs.len(), 1);
        let s = &specs[0];
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert!(matches!(s.schedule, Schedule::Interval(d) if d == DEFAULT_INTERVAL));
        assert_eq!(s.schedule.to_string(), "every 5m");
        assert_eq!(s.restart, vec!["app", "worker"]);
        assert_eq!(s.component, "app");
        let ProbeKind::Http(h) = &s.kind else {
            panic!()
        };
        assert_eq!(h.method, reqwest::Method::GET);
        assert_eq!(h.expect_status, 200);
    }

    /// Found by fuzzing: a timeout this long parsed, and `medic probe` then panicked computing
    /// the run's deadline ("overflow when adding duration to instant").
    #[test]
    fn a_timeout_too_long_for_the_clock_is_a_config_error() {
        let text = "probes:\n  d:\n    type: disk\n    timeout: 18446744073709551615\n";
        let e = parse_yaml(text, "m.yaml", &no_env).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m.yaml:4:5: probe `d`, key `timeout`"),
            "{e}"
        );
        assert!(e.to_string().contains("100 years"), "{e}");
    }

    #[test]
    fn intervals_and_timeouts_below_a_second_are_refused() {
        for (key, value) in [
            ("interval", "1ns"),
            ("interval", "999ms"),
            ("timeout", "1ns"),
            ("timeout", "500ms"),
        ] {
            let text = format!(
                "probes:\n  web:\n    type: tcp\n    host: db\n    port: 1\n    {key}: {value}\n"
            );
            let e = parse_yaml(&text, "m.yaml", &no_env).unwrap_err();
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("m.yaml:6:5: probe `web`, key `{key}`")),
                "{message}"
            );
            assert!(message.contains("the shortest is 1s"), "{message}");
        }
        let text = "probes:\n  web:\n    type: tcp\n    host: db\n    port: 1\n    interval: 1s\n    timeout: 1s\n";
        let spec = parse_yaml(text, "m.yaml", &no_env).unwrap().remove(0);
        assert_eq!(spec.schedule, Schedule::Interval(MIN_PROBE_INTERVAL));
        assert_eq!(spec.timeout, MIN_PROBE_INTERVAL);
    }
}
