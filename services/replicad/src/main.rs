//! `vault-replicad`: keeps a target (the remote vault or a replica directory) up to date with
//! the local vault. At start it catches up everything not yet replicated, then replicates
//! each new snapshot as it is committed. Configuration: a TOML file (see
//! `tiervault_replicate::service::ServiceConfig`); the bandwidth schedule file named in it is
//! re-read when it changes.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use tiervault_replicate::service::{self, Notify, ServiceConfig};
use tiervault_replicate::throttle::{Limiter, ScheduleSource, SystemClock};
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

struct Systemd;

impl Notify for Systemd {
    fn status(&self, text: &str) {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(text)]);
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REPLICAD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let text = std::fs::read_to_string(&cli.config)
        .with_context(|| format!("reading {}", cli.config.display()))?;
    let base = cli.config.parent().map(PathBuf::from).unwrap_or_default();
    let mut cfg = ServiceConfig::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}", cli.config.display()))?;
    let abs = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    cfg.vault = abs(&cfg.vault);
    let budget = cfg
        .apply_index_budget()
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}: index budget", cli.config.display()))?;
    tracing::info!("chunk index budget {budget} bytes");
    let limiter = match &cfg.schedule {
        Some(f) => {
            let source = ScheduleSource::open(abs(f))?;
            let clock = Arc::new(SystemClock::new(time::UtcOffset::UTC));
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
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!("replicating {} to {}", cfg.vault.display(), spec.to);
    service::run(&cfg, &spec, &stop, &Systemd);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    Ok(())
}
