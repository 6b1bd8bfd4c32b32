//! Plain HTTP/1.0 exchanges with medic's API on 127.0.0.1, written by hand so that a test sees
//! exactly the status, head and body medic sent.

use std::io::Write;
use std::time::Duration;

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
