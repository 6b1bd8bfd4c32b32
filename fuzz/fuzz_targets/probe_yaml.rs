//! `probes:` in the YAML configuration file: `medic::probe::parse_yaml` on any text, then every
//! parsed probe is used as medic uses it (see `medic_fuzz::check_specs`).
//!
//! Seeds: fuzz/seeds/probe_yaml (the shipped docker/medic.yaml and the docs' examples).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The file is read with read_to_string, so only UTF-8 reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match medic::probe::parse_yaml(text, "medic.yaml", &medic_fuzz::env) {
        Ok(specs) => medic_fuzz::check_specs(&specs),
        Err(e) => medic_fuzz::check_error(&e),
    }
});
