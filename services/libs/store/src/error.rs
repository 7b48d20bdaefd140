//! The store's error type.
//!
//! Policy: every variant names what was at fault (a path, a pack, a snapshot, a blob id) so the
//! CLI can print one line that an operator can act on. `Display` never repeats the `#[source]`.
//! `is_damage()` separates "the vault's bytes are wrong" from "the request or the machine is".

use std::path::PathBuf;

use crate::id::Id;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {op}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a vault (no readable config file)")]
    NotAVault(PathBuf),
    #[error("{path}: refusing to create a vault in a non-empty directory")]
    NotEmpty { path: PathBuf },
    #[error("{path}: unsupported vault config: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("wrong passphrase or key file: no key in {0} opens this vault")]
    WrongKey(PathBuf),
    #[error("{0}")]
    NoKey(String),
    #[error("{path}: malformed key file: {reason}")]
    BadKeyFile { path: PathBuf, reason: String },
    #[error("pack {pack}: {reason}")]
    CorruptPack { pack: String, reason: String },
    #[error("blob {id} in pack {pack}: {reason}")]
    CorruptBlob {
        id: Id,
        pack: String,
        reason: String,
    },
    /// The pack's data directory is unusable (not mounted, wrong marker): the pack may be
    /// intact on an array that is not there now.
    #[error(
        "pack {pack} is on data directory {dir} ({}), which is unavailable: {reason}",
        path.display()
    )]
    PackUnavailable {
        pack: String,
        dir: u16,
        path: PathBuf,
        reason: String,
    },
    /// Every data directory is unusable: nothing can be written.
    #[error("no data directory can take new packs: {0}")]
    NoDataDir(String),
    /// An operation that needs the vault's exclusive lock found it open elsewhere.
    #[error("{path}: {what} needs the vault to itself, but another process has it open (stop the services and try again)")]
    Busy { path: PathBuf, what: &'static str },
    #[error("blob {0} is referenced but not in the index")]
    MissingBlob(Id),
    #[error("index part {name}: {reason}")]
    CorruptIndex { name: String, reason: String },
    /// The index cache (`index.cache/`) failed; the message names its file. Damage is
    /// repaired by `vaultctl index rebuild` (the cache is derived from the index parts).
    #[error("index cache: {0}")]
    IndexCache(tiervault_chunkindex::Error),
    #[error("snapshot {name}: {reason}")]
    CorruptSnapshot { name: String, reason: String },
    #[error("tree {id}: {reason}")]
    CorruptTree { id: Id, reason: String },
    #[error("no snapshot matches {0:?}")]
    UnknownSnapshot(String),
    /// "latest" narrowed to a path that no snapshot holds; `hint` says what the newest holds.
    #[error("no snapshot holds {path:?}: {hint}")]
    NoSnapshotHolds { path: String, hint: String },
    #[error("snapshot prefix {prefix:?} is ambiguous: it matches {count} snapshots")]
    AmbiguousSnapshot { prefix: String, count: usize },
    #[error("{path:?} is not in snapshot {snapshot}")]
    NoSuchPath { snapshot: String, path: String },
    #[error("{path:?} in snapshot {snapshot} is not a regular file")]
    NotAFile { snapshot: String, path: String },
    #[error("two backup paths share the base name {name:?}: {a} and {b}")]
    DuplicateBaseName {
        name: String,
        a: PathBuf,
        b: PathBuf,
    },
    #[error("{path}: restore target is not empty (use --overwrite to replace files in it)")]
    TargetNotEmpty { path: PathBuf },
    #[error("standard input ended after {got} of the {expected} bytes announced")]
    TruncatedInput { got: u64, expected: u64 },
    #[error("received blob {id} rejected: {reason}")]
    BadBlob { id: Id, reason: String },
    #[error("snapshot {id} references {count} blob(s) this vault does not hold, e.g. {first}")]
    MissingBlobs { id: String, count: usize, first: Id },
    #[error("a garbage collection is in progress in {0}; try again when it has finished")]
    GcPending(PathBuf),
    #[error("another garbage collection is running in {0}")]
    GcRunning(PathBuf),
    /// An include or exclude pattern of a backup filter that does not compile.
    #[error("invalid pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// The caller's cancel flag stopped a backup; no snapshot was written.
    #[error("backup cancelled")]
    Cancelled,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("{0}")]
    Crypto(&'static str),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True for an I/O error saying the file is gone (removed by another process meanwhile).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// True when the vault's stored bytes are wrong (as opposed to a bad request or I/O failure).
    pub fn is_damage(&self) -> bool {
        if let Error::IndexCache(e) = self {
            return e.is_damage();
        }
        matches!(
            self,
            Error::CorruptPack { .. }
                | Error::PackUnavailable { .. }
                | Error::CorruptBlob { .. }
                | Error::MissingBlob(_)
                | Error::CorruptIndex { .. }
                | Error::CorruptSnapshot { .. }
                | Error::CorruptTree { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach the path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
