//! `org.tiervault.Ingest1.Snapshot`: a snapshot in the vault, as `vaultctl snapshots` shows it.

use std::sync::Arc;

use tiervault_bus::{prop, usec, Props};
use tiervault_store::Snapshot;
use zbus::interface;

use crate::service::Service;

pub const INTERFACE: &str = "org.tiervault.Ingest1.Snapshot";

/// A snapshot never changes; its properties are announced once, when it appears.
pub fn props(s: &Snapshot) -> Props {
    Props::from([("Id", prop(s.id.hex()))])
}

pub struct SnapshotObject {
    svc: Arc<Service>,
    hex: String,
}

impl SnapshotObject {
    pub fn new(svc: Arc<Service>, hex: &str) -> SnapshotObject {
        SnapshotObject {
            svc,
            hex: hex.to_string(),
        }
    }

    fn get<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> zbus::fdo::Result<T> {
        let (all, _) = self.svc.snapshots();
        all.iter()
            .find(|s| s.id.hex() == self.hex)
            .map(f)
            .ok_or_else(|| {
                zbus::fdo::Error::UnknownObject(format!("snapshot {} is gone", self.hex))
            })
    }
}

/// A snapshot: its full Id, Time (microseconds since the epoch), where it came from
/// (Hostname, Username, Paths, Kind `tree` or `stream`), its size (Files, Dirs, Bytes,
/// StoredBytes = new bytes it added to the vault), the entries it could not read
/// (SkippedItems) and the backup job that made it (empty when not known).
#[interface(name = "org.tiervault.Ingest1.Snapshot")]
impl SnapshotObject {
    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> String {
        self.hex.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn time(&self) -> zbus::fdo::Result<u64> {
        self.get(|s| usec(s.header.time_ns))
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn hostname(&self) -> zbus::fdo::Result<String> {
        self.get(|s| s.body.hostname.clone())
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn username(&self) -> zbus::fdo::Result<String> {
        self.get(|s| s.body.username.clone())
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn paths(&self) -> zbus::fdo::Result<Vec<String>> {
        self.get(|s| {
            s.body
                .paths
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn kind(&self) -> zbus::fdo::Result<String> {
        self.get(|s| s.body.kind.clone())
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn files(&self) -> zbus::fdo::Result<u64> {
        self.get(|s| s.body.summary.files)
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn dirs(&self) -> zbus::fdo::Result<u64> {
        self.get(|s| s.body.summary.dirs)
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn bytes(&self) -> zbus::fdo::Result<u64> {
        self.get(|s| s.body.summary.bytes)
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn stored_bytes(&self) -> zbus::fdo::Result<u64> {
        self.get(|s| s.body.summary.stored_bytes)
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn skipped_items(&self) -> zbus::fdo::Result<u64> {
        self.get(|s| s.body.summary.skipped)
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn backup_job(&self) -> String {
        self.svc.job_of_snapshot(&self.hex)
    }
}
