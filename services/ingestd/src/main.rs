//! `vault-ingestd`: the ingest service. Runs the backup jobs of its config on their
//! schedules, and backups, restores, verifies and replications asked for over D-Bus
//! (`org.tiervault.Ingest1`), one at a time; keeps the job history and raises alerts.
//!
//! Threads: the main thread is the service's loop (scheduler, watchdog, publishing state
//! on the bus); one worker runs operations against the vault; zbus runs the bus connection.
//! SIGTERM: a running backup is abandoned (no snapshot written, nothing half-committed),
//! queued jobs are recorded as not started, the history is saved, then the process exits.

mod config;
mod dbus;
mod history;
mod schedule;
mod service;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tiervault_alerts::AlertStore;
use tiervault_bus::{AlertBoard, Audit, BusAddress};
use tiervault_daemon::notify::Notifier;
use tiervault_daemon::shutdown::Shutdown;
use tiervault_store::{io, load_key_file, Secret, Vault};
use tiervault_sys::outln;

use crate::config::Config;
use crate::history::History;
use crate::service::Service;

/// The Tiervault ingest service: scheduled backup jobs and the D-Bus API for backups,
/// restores and verification.
#[derive(Debug, Parser)]
#[command(name = "vault-ingestd", version, max_term_width = 100)]
struct Cli {
    /// Configuration file (TOML; see the ingest service section of docs/ARCHITECTURE.md)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/tiervault/ingestd.toml"
    )]
    config: PathBuf,
    /// Bus to serve on: `system`, or a D-Bus address (overrides the config's `bus`)
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
    /// Check the configuration and exit
    #[arg(long)]
    check_config: bool,
}

/// How long a stop waits for a running backup to wind down before exiting anyway (the unit's
/// TimeoutStopSec is 90 s; what is not finished by then is abandoned as by a crash, which
/// the vault is built to survive).
const STOP_GRACE: Duration = Duration::from_secs(60);

fn main() -> std::process::ExitCode {
    // The local offset can only be read safely while the process has one thread.
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    tiervault_daemon::log::init("vault-ingestd", "INGESTD_LOG");
    tiervault_daemon::exit_code(run(Cli::parse(), offset))
}

fn run(cli: Cli, offset: time::UtcOffset) -> Result<()> {
    let raw: Config = tiervault_daemon::config::load(&cli.config)?;
    let (cfg, jobs) = raw
        .validate(&cli.config)
        .map_err(anyhow::Error::msg)
        .with_context(|| cli.config.display().to_string())?;
    if cli.check_config {
        outln!(
            "{}: {} backup jobs, configuration valid",
            cli.config.display(),
            jobs.len()
        );
        return Ok(());
    }
    let shutdown = Shutdown::install()?;
    let notifier = Notifier::from_env();
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state-dir {}", cfg.state_dir.display()))?;

    let secret = match (&cfg.key_file, &cfg.passphrase_file) {
        (Some(k), _) => {
            load_key_file(k, false).with_context(|| format!("key-file {}", k.display()))?
        }
        (None, Some(p)) => {
            let text =
                std::fs::read(p).with_context(|| format!("passphrase-file {}", p.display()))?;
            let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
            Secret::Passphrase(line.to_vec())
        }
        (None, None) => anyhow::bail!("{}: no key-file or passphrase-file", cli.config.display()),
    };
    notifier.status("opening the vault");
    let vault = Vault::open(&cfg.vault, &secret, io::default_io())
        .with_context(|| format!("opening the vault {}", cfg.vault.display()))?;

    let now = service::now_ns();
    let opened = History::open(&cfg.state_dir.join("history.json"), cfg.history_limit, now)
        .with_context(|| format!("job history in {}", cfg.state_dir.display()))?;
    let (store, report) = AlertStore::open(
        &cfg.state_dir.join("alerts.json"),
        "ingestd",
        cfg.alert_history,
    )
    .with_context(|| format!("alerts in {}", cfg.state_dir.display()))?;
    let audit = Arc::new(Audit::open(&cfg.state_dir.join("audit.log"))?);
    let alerts = AlertBoard::new(store, audit.clone(), dbus::ROOT);

    let bus = BusAddress::parse(cli.bus.as_deref().unwrap_or(&cfg.bus));
    let interrupted = opened.interrupted;
    let set_aside = opened.set_aside;
    let svc = Arc::new(Service::new(service::Setup {
        cfg,
        jobs,
        offset,
        vault,
        history: opened.history,
        alerts,
        audit,
        shutdown: shutdown.clone(),
    }));
    svc.report_interrupted(&interrupted);
    if let Some(p) = set_aside {
        svc.alert(
            "service.state_damaged",
            "history",
            5,
            "the job history file was damaged and set aside".into(),
            p.display().to_string(),
        );
    }
    if let Some(p) = report.recovered_from {
        svc.alert(
            "service.state_damaged",
            "alerts",
            5,
            "the alerts file was damaged and set aside".into(),
            format!("{}: {}", p.display(), report.reason.unwrap_or_default()),
        );
    }

    let conn = zbus::block_on(tiervault_bus::serve(
        &bus,
        dbus::NAME,
        dbus::ROOT,
        dbus::Manager::new(svc.clone()),
    ))
    .with_context(|| format!("serving {} on {bus}", dbus::NAME))?;
    let mut publisher = dbus::Publisher::new(svc.clone());
    if let Err(e) = zbus::block_on(publisher.publish(&conn)) {
        tracing::error!("publishing state on the bus: {e}");
    }

    let worker = {
        let svc = svc.clone();
        std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || svc.worker())
            .context("starting the worker thread")?
    };
    notifier.ready();
    notifier.status(&format!("serving {} jobs", svc.jobs.len()));
    tracing::info!(
        "serving {} on {bus}: {} backup jobs",
        dbus::NAME,
        svc.jobs.len()
    );

    loop {
        notifier.watchdog();
        let now = time::OffsetDateTime::now_utc();
        svc.tick(now);
        svc.check_long_running(service::now_ns());
        if let Err(e) = zbus::block_on(publisher.publish(&conn)) {
            tracing::error!("publishing state on the bus: {e}");
        }
        if shutdown.wait_timeout(Duration::from_millis(500)) {
            break;
        }
    }

    notifier.stopping();
    tracing::info!("stopping: abandoning running work safely");
    svc.stop();
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while !worker.is_finished() && std::time::Instant::now() < deadline {
        notifier.extend_timeout(Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    if worker.is_finished() {
        let _ = worker.join();
    } else {
        tracing::warn!("the running job did not stop within {STOP_GRACE:?}; exiting anyway");
    }
    if let Err(e) = zbus::block_on(publisher.publish(&conn)) {
        tracing::warn!("publishing the final state: {e}");
    }
    Ok(())
}
