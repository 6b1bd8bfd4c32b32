//! Plain HTTP/1.0 exchanges with medic's API on 127.0.0.1, written by hand so that a test sees
//! exactly the status, head and body medic sent.

use std::io::Write;
use std::time::{Duration, Instant};

/// One HTTP/1.0 exchange with 127.0.0.1: method, path, extra headers and body; returns the
/// status, the head in lower case, and the body.
pub fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}

/// One bodiless HTTP request to 127.0.0.1 with an optional bearer token: status and body.
pub fn http_request(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, body) = http_exchange(addr, method, path, &headers, "");
    (status, body)
}

/// A minimal HTTP GET to 127.0.0.1, returning status and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None)
}

/// `GET /health/detailed` (with the bearer `token`, if any), which must answer 200, as JSON.
pub fn detailed(addr: &str, token: Option<&str>) -> serde_json::Value {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, body) = http_exchange(addr, "GET", "/health/detailed", &headers, "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// When medic at `addr` last looked at `check` (`docker:<container>` or `probe:<name>`), as
/// `/health/detailed` shows it under the check's component; None before its first look.
pub fn last_checked(addr: &str, token: Option<&str>, check: &str) -> Option<String> {
    let detailed = detailed(addr, token);
    let components = detailed["components"].as_object()?;
    components.values().find_map(|c| {
        c["checks"][check]["last_checked"]
            .as_str()
            .map(str::to_string)
    })
}

/// Waits until medic at `addr` has looked at `check` `times` more times than it had when
/// called (each look moves its `last_checked`): the reconcile or the probe really ran that
/// often, so a test asserting that something did *not* happen has watched long enough. Polls
/// every 100 ms, well under the 1 s reconcile.
pub fn wait_checked(addr: &str, token: Option<&str>, check: &str, times: usize, timeout: Duration) {
    let mut last = last_checked(addr, token, check);
    let mut seen = 0;
    let start = Instant::now();
    while seen < times {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for medic to look at {check} {times} more \
             times (saw {seen})"
        );
        std::thread::sleep(Duration::from_millis(100));
        let now = last_checked(addr, token, check);
        if now.is_some() && now != last {
            seen += 1;
            last = now;
        }
    }
}
