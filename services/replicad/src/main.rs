//! `vault-replicad`: keeps a target (the remote vault or a replica directory) up to date with
//! the local vault. At start it catches up everything not yet replicated, then replicates
//! each new snapshot as it is committed. Configuration: a TOML file (see
//! `tiervault_replicate::service::ServiceConfig`); the bandwidth schedule file named in it is
//! re-read when it changes.
//!
//! On D-Bus as `org.tiervault.Replication1` (see [`dbus`]): the target's last run, its lag,
//! `ReplicateNow`, and the service's alerts ([`alerts`]: lag over a threshold, failing
//! attempts). Threads: the main thread runs the replication loop; an `alerts` thread raises
//! and clears alerts from the state the loop leaves in the vault and, with a bus, publishes
//! that state; zbus runs the bus connection.

mod alerts;
mod dbus;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tiervault_bus::{AlertBoard, Audit, BusAddress};
use tiervault_daemon::config::{self, ConfigError};
use tiervault_daemon::notify::Notifier;
use tiervault_daemon::shutdown::Shutdown;
use tiervault_replicate::service::{self, Notify, ServiceConfig};
use tiervault_replicate::throttle::{Clock, Limiter, ScheduleSource, SystemClock};
use tiervault_replicate::TargetSpec;
use tiervault_sys::outln;

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
    /// Bus to serve on: `system`, a D-Bus address, or `none`. Given, failing to serve on it
    /// is an error; not given, the system bus is used when it can be reached, else the
    /// service runs without D-Bus (with a warning)
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
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
        outln!(
            "replicated {} snapshot(s), {} blob(s), {} bytes",
            r.snapshots_sent,
            r.blobs_sent,
            r.bytes_sent
        );
        return Ok(());
    }
    let shutdown = Shutdown::install()?;
    // replicad has no state directory of its own; the vault's replication/ is where its
    // other records (status, request) already live. Not in --once mode (above): one process
    // owns an alerts file, and a --once run beside the service would be a second.
    let replication = cfg.vault.join("replication");
    std::fs::create_dir_all(&replication)
        .with_context(|| format!("creating {}", replication.display()))?;
    let audit = Arc::new(Audit::open(&replication.join("audit.log"))?);
    let board = alerts::open(&cfg.vault, cfg.alert_history, audit.clone(), dbus::ROOT)
        .with_context(|| format!("alerts in {}", replication.display()))?;
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
    // Without --bus, a host without a system bus (a container, the tests) still replicates;
    // the unit passes --bus system so that on the appliance it is an error.
    let conn = match tiervault_bus::choose_bus(cli.bus.as_deref()) {
        None => None,
        Some((bus, required)) => match serve(&bus, &cfg.vault, &spec.to, audit, board.clone()) {
            Ok(c) => Some(c),
            Err(e) if !required => {
                tracing::warn!("running without D-Bus: {e:#}");
                None
            }
            Err(e) => return Err(e),
        },
    };
    let serving = conn.is_some();
    watch(
        board,
        conn,
        cfg.vault.clone(),
        spec.to.clone(),
        cfg.alert_rules(),
        shutdown.clone(),
    )?;
    // After the name is taken: systemd (and a client ordered after us) may rely on it.
    notifier.ready();
    tracing::info!(
        "replicating {} to {}{}",
        cfg.vault.display(),
        spec.to,
        if serving {
            format!(", serving {}", dbus::NAME)
        } else {
            String::new()
        }
    );
    service::run(&cfg, &spec, &shutdown.flag(), &Systemd(notifier));
    Ok(())
}

/// Puts the service on `bus`: the objects, then the name, so a client never finds the name
/// without the objects. Returns the connection and the publisher that keeps them up to date.
fn serve(
    bus: &BusAddress,
    vault: &std::path::Path,
    to: &str,
    audit: Arc<Audit>,
    board: AlertBoard,
) -> Result<(zbus::Connection, dbus::Publisher)> {
    let target = Arc::new(dbus::Target::new(
        vault.to_path_buf(),
        to.to_string(),
        audit,
    ));
    let mut publisher = dbus::Publisher::new(target, board);
    let conn = zbus::block_on(async {
        let conn = tiervault_bus::connect(bus, None).await?;
        conn.object_server()
            .at(dbus::ROOT, zbus::fdo::ObjectManager)
            .await?;
        publisher.publish(&conn).await?;
        tiervault_bus::take_name(&conn, bus, dbus::NAME).await?;
        Ok::<_, anyhow::Error>(conn)
    })
    .with_context(|| format!("serving {} on {bus}", dbus::NAME))?;
    Ok((conn, publisher))
}

/// Starts the `alerts` thread: once a second until shutdown, the alerts follow the status
/// file and, with a bus, the objects follow both. With or without a bus: the alerts file is
/// what vault-healthd relays to the MSP.
fn watch(
    board: AlertBoard,
    mut bus: Option<(zbus::Connection, dbus::Publisher)>,
    vault: PathBuf,
    to: String,
    rules: tiervault_replicate::alerts::AlertRules,
    shutdown: Shutdown,
) -> Result<()> {
    std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || loop {
            alerts::apply(&board, &to, &vault, tiervault_alerts::now_ns(), &rules);
            if let Some((conn, publisher)) = &mut bus {
                if let Err(e) = zbus::block_on(publisher.publish(conn)) {
                    tracing::error!("publishing state on the bus: {e}");
                }
            }
            if shutdown.wait_timeout(Duration::from_secs(1)) {
                break;
            }
        })
        .context("starting the alerts thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../examples/replicad.toml");
        let cfg = ServiceConfig::parse(text).expect("examples/replicad.toml");
        assert_eq!(cfg.lag_alert_minutes, 1440.0);
        assert_eq!(cfg.failing_alert_minutes, 60.0);
    }
}
