//! medic talks to engines at both ends of the API range it supports.
//!
//! **An emulated engine, on purpose:** no engine newer than Debian's 20.10 (API 1.41) can be
//! installed here, and Docker 29 is the case that matters (it refuses every API version below
//! 1.44, which broke tools that pinned an older one). So this file runs a small HTTP server on a
//! unix socket that answers the calls medic makes the way Docker does, and applies Docker's
//! version rule: a request under `/vX.Y/` below the engine's minimum or above its maximum gets
//! Docker's 400 answer ("client version 1.41 is too old. Minimum supported API version is
//! 1.44, ..."); a request without a version prefix is served at the engine's own version. It
//! records every request, so the test checks which version medic sent on each.
//!
//! The old end is emulated as well (an engine offering at most 1.41) to check the same rule
//! from the other side; the real engine of the test environment (20.10, 1.41) covers that end
//! in every other acceptance test.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{wait_for, Medic};

/// What one emulated engine says about itself.
#[derive(Clone, Copy)]
struct EngineSpec {
    version: &'static str,
    api_version: &'static str,
    min_api_version: &'static str,
}

/// Docker 29: API 1.52, nothing below 1.44.
const DOCKER_29: EngineSpec = EngineSpec {
    version: "29.0.0",
    api_version: "1.52",
    min_api_version: "1.44",
};

/// Docker 20.10 (Debian's): API 1.41 at most.
const DOCKER_20_10: EngineSpec = EngineSpec {
    version: "20.10.24",
    api_version: "1.41",
    min_api_version: "1.12",
};

/// An emulated engine on a unix socket; stops (and closes every connection) when dropped.
struct EmulatedEngine {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    /// Every request as `METHOD PATH STATUS`.
    requests: Arc<Mutex<Vec<String>>>,
    /// Open connections, shut down on stop (the event stream stays open until then).
    connections: Arc<Mutex<Vec<UnixStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

fn parse_version(v: &str) -> (u32, u32) {
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

impl EmulatedEngine {
    fn start(socket: &Path, spec: EngineSpec) -> EmulatedEngine {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (stop, requests, connections) =
                (stop.clone(), requests.clone(), connections.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        connections.lock().unwrap().push(clone);
                    }
                    let requests = requests.clone();
                    std::thread::spawn(move || serve(stream, spec, &requests));
                }
            })
        };
        EmulatedEngine {
            socket: socket.to_path_buf(),
            stop,
            requests,
            connections,
            accept: Some(accept),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for EmulatedEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for c in self.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Answers requests on one connection (HTTP/1.1 keep-alive) until the client closes it.
fn serve(stream: UnixStream, spec: EngineSpec, requests: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let path = target.split('?').next().unwrap_or("").to_string();
        let (status, body, stream_forever) = answer(&method, &path, spec);
        requests
            .lock()
            .unwrap()
            .push(format!("{method} {path} {status}"));
        let reason = if status == 200 { "OK" } else { "Bad Request" };
        if stream_forever {
            // The event stream: headers now, events never; open until the engine stops.
            let _ = write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                spec.api_version
            );
            let _ = writer.flush();
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
            return;
        }
        let reply = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nApi-Version: {}\r\nContent-Length: {}\r\n\r\n{body}",
            spec.api_version,
            body.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The `X.Y` of a path that starts with `/vX.Y/`.
fn version_prefix(path: &str) -> Option<&str> {
    let (version, _) = path.strip_prefix("/v")?.split_once('/')?;
    version
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then_some(version)
        .filter(|v| !v.is_empty())
}

/// The engine's answer to `METHOD PATH`: status, body, and whether it is the endless event
/// stream. Applies Docker's version rule to a `/vX.Y` prefix first.
fn answer(method: &str, path: &str, spec: EngineSpec) -> (u16, String, bool) {
    let mut rest = path;
    if let Some(version) = version_prefix(path) {
        {
            let asked = parse_version(version);
            if asked < parse_version(spec.min_api_version) {
                return (
                    400,
                    format!(
                        r#"{{"message":"client version {version} is too old. Minimum supported API version is {}, please upgrade your client to a newer version"}}"#,
                        spec.min_api_version
                    ),
                    false,
                );
            }
            if asked > parse_version(spec.api_version) {
                return (
                    400,
                    format!(
                        r#"{{"message":"client version {version} is too new. Maximum supported API version is {}"}}"#,
                        spec.api_version
                    ),
                    false,
                );
            }
            rest = &path["/v".len() + version.len()..];
        }
    }
    match (method, rest) {
        ("GET", "/_ping") | ("HEAD", "/_ping") => (200, "OK".into(), false),
        ("GET", "/version") => (
            200,
            format!(
                r#"{{"Version":"{}","ApiVersion":"{}","MinAPIVersion":"{}","Os":"linux","Arch":"amd64","GoVersion":"go1.24","GitCommit":"emulated","KernelVersion":"6.1"}}"#,
                spec.version, spec.api_version, spec.min_api_version
            ),
            false,
        ),
        ("GET", "/containers/json") => (200, "[]".into(), false),
        ("GET", "/events") => (200, String::new(), true),
        _ => (
            404,
            format!(r#"{{"message":"page not found: {method} {rest}"}}"#),
            false,
        ),
    }
}

/// Runs `medic check` against the engine at `socket`; returns its `docker` row and exit code.
fn check(socket: &Path) -> (String, Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("MEDIC_DATA_DIR", data.path())
        .env("MEDIC_ENGINE_TIMEOUT", "5s")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let row = stdout
        .lines()
        .find(|l| l.starts_with("docker"))
        .unwrap_or_else(|| panic!("no docker row:\n{stdout}\n{stderr}"))
        .to_string();
    (row, out.status.code(), format!("{stdout}\n{stderr}"))
}

/// Every request the engine got is one it accepted (none was refused for its version), and
/// each carried a version prefix the engine supports or none at all.
fn assert_all_accepted(engine: &EmulatedEngine, spec: EngineSpec) {
    let requests = engine.requests();
    assert!(!requests.is_empty(), "medic sent nothing");
    for r in &requests {
        assert!(
            !r.ends_with(" 400"),
            "{} refused a request for its version: {r}\nall: {requests:#?}",
            spec.version
        );
        let path = r.split_whitespace().nth(1).unwrap();
        if let Some(v) = version_prefix(path) {
            let v = parse_version(v);
            assert!(
                v >= parse_version(spec.min_api_version) && v <= parse_version(spec.api_version),
                "{r} is outside {}..{}",
                spec.min_api_version,
                spec.api_version
            );
        }
    }
}

#[test]
fn medic_check_talks_to_an_engine_that_refuses_apis_below_1_44() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker29.sock");
    let engine = EmulatedEngine::start(&socket, DOCKER_29);
    // The emulation refuses what Docker 29 refuses.
    assert_eq!(answer("GET", "/v1.41/version", DOCKER_29).0, 400);
    let (row, code, all) = check(&socket);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        row.contains(" ok ") && row.contains("Docker Engine 29.0.0 (API 1.52)"),
        "{row}"
    );
    assert_all_accepted(&engine, DOCKER_29);
    let requests = engine.requests();
    assert!(
        requests.iter().any(|r| r.contains("/containers/json")),
        "medic check listed no containers: {requests:#?}"
    );
    eprintln!("requests to the emulated Docker 29: {requests:#?}");
}

#[test]
fn medic_check_talks_to_an_engine_that_offers_only_1_41() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker2010.sock");
    let engine = EmulatedEngine::start(&socket, DOCKER_20_10);
    assert_eq!(answer("GET", "/v1.52/version", DOCKER_20_10).0, 400);
    let (row, code, all) = check(&socket);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        row.contains(" ok ") && row.contains("Docker Engine 20.10.24 (API 1.41)"),
        "{row}"
    );
    assert_all_accepted(&engine, DOCKER_20_10);
    eprintln!(
        "requests to the emulated Docker 20.10: {:#?}",
        engine.requests()
    );
}

/// An engine upgraded while medic runs: medic met 20.10 (1.41) first, then Docker 29 on the
/// same socket. It negotiates afresh on reconnect instead of keeping the old engine's version.
#[test]
fn medic_negotiates_afresh_when_the_engine_is_upgraded_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let host = format!("unix://{}", socket.display());
    let old = EmulatedEngine::start(&socket, DOCKER_20_10);
    let medic = Medic::start(&[
        ("DOCKER_HOST", host.as_str()),
        ("MEDIC_PROJECT", "none"),
        ("MEDIC_ENGINE_TIMEOUT", "5s"),
    ]);
    medic.wait_log("connected to 20.10", Duration::from_secs(20), |l| {
        l.contains("connected to the Docker engine") && l.contains(r#""api":"1.41""#)
    });
    assert_all_accepted(&old, DOCKER_20_10);
    drop(old);
    let new = EmulatedEngine::start(&socket, DOCKER_29);
    medic.wait_log("reconnected to 29", Duration::from_secs(30), |l| {
        l.contains("connected to the Docker engine")
            && l.contains(r#""api":"1.52""#)
            && l.contains(r#""reconnected":true"#)
    });
    wait_for(
        "a reconcile against the new engine",
        Duration::from_secs(10),
        || {
            new.requests()
                .iter()
                .any(|r| r.contains("/containers/json"))
        },
    );
    assert_all_accepted(&new, DOCKER_29);
}
