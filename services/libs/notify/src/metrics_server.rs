//! A tiny blocking HTTP server for `GET /metrics`: one thread, one connection at a time.
//!
//! One thread is enough for a scraper every few seconds, and cannot be made to spawn more;
//! each connection is bounded in time and size so that a stuck or hostile client delays the
//! next scrape by at most the timeout, and nothing else is served.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::prometheus::{render, Metric, CONTENT_TYPE};
use crate::{MetricsConfig, NotifyError};

/// Bounds on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The whole request head must arrive within this time.
    pub read_timeout: Duration,
    /// Each write of the response must progress within this time.
    pub write_timeout: Duration,
    /// Longest request head (request line and headers); longer ones get 431.
    pub max_request_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_request_bytes: 8 * 1024,
        }
    }
}

/// Serves what a closure returns as a Prometheus exposition at `GET /metrics`; 404 for other
/// paths, 405 for other methods. Stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens as `config` says (checked: loopback unless `allow-remote`), with default limits.
    pub fn start<F>(config: &MetricsConfig, collect: F) -> Result<MetricsServer, NotifyError>
    where
        F: Fn() -> Vec<Metric> + Send + 'static,
    {
        config.validate()?;
        MetricsServer::start_on(config.listen, ServerLimits::default(), collect)
    }

    /// Listens on `listen` (port 0 picks one: see [`MetricsServer::local_addr`]).
    pub fn start_on<F>(
        listen: SocketAddr,
        limits: ServerLimits,
        collect: F,
    ) -> Result<MetricsServer, NotifyError>
    where
        F: Fn() -> Vec<Metric> + Send + 'static,
    {
        let bind_error = |source| NotifyError::MetricsBind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || serve(listener, limits, collect, &thread_stop))
            .map_err(bind_error)?;
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread (at most one connection's timeouts).
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it to see the flag.
        let wake = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.addr.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.addr.port())
            }
            _ => self.addr,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if thread.join().is_err() {
            tracing::error!("the metrics server thread panicked");
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn serve<F>(listener: TcpListener, limits: ServerLimits, collect: F, stop: &AtomicBool)
where
    F: Fn() -> Vec<Metric>,
{
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(mut stream) => {
                if let Err(e) = handle(&mut stream, limits, &collect) {
                    tracing::debug!(error = %e, "metrics connection ended with an error");
                }
                linger(&mut stream);
            }
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "metrics server cannot accept");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn handle<F>(stream: &mut TcpStream, limits: ServerLimits, collect: &F) -> io::Result<()>
where
    F: Fn() -> Vec<Metric>,
{
    stream.set_write_timeout(Some(limits.write_timeout))?;
    let head = match read_head(stream, limits)? {
        Head::Complete(head) => head,
        Head::TooLarge => return respond(stream, "431 Request Header Fields Too Large", ""),
        Head::TimedOut => return respond(stream, "408 Request Timeout", ""),
        Head::Closed => return Ok(()),
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return respond(stream, "400 Bad Request", "");
    };
    if !version.starts_with("HTTP/1.") {
        return respond(stream, "400 Bad Request", "");
    }
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return respond(stream, "405 Method Not Allowed", "");
    }
    if path != "/metrics" {
        return respond(stream, "404 Not Found", "");
    }
    match catch_unwind(AssertUnwindSafe(|| render(&collect()))) {
        Ok(body) => respond(stream, "200 OK", &body),
        Err(_) => {
            tracing::error!("collecting metrics panicked");
            respond(stream, "500 Internal Server Error", "")
        }
    }
}

/// Closes gracefully: unread request bytes at close would make the kernel reset the
/// connection, and the client could lose the answer (a 431 sent before the client finished
/// writing). So: end our side, then read and discard a bounded amount for a short while.
fn linger(stream: &mut TcpStream) {
    const MAX_DRAIN: usize = 64 * 1024;
    let deadline = Instant::now() + Duration::from_millis(500);
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < MAX_DRAIN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

enum Head {
    Complete(String),
    TooLarge,
    TimedOut,
    Closed,
}

/// Reads up to the blank line that ends the request head, within the limits.
fn read_head(stream: &mut TcpStream, limits: ServerLimits) -> io::Result<Head> {
    let deadline = Instant::now() + limits.read_timeout;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = find_end(&head) {
            head.truncate(end);
            return Ok(Head::Complete(String::from_utf8_lossy(&head).into_owned()));
        }
        if head.len() > limits.max_request_bytes {
            return Ok(Head::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::TimedOut);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Head::Closed),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Head::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn find_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| head.windows(2).position(|w| w == b"\n\n"))
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
