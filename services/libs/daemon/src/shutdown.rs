//! Clean shutdown: SIGTERM (what `systemctl stop` sends) and SIGINT (Ctrl-C by hand) become a
//! request the service's work loop honours between steps.
//!
//! A service is never killed in the middle of a step by its own signal handling: the loop
//! finishes the step in hand — or abandons it at a point where nothing is half-committed — and
//! returns. systemd waits `TimeoutStopSec` for that before it sends SIGKILL; a step that may
//! legitimately take longer should send [`EXTEND_TIMEOUT_USEC`](crate::notify::Notifier::extend_timeout)
//! while it progresses.
//!
//! Waiting is on a condition variable that the signal wakes (through a signal-hook iterator
//! thread), so a service idling for minutes between polls stops at once instead of at the end
//! of its nap, and no thread wakes up every 100 ms to look at a flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::DaemonError;

/// Set once SIGTERM or SIGINT arrives (or [`request`](Shutdown::request) is called); clone
/// freely, every clone sees the same request.
#[derive(Clone, Debug)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    flag: Arc<AtomicBool>,
    /// Guards nothing but the wake-up: a waiter checks the flag under it, `request` notifies
    /// under it, so a request between the check and the wait cannot be missed.
    lock: Mutex<()>,
    wake: Condvar,
}

/// The process's signal-driven Shutdown: signals are process-wide, so there is one.
static INSTALLED: Mutex<Option<Shutdown>> = Mutex::new(None);

impl Shutdown {
    /// Registers SIGTERM and SIGINT. Calling it again returns the same `Shutdown`.
    ///
    /// After this, neither signal terminates the process by itself: the service must look at
    /// [`is_requested`](Shutdown::is_requested) or wait with
    /// [`wait_timeout`](Shutdown::wait_timeout).
    pub fn install() -> Result<Shutdown, DaemonError> {
        let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = installed.as_ref() {
            return Ok(s.clone());
        }
        let s = Shutdown::new();
        // Set in the handler itself, so that a loop polling `is_requested` sees it even if the
        // waker thread has not run yet.
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, s.inner.flag.clone()).map_err(DaemonError::Signals)?;
        }
        let mut signals =
            signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(DaemonError::Signals)?;
        let waker = s.clone();
        std::thread::Builder::new()
            .name("shutdown-signals".into())
            .spawn(move || {
                let mut first = true;
                for sig in signals.forever() {
                    let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                    if first {
                        tracing::info!("{name}: shutting down");
                        first = false;
                    } else {
                        tracing::info!("{name} again: still finishing the step in hand");
                    }
                    waker.request();
                }
            })
            .map_err(DaemonError::Signals)?;
        *installed = Some(s.clone());
        Ok(s)
    }

    /// A Shutdown without signals, requested only through [`request`](Shutdown::request)
    /// (tests, a service embedded in another process).
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                flag: Arc::new(AtomicBool::new(false)),
                lock: Mutex::new(()),
                wake: Condvar::new(),
            }),
        }
    }

    pub fn is_requested(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Requests shutdown and wakes every waiter.
    pub fn request(&self) {
        let _guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.flag.store(true, Ordering::SeqCst);
        self.inner.wake.notify_all();
    }

    /// Sleeps up to `d`, returning early (true) as soon as shutdown is requested; false when
    /// the time ran out without a request.
    pub fn wait_timeout(&self, d: Duration) -> bool {
        let deadline = Instant::now().checked_add(d);
        let mut guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.is_requested() {
                return true;
            }
            let left = match deadline {
                Some(end) => match end.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return false,
                },
                // Beyond what Instant can represent: as good as forever.
                None => Duration::from_secs(3600),
            };
            guard = self
                .inner
                .wake
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sleeps until shutdown is requested.
    pub fn wait(&self) {
        while !self.wait_timeout(Duration::from_secs(3600)) {}
    }

    /// The underlying flag, for code that takes an `Arc<AtomicBool>` cancel flag. Setting it
    /// directly does not wake [`wait_timeout`](Shutdown::wait_timeout) before its time is up;
    /// use [`request`](Shutdown::request) for that.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.inner.flag.clone()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_times_out_without_a_request() {
        let s = Shutdown::new();
        let start = Instant::now();
        assert!(!s.wait_timeout(Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(!s.is_requested());
        assert!(!s.wait_timeout(Duration::ZERO));
    }

    #[test]
    fn a_request_wakes_every_clone_at_once() {
        let s = Shutdown::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let start = Instant::now();
                    (s.wait_timeout(Duration::from_secs(60)), start.elapsed())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        s.request();
        for w in waiters {
            let (woken, took) = w.join().expect("waiter");
            assert!(woken);
            assert!(took < Duration::from_secs(30), "{took:?}");
        }
        assert!(s.is_requested());
        assert!(s.flag().load(Ordering::SeqCst));
        // Once requested, waits return at once.
        assert!(s.wait_timeout(Duration::from_secs(60)));
        s.wait();
    }

    #[test]
    fn huge_timeouts_do_not_overflow() {
        let s = Shutdown::new();
        let t = {
            let s = s.clone();
            std::thread::spawn(move || s.wait_timeout(Duration::MAX))
        };
        s.request();
        assert!(t.join().expect("waiter"));
    }
}
