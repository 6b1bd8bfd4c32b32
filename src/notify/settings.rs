//! The notifiers' settings, read once from the environment and validated at start.
//!
//! Each channel reads its own variables ([`super::channels::REGISTRY`]); this adds what every
//! channel shares: the stack name, the time zone, the status page's address, rate limits,
//! reminders, the report's schedule and the outbox's retries. docs/alerts.md is the user's
//! guide to them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::channel::Channel;
use super::channels::email::{EmailChannel, MailSettings};
// Where they were before channels had a file each (tests and the fuzz targets name them here).
pub use super::channels::webhook::{WebhookFormat, WebhookSettings};
use crate::config::{parse_duration, ConfigError};
use crate::probe::spec::CronSchedule;

/// Every `MEDIC_*` variable [`NotifySettings::from_vars`] reads besides the channels' own
/// ([`super::channels::variables`]; it also reads `TZ`, which is not medic's own and so is not
/// listed).
pub const NOTIFY_VARIABLES: &[&str] = &[
    "MEDIC_STACK_NAME",
    "MEDIC_PUBLIC_URL",
    "MEDIC_ALERT_INTERVAL",
    "MEDIC_REMINDER_INTERVAL",
    "MEDIC_ALERT_GROUP_WINDOW",
    "MEDIC_REPORT_CRON",
    "MEDIC_OUTBOX_RETRY_MAX",
];

/// The daily report's schedule when `MEDIC_REPORT_CRON` is unset.
pub const DEFAULT_REPORT_CRON: &str = "0 8 * * *";

/// Everything the notifiers need, parsed and validated.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// SMTP, when `MAIL_SERVER` is set: the email channel's settings, kept apart because the
    /// daily report and `medic test-email` go by email only.
    pub mail: Option<MailSettings>,
    /// Every configured alert channel, in registry order.
    pub channels: Vec<Arc<dyn Channel>>,
    /// `MEDIC_STACK_NAME`; when unset, the watched compose project names the stack.
    pub stack_name: Option<String>,
    /// `TZ`: the zone times are shown in and the report's cron runs in (UTC when unset).
    pub tz: Tz,
    /// `MEDIC_PUBLIC_URL`: the status page's address, linked from every email.
    pub public_url: Option<String>,
    /// `MEDIC_ALERT_INTERVAL`: at most one CRITICAL per component per this long.
    pub alert_interval: Duration,
    /// `MEDIC_REMINDER_INTERVAL`: repeat an ongoing outage's alert this often; `None` = never.
    pub reminder_interval: Option<Duration>,
    /// `MEDIC_ALERT_GROUP_WINDOW`: alerts arriving within this long of the first go out in one
    /// email (one evaluation round).
    pub group_window: Duration,
    /// `MEDIC_REPORT_CRON`; `None` when set to `off`.
    pub report_cron: Option<CronSchedule>,
    /// `MEDIC_OUTBOX_RETRY_MAX`: the longest wait between two delivery attempts.
    pub retry_max: Duration,
}

impl NotifySettings {
    /// Reads the settings from a map of variables.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<NotifySettings, ConfigError> {
        let get = |name: &'static str| var(vars, name);
        let tz = match get("TZ") {
            None => Tz::UTC,
            // The POSIX file form (`:/etc/localtime`) names no zone medic can read.
            Some((_, v)) if v.starts_with(':') || v.starts_with('/') => {
                tracing::warn!(tz = %v, "TZ names a file, not a zone: times are shown in UTC; set TZ=Europe/Berlin (an IANA name) instead");
                Tz::UTC
            }
            Some((var, v)) => v.parse::<Tz>().map_err(|_| {
                invalid(
                    var,
                    v,
                    "expected an IANA time zone name such as Europe/Berlin, America/New_York or UTC",
                )
            })?,
        };
        let alert_interval = match get("MEDIC_ALERT_INTERVAL") {
            Some((var, v)) => parse_duration(var, v)?,
            None => Duration::from_secs(3600),
        };
        let reminder_interval = match get("MEDIC_REMINDER_INTERVAL") {
            None => None,
            Some((_, v)) if is_off(v) => None,
            Some((var, v)) => Some(parse_duration(var, v)?).filter(|d| !d.is_zero()),
        };
        let group_window = match get("MEDIC_ALERT_GROUP_WINDOW") {
            Some((var, v)) => parse_duration(var, v)?,
            None => Duration::from_secs(2),
        };
        let report_cron = match get("MEDIC_REPORT_CRON") {
            Some((_, v)) if is_off(v) => None,
            Some((var, v)) => Some(CronSchedule::parse(v).map_err(|e| {
                invalid(
                    var,
                    v,
                    format!("{e}; e.g. \"0 8 * * *\" for 08:00 every day"),
                )
            })?),
            None => Some(CronSchedule::parse(DEFAULT_REPORT_CRON).expect("the default parses")),
        };
        let retry_max = match get("MEDIC_OUTBOX_RETRY_MAX") {
            Some((var, v)) => {
                let d = parse_duration(var, v)?;
                if d.is_zero() {
                    return Err(invalid(var, v, "must be longer than zero"));
                }
                d
            }
            None => Duration::from_secs(300),
        };
        let public_url = get("MEDIC_PUBLIC_URL").map(|(_, v)| v.trim_end_matches('/').to_string());
        if let Some(url) = &public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "MEDIC_PUBLIC_URL",
                    url,
                    "expected the status page's address, e.g. https://medic.example.com",
                ));
            }
        }
        let channels = super::channels::configure(vars)?;
        let mail = find::<EmailChannel>(&channels).map(|email| email.mailer.settings().clone());
        Ok(NotifySettings {
            mail,
            channels,
            stack_name: get("MEDIC_STACK_NAME").map(|(_, v)| v.to_string()),
            tz,
            public_url,
            alert_interval,
            reminder_interval,
            group_window,
            report_cron,
            retry_max,
        })
    }
}

impl NotifySettings {
    /// The configured channel of type `T`, if any.
    pub fn channel<T: Channel>(&self) -> Option<&T> {
        find(&self.channels)
    }
}

fn find<T: Channel>(channels: &[Arc<dyn Channel>]) -> Option<&T> {
    channels
        .iter()
        .find_map(|c| (c.as_ref() as &dyn std::any::Any).downcast_ref::<T>())
}

fn is_off(v: &str) -> bool {
    ["off", "none", "false", "0", "disabled"]
        .iter()
        .any(|o| v.eq_ignore_ascii_case(o))
}

/// The trimmed value of `name`, with its name, unless unset or blank (the channels read theirs
/// with it too).
pub(crate) use crate::config::lookup as var;

pub(crate) fn invalid(var: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(var, value, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars_of as vars;
    use crate::notify::channels::webhook::WebhookChannel;

    #[test]
    fn defaults() {
        let s = NotifySettings::from_vars(&vars(&[])).unwrap();
        assert!(s.mail.is_none() && s.channel::<WebhookChannel>().is_none());
        assert_eq!(s.tz, Tz::UTC);
        assert_eq!(s.alert_interval, Duration::from_secs(3600));
        assert_eq!(s.reminder_interval, None);
        assert_eq!(s.report_cron.unwrap().expression(), "0 8 * * *");
    }

    #[test]
    fn values_and_errors_name_the_variable() {
        let s = NotifySettings::from_vars(&vars(&[
            ("TZ", "Europe/Berlin"),
            ("MEDIC_REMINDER_INTERVAL", "4h"),
            ("MEDIC_REPORT_CRON", "off"),
            (
                "MEDIC_WEBHOOK_URL",
                "https://hooks.slack.com/services/T/B/secret",
            ),
        ]))
        .unwrap();
        assert_eq!(s.tz, chrono_tz::Europe::Berlin);
        assert_eq!(s.reminder_interval, Some(Duration::from_secs(4 * 3600)));
        assert!(s.report_cron.is_none());
        let webhook = s.channel::<WebhookChannel>().unwrap().settings.clone();
        assert_eq!(webhook.format, WebhookFormat::Slack);
        assert!(!format!("{webhook:?}").contains("secret"));

        for (pairs, var) in [
            (vec![("TZ", "Mars/Olympus")], "TZ"),
            (
                vec![("MEDIC_REPORT_CRON", "8 o'clock")],
                "MEDIC_REPORT_CRON",
            ),
            (
                vec![("MEDIC_ALERT_INTERVAL", "hourly")],
                "MEDIC_ALERT_INTERVAL",
            ),
            (
                vec![("MEDIC_WEBHOOK_URL", "ftp://x/secret")],
                "MEDIC_WEBHOOK_URL",
            ),
            (
                vec![
                    ("MEDIC_WEBHOOK_URL", "http://x"),
                    ("MEDIC_WEBHOOK_FORMAT", "xml"),
                ],
                "MEDIC_WEBHOOK_FORMAT",
            ),
        ] {
            let err = NotifySettings::from_vars(&vars(&pairs))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(var), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
