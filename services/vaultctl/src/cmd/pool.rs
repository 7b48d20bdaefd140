//! `vaultctl pool`: the disk pool (md RAID arrays from the tier's plan). Through the pool
//! service (`org.tiervault.Pools1`) when it runs or `--bus` is given — audited, and the
//! service notices the change at once — else directly on this machine (root needed: it
//! reads disks and runs mdadm), with the same paths as the service (its poold.toml).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tiervault_model::ApplianceConfig;
use tiervault_pools::config::PoolConfig;
use tiervault_pools::health::{pool_status, PoolStatus};
use tiervault_pools::host::Host;
use tiervault_pools::layout::Layout;
use tiervault_pools::maintain;
use tiervault_pools::ops::Op;
use tiervault_pools::provision::{self, Consent, Report};
use tiervault_pools::real::RealHost;

use crate::cli::Global;
use crate::output::print_json;
use crate::service::Api;
use crate::Outcome;

pub const NAME: &str = "org.tiervault.Pools1";
const ROOT: &str = "/org/tiervault/Pools1";
const MANAGER: &str = "org.tiervault.Pools1.Manager";

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Every array (state, rebuild progress and ETA, mismatches, fill level) and disk
    /// (array, state, slot)
    Status,
    /// Build the arrays, file systems, mounts and mdadm.conf the plan asks for (idempotent:
    /// on a built pool it changes nothing and says so)
    #[command(after_long_help = PROVISION_HELP)]
    Provision(PoolProvisionArgs),
    /// Replace disk OLD_SERIAL with disk NEW_SERIAL (hot replacement when OLD is still in
    /// sync: redundancy is kept while NEW rebuilds)
    Replace(ReplaceArgs),
    /// Start (or --stop) a scrub of ARRAY: md reads every block and counts mismatches
    Scrub(ScrubArgs),
}

const PROVISION_HELP: &str = "\
Examples:
  vaultctl pool provision --dry-run           # print the exact mdadm/mkfs/mount commands
  vaultctl pool provision                     # build the pool on blank disks
  vaultctl pool provision --wipe S3Z1NB0K123  # also wipe this disk, which carries data

A disk that carries a partition table, a file system, an md or LVM signature is never touched
unless its serial is named with --wipe (repeatable); a mounted or otherwise busy disk is never
touched. Arrays: metadata 1.2, internal write-intent bitmap, named vault-ddb, vault-data0, ...;
XFS with the array's stripe unit and width (ext4 when mkfs.xfs is missing); mounts under the
pool root with a mount unit each; mdadm.conf lists the arrays by UUID so they assemble at boot.
Exit codes: 0 done (or nothing to do); 1 refused (every reason printed, each naming the disk)
or a command failed (named, with its error output).";

#[derive(Debug, Args)]
pub struct PoolProvisionArgs {
    /// Print the commands; run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Allow wiping the disk with this serial although it carries data (repeatable)
    #[arg(long, value_name = "SERIAL")]
    pub wipe: Vec<String>,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Args)]
pub struct ReplaceArgs {
    /// Serial of the disk to replace (in an array, faulty, or missing)
    pub old_serial: String,
    /// Serial of the replacement disk
    pub new_serial: String,
    /// Allow NEW_SERIAL to carry data (it is wiped)
    #[arg(long)]
    pub wipe: bool,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Args)]
pub struct ScrubArgs {
    /// The array (vault-ddb, vault-data0, ...)
    pub array: String,
    /// Stop a running scrub instead
    #[arg(long)]
    pub stop: bool,
    #[command(flatten)]
    pub local: LocalArgs,
}

/// Settings for working without the service.
#[derive(Debug, Args, Clone)]
pub struct LocalArgs {
    /// The pool service's config: pool root, mdadm.conf and mount-unit paths (read when
    /// working without the service; defaults apply when it is absent)
    #[arg(
        long,
        value_name = "FILE",
        env = "VAULT_POOLD_CONFIG",
        default_value = "/etc/tiervault/poold.toml"
    )]
    pub poold_config: PathBuf,
}

impl Default for LocalArgs {
    fn default() -> LocalArgs {
        LocalArgs {
            poold_config: PathBuf::from("/etc/tiervault/poold.toml"),
        }
    }
}

/// The pool service's API.
const API: Api = Api {
    name: NAME,
    root: ROOT,
    manager: MANAGER,
    what: "the pool service",
};

/// The service connection, when the service is used.
fn service(g: &Global) -> Result<Option<zbus::Connection>> {
    API.connect(g)
}

fn call<B, R>(conn: &zbus::Connection, method: &str, body: &B) -> Result<R>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
{
    API.call(conn, method, body)
}

/// The plan's layout and the paths, for working without the service.
fn local(g: &Global, l: &LocalArgs) -> Result<(PoolConfig, Layout, RealHost)> {
    let cfg = PoolConfig::load(&l.poold_config)?;
    let appliance_file =
        if g.appliance_config == Path::new(tiervault_model::DEFAULT_APPLIANCE_CONFIG) {
            cfg.appliance_config.clone()
        } else {
            g.appliance_config.clone()
        };
    let appliance = ApplianceConfig::load_if_present(&appliance_file)?.with_context(|| {
        format!(
            "{}: no appliance config (run `vaultctl provision` first)",
            appliance_file.display()
        )
    })?;
    let layout = Layout::from_plan(&appliance.plan, &cfg.pool_root);
    let host = cfg.host();
    Ok((cfg, layout, host))
}

pub fn run(g: &Global, c: &PoolCmd) -> Result<Outcome> {
    match c {
        PoolCmd::Status => status(g),
        PoolCmd::Provision(a) => provision_cmd(g, a),
        PoolCmd::Replace(a) => replace(g, a),
        PoolCmd::Scrub(a) => scrub(g, a),
    }
}

fn status(g: &Global) -> Result<Outcome> {
    let doc: Value = match service(g)? {
        Some(conn) => {
            let text: String = call(&conn, "Status", &())?;
            serde_json::from_str(&text).context("the pool service's status")?
        }
        None => {
            let (_, layout, host) = local(g, &LocalArgs::default())?;
            let obs = host.observe()?;
            let st = pool_status(&layout, &obs);
            json!({ "tier": Value::Null, "state": overall(&st), "arrays": st.arrays, "disks": st.disks })
        }
    };
    if g.json {
        print_json(&doc);
    } else {
        print_status(&doc);
    }
    Ok(Outcome::Ok)
}

fn overall(st: &PoolStatus) -> &'static str {
    st.arrays
        .iter()
        .map(|a| a.state)
        .max()
        .map_or("unprovisioned", |s| s.name())
}

fn print_status(doc: &Value) {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    outln!("pool: {}", s(doc, "state"));
    for a in doc["arrays"].as_array().into_iter().flatten() {
        let mut line = format!(
            "  {:<12} {:<6} {:<7} {:<10}",
            s(a, "name"),
            s(a, "level"),
            s(a, "dev"),
            s(a, "state")
        );
        if let Some(p) = a.get("sync_percent").and_then(Value::as_f64) {
            line += &format!(" {} {p:.1}%", s(a, "sync_action"));
            if let Some(eta) = a.get("sync_eta_secs").and_then(Value::as_u64) {
                line += &format!(" (ETA {}m{:02}s)", eta / 60, eta % 60);
            }
        }
        if let Some(m) = a.get("mount").and_then(Value::as_str) {
            let used = a.get("used_percent").and_then(Value::as_u64).unwrap_or(0);
            line += &format!("  {m} {used}% used");
        }
        let mm = a.get("mismatch_cnt").and_then(Value::as_u64).unwrap_or(0);
        if mm > 0 {
            line += &format!("  mismatches {mm}");
        }
        outln!("{line}");
    }
    for d in doc["disks"].as_array().into_iter().flatten() {
        outln!(
            "  disk {:<20} {:<10} {:<12} {}",
            s(d, "serial"),
            if s(d, "device").is_empty() {
                "-".into()
            } else {
                s(d, "device")
            },
            if s(d, "array").is_empty() {
                "-".into()
            } else {
                s(d, "array")
            },
            s(d, "state")
        );
    }
}

fn print_report(g: &Global, r: &Report) {
    if g.json {
        print_json(&json!({
            "dry_run": r.dry_run,
            "changed": r.changed(),
            "ops": r.ops.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "unchanged": r.unchanged,
        }));
        return;
    }
    if g.quiet {
        return;
    }
    for line in &r.unchanged {
        outln!("ok    {line}");
    }
    let verb = if r.dry_run { "would run" } else { "ran" };
    for op in &r.ops {
        outln!("{verb} {op}");
    }
    if !r.changed() {
        outln!("nothing to do: the pool is built as planned");
    }
}

fn provision_cmd(g: &Global, a: &PoolProvisionArgs) -> Result<Outcome> {
    let report = match service(g)? {
        Some(conn) => {
            let (ops, unchanged): (Vec<String>, Vec<String>) =
                call(&conn, "Provision", &(a.dry_run, &a.wipe))?;
            // The service returns command lines; show them as they are.
            if g.json {
                print_json(&json!({
                    "dry_run": a.dry_run,
                    "changed": !ops.is_empty(),
                    "ops": ops,
                    "unchanged": unchanged,
                }));
            } else if !g.quiet {
                for line in &unchanged {
                    outln!("ok    {line}");
                }
                for op in &ops {
                    outln!("{} {op}", if a.dry_run { "would run" } else { "ran" });
                }
                if ops.is_empty() {
                    outln!("nothing to do: the pool is built as planned");
                }
            }
            return Ok(Outcome::Ok);
        }
        None => {
            let (cfg, layout, host) = local(g, &a.local)?;
            let consent = Consent {
                wipe: a.wipe.iter().cloned().collect(),
            };
            let show = !g.json && !g.quiet && !a.dry_run;
            provision::provision(
                &host,
                &layout,
                &consent,
                &cfg.targets(),
                a.dry_run,
                &mut |op: &Op| {
                    if show {
                        outln!("run   {op}");
                    }
                },
            )?
        }
    };
    if a.dry_run || g.json {
        print_report(g, &report);
    } else if !g.quiet {
        for line in &report.unchanged {
            outln!("ok    {line}");
        }
        if !report.changed() {
            outln!("nothing to do: the pool is built as planned");
        }
    }
    Ok(Outcome::Ok)
}

fn replace(g: &Global, a: &ReplaceArgs) -> Result<Outcome> {
    let done: Vec<String> = match service(g)? {
        Some(conn) => call(&conn, "Replace", &(&a.old_serial, &a.new_serial, a.wipe))?,
        None => {
            let (_, layout, host) = local(g, &a.local)?;
            let obs = host.observe()?;
            let st = pool_status(&layout, &obs);
            let ops = maintain::replace(&layout, &obs, &st, &a.old_serial, &a.new_serial, a.wipe)?;
            let mut done = Vec::new();
            for op in &ops {
                host.run(op).with_context(|| op.to_string())?;
                done.push(op.to_string());
            }
            done
        }
    };
    if g.json {
        print_json(&json!({ "old": a.old_serial, "new": a.new_serial, "ran": done }));
    } else if !g.quiet {
        for op in &done {
            outln!("ran   {op}");
        }
        outln!(
            "{} replaces {}: `vaultctl pool status` shows the rebuild",
            a.new_serial,
            a.old_serial
        );
    }
    Ok(Outcome::Ok)
}

fn scrub(g: &Global, a: &ScrubArgs) -> Result<Outcome> {
    match service(g)? {
        Some(conn) => {
            let method = if a.stop { "StopScrub" } else { "Scrub" };
            call::<_, ()>(&conn, method, &(&a.array,))?;
        }
        None => {
            let (_, _, host) = local(g, &a.local)?;
            let obs = host.observe()?;
            let md = obs
                .array_by_name(&a.array)
                .ok_or_else(|| anyhow!("array {}: not assembled", a.array))?;
            if !a.stop && md.sync_action != "idle" {
                bail!("array {} is busy ({})", a.array, md.sync_action);
            }
            host.run(&Op::SyncAction {
                dev: md.dev.clone(),
                action: if a.stop { "idle" } else { "check" }.into(),
            })?;
        }
    }
    if g.json {
        print_json(
            &json!({ "array": a.array, "scrub": if a.stop { "stopped" } else { "started" } }),
        );
    } else if !g.quiet {
        outln!(
            "scrub of {} {}",
            a.array,
            if a.stop {
                "stopped"
            } else {
                "started: `vaultctl pool status` shows its progress"
            }
        );
    }
    Ok(Outcome::Ok)
}
