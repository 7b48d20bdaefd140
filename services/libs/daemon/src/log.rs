//! The `tracing` subscriber every service installs first thing in `main`.
//!
//! Under systemd a service's stderr is usually a stream into journald, which turns each line
//! into an entry of priority `info` and stamps its own time on it: a `WARN` line is then
//! indistinguishable from chatter to `journalctl -p warning` and alerting. So when stderr *is*
//! the journal, events go to journald's native socket instead, with their priority and
//! `SYSLOG_IDENTIFIER` set to the service name. Anywhere else (a terminal, a test's log file,
//! a container) they are compact text lines on stderr.
//!
//! "Stderr is the journal" is decided the way systemd.exec(5) documents it: `$JOURNAL_STREAM`
//! holds the device and inode of the stream systemd connected, and it only counts if fd 2 still
//! is that stream — the variable is inherited by children whose stderr is redirected elsewhere.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where [`init`] sent the log; unset until it succeeds.
static TO_JOURNAL: OnceLock<bool> = OnceLock::new();

/// Installs the tracing subscriber: to journald (`SYSLOG_IDENTIFIER` = `service`) when stderr
/// is connected to the journal, else compact text on stderr.
///
/// The level filter is the `EnvFilter` directive in the environment variable `filter_env`
/// (e.g. `INGESTD_LOG=debug` or `info,tiervault_store=debug`), `info` when unset. A directive
/// that does not parse is reported (as a warning, once the log works) and `info` is used, so
/// that a typo in a unit's `Environment=` does not silence the service.
///
/// Falls back to stderr if the journald socket is unusable. Never panics; a second call, or a
/// call after another subscriber was installed, changes nothing.
pub fn init(service: &str, filter_env: &str) {
    let (filter, bad_filter) = match std::env::var(filter_env) {
        Ok(text) => match EnvFilter::try_new(&text) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some((text, e.to_string()))),
        },
        Err(std::env::VarError::NotPresent) => (EnvFilter::new("info"), None),
        Err(std::env::VarError::NotUnicode(_)) => (
            EnvFilter::new("info"),
            Some(("(not UTF-8)".to_owned(), "not UTF-8".to_owned())),
        ),
    };
    let mut journal_problem = None;
    let journal = if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => Some(layer.with_syslog_identifier(service.to_owned())),
            Err(e) => {
                journal_problem = Some(e);
                None
            }
        }
    } else {
        None
    };
    let to_journal = journal.is_some();
    let installed = match journal {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_writer(std::io::stderr)
                    .with_ansi(colour()),
            )
            .try_init(),
    };
    if installed.is_err() {
        return;
    }
    let _ = TO_JOURNAL.set(to_journal);
    if let Some(e) = journal_problem {
        tracing::warn!("stderr is the journal but its socket is unusable ({e}); logging to stderr");
    }
    if let Some((text, e)) = bad_filter {
        tracing::warn!("{filter_env}={text:?} is not a log filter ({e}); logging at info");
    }
}

/// Whether [`init`] sent the log to journald (so stderr is the journal too).
pub fn to_journal() -> bool {
    TO_JOURNAL.get().copied().unwrap_or(false)
}

/// The `$JOURNAL_STREAM` check of systemd.exec(5): its `DEVICE:INODE` against fstat(2) of fd 2.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // A duplicate of fd 2 as a File gives fstat without unsafe code; it is closed on return.
    let Ok(fd) = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}
