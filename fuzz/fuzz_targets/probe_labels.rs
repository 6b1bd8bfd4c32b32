//! `medic.probe.<name>.<key>` container labels: `medic::probe::parse_labels`, plus the other
//! labels medic reads: `medic.enable` and the compose project (`Scope::contains`),
//! `medic.restart`, `medic.stop-timeout` and the compose service.
//!
//! The input is text, one label per line, so the seeds can be real labels
//! (fuzz/seeds/probe_labels, from compose.yaml and docs/probes.md) and the fuzzer does not spend
//! its time rediscovering the prefix:
//! - `db.type=mongodb` is the label `medic.probe.db.type=mongodb`;
//! - `!medic.enable=true` (leading `!`) is taken as written, for labels outside `medic.probe.`;
//! - in values, `\n`, `\r`, `\t`, `\0` and `\\` are escapes, so a value may hold a newline (a
//!   header value must not).
//!
//! The first line may be `@container service` to set the container's name and compose service
//! (default `shop-app-1` and `app`). A line `%API_HOST,APP_TOKEN` is `MEDIC_LABEL_VARIABLES`,
//! the variables labels may read (none without it), so the allow-list's parser is fuzzed too.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use medic::docker::scope::Scope;
use medic::docker::{Container, Health, RunState, LABEL_STOP_TIMEOUT};
use medic::probe::LABEL_PREFIX;

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // Labels come from the Docker API as JSON strings: always UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut container = "shop-app-1";
    let mut service = "app";
    let mut labels = HashMap::new();
    let mut allowed = "";
    for (i, line) in text.lines().enumerate() {
        if let Some(names) = line.strip_prefix('%') {
            allowed = names;
            continue;
        }
        if i == 0 {
            if let Some(names) = line.strip_prefix('@') {
                let (c, s) = names.split_once(' ').unwrap_or((names, ""));
                container = c;
                service = s;
                continue;
            }
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let key = match key.strip_prefix('!') {
            Some(raw) => raw.to_string(),
            None => format!("{LABEL_PREFIX}{key}"),
        };
        labels.insert(key, unescape(value));
    }

    let Ok(allowed) = medic::probe::vars::LabelVariables::parse(allowed) else {
        return;
    };
    match medic::probe::parse_labels(container, service, &labels, &medic_fuzz::env, &allowed) {
        Ok(specs) => medic_fuzz::check_specs(&specs),
        Err(e) => medic_fuzz::check_error(&e),
    }
    let scope = Scope {
        project: Some("shop".into()),
        own_id: Some("f".repeat(64)),
    };
    let _ = scope.contains(container, &labels);
    let _ = scope.label_filters();
    // `medic.stop-timeout` is read at restart time, as the supervisor reads it.
    if let Some(value) = labels.get(LABEL_STOP_TIMEOUT) {
        if let Ok(d) = medic::config::parse_duration(LABEL_STOP_TIMEOUT, value) {
            medic_fuzz::check_duration(LABEL_STOP_TIMEOUT, d);
        }
    }
    let c = Container {
        id: "0123456789ab".into(),
        name: container.to_string(),
        labels,
        state: RunState::Running,
        health: Health::None,
        stop_timeout: None,
        start_period: None,
    };
    let _ = (c.project(), c.component(), c.restart_allowed());
});
