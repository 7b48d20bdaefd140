use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;
use tiervault_store::restore::{self, Progress, Target};

use crate::cli::{Global, RestoreArgs};
use crate::open::{open, threads};
use crate::output::{print_json, size};
use crate::progress::Ticker;
use crate::Outcome;

pub fn run(g: &Global, a: &RestoreArgs) -> Result<Outcome> {
    let vault = open(g)?;
    let snap = vault.resolve(&a.snapshot, a.path.as_deref().map(str::as_bytes))?;
    let target = match &a.target {
        Some(t) => Target::Dir(t.clone()),
        None => Target::InPlace,
    };
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let ticker = Ticker::start(!g.quiet && !g.json, move || {
        (
            p.bytes_done.load(Ordering::Relaxed),
            p.bytes_total.load(Ordering::Relaxed),
            format!("{} files", p.files.load(Ordering::Relaxed)),
        )
    });
    let started = Instant::now();
    let opts = restore::Options {
        overwrite: a.overwrite,
        threads: threads(),
    };
    let report = restore::restore(
        &vault,
        &snap,
        a.path.as_deref().map(str::as_bytes),
        &target,
        &opts,
        &progress,
    )?;
    drop(ticker);
    let secs = started.elapsed().as_secs_f64();
    for (p, w) in &report.warnings {
        eprintln!("warning: {}: {w}", p.display());
    }
    for (p, d) in &report.damaged {
        eprintln!("error: {} restored incompletely: {d}", p.display());
    }
    if g.json {
        print_json(&json!({
            "snapshot": snap.id.hex(),
            "files": report.files,
            "dirs": report.dirs,
            "bytes": report.bytes,
            "seconds": secs,
            "damaged": report.damaged.iter().map(|(p, e)| json!({"path": String::from_utf8_lossy(p.as_os_str().as_bytes()), "error": e})).collect::<Vec<_>>(),
            "warnings": report.warnings.iter().map(|(p, e)| json!({"path": String::from_utf8_lossy(p.as_os_str().as_bytes()), "error": e})).collect::<Vec<_>>(),
        }));
    } else if !g.quiet {
        outln!(
            "restored snapshot {}: {} files, {} dirs, {} in {:.1} s ({}/s)",
            snap.short_id(),
            report.files,
            report.dirs,
            size(report.bytes),
            secs,
            size((report.bytes as f64 / secs.max(1e-9)) as u64)
        );
    }
    if !report.damaged.is_empty() {
        eprintln!(
            "error: {} file(s) could not be restored intact; run vaultctl verify for the full report",
            report.damaged.len()
        );
        return Ok(Outcome::Damage);
    }
    Ok(Outcome::Ok)
}
