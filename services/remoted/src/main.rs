//! `vault-remoted`: the remote vault server and its operator commands.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tiervault_daemon::notify::Notifier;
use tiervault_remoted::{Config, Server};
use tiervault_store::{gc, Id, Repo};
use tiervault_sys::outln;
use tiervault_tls::{Ca, Tenant};

/// The remote vault: a keyless, multi-tenant store that appliances replicate to over mutual
/// TLS 1.3. Tenants are named by the client certificates the operator issues.
#[derive(Debug, Parser)]
#[command(name = "vault-remoted", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve appliances (prints "listening on ADDR" once bound)
    Serve {
        /// Configuration file (TOML)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Certificate authority: create it, issue appliance and server certificates
    #[command(subcommand)]
    Ca(CaCmd),
    /// Operator override: forget a tenant's snapshot even inside its retention lock
    Forget {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        /// Snapshot id (full hex)
        #[arg(long)]
        snapshot: String,
        /// Required when the snapshot is still retention-locked
        #[arg(long)]
        force: bool,
    },
    /// Apply the tenant's keep rules (config `keep`) without any key, never forgetting a
    /// retention-locked snapshot, then collect garbage
    Prune {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        /// Show what would be forgotten; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Ingest a transfer drive (made with `vaultctl export`) into a tenant's vault
    Import {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        /// The export directory
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
    },
    /// Collect garbage in a tenant's vault (safe while appliances replicate)
    Gc {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum CaCmd {
    /// Create a CA in DIR (ca.pem, ca.key with mode 0600)
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, default_value = "Tiervault remote vault CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue an appliance certificate bound to TENANT
    IssueClient {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Issue the server's certificate for these DNS names or IP addresses
    IssueServer {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

fn main() -> std::process::ExitCode {
    tiervault_daemon::log::init("vault-remoted", "REMOTED_LOG");
    tiervault_daemon::exit_code(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Serve { config } => serve(config),
        Cmd::Ca(c) => ca(c),
        Cmd::Forget {
            config,
            tenant,
            snapshot,
            force,
        } => {
            let cfg = load_config(&config)?;
            let repo = tenant_repo(&cfg, &tenant)?;
            let id = Id::from_hex(&snapshot)
                .with_context(|| format!("{snapshot:?} is not a full snapshot id"))?;
            let (files, _) = repo.snapshot_files()?;
            let f = files
                .iter()
                .find(|f| f.id == id)
                .with_context(|| format!("tenant {tenant} has no snapshot {snapshot}"))?;
            let retention = cfg.tenants.get(&tenant).map_or(0, |p| p.retention_ns);
            let until = f.header.time_ns.saturating_add(retention);
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
            if retention > 0 && until > now && !force {
                bail!("snapshot {snapshot} is retention-locked; add --force to forget it anyway");
            }
            gc::forget(&repo, &[id])?;
            outln!("forgot {snapshot} of tenant {tenant}");
            Ok(())
        }
        Cmd::Prune {
            config,
            tenant,
            dry_run,
        } => {
            let cfg = load_config(&config)?;
            let repo = tenant_repo(&cfg, &tenant)?;
            let policy = cfg
                .tenants
                .get(&tenant)
                .with_context(|| format!("tenant {tenant} is not configured"))?;
            let Some(keep) = &policy.keep else {
                bail!(
                    "tenant {tenant} has no keep rules (keep = {{ ... }}) in {}",
                    config.display()
                );
            };
            let (files, _) = repo.snapshot_files()?;
            let times: Vec<i64> = files.iter().map(|f| f.header.time_ns).collect();
            let verdicts = tiervault_store::retention::plan(&times, keep)?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
            let forget: Vec<Id> = files
                .iter()
                .zip(verdicts)
                .filter(|(f, v)| {
                    !v.keep && f.header.time_ns.saturating_add(policy.retention_ns) <= now
                })
                .map(|(f, _)| f.id)
                .collect();
            for id in &forget {
                outln!(
                    "{} {}",
                    if dry_run { "would forget" } else { "forgot" },
                    id.hex()
                );
            }
            if !dry_run && !forget.is_empty() {
                gc::forget(&repo, &forget)?;
                let r = gc::collect(&repo, &gc::GcOptions::default(), &|s: &str| {
                    eprintln!("gc: {s}")
                })?;
                outln!("{}", serde_json::to_string_pretty(&r)?);
            }
            Ok(())
        }
        Cmd::Import {
            config,
            tenant,
            from,
        } => {
            let cfg = load_config(&config)?;
            Tenant::parse(&tenant)?;
            if !cfg.tenants.contains_key(&tenant) {
                bail!("tenant {tenant} is not configured in {}", config.display());
            }
            let io = tiervault_store::io::default_io();
            let src = Repo::open(&from, io.clone())
                .with_context(|| format!("export directory {}", from.display()))?;
            let dir = cfg.tenant_dir(&tenant);
            let dst = if dir.join("config").exists() {
                Repo::open(&dir, io)?
            } else {
                Repo::create_replica(&dir, &src.config_bytes()?, src.key_file_bytes()?, io)?
            };
            let r = tiervault_replicate::transfer::import(&src, &dst)?;
            outln!(
                "imported {} snapshot(s), {} new blobs ({} bytes), {} already present into tenant {tenant}",
                r.snapshots, r.blobs_stored, r.bytes, r.blobs_present
            );
            for (id, why) in &r.skipped {
                eprintln!("skipped snapshot {id}: {why}");
            }
            Ok(())
        }
        Cmd::Gc { config, tenant } => {
            let cfg = load_config(&config)?;
            let repo = tenant_repo(&cfg, &tenant)?;
            let r = gc::collect(&repo, &gc::GcOptions::default(), &|s: &str| {
                eprintln!("gc: {s}")
            })?;
            outln!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
    }
}

fn tenant_repo(cfg: &Config, tenant: &str) -> Result<Repo> {
    Tenant::parse(tenant)?;
    let dir = cfg.tenant_dir(tenant);
    Repo::open(&dir, tiervault_store::io::default_io()).with_context(|| format!("tenant {tenant}"))
}

/// Read the config and apply its process-wide settings (the chunk index budget).
fn load_config(path: &std::path::Path) -> Result<Config> {
    let cfg = Config::load(path)?;
    tiervault_store::set_index_budget(cfg.index_bytes);
    Ok(cfg)
}

fn serve(config: PathBuf) -> Result<()> {
    let cfg = load_config(&config)?;
    std::fs::create_dir_all(cfg.data_dir.join("tenants"))
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let notifier = Arc::new(Notifier::from_env());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Before binding, so that a SIGTERM from then on is a clean stop, never the default
        // action; and here rather than in the task, so that failing to install them is an
        // error rather than a panic.
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let server = Server::bind(cfg).await?;
        let addr = server.local_addr()?;
        outln!("listening on {addr}");
        tracing::info!("listening on {addr}");
        notifier.ready();
        notifier.status(&format!("listening on {addr}"));
        if let Some(interval) = notifier.watchdog_interval() {
            // A task on the server's own runtime: its ticks stop when the runtime's workers
            // are all stuck, which is the hang that matters for a server of many connections.
            let n = notifier.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval((interval / 4).max(Duration::from_millis(1)));
                loop {
                    tick.tick().await;
                    n.watchdog();
                }
            });
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let n = notifier.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            n.stopping();
            let _ = tx.send(true);
        });
        server.run(rx).await;
        Ok(())
    })
}

fn ca(c: CaCmd) -> Result<()> {
    match c {
        CaCmd::Init { dir, name, days } => {
            if dir.join(tiervault_tls::CA_KEY_FILE).exists() {
                bail!("{} already holds a CA", dir.display());
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ca::create(&name, days)?.save(&dir)?;
            outln!("created CA in {}", dir.display());
        }
        CaCmd::IssueClient {
            dir,
            tenant,
            cert,
            key,
            days,
        } => {
            let t = Tenant::parse(&tenant)?;
            Ca::load(&dir)?.issue_client(&t, days)?.save(&cert, &key)?;
            outln!("issued {} for tenant {tenant}", cert.display());
        }
        CaCmd::IssueServer {
            dir,
            names,
            cert,
            key,
            days,
        } => {
            Ca::load(&dir)?
                .issue_server(&names, days)?
                .save(&cert, &key)?;
            outln!("issued {} for {}", cert.display(), names.join(", "));
        }
    }
    Ok(())
}
