//! What the fuzz targets share: a deterministic environment for `${VAR}` references, and the
//! checks every parsed value must pass.
//!
//! A parser passes when it returns `Ok` or `Err` without panicking, *and* what it returns can be
//! used the way medic uses it: printed, scheduled, added to the clock. A value that parses but
//! panics later (a duration that overflows `Instant::now() + d`) is a parser bug too, so those
//! uses are replayed here.

use std::time::{Duration, Instant};

use medic::probe::{ProbeConfigError, ProbeSpec, Schedule};

/// The environment `${VAR}` references see while fuzzing. Deterministic, and it never names a
/// file: a `VAR_FILE` lookup would read whatever path the fuzzer invented (`/dev/zero`).
///
/// - `*_FILE` and names starting with `UNSET` are unset;
/// - names starting with `EMPTY` are set to nothing;
/// - every other name is set to its own name in lower case, so `http://${HOST}:80` stays a URL.
pub fn env(name: &str) -> Option<String> {
    if name.ends_with("_FILE") || name.starts_with("UNSET") {
        None
    } else if name.starts_with("EMPTY") {
        Some(String::new())
    } else {
        Some(name.to_ascii_lowercase())
    }
}

/// A fixed "now" for cron look-ups, so a crash replays the same way on any day.
pub fn fixed_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a valid timestamp")
}

/// Panics (a finding) when `d` cannot be used as medic uses durations: added to the monotonic
/// clock (probe deadlines, tokio sleeps), to the wall clock (operator holds, alert times), and
/// to a small margin (the restart call's own timeout is the stop timeout plus two minutes).
pub fn check_duration(what: &str, d: Duration) {
    assert!(
        Instant::now().checked_add(d).is_some(),
        "{what}: {d:?} overflows Instant::now() + d"
    );
    assert!(
        d.checked_add(Duration::from_secs(120)).is_some(),
        "{what}: {d:?} overflows d + 120s"
    );
    let wall = chrono::Duration::from_std(d)
        .unwrap_or_else(|_| panic!("{what}: {d:?} does not fit a chrono::Duration"));
    assert!(
        fixed_now().checked_add_signed(wall).is_some(),
        "{what}: {d:?} overflows a wall-clock time"
    );
}

/// Uses every part of parsed probes the way the scheduler, the CLI tables and the API do.
pub fn check_specs(specs: &[ProbeSpec]) {
    for spec in specs {
        let _ = format!("{spec:?}");
        let _ = spec.kind.target();
        let _ = spec.kind.secret_values();
        let _ = spec.schedule.to_string();
        let _ = spec.is_informational();
        check_duration("timeout", spec.timeout);
        match &spec.schedule {
            Schedule::Interval(d) => check_duration("interval", *d),
            Schedule::Cron(cron) => check_cron(cron),
        }
        match &spec.kind {
            medic::probe::ProbeKind::Http(h) => {
                if let Some(d) = h.max_latency {
                    check_duration("max_latency", d);
                }
            }
            medic::probe::ProbeKind::Upload(u) => check_duration("poll_interval", u.poll_interval),
            _ => {}
        }
    }
}

/// A cron schedule must answer "when next?" (a few times in a row, as the scheduler asks), in
/// UTC and in a zone with daylight saving time, as the daily report asks.
pub fn check_cron(cron: &medic::probe::CronSchedule) {
    let _ = cron.expression();
    let mut at = fixed_now();
    for _ in 0..3 {
        match cron.next_after(&at) {
            Some(next) => {
                assert!(next > at, "{cron:?}: next_after went backwards");
                at = next;
            }
            None => break,
        }
    }
    let berlin = fixed_now().with_timezone(&chrono_tz::Europe::Berlin);
    let _ = cron.next_after(&berlin);
}

/// An error must print (every one reaches a user) and must not be empty.
pub fn check_error(e: &ProbeConfigError) {
    let text = e.to_string();
    assert!(!e.message.is_empty(), "an error without a message: {text}");
}
