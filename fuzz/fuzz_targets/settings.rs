//! The environment: `medic::config::Settings::from_vars` (MEDIC_* core settings and their
//! aliases) and `medic::notify::NotifySettings::from_vars` (alerts, webhook, report cron, SMTP),
//! then `Mailer::new`, which checks the SMTP server name and TLS set-up at start.
//!
//! The input is structured (`arbitrary`): a list of (variable, value) pairs whose variable is
//! picked from the names medic reads, so no time goes into guessing names; the value is either
//! a typical value of that kind or any string.
//!
//! Left out: the variables that name files (`MEDIC_CONFIG`, `MAIL_PASSWORD_FILE`,
//! `MEDIC_SMTP_CA_FILE`, `MEDIC_API_TOKEN_FILE`): following a path the fuzzer invented would
//! test the filesystem.
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use medic::config::{Settings, KNOWN_VARIABLES};
use medic::notify::email::MAIL_VARIABLES;
use medic::notify::{Mailer, NotifySettings, NOTIFY_VARIABLES};
use medic_fuzz::check_duration;

/// The names medic reads that no library list holds: the aliases kept from the app stack's
/// `.env` and the variables shared with other programs. The rest come from the library's own
/// lists, so a variable added there is fuzzed without anyone remembering this file.
const UNLISTED_VARIABLES: &[&str] = &[
    "MAX_CONSECUTIVE_FAILURES",
    "RESTART_COOLDOWN_MINUTES",
    "DOCKER_HOST",
    "TZ",
];

/// Whether a variable names a file (see the module docs): `MEDIC_CONFIG` and every `*_FILE`
/// (`MAIL_PASSWORD_FILE`, `MEDIC_SMTP_CA_FILE`, `MEDIC_API_TOKEN_FILE`).
fn names_file(name: &str) -> bool {
    name == "MEDIC_CONFIG" || name.ends_with("_FILE")
}

/// Every variable medic reads, except the ones naming files, each once.
static VARIABLES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names: Vec<&str> = [
        KNOWN_VARIABLES,
        NOTIFY_VARIABLES,
        MAIL_VARIABLES,
        UNLISTED_VARIABLES,
    ]
    .concat();
    names.retain(|name| !names_file(name));
    names.sort_unstable();
    names.dedup();
    names
});

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
        if !names_file(&name) {
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
