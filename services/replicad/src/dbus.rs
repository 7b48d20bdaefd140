//! The replication service on D-Bus: name `org.tiervault.Replication1`, an ObjectManager at
//! `/org/tiervault/Replication1`, and one object per target (the service has one today):
//!
//! | path | interface | what |
//! |---|---|---|
//! | `…/targets/0` | `org.tiervault.Replication1.Target` | the target, its last run, its lag, `ReplicateNow` |
//! | `…/alerts/<id>` | `org.tiervault.Alert1` | an alert (`replication.lag`, `replication.failing`), with `Acknowledge` |
//!
//! The values are read from what the replication loop leaves in the vault
//! (`replication/status.json`, `replication/request`, the `snapshots/` directory), not from
//! the loop itself: the loop stays as it is, and a run in progress never holds up a reply.
//! The [`Publisher`], run on its own thread, re-reads them every second and announces changes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tiervault_bus::{prop, usec, AlertBoard, Audit, BusError, Caller, Mirror, Props};
use tiervault_replicate::service;
use tiervault_replicate::status::RunStatus;
use zbus::interface;

pub const NAME: &str = "org.tiervault.Replication1";
pub const ROOT: &str = "/org/tiervault/Replication1";
pub const INTERFACE: &str = "org.tiervault.Replication1.Target";

pub fn target_path(index: u32) -> String {
    format!("{ROOT}/targets/{index}")
}

/// One replication target and where its state is read from.
pub struct Target {
    pub vault: PathBuf,
    /// The target as the configuration resolves it (URL and tenant, or directory).
    pub to: String,
    pub audit: Arc<Audit>,
    /// The newest replication request seen (unix ns): the loop removes the request file when
    /// the run starts, so this is what says a run was asked for and not yet recorded.
    requested: Mutex<i64>,
}

impl Target {
    pub fn new(vault: PathBuf, to: String, audit: Arc<Audit>) -> Target {
        Target {
            vault,
            to,
            audit,
            requested: Mutex::new(0),
        }
    }

    fn note_request(&self, at: i64) {
        let mut r = self.requested.lock().unwrap_or_else(|p| p.into_inner());
        *r = (*r).max(at);
    }

    fn view(&self) -> TargetView {
        if let Some(at) = std::fs::read_to_string(service::request_path(&self.vault))
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        {
            self.note_request(at);
        }
        let requested = *self.requested.lock().unwrap_or_else(|p| p.into_inner());
        TargetView::of(
            &self.to,
            RunStatus::load(&self.vault).unwrap_or_default(),
            &local_snapshots(&self.vault),
            requested,
        )
    }
}

/// The snapshot ids in the vault, from the file names alone (no decryption, no reading):
/// cheap enough for every second, and the same names the loop watches for changes.
fn local_snapshots(vault: &Path) -> Vec<String> {
    std::fs::read_dir(vault.join("snapshots"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                // Temporary files of a snapshot being written are not snapshots.
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()))
                .collect()
        })
        .unwrap_or_default()
}

/// A target's properties, computed once from the status file and the snapshot names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetView {
    pub target: String,
    pub last_attempt: u64,
    pub last_success: u64,
    pub last_error: String,
    pub snapshots_on_target: u32,
    pub snapshots_behind: u32,
    pub state: &'static str,
}

impl TargetView {
    /// State: `replicating` while a requested run (ReplicateNow, or the ingest service's
    /// Replicate) has not been recorded by an attempt that started after the request;
    /// `retrying` while the last attempt failed (the loop retries with backoff); else `idle`.
    /// A run the loop starts on its own for a new snapshot is not seen until it is recorded:
    /// it shows as SnapshotsBehind, then as the new LastAttempt.
    pub fn of(to: &str, status: RunStatus, local: &[String], requested_ns: i64) -> TargetView {
        let on: HashSet<&str> = status.on_target.iter().map(String::as_str).collect();
        let behind = local.iter().filter(|s| !on.contains(s.as_str())).count();
        let state = if requested_ns > status.last_attempt_ns {
            "replicating"
        } else if status.last_error.is_some() {
            "retrying"
        } else {
            "idle"
        };
        TargetView {
            target: to.to_string(),
            last_attempt: usec(status.last_attempt_ns),
            last_success: status.last_success_ns.map_or(0, usec),
            last_error: status.last_error.unwrap_or_default(),
            snapshots_on_target: u32::try_from(status.on_target.len()).unwrap_or(u32::MAX),
            snapshots_behind: u32::try_from(behind).unwrap_or(u32::MAX),
            state,
        }
    }

    pub fn props(&self) -> Props {
        Props::from([
            ("Target", prop(self.target.clone())),
            ("LastAttempt", prop(self.last_attempt)),
            ("LastSuccess", prop(self.last_success)),
            ("LastError", prop(self.last_error.clone())),
            ("SnapshotsOnTarget", prop(self.snapshots_on_target)),
            ("SnapshotsBehind", prop(self.snapshots_behind)),
            ("State", prop(self.state)),
        ])
    }
}

pub struct TargetObject {
    target: Arc<Target>,
    index: u32,
}

impl TargetObject {
    pub fn new(target: Arc<Target>, index: u32) -> TargetObject {
        TargetObject { target, index }
    }
}

/// Where vault-replicad sends the vault's snapshots. Times are microseconds since the epoch
/// (0 = never). SnapshotsOnTarget counts what the target held after the last successful run;
/// SnapshotsBehind the vault's snapshots it did not hold then. State is idle, replicating (a
/// run was asked for and has not started yet, or is running) or retrying (the last attempt
/// failed: LastError says why).
#[interface(name = "org.tiervault.Replication1.Target")]
impl TargetObject {
    /// Asks for a replication run now instead of at the next poll; returns at once. The run
    /// is seen as State replicating, then as a LastAttempt after the call.
    async fn replicate_now(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), BusError> {
        let caller = Caller::identify(conn, &header).await;
        let result = service::request_now(&self.target.vault);
        if let Ok(at) = result {
            self.target.note_request(at);
        }
        let shown = result
            .as_ref()
            .map(|at| format!("replication requested at {at}"))
            .map_err(|e| format!("requesting a run: {e}"));
        if let Err(e) = self.target.audit.record(
            &caller,
            &target_path(self.index),
            INTERFACE,
            "ReplicateNow",
            serde_json::json!({}),
            &shown,
        ) {
            tracing::error!("{e}");
        }
        tracing::info!("replication requested by {}", caller.label());
        shown.map(|_| ()).map_err(BusError::Failed)
    }

    /// The target as configured: a `tiervault://` URL, or a replica directory.
    #[zbus(property)]
    fn target(&self) -> String {
        self.target.to.clone()
    }
    #[zbus(property)]
    fn last_attempt(&self) -> u64 {
        self.target.view().last_attempt
    }
    #[zbus(property)]
    fn last_success(&self) -> u64 {
        self.target.view().last_success
    }
    /// Why the last attempt failed; empty when it succeeded.
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.target.view().last_error
    }
    #[zbus(property)]
    fn snapshots_on_target(&self) -> u32 {
        self.target.view().snapshots_on_target
    }
    #[zbus(property)]
    fn snapshots_behind(&self) -> u32 {
        self.target.view().snapshots_behind
    }
    #[zbus(property)]
    fn state(&self) -> String {
        self.target.view().state.to_string()
    }
}

/// Announces changes of the targets' state and of the alerts on the bus.
pub struct Publisher {
    target: Arc<Target>,
    targets: Mirror<u32>,
    alerts: AlertBoard,
}

impl Publisher {
    pub fn new(target: Arc<Target>, alerts: AlertBoard) -> Publisher {
        Publisher {
            target,
            targets: Mirror::new(INTERFACE),
            alerts,
        }
    }

    /// The first call registers the objects.
    pub async fn publish(&mut self, conn: &zbus::Connection) -> zbus::Result<()> {
        let current = BTreeMap::from([(0, (target_path(0), self.target.view().props()))]);
        let target = self.target.clone();
        self.targets
            .sync(conn, current, |i| TargetObject::new(target.clone(), *i))
            .await?;
        // The board is dirty when the alerts thread changed the store or an operator
        // acknowledged; the first publish finds it dirty and registers every alert.
        if self.alerts.take_dirty() {
            self.alerts.publish(conn).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(attempt: i64, success: Option<i64>, error: Option<&str>, on: &[&str]) -> RunStatus {
        RunStatus {
            target: "/r".into(),
            last_attempt_ns: attempt,
            last_success_ns: success,
            last_error: error.map(str::to_string),
            on_target: on.iter().map(|s| s.to_string()).collect(),
            ..RunStatus::default()
        }
    }

    #[test]
    fn lag_and_state_follow_the_status_and_the_snapshots() {
        let local = vec!["aa".to_string(), "bb".to_string()];
        let never = TargetView::of("/r", RunStatus::default(), &local, 0);
        assert_eq!(
            (never.snapshots_behind, never.last_success, never.state),
            (2, 0, "idle")
        );

        let ok = TargetView::of("/r", status(5_000, Some(6_000), None, &["aa"]), &local, 0);
        assert_eq!((ok.snapshots_on_target, ok.snapshots_behind), (1, 1));
        assert_eq!((ok.last_attempt, ok.last_success, ok.state), (5, 6, "idle"));

        let asked = TargetView::of(
            "/r",
            status(5_000, Some(6_000), None, &["aa"]),
            &local,
            7_000,
        );
        assert_eq!(asked.state, "replicating");

        let failed = TargetView::of(
            "/r",
            status(9_000, Some(6_000), Some("down"), &["aa"]),
            &local,
            7_000,
        );
        assert_eq!(
            (failed.state, failed.last_error.as_str()),
            ("retrying", "down")
        );
    }

    #[test]
    fn only_hex_names_count_as_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("snapshots")).expect("mkdir");
        for n in ["ab12", "cd34", "ab12.tmp"] {
            std::fs::write(dir.path().join("snapshots").join(n), b"").expect("write");
        }
        let mut s = local_snapshots(dir.path());
        s.sort();
        assert_eq!(s, ["ab12", "cd34"]);
    }
}
