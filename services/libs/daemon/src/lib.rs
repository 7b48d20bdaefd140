//! What every Tiervault service process needs, once, so that each `vault-*d` daemon behaves
//! the same way under systemd and when run by hand.
//!
//! The services are `Type=notify` units with a watchdog, stopped with SIGTERM, logging to the
//! journal. Each of them used to carry its own copy of that plumbing, and the copies drifted
//! (one logged without timestamps, one pinged nothing). This crate is the one copy:
//!
//! - [`config`]: read a TOML config file into the service's own type. Errors name the file,
//!   the line and column, and the key, because an appliance is configured by someone reading
//!   `systemctl status` on a remote console, not by someone with a debugger.
//! - [`log`]: the `tracing` subscriber. Straight to journald (with priorities and the service
//!   name as `SYSLOG_IDENTIFIER`) when stderr is the journal, compact text on stderr otherwise.
//! - [`notify`]: `sd_notify(3)` — READY, STATUS, STOPPING, EXTEND_TIMEOUT and the watchdog.
//!   The watchdog is meant to be pinged from the service's real work loop, as often as is
//!   convenient: [`notify::Notifier::watchdog`] rate-limits itself, so a loop that hangs stops
//!   the pings and systemd restarts the service, while a busy loop costs nothing.
//! - [`shutdown`]: SIGTERM and SIGINT turned into a flag the work loop looks at between steps,
//!   and a sleep that wakes at once when it is set. A service finishes (or safely abandons) the
//!   step in hand and exits within `TimeoutStopSec`, instead of dying in the middle of a commit.
//! - [`exit_code`]: the `main` tail: one `error: …` line, exit status 1.
//!
//! A daemon's `main` then reads:
//!
//! ```no_run
//! use tiervault_daemon::{log, notify::Notifier, shutdown::Shutdown};
//!
//! fn main() -> std::process::ExitCode {
//!     log::init("vault-exampled", "EXAMPLED_LOG");
//!     tiervault_daemon::exit_code(run())
//! }
//!
//! fn run() -> anyhow::Result<()> {
//!     let stop = Shutdown::install()?;
//!     let notify = Notifier::from_env();
//!     notify.ready();
//!     while !stop.is_requested() {
//!         notify.watchdog();
//!         // … one step of work …
//!         stop.wait_timeout(std::time::Duration::from_secs(5));
//!     }
//!     notify.stopping();
//!     Ok(())
//! }
//! ```
//!
//! The D-Bus connection is not here: only the services that serve the management API need it.

pub mod config;
pub mod log;
pub mod notify;
pub mod shutdown;

pub use config::ConfigError;

/// What can go wrong setting a daemon up, apart from its config (see [`ConfigError`]).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("installing the SIGTERM and SIGINT handlers")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// For `fn main`: turns the result of the daemon's run into its exit status, reporting a
/// failure once.
///
/// On a terminal or a log file the report is the single line `error: {e:#}` on stderr, the
/// same contract as `vaultctl`'s. When logging goes to journald, stderr is the journal too, so
/// the error is logged (priority `err`, with the service's identifier) instead of also being
/// printed, which would put it in the journal twice; if the log filter drops errors it is
/// printed after all, so that it is never lost.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if log::to_journal() && tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_is_zero_on_success_and_one_on_failure() {
        assert_eq!(exit_code(Ok(())), std::process::ExitCode::SUCCESS);
        assert_eq!(
            exit_code(Err(anyhow::anyhow!("boom"))),
            std::process::ExitCode::FAILURE
        );
    }

    #[test]
    fn errors_name_what_went_wrong() {
        let e = DaemonError::from(ConfigError::Invalid {
            path: "/etc/tiervault/x.toml".into(),
            message: "poll-seconds must be at least 1".into(),
        });
        assert_eq!(
            e.to_string(),
            "/etc/tiervault/x.toml: poll-seconds must be at least 1"
        );
    }
}
