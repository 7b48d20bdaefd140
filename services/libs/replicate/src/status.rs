//! Replication status: what the last run of the service achieved (written by it) and the lag
//! of a vault behind its target (computed from the snapshots and the known-ids cache).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiervault_store::{Id, Repo};

use crate::cache::KnownCache;
use crate::error::{Error, Result};

/// Written by the service after every attempt (`replication/status.json` in the vault).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RunStatus {
    /// The target as the service names it (URL and tenant, or directory).
    pub target: String,
    /// Key of the target's known-ids cache (see `KnownCache::path_for`).
    pub cache_key: String,
    pub last_attempt_ns: i64,
    pub last_success_ns: Option<i64>,
    pub last_error: Option<String>,
    /// Snapshots the target held after the last successful run (hex ids).
    pub on_target: Vec<String>,
}

impl RunStatus {
    pub fn path(vault: &Path) -> PathBuf {
        vault.join("replication").join("status.json")
    }

    pub fn load(vault: &Path) -> Option<RunStatus> {
        let b = std::fs::read(Self::path(vault)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Replace the status file (tmp + rename).
    pub fn save(&self, vault: &Path) -> Result<()> {
        let path = Self::path(vault);
        let io = |op, p: &Path, source| Error::Io {
            op,
            path: p.to_path_buf(),
            source,
        };
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| io("creating", d, e))?;
        }
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Target {
            target: self.target.clone(),
            reason: format!("encoding the status: {e}"),
        })?;
        std::fs::write(&tmp, bytes).map_err(|e| io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("renaming", &path, e))
    }
}

/// How far a vault is behind its target.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Lag {
    pub pending_snapshots: u64,
    /// Time of the oldest snapshot not yet on the target (ns), if any.
    pub oldest_pending_ns: Option<i64>,
    /// Stored bytes of blobs the pending snapshots reference that the target is not known
    /// to hold (an upper bound: the target may hold some through another snapshot).
    pub pending_bytes: u64,
}

/// The lag of `repo` behind a target that held `on_target` after its last run.
pub fn lag(repo: &Repo, on_target: &HashSet<Id>, cache: &KnownCache) -> Result<Lag> {
    let (files, _) = repo.snapshot_files()?;
    let mut out = Lag::default();
    let mut counted: HashSet<Id> = HashSet::new();
    for f in files.iter().filter(|f| !on_target.contains(&f.id)) {
        out.pending_snapshots += 1;
        out.oldest_pending_ns = Some(
            out.oldest_pending_ns
                .map_or(f.header.time_ns, |t| t.min(f.header.time_ns)),
        );
        for id in repo.referenced(&f.header)? {
            if cache.contains(&id) || !counted.insert(id) {
                continue;
            }
            if let Some(loc) = repo.index().get(&id)? {
                out.pending_bytes += loc.len as u64;
            }
        }
    }
    Ok(out)
}
