//! The write side of a vault: per-worker blob sinks that dedup, compress, seal and append
//! blobs to their own pack, a flusher thread that makes finished packs durable, and the
//! commit that indexes them (docs/format.md section 9).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::blob::Kind;
use crate::codec::{encode_refs, Encoder};
use crate::error::{Error, Result};
use crate::id::{Id, IdSet, PackId};
use crate::index::PackInfo;
use crate::io::Io;
use crate::pack::{FinishedPack, PackWriter, TARGET_SIZE};
use crate::vault::Vault;

const SHARDS: usize = 64;

/// Counters of what a write session added.
#[derive(Default, Debug)]
pub struct WriteStats {
    pub new_blobs: AtomicU64,
    pub stored_bytes: AtomicU64,
    pub new_plain_bytes: AtomicU64,
}

/// One write session: at most one per command, shared by its worker threads.
pub struct Writer<'v> {
    vault: &'v Vault,
    /// Ids stored by this session, sharded so workers rarely contend.
    fresh: Vec<Mutex<IdSet>>,
    to_flusher: Option<Sender<FinishedPack>>,
    flusher: Option<JoinHandle<FlushOutcome>>,
    pub stats: WriteStats,
}

struct FlushOutcome {
    done: Vec<PackInfo>,
    paths: Vec<PathBuf>,
    error: Option<Error>,
}

/// A worker's private state: its encoder (zstd context, key stream) and open pack.
pub struct Sink {
    enc: Encoder,
    pack: Option<PackWriter>,
}

impl<'v> Writer<'v> {
    pub fn new(vault: &'v Vault) -> Writer<'v> {
        let (tx, rx) = crossbeam_channel::bounded::<FinishedPack>(4);
        let io = vault.io().clone();
        let dirs: Vec<PathBuf> = vault.data_dirs().to_vec();
        let flusher = std::thread::Builder::new()
            .name("pack-flusher".into())
            .spawn(move || flush_loop(io, dirs, rx))
            .expect("spawning the pack flusher thread");
        Writer {
            vault,
            fresh: (0..SHARDS).map(|_| Mutex::new(IdSet::default())).collect(),
            to_flusher: Some(tx),
            flusher: Some(flusher),
            stats: WriteStats::default(),
        }
    }

    pub fn sink(&self) -> Result<Sink> {
        Ok(Sink {
            enc: Encoder::new(self.vault.keys(), self.vault.config().compression_level)?,
            pack: None,
        })
    }

    /// Claims the blob for the caller, who must then store it (true), unless it is stored
    /// already (false): in a usable data directory of the vault, or by this session. A blob
    /// whose only copies are on an unavailable data directory is stored again, so what a
    /// backup writes now does not depend on an array that is missing.
    fn claim(&self, id: &Id) -> Result<bool> {
        if self.vault.index().contains_available(id)? {
            return Ok(false);
        }
        let shard = &self.fresh[id.0[31] as usize % SHARDS];
        Ok(shard.lock().unwrap_or_else(|e| e.into_inner()).insert(*id))
    }

    /// Store a data or meta blob unless present; returns its id and whether it was new.
    pub fn store(&self, sink: &mut Sink, kind: Kind, plain: &[u8]) -> Result<(Id, bool)> {
        let id = sink.enc.keys().blob_id(plain);
        let new = self.store_with_id(sink, id, kind, plain)?;
        Ok((id, new))
    }

    /// As `store`, for a caller that computed the id already.
    pub fn store_with_id(&self, sink: &mut Sink, id: Id, kind: Kind, plain: &[u8]) -> Result<bool> {
        if !self.claim(&id)? {
            return Ok(false);
        }
        let pack = self.pack_for(&mut sink.pack)?;
        let start = pack.staging().len();
        let n = sink.enc.encode(&id, kind, plain, pack.staging())?;
        pack.commit_blob(id, kind, start)
            .map_err(|e| self.pack_err(pack.tmp_path(), e))?;
        self.account(n, plain.len());
        self.maybe_rotate(sink)?;
        Ok(true)
    }

    /// Store a refs blob (plaintext, unkeyed id).
    pub fn store_refs(&self, sink: &mut Sink, plain: &[u8]) -> Result<Id> {
        let id = Id::digest(plain);
        if self.claim(&id)? {
            let pack = self.pack_for(&mut sink.pack)?;
            let start = pack.staging().len();
            encode_refs(plain, pack.staging());
            let n = pack.staging().len() - start;
            pack.commit_blob(id, Kind::Refs, start)
                .map_err(|e| self.pack_err(pack.tmp_path(), e))?;
            self.account(n, plain.len());
            self.maybe_rotate(sink)?;
        }
        Ok(id)
    }

    fn account(&self, stored: usize, plain: usize) {
        self.stats.new_blobs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .stored_bytes
            .fetch_add(stored as u64, Ordering::Relaxed);
        self.stats
            .new_plain_bytes
            .fetch_add(plain as u64, Ordering::Relaxed);
    }

    fn pack_err(&self, tmp: &std::path::Path, e: std::io::Error) -> Error {
        // A failing data directory (full, or its array gone): measure again before the
        // next pack is placed.
        self.vault.placement_failed();
        Error::io("writing pack", tmp, e)
    }

    /// The sink's open pack, or a new one in the data directory the placement rule picks
    /// (once per pack, never per blob).
    fn pack_for<'s>(&self, slot: &'s mut Option<PackWriter>) -> Result<&'s mut PackWriter> {
        if slot.is_none() {
            let id = PackId::random();
            let (dir, tmp_dir) = self.vault.place_pack(TARGET_SIZE)?;
            let tmp = tmp_dir.join(id.hex());
            let file = match self.vault.io().create_pack(&tmp) {
                Ok(f) => f,
                Err(e) => {
                    self.vault.placement_failed();
                    return Err(Error::io("creating pack", &tmp, e));
                }
            };
            *slot = Some(PackWriter::new(id, dir, file, tmp));
        }
        Ok(slot.as_mut().expect("just set"))
    }

    fn maybe_rotate(&self, sink: &mut Sink) -> Result<()> {
        if sink.pack.as_ref().is_some_and(PackWriter::is_full) {
            self.finish_sink(sink)?;
        }
        Ok(())
    }

    /// Close the sink's pack (if any) and queue it for fsync and rename.
    pub fn finish_sink(&self, sink: &mut Sink) -> Result<()> {
        if let Some(p) = sink.pack.take() {
            let tmp = p.tmp_path().to_path_buf();
            let fin = p.finish().map_err(|e| self.pack_err(&tmp, e))?;
            let tx = self.to_flusher.as_ref().expect("flusher open until commit");
            if tx.send(fin).is_err() {
                return Err(Error::Invalid("pack flusher stopped".into()));
            }
        }
        Ok(())
    }

    fn stop_flusher(&mut self) -> Result<FlushOutcome> {
        drop(self.to_flusher.take());
        let h = self.flusher.take().expect("flusher joined once");
        h.join()
            .map_err(|_| Error::Invalid("pack flusher panicked".into()))
    }

    /// Make every pack of this session durable and indexed. Returns the packs.
    pub fn commit(mut self) -> Result<Vec<PackInfo>> {
        let out = self.stop_flusher()?;
        if let Some(e) = out.error {
            remove_all(self.vault.io().as_ref(), &out.paths);
            return Err(e);
        }
        if !out.done.is_empty() {
            if let Err(e) = self.vault.write_index_part(&out.done) {
                remove_all(self.vault.io().as_ref(), &out.paths);
                return Err(e);
            }
            self.vault.add_packs(&out.done);
            self.vault.update_index_cache()?;
        }
        Ok(out.done)
    }

    /// Give up: remove this session's packs (nobody else can know them: they are not indexed).
    pub fn abort(mut self) {
        if let Ok(out) = self.stop_flusher() {
            remove_all(self.vault.io().as_ref(), &out.paths);
        }
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if self.flusher.is_some() {
            if let Ok(out) = self.stop_flusher() {
                remove_all(self.vault.io().as_ref(), &out.paths);
            }
        }
    }
}

fn remove_all(io: &dyn Io, paths: &[PathBuf]) {
    for p in paths {
        if let Err(e) = io.remove_file(p) {
            tracing::warn!("could not remove unused pack {}: {e}", p.display());
        }
    }
}

/// Make each finished pack durable in its own data directory, in the order they come.
fn flush_loop(io: Arc<dyn Io>, dirs: Vec<PathBuf>, rx: Receiver<FinishedPack>) -> FlushOutcome {
    let mut out = FlushOutcome {
        done: Vec::new(),
        paths: Vec::new(),
        error: None,
    };
    for fin in rx {
        if out.error.is_some() {
            out.paths.push(fin.tmp_path.clone());
            continue;
        }
        let base = &dirs[fin.dir as usize];
        match fin.publish(&*io, base) {
            Ok(info) => {
                let hex = info.id.hex();
                out.paths.push(base.join(&hex[..2]).join(&hex));
                out.done.push(info);
            }
            Err((path, e)) => {
                out.error = Some(Error::io("making pack durable", &path, e));
                out.paths.push(path);
            }
        }
    }
    out
}
