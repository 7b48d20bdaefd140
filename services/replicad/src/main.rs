//! `vault-replicad`: keeps a target (the remote vault or a replica directory) up to date with
//! the local vault. At start it catches up everything not yet replicated, then replicates
//! each new snapshot as it is committed. Configuration: a TOML file (see
//! `tiervault_replicate::service::ServiceConfig`); the bandwidth schedule file named in it is
//! re-read when it changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tiervault_daemon::config::{self, ConfigError};
use tiervault_daemon::notify::Notifier;
use tiervault_daemon::shutdown::Shutdown;
use tiervault_replicate::service::{self, Notify, ServiceConfig};
use tiervault_replicate::throttle::{Clock, Limiter, ScheduleSource, SystemClock};
use tiervault_replicate::TargetSpec;

/// Replicate the local vault to its remote vault, continuously.
#[derive(Debug, Parser)]
#[command(name = "vault-replicad", version, max_term_width = 100)]
struct Cli {
    /// Configuration file (TOML)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/tiervault/replicad.toml"
    )]
    config: PathBuf,
    /// Run one replication and exit (exit code 1 when it failed)
    #[arg(long)]
    once: bool,
}

/// The service loop's reports, to systemd.
struct Systemd(Arc<Notifier>);

impl Notify for Systemd {
    fn status(&self, text: &str) {
        self.0.status(text);
    }

    fn watchdog(&self) {
        self.0.watchdog();
    }
}

/// The real clock, pinging the watchdog while the bandwidth limiter holds a send back: under a
/// tight limit one batch can wait longer than the watchdog interval, and that wait is the
/// transfer working as configured, not a hang.
struct WatchdogClock {
    inner: SystemClock,
    notifier: Arc<Notifier>,
}

impl Clock for WatchdogClock {
    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn wall(&self) -> time::OffsetDateTime {
        self.inner.wall()
    }

    fn sleep(&self, d: Duration) {
        self.inner.sleep(d);
        self.notifier.watchdog();
    }
}

fn main() -> std::process::ExitCode {
    tiervault_daemon::log::init("vault-replicad", "REPLICAD_LOG");
    tiervault_daemon::exit_code(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    let text = config::read(&cli.config)?;
    // The shape of the file through the shared loader (file:line:column and the key); the
    // service's own checks (version, minimums) through ServiceConfig::parse, which then sees
    // only files that parse.
    config::parse::<ServiceConfig>(&cli.config, &text)?;
    let mut cfg = ServiceConfig::parse(&text).map_err(|e| ConfigError::invalid(&cli.config, e))?;
    let abs = |p: &PathBuf| config::resolve(&cli.config, p);
    cfg.vault = abs(&cfg.vault);
    let budget = cfg
        .apply_index_budget()
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}: index budget", cli.config.display()))?;
    tracing::info!("chunk index budget {budget} bytes");
    let notifier = Arc::new(Notifier::from_env());
    let limiter = match &cfg.schedule {
        Some(f) => {
            let source = ScheduleSource::open(abs(f))?;
            let clock = Arc::new(WatchdogClock {
                inner: SystemClock::new(time::UtcOffset::UTC),
                notifier: notifier.clone(),
            });
            Some(Arc::new(Limiter::new(Arc::new(source), clock)))
        }
        None => None,
    };
    let to_dir = !cfg.to.starts_with("tiervault://");
    let spec = TargetSpec {
        to: if to_dir {
            abs(&PathBuf::from(&cfg.to)).display().to_string()
        } else {
            cfg.to.clone()
        },
        ca: cfg.ca.as_ref().map(abs),
        cert: cfg.cert.as_ref().map(abs),
        key: cfg.key.as_ref().map(abs),
        window_bytes: None,
        limiter,
    };
    if cli.once {
        let r = service::once(&cfg, &spec)?;
        println!(
            "replicated {} snapshot(s), {} blob(s), {} bytes",
            r.snapshots_sent, r.blobs_sent, r.bytes_sent
        );
        return Ok(());
    }
    let shutdown = Shutdown::install()?;
    // Say "deactivating" when the signal comes, not when the run in hand has finished: that
    // run is not interrupted and may take a while.
    {
        let (shutdown, notifier) = (shutdown.clone(), notifier.clone());
        std::thread::Builder::new()
            .name("stopping".into())
            .spawn(move || {
                shutdown.wait();
                notifier.stopping();
                notifier.status("stopping (after the replication run in hand, if any)");
            })
            .context("starting the shutdown reporter")?;
    }
    notifier.ready();
    tracing::info!("replicating {} to {}", cfg.vault.display(), spec.to);
    service::run(&cfg, &spec, &shutdown.flag(), &Systemd(notifier));
    Ok(())
}
