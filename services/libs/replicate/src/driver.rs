//! The replication driver: per snapshot, negotiate, send what is missing, then commit.

use std::collections::{HashMap, HashSet};

use tiervault_store::{Id, Location, Repo};

use crate::cache::KnownCache;
use crate::error::{Error, Result};
use crate::target::{OutBlob, Target, VaultMeta};

#[derive(Debug, Clone)]
pub struct Options {
    /// Blobs are sent in batches of about this many stored bytes.
    pub batch_bytes: usize,
    /// Ids per "which do you hold" query.
    pub have_batch: usize,
    /// Replicate only these snapshots (None: every snapshot the target lacks).
    pub only: Option<Vec<Id>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_bytes: 4 << 20,
            have_batch: 65536,
            only: None,
        }
    }
}

/// What a replication did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub snapshots_sent: u64,
    /// Local snapshots the target already held.
    pub snapshots_present: u64,
    pub blobs_sent: u64,
    /// Stored bytes of the blobs sent (what the wire carries, framing aside).
    pub bytes_sent: u64,
    /// Referenced blobs skipped because the cache says the target holds them.
    pub blobs_cached: u64,
    /// Referenced blobs the target said it held.
    pub blobs_present: u64,
    pub have_queries: u64,
    /// Times the target refused a snapshot for a missing blob and we asked again uncached.
    pub retries: u64,
}

/// Progress callbacks for long transfers.
pub trait Progress {
    /// Starting snapshot `index` (0-based) of `count`, with `bytes` to send.
    fn snapshot(&self, _index: usize, _count: usize, _id: &Id, _bytes: u64) {}
    /// `n` more bytes were queued for sending.
    fn sent(&self, _n: u64) {}
}

impl Progress for () {}

/// Replicate `repo`'s snapshots to `target`.
pub fn replicate(
    repo: &Repo,
    target: &mut dyn Target,
    mut cache: Option<&mut KnownCache>,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report> {
    let ours = repo.vault_id();
    // A vault created by this run holds nothing yet: its first snapshot needs no Have round
    // trip (and a first seeding no Have traffic at all, 32 bytes per blob).
    let mut fresh = false;
    match target.vault_id()? {
        None => {
            target.create_vault(&VaultMeta {
                config: repo.config_bytes()?,
                keys: repo.key_file_bytes()?,
            })?;
            fresh = true;
        }
        Some(theirs) if theirs != ours => {
            return Err(Error::DifferentVault {
                target: target.describe(),
                ours: hex::encode(ours),
                theirs: hex::encode(theirs),
            })
        }
        Some(_) => {}
    }
    let remote: HashSet<Id> = target.snapshots()?.into_iter().map(|s| s.id).collect();
    let (local, unreadable) = repo.snapshot_files()?;
    for (name, reason) in &unreadable {
        tracing::warn!("not replicating unreadable snapshot {name}: {reason}");
    }
    let mut report = Report::default();
    let todo: Vec<_> = local
        .into_iter()
        .filter(|s| opts.only.as_ref().is_none_or(|o| o.contains(&s.id)))
        .filter(|s| {
            let there = remote.contains(&s.id);
            report.snapshots_present += there as u64;
            !there
        })
        .collect();
    let mut sender = Sender::default();
    for (i, snap) in todo.iter().enumerate() {
        let ids = dedup(repo.referenced(&snap.header)?);
        let file = repo.read_snapshot_file(&snap.id)?;
        let mut use_cache = true;
        loop {
            let missing = if std::mem::take(&mut fresh) {
                ids.clone()
            } else {
                negotiate(
                    target,
                    &ids,
                    if use_cache { cache.as_deref() } else { None },
                    opts,
                    &mut report,
                )?
            };
            let bytes: u64 = missing
                .iter()
                .filter_map(|id| repo.index().get(id).ok().flatten().map(|l| l.len as u64))
                .sum();
            progress.snapshot(i, todo.len(), &snap.id, bytes);
            sender.send(repo, target, &missing, opts, &mut report, progress)?;
            match target.put_snapshot(&snap.id, &file) {
                Ok(()) => break,
                // Our cache was stale (the target collected a blob since): ask again.
                Err(Error::Missing { .. }) if use_cache && cache.is_some() => {
                    if let Some(c) = cache.as_deref_mut() {
                        c.remove_all(&ids);
                    }
                    use_cache = false;
                    report.retries += 1;
                }
                Err(e) => return Err(e),
            }
        }
        report.snapshots_sent += 1;
        if let Some(c) = cache.as_deref_mut() {
            c.insert_all(&ids);
            c.save()?;
        }
    }
    Ok(report)
}

fn dedup(mut ids: Vec<Id>) -> Vec<Id> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The ids of `ids` the target lacks.
fn negotiate(
    target: &mut dyn Target,
    ids: &[Id],
    cache: Option<&KnownCache>,
    opts: &Options,
    report: &mut Report,
) -> Result<Vec<Id>> {
    let unknown: Vec<Id> = ids
        .iter()
        .filter(|id| {
            let cached = cache.is_some_and(|c| c.contains(id));
            report.blobs_cached += cached as u64;
            !cached
        })
        .copied()
        .collect();
    let mut missing = Vec::new();
    for batch in unknown.chunks(opts.have_batch.max(1)) {
        report.have_queries += 1;
        let held = target.have(batch)?;
        if held.len() != batch.len() {
            return Err(Error::Target {
                target: target.describe(),
                reason: format!("answered {} of {} ids", held.len(), batch.len()),
            });
        }
        for (id, h) in batch.iter().zip(held) {
            if h {
                report.blobs_present += 1;
            } else {
                missing.push(*id);
            }
        }
    }
    Ok(missing)
}

/// Reads local blobs in pack order, checks them against their pack trailers, and hands them
/// to the target in batches.
#[derive(Default)]
struct Sender {
    /// Per pack number: offset → trailer digest.
    digests: HashMap<u32, HashMap<u64, [u8; 16]>>,
}

impl Sender {
    fn send(
        &mut self,
        repo: &Repo,
        target: &mut dyn Target,
        ids: &[Id],
        opts: &Options,
        report: &mut Report,
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut located: Vec<(Location, Id)> = Vec::with_capacity(ids.len());
        for id in ids {
            let loc = repo
                .index()
                .get(id)?
                .ok_or(tiervault_store::Error::MissingBlob(*id))?;
            located.push((loc, *id));
        }
        located.sort_by_key(|(l, _)| (l.pack, l.offset));
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        for (loc, id) in located {
            let mut stored = Vec::new();
            repo.read_stored(&id, &loc, &mut stored)?;
            let digest = self.trailer_digest(repo, &id, &loc)?;
            if tiervault_store::digest16(&stored) != digest {
                return Err(Error::LocalDamage {
                    id: id.hex(),
                    pack: repo.index().pack(loc.pack).id.hex(),
                    reason: "stored bytes do not match the pack trailer".into(),
                });
            }
            batch_bytes += stored.len();
            report.blobs_sent += 1;
            report.bytes_sent += stored.len() as u64;
            progress.sent(stored.len() as u64);
            batch.push(OutBlob {
                id,
                kind: loc.kind,
                digest,
                stored,
            });
            if batch_bytes >= opts.batch_bytes {
                target.put_blobs(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            target.put_blobs(batch)?;
        }
        Ok(())
    }

    fn trailer_digest(&mut self, repo: &Repo, id: &Id, loc: &Location) -> Result<[u8; 16]> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.digests.entry(loc.pack) {
            let pref = repo.index().pack(loc.pack).clone();
            let (_, entries) = repo
                .read_pack_trailer(&pref.id, &repo.pack_path(&pref))
                .map_err(|reason| Error::LocalDamage {
                    id: id.hex(),
                    pack: pref.id.hex(),
                    reason,
                })?;
            slot.insert(entries.iter().map(|e| (e.offset, e.digest)).collect());
        }
        self.digests[&loc.pack]
            .get(&loc.offset)
            .copied()
            .ok_or_else(|| Error::LocalDamage {
                id: id.hex(),
                pack: repo.index().pack(loc.pack).id.hex(),
                reason: format!("no trailer entry at offset {}", loc.offset),
            })
    }
}
