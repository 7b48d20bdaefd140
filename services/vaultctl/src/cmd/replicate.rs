//! `vaultctl replicate`: copy snapshots to a replica, sending only missing blobs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;
use tiervault_replicate::status::{self, RunStatus};
use tiervault_replicate::throttle::{
    Limiter, Rate, RateSource, Schedule, ScheduleSource, SystemClock,
};
use tiervault_replicate::{replicate, BudgetSource, KnownCache, Options, Progress, TargetSpec};
use tiervault_store::Id;

use crate::cli::{ExportArgs, Global, ImportArgs, PullArgs, ReplicateArgs};
use crate::open::{open_repo, vault_dir};
use crate::output::{print_json, rfc3339_ns, size};
use crate::progress::Ticker;
use crate::Outcome;

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    total: AtomicU64,
}

impl Progress for Counters {
    fn snapshot(&self, _i: usize, _n: usize, _id: &Id, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }
    fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
}

pub fn run(g: &Global, a: &ReplicateArgs) -> Result<Outcome> {
    let repo = open_repo(g)?;
    let src = vault_dir(g);
    if a.to
        .canonicalize()
        .ok()
        .is_some_and(|t| Some(t) == src.canonicalize().ok())
    {
        anyhow::bail!("{}: cannot replicate a vault onto itself", a.to.display());
    }
    let only = if a.snapshot.is_empty() {
        None
    } else {
        let (files, _) = repo.snapshot_files()?;
        let mut ids = Vec::new();
        for spec in &a.snapshot {
            ids.push(resolve_keyless(&files, spec)?);
        }
        Some(ids)
    };
    let mut spec = spec_of(&a.to, &a.tls);
    spec.window_bytes = Some(a.window_mib.max(1) << 20);
    spec.limiter = limiter(a)?;
    // A batch never exceeds half the window (or a limiter's piece), so the window bounds
    // what a cut can cost.
    let batch_bytes = spec
        .limiter
        .as_ref()
        .map_or(4 << 20, |l| l.piece_len().min(4 << 20))
        .min((a.window_mib.max(1) << 20) / 2) as usize;
    let mut target = spec.open(repo.vault_id())?;
    let mut cache_key = spec.cache_key();
    if spec.is_remote() {
        // One cache per tenant the server bound our certificate to.
        cache_key = target.describe();
    }
    let (cache_bound, bound_source) =
        tiervault_replicate::cache_budget(a.cache_mib.map(|m| m << 20), &g.appliance_config)?;
    let mut cache =
        KnownCache::load_within(KnownCache::path_for(repo.root(), &cache_key), cache_bound);
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let ticker = Ticker::start(!g.quiet && !g.json, move || {
        (
            c.sent.load(Ordering::Relaxed),
            c.total.load(Ordering::Relaxed),
            "sending".into(),
        )
    });
    let report = replicate(
        &repo,
        &mut *target,
        if a.no_cache { None } else { Some(&mut cache) },
        &Options {
            only,
            batch_bytes,
            ..Options::default()
        },
        &*counters,
    )
    .with_context(|| format!("replicating to {}", target.describe()))?;
    drop(ticker);
    if g.json {
        print_json(&json!({
            "target": target.describe(),
            "snapshots_sent": report.snapshots_sent,
            "snapshots_present": report.snapshots_present,
            "blobs_sent": report.blobs_sent,
            "bytes_sent": report.bytes_sent,
            "blobs_present": report.blobs_present,
            "blobs_cached": report.blobs_cached,
            "have_queries": report.have_queries,
            "wire_bytes": target.bytes_sent(),
            "cache": {
                "ids": cache.len(),
                "bound_bytes": cache_bound,
                "bound_from": match &bound_source {
                    BudgetSource::Explicit => "--cache-mib".to_owned(),
                    BudgetSource::Appliance(p) => p.display().to_string(),
                    BudgetSource::Default => "default".to_owned(),
                },
            },
        }));
    } else if !g.quiet {
        outln!(
            "replicated {} snapshot(s) to {} ({} already there): sent {} blobs, {}",
            report.snapshots_sent,
            target.describe(),
            report.snapshots_present,
            report.blobs_sent,
            size(report.bytes_sent)
        );
    }
    Ok(Outcome::Ok)
}

/// The bandwidth limiter of `--limit` or `--schedule`.
fn limiter(a: &ReplicateArgs) -> Result<Option<Arc<Limiter>>> {
    let rates: Arc<dyn RateSource> = if let Some(rate) = &a.limit {
        let r: Rate = rate.parse().with_context(|| format!("--limit {rate}"))?;
        Arc::new(Schedule::fixed(r))
    } else if let Some(f) = &a.schedule {
        Arc::new(ScheduleSource::open(f.clone())?)
    } else {
        return Ok(None);
    };
    let clock = Arc::new(SystemClock::new(time::UtcOffset::UTC));
    Ok(Some(Arc::new(Limiter::new(rates, clock))))
}

/// The target named by `--to` and the TLS flags.
pub fn spec_of(to: &std::path::Path, tls: &crate::cli::RemoteTls) -> TargetSpec {
    TargetSpec {
        to: to.to_string_lossy().to_string(),
        ca: tls.ca.clone(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        window_bytes: None,
        limiter: None,
    }
}

/// A snapshot spec resolved without the key: full id, unique prefix or "latest".
fn resolve_keyless(files: &[tiervault_store::SnapshotFile], spec: &str) -> Result<Id> {
    if spec == "latest" {
        return files
            .last()
            .map(|f| f.id)
            .ok_or_else(|| tiervault_store::Error::UnknownSnapshot(spec.into()).into());
    }
    let l = spec.to_ascii_lowercase();
    let m: Vec<&tiervault_store::SnapshotFile> = files
        .iter()
        .filter(|f| !l.is_empty() && f.id.hex().starts_with(&l))
        .collect();
    match m.len() {
        1 => Ok(m[0].id),
        0 => Err(tiervault_store::Error::UnknownSnapshot(spec.into()).into()),
        count => Err(tiervault_store::Error::AmbiguousSnapshot {
            prefix: spec.into(),
            count,
        }
        .into()),
    }
}

/// `vaultctl replication status`.
pub fn status(g: &Global) -> Result<Outcome> {
    let repo = open_repo(g)?;
    let run = RunStatus::load(repo.root());
    let on_target: std::collections::HashSet<Id> = run
        .iter()
        .flat_map(|r| r.on_target.iter())
        .filter_map(|h| Id::from_hex(h))
        .collect();
    let cache = match &run {
        Some(r) => KnownCache::load(KnownCache::path_for(repo.root(), &r.cache_key)),
        None => KnownCache::load(repo.root().join("replication").join("none.known")),
    };
    let lag = status::lag(&repo, &on_target, &cache)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let age_s = lag.oldest_pending_ns.map(|t| (now - t).max(0) as f64 / 1e9);
    if g.json {
        print_json(&json!({
            "target": run.as_ref().map(|r| r.target.clone()),
            "last_attempt": run.as_ref().map(|r| rfc3339_ns(r.last_attempt_ns)),
            "last_success": run.as_ref().and_then(|r| r.last_success_ns).map(rfc3339_ns),
            "last_error": run.as_ref().and_then(|r| r.last_error.clone()),
            "pending_snapshots": lag.pending_snapshots,
            "oldest_pending": lag.oldest_pending_ns.map(rfc3339_ns),
            "oldest_pending_age_s": age_s,
            "pending_bytes": lag.pending_bytes,
        }));
        return Ok(Outcome::Ok);
    }
    match &run {
        None => outln!(
            "never replicated (no {} yet)",
            RunStatus::path(repo.root()).display()
        ),
        Some(r) => {
            outln!("target:        {}", r.target);
            outln!(
                "last success:  {}",
                r.last_success_ns.map_or("never".into(), rfc3339_ns)
            );
            if let Some(e) = &r.last_error {
                outln!("last error:    {e} (at {})", rfc3339_ns(r.last_attempt_ns));
            }
        }
    }
    outln!(
        "pending:       {} snapshot(s), {}{}",
        lag.pending_snapshots,
        size(lag.pending_bytes),
        age_s.map_or(String::new(), |a| format!(", oldest {:.0} s old", a))
    );
    Ok(Outcome::Ok)
}

/// `vaultctl pull`.
pub fn pull(g: &Global, a: &PullArgs) -> Result<Outcome> {
    let dir = vault_dir(g);
    let need = |f: &Option<std::path::PathBuf>, flag: &str| {
        f.clone()
            .with_context(|| format!("pulling from {} needs {flag} FILE", a.from))
    };
    let opts = tiervault_replicate::RemoteOptions::new(
        &a.from,
        need(&a.tls.ca, "--ca")?,
        need(&a.tls.cert, "--cert")?,
        need(&a.tls.key, "--key")?,
    );
    let r = tiervault_replicate::pull(&opts, &dir, &a.snapshot)
        .with_context(|| format!("pulling from {} into {}", a.from, dir.display()))?;
    if g.json {
        print_json(&json!({
            "vault": dir.display().to_string(),
            "created": r.created,
            "snapshots": r.snapshots,
            "blobs": r.blobs,
            "bytes": r.bytes,
        }));
    } else if !g.quiet {
        outln!(
            "{} {}: pulled {} snapshot(s), {} blobs, {}",
            if r.created { "created" } else { "updated" },
            dir.display(),
            r.snapshots,
            r.blobs,
            size(r.bytes)
        );
    }
    Ok(Outcome::Ok)
}

/// `vaultctl export`.
pub fn export(g: &Global, a: &ExportArgs) -> Result<Outcome> {
    let repo = open_repo(g)?;
    let spec = a
        .lacking_on
        .as_ref()
        .map(|url| spec_of(std::path::Path::new(url), &a.tls));
    let r = tiervault_replicate::transfer::export(&repo, &a.to, spec.as_ref())
        .with_context(|| format!("exporting to {}", a.to.display()))?;
    if g.json {
        print_json(&json!({
            "to": a.to.display().to_string(),
            "partial": spec.is_some(),
            "snapshots": r.snapshots_sent,
            "blobs": r.blobs_sent,
            "bytes": r.bytes_sent,
        }));
    } else if !g.quiet {
        outln!(
            "exported {} snapshot(s), {} blobs, {} to {}{}",
            r.snapshots_sent,
            r.blobs_sent,
            size(r.bytes_sent),
            a.to.display(),
            if spec.is_some() {
                " (only what the remote lacks)"
            } else {
                ""
            }
        );
    }
    Ok(Outcome::Ok)
}

/// `vaultctl import`.
pub fn import(g: &Global, a: &ImportArgs) -> Result<Outcome> {
    let repo = open_repo(g)?;
    let from = tiervault_store::Repo::open(&a.from, tiervault_store::io::default_io())
        .with_context(|| format!("export directory {}", a.from.display()))?;
    let r = tiervault_replicate::transfer::import(&from, &repo)?;
    if g.json {
        print_json(&json!({
            "snapshots": r.snapshots,
            "blobs_stored": r.blobs_stored,
            "blobs_present": r.blobs_present,
            "bytes": r.bytes,
            "skipped": r.skipped.iter().map(|(id, why)| json!({"id": id, "reason": why})).collect::<Vec<_>>(),
        }));
    } else if !g.quiet {
        outln!(
            "imported {} snapshot(s), {} new blobs ({}), {} already present",
            r.snapshots,
            r.blobs_stored,
            size(r.bytes),
            r.blobs_present
        );
        for (id, why) in &r.skipped {
            eprintln!("skipped snapshot {id}: {why}");
        }
    }
    Ok(if r.skipped.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Warnings
    })
}
