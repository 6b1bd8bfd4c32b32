//! The HTTP/1.1 server loop: accepts connections and serves the router on each, with limits
//! that `axum::serve` does not offer.
//!
//! - **Header-read timeout** (hyper's, `MEDIC_HTTP_HEADER_TIMEOUT`): a connection must send a
//!   whole request head within this time of opening or of its previous answer, else it is
//!   closed. This drops a client that connects and sends nothing, one that sends half a request
//!   (slowloris: a header byte a second), and a keep-alive connection left idle.
//! - **Write stall timeout**: an answer the client does not read for [`WRITE_STALL`] closes the
//!   connection, so a client that asks for `/metrics` and never reads cannot hold it.
//! - **Connection bound** (`MEDIC_HTTP_MAX_CONNECTIONS`): when one more connection arrives at
//!   the bound, the connection that has been silent longest (no byte read or written) is
//!   closed. New clients, such as a load balancer asking `/health`, are therefore always served,
//!   and the file descriptors and buffers medic holds stay bounded whatever a client opens.
//! - **Small request heads**: hyper's read buffer is capped at [`MAX_HEAD_BYTES`].
//!
//! Only HTTP/1 is served: every client of medic (load balancers, Prometheus, browsers, curl)
//! speaks it, and hyper's header-read timeout exists only for HTTP/1.
//!
//! Shutdown: the listener closes at once; requests in flight get [`SHUTDOWN_GRACE`] to finish
//! (idle connections close immediately), then the rest are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::config::HttpLimits;

/// How long an answer may wait for the client to read it before the connection is closed.
pub const WRITE_STALL: Duration = Duration::from_secs(30);

/// The largest request head medic reads (request line and headers). medic's requests carry
/// a path and at most a bearer token: 16 KiB is generous, and bounds what an idle connection
/// can make medic hold.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long requests in flight may take to finish once medic is stopping.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One open connection, as the bound sees it.
struct Slot {
    /// Milliseconds since the server started at its last byte read or written.
    last_progress_ms: AtomicU64,
    /// Cancelled to close the connection at once (evicted, or shutdown grace over).
    close: CancellationToken,
}

/// The open connections, so the bound can pick which one to close.
struct Connections {
    /// When the server started: the origin of [`Slot::last_progress_ms`].
    epoch: Instant,
    /// Open connections by id.
    open: Mutex<HashMap<u64, Arc<Slot>>>,
    /// The next connection id.
    next_id: AtomicU64,
    /// Connections closed to make room, ever (for the rate-limited warning).
    evicted: AtomicU64,
    /// When the last warning about evictions was logged, in ms since `epoch` (0: never).
    warned_ms: AtomicU64,
}

impl Connections {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Registers a new connection, first closing the most silent one if the bound is reached.
    fn admit(&self, max: usize, parent: &CancellationToken) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            last_progress_ms: AtomicU64::new(self.now_ms()),
            close: parent.child_token(),
        });
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while open.len() >= max {
            let Some(victim) = open
                .iter()
                .min_by_key(|(_, s)| s.last_progress_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(slot) = open.remove(&victim) {
                slot.close.cancel();
            }
            self.note_eviction(max);
        }
        open.insert(id, slot.clone());
        (id, slot)
    }

    /// Counts an eviction; warns at most once a minute, because a flood evicts thousands.
    fn note_eviction(&self, max: usize) {
        let total = self.evicted.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.now_ms().max(1);
        let last = self.warned_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 60_000)
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                max_connections = max,
                evicted_total = total,
                "HTTP connection limit reached: closing the connections silent longest \
                 (raise MEDIC_HTTP_MAX_CONNECTIONS if these are real clients)"
            );
        }
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// A connection's stream that records progress and times out a stalled write.
struct Tracked {
    stream: TcpStream,
    slot: Arc<Slot>,
    connections: Arc<Connections>,
    /// Armed while a write waits for the client to read.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Tracked {
    fn progress(&mut self) {
        self.slot
            .last_progress_ms
            .store(self.connections.now_ms(), Ordering::Relaxed);
    }

    /// What a write (plain or vectored) answers: progress when it went ahead, else the stall
    /// timer's verdict.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                self.write_stall = None;
                self.progress();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_stall(cx).map(Err),
        }
    }

    /// Called when a write could not go ahead: `Ready(Err)` once it has waited too long.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the answer",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        self.after_write(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then shuts down gracefully.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let http = Arc::new(http);
    let connections = Arc::new(Connections {
        epoch: Instant::now(),
        open: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        evicted: AtomicU64::new(0),
        warned_ms: AtomicU64::new(0),
    });
    // Cancelled when the shutdown grace is over: closes every connection left.
    let force_close = CancellationToken::new();
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (or a like resource): wait a little instead of
                // spinning on the same error; the bound makes room as connections close.
                if !is_connection_error(&e) {
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
                continue;
            }
        };
        // Small answers (every route but the page) go out at once instead of after Nagle's wait.
        let _ = stream.set_nodelay(true);
        let (id, slot) = connections.admit(limits.max_connections, &force_close);
        let io = TokioIo::new(Tracked {
            stream,
            slot: slot.clone(),
            connections: connections.clone(),
            write_stall: None,
        });
        let service = TowerToHyperService::new(app.clone());
        let (http, connections, stop) = (http.clone(), connections.clone(), stop.clone());
        tasks.spawn(async move {
            let conn = http.serve_connection(io, service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    served = conn.as_mut() => {
                        if let Err(e) = served {
                            // Timeouts, resets and malformed requests: the client's doing.
                            debug!(error = %e, "HTTP connection ended");
                        }
                        break;
                    }
                    _ = slot.close.cancelled() => break,
                    _ = stop.cancelled(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            connections.remove(id);
        });
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "HTTP requests still running at shutdown were cut off"
        );
        force_close.cancel();
        tasks.wait().await;
    }
}

/// Errors that concern one connection only (it was reset before being accepted).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections() -> Connections {
        Connections {
            epoch: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
        }
    }

    #[test]
    fn the_bound_closes_the_connection_silent_longest() {
        let c = connections();
        let parent = CancellationToken::new();
        let (_, a) = c.admit(2, &parent);
        let (_, b) = c.admit(2, &parent);
        a.last_progress_ms.store(50, Ordering::Relaxed);
        b.last_progress_ms.store(10, Ordering::Relaxed);
        let (_, new) = c.admit(2, &parent);
        assert!(b.close.is_cancelled(), "b was silent longest");
        assert!(!a.close.is_cancelled() && !new.close.is_cancelled());
        assert_eq!(c.open.lock().unwrap().len(), 2);
        assert_eq!(c.evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn below_the_bound_nothing_is_closed() {
        let c = connections();
        let parent = CancellationToken::new();
        let slots: Vec<_> = (0..5).map(|_| c.admit(8, &parent).1).collect();
        assert!(slots.iter().all(|s| !s.close.is_cancelled()));
        parent.cancel();
        assert!(slots.iter().all(|s| s.close.is_cancelled()));
    }
}
