//! `vault-poold`: the disk-pool service. At start it assembles and mounts the pool's md
//! arrays (never creating or formatting anything on its own), then watches them — md sysfs
//! notifications and udev events, with a rescan as the safety net — keeps each array's and
//! disk's state on D-Bus (`org.tiervault.Pools1`), raises and clears alerts, takes faulty
//! members out, lends and adds spares, and starts the monthly scrub.
//!
//! One thread runs the loop (watch, refresh, publish, watchdog); zbus runs the bus
//! connection, whose methods (provision, replace, scrub) change the machine under the
//! service's one operations lock and poke the loop awake.

mod dbus;
mod service;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tiervault_alerts::AlertStore;
use tiervault_bus::{AlertBoard, Audit, BusAddress};
use tiervault_daemon::notify::Notifier;
use tiervault_daemon::shutdown::Shutdown;
use tiervault_model::ApplianceConfig;
use tiervault_pools::config::PoolConfig;
use tiervault_pools::layout::Layout;
use tiervault_sys::outln;

use crate::service::Service;
use crate::watch::{Wake, Watcher};

/// The Tiervault disk-pool service: md RAID arrays from the tier's plan, watched through md
/// sysfs and udev, with spares, rebuilds, scrubs and alerts, on D-Bus as org.tiervault.Pools1.
#[derive(Debug, Parser)]
#[command(name = "vault-poold", version, max_term_width = 100)]
struct Cli {
    /// Configuration file (TOML; every key has a default, the file may be absent)
    #[arg(long, value_name = "FILE", default_value = "/etc/tiervault/poold.toml")]
    config: PathBuf,
    /// Bus to serve on: `system`, a D-Bus address, or `none` (overrides the config's `bus`)
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
    /// Check the configuration and the plan, and exit
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    tiervault_daemon::log::init("vault-poold", "POOLD_LOG");
    tiervault_daemon::exit_code(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    let cfg = PoolConfig::load(&cli.config)?;
    let appliance =
        ApplianceConfig::load_if_present(&cfg.appliance_config)?.with_context(|| {
            format!(
                "{}: no appliance config (run `vaultctl provision` first)",
                cfg.appliance_config.display()
            )
        })?;
    let layout = Layout::from_plan(&appliance.plan, &cfg.pool_root);
    if cli.check_config {
        outln!(
            "{}: {} arrays of {} planned under {}, configuration valid",
            cli.config.display(),
            layout.arrays.len(),
            appliance.plan.tier,
            cfg.pool_root.display()
        );
        return Ok(());
    }
    let shutdown = Shutdown::install()?;
    let notifier = Notifier::from_env();
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state-dir {}", cfg.state_dir.display()))?;
    let (store, report) = AlertStore::open(
        &cfg.state_dir.join("alerts.json"),
        "poold",
        cfg.alert_history,
    )
    .with_context(|| format!("alerts in {}", cfg.state_dir.display()))?;
    if let Some(p) = report.recovered_from {
        tracing::error!(
            "the alerts file was damaged and set aside as {}",
            p.display()
        );
    }
    let audit = Arc::new(Audit::open(&cfg.state_dir.join("audit.log"))?);
    let alerts = AlertBoard::new(store, audit.clone(), dbus::ROOT);
    let mut watcher = Watcher::new(&cfg.sysfs_root).context("setting up the watcher")?;
    let bus = BusAddress::parse(cli.bus.as_deref().unwrap_or(&cfg.bus));
    let serve_bus = !matches!(cli.bus.as_deref().unwrap_or(&cfg.bus), "none" | "");
    let svc = Arc::new(Service::new(service::Setup {
        host: Box::new(cfg.host()),
        tier: appliance.plan.tier.clone(),
        layout,
        cfg,
        alerts,
        audit,
        poker: Some(watcher.poker()),
    }));

    if svc.cfg.bring_up {
        notifier.status("assembling the pool");
        match svc.bring_up() {
            Ok(r) => {
                for line in &r.unchanged {
                    tracing::info!("bring-up: {line}");
                }
            }
            Err(e) => tracing::error!("bring-up: {e}"),
        }
    }
    svc.refresh().context("reading the pool")?;

    let conn = if serve_bus {
        let conn = zbus::block_on(tiervault_bus::serve(
            &bus,
            dbus::NAME,
            dbus::ROOT,
            dbus::Manager::new(svc.clone()),
        ))
        .with_context(|| format!("serving {} on {bus}", dbus::NAME))?;
        Some(conn)
    } else {
        None
    };
    let mut publisher = dbus::Publisher::new(svc.clone());
    let publish = |publisher: &mut dbus::Publisher| {
        if let Some(conn) = &conn {
            if let Err(e) = zbus::block_on(publisher.publish(conn)) {
                tracing::error!("publishing state on the bus: {e}");
            }
        }
    };
    publish(&mut publisher);
    notifier.ready();
    tracing::info!(
        "watching {} arrays{}; udev events {}",
        svc.layout.arrays.len(),
        if serve_bus {
            format!(", serving {} on {bus}", dbus::NAME)
        } else {
            String::new()
        },
        if watcher.has_udev() {
            "on"
        } else {
            "unavailable"
        }
    );

    let mut last_refresh = Instant::now();
    while !shutdown.is_requested() {
        notifier.watchdog();
        if let Some(status) = svc.status() {
            let bad = status
                .arrays
                .iter()
                .filter(|a| a.state.name() != "healthy")
                .map(|a| format!("{} {}", a.name, a.state.name()))
                .collect::<Vec<_>>();
            notifier.status(&if bad.is_empty() {
                format!("{} arrays healthy", status.arrays.len())
            } else {
                bad.join(", ")
            });
        }
        let period = if svc.syncing() {
            svc.cfg.sync_poll()
        } else {
            svc.cfg.rescan()
        };
        // Wake at least every second for the watchdog and a stop; refresh only on an event
        // or when the period is over.
        let left = period.saturating_sub(last_refresh.elapsed());
        let wake = watcher
            .wait(&svc.md_devs(), left.min(Duration::from_secs(1)))
            .context("waiting for events")?;
        let due = last_refresh.elapsed() >= period;
        match &wake {
            // Nothing to read again yet, but announce what changed without a refresh (an
            // alert acknowledged on the bus); publishing diffs, so a quiet second sends nothing.
            Wake::Timeout if !due => {
                publish(&mut publisher);
                continue;
            }
            Wake::Timeout => {}
            Wake::Sysfs(p) => tracing::debug!("md event: {}", p.display()),
            Wake::Udev(evs) => tracing::debug!("udev: {evs:?}"),
            Wake::Poked => tracing::debug!("poked"),
        }
        last_refresh = Instant::now();
        match svc.refresh() {
            Ok(_) => publish(&mut publisher),
            Err(e) => tracing::error!("reading the pool: {e}"),
        }
    }
    notifier.stopping();
    tracing::info!("stopping");
    publish(&mut publisher);
    Ok(())
}
