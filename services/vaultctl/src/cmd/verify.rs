use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
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
    let r = verify::verify(
        &vault,
        &verify::Options {
            quick: a.quick,
            threads: threads(),
        },
        &progress,
    )?;
    drop(ticker);
    if g.json {
        print_json(&json!({
            "ok": r.ok(),
            "quick": a.quick,
            "packs": r.packs,
            "blobs": r.blobs,
            "bytes": r.bytes,
            "snapshots": r.snapshots,
            "damage": r.damage.iter().map(|d| json!({
                "pack": d.pack, "blob": d.blob, "error": d.error,
                "snapshots": d.snapshots, "files": d.files,
            })).collect::<Vec<_>>(),
        }));
    } else {
        for d in &r.damage {
            let mut line = String::from("damage:");
            if let Some(p) = &d.pack {
                line += &format!(" pack {p}");
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
        if !g.quiet {
            println!(
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
