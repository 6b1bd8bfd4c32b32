//! The environment: `medic::config::Settings::from_vars` (MEDIC_* core settings and their
//! aliases) and `medic::notify::NotifySettings::from_vars` (alerts, webhook, report cron, SMTP),
//! then `Mailer::new`, which checks the SMTP server name and TLS set-up at start.
//!
//! The input is structured (`arbitrary`): a list of (variable, value) pairs whose variable is
//! picked from the names medic reads, so no time goes into guessing names; the value is either
//! a typical value of that kind or any string.
//!
//! Left out: the variables that name files (`MEDIC_CONFIG`, `MAIL_PASSWORD_FILE`,
//! `MEDIC_SMTP_CA_FILE`): following a path the fuzzer invented would test the filesystem.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use medic::config::Settings;
use medic::notify::{Mailer, NotifySettings};
use medic_fuzz::check_duration;

/// Every variable read by the parsers fuzzed here, except the ones naming files.
const VARIABLES: &[&str] = &[
    "MEDIC_PROJECT",
    "MEDIC_DATA_DIR",
    "MEDIC_LISTEN",
    "MEDIC_RECONCILE_INTERVAL",
    "MEDIC_FAILURE_THRESHOLD",
    "MAX_CONSECUTIVE_FAILURES",
    "MEDIC_RESTART_COOLDOWN",
    "RESTART_COOLDOWN_MINUTES",
    "MEDIC_RESTART_BUDGET",
    "MEDIC_RESTART_BUDGET_WINDOW",
    "MEDIC_RESTART_GRACE",
    "MEDIC_STOP_TIMEOUT",
    "MEDIC_OPERATOR_HOLD",
    "MEDIC_LOG_FORMAT",
    "DOCKER_HOST",
    "TZ",
    "MEDIC_STACK_NAME",
    "MEDIC_PUBLIC_URL",
    "MEDIC_ALERT_INTERVAL",
    "MEDIC_REMINDER_INTERVAL",
    "MEDIC_ALERT_GROUP_WINDOW",
    "MEDIC_REPORT_CRON",
    "MEDIC_WEBHOOK_URL",
    "MEDIC_WEBHOOK_FORMAT",
    "MEDIC_OUTBOX_RETRY_MAX",
    "MEDIC_SMTP_TIMEOUT",
    "MAIL_SERVER",
    "ADMIN_EMAIL",
    "MAIL_PORT",
    "MAIL_USE_TLS",
    "MAIL_USE_SSL",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "MAIL_DEFAULT_SENDER",
];

/// Values of the kinds these variables take, as users write them (and a few edges).
const VALUES: &[&str] = &[
    "",
    " ",
    "0",
    "1",
    "3",
    "-1",
    "1.5",
    "4294967296",
    "18446744073709551615",
    "30s",
    "10m",
    "1h30m",
    "500ms",
    "0s",
    "100years",
    "off",
    "true",
    "false",
    "text",
    "json",
    "slack",
    "shop",
    "my project",
    "0.0.0.0:8080",
    "[::1]:8080",
    "127.0.0.1",
    "unix:///var/run/docker.sock",
    "/data",
    "UTC",
    "Europe/Berlin",
    ":/etc/localtime",
    "0 8 * * *",
    "*/5 * * * * *",
    "0 0 30 2 *",
    "https://hooks.slack.com/services/T/B/X",
    "http://medic.example.com/",
    "smtp.example.com",
    "[2001:db8::1]",
    "smtp.example.com:25",
    "465",
    "587",
    "ops@example.com",
    "ops@example.com, dev@example.com",
    "Medic <medic@example.com>",
    "not an address",
];

#[derive(Arbitrary, Debug)]
enum Value {
    /// One of `VALUES`.
    Typical(u8),
    /// Anything.
    Any(String),
    /// A typical value with something appended (`30s` → `30sx`, `0 8 * * *` → `0 8 * * * *`).
    Suffixed(u8, String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// (index into `VARIABLES`, value).
    vars: Vec<(u8, Value)>,
    /// Also a variable outside the list, for the unknown-variable warning.
    extra: Option<(String, String)>,
}

fuzz_target!(|input: Input| {
    let mut vars = HashMap::new();
    for (var, value) in input.vars {
        let name = VARIABLES[var as usize % VARIABLES.len()];
        let value = match value {
            Value::Typical(i) => VALUES[i as usize % VALUES.len()].to_string(),
            Value::Any(s) => s,
            Value::Suffixed(i, s) => format!("{}{s}", VALUES[i as usize % VALUES.len()]),
        };
        vars.insert(name.to_string(), value);
    }
    if let Some((name, value)) = input.extra {
        // Never a file-naming variable (see the module docs).
        if !matches!(
            name.as_str(),
            "MEDIC_CONFIG" | "MAIL_PASSWORD_FILE" | "MEDIC_SMTP_CA_FILE"
        ) {
            vars.insert(name, value);
        }
    }

    let _ = Settings::unknown_variables(&vars);
    match Settings::from_vars(&vars) {
        Ok(s) => {
            let _ = format!("{s:?}");
            check_duration("MEDIC_RECONCILE_INTERVAL", s.reconcile_interval);
            let h = &s.healing;
            check_duration("restart cooldown", h.restart_cooldown);
            check_duration("MEDIC_RESTART_BUDGET_WINDOW", h.budget_window);
            check_duration("MEDIC_RESTART_GRACE", h.default_grace);
            check_duration("MEDIC_STOP_TIMEOUT", h.default_stop_timeout);
            check_duration("MEDIC_OPERATOR_HOLD", h.operator_hold);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match NotifySettings::from_vars(&vars) {
        Ok(n) => {
            let _ = format!("{n:?}");
            check_duration("MEDIC_ALERT_INTERVAL", n.alert_interval);
            if let Some(d) = n.reminder_interval {
                check_duration("MEDIC_REMINDER_INTERVAL", d);
            }
            check_duration("MEDIC_ALERT_GROUP_WINDOW", n.group_window);
            check_duration("MEDIC_OUTBOX_RETRY_MAX", n.retry_max);
            if let Some(cron) = &n.report_cron {
                medic_fuzz::check_cron(cron);
            }
            if let Some(mail) = &n.mail {
                check_duration("MEDIC_SMTP_TIMEOUT", mail.timeout);
                if let Ok(mailer) = Mailer::new(mail) {
                    let _ = mailer.server();
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
