//! The one helper module of every integration test binary (`mod support;`): the test
//! environment, waiting on conditions, and one file per job: docker and compose
//! ([`docker`]), medic's process ([`process`]), HTTP to medic's API ([`http`]), SMTP servers
//! ([`mail`]), local fixtures the probes talk to ([`fixtures`]), a hostile HTTP server
//! ([`hostile`]) and headless Chromium ([`browser`]).
//!
//! Each binary uses a part of it, so unused-code warnings are off here.
#![allow(dead_code)]

pub mod browser;
pub mod docker;
pub mod fixtures;
pub mod hostile;
pub mod http;
pub mod mail;
pub mod process;

// Not every binary uses each of these, and an unused re-export is not dead code.
#[allow(unused_imports)]
pub use docker::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use process::*;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The environment variable `name`, else `default`.
pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A variable of the test environment (`eval "$(scripts/testenv.sh env)"`), which the test
/// cannot run without.
pub fn test_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through scripts/test.sh, or \
             `scripts/testenv.sh up && eval \"$(scripts/testenv.sh env)\"` first"
        )
    })
}

/// Where scripts/testenv.sh keeps its state (virtualenv, certificates, SMTP folders).
pub fn state_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".testenv")
}

/// A TCP port on 127.0.0.1 that was free a moment ago: bound, read and released, so nothing
/// listens there (a closed port for a probe to fail on, or one for a server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique name for queues, databases and containers, so runs never see each other's state.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes; on timeout, panics
/// naming `what` was awaited.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
