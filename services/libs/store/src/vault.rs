//! A vault with its key: a [`Repo`] (layout, index, packs) plus the keys that open blobs and
//! snapshot bodies. `init` creates one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::Decoder;
use crate::config::{Config, InitOptions, FORMAT_NAME, VERSION};
use crate::crypto::{fill_random, Keys};
use crate::datadir;
use crate::error::{Error, IoContext, Result};
use crate::id::{Id, PackId};
use crate::io::Io;
use crate::keyfile::{KeyFile, Secret};
use crate::repo::{list_dir, Repo, Unreadable};
use crate::snapshot::{self, Snapshot};
use crate::tree::{ChunkRef, Content, Tree};

/// An open vault: its [`Repo`] (reachable through `Deref`) and its keys.
pub struct Vault {
    repo: Repo,
    keys: Arc<Keys>,
    /// The key file (`keys/<name>`) the secret opened.
    key_name: String,
}

impl std::ops::Deref for Vault {
    type Target = Repo;
    fn deref(&self) -> &Repo {
        &self.repo
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Vault {
    /// Create a vault in `root` (absent or empty) and return it opened. Its data
    /// directories (`opts.data_dirs`) get `tmp/` and a marker each; those outside `root`
    /// must be absent or empty.
    pub fn init(
        root: &Path,
        secret: &Secret,
        opts: &InitOptions,
        io: Arc<dyn Io>,
    ) -> Result<Vault> {
        opts.validate().map_err(Error::Invalid)?;
        let dirs = opts.data_dir_entries().map_err(Error::Invalid)?;
        if root.exists() {
            let mut rd = std::fs::read_dir(root).ctx("listing", root)?;
            if rd.next().is_some() {
                return Err(Error::NotEmpty {
                    path: root.to_path_buf(),
                });
            }
        }
        let resolved: Vec<PathBuf> = dirs.iter().map(|d| datadir::resolve(root, d)).collect();
        datadir::check_layout(root, &resolved).map_err(Error::Invalid)?;
        let mut vid = [0u8; 32];
        fill_random(&mut vid);
        // Outside the vault: each must be absent or empty (e.g. a freshly made file system).
        let external: Vec<(PathBuf, bool)> = resolved
            .iter()
            .filter(|p| !p.starts_with(root))
            .map(|p| (p.clone(), p.exists()))
            .collect();
        for (i, p) in resolved.iter().enumerate() {
            if !p.starts_with(root) {
                datadir::check_fresh(p, &hex::encode(vid), i as u16).map_err(Error::Invalid)?;
            }
        }
        let mut master = [0u8; 32];
        fill_random(&mut master);
        // The secret is checked (and the KDF run) before anything is written, so a bad key
        // file or passphrase leaves no half-made vault behind.
        let kf = KeyFile::create(secret, &master, &vid, opts.kdf_time)?;
        let existed = root.exists();
        let made = Self::init_files(root, &kf, &vid, opts, dirs, &io);
        if let Err(e) = made {
            // Nothing else can be in it: it was absent or empty and has no config yet.
            let cleanup = if existed {
                std::fs::read_dir(root).and_then(|rd| {
                    rd.filter_map(|e| e.ok()).try_for_each(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        }
                    })
                })
            } else {
                std::fs::remove_dir_all(root)
            };
            if let Err(c) = cleanup {
                tracing::warn!(
                    "could not remove the incomplete vault {}: {c}",
                    root.display()
                );
            }
            // Outside data directories were empty: take back only what init puts there.
            for (p, was) in external {
                let undo = if was {
                    let _ = std::fs::remove_file(p.join(datadir::MARKER));
                    match std::fs::remove_dir_all(p.join("tmp")) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    }
                } else {
                    match std::fs::remove_dir_all(&p) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    }
                };
                if let Err(c) = undo {
                    tracing::warn!("could not clean data directory {}: {c}", p.display());
                }
            }
            return Err(e);
        }
        Vault::open(root, secret, io)
    }

    /// Everything `init` writes, config last.
    fn init_files(
        root: &Path,
        kf: &KeyFile,
        vid: &[u8; 32],
        opts: &InitOptions,
        data_dirs: Vec<String>,
        io: &Arc<dyn Io>,
    ) -> Result<()> {
        io.create_dir_all(root)
            .ctx("creating vault directory", root)?;
        let config = Config {
            format: FORMAT_NAME.into(),
            version: VERSION,
            id: hex::encode(vid),
            created: now_rfc3339(),
            chunker: opts.chunker,
            image_chunker: crate::config::ImageChunker {
                fixed: opts.image_chunk,
            },
            compression_level: opts.compression_level,
            data_dirs,
        };
        let kf_json = serde_json::to_vec_pretty(kf).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::repo::create_layout(root, io, &config, vec![(PackId::random().hex(), kf_json)])
    }

    /// Open an existing vault with `secret`.
    pub fn open(root: &Path, secret: &Secret, io: Arc<dyn Io>) -> Result<Vault> {
        let (repo, (keys, key_name)) = Repo::open_with(root, io, |vid| {
            let (name, master) = unwrap_master(root, secret, vid)?;
            Ok((Keys::new(master, *vid), name))
        })?;
        Ok(Vault {
            repo,
            keys: Arc::new(keys),
            key_name,
        })
    }

    /// The key file the secret opened (a name under `keys/`).
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Wrap the master key under `secret` in a new key file (passphrases with Argon2id
    /// calibrated to `kdf_time`); returns its name. Either secret opens the vault from then on.
    pub fn add_key(&self, secret: &Secret, kdf_time: std::time::Duration) -> Result<String> {
        let vid = self.keys.vault_id();
        let kf = KeyFile::create(secret, self.keys.master(), vid, kdf_time)?;
        let json = serde_json::to_vec_pretty(&kf).map_err(|e| Error::Invalid(e.to_string()))?;
        let name = PackId::random().hex();
        let dest = self.root().join("keys").join(&name);
        crate::io::write_atomic(&**self.io(), &self.tmp_dir().join(&name), &dest, json)
            .ctx("writing key file", &dest)?;
        Ok(name)
    }

    /// Remove key file `name`. Never the one this vault was opened with (open it with
    /// another secret first, so a mistyped new passphrase cannot lock anyone out) and never
    /// the last one.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        let _serial = self.lock_keys()?;
        let names = list_dir(&self.root().join("keys"))?;
        if !names.iter().any(|n| n == name) {
            return Err(Error::Invalid(format!(
                "no key {name:?} in {} (vaultctl key list shows them)",
                self.root().join("keys").display()
            )));
        }
        if name == self.key_name {
            return Err(Error::Invalid(format!(
                "key {name} is the one this command was opened with; open the vault with \
                 another key to remove it"
            )));
        }
        if names.len() < 2 {
            return Err(Error::Invalid(format!(
                "key {name} is the vault's only key"
            )));
        }
        self.delete_key_file(name)
    }

    /// An exclusive `flock` on `keys/` while a key is removed or replaced: two commands
    /// removing the last two keys at once must not both see another key left.
    fn lock_keys(&self) -> Result<std::fs::File> {
        let dir = self.root().join("keys");
        let f = std::fs::File::open(&dir).ctx("opening", &dir)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)
            .ctx("locking", &dir)?;
        Ok(f)
    }

    /// Replace the key this vault was opened with by one for `secret`: the new key file is
    /// written and opened with `secret` before the old one is removed. Returns (new, old).
    pub fn replace_key(
        &self,
        secret: &Secret,
        kdf_time: std::time::Duration,
    ) -> Result<(String, String)> {
        let _serial = self.lock_keys()?;
        let new = self.add_key(secret, kdf_time)?;
        let opens = crate::keyfile::list_keys(self.root())?
            .into_iter()
            .find(|(n, _)| *n == new)
            .map(|(n, kf)| {
                kf.open(
                    &self.root().join("keys").join(n),
                    secret,
                    self.keys.vault_id(),
                )
            })
            .transpose()?
            .flatten();
        if opens.as_ref() != Some(self.keys.master()) {
            // Never leave a key behind that nobody asked for.
            let _ = self.delete_key_file(&new);
            return Err(Error::Invalid(format!(
                "the new key {new} does not open the vault; the old key {} is kept",
                self.key_name
            )));
        }
        self.delete_key_file(&self.key_name)?;
        Ok((new, self.key_name.clone()))
    }

    fn delete_key_file(&self, name: &str) -> Result<()> {
        let dir = self.root().join("keys");
        let path = dir.join(name);
        self.io()
            .remove_file(&path)
            .ctx("removing key file", &path)?;
        self.io().sync_dir(&dir).ctx("syncing", &dir)
    }

    /// Open the same vault again with the keys already derived (no KDF): a fresh index and
    /// session, e.g. after a heal replaced packs.
    pub fn reopen(&self) -> Result<Vault> {
        Ok(Vault {
            repo: Repo::open(self.root(), self.io().clone())?,
            keys: self.keys.clone(),
            key_name: self.key_name.clone(),
        })
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// The keyless view (for code that must work on a replica without the key too).
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// Read, authenticate and check one blob; returns its plaintext.
    pub fn read_blob(&self, id: &Id, dec: &mut Decoder, buf: &mut Vec<u8>) -> Result<Vec<u8>> {
        let loc = self.index().get(id)?.ok_or(Error::MissingBlob(*id))?;
        self.read_stored(id, &loc, buf)?;
        let pack = self.index().pack(loc.pack).id.hex();
        dec.decode(&self.keys, id, buf)
            .map(<[u8]>::to_vec)
            .map_err(|reason| Error::CorruptBlob {
                id: *id,
                pack,
                reason,
            })
    }

    pub fn read_tree(&self, id: &Id) -> Result<Tree> {
        let plain = self.read_meta(id)?;
        Tree::decode(&plain).map_err(|reason| Error::CorruptTree { id: *id, reason })
    }

    /// Read a meta blob with this thread's reusable decoder (trees are read one by one from
    /// many places; a zstd context per read was measurable).
    fn read_meta(&self, id: &Id) -> Result<Vec<u8>> {
        thread_local! {
            static DEC: std::cell::RefCell<(Decoder, Vec<u8>)> = std::cell::RefCell::new((Decoder::new(), Vec::new()));
        }
        DEC.with(|d| {
            let mut d = d.borrow_mut();
            let (dec, buf) = &mut *d;
            self.read_blob(id, dec, buf)
        })
    }

    /// A file's chunks, reading chunk-list blobs when the list is not inline.
    pub fn chunk_list(&self, content: &Content) -> Result<Vec<ChunkRef>> {
        if let Some(c) = &content.chunks {
            return Ok(c.clone());
        }
        let mut out = Vec::new();
        for id in content.lists.iter().flatten() {
            let plain = self.read_meta(id)?;
            let piece: Vec<ChunkRef> = crate::tree::from_cbor(&plain)
                .map_err(|reason| Error::CorruptTree { id: *id, reason })?;
            out.extend(piece);
        }
        Ok(out)
    }

    /// All readable snapshots, oldest first, and the ones that could not be read.
    pub fn snapshots(&self) -> Result<(Vec<Snapshot>, Unreadable)> {
        let dir = self.root().join("snapshots");
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for name in list_dir(&dir)? {
            let path = dir.join(&name);
            let mut bytes = std::fs::read(&path).ctx("reading snapshot", &path)?;
            match snapshot::decode(&self.keys, &name, &mut bytes) {
                Ok(s) => good.push(s),
                Err(e) => bad.push((name, e)),
            }
        }
        good.sort_by(|a: &Snapshot, b: &Snapshot| {
            a.header
                .time_ns
                .cmp(&b.header.time_ns)
                .then(a.id.cmp(&b.id))
        });
        Ok((good, bad))
    }

    /// Resolve `spec` (full id, unique prefix, or "latest"). With `path`, "latest" means the
    /// newest snapshot holding that path: an absolute path is matched against the backed-up
    /// source paths (equal or below one), a relative one is a path inside the snapshot whose
    /// first component names one of its roots.
    pub fn resolve(&self, spec: &str, path: Option<&[u8]>) -> Result<Snapshot> {
        let (all, _) = self.snapshots()?;
        let matches_path = |s: &Snapshot| path.is_none_or(|p| snapshot_holds(s, p));
        if spec == "latest" {
            let newest = all.last().map(no_snapshot_holds_hint);
            return all
                .into_iter()
                .rfind(matches_path)
                .ok_or_else(|| match (path, newest) {
                    (Some(p), Some(hint)) => Error::NoSnapshotHolds {
                        path: String::from_utf8_lossy(p).into_owned(),
                        hint,
                    },
                    _ => Error::UnknownSnapshot(spec.into()),
                });
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.is_empty() || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::UnknownSnapshot(spec.into()));
        }
        let mut m: Vec<Snapshot> = all
            .into_iter()
            .filter(|s| s.id.hex().starts_with(&spec_l))
            .collect();
        match m.len() {
            0 => Err(Error::UnknownSnapshot(spec.into())),
            1 => Ok(m.remove(0)),
            count => Err(Error::AmbiguousSnapshot {
                prefix: spec.into(),
                count,
            }),
        }
    }
}

/// What the newest snapshot holds, for an error naming a path none holds: a path inside a
/// snapshot starts with one of its roots (the base names), an absolute one with a backed-up path.
fn no_snapshot_holds_hint(newest: &Snapshot) -> String {
    let show = |q: &serde_bytes::ByteBuf| {
        let root = q.rsplit(|&b| b == b'/').next().unwrap_or(q);
        let root = String::from_utf8_lossy(root);
        if root.len() == q.len() {
            root.into_owned()
        } else {
            format!("{root} (from {})", String::from_utf8_lossy(q))
        }
    };
    let held: Vec<String> = newest.body.paths.iter().map(show).collect();
    format!(
        "the newest snapshot, {}, holds {}",
        newest.short_id(),
        if held.is_empty() {
            "no paths".to_string()
        } else {
            held.join(", ")
        }
    )
}

fn snapshot_holds(s: &Snapshot, p: &[u8]) -> bool {
    if p.first() == Some(&b'/') {
        return s.body.paths.iter().any(|q| {
            p.starts_with(q) && (p.len() == q.len() || p[q.len()] == b'/' || q.ends_with(b"/"))
        });
    }
    let Some(first) = crate::browse::components(p).first().copied() else {
        return true;
    };
    s.body
        .paths
        .iter()
        .any(|q| q.rsplit(|&b| b == b'/').next() == Some(first))
}

/// The master key and the name of the key file `secret` opens.
fn unwrap_master(root: &Path, secret: &Secret, vid: &[u8; 32]) -> Result<(String, [u8; 32])> {
    let keys = crate::keyfile::list_keys(root)?;
    if keys.is_empty() {
        return Err(Error::NoKey(format!(
            "{}: no key files",
            root.join("keys").display()
        )));
    }
    for (name, kf) in keys {
        if let Some(m) = kf.open(&root.join("keys").join(&name), secret, vid)? {
            return Ok((name, m));
        }
    }
    Err(Error::WrongKey(root.join("keys")))
}
