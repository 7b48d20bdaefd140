//! `vaultctl forget` and `vaultctl gc`: retention and garbage collection.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tiervault_store::gc::{self, GcOptions, GcReport};
use tiervault_store::retention::{self, KeepPolicy};
use tiervault_store::{Repo, Snapshot};

use crate::cli::{ForgetArgs, GcArgs, Global};
use crate::open::{open, open_repo};
use crate::output::{print_json, rfc3339_ns, show, size};
use crate::Outcome;

pub fn forget(g: &Global, a: &ForgetArgs) -> Result<Outcome> {
    let vault = open(g)?;
    let (all, _) = vault.snapshots()?;
    let remove: Vec<&Snapshot> = if a.snapshots.is_empty() {
        retention::expired(&all, &policy(a)?)?
    } else {
        let mut out = Vec::new();
        for spec in &a.snapshots {
            if spec == "latest" {
                bail!("refusing to forget \"latest\": name the snapshot by its id");
            }
            let s = vault.resolve(spec, None)?;
            out.push(
                all.iter()
                    .find(|x| x.id == s.id)
                    .context("snapshot vanished")?,
            );
        }
        out
    };
    let keep: Vec<&Snapshot> = all
        .iter()
        .filter(|s| !remove.iter().any(|r| r.id == s.id))
        .collect();
    if !a.dry_run {
        let ids: Vec<_> = remove.iter().map(|s| s.id).collect();
        gc::forget(&vault, &ids)?;
    }
    if g.json {
        let row = |s: &&Snapshot| json!({"id": s.id.hex(), "time": rfc3339_ns(s.header.time_ns)});
        print_json(&json!({
            "dry_run": a.dry_run,
            "removed": remove.iter().map(row).collect::<Vec<_>>(),
            "kept": keep.iter().map(row).collect::<Vec<_>>(),
        }));
    } else if !g.quiet {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        for s in &remove {
            outln!(
                "{verb} {} {} {}",
                s.short_id(),
                rfc3339_ns(s.header.time_ns),
                s.body
                    .paths
                    .iter()
                    .map(|p| show(p))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        outln!("{verb} {} snapshot(s), kept {}", remove.len(), keep.len());
    }
    if a.prune && !a.dry_run {
        drop(vault);
        return gc(
            g,
            &GcArgs {
                max_unused: 0.25,
                dry_run: false,
                max_wait: None,
            },
        );
    }
    Ok(Outcome::Ok)
}

fn policy(a: &ForgetArgs) -> Result<KeepPolicy> {
    Ok(KeepPolicy {
        last: a.keep_last.unwrap_or(0),
        hourly: a.keep_hourly.unwrap_or(0),
        daily: a.keep_daily.unwrap_or(0),
        weekly: a.keep_weekly.unwrap_or(0),
        monthly: a.keep_monthly.unwrap_or(0),
        yearly: a.keep_yearly.unwrap_or(0),
        within_ns: a
            .keep_within
            .as_deref()
            .map(retention::parse_duration)
            .transpose()
            .context("--keep-within")?,
    })
}

pub fn gc(g: &Global, a: &GcArgs) -> Result<Outcome> {
    if !(0.0..=1.0).contains(&a.max_unused) {
        bail!("--max-unused must be between 0 and 1, got {}", a.max_unused);
    }
    let repo: Repo = open_repo(g)?;
    let quiet = g.quiet || g.json;
    let say = move |what: &str| {
        if !quiet {
            eprintln!("gc: {what}");
        }
    };
    let r: GcReport = gc::collect(
        &repo,
        &GcOptions {
            max_unused: a.max_unused,
            max_wait: a.max_wait.map(Duration::from_secs),
            dry_run: a.dry_run,
            ..GcOptions::default()
        },
        &say,
    )?;
    if g.json {
        let mut v = serde_json::to_value(&r)?;
        v["dry_run"] = json!(a.dry_run);
        v["peak_rss_bytes"] = json!(crate::output::peak_rss_bytes());
        print_json(&v);
    } else if !g.quiet {
        let verb = if a.dry_run { "would delete" } else { "deleted" };
        outln!(
            "{verb} {} of {} pack(s) ({} rewritten, {} blobs copied, {} rescued), freeing {}; {} snapshot(s), {} live blobs",
            r.packs_deleted,
            r.packs_before,
            r.packs_rewritten,
            r.blobs_copied,
            r.blobs_rescued,
            size(r.bytes_freed.saturating_sub(r.bytes_copied)),
            r.snapshots,
            r.live_blobs
        );
        if r.missing_blobs > 0 {
            eprintln!(
                "warning: {} referenced blob(s) are missing; run vaultctl verify",
                r.missing_blobs
            );
        }
    }
    Ok(Outcome::Ok)
}
