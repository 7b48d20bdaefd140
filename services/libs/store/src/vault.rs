//! Opening, creating and reading a vault: config, keys, lock, index and snapshots.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use crate::codec::Decoder;
use crate::config::{Config, InitOptions, FORMAT_NAME, VERSION};
use crate::crypto::{fill_random, Keys};
use crate::error::{Error, IoContext, Result};
use crate::id::{Id, PackId};
use crate::index::{self, Index, Location, PackInfo, PackRef};
use crate::io::{write_atomic, Io};
use crate::keyfile::{KeyFile, Secret};
use crate::pack;
use crate::snapshot::{self, Snapshot};
use crate::tree::{ChunkRef, Content, Tree};

/// Snapshot files that could not be read: (file name, reason).
pub type Unreadable = Vec<(String, String)>;

/// An open vault. Holds a shared `flock` on `<vault>/lock` for as long as it lives.
pub struct Vault {
    root: PathBuf,
    config: Config,
    keys: Arc<Keys>,
    io: Arc<dyn Io>,
    /// Read on every dedup lookup, written when a write session commits.
    index: RwLock<Index>,
    data_dirs: Vec<PathBuf>,
    _lock: File,
    packs_open: Mutex<HashMap<u32, Arc<File>>>,
    /// Problems found while opening that are not fatal (a damaged index part).
    open_problems: Vec<String>,
}

const DIRS: [&str; 4] = ["keys", "index", "snapshots", "tmp"];

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).ctx("listing", dir)? {
        let e = e.ctx("listing", dir)?;
        if let Some(n) = e.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

impl Vault {
    /// Create a vault in `root` (absent or empty) and return it opened.
    pub fn init(
        root: &Path,
        secret: &Secret,
        opts: &InitOptions,
        io: Arc<dyn Io>,
    ) -> Result<Vault> {
        opts.validate().map_err(Error::Invalid)?;
        if root.exists() {
            let mut rd = std::fs::read_dir(root).ctx("listing", root)?;
            if rd.next().is_some() {
                return Err(Error::NotEmpty {
                    path: root.to_path_buf(),
                });
            }
        }
        let mut vid = [0u8; 32];
        fill_random(&mut vid);
        let mut master = [0u8; 32];
        fill_random(&mut master);
        // The secret is checked (and the KDF run) before anything is written, so a bad key
        // file or passphrase leaves no half-made vault behind.
        let kf = KeyFile::create(secret, &master, &vid, opts.kdf_time)?;
        let existed = root.exists();
        let made = Self::init_files(root, &kf, &vid, opts, &io);
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
            data_dirs: vec!["data".into()],
        };
        for d in DIRS {
            io.create_dir_all(&root.join(d))
                .ctx("creating", &root.join(d))?;
        }
        let data = root.join("data");
        io.create_dir_all(&data.join("tmp"))
            .ctx("creating", &data)?;
        let lock = root.join("lock");
        let mut f = io.create(&lock).ctx("creating", &lock)?;
        f.sync().ctx("syncing", &lock)?;
        drop(f);
        // Every directory and the lock file must be durable before the config names this a
        // vault (a power cut must never leave a config without them).
        io.sync_dir(&data).ctx("syncing", &data)?;
        io.sync_dir(root).ctx("syncing", root)?;
        let kf_json = serde_json::to_vec_pretty(kf).map_err(|e| Error::Invalid(e.to_string()))?;
        let kname = PackId::random().hex();
        write_atomic(
            &**io,
            &root.join("tmp").join(&kname),
            &root.join("keys").join(&kname),
            kf_json,
        )
        .ctx("writing key file", &root.join("keys"))?;
        let cfg = serde_json::to_vec_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))?;
        // The config is written last: a directory without it is not a vault, so an
        // interrupted init never looks like a usable vault.
        write_atomic(
            &**io,
            &root.join("tmp").join("config"),
            &root.join("config"),
            cfg,
        )
        .ctx("writing config", root)?;
        io.sync_dir(root).ctx("syncing", root)
    }

    /// Open an existing vault with `secret`.
    pub fn open(root: &Path, secret: &Secret, io: Arc<dyn Io>) -> Result<Vault> {
        let cfg_path = root.join("config");
        let raw = match std::fs::read(&cfg_path) {
            Ok(r) => r,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                return Err(Error::NotAVault(root.to_path_buf()))
            }
            Err(e) => return Err(Error::io("reading", cfg_path, e)),
        };
        let config: Config = serde_json::from_slice(&raw).map_err(|e| Error::BadConfig {
            path: cfg_path.clone(),
            reason: e.to_string(),
        })?;
        config.check().map_err(|reason| Error::BadConfig {
            path: cfg_path.clone(),
            reason,
        })?;
        let vid = config.vault_id().map_err(|reason| Error::BadConfig {
            path: cfg_path,
            reason,
        })?;

        let lock_path = root.join("lock");
        let lock = File::open(&lock_path).ctx("opening lock file", &lock_path)?;
        let exclusive =
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok();

        let master = unwrap_master(root, secret, &vid)?;
        let keys = Arc::new(Keys::new(master, vid));
        let data_dirs = config
            .data_dirs
            .iter()
            .map(|d| {
                if Path::new(d).is_absolute() {
                    PathBuf::from(d)
                } else {
                    root.join(d)
                }
            })
            .collect();
        let mut vault = Vault {
            root: root.to_path_buf(),
            config,
            keys,
            io,
            index: RwLock::new(Index::default()),
            data_dirs,
            _lock: lock,
            packs_open: Mutex::new(HashMap::new()),
            open_problems: Vec::new(),
        };
        // Write sessions need these; an older crash or a manual cleanup may have removed them.
        let tmps: Vec<PathBuf> = std::iter::once(vault.tmp_dir())
            .chain(vault.data_dirs.iter().map(|d| d.join("tmp")))
            .collect();
        for t in tmps {
            if !t.exists() {
                vault.io.create_dir_all(&t).ctx("creating", &t)?;
            }
        }
        vault.load_index()?;
        if exclusive {
            vault.clean_interrupted()?;
            vault.adopt_orphans()?;
        }
        // Shared from here on: concurrent backups may run; cleanup needs exclusivity.
        rustix::fs::flock(&vault._lock, rustix::fs::FlockOperation::LockShared)
            .map_err(|e| Error::io("locking", &lock_path, e.into()))?;
        Ok(vault)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    pub fn io(&self) -> &Arc<dyn Io> {
        &self.io
    }

    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index_mut(&mut self) -> &mut Index {
        self.index.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Make packs just committed by a write session visible to later lookups.
    pub(crate) fn add_packs(&self, packs: &[PackInfo]) {
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        for p in packs {
            idx.add_pack_info(p);
        }
    }

    pub fn data_dirs(&self) -> &[PathBuf] {
        &self.data_dirs
    }

    /// The vault's key files (their KDF parameters; nothing secret).
    pub fn key_files(&self) -> Result<Vec<KeyFile>> {
        let dir = self.root.join("keys");
        let mut out = Vec::new();
        for name in list_dir(&dir)? {
            let path = dir.join(&name);
            let raw = std::fs::read(&path).ctx("reading key file", &path)?;
            out.push(serde_json::from_slice(&raw).map_err(|e| Error::BadKeyFile {
                path: path.clone(),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    pub fn open_problems(&self) -> &[String] {
        &self.open_problems
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn pack_path_in(&self, dir: u16, id: &PackId) -> PathBuf {
        let hex = id.hex();
        let base = self
            .data_dirs
            .get(dir as usize)
            .unwrap_or(&self.data_dirs[0]);
        base.join(&hex[..2]).join(hex)
    }

    pub fn pack_path(&self, pack: &PackRef) -> PathBuf {
        let p = self.pack_path_in(pack.dir, &pack.id);
        if p.exists() {
            return p;
        }
        // The pools issue moves packs between data directories: search them all.
        (0..self.data_dirs.len() as u16)
            .map(|d| self.pack_path_in(d, &pack.id))
            .find(|c| c.exists())
            .unwrap_or(p)
    }

    fn load_index(&mut self) -> Result<()> {
        let dir = self.root.join("index");
        for name in list_dir(&dir)? {
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).ctx("reading index part", &path)?;
            if Id::digest(&bytes).hex() != name {
                self.open_problems.push(format!(
                    "index part {name}: content does not match its name"
                ));
                continue;
            }
            match index::decode_part(&bytes) {
                Ok(part) => self.index_mut().add_part(part),
                Err(e) => self.open_problems.push(format!("index part {name}: {e}")),
            }
        }
        Ok(())
    }

    fn clean_interrupted(&self) -> Result<()> {
        let mut tmps = vec![self.tmp_dir()];
        tmps.extend(self.data_dirs.iter().map(|d| d.join("tmp")));
        for t in tmps {
            if !t.exists() {
                continue;
            }
            for name in list_dir(&t)? {
                let p = t.join(&name);
                tracing::info!("removing interrupted write {}", p.display());
                self.io
                    .remove_file(&p)
                    .ctx("removing interrupted write", &p)?;
            }
        }
        Ok(())
    }

    /// Every pack file on disk, as (data dir, pack id, path).
    pub fn packs_on_disk(&self) -> Result<Vec<(u16, PackId, PathBuf)>> {
        let mut out = Vec::new();
        for (d, dir) in self.data_dirs.iter().enumerate() {
            if !dir.exists() {
                continue;
            }
            for sub in list_dir(dir)? {
                if sub.len() != 2 || !sub.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let subdir = dir.join(&sub);
                for name in list_dir(&subdir)? {
                    if let Some(id) = PackId::from_hex(&name) {
                        out.push((d as u16, id, subdir.join(name)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Read a pack's trailer from disk.
    pub fn read_pack_trailer(
        &self,
        id: &PackId,
        path: &Path,
    ) -> std::result::Result<(u64, Vec<pack::PackEntry>), String> {
        let f = File::open(path).map_err(|e| format!("opening: {e}"))?;
        let len = f.metadata().map_err(|e| format!("stat: {e}"))?.len();
        let entries = pack::read_trailer(id, len, |off, n| {
            let mut b = vec![0u8; n];
            f.read_exact_at(&mut b, off)?;
            Ok(b)
        })?;
        Ok((len, entries))
    }

    /// Index complete packs that no index part names (a crash between a pack's rename and
    /// its index part). Broken ones are left for `verify` to report.
    fn adopt_orphans(&mut self) -> Result<()> {
        let mut adopted = Vec::new();
        for (dir, id, path) in self.packs_on_disk()? {
            if self.index().has_pack(&id) {
                continue;
            }
            match self.read_pack_trailer(&id, &path) {
                Ok((len, entries)) => adopted.push(PackInfo {
                    id,
                    dir,
                    len,
                    entries,
                }),
                Err(e) => {
                    tracing::warn!("pack {} is not indexed and unreadable: {e}", path.display())
                }
            }
        }
        if adopted.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "indexing {} pack(s) left by an interrupted backup",
            adopted.len()
        );
        self.write_index_part(&adopted)?;
        self.add_packs(&adopted);
        Ok(())
    }

    /// Durably write an index part naming `packs`.
    pub(crate) fn write_index_part(&self, packs: &[PackInfo]) -> Result<()> {
        let bytes = index::encode_part(packs);
        let name = Id::digest(&bytes).hex();
        let dest = self.root.join("index").join(&name);
        write_atomic(&*self.io, &self.tmp_dir().join(&name), &dest, bytes)
            .ctx("writing index part", &dest)
    }

    fn pack_file(&self, pack: u32) -> Result<Arc<File>> {
        let mut open = self.packs_open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(&pack) {
            return Ok(f.clone());
        }
        let pref = self
            .index()
            .packs
            .get(pack as usize)
            .cloned()
            .ok_or_else(|| Error::CorruptIndex {
                name: "(memory)".into(),
                reason: format!("pack number {pack} out of range"),
            })?;
        let path = self.pack_path(&pref);
        let f = Arc::new(File::open(&path).map_err(|e| Error::CorruptPack {
            pack: pref.id.hex(),
            reason: format!("cannot open {}: {e}", path.display()),
        })?);
        if open.len() > 256 {
            open.clear();
        }
        open.insert(pack, f.clone());
        Ok(f)
    }

    /// Read a blob's stored bytes.
    pub fn read_stored(&self, id: &Id, loc: &Location, buf: &mut Vec<u8>) -> Result<()> {
        let f = self.pack_file(loc.pack)?;
        // Resizing only by the difference avoids zero-filling every blob's buffer.
        let n = loc.len as usize;
        if buf.len() < n {
            buf.resize(n, 0);
        } else {
            buf.truncate(n);
        }
        f.read_exact_at(buf, loc.offset)
            .map_err(|e| Error::CorruptBlob {
                id: *id,
                pack: self.index().packs[loc.pack as usize].id.hex(),
                reason: format!(
                    "cannot read {} bytes at offset {}: {e}",
                    loc.len, loc.offset
                ),
            })
    }

    /// Read, authenticate and check one blob; returns its plaintext.
    pub fn read_blob(&self, id: &Id, dec: &mut Decoder, buf: &mut Vec<u8>) -> Result<Vec<u8>> {
        let loc = self.index().get(id).ok_or(Error::MissingBlob(*id))?;
        self.read_stored(id, &loc, buf)?;
        let pack = self.index().packs[loc.pack as usize].id.hex();
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
        let dir = self.root.join("snapshots");
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
            return all
                .into_iter()
                .rfind(matches_path)
                .ok_or_else(|| Error::UnknownSnapshot(spec.into()));
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

fn unwrap_master(root: &Path, secret: &Secret, vid: &[u8; 32]) -> Result<[u8; 32]> {
    let dir = root.join("keys");
    let names = list_dir(&dir)?;
    if names.is_empty() {
        return Err(Error::NoKey(format!("{}: no key files", dir.display())));
    }
    for name in names {
        let path = dir.join(&name);
        let raw = std::fs::read(&path).ctx("reading key file", &path)?;
        let kf: KeyFile = serde_json::from_slice(&raw).map_err(|e| Error::BadKeyFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(m) = kf.open(&path, secret, vid)? {
            return Ok(m);
        }
    }
    Err(Error::WrongKey(dir))
}
