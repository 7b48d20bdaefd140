//! Transfer-drive seeding, both ways. `export` writes to a directory on a removable drive the
//! blobs and snapshots a remote lacks (or everything); `import` ingests such a directory
//! into a vault — the tenant's vault on the remote, or the appliance's own vault for a large
//! restore shipped the other way. Nothing here needs the key.
//!
//! An export made against a remote is a *partial* vault directory: it has the vault's config,
//! key files, the missing blobs and the snapshot files, but not the blobs the remote already
//! held, so only `import` should read it. A full export is an ordinary replica.

use std::collections::HashSet;
use std::path::Path;

use tiervault_store::{Id, Ingest, Repo};

use crate::driver::{replicate, Options, Report};
use crate::error::{Error, Result};
use crate::target::{OutBlob, RemoteSnapshot, Target, VaultMeta};
use crate::TargetSpec;

/// Marks a partial export (its snapshots reference blobs it does not hold).
pub const PARTIAL_MARK: &str = "PARTIAL-EXPORT";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub blobs_stored: u64,
    pub blobs_present: u64,
    pub bytes: u64,
    pub snapshots: u64,
    /// Snapshots not imported because the target lacks blobs they reference (hex id, reason).
    pub skipped: Vec<(String, String)>,
}

/// A directory written without the completeness check, asking `lacking_on` which blobs to
/// include.
struct PartialDir {
    repo: Repo,
    ing: Ingest,
    remote: Box<dyn crate::spec::Peer>,
    sent: u64,
}

impl Target for PartialDir {
    fn describe(&self) -> String {
        self.repo.root().display().to_string()
    }
    fn vault_id(&mut self) -> Result<Option<[u8; 32]>> {
        Ok(Some(self.repo.vault_id()))
    }
    fn create_vault(&mut self, _meta: &VaultMeta) -> Result<()> {
        Ok(())
    }
    fn have(&mut self, ids: &[Id]) -> Result<Vec<bool>> {
        let there = self.remote.have(ids)?;
        ids.iter()
            .zip(there)
            .map(|(id, t)| Ok(t || self.ing.has(&self.repo, id)?))
            .collect()
    }
    fn put_blobs(&mut self, blobs: Vec<OutBlob>) -> Result<()> {
        for b in blobs {
            self.sent += b.stored.len() as u64;
            self.ing
                .put(&self.repo, &b.id, b.kind, &b.digest, &b.stored)?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.ing.flush(&self.repo)?;
        Ok(())
    }
    fn snapshots(&mut self) -> Result<Vec<RemoteSnapshot>> {
        // What the remote holds needs no export.
        let mut all = self.remote.snapshots()?;
        all.extend(
            self.repo
                .snapshot_files()?
                .0
                .into_iter()
                .map(|f| RemoteSnapshot {
                    id: f.id,
                    time_ns: f.header.time_ns,
                    locked_until_ns: 0,
                }),
        );
        Ok(all)
    }
    fn put_snapshot(&mut self, id: &Id, file: &[u8]) -> Result<()> {
        self.ing.put_partial_snapshot(&self.repo, id, file)?;
        Ok(())
    }
    fn bytes_sent(&self) -> u64 {
        self.sent
    }
}

/// Export `repo` to `dir`: everything (a full replica), or with `lacking_on` only what that
/// target does not hold.
pub fn export(repo: &Repo, dir: &Path, lacking_on: Option<&TargetSpec>) -> Result<Report> {
    let io = tiervault_store::io::default_io();
    let Some(spec) = lacking_on else {
        let mut t = crate::DirTarget::open(dir, io)?;
        return replicate(repo, &mut t, None, &Options::default(), &());
    };
    let out = if dir.join("config").exists() {
        let r = Repo::open(dir, io)?;
        if r.vault_id() != repo.vault_id() {
            return Err(Error::DifferentVault {
                target: dir.display().to_string(),
                ours: hex::encode(repo.vault_id()),
                theirs: hex::encode(r.vault_id()),
            });
        }
        r
    } else {
        Repo::create_replica(dir, &repo.config_bytes()?, repo.key_file_bytes()?, io)?
    };
    std::fs::write(dir.join(PARTIAL_MARK), b"").map_err(|source| Error::Io {
        op: "marking the export as partial",
        path: dir.join(PARTIAL_MARK),
        source,
    })?;
    let remote = spec.open(repo.vault_id())?;
    let ing = Ingest::new(&out);
    let mut t = PartialDir {
        repo: out,
        ing,
        remote,
        sent: 0,
    };
    replicate(repo, &mut t, None, &Options::default(), &())
}

/// Ingest export directory `from` into vault `into`: every blob it holds (checked against
/// its pack trailer digest), then each snapshot whose blobs are all present.
pub fn import(from: &Repo, into: &Repo) -> Result<ImportReport> {
    if from.vault_id() != into.vault_id() {
        return Err(Error::DifferentVault {
            target: into.root().display().to_string(),
            ours: hex::encode(from.vault_id()),
            theirs: hex::encode(into.vault_id()),
        });
    }
    let mut report = ImportReport::default();
    let mut ing = Ingest::new(into);
    let packs: Vec<_> = from.index().live_packs().cloned().collect();
    for pref in packs {
        let path = from.pack_path(&pref);
        let (_, entries) =
            from.read_pack_trailer(&pref.id, &path)
                .map_err(|reason| Error::LocalDamage {
                    id: "-".into(),
                    pack: pref.id.hex(),
                    reason,
                })?;
        let file = std::fs::File::open(&path).map_err(|source| Error::Io {
            op: "opening pack",
            path: path.clone(),
            source,
        })?;
        for e in entries {
            if ing.has(into, &e.id)? {
                report.blobs_present += 1;
                continue;
            }
            let mut b = vec![0u8; e.len as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut b, e.offset).map_err(
                |source| Error::Io {
                    op: "reading pack",
                    path: path.clone(),
                    source,
                },
            )?;
            ing.put(into, &e.id, e.kind, &e.digest, &b)?;
            report.blobs_stored += 1;
            report.bytes += b.len() as u64;
        }
    }
    ing.flush(into)?;
    let present: HashSet<Id> = into.snapshot_files()?.0.into_iter().map(|f| f.id).collect();
    for f in from.snapshot_files()?.0 {
        if present.contains(&f.id) {
            continue;
        }
        let bytes = from.read_snapshot_file(&f.id)?;
        match ing.put_snapshot(into, &f.id, &bytes) {
            Ok(()) => report.snapshots += 1,
            Err(e @ tiervault_store::Error::MissingBlobs { .. }) => {
                report.skipped.push((f.id.hex(), e.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}
