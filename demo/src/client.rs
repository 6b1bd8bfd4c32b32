//! A minimal HTTP/1.1 client for the binaries' own subcommands (`healthcheck`, `fault`).
//!
//! The images are `FROM scratch`: no shell, no curl or wget. A Docker `HEALTHCHECK` or a
//! `docker exec` therefore runs the program itself, which asks its own port on 127.0.0.1.
//! Plain blocking std I/O keeps that path free of a runtime and of another dependency.

use anyhow::{anyhow, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one request may take in all.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `method path` to `127.0.0.1:port`; returns the status code and the body.
pub fn request(method: &str, port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .with_context(|| format!("nothing answers on {address}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("no complete answer from {address}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer from {address}"))?;
    Ok((status, body.to_owned()))
}
