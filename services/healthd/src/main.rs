//! `vault-healthd`: the hardware health service. It reads the BMC (sensors against their
//! thresholds with hysteresis, chassis faults, new event-log records, FRU inventory) every
//! `poll-seconds`, every disk's SMART data every `smart-poll-minutes` (starting the staggered
//! self-tests that are due), and the support-contract dates daily; keeps one alert per
//! condition in the shared alert model; spools every alert change for the webhook and mail
//! targets; and serves Prometheus metrics on a loopback port.
//!
//! On D-Bus as `org.tiervault.Health1` (see [`dbus`]): sensors as OpenBMC-style objects with
//! alarm signals, the whole state, `ClearSel`, and the alerts with `Acknowledge`.
//!
//! One thread runs the loop; the metrics server answers from the last round's figures and the
//! bus from the last round's [`dbus::View`]; bus calls that need the BMC are done by the loop.

mod config;
mod dbus;
mod metrics;
mod relay;
mod service;
mod smartctl;

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tiervault_alerts::AlertStore;
use tiervault_bus::{AlertBoard, Audit};
use tiervault_daemon::notify::Notifier;
use tiervault_daemon::shutdown::Shutdown;
use tiervault_notify::{Dispatcher, Metric, MetricsServer, SystemClock};
use tiervault_sys::outln;

use crate::config::HealthConfig;
use crate::relay::Relay;
use crate::service::Service;
use crate::smartctl::{SmartSource, Smartctl};

/// The alert source name of this service (alerts and notifications carry it).
const SOURCE: &str = "healthd";

/// The Tiervault hardware health service: IPMI sensors, event log, FRU and chassis status,
/// SMART and self-tests, contract reminders; alerts to webhook and mail; Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "vault-healthd", version, max_term_width = 100)]
struct Cli {
    /// Configuration file (TOML; every key has a default, the file may be absent)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/tiervault/healthd.toml"
    )]
    config: PathBuf,
    /// Check the configuration (and that the notification targets' files are readable), then
    /// exit
    #[arg(long)]
    check_config: bool,
    /// Run one round (BMC, SMART, contracts, one delivery attempt), write status.json, exit
    #[arg(long)]
    once: bool,
    /// Clear the BMC's event log after archiving it (sel-archive.jsonl in the state
    /// directory) and clear the alerts raised for it, then exit. With the service running,
    /// use `vaultctl health clear-sel` (D-Bus ClearSel) instead
    #[arg(long)]
    clear_sel: bool,
    /// Bus to serve on: `system`, a D-Bus address, or `none` (overrides the config's `bus`).
    /// Given, failing to serve on it is an error; not given anywhere, the system bus is used
    /// when this host has one
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
}

fn main() -> std::process::ExitCode {
    tiervault_daemon::log::init("vault-healthd", "HEALTHD_LOG");
    tiervault_daemon::exit_code(run(Cli::parse()))
}

/// The notification dispatcher of service `source` (this one's, or a relayed one's): its
/// spools and sequence under `<spool-dir>/<source>`, the configured targets.
fn dispatcher(cfg: &HealthConfig, source: &str) -> Result<Option<Dispatcher>> {
    let (Some(notify), Some(appliance)) = (&cfg.notify, &cfg.appliance) else {
        return Ok(None);
    };
    let mut mine = notify.clone();
    mine.spool_dir = notify.spool_dir.join(source);
    let (d, reports) = Dispatcher::from_config(&mine, source, appliance, Arc::new(SystemClock))
        .with_context(|| format!("setting up the notification targets ([notify]) for {source}"))?;
    for (target, report) in reports {
        tracing::info!("spool of {target} for {source}: {report:?}");
    }
    Ok(Some(d))
}

/// A relay per `[[relay]]`, when there are notification targets to relay to.
fn relays(cfg: &HealthConfig) -> Result<Vec<Relay>> {
    let mut out = Vec::new();
    for r in &cfg.relays {
        if let Some(d) = dispatcher(cfg, &r.source)? {
            out.push(Relay::new(r, &cfg.state_dir, d));
        }
    }
    Ok(out)
}

fn run(cli: Cli) -> Result<()> {
    let cfg = HealthConfig::load(&cli.config)?;
    let dispatcher = dispatcher(&cfg, SOURCE)?;
    let bmc: Option<Box<dyn tiervault_ipmi::Bmc + Send>> = match &cfg.ipmi {
        Some(c) => Some(Box::new(
            tiervault_ipmi::IpmiTool::new(c.clone()).context("[ipmi]")?,
        )),
        None => None,
    };
    if cli.check_config {
        outln!(
            "{}: configuration valid; BMC {}, SMART {}, {} contract(s), notifications {}",
            cli.config.display(),
            if bmc.is_some() { "configured" } else { "none" },
            if cfg.smart.enabled { "on" } else { "off" },
            cfg.contracts.len(),
            if dispatcher.is_some() { "on" } else { "off" },
        );
        return Ok(());
    }
    let smart: Option<Box<dyn SmartSource>> = cfg.smart.enabled.then(|| {
        Box::new(Smartctl::new(
            cfg.smart.smartctl.clone(),
            Duration::from_secs(cfg.smart.timeout_seconds),
            cfg.smart.sysfs_root.clone(),
            cfg.smart.dev_root.clone(),
        )) as Box<dyn SmartSource>
    });
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state-dir {}", cfg.state_dir.display()))?;
    let (store, report) = AlertStore::open(
        &cfg.state_dir.join("alerts.json"),
        SOURCE,
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
    let relays = relays(&cfg)?;
    let mut svc = Service::new(cfg, alerts, dispatcher, bmc, smart);
    svc.set_relays(relays);

    if cli.clear_sel {
        let n = svc.clear_sel()?;
        svc.pump();
        svc.write_status();
        outln!("cleared the BMC event log ({n} records archived in sel-archive.jsonl)");
        return Ok(());
    }
    if cli.once {
        round(&mut svc, true, true);
        return Ok(());
    }

    let shutdown = Shutdown::install()?;
    let notifier = Arc::new(Notifier::from_env());
    let pinger = notifier.clone();
    svc.set_tick(Box::new(move || pinger.watchdog()));
    let view: dbus::Shared = Arc::new(RwLock::new(dbus::View::default()));
    let (requests, asked) = mpsc::channel();
    let conn = match tiervault_bus::choose_bus(cli.bus.as_deref().or(svc.cfg.bus.as_deref())) {
        None => None,
        Some((bus, required)) => {
            let manager = dbus::Manager::new(view.clone(), requests.clone(), audit.clone());
            match zbus::block_on(tiervault_bus::serve(&bus, dbus::NAME, dbus::ROOT, manager)) {
                Ok(c) => {
                    tracing::info!("serving {} on {bus}", dbus::NAME);
                    Some(c)
                }
                Err(e) if !required => {
                    tracing::warn!("running without D-Bus: {e}");
                    None
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("serving {} on {bus}", dbus::NAME))
                }
            }
        }
    };
    let mut publisher = dbus::Publisher::new(view.clone(), svc.alerts.clone(), requests, audit);
    let mut publish = |svc: &Service, fresh: bool| {
        if fresh {
            *view.write().unwrap_or_else(|p| p.into_inner()) = svc.view();
        }
        if let Some(conn) = &conn {
            if let Err(e) = zbus::block_on(publisher.publish(conn)) {
                tracing::error!("publishing state on the bus: {e}");
            }
        }
    };
    let figures: Arc<Mutex<Vec<Metric>>> = Arc::new(Mutex::new(Vec::new()));
    let _server = match &svc.cfg.metrics {
        Some(m) => {
            let shared = figures.clone();
            let server = MetricsServer::start(m, move || {
                shared.lock().unwrap_or_else(|p| p.into_inner()).clone()
            })
            .context("starting the metrics server ([metrics])")?;
            tracing::info!("metrics on http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    notifier.ready();
    let mut last_bmc: Option<Instant> = None;
    let mut last_smart: Option<Instant> = None;
    while !shutdown.is_requested() {
        notifier.watchdog();
        let bmc_due = last_bmc.is_none_or(|t| t.elapsed() >= svc.cfg.poll());
        let smart_due = last_smart.is_none_or(|t| t.elapsed() >= svc.cfg.smart_poll());
        if bmc_due {
            last_bmc = Some(Instant::now());
        }
        if smart_due {
            last_smart = Some(Instant::now());
        }
        if bmc_due || smart_due {
            round(&mut svc, bmc_due, smart_due);
            let mut m = metrics::collect(&svc.latest, &svc.alerts.snapshot(), &svc.cfg);
            for d in svc.dispatchers() {
                m.extend(d.metrics());
            }
            *figures.lock().unwrap_or_else(|p| p.into_inner()) = m;
            notifier.status(&status_line(&svc));
            publish(&svc, true);
        } else {
            svc.pump();
            // An alert acknowledged on the bus.
            publish(&svc, false);
        }
        while let Ok(request) = asked.try_recv() {
            match request {
                dbus::Request::ClearSel(answer) => {
                    let result = svc.clear_sel().map_err(|e| format!("{e:#}"));
                    svc.pump();
                    svc.write_status();
                    publish(&svc, true);
                    answer.send(result);
                }
            }
        }
        shutdown.wait_timeout(Duration::from_secs(1));
    }
    notifier.stopping();
    tracing::info!("stopping");
    Ok(())
}

/// One round: the sources that are due, the contracts, a delivery attempt, status.json.
fn round(svc: &mut Service, bmc: bool, smart: bool) {
    if bmc {
        svc.poll_bmc();
    }
    if smart {
        svc.poll_smart();
    }
    svc.poll_relays();
    svc.check_contracts(time::OffsetDateTime::now_utc().date());
    svc.pump();
    svc.write_status();
}

fn status_line(svc: &Service) -> String {
    let active = svc
        .alerts
        .snapshot()
        .iter()
        .filter(|a| a.is_active())
        .count();
    format!(
        "{} sensors, {} disks, {active} active alerts",
        svc.latest.sensors.len(),
        svc.latest.disks.len()
    )
}
