//! Pulling a vault back from the remote: when the local vault is lost entirely (or for a
//! restore at another site), recreate it — or add the missing snapshots to it — from the
//! tenant's copy. The result is an ordinary vault that the same passphrase opens.

use std::path::Path;

use tiervault_store::{decode_snapshot_header, Id, Ingest, Repo};

use crate::error::{Error, Result};
use crate::remote::{RemoteOptions, RemoteTarget};
use crate::target::Target;

/// Ids per `GetBlobs` request (the server also stops a reply before the frame limit).
const FETCH_BATCH: usize = 2048;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    pub created: bool,
    pub snapshots: u64,
    pub blobs: u64,
    pub bytes: u64,
}

/// Pull into vault directory `dest` (created when absent or empty) every snapshot of the
/// remote, or those whose id starts with one of `only`.
pub fn pull(opts: &RemoteOptions, dest: &Path, only: &[String]) -> Result<PullReport> {
    let io = tiervault_store::io::default_io();
    let existing = dest.join("config").exists();
    let local_id = if existing {
        Repo::open(dest, io.clone())?.vault_id()
    } else {
        // We do not know the vault id: a read-only restore session.
        [0u8; 32]
    };
    let mut remote = RemoteTarget::connect(opts, local_id)?;
    let mut report = PullReport::default();
    let repo = if existing {
        Repo::open(dest, io)?
    } else {
        let meta = remote.vault_meta()?;
        report.created = true;
        Repo::create_replica(dest, &meta.config, meta.keys, io)?
    };
    let have: std::collections::HashSet<Id> =
        repo.snapshot_files()?.0.into_iter().map(|f| f.id).collect();
    let wanted: Vec<Id> = remote
        .snapshots()?
        .into_iter()
        .map(|s| s.id)
        .filter(|id| !have.contains(id))
        .filter(|id| {
            only.is_empty() || only.iter().any(|p| id.hex().starts_with(&p.to_lowercase()))
        })
        .collect();
    let mut ing = Ingest::new(&repo);
    for id in wanted {
        let file = remote.get_snapshot(&id)?;
        if Id::digest(&file) != id {
            return Err(bad(&remote, format!("snapshot {id} does not match its id")));
        }
        let (header, _) = decode_snapshot_header(&file)
            .map_err(|e| bad(&remote, format!("snapshot {id}: {e}")))?;
        fetch(&mut remote, &repo, &mut ing, &header.refs, &mut report)?;
        ing.flush(&repo)?;
        let mut listed = Vec::new();
        for r in &header.refs {
            listed.extend(repo.read_refs(r)?);
        }
        fetch(&mut remote, &repo, &mut ing, &listed, &mut report)?;
        ing.put_snapshot(&repo, &id, &file)?;
        report.snapshots += 1;
    }
    Ok(report)
}

fn bad(remote: &RemoteTarget, reason: String) -> Error {
    Error::Target {
        target: remote.describe(),
        reason,
    }
}

/// Fetch and store the blobs among `ids` this vault lacks; each is checked on receipt.
fn fetch(
    remote: &mut RemoteTarget,
    repo: &Repo,
    ing: &mut Ingest,
    ids: &[Id],
    report: &mut PullReport,
) -> Result<()> {
    let mut missing: Vec<Id> = Vec::new();
    for i in ids {
        if !ing.has(repo, i)? {
            missing.push(*i);
        }
    }
    missing.sort_unstable();
    missing.dedup();
    for batch in missing.chunks(FETCH_BATCH) {
        let blobs = remote.get_blobs(batch)?;
        if blobs.len() != batch.len() {
            return Err(bad(
                remote,
                format!(
                    "holds {} of {} blobs a snapshot needs",
                    blobs.len(),
                    batch.len()
                ),
            ));
        }
        for b in blobs {
            if !batch.contains(&b.id) {
                return Err(bad(
                    remote,
                    format!("sent blob {} that was not asked for", b.id),
                ));
            }
            ing.put(repo, &b.id, b.kind, &b.digest, &b.stored)?;
            report.blobs += 1;
            report.bytes += b.stored.len() as u64;
        }
    }
    Ok(())
}
