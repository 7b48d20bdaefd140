use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
use tiervault_store::heal;
use tiervault_store::verify::{self, Progress};

use crate::cli::{Global, VerifyArgs};
use crate::open::{open, threads};
use crate::output::{print_json, size};
use crate::progress::Ticker;
use crate::Outcome;

pub fn run(g: &Global, a: &VerifyArgs) -> Result<Outcome> {
    let vault = open(g)?;
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let ticker = Ticker::start(!g.quiet && !g.json, move || {
        let total = p.packs_total.load(Ordering::Relaxed);
        let done = p.packs_done.load(Ordering::Relaxed);
        (
            p.bytes_done.load(Ordering::Relaxed),
            0,
            format!("{done}/{total} packs"),
        )
    });
    let opts = verify::Options {
        quick: a.quick,
        threads: threads(),
    };
    let mut r = verify::verify(&vault, &opts, &progress)?;
    drop(ticker);
    let mut healed = None;
    if let (Some(from), false) = (&a.heal_from, r.ok()) {
        let spec = super::replicate::spec_of(from, &a.tls);
        let mut source = spec.open(vault.vault_id())?;
        let quiet = g.quiet || g.json;
        let say = move |what: &str| {
            if !quiet {
                eprintln!("heal: {what}");
            }
        };
        let name = source.describe();
        let h = heal::heal(&vault, &r, &mut *source, &name, &say)?;
        drop(source);
        if !quiet {
            eprintln!(
                "healed {} blob(s) from {}; {} unavailable; {} damaged pack(s) moved to quarantine/",
                h.healed.len(),
                spec.to,
                h.unavailable.len(),
                h.quarantined.len()
            );
        }
        healed = Some(h);
        let fresh = vault.reopen()?;
        r = verify::verify(&fresh, &opts, &verify::Progress::default())?;
    }
    if g.json {
        print_json(&json!({
            "ok": r.ok(),
            "quick": a.quick,
            "packs": r.packs,
            "blobs": r.blobs,
            "bytes": r.bytes,
            "snapshots": r.snapshots,
            "healed": healed.as_ref().map(|h| h.healed.iter().map(|i| i.hex()).collect::<Vec<_>>()),
            "unavailable": healed.as_ref().map(|h| h.unavailable.iter().map(|i| i.hex()).collect::<Vec<_>>()),
            "damage": r.damage.iter().map(|d| json!({
                "pack": d.pack, "dir": d.dir, "blob": d.blob, "error": d.error,
                "snapshots": d.snapshots, "files": d.files,
            })).collect::<Vec<_>>(),
            "unavailable_dirs": r.unavailable_dirs.iter().map(|u| json!({
                "dir": u.dir, "path": u.path.display().to_string(), "reason": u.reason,
                "packs": u.packs,
            })).collect::<Vec<_>>(),
            "affected_snapshots": r.affected_snapshots,
        }));
    } else {
        for d in &r.damage {
            let mut line = String::from("damage:");
            if let Some(p) = &d.pack {
                line += &format!(" pack {p}");
                if let Some(n) = d.dir {
                    line += &format!(" (data dir {n})");
                }
            }
            if let Some(b) = &d.blob {
                line += &format!(" blob {b}");
            }
            line += &format!(": {}", d.error);
            eprintln!("{line}");
            if !d.snapshots.is_empty() {
                eprintln!(
                    "  snapshots: {}",
                    d.snapshots
                        .iter()
                        .map(|s| &s[..8])
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            for f in &d.files {
                eprintln!("  file: {f}");
            }
        }
        if !r.affected_snapshots.is_empty() {
            eprintln!(
                "affected snapshots ({}): {}",
                r.affected_snapshots.len(),
                r.affected_snapshots
                    .iter()
                    .map(|s| &s[..8])
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if !g.quiet {
            outln!(
                "{} {} packs, {} blobs, {} read, {} snapshots: {}",
                if a.quick {
                    "checked (quick)"
                } else {
                    "verified"
                },
                r.packs,
                r.blobs,
                size(r.bytes),
                r.snapshots,
                if r.ok() {
                    "no damage".to_string()
                } else {
                    format!("{} problem(s)", r.damage.len())
                }
            );
        }
    }
    Ok(if r.ok() { Outcome::Ok } else { Outcome::Damage })
}
