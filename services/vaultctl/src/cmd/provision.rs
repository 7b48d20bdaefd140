//! `vaultctl provision`: match the hardware against a tier, print the plan and record it in
//! the appliance config. Nothing here touches a disk.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use tiervault_model::{
    choose, ApplianceConfig, ByteSize, DiskRef, HardwareDescription, Plan, Profiles, TierRequest,
};
use tiervault_sys::read_hardware;

use crate::cli::{Global, ProvisionArgs};
use crate::output::print_json;
use crate::Outcome;

pub fn run(g: &Global, a: &ProvisionArgs) -> Result<Outcome> {
    let profiles = Profiles::load_dir(&a.profiles)?;
    let hw = match &a.hardware {
        Some(file) => HardwareDescription::load(file)?,
        None => read_hardware(&a.source.sysfs_root, &a.source.proc_root)?,
    };
    let request: TierRequest = a.tier.parse()?;
    // A mismatch is the error line (exit 1), with or without --dry-run.
    let plan = choose(&profiles, &hw, &request)?;
    if !a.dry_run {
        write_atomic(&a.config, &ApplianceConfig::new(plan.clone()).to_toml())?;
    }
    if g.json {
        print_json(&json!({
            "tier": plan.tier,
            "requested": a.tier,
            "dry_run": a.dry_run,
            "config": a.config,
            "written": !a.dry_run,
            "plan": serde_json::to_value(&plan)?,
        }));
    } else if !g.quiet {
        print_plan(&plan);
        if a.dry_run {
            outln!("dry run: {} not written", a.config.display());
        } else {
            outln!("wrote {}", a.config.display());
        }
    }
    Ok(Outcome::Ok)
}

fn disk(d: &DiskRef) -> String {
    match d.slot {
        Some(s) => format!("{} [{}, bay {s}]", d.device, d.serial),
        None => format!("{} [{}]", d.device, d.serial),
    }
}

fn print_plan(p: &Plan) {
    outln!(
        "{}: usable {} TiB ({}); index memory {}; dedup cache {}",
        p.tier,
        p.usable_tib,
        ByteSize(p.usable_bytes).approx(false),
        ByteSize(p.index_memory_bytes).approx(true),
        ByteSize(p.dedup_cache_bytes).approx(true)
    );
    for a in &p.arrays {
        outln!(
            "  array  {:<6} {:<6} {:>2} disks: {}",
            a.name,
            a.level.name(),
            a.members.len(),
            a.members.iter().map(disk).collect::<Vec<_>>().join(", ")
        );
    }
    for s in &p.spares {
        outln!(
            "  spare  {:<6} {}  (hot spare for {})",
            s.role.name(),
            disk(&s.disk),
            s.arrays.join(", ")
        );
    }
    if !p.unused.is_empty() {
        outln!("  unused {}", p.unused.join(", "));
    }
}

/// Writes `text` to `path` crash-safely, creating its directory.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    }
    tiervault_sys::durable::write_atomic(path, text.as_bytes(), 0o644)
        .with_context(|| format!("{}: cannot write", path.display()))
}
