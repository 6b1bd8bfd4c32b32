//! An engine socket that accepts connections and never answers (a hung dockerd, a proxy whose
//! backend is gone) must not leave medic silent: within `MEDIC_ENGINE_TIMEOUT` it says which
//! call got no answer, keeps retrying, and its own `/health` keeps answering.
//!
//! The hung engine is a unix socket this test listens on and never answers: nothing real hangs
//! on demand, and the point is only that medic does not wait on it forever.

mod support;

use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{http_get, Medic};

/// A socket that accepts every connection and never says a word; kept open until dropped.
struct SilentEngine {
    _listener: UnixListener,
    accepted: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
}

impl SilentEngine {
    fn start(path: &std::path::Path) -> SilentEngine {
        let listener = UnixListener::bind(path).unwrap();
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = accepted.clone();
        let incoming = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            for stream in incoming.incoming().map_while(Result::ok) {
                keep.lock().unwrap().push(stream);
            }
        });
        SilentEngine {
            _listener: listener,
            accepted,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

#[test]
fn a_silent_engine_is_reported_within_the_engine_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let engine = SilentEngine::start(&socket);
    let host = format!("unix://{}", socket.display());

    // The daemon: a clear line naming the call and the setting, well before bollard's 120 s.
    let started = Instant::now();
    let medic = Medic::start(&[
        ("DOCKER_HOST", host.as_str()),
        ("MEDIC_PROJECT", "none"),
        ("MEDIC_ENGINE_TIMEOUT", "2s"),
    ]);
    medic.wait_log(
        "medic reports the silent engine",
        Duration::from_secs(15),
        |l| {
            l.contains("cannot reach the Docker engine")
                && l.contains("no answer to GET /version within 2s (MEDIC_ENGINE_TIMEOUT)")
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(engine.connections() >= 1, "medic never connected");
    let (status, body) = http_get(&medic.addr(), "/health");
    assert_eq!(status, 200, "{body}");
    // It keeps trying (with backoff) rather than giving up after one timeout.
    medic.wait_log("a second attempt", Duration::from_secs(15), |_| {
        medic
            .lines()
            .iter()
            .filter(|l| l.contains("no answer to GET /version"))
            .count()
            >= 2
    });

    // The one-shot check: a FAIL row naming the timeout, within a few seconds.
    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCKER_HOST", &host)
        .env("MEDIC_DATA_DIR", data.path())
        .env("MEDIC_ENGINE_TIMEOUT", "2s")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with("docker")).unwrap();
    assert!(
        row.contains("FAIL") && row.contains("no answer to GET /version within 2s"),
        "{row}"
    );
}
