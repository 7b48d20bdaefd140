use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
use tiervault_store::backup::{self, Filter, Progress, Source};

use crate::cli::{BackupArgs, Global};
use crate::open::{open, threads};
use crate::output::{print_json, show, size, snapshot_json};
use crate::progress::Ticker;
use crate::Outcome;

pub fn run(g: &Global, a: &BackupArgs) -> Result<Outcome> {
    let source = if a.stdin {
        let name = a.name.clone().unwrap_or_default();
        Source::Stream {
            name,
            reader: Box::new(std::io::stdin()),
            expect: a.stdin_size,
        }
    } else if let Some(img) = &a.image {
        Source::Image(img.clone())
    } else {
        for p in &a.paths {
            if std::fs::symlink_metadata(p).is_err() {
                anyhow::bail!("{}: no such file or directory", p.display());
            }
        }
        Source::Paths(a.paths.clone())
    };
    // The patterns were checked when the arguments were parsed; a pattern file that changed
    // since then is checked again here.
    let mut exclude = a.exclude.clone();
    for f in &a.exclude_from {
        exclude.extend(Filter::patterns_from_file(f)?);
    }
    let filter = Filter::new(&a.include, &exclude)?;
    // Directory listing starts now and runs while the passphrase KDF opens the vault.
    let scan = backup::prescan_filtered(&source, &filter);
    let vault = open(g)?;
    let opts = backup::Options {
        force_reread: a.force_reread,
        threads: threads(),
        filter,
        ..backup::Options::default()
    };
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let ticker = Ticker::start(!g.quiet && !g.json, move || {
        let done = p.bytes_done.load(Ordering::Relaxed) + p.bytes_reused.load(Ordering::Relaxed);
        let files = p.files.load(Ordering::Relaxed);
        let walking = p.walk_done.load(Ordering::Relaxed) == 0;
        let msg = format!("{files} files{}", if walking { " (scanning)" } else { "" });
        (done, p.bytes_seen.load(Ordering::Relaxed), msg)
    });
    let snap = backup::backup_prescanned(&vault, source, &opts, &progress, scan)?;
    drop(ticker);
    let s = &snap.body.summary;
    if g.json {
        let mut v = snapshot_json(&snap);
        v["skipped_files"] = json!(snap
            .body
            .skipped
            .iter()
            .map(|k| json!({"path": show(&k.path), "error": k.error}))
            .collect::<Vec<_>>());
        v["excluded"] = json!(progress.excluded.load(Ordering::Relaxed));
        v["io_engine"] = json!(vault.io().engine());
        print_json(&v);
    } else if !g.quiet {
        let secs = s.duration_ns as f64 / 1e9;
        let excluded = progress.excluded.load(Ordering::Relaxed);
        outln!(
            "snapshot {} saved: {} files, {} dirs, {} ({} new stored) in {:.1} s ({}/s){}",
            snap.short_id(),
            s.files,
            s.dirs,
            size(s.bytes),
            size(s.stored_bytes),
            secs,
            size((s.bytes as f64 / secs.max(1e-9)) as u64),
            if excluded > 0 {
                format!("; {excluded} entries excluded")
            } else {
                String::new()
            },
        );
    }
    for k in &snap.body.skipped {
        eprintln!("warning: skipped {}: {}", show(&k.path), k.error);
    }
    if snap.has_warnings() {
        eprintln!(
            "warning: snapshot {} committed with {} skipped entries",
            snap.short_id(),
            s.skipped
        );
        return Ok(Outcome::Warnings);
    }
    Ok(Outcome::Ok)
}
