//! The keyless side of a vault: layout, config, locks, sessions, the index and packs, and
//! snapshot files as a keyless holder sees them (docs/format.md sections 1, 5-7, 9-10).
//!
//! Replication targets, the remote vault and garbage collection work on a [`Repo`] and never
//! need the key; [`crate::Vault`] is a `Repo` plus the keys.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::datadir::{self, Placement, Problem, SpaceProbe};
use crate::error::{Error, IoContext, Result};
use crate::id::{Id, PackId};
use crate::index::{self, Index, Location, PackInfo, PackRef};
use crate::io::{write_atomic, Io};
use crate::keyfile::KeyFile;
use crate::pack;
use crate::session::Session;
use crate::snapshot::{self, Header};

/// How long an open waits for another process updating the index cache before it reads
/// the parts the cache lacks into memory instead.
const CACHE_LOCK_WAIT: Duration = Duration::from_secs(120);

fn log_refresh(root: &Path, r: &index::RefreshReport) {
    if r.rebuilt || r.parts_absorbed > 0 || r.parts_gone > 0 {
        tracing::debug!(
            "{}: index cache {}: {} part(s), {} entries absorbed; {} part(s) gone, {} entries \
             dropped; {} other copies",
            root.display(),
            if r.rebuilt { "rebuilt" } else { "updated" },
            r.parts_absorbed,
            r.entries_absorbed,
            r.parts_gone,
            r.entries_dropped,
            r.alternatives
        );
    }
}

/// Snapshot files that could not be read: (file name, reason).
pub type Unreadable = Vec<(String, String)>;

/// A snapshot file as a keyless holder sees it.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub id: Id,
    pub header: Header,
    pub len: u64,
}

/// An open vault without its key. Holds a shared `flock` on `<vault>/lock` and a session
/// (section 10) for as long as it lives.
pub struct Repo {
    root: PathBuf,
    config: Config,
    io: Arc<dyn Io>,
    /// Read on every dedup lookup, written when a write session commits.
    index: RwLock<Index>,
    data_dirs: Vec<PathBuf>,
    /// Per data directory, why it is unavailable (checked at open; `None`: usable). Packs
    /// on an unavailable directory are neither written, listed, cleaned nor adopted.
    dir_problems: Vec<Option<Problem>>,
    /// Chooses the data directory of each new pack.
    placement: Placement,
    _lock: File,
    session: Option<Session>,
    packs_open: Mutex<HashMap<u32, Arc<File>>>,
    /// Problems found while opening that are not fatal (a damaged index part).
    open_problems: Vec<String>,
    /// Packs a garbage collection has condemned: invisible to this session (section 10).
    condemned: HashSet<PackId>,
}

const DIRS: [&str; 5] = ["keys", "index", "snapshots", "tmp", crate::session::DIR];

/// Create a vault's directories, lock file, data directories (each with `tmp/` and its
/// marker), key files and, last, its config: a directory without a config is not a vault, so
/// an interrupted creation never looks usable. Data directories outside the vault must be
/// absent or empty (checked by the caller).
pub(crate) fn create_layout(
    root: &Path,
    io: &Arc<dyn Io>,
    config: &Config,
    keys: Vec<(String, Vec<u8>)>,
) -> Result<()> {
    let config_bytes =
        serde_json::to_vec_pretty(config).map_err(|e| Error::Invalid(e.to_string()))?;
    io.create_dir_all(root)
        .ctx("creating vault directory", root)?;
    for d in DIRS {
        io.create_dir_all(&root.join(d))
            .ctx("creating", &root.join(d))?;
    }
    let lock = root.join("lock");
    let mut f = io.create(&lock).ctx("creating", &lock)?;
    f.sync().ctx("syncing", &lock)?;
    drop(f);
    for (i, configured) in config.data_dirs.iter().enumerate() {
        create_data_dir(io, root, configured, &config.id, i as u16)?;
    }
    // Every directory and the lock file must be durable before the config names this a
    // vault (a power cut must never leave a config without them).
    io.sync_dir(root).ctx("syncing", root)?;
    for (name, bytes) in keys {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::Invalid(format!("bad key file name {name:?}")));
        }
        write_atomic(
            &**io,
            &root.join("tmp").join(&name),
            &root.join("keys").join(&name),
            bytes,
        )
        .ctx("writing key file", &root.join("keys"))?;
    }
    write_atomic(
        &**io,
        &root.join("tmp").join("config"),
        &root.join("config"),
        config_bytes,
    )
    .ctx("writing config", root)?;
    io.sync_dir(root).ctx("syncing", root)
}

/// Make `configured` data directory number `dir`: `tmp/` and the marker, durably; a
/// directory created here is made durable in its parent too.
fn create_data_dir(
    io: &Arc<dyn Io>,
    root: &Path,
    configured: &str,
    vault_hex: &str,
    dir: u16,
) -> Result<()> {
    let path = datadir::resolve(root, configured);
    let existed = path.exists();
    io.create_dir_all(&path.join("tmp"))
        .ctx("creating data directory", &path)?;
    datadir::write_marker(&**io, &path, vault_hex, dir).ctx(
        "writing the data directory marker",
        &path.join(datadir::MARKER),
    )?;
    if !existed {
        if let Some(parent) = path.parent() {
            io.sync_dir(parent).ctx("syncing", parent)?;
        }
    }
    Ok(())
}

pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>> {
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

pub(crate) fn read_config(root: &Path) -> Result<(Config, [u8; 32])> {
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
    Ok((config, vid))
}

/// Whether data directory `dir` (at `path`) is usable (see `datadir::check_legacy` for the
/// single default `data/` of a vault made before markers existed, whose marker is written
/// here when this process may write).
fn dir_state(
    config: &Config,
    io: &Arc<dyn Io>,
    may_write: bool,
    dir: u16,
    path: &Path,
) -> Option<Problem> {
    let legacy = datadir::is_legacy(&config.data_dirs);
    match datadir::check_legacy(path, &config.id, dir, legacy) {
        Ok(true) => None,
        Ok(false) => {
            if may_write && path.join("tmp").is_dir() {
                if let Err(e) = datadir::write_marker(&**io, path, &config.id, dir) {
                    tracing::debug!("{}: writing the data directory marker: {e}", path.display());
                }
            }
            None
        }
        Err(p) => Some(p),
    }
}

impl Repo {
    /// Create `root` (absent or empty) as a replica of the vault whose config and key files
    /// are given: same vault id, keys and chunker, so the same passphrase opens it. Its data
    /// lives in `root/data` whatever the source's data directories are.
    pub fn create_replica(
        root: &Path,
        config: &[u8],
        keys: Vec<(String, Vec<u8>)>,
        io: Arc<dyn Io>,
    ) -> Result<Repo> {
        let bad = |reason: String| Error::BadConfig {
            path: root.join("config"),
            reason,
        };
        let mut cfg: Config = serde_json::from_slice(config).map_err(|e| bad(e.to_string()))?;
        cfg.check().map_err(bad)?;
        cfg.vault_id().map_err(bad)?;
        if keys.is_empty() {
            return Err(bad("the source vault sent no key files".into()));
        }
        for (name, raw) in &keys {
            serde_json::from_slice::<KeyFile>(raw).map_err(|e| Error::BadKeyFile {
                path: root.join("keys").join(name),
                reason: e.to_string(),
            })?;
        }
        if root.exists() {
            let mut rd = std::fs::read_dir(root).ctx("listing", root)?;
            if rd.next().is_some() {
                return Err(Error::NotEmpty {
                    path: root.to_path_buf(),
                });
            }
        }
        cfg.data_dirs = vec![datadir::DEFAULT_DIR.into()];
        create_layout(root, &io, &cfg, keys)?;
        Repo::open(root, io)
    }

    /// Append a data directory (absolute, or relative to the vault) to the vault at `root`;
    /// returns its number. `tmp/` and its marker are made durable first, then `config` is
    /// replaced crash-safely (tmp, fsync, rename, fsync): a cut in between leaves a marked
    /// directory the config does not list, and repeating the command finishes the job. Only
    /// appends (`dir` numbers are stored in index parts). The directory must be absent or
    /// empty. Needs the vault to itself, since every process that has it open works from
    /// the old list: [`Error::Busy`] otherwise.
    pub fn add_data_dir(root: &Path, path: &Path, io: Arc<dyn Io>) -> Result<u16> {
        // Not a vault: say so before anything else.
        read_config(root)?;
        let lock_path = root.join("lock");
        let lock = File::open(&lock_path).ctx("opening lock file", &lock_path)?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(Error::Busy {
                path: root.to_path_buf(),
                what: "adding a data directory",
            });
        }
        // Read under the lock: the list this rewrites is the one every later open sees.
        let (mut config, _) = read_config(root)?;
        let entry = datadir::config_entry(path).map_err(Error::Invalid)?;
        if config.data_dirs.contains(&entry) {
            return Err(Error::Invalid(format!(
                "{entry} is already a data directory of {}",
                root.display()
            )));
        }
        let n = u16::try_from(config.data_dirs.len())
            .map_err(|_| Error::Invalid("too many data directories".into()))?;
        let mut resolved: Vec<PathBuf> = config
            .data_dirs
            .iter()
            .chain(std::iter::once(&entry))
            .map(|d| datadir::resolve(root, d))
            .collect();
        datadir::check_layout(root, &resolved).map_err(Error::Invalid)?;
        let new = resolved.pop().unwrap_or_default();
        datadir::check_fresh(&new, &config.id, n).map_err(Error::Invalid)?;
        create_data_dir(&io, root, &entry, &config.id, n)?;
        config.data_dirs.push(entry);
        let bytes =
            serde_json::to_vec_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))?;
        let tmp = root
            .join("tmp")
            .join(format!("config.{}", PackId::random().hex()));
        write_atomic(&*io, &tmp, &root.join("config"), bytes)
            .ctx("writing config", &root.join("config"))?;
        drop(lock);
        Ok(n)
    }

    /// Write the marker of data directory `dir` into its directory, which must be absent or
    /// empty: after its array was lost and replaced by a new, empty file system. Its packs
    /// stay missing (verify names them; a heal restores them from a replica or the remote);
    /// from now on the directory is usable again. Refused for a directory that holds
    /// anything, so a merely unmounted array is never papered over.
    pub fn mark_data_dir(root: &Path, dir: u16, io: Arc<dyn Io>) -> Result<PathBuf> {
        let (config, _) = read_config(root)?;
        let configured = config.data_dirs.get(dir as usize).ok_or_else(|| {
            Error::Invalid(format!(
                "{} has {} data director{}; there is no number {dir}",
                root.display(),
                config.data_dirs.len(),
                if config.data_dirs.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            ))
        })?;
        let path = datadir::resolve(root, configured);
        if datadir::check(&path, &config.id, dir).is_ok() {
            return Ok(path);
        }
        datadir::check_fresh(&path, &config.id, dir).map_err(Error::Invalid)?;
        create_data_dir(&io, root, configured, &config.id, dir)?;
        Ok(path)
    }

    /// The vault id (plaintext, in `config`).
    pub fn vault_id(&self) -> [u8; 32] {
        self.config.vault_id().unwrap_or_default()
    }

    /// The config file's bytes as stored.
    pub fn config_bytes(&self) -> Result<Vec<u8>> {
        let p = self.root.join("config");
        std::fs::read(&p).ctx("reading", &p)
    }

    /// Open a vault without its key: enough to list, reference-count, integrity-check,
    /// receive replicated blobs and collect garbage.
    pub fn open(root: &Path, io: Arc<dyn Io>) -> Result<Repo> {
        Ok(Self::open_with(root, io, |_| Ok(()))?.0)
    }

    /// Open, running `unlock` (the key derivation) after the config is read and before
    /// anything is changed, so a wrong secret leaves the vault untouched.
    pub(crate) fn open_with<T>(
        root: &Path,
        io: Arc<dyn Io>,
        unlock: impl FnOnce(&[u8; 32]) -> Result<T>,
    ) -> Result<(Repo, T)> {
        let (config, vid) = read_config(root)?;
        let lock_path = root.join("lock");
        let lock = File::open(&lock_path).ctx("opening lock file", &lock_path)?;
        let exclusive =
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok();
        let unlocked = unlock(&vid)?;
        // Registered before the condemned list and the index are read: a collector that
        // publishes its list after this point waits for us (section 10).
        let session = match Session::register(root) {
            Ok(s) => Some(s),
            Err(e) => {
                // A read-only vault (a transfer drive) cannot be collected either.
                tracing::debug!("no session registered in {}: {e}", root.display());
                None
            }
        };
        let data_dirs: Vec<PathBuf> = config
            .data_dirs
            .iter()
            .map(|d| datadir::resolve(root, d))
            .collect();
        let dir_problems = data_dirs
            .iter()
            .enumerate()
            .map(|(i, d)| dir_state(&config, &io, session.is_some(), i as u16, d))
            .collect();
        let placement = Placement::new(
            data_dirs.clone(),
            config.id.clone(),
            datadir::is_legacy(&config.data_dirs),
        );
        let mut repo = Repo {
            root: root.to_path_buf(),
            config,
            io,
            index: RwLock::new(Index::default()),
            data_dirs,
            dir_problems,
            placement,
            _lock: lock,
            session,
            packs_open: Mutex::new(HashMap::new()),
            open_problems: Vec::new(),
            condemned: HashSet::new(),
        };
        for (i, path, why) in repo.unavailable_data_dirs() {
            let msg = format!(
                "data directory {i} ({}) is unavailable: {why}; its packs cannot be read and \
                 new packs go to the other data directories",
                path.display()
            );
            tracing::warn!("{}: {msg}", repo.root.display());
            repo.open_problems.push(msg);
        }
        if repo.session.is_some() {
            // Write sessions need these; an older crash or a manual cleanup may have removed
            // them. Never in an unavailable data directory: that may be the empty mount
            // point of an array that is not mounted.
            let tmps: Vec<PathBuf> = std::iter::once(repo.tmp_dir())
                .chain(repo.available_data_dirs().map(|(_, d)| d.join("tmp")))
                .collect();
            for t in tmps {
                if !t.exists() {
                    repo.io.create_dir_all(&t).ctx("creating", &t)?;
                }
            }
        }
        repo.condemned = crate::gc::read_condemned(&repo.root)?;
        let (idx, problems) = repo.load_index()?;
        *repo.index_mut() = idx;
        repo.open_problems.extend(problems);
        if exclusive {
            repo.clean_interrupted()?;
            repo.adopt_orphans()?;
        }
        // Shared from here on: concurrent backups may run; cleanup needs exclusivity.
        rustix::fs::flock(&repo._lock, rustix::fs::FlockOperation::LockShared)
            .map_err(|e| Error::io("locking", &lock_path, e.into()))?;
        Ok((repo, unlocked))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.config
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

    /// Every configured data directory's path, by number (usable or not).
    pub fn data_dirs(&self) -> &[PathBuf] {
        &self.data_dirs
    }

    /// The data directories that were usable when the vault was opened: (number, path).
    pub fn available_data_dirs(&self) -> impl Iterator<Item = (u16, &PathBuf)> {
        self.data_dirs
            .iter()
            .zip(&self.dir_problems)
            .enumerate()
            .filter(|(_, (_, p))| p.is_none())
            .map(|(i, (d, _))| (i as u16, d))
    }

    /// The data directories that were unusable when the vault was opened: (number, path,
    /// why).
    pub fn unavailable_data_dirs(&self) -> Vec<(u16, PathBuf, String)> {
        self.data_dirs
            .iter()
            .zip(&self.dir_problems)
            .enumerate()
            .filter_map(|(i, (d, p))| p.as_ref().map(|p| (i as u16, d.clone(), p.to_string())))
            .collect()
    }

    /// Why data directory `dir` was unusable at open (`None`: usable).
    pub fn data_dir_problem(&self, dir: u16) -> Option<Problem> {
        match self.dir_problems.get(dir as usize) {
            Some(p) => p.clone(),
            None => Some(Problem::Unknown),
        }
    }

    /// True when some data directory was unusable at open: lookups then prefer copies on
    /// usable ones, dedup ignores the others, and backups check what they reuse.
    pub fn degraded(&self) -> bool {
        self.dir_problems.iter().any(Option::is_some)
    }

    /// Per data directory, why it is unusable: as found at open, else as found now.
    pub(crate) fn data_dir_problems_now(&self) -> Vec<Option<Problem>> {
        self.data_dirs
            .iter()
            .enumerate()
            .map(|(i, path)| {
                self.dir_problems[i]
                    .clone()
                    .or_else(|| dir_state(&self.config, &self.io, false, i as u16, path))
            })
            .collect()
    }

    /// Per data directory, whether it is usable now *and* was at open (a directory that
    /// came back meanwhile stays out until the next open, as the index treats it).
    pub(crate) fn usable_dirs_now(&self) -> Vec<bool> {
        self.data_dir_problems_now()
            .iter()
            .map(Option::is_none)
            .collect()
    }

    /// Per data directory, the packs the index parts place there and their bytes (from the
    /// parts' pack tables, not their entries; condemned packs left out; a pack two parts
    /// name counts twice, which only an interrupted adoption leaves behind). One entry per
    /// configured directory, plus any number the parts use beyond them.
    pub fn indexed_packs_per_dir(&self) -> Result<Vec<(u64, u64)>> {
        let dir = self.root.join("index");
        let mut out = vec![(0u64, 0u64); self.data_dirs.len()];
        for name in self.part_names()? {
            let packs = match index::part::read_part_packs(&dir.join(&name)) {
                Ok(Ok((p, _))) => p,
                // Damaged parts are reported by verify.
                Ok(Err(_)) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading index part", dir.join(&name), e)),
            };
            for p in packs.iter().filter(|p| !self.condemned.contains(&p.id)) {
                let d = p.dir as usize;
                if out.len() <= d {
                    out.resize(d + 1, (0, 0));
                }
                out[d].0 += 1;
                out[d].1 += p.len;
            }
        }
        Ok(out)
    }

    /// Every data directory as it is now (markers checked again, `statvfs`), with the packs
    /// the index places there.
    pub fn data_dir_report(&self) -> Result<Vec<datadir::DataDirInfo>> {
        let packs = self.indexed_packs_per_dir()?;
        Ok(self
            .data_dirs
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let problem = dir_state(&self.config, &self.io, false, i as u16, path);
                datadir::DataDirInfo {
                    dir: i as u16,
                    configured: self.config.data_dirs[i].clone(),
                    path: path.clone(),
                    space: datadir::space(path).ok(),
                    problem,
                    packs: packs[i].0,
                    pack_bytes: packs[i].1,
                }
            })
            .collect())
    }

    /// Use `probe` for free-space figures instead of `statvfs` (tests; simulations).
    pub fn set_space_probe(&self, probe: Arc<dyn SpaceProbe>) {
        self.placement.set_probe(probe);
    }

    /// The data directory for a new pack of about `expect` bytes: its number and the path of
    /// its `tmp/`, where the pack is written before it is renamed into place.
    pub(crate) fn place_pack(&self, expect: u64) -> Result<(u16, PathBuf)> {
        let d = self.placement.place(expect).map_err(Error::NoDataDir)?;
        Ok((d, self.data_dirs[d as usize].join("tmp")))
    }

    /// A write to a data directory failed: check the directories again before the next pack.
    pub(crate) fn placement_failed(&self) {
        self.placement.invalidate();
    }

    /// This process's session name, when one could be registered.
    pub(crate) fn session_name(&self) -> Option<&str> {
        self.session.as_ref().map(Session::name)
    }

    /// Packs a pending collection condemned: hidden from this session, and deleted once every
    /// older session has ended, so readers must not look at them.
    pub(crate) fn is_condemned(&self, pack: &PackId) -> bool {
        self.condemned.contains(pack)
    }

    /// The vault's key files (their KDF parameters; nothing secret).
    pub fn key_files(&self) -> Result<Vec<KeyFile>> {
        Ok(self
            .key_file_bytes()?
            .into_iter()
            .filter_map(|(_, raw)| serde_json::from_slice(&raw).ok())
            .collect())
    }

    /// The raw key files by name (wrapped keys; a replica needs them to be opened).
    pub fn key_file_bytes(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let dir = self.root.join("keys");
        let mut out = Vec::new();
        for name in list_dir(&dir)? {
            let path = dir.join(&name);
            let raw = std::fs::read(&path).ctx("reading key file", &path)?;
            serde_json::from_slice::<KeyFile>(&raw).map_err(|e| Error::BadKeyFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            out.push((name, raw));
        }
        Ok(out)
    }

    /// Problems found while opening that are not fatal: unavailable data directories
    /// (first), then damaged index parts.
    pub fn open_problems(&self) -> &[String] {
        &self.open_problems
    }

    /// The open problems about the index (those after the data directory warnings).
    pub(crate) fn index_open_problems(&self) -> &[String] {
        let n = self.dir_problems.iter().filter(|p| p.is_some()).count();
        &self.open_problems[n.min(self.open_problems.len())..]
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
        // The pools issue moves packs between data directories: search the usable ones.
        self.available_data_dirs()
            .map(|(d, _)| self.pack_path_in(d, &pack.id))
            .find(|c| c.exists())
            .unwrap_or(p)
    }

    /// The names of the index parts now in `index/`.
    fn part_names(&self) -> Result<BTreeSet<String>> {
        Ok(list_dir(&self.root.join("index"))?.into_iter().collect())
    }

    /// Open the index: the cache, brought up to date first when this process may write
    /// (waiting for a process that is updating it), plus an overlay of what it lacks.
    fn load_index(&self) -> Result<(Index, Vec<String>)> {
        let current = self.part_names()?;
        let budget = index::budget();
        let deadline = Instant::now() + CACHE_LOCK_WAIT;
        let mut tried = self.session.is_none();
        let view = loop {
            let view = index::cache::View::open(&self.root, budget)?;
            if tried || view.as_ref().is_some_and(|v| v.absorbed == current) {
                break view;
            }
            drop(view);
            match index::cache::refresh(&self.root, &current, budget, false) {
                Ok(Some(report)) => {
                    log_refresh(&self.root, &report);
                    tried = true;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    tracing::warn!(
                        "{}: the index cache stayed locked by another process; reading the \
                         parts it lacks into memory",
                        self.root.display()
                    );
                    tried = true;
                }
                Err(e) => {
                    tracing::warn!(
                        "{}: cannot update the index cache ({e}); reading the parts it lacks \
                         into memory",
                        self.root.display()
                    );
                    tried = true;
                }
            }
        };
        let (mut idx, problems) =
            Index::build(&self.root.join("index"), view, &current, &self.condemned)?;
        idx.set_unavailable_dirs(self.dir_problems.iter().map(Option::is_some).collect());
        Ok((idx, problems))
    }

    /// Absorb the index parts written since the cache was last updated (after a backup, a
    /// received snapshot or a collection), so the next open reads nothing into memory.
    /// When another process holds the cache, or updating fails, the next open does it; the
    /// error returned is only that of opening the index again.
    pub(crate) fn update_index_cache(&self) -> Result<()> {
        if self.session.is_none() {
            return Ok(());
        }
        self.with_index_closed(|| {
            let result = self
                .part_names()
                .and_then(|c| index::cache::refresh(&self.root, &c, index::budget(), false));
            match result {
                Ok(Some(r)) => log_refresh(&self.root, &r),
                Ok(None) => tracing::debug!("{}: index cache busy", self.root.display()),
                Err(e) => tracing::warn!("{}: updating the index cache: {e}", self.root.display()),
            }
            Ok(())
        })
    }

    /// Open the index again, so it sees the index parts written since (absorbed into the
    /// cache when this process may write).
    pub(crate) fn reload_index(&self) -> Result<()> {
        self.with_index_closed(|| Ok(()))
    }

    /// Run `f` with this process's index closed, then open it again: one memory budget
    /// holds either the open index or a writer updating the cache, not both. Lookups from
    /// other threads wait meanwhile; the calling thread must hold no guard of the index.
    fn with_index_closed<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut guard = self.index.write().unwrap_or_else(|e| e.into_inner());
        *guard = Index::default();
        let out = f();
        let (idx, _) = self.load_index()?;
        *guard = idx;
        out
    }

    /// Read every index part and check it (content against name, structure), and that the
    /// index answers for every blob a part names in a pack this session may read. Returns
    /// the problems (entries the cache lacks are summed up in one).
    pub fn check_index_parts(&self) -> Result<Vec<String>> {
        let dir = self.root.join("index");
        let mut problems = Vec::new();
        let mut lacking = 0u64;
        let mut first_lacking = None;
        for name in self.part_names()? {
            let idx = self.index();
            let visible = |packs: &[PackRef], pack: u32| {
                packs
                    .get(pack as usize)
                    .is_some_and(|p| idx.has_pack(&p.id))
            };
            // The pack table comes first in a part: read it, then look the entries up.
            let packs = match index::part::read_part_packs(&dir.join(&name)) {
                Ok(Ok((p, _))) => p,
                // Reported by the scan below.
                Ok(Err(_)) => Vec::new(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading index part", dir.join(&name), e)),
            };
            let (mut missing, mut first) = (0u64, None);
            let mut check = |(id, pack, ..): index::part::PartEntry| {
                if visible(&packs, pack) && !idx.contains(&id)? {
                    missing += 1;
                    first.get_or_insert(id);
                }
                Ok(())
            };
            match index::part::scan_part(&dir, &name, Some(&mut check)) {
                Ok(Ok(_)) => {
                    lacking += missing;
                    if let Some(id) = first {
                        first_lacking.get_or_insert((id, name.clone()));
                    }
                }
                Ok(Err(e)) => problems.push(format!("index part {name}: {e}")),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        if let Some((id, name)) = first_lacking {
            problems.push(format!(
                "index cache lacks {lacking} blob(s) the index parts name, e.g. {} of part \
                 {name}: run `vaultctl index rebuild`",
                id.hex()
            ));
        }
        Ok(problems)
    }

    /// The index cache on disk, and how it compares with the parts.
    pub fn index_cache_status(&self) -> Result<index::CacheStatus> {
        index::cache::status(&self.root, &self.part_names()?, index::budget())
    }

    /// Bring the index cache up to date with the index parts now, or (`rebuild`) build it
    /// anew from them. Waits while another process updates it. The open index is closed
    /// meanwhile (one budget holds either it or the refresh), then opened again.
    pub fn refresh_index_cache(&self, rebuild: bool) -> Result<index::RefreshReport> {
        self.with_index_closed(|| loop {
            let current = self.part_names()?;
            if let Some(report) =
                index::cache::refresh(&self.root, &current, index::budget(), rebuild)?
            {
                log_refresh(&self.root, &report);
                return Ok(report);
            }
            std::thread::sleep(Duration::from_millis(50));
        })
    }

    fn clean_interrupted(&self) -> Result<()> {
        let mut tmps = vec![self.tmp_dir()];
        tmps.extend(self.available_data_dirs().map(|(_, d)| d.join("tmp")));
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

    /// Every pack file in the usable data directories, as (data dir, pack id, path). An
    /// unusable one is never listed: it may be another vault's, or an empty mount point.
    pub fn packs_on_disk(&self) -> Result<Vec<(u16, PackId, PathBuf)>> {
        let mut out = Vec::new();
        for (d, dir) in self.available_data_dirs() {
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
                        out.push((d, id, subdir.join(name)));
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
    /// its index part). Broken ones are left for `verify` to report; condemned ones for the
    /// collection that condemned them.
    fn adopt_orphans(&mut self) -> Result<()> {
        let mut adopted = Vec::new();
        for (dir, id, path) in self.packs_on_disk()? {
            if self.index().has_pack(&id) || self.condemned.contains(&id) {
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
        self.write_index_bytes(index::encode_part(packs))
            .map(|_| ())
    }

    /// Durably write an encoded index part; returns its name.
    pub(crate) fn write_index_bytes(&self, bytes: Vec<u8>) -> Result<String> {
        let name = Id::digest(&bytes).hex();
        let dest = self.root.join("index").join(&name);
        write_atomic(&*self.io, &self.tmp_dir().join(&name), &dest, bytes)
            .ctx("writing index part", &dest)?;
        Ok(name)
    }

    fn pack_file(&self, pack: u32) -> Result<Arc<File>> {
        let mut open = self.packs_open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(&pack) {
            return Ok(f.clone());
        }
        let pref = self
            .index()
            .pack_ref(pack)
            .cloned()
            .ok_or_else(|| Error::CorruptIndex {
                name: "(memory)".into(),
                reason: format!("pack number {pack} out of range"),
            })?;
        let path = self.pack_path(&pref);
        let f = Arc::new(File::open(&path).map_err(|e| self.pack_open_error(&pref, &path, e))?);
        if open.len() > 256 {
            open.clear();
        }
        open.insert(pack, f.clone());
        Ok(f)
    }

    /// The error for a pack that cannot be opened: its data directory is unavailable, or
    /// the pack is missing from (or unreadable in) a usable one.
    pub(crate) fn pack_open_error(&self, pref: &PackRef, path: &Path, e: std::io::Error) -> Error {
        match self.data_dir_problem(pref.dir) {
            Some(p) => Error::PackUnavailable {
                pack: pref.id.hex(),
                dir: pref.dir,
                path: self
                    .data_dirs
                    .get(pref.dir as usize)
                    .cloned()
                    .unwrap_or_default(),
                reason: p.to_string(),
            },
            None => Error::CorruptPack {
                pack: pref.id.hex(),
                reason: format!(
                    "cannot open {} (data directory {}): {e}",
                    path.display(),
                    pref.dir
                ),
            },
        }
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
                pack: self.index().pack(loc.pack).id.hex(),
                reason: format!(
                    "cannot read {} bytes at offset {}: {e}",
                    loc.len, loc.offset
                ),
            })
    }

    /// The stored bytes of blob `id`, checked against its pack trailer digest.
    pub fn read_stored_checked(&self, id: &Id) -> Result<(Location, Vec<u8>)> {
        let loc = self.index().get(id)?.ok_or(Error::MissingBlob(*id))?;
        let mut buf = Vec::new();
        self.read_stored(id, &loc, &mut buf)?;
        Ok((loc, buf))
    }

    /// The ids a refs blob lists (refs blobs are plaintext; their id is checked).
    pub fn read_refs(&self, id: &Id) -> Result<Vec<Id>> {
        let loc = self.index().get(id)?.ok_or(Error::MissingBlob(*id))?;
        self.read_refs_at(id, &loc)
    }

    /// The ids the refs blob `id` at `loc` lists (checked against its id).
    pub(crate) fn read_refs_at(&self, id: &Id, loc: &Location) -> Result<Vec<Id>> {
        let mut stored = Vec::new();
        self.read_stored(id, loc, &mut stored)?;
        let pack = || self.index().pack(loc.pack).id.hex();
        let payload = crate::codec::refs_payload(&stored).map_err(|reason| Error::CorruptBlob {
            id: *id,
            pack: pack(),
            reason,
        })?;
        if Id::digest(payload) != *id {
            return Err(Error::CorruptBlob {
                id: *id,
                pack: pack(),
                reason: "refs blob does not match its id".into(),
            });
        }
        crate::refs::parse(payload).map_err(|reason| Error::CorruptBlob {
            id: *id,
            pack: pack(),
            reason,
        })
    }

    /// Every snapshot file, keyless: id, plaintext header, size. Oldest first.
    pub fn snapshot_files(&self) -> Result<(Vec<SnapshotFile>, Unreadable)> {
        let dir = self.root.join("snapshots");
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for name in list_dir(&dir)? {
            let bytes = match std::fs::read(dir.join(&name)) {
                Ok(b) => b,
                // Forgotten while we listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading snapshot", dir.join(&name), e)),
            };
            let id = Id::digest(&bytes);
            if id.hex() != name {
                bad.push((name, "content does not match the file name".into()));
                continue;
            }
            match snapshot::decode_header(&bytes) {
                Ok((header, _)) => good.push(SnapshotFile {
                    id,
                    header,
                    len: bytes.len() as u64,
                }),
                Err(e) => bad.push((name, e)),
            }
        }
        good.sort_by(|a, b| {
            a.header
                .time_ns
                .cmp(&b.header.time_ns)
                .then(a.id.cmp(&b.id))
        });
        Ok((good, bad))
    }

    /// The bytes of snapshot file `id`.
    pub fn read_snapshot_file(&self, id: &Id) -> Result<Vec<u8>> {
        let path = self.root.join("snapshots").join(id.hex());
        match std::fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::UnknownSnapshot(id.hex()))
            }
            Err(e) => Err(Error::io("reading snapshot", path, e)),
        }
    }

    /// Every blob id snapshot `header` references: its refs blobs and the ids they list.
    pub fn referenced(&self, header: &Header) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for r in &header.refs {
            out.push(*r);
            out.extend(self.read_refs(r)?);
        }
        Ok(out)
    }
}
