//! A hostile HTTP server for tests/hostile_replies.rs and tests/no_secret.rs: raw TCP on
//! 127.0.0.1, so that it can answer what no proper server would (10 MB headers, garbage, resets, broken chunking, bodies
//! that never end). It is a fake on purpose (TESTING.md: a fake is fine where nothing real can
//! produce the fault): no real server misbehaves on demand.
//!
//! Each request is read whole (head and body), handed to the test's route, and answered with
//! the [`Reply`] the route picks, on a connection of its own (`Connection: close` everywhere).
//! The server counts the bytes it managed to write, so a test can tell whether the client
//! stopped reading a body that never ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Ten megabytes: the size of the big replies.
pub const TEN_MB: usize = 10 * 1024 * 1024;

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A proper reply: this status, a body with its Content-Length, `Connection: close`.
    Proper {
        /// The status code.
        status: u16,
        /// The body (sent as `application/json`).
        body: Vec<u8>,
    },
    /// 200 and 10 MB of JSON-looking bytes, announced by Content-Length.
    HugeWithLength,
    /// 200 and 10 MB without a length, ended by closing the connection.
    HugeUntilClose,
    /// 200 and 10 MB in chunked encoding.
    HugeChunked,
    /// 200 and a body that never ends, written as fast as the client reads it.
    Endless,
    /// 500 and a body that never ends, written as fast as the client reads it.
    ErrorEndless,
    /// 200 and a body that never ends, one byte every 50 ms.
    Trickle,
    /// A status line, then one header line of 10 MB.
    HugeHeader,
    /// A status line, then this many small headers.
    ManyHeaders(usize),
    /// 64 KiB of pseudo-random bytes, then close.
    RandomBytes,
    /// `HELLO\r\n`, then close.
    Hello,
    /// Nothing at all: the request is read, the connection closed.
    Empty,
    /// The connection is reset (SO_LINGER 0, then close): the client sees an RST.
    Reset,
    /// `HTTP/1.1 200 OK\r\n` and nothing more, then close.
    StatusLineOnly,
    /// Content-Length 1000, 10 bytes, then close.
    Truncated,
    /// A chunked body whose second chunk size is not hexadecimal, then close.
    BrokenChunked,
    /// Headers announcing 100 bytes, then nothing, forever.
    StallAfterHeaders,
    /// 302 to the very path that was asked, forever.
    RedirectLoop,
    /// `100 Continue` and nothing more, then close.
    InformationalOnly,
    /// 204 No Content.
    NoContent,
    /// 304 Not Modified.
    NotModified,
    /// This status and a text body that quotes the request's credentials, as some servers do
    /// in their error messages (`Authorization` and `x-goog-api-key` values).
    EchoCredentials(u16),
    /// This status and `Cannot POST <path>`, as web frameworks answer a route they lack.
    EchoPath(u16),
}

impl Reply {
    /// A proper JSON reply.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::Proper {
            status,
            body: body.to_string().into_bytes(),
        }
    }

    /// A proper reply with these raw bytes as the body.
    pub fn bytes(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Proper {
            status,
            body: body.into(),
        }
    }
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The header lines, raw.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (first match, case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A running hostile server; it lives until the test's runtime ends.
pub struct HostileServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Bytes written to clients so far.
    sent: Arc<AtomicU64>,
    /// Requests received so far.
    requests: Arc<AtomicU64>,
}

type Route = dyn Fn(&Request) -> Reply + Send + Sync;

impl HostileServer {
    /// Starts a server that answers every request with what `route` picks for it.
    pub async fn start(route: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let route: Arc<Route> = Arc::new(route);
        let (s, r) = (sent.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (route, sent, requests) = (route.clone(), s.clone(), r.clone());
                tokio::spawn(async move {
                    let mut conn = Conn { stream, sent };
                    if let Some(request) = conn.read_request().await {
                        requests.fetch_add(1, Ordering::Relaxed);
                        let reply = route(&request);
                        conn.answer(&request, reply).await;
                    }
                });
            }
        });
        HostileServer {
            base,
            sent,
            requests,
        }
    }

    /// Starts a server that answers every request the same way.
    pub async fn always(reply: Reply) -> HostileServer {
        HostileServer::start(move |_| reply.clone()).await
    }

    /// Bytes written to clients so far (what they read, plus what sits in socket buffers).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// One accepted connection.
struct Conn {
    stream: TcpStream,
    sent: Arc<AtomicU64>,
}

/// Writing failed: the client went away, which ends the answer.
struct Gone;

/// A 64 KiB block of a JSON-looking body, written again and again for the big replies.
fn block() -> Vec<u8> {
    let mut block = b"{\"status\":\"ok\",\"pad\":\"".to_vec();
    block.resize(64 * 1024, b'x');
    block
}

/// Deterministic bytes that are no protocol at all (xorshift; never starts with `HTTP/`).
fn random_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out[0] = 0xFF;
    out
}

impl Conn {
    /// Reads a request head and its body (Content-Length or chunked); `None` if the client
    /// went away first.
    async fn read_request(&mut self) -> Option<Request> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 1 << 20 {
                return None;
            }
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut first = head.split_whitespace();
        let method = first.next()?.to_string();
        let path = first.next()?.to_string();
        let mut request = Request {
            method,
            path,
            head,
            body: buf[head_end..].to_vec(),
        };
        let length = request
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        loop {
            let complete = match length {
                Some(length) => request.body.len() >= length,
                None if chunked => find(&request.body, b"0\r\n\r\n").is_some(),
                None => true,
            };
            if complete || request.body.len() > 1 << 20 {
                break;
            }
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            request.body.extend_from_slice(&chunk[..n]);
        }
        Some(request)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Gone> {
        self.stream.write_all(bytes).await.map_err(|_| Gone)?;
        self.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `total` bytes of the big body, block by block.
    async fn write_blocks(&mut self, total: usize, chunked: bool) -> Result<(), Gone> {
        let block = block();
        let mut left = total;
        while left > 0 {
            let n = left.min(block.len());
            if chunked {
                self.write(format!("{n:x}\r\n").as_bytes()).await?;
                self.write(&block[..n]).await?;
                self.write(b"\r\n").await?;
            } else {
                self.write(&block[..n]).await?;
            }
            left -= n;
        }
        Ok(())
    }

    async fn answer(&mut self, request: &Request, reply: Reply) {
        let reset = matches!(reply, Reply::Reset);
        let _ = self.try_answer(request, reply).await;
        if !reset {
            let _ = self.stream.shutdown().await;
        }
    }

    async fn try_answer(&mut self, request: &Request, reply: Reply) -> Result<(), Gone> {
        const OK_CLOSE: &str =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n";
        match reply {
            Reply::Proper { status, body } => {
                let head = format!(
                    "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                self.write(head.as_bytes()).await?;
                self.write(&body).await
            }
            Reply::HugeWithLength => {
                self.write(format!("{OK_CLOSE}Content-Length: {TEN_MB}\r\n\r\n").as_bytes())
                    .await?;
                self.write_blocks(TEN_MB, false).await
            }
            Reply::HugeUntilClose => {
                self.write(format!("{OK_CLOSE}\r\n").as_bytes()).await?;
                self.write_blocks(TEN_MB, false).await
            }
            Reply::HugeChunked => {
                self.write(format!("{OK_CLOSE}Transfer-Encoding: chunked\r\n\r\n").as_bytes())
                    .await?;
                self.write_blocks(TEN_MB, true).await?;
                self.write(b"0\r\n\r\n").await
            }
            Reply::Endless | Reply::ErrorEndless => {
                let head = if matches!(reply, Reply::Endless) {
                    format!("{OK_CLOSE}\r\n")
                } else {
                    "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n".to_string()
                };
                self.write(head.as_bytes()).await?;
                let block = block();
                loop {
                    self.write(&block).await?;
                }
            }
            Reply::Trickle => {
                self.write(format!("{OK_CLOSE}\r\n").as_bytes()).await?;
                loop {
                    self.write(b" ").await?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Reply::HugeHeader => {
                self.write(b"HTTP/1.1 200 OK\r\nX-Huge: ").await?;
                let line = vec![b'a'; 64 * 1024];
                for _ in 0..TEN_MB / line.len() {
                    self.write(&line).await?;
                }
                self.write(b"\r\nContent-Length: 2\r\n\r\n{}").await
            }
            Reply::ManyHeaders(count) => {
                self.write(b"HTTP/1.1 200 OK\r\n").await?;
                let mut lines = String::new();
                for i in 0..count {
                    lines.push_str(&format!("X-Header-{i}: v\r\n"));
                    if lines.len() > 64 * 1024 {
                        self.write(lines.as_bytes()).await?;
                        lines.clear();
                    }
                }
                lines.push_str("Content-Length: 2\r\n\r\n{}");
                self.write(lines.as_bytes()).await
            }
            Reply::RandomBytes => self.write(&random_bytes(64 * 1024)).await,
            Reply::Hello => self.write(b"HELLO\r\n").await,
            Reply::Empty => Ok(()),
            Reply::Reset => {
                // Dropping a socket with SO_LINGER 0 sends RST instead of FIN; `answer` skips
                // its shutdown for this reply.
                let _ = self.stream.set_zero_linger();
                Ok(())
            }
            Reply::StatusLineOnly => self.write(b"HTTP/1.1 200 OK\r\n").await,
            Reply::Truncated => {
                self.write(format!("{OK_CLOSE}Content-Length: 1000\r\n\r\n").as_bytes())
                    .await?;
                self.write(b"{\"status\":").await
            }
            Reply::BrokenChunked => {
                self.write(format!("{OK_CLOSE}Transfer-Encoding: chunked\r\n\r\n").as_bytes())
                    .await?;
                self.write(b"a\r\n{\"status\":\r\nzz-not-hex\r\nok\r\n")
                    .await
            }
            Reply::StallAfterHeaders => {
                self.write(format!("{OK_CLOSE}Content-Length: 100\r\n\r\n").as_bytes())
                    .await?;
                std::future::pending::<()>().await;
                Ok(())
            }
            Reply::RedirectLoop => {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    request.path
                );
                self.write(head.as_bytes()).await
            }
            Reply::InformationalOnly => self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await,
            Reply::NoContent => {
                self.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await
            }
            Reply::NotModified => {
                self.write(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n")
                    .await
            }
            Reply::EchoCredentials(status) | Reply::EchoPath(status) => {
                let body = if matches!(reply, Reply::EchoPath(_)) {
                    format!("Cannot {} {}", request.method, request.path)
                } else {
                    let credential = request
                        .header("authorization")
                        .or_else(|| request.header("x-goog-api-key"))
                        .unwrap_or_default();
                    format!("Incorrect credentials provided: {credential}. ").repeat(4)
                };
                let head = format!(
                    "HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                self.write(head.as_bytes()).await?;
                self.write(body.as_bytes()).await
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The peak resident memory of this process (`VmHWM`), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
