//! Replication status: what the last run of the service achieved (written by it) and the lag
//! of a vault behind its target (computed from the snapshots and the known-ids cache).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiervault_store::{Id, Repo};

use crate::cache::KnownCache;
use crate::error::{Error, Result};

/// Written by the service after every attempt (`replication/status.json` in the vault).
///
/// Read by vaultctl, vault-ingestd, vault-replicad's bus objects and alerts, and
/// vault-healthd's metrics (which parses it with its own tolerant struct). Unknown fields
/// are ignored rather than refused: a file written by a newer vault-replicad must still load
/// in an older reader, since a status that does not load reads as "never replicated" (and the
/// service would then start again from an empty record). Fields added later carry
/// `#[serde(default)]`, so files written before them still load.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
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
    /// When the attempts began to fail (the first failed attempt after a success, or ever);
    /// `None` while the last attempt succeeded. `last_success_ns` cannot stand in for it: the
    /// service only runs when there is something to send, so a success may be days old when
    /// the first attempt after it fails.
    #[serde(default)]
    pub failing_since_ns: Option<i64>,
    /// The vault's lag behind the target ([`Lag`]) as computed at `lag_computed_ns`.
    #[serde(default)]
    pub pending_snapshots: u64,
    #[serde(default)]
    pub oldest_pending_ns: Option<i64>,
    #[serde(default)]
    pub pending_bytes: u64,
    /// When the lag figures were computed; `None`: never (a file from before they were
    /// recorded, or the vault could not be read), so the figures above mean nothing.
    #[serde(default)]
    pub lag_computed_ns: Option<i64>,
}

impl RunStatus {
    pub fn path(vault: &Path) -> PathBuf {
        vault.join("replication").join("status.json")
    }

    pub fn load(vault: &Path) -> Option<RunStatus> {
        let b = std::fs::read(Self::path(vault)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// The lag figures, when they were ever computed.
    pub fn lag(&self) -> Option<Lag> {
        self.lag_computed_ns.map(|_| Lag {
            pending_snapshots: self.pending_snapshots,
            oldest_pending_ns: self.oldest_pending_ns,
            pending_bytes: self.pending_bytes,
        })
    }

    /// Records `lag` as computed at `at_ns`.
    pub fn set_lag(&mut self, lag: &Lag, at_ns: i64) {
        self.pending_snapshots = lag.pending_snapshots;
        self.oldest_pending_ns = lag.oldest_pending_ns;
        self.pending_bytes = lag.pending_bytes;
        self.lag_computed_ns = Some(at_ns);
    }

    /// Replaces the status file durably (write, fsync, rename, fsync of the directory): the
    /// lag and failure times in it drive alerts and metrics, so a power cut must leave the old
    /// file or the new one, never an empty one.
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
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Target {
            target: self.target.clone(),
            reason: format!("encoding the status: {e}"),
        })?;
        // 0640: the service's group (support tooling, the health service) reads it; it names
        // the target, which is nobody else's business.
        tiervault_sys::durable::write_atomic(&path, &bytes, 0o640)
            .map_err(|e| io("writing", &path, e))
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
    lag_with(repo, on_target, cache, &|| {})
}

/// [`lag`], calling `tick` after each pending snapshot: reading a large snapshot's references
/// takes a while, and the service pings its watchdog from `tick`.
pub fn lag_with(
    repo: &Repo,
    on_target: &HashSet<Id>,
    cache: &KnownCache,
    tick: &dyn Fn(),
) -> Result<Lag> {
    let (files, _) = repo.snapshot_files()?;
    let mut out = Lag::default();
    let mut counted: HashSet<Id> = HashSet::new();
    for f in files.iter().filter(|f| !on_target.contains(&f.id)) {
        tick();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_the_lag_fields_load_and_unknown_fields_are_ignored() {
        let old = r#"{"target":"/r","cache_key":"dir:/r","last_attempt_ns":5,
            "last_success_ns":4,"last_error":null,"on_target":["aa"]}"#;
        let s: RunStatus = serde_json::from_str(old).expect("an older file loads");
        assert_eq!(s.on_target, ["aa"]);
        assert_eq!((s.lag_computed_ns, s.lag()), (None, None));
        assert_eq!(s.failing_since_ns, None);
        let newer = r#"{"target":"/r","cache_key":"k","last_attempt_ns":5,
            "last_success_ns":null,"last_error":"down","on_target":[],
            "pending_snapshots":2,"oldest_pending_ns":1,"pending_bytes":10,
            "lag_computed_ns":5,"some_future_field":{"x":1}}"#;
        let s: RunStatus = serde_json::from_str(newer).expect("a newer file loads");
        assert_eq!(
            s.lag(),
            Some(Lag {
                pending_snapshots: 2,
                oldest_pending_ns: Some(1),
                pending_bytes: 10
            })
        );
    }

    #[test]
    fn save_and_load_round_trip_durably() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(RunStatus::load(dir.path()), None);
        let mut s = RunStatus {
            target: "/r".into(),
            last_attempt_ns: 7,
            failing_since_ns: Some(3),
            ..RunStatus::default()
        };
        s.set_lag(
            &Lag {
                pending_snapshots: 1,
                oldest_pending_ns: Some(2),
                pending_bytes: 3,
            },
            7,
        );
        s.save(dir.path()).expect("save");
        assert_eq!(RunStatus::load(dir.path()), Some(s));
        // Nothing but the status file is left in the directory (no temporary file).
        let names: Vec<_> = std::fs::read_dir(dir.path().join("replication"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["status.json"]);
    }
}
