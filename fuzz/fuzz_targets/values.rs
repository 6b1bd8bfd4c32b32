//! The small value parsers the configuration is built from, one per input, picked by the first
//! byte (the rest is the text):
//! - `c` `CronSchedule::parse` (probe `cron`, `MEDIC_REPORT_CRON`), then "when next?";
//! - `s` `parse_size` (disk `warning`/`critical`), then `format_size`;
//! - `d` `config::parse_duration` (every duration, and the `medic.stop-timeout` label);
//! - `v` `${VAR}` substitution;
//! - `u` the URI masking that keeps passwords out of logs (`mask_uri`, `password_forms`,
//!   `scrub`).
//!
//! Any other first byte is taken modulo 5. Seeds: fuzz/seeds/values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medic::probe::spec::{format_size, parse_size, CronSchedule};
use medic::probe::{secret, vars, SecretUri};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let which = match which {
        b'c' | b's' | b'd' | b'v' | b'u' => which,
        other => b"csdvu"[other as usize % 5],
    };
    match which {
        b'c' => {
            if let Ok(cron) = CronSchedule::parse(text) {
                medic_fuzz::check_cron(&cron);
            }
        }
        b's' => {
            if let Ok(bytes) = parse_size(text) {
                let _ = format_size(bytes);
            }
        }
        b'd' => {
            if let Ok(d) = medic::config::parse_duration("MEDIC_FUZZ", text) {
                medic_fuzz::check_duration(text, d);
            }
        }
        b'v' => {
            let _ = vars::substitute(text, &medic_fuzz::env);
        }
        _ => {
            let masked = secret::mask_uri(text);
            let forms = SecretUri::new(text).password_forms();
            let _ = secret::scrub(text, &forms);
            let _ = secret::scrub(&masked, &forms);
        }
    }
});
