//! `sd_notify(3)` for a `Type=notify` service: tell systemd when the service is ready, what it
//! is doing, that it is stopping, and — with `WatchdogSec=` — that it is still alive.
//!
//! The watchdog is only worth having if the pings come from the code doing the work: a timer
//! thread pinging on its own would keep a service with a deadlocked work loop "healthy"
//! forever. So [`Notifier::watchdog`] is meant to be called from the work loop itself, as
//! often as is convenient (every iteration, every block sent); it sends at most one ping per
//! half interval, so calling it is nearly free.
//!
//! Written against the protocol rather than with `sd-notify` because that crate reads the
//! environment on every call and opens a socket each time, does not reach abstract-namespace
//! sockets (`@…`), and enables the watchdog only when `WATCHDOG_PID` is set, whereas
//! sd_watchdog_enabled(3) treats a missing `WATCHDOG_PID` as "this process".

use std::ffi::OsString;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A STATUS= text is one line; systemd shows the first few hundred characters anyway.
const MAX_STATUS_BYTES: usize = 1024;

/// A manager that does not read its socket must not stall the work loop for long.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// sd_notify for one service process. Every method is a no-op when `NOTIFY_SOCKET` is unset
/// (run by hand, in tests). `Send + Sync`, cheap to share in an `Arc`.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<Socket>,
    watchdog: Option<Duration>,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last WATCHDOG=1, plus one; 0: none sent yet.
    last_ping: AtomicU64,
    /// A failed send is logged once, not on every ping.
    warned: AtomicBool,
}

#[derive(Debug)]
struct Socket {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, and `WATCHDOG_USEC`/`WATCHDOG_PID` with sd_watchdog_enabled(3)
    /// semantics: the watchdog is on when `WATCHDOG_USEC` is a positive number and
    /// `WATCHDOG_PID`, if set, is this process. The variables are left in place.
    pub fn from_env() -> Notifier {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var_os("WATCHDOG_USEC"),
            std::env::var_os("WATCHDOG_PID"),
            std::process::id(),
        )
    }

    /// A notifier that sends nothing, whatever the environment says (embedded use).
    pub fn disabled() -> Notifier {
        Notifier::from_vars(None, None, None, 0)
    }

    fn from_vars(
        socket: Option<OsString>,
        watchdog_usec: Option<OsString>,
        watchdog_pid: Option<OsString>,
        pid: u32,
    ) -> Notifier {
        let socket = socket.filter(|s| !s.is_empty()).and_then(|s| {
            open(&s)
                .map_err(|e| tracing::warn!("NOTIFY_SOCKET={s:?}: {e}; not notifying systemd"))
                .ok()
        });
        let number = |v: Option<OsString>| v.and_then(|v| v.to_str()?.trim().parse::<u64>().ok());
        let for_us = match &watchdog_pid {
            None => true,
            Some(_) => number(watchdog_pid) == Some(u64::from(pid)),
        };
        let watchdog = match number(watchdog_usec) {
            Some(usec) if usec > 0 && for_us && socket.is_some() => {
                Some(Duration::from_micros(usec))
            }
            _ => None,
        };
        Notifier {
            socket,
            watchdog,
            epoch: Instant::now(),
            last_ping: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// READY=1: start-up is complete (systemd starts the units ordered after this one).
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// STATUS=: one line for `systemctl status`. Line breaks and other control characters
    /// become spaces: each line of a notification is an assignment, and a status built from an
    /// error message (perhaps a peer's) must not be able to say `READY=1` or `MAINPID=`.
    pub fn status(&self, text: &str) {
        if self.socket.is_none() {
            return;
        }
        let mut line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if line.len() > MAX_STATUS_BYTES {
            let mut end = MAX_STATUS_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        self.send(&format!("STATUS={line}"));
    }

    /// STOPPING=1: shutdown has begun (systemd then shows "deactivating").
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// EXTEND_TIMEOUT_USEC=: "give me `d` more from now" during a long but progressing start
    /// or shutdown, so that `TimeoutStopSec` can stay short for a service that has hung.
    pub fn extend_timeout(&self, d: Duration) {
        let usec = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.send(&format!("EXTEND_TIMEOUT_USEC={usec}"));
    }

    /// The watchdog interval (`WatchdogSec=`), None when there is no watchdog or no socket
    /// to ping.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Call from the service's work loop as often as you like: sends WATCHDOG=1 when half the
    /// interval has passed since the last ping (and on the first call).
    pub fn watchdog(&self) {
        let Some(interval) = self.watchdog else {
            return;
        };
        let now = u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let half = u64::try_from((interval / 2).as_nanos()).unwrap_or(u64::MAX);
        let last = self.last_ping.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < half {
            return;
        }
        // Several threads may call at once: one of them pings.
        if self
            .last_ping
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.send("WATCHDOG=1");
        }
    }

    fn send(&self, message: &str) {
        let Some(s) = &self.socket else {
            return;
        };
        if let Err(e) = s.sock.send_to_addr(message.as_bytes(), &s.addr) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!("notifying systemd ({message:?}): {e}");
            }
        }
    }
}

/// NOTIFY_SOCKET is a path, or `@name` for the abstract namespace.
fn open(value: &OsString) -> std::io::Result<Socket> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    let addr = match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value)?,
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..])?
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "only a socket path or an @abstract name is supported",
            ))
        }
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(Socket { sock, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    fn receiver() -> (tempfile::TempDir, UnixDatagram, OsString) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_nonblocking(true).expect("nonblocking");
        (dir, sock, path.into_os_string())
    }

    fn drain(sock: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn watchdog_follows_sd_watchdog_enabled() {
        let (_d, _s, path) = receiver();
        let n = |usec: Option<&str>, pid: Option<&str>| {
            Notifier::from_vars(Some(path.clone()), usec.and_then(os), pid.and_then(os), 42)
                .watchdog_interval()
        };
        assert_eq!(n(Some("200000"), None), Some(Duration::from_millis(200)));
        assert_eq!(
            n(Some("200000"), Some("42")),
            Some(Duration::from_millis(200))
        );
        assert_eq!(n(Some("200000"), Some("41")), None);
        assert_eq!(n(Some("200000"), Some("x")), None);
        assert_eq!(n(Some("0"), None), None);
        assert_eq!(n(Some("soon"), None), None);
        assert_eq!(n(None, Some("42")), None);
        // No socket, nobody to ping.
        let none = Notifier::from_vars(None, os("200000"), None, 42);
        assert_eq!(none.watchdog_interval(), None);
    }

    #[test]
    fn without_a_socket_everything_is_a_no_op() {
        for n in [
            Notifier::disabled(),
            Notifier::from_vars(None, None, None, 1),
            Notifier::from_vars(os(""), None, None, 1),
            // Not a path: refused (and logged), not an error.
            Notifier::from_vars(os("vsock:2:1234"), os("1000"), None, 1),
        ] {
            n.ready();
            n.status("x");
            n.watchdog();
            n.extend_timeout(Duration::from_secs(1));
            n.stopping();
            assert_eq!(n.watchdog_interval(), None);
        }
    }

    #[test]
    fn a_vanished_socket_is_not_an_error() {
        let (dir, sock, path) = receiver();
        let n = Notifier::from_vars(Some(path), None, None, 1);
        drop(sock);
        drop(dir);
        n.ready();
        n.ready();
    }

    #[test]
    fn watchdog_pings_at_most_once_per_half_interval() {
        let (_d, sock, path) = receiver();
        let n = Notifier::from_vars(Some(path), os("200000"), None, 1);
        let start = Instant::now();
        let mut calls = 0;
        while start.elapsed() < Duration::from_millis(600) {
            n.watchdog();
            calls += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        let got = drain(&sock);
        assert!(got.iter().all(|m| m == "WATCHDOG=1"), "{got:?}");
        // About 600 / 100 + 1; the bounds only say "pings, and far fewer than calls".
        assert!(got.len() >= 2, "{} pings in {calls} calls", got.len());
        assert!(
            got.len() <= calls / 4,
            "{} pings in {calls} calls",
            got.len()
        );
    }

    #[test]
    fn status_is_one_line_and_bounded() {
        let (_d, sock, path) = receiver();
        let n = Notifier::from_vars(Some(path), None, None, 1);
        n.status("failed: peer said\nREADY=1\r\nMAINPID=1");
        n.status(&"é".repeat(1000));
        let got = drain(&sock);
        assert_eq!(got[0], "STATUS=failed: peer said READY=1  MAINPID=1");
        assert!(
            got[1].len() <= "STATUS=".len() + MAX_STATUS_BYTES,
            "{}",
            got[1].len()
        );
        assert!(got[1].ends_with('é'));
    }
}
