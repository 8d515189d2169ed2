//! The service's metrics endpoint (`service run --metrics-listen ADDR`): `GET /metrics`
//! answers with the OpenMetrics text of `inspect --format openmetrics` for the service's pool.
//!
//! A small responder over std's `TcpListener`, not an HTTP crate: the endpoint has one
//! read-only route, reads one short request per connection, keeps no connection alive and
//! takes no body, so what matters is bounding what a peer can make it do — the size of the
//! request head (`MAX_HEAD`), the time to send it (`READ_TIME`) and to read the answer
//! (`WRITE_TIME`), and the connections served at once (`MAX_CONNECTIONS`, past which a peer
//! gets 503) — and that is a few lines here. A server crate (hyper, tiny_http) would bring an
//! async runtime or a larger dependency tree into the service's process for that one route.
//!
//! It listens on loopback only unless the operator allows more (`--metrics-allow-remote`):
//! there is no authentication, and the figures name the pool's mountpoints, images and
//! containers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{Exporter, Exposition, OPENMETRICS_CONTENT_TYPE};

/// The longest request head (request line and headers) read; a longer one gets 431.
const MAX_HEAD: usize = 8 << 10;
/// How long a peer has to send its request head; a slower one gets 408.
const READ_TIME: Duration = Duration::from_secs(5);
/// How long a peer has to take the answer.
const WRITE_TIME: Duration = Duration::from_secs(10);
/// Connections served at once; one more is answered 503 at once and closed.
const MAX_CONNECTIONS: usize = 4;
/// How often the accepting thread looks whether the service stops.
const STOP_POLL_MS: u16 = 200;

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("--metrics-listen {addr} is not a loopback address; the metrics endpoint has no authentication, so give --metrics-allow-remote as well to serve it there")]
    NotLoopback { addr: SocketAddr },
    #[error("cannot listen on {addr} for metrics (--metrics-listen)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the metrics thread")]
    Thread(#[source] std::io::Error),
}

/// Whether `addr` is a loopback address (IPv4-mapped IPv6 ones included).
fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().map_or(a.ip().is_loopback(), |v4| v4.is_loopback()),
    }
}

/// Refuses a non-loopback `addr` unless `allow_remote`.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), HttpError> {
    if is_loopback(&addr) || allow_remote {
        Ok(())
    } else {
        Err(HttpError::NotLoopback { addr })
    }
}

/// The running endpoint; stops (and its thread ends) when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Where it listens (the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listens on `addr` (checked with [`check_listen`] first) and serves `exporter`'s figures
/// from a thread until the returned server is dropped.
pub fn serve(addr: SocketAddr, allow_remote: bool, exporter: Exporter) -> Result<MetricsServer, HttpError> {
    check_listen(addr, allow_remote)?;
    let bind = |source| HttpError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let stop = Arc::new(AtomicBool::new(false));
    let exporter = Arc::new(exporter);
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("ptn-metrics".into())
            .spawn(move || accept_loop(&listener, &exporter, &stop))
            .map_err(HttpError::Thread)?
    };
    info!("serving metrics at http://{local}/metrics");
    Ok(MetricsServer { addr: local, stop, thread: Some(thread) })
}

fn accept_loop(listener: &TcpListener, exporter: &Arc<Exporter>, stop: &AtomicBool) {
    use nix::poll::{poll, PollFd, PollFlags};
    let busy = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, STOP_POLL_MS) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                warn!("metrics endpoint: cannot wait for connections: {e}");
                std::thread::sleep(Duration::from_millis(u64::from(STOP_POLL_MS)));
                continue;
            }
        }
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) => {
                debug!("metrics endpoint: accept: {e}");
                continue;
            }
        };
        if conn.set_nonblocking(false).is_err() || conn.set_write_timeout(Some(WRITE_TIME)).is_err() {
            continue;
        }
        if busy.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            // Answered without reading the request: it costs this thread one short write.
            let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
            respond(conn, Status::Busy, "text/plain; charset=utf-8", b"busy: too many scrapes at once\n", true);
            continue;
        }
        busy.fetch_add(1, Ordering::AcqRel);
        let (exporter, done) = (exporter.clone(), busy.clone());
        let spawned = std::thread::Builder::new().name("ptn-metrics-req".into()).spawn(move || {
            handle(conn, &exporter);
            done.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The statuses the endpoint answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    Timeout,
    TooLarge,
    Internal,
    Busy,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::Timeout => "408 Request Timeout",
            Status::TooLarge => "431 Request Header Fields Too Large",
            Status::Internal => "500 Internal Server Error",
            Status::Busy => "503 Service Unavailable",
        }
    }
}

/// Reads the request head: up to the blank line ending it, at most `MAX_HEAD` bytes, within
/// `READ_TIME`. `None` when the peer went away before sending it.
fn read_head(conn: &mut TcpStream) -> Result<Option<Vec<u8>>, Status> {
    let deadline = Instant::now() + READ_TIME;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Status::Timeout);
        }
        conn.set_read_timeout(Some(left)).map_err(|_| Status::Internal)?;
        let n = match conn.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Err(Status::Timeout),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None),
        };
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() >= MAX_HEAD {
            return Err(Status::TooLarge);
        }
    }
}

/// Where the head ends (the blank line: CRLF CRLF, or LF LF from a lax client).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a request head asks for: the status to answer with, and whether a body goes with it
/// (not for `HEAD`).
fn route(head: &[u8]) -> (Status, bool) {
    let Ok(text) = std::str::from_utf8(head) else { return (Status::BadRequest, true) };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return (Status::BadRequest, true);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return (Status::BadRequest, true);
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != "/metrics" {
        return (Status::NotFound, method != "HEAD");
    }
    match method {
        "GET" => (Status::Ok, true),
        "HEAD" => (Status::Ok, false),
        _ => (Status::MethodNotAllowed, true),
    }
}

fn handle(mut conn: TcpStream, exporter: &Exporter) {
    let head = match read_head(&mut conn) {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(status) => {
            respond(conn, status, "text/plain; charset=utf-8", format!("{}\n", status.line()).as_bytes(), true);
            return;
        }
    };
    let (status, with_body) = route(&head);
    if status != Status::Ok {
        respond(conn, status, "text/plain; charset=utf-8", format!("{}\n", status.line()).as_bytes(), with_body);
        return;
    }
    // A figure that panics while being gathered costs this scrape, not the service.
    let text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exporter.encode(Exposition::OpenMetrics)));
    match text {
        Ok(Ok(body)) => respond(conn, Status::Ok, OPENMETRICS_CONTENT_TYPE, body.as_bytes(), with_body),
        Ok(Err(e)) => {
            warn!("metrics endpoint: {}", crate::errors::chain(&e));
            respond(conn, Status::Internal, "text/plain; charset=utf-8", b"cannot encode the metrics\n", true);
        }
        Err(_) => respond(conn, Status::Internal, "text/plain; charset=utf-8", b"internal error gathering the metrics (see the service's log)\n", true),
    }
}

fn respond(mut conn: TcpStream, status: Status, content_type: &str, body: &[u8], with_body: bool) {
    let allow = if status == Status::MethodNotAllowed { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        status.line(),
        body.len()
    );
    let written = conn.write_all(head.as_bytes()).and_then(|_| if with_body { conn.write_all(body) } else { Ok(()) }).and_then(|_| conn.flush());
    if let Err(e) = written {
        debug!("metrics endpoint: cannot answer: {e}");
    }
    let _ = conn.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        let addr = |s: &str| s.parse::<SocketAddr>().expect("address");
        for ok in ["127.0.0.1:9464", "127.1.2.3:0", "[::1]:9464", "[::ffff:127.0.0.1]:1"] {
            assert!(check_listen(addr(ok), false).is_ok(), "{ok}");
        }
        for remote in ["0.0.0.0:9464", "10.0.0.1:1", "[::]:9464", "[::ffff:10.0.0.1]:1"] {
            let e = check_listen(addr(remote), false).expect_err(remote).to_string();
            assert!(e.contains("--metrics-allow-remote"), "{e}");
            assert!(check_listen(addr(remote), true).is_ok());
        }
    }

    #[test]
    fn requests_are_routed_by_path_then_method() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x"), (Status::Ok, true));
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0"), (Status::Ok, true));
        assert_eq!(route(b"HEAD /metrics HTTP/1.1"), (Status::Ok, false));
        assert_eq!(route(b"POST /metrics HTTP/1.1").0, Status::MethodNotAllowed);
        assert_eq!(route(b"GET / HTTP/1.1").0, Status::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1").0, Status::NotFound);
        for bad in [&b""[..], b"garbage", b"GET /metrics", b"GET /metrics SPDY/3", b"GET  /metrics HTTP/1.1", b"\xff\xfe /metrics HTTP/1.1", b"GET metrics HTTP/1.1"] {
            assert_eq!(route(bad).0, Status::BadRequest, "{bad:?}");
        }
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(20));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
