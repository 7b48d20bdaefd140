//! Keyless write sessions of already-stored blobs: what a replica or the remote vault does
//! with blobs it receives, and what garbage collection does when it moves live blobs out of
//! a pack. Nothing here needs the key; each blob is checked as far as a keyless holder can
//! (`codec::check_keyless`).

use std::sync::Arc;

use crate::blob::Kind;
use crate::error::{Error, IoContext, Result};
use crate::id::{Id, IdSet, PackId};
use crate::index::PackInfo;
use crate::io::Io;
use crate::pack::PackWriter;
use crate::repo::Repo;

/// Stored blobs going into packs, each placed in the data directory the placement rule picks
/// (the usable one with the most free space). The repo is passed to each call (not held) so
/// a long-lived receiver can own both.
pub struct Ingest {
    io: Arc<dyn Io>,
    pack: Option<PackWriter>,
    /// Published (durable) packs not yet named by an index part.
    published: Vec<PackInfo>,
    fresh: IdSet,
    /// Packs of at most this many bytes: a receiver acknowledges blobs only once durable, so
    /// smaller packs mean less to resend after a cut.
    target: u64,
    /// Garbage collection copies blobs its own index still shows (in packs it is about to
    /// delete): only what this session stored counts as present.
    ignore_index: bool,
    pub stored_blobs: u64,
    pub stored_bytes: u64,
}

impl Ingest {
    pub fn new(repo: &Repo) -> Ingest {
        Ingest {
            io: repo.io().clone(),
            pack: None,
            published: Vec::new(),
            fresh: IdSet::default(),
            target: crate::pack::TARGET_SIZE,
            ignore_index: false,
            stored_blobs: 0,
            stored_bytes: 0,
        }
    }

    /// A session that copies blobs out of packs about to be deleted (see `ignore_index`).
    pub(crate) fn for_copying(repo: &Repo) -> Ingest {
        let mut i = Ingest::new(repo);
        i.ignore_index = true;
        i
    }

    /// Close packs at `bytes` instead of the usual 32 MiB.
    pub fn with_pack_target(mut self, bytes: u64) -> Self {
        self.target = bytes.max(1);
        self
    }

    /// True when the vault (as this session sees it: a copy in a usable data directory) or
    /// this session holds `id`. A blob whose only copies lie on an unavailable data
    /// directory counts as absent, so a replication source sends it again and a heal can
    /// restore what a lost array held.
    pub fn has(&self, repo: &Repo, id: &Id) -> Result<bool> {
        Ok(self.fresh.contains(id)
            || (!self.ignore_index && repo.index().contains_available(id)?))
    }

    /// Bytes appended since the last `flush`/`finish_pack`, not yet durable.
    pub fn pending_bytes(&self) -> u64 {
        self.pack.as_ref().map_or(0, PackWriter::size)
    }

    /// Check a received blob and store it unless present. Returns whether it was new.
    pub fn put(
        &mut self,
        repo: &Repo,
        id: &Id,
        kind: Kind,
        digest: &[u8; 16],
        stored: &[u8],
    ) -> Result<bool> {
        crate::codec::check_keyless(id, kind, digest, stored)
            .map_err(|reason| Error::BadBlob { id: *id, reason })?;
        self.put_checked(repo, id, kind, *digest, stored)
    }

    /// Store a blob whose bytes were already checked against `digest` (received and
    /// checked, or copied from one of our own packs): hashing once per blob is enough.
    pub(crate) fn put_checked(
        &mut self,
        repo: &Repo,
        id: &Id,
        kind: Kind,
        digest: [u8; 16],
        stored: &[u8],
    ) -> Result<bool> {
        if self.has(repo, id)? {
            return Ok(false);
        }
        if self.pack.is_none() {
            let pid = PackId::random();
            let (dir, tmp_dir) = repo.place_pack(self.target)?;
            let tmp = tmp_dir.join(pid.hex());
            let file = repo.io().create_pack(&tmp).map_err(|e| {
                repo.placement_failed();
                Error::io("creating pack", &tmp, e)
            })?;
            self.pack = Some(PackWriter::new(pid, dir, file, tmp));
        }
        let pack = self.pack.as_mut().expect("just set");
        pack.push_stored(*id, kind, digest, stored).map_err(|e| {
            repo.placement_failed();
            Error::io("writing pack", pack.tmp_path(), e)
        })?;
        self.fresh.insert(*id);
        self.stored_blobs += 1;
        self.stored_bytes += stored.len() as u64;
        if pack.size() >= self.target {
            self.finish_pack(repo)?;
        }
        Ok(true)
    }

    /// Close and publish the open pack (durable, not yet indexed).
    pub fn finish_pack(&mut self, repo: &Repo) -> Result<()> {
        let Some(p) = self.pack.take() else {
            return Ok(());
        };
        let tmp = p.tmp_path().to_path_buf();
        let base = repo.data_dirs()[p.dir as usize].clone();
        let fin = p.finish().map_err(|e| Error::io("writing pack", &tmp, e))?;
        let info = fin
            .publish(&**repo.io(), &base)
            .map_err(|(path, e)| Error::io("making pack durable", path, e))?;
        self.published.push(info);
        Ok(())
    }

    /// Make everything stored so far durable and indexed; returns the new packs.
    pub fn flush(&mut self, repo: &Repo) -> Result<Vec<PackInfo>> {
        self.finish_pack(repo)?;
        let packs = std::mem::take(&mut self.published);
        if !packs.is_empty() {
            repo.write_index_part(&packs)?;
            repo.add_packs(&packs);
        }
        Ok(packs)
    }
}

impl Ingest {
    /// Write a snapshot file into a *transfer* directory (an export for a transfer drive),
    /// which by design lacks the blobs the remote already holds: no completeness check.
    /// Never use this on a vault: the check is what keeps a vault consistent.
    pub fn put_partial_snapshot(&mut self, repo: &Repo, id: &Id, file: &[u8]) -> Result<()> {
        if Id::digest(file) != *id {
            return Err(Error::CorruptSnapshot {
                name: id.hex(),
                reason: "content does not match its id".into(),
            });
        }
        self.flush(repo)?;
        let dest = repo.root().join("snapshots").join(id.hex());
        let tmp = repo.root().join("tmp").join(format!("snap-{}", id.hex()));
        crate::io::write_atomic(&**repo.io(), &tmp, &dest, file.to_vec())
            .ctx("writing snapshot", &dest)
    }

    /// Commit a received snapshot file: every blob it references must be durable and indexed
    /// here first (format.md 9), so a snapshot is either complete on this side or absent.
    pub fn put_snapshot(&mut self, repo: &Repo, id: &Id, file: &[u8]) -> Result<()> {
        let bad = |reason: String| Error::CorruptSnapshot {
            name: id.hex(),
            reason,
        };
        if Id::digest(file) != *id {
            return Err(bad("content does not match its id".into()));
        }
        let (header, _) = crate::snapshot::decode_header(file).map_err(bad)?;
        self.flush(repo)?;
        let dest = repo.root().join("snapshots").join(id.hex());
        if dest.exists() {
            return Ok(());
        }
        let mut missing = Vec::new();
        for r in &header.refs {
            match repo.read_refs(r) {
                Ok(ids) => {
                    for i in ids {
                        if !self.has(repo, &i)? {
                            missing.push(i);
                        }
                    }
                }
                Err(Error::MissingBlob(m)) => missing.push(m),
                Err(e) => return Err(e),
            }
        }
        if let Some(first) = missing.first() {
            return Err(Error::MissingBlobs {
                id: id.hex(),
                count: missing.len(),
                first: *first,
            });
        }
        let tmp = repo.root().join("tmp").join(format!("snap-{}", id.hex()));
        crate::io::write_atomic(&**repo.io(), &tmp, &dest, file.to_vec())
            .ctx("writing snapshot", &dest)?;
        repo.update_index_cache()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Published packs stay: complete packs are adopted by the next exclusive open.
        if let Some(p) = self.pack.take() {
            let tmp = p.tmp_path().to_path_buf();
            drop(p);
            let _ = self.io.remove_file(&tmp);
        }
    }
}
