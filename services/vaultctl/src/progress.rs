//! Progress bars for long commands: shown only on a terminal, never with --quiet or --json.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar refreshed from a closure returning (done, total, message) until dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub fn start<F>(enabled: bool, poll: F) -> Ticker
    where
        F: Fn() -> (u64, u64, String) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        if !enabled || !std::io::stderr().is_terminal() {
            return Ticker { stop, handle: None };
        }
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            while !s.load(Ordering::Relaxed) {
                let (done, total, msg) = poll();
                bar.set_length(total.max(done));
                bar.set_position(done);
                bar.set_message(msg);
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Ticker {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
