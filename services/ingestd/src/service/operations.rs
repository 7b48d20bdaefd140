//! Running one operation against the vault: backup, restore, verify, replicate, and how it
//! ended ([`Outcome`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tiervault_store::{backup, restore, verify};

use super::{now_ns, Live, Request, Service};
use crate::history::{Status, MAX_WARNINGS};

impl Service {
    pub(super) fn execute(&self, req: &Request, cancel: &Arc<AtomicBool>, live: &Live) -> Outcome {
        match (req, live) {
            (Request::Job(name), Live::Backup(p)) => match self.job(name) {
                Some(job) => self.backup(
                    &job.cfg.paths,
                    &job.cfg.include,
                    &job.cfg.exclude,
                    cancel,
                    p,
                ),
                None => Outcome::failed(format!("backup job {name} vanished from the config")),
            },
            (Request::Backup(paths), Live::Backup(p)) => self.backup(paths, &[], &[], cancel, p),
            (
                Request::Restore {
                    snapshot,
                    path,
                    target,
                },
                Live::Restore(p),
            ) => self.restore(snapshot, path, target, p),
            (Request::Verify { read_data }, Live::Verify(p)) => self.verify(*read_data, p),
            (Request::Replicate, _) => self.replicate(cancel),
            _ => Outcome::failed("internal: request and progress kinds differ".into()),
        }
    }

    fn backup(
        &self,
        paths: &[PathBuf],
        include: &[String],
        exclude: &[String],
        cancel: &Arc<AtomicBool>,
        progress: &backup::Progress,
    ) -> Outcome {
        // An unmounted NAS share is a missing path: that is a failed job, not a snapshot of
        // nothing with a warning.
        if let Some(p) = paths.iter().find(|p| !p.exists()) {
            return Outcome::failed(format!(
                "{} does not exist (is the share mounted?)",
                p.display()
            ));
        }
        let filter = match backup::Filter::new(include, exclude) {
            Ok(f) => f,
            Err(e) => return Outcome::failed(e.to_string()),
        };
        let opts = backup::Options {
            threads: self.threads,
            filter,
            cancel: Some(cancel.clone()),
            ..backup::Options::default()
        };
        match backup::backup(&self.vault, backup::Source::Paths(paths.to_vec()), &opts, progress) {
            Ok(snap) => {
                let s = &snap.body.summary;
                let new_plain = progress.new_plain_bytes.load(Ordering::Relaxed);
                let mut o = Outcome {
                    status: if snap.body.skipped.is_empty() { Status::Success } else { Status::Warnings },
                    message: format!(
                        "snapshot {}: {} files, {} bytes, {} stored",
                        snap.short_id(),
                        s.files,
                        s.bytes,
                        s.stored_bytes
                    ),
                    snapshot: snap.id.hex(),
                    bytes_read: s.bytes,
                    bytes_stored: s.stored_bytes,
                    files: s.files,
                    skipped_items: s.skipped,
                    excluded: progress.excluded.load(Ordering::Relaxed),
                    dedup_ratio: ratio(s.bytes, new_plain),
                    compression_ratio: ratio(new_plain, s.stored_bytes),
                    warnings: snap
                        .body
                        .skipped
                        .iter()
                        .take(MAX_WARNINGS)
                        .map(|k| format!("{}: {}", String::from_utf8_lossy(&k.path), k.error))
                        .collect(),
                    snapshot_made: true,
                };
                if o.skipped_items > o.warnings.len() as u64 {
                    o.warnings.push(format!(
                        "… and {} more (vaultctl snapshots --json lists every skipped item)",
                        o.skipped_items - o.warnings.len() as u64
                    ));
                }
                o
            }
            Err(tiervault_store::Error::Cancelled) => Outcome::failed(
                "abandoned: cancelled or the service was stopping; no snapshot was written, the vault is unchanged but for unreferenced data the next gc removes".into(),
            ),
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    fn restore(
        &self,
        snapshot: &str,
        path: &str,
        target: &Path,
        progress: &restore::Progress,
    ) -> Outcome {
        let snap = match self.vault.resolve(snapshot, None) {
            Ok(s) => s,
            Err(e) => return Outcome::failed(e.to_string()),
        };
        if let Err(e) = std::fs::create_dir_all(target) {
            return Outcome::failed(format!("creating {}: {e}", target.display()));
        }
        let sub = (!path.is_empty() && path != "/").then_some(path.as_bytes());
        let opts = restore::Options {
            overwrite: false,
            threads: self.threads,
        };
        match restore::restore(
            &self.vault,
            &snap,
            sub,
            &restore::Target::Dir(target.to_path_buf()),
            &opts,
            progress,
        ) {
            Ok(r) => Outcome {
                message: format!(
                    "restored {} files, {} bytes to {}",
                    r.files,
                    r.bytes,
                    target.display()
                ),
                files: r.files,
                bytes_read: r.bytes,
                ..Outcome::status(Status::Success)
            },
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    fn verify(&self, read_data: bool, progress: &verify::Progress) -> Outcome {
        let opts = verify::Options {
            quick: !read_data,
            threads: self.threads,
        };
        match verify::verify(&self.vault, &opts, progress) {
            Ok(r) if r.damage.is_empty() => Outcome {
                message: format!(
                    "{} packs, {} blobs, {} snapshots: no damage",
                    r.packs, r.blobs, r.snapshots
                ),
                bytes_read: r.bytes,
                ..Outcome::status(Status::Success)
            },
            Ok(r) => {
                let mut o = Outcome::failed(format!("{} damaged items", r.damage.len()));
                o.warnings = r
                    .damage
                    .iter()
                    .take(MAX_WARNINGS)
                    .map(|d| {
                        format!(
                            "{} {}: {}",
                            d.pack.as_deref().unwrap_or("-"),
                            d.blob.as_deref().unwrap_or("-"),
                            d.error
                        )
                    })
                    .collect();
                self.alert(
                    "vault.damaged",
                    &self.cfg.vault.display().to_string(),
                    9,
                    format!("verify found {} damaged items in the vault", r.damage.len()),
                    o.warnings.join("\n"),
                );
                o
            }
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    /// Asks vault-replicad for a run now and waits for its result: the replication client
    /// lives in that service (with the network access this one has not).
    fn replicate(&self, cancel: &AtomicBool) -> Outcome {
        use tiervault_replicate::status::RunStatus;
        let vault = &self.cfg.vault;
        let asked = match tiervault_replicate::service::request_now(vault) {
            Ok(t) => t,
            Err(e) => return Outcome::failed(format!("asking vault-replicad: {e}")),
        };
        let deadline = asked + self.cfg.replicate_timeout_ns();
        loop {
            if let Some(st) = RunStatus::load(vault).filter(|s| s.last_attempt_ns >= asked) {
                return match (&st.last_error, st.last_success_ns) {
                    (None, Some(ok)) if ok >= st.last_attempt_ns => Outcome {
                        message: format!(
                            "replicated to {}: it holds {} snapshots",
                            st.target,
                            st.on_target.len()
                        ),
                        ..Outcome::status(Status::Success)
                    },
                    (err, _) => Outcome::failed(format!(
                        "replication to {} failed: {}",
                        st.target,
                        err.as_deref().unwrap_or("no success recorded")
                    )),
                };
            }
            if cancel.load(Ordering::Acquire) {
                return Outcome::failed(
                    "abandoned: no longer waiting (vault-replicad carries on with the run)".into(),
                );
            }
            if now_ns() > deadline {
                return Outcome::failed(format!(
                    "vault-replicad did not answer within {} (is it running?)",
                    self.cfg.replicate_timeout
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

/// How an operation ended.
pub(super) struct Outcome {
    pub(super) status: Status,
    pub(super) message: String,
    pub(super) snapshot: String,
    pub(super) snapshot_made: bool,
    pub(super) bytes_read: u64,
    pub(super) bytes_stored: u64,
    pub(super) files: u64,
    pub(super) skipped_items: u64,
    pub(super) excluded: u64,
    pub(super) compression_ratio: f64,
    pub(super) dedup_ratio: f64,
    pub(super) warnings: Vec<String>,
}

impl Outcome {
    pub(super) fn status(status: Status) -> Outcome {
        Outcome {
            status,
            message: String::new(),
            snapshot: String::new(),
            snapshot_made: false,
            bytes_read: 0,
            bytes_stored: 0,
            files: 0,
            skipped_items: 0,
            excluded: 0,
            compression_ratio: 0.0,
            dedup_ratio: 0.0,
            warnings: Vec::new(),
        }
    }

    pub(super) fn failed(message: String) -> Outcome {
        Outcome {
            message,
            ..Outcome::status(Status::Failed)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
