//! The pool service on D-Bus: name `org.tiervault.Pools1`, objects under
//! `/org/tiervault/Pools1` (an ObjectManager lists them), in the spirit of UDisks2's MDRaid:
//!
//! | path | interface | what |
//! |---|---|---|
//! | `/org/tiervault/Pools1` | `org.tiervault.Pools1.Manager` | provision, replace, scrub; the whole status as JSON |
//! | `…/arrays/<name>` | `org.tiervault.Pools1.Array` | one md array: state, sync progress and ETA, mismatches, fill level |
//! | `…/disks/<serial>` | `org.tiervault.Pools1.Disk` | one disk: array, state, slot |
//! | `…/alerts/<id>` | `org.tiervault.Alert1` | an alert, with `Acknowledge` |
//!
//! Objects read the service's latest status when asked; the [`Publisher`] (run by the
//! service's loop after every refresh) announces changes: objects added and removed, one
//! PropertiesChanged per object with just the changed values.

use std::collections::BTreeMap;
use std::sync::Arc;

use tiervault_bus::{path_element, prop, BusError, Caller, Mirror, Props};
use tiervault_pools::health::{ArrayStatus, DiskStatus, PoolStatus};
use zbus::interface;

use crate::service::Service;

pub const NAME: &str = "org.tiervault.Pools1";
pub const ROOT: &str = "/org/tiervault/Pools1";
pub const MANAGER_INTERFACE: &str = "org.tiervault.Pools1.Manager";
pub const ARRAY_INTERFACE: &str = "org.tiervault.Pools1.Array";
pub const DISK_INTERFACE: &str = "org.tiervault.Pools1.Disk";

pub fn array_path(name: &str) -> String {
    format!("{ROOT}/arrays/{}", path_element(name))
}

pub fn disk_path(serial: &str) -> String {
    format!("{ROOT}/disks/{}", path_element(serial))
}

fn array_props(a: &ArrayStatus) -> Props {
    Props::from([
        ("Device", prop(a.dev.clone())),
        ("Level", prop(a.level.clone())),
        ("State", prop(a.state.name())),
        ("RaidDisks", prop(a.raid_disks)),
        ("Degraded", prop(a.degraded)),
        ("SyncAction", prop(a.sync_action.clone())),
        ("SyncPercent", prop(a.sync_percent.unwrap_or(-1.0))),
        ("SyncEtaSeconds", prop(a.sync_eta_secs.unwrap_or(0))),
        ("MismatchCount", prop(a.mismatch_cnt)),
        ("Size", prop(a.size_bytes)),
        ("MountPoint", prop(a.mount.clone().unwrap_or_default())),
        ("UsedPercent", prop(a.used_percent.unwrap_or(0))),
    ])
}

fn disk_props(d: &DiskStatus) -> Props {
    Props::from([
        ("Device", prop(d.device.clone())),
        ("Array", prop(d.array.clone())),
        ("State", prop(d.state.name())),
        ("Slot", prop(d.slot.map_or(-1, |s| s as i32))),
        ("Size", prop(d.size_bytes)),
    ])
}

/// The worst array state: what `State` on the manager says in one word.
fn overall(status: &PoolStatus) -> &'static str {
    status
        .arrays
        .iter()
        .map(|a| a.state)
        .max()
        .map_or("unprovisioned", |s| s.name())
}

fn json_err(e: serde_json::Error) -> BusError {
    BusError::Failed(e.to_string())
}

pub struct Manager {
    svc: Arc<Service>,
}

impl Manager {
    pub fn new(svc: Arc<Service>) -> Manager {
        Manager { svc }
    }
}

/// The pool service. Errors are named `org.tiervault.Error.*`: InvalidArgument for a
/// refusal (a disk that carries data, an unknown serial; the message names the disk),
/// NotFound, Busy, Failed (a command failed; the message has its stderr).
#[interface(name = "org.tiervault.Pools1.Manager")]
impl Manager {
    /// The tier the pool was planned for.
    #[zbus(property(emits_changed_signal = "const"))]
    fn tier(&self) -> String {
        self.svc.tier.clone()
    }

    /// The worst state of any array: healthy, checking, resyncing, rebuilding, degraded,
    /// failed, missing; `unprovisioned` without arrays.
    #[zbus(property)]
    fn state(&self) -> String {
        self.svc
            .status()
            .as_ref()
            .map_or("unknown", overall)
            .to_owned()
    }

    /// The whole pool (arrays and disks) as one JSON document, as `vaultctl pool status
    /// --json` prints it.
    fn status(&self) -> Result<String, BusError> {
        let status = self
            .svc
            .status()
            .ok_or_else(|| BusError::Failed("the pool has not been read yet".into()))?;
        serde_json::to_string(&serde_json::json!({
            "tier": self.svc.tier,
            "state": overall(&status),
            "arrays": status.arrays,
            "disks": status.disks,
        }))
        .map_err(json_err)
    }

    /// Builds the pool from the plan (idempotent). `wipe` names the serials of disks that
    /// may be wiped although they carry data. Returns the operations (run, or with
    /// `dry_run` to be run) and what was already in place.
    async fn provision(
        &self,
        dry_run: bool,
        wipe: Vec<String>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(Vec<String>, Vec<String>), BusError> {
        let caller = Caller::identify(conn, &header).await;
        let report = self.svc.provision(&caller, dry_run, wipe)?;
        Ok((
            report.ops.iter().map(ToString::to_string).collect(),
            report.unchanged,
        ))
    }

    /// Replaces disk `old` (by serial) with disk `new`: a member in sync is hot-replaced
    /// (redundancy kept while `new` rebuilds), a faulty or missing one is rebuilt onto
    /// `new`. `wipe` allows `new` to carry data. Returns the commands run.
    /// InvalidArgument names the disk when either serial is unknown or `new` is refused.
    async fn replace(
        &self,
        old: String,
        new: String,
        wipe: bool,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<Vec<String>, BusError> {
        let caller = Caller::identify(conn, &header).await;
        self.svc.replace(&caller, &old, &new, wipe)
    }

    /// Starts a scrub (`check`) of array `name`; MismatchCount is set when it ends.
    /// NotFound when no array of that name is assembled, Busy while it syncs already.
    async fn scrub(
        &self,
        name: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), BusError> {
        let caller = Caller::identify(conn, &header).await;
        self.svc.scrub(&caller, &name, false).map(|_| ())
    }

    /// Stops a running scrub of array `name`.
    async fn stop_scrub(
        &self,
        name: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), BusError> {
        let caller = Caller::identify(conn, &header).await;
        self.svc.scrub(&caller, &name, true).map(|_| ())
    }
}

pub struct ArrayObject {
    svc: Arc<Service>,
    name: String,
}

impl ArrayObject {
    fn get<T>(&self, f: impl FnOnce(&ArrayStatus) -> T) -> zbus::fdo::Result<T> {
        self.svc
            .status()
            .and_then(|s| s.array(&self.name).map(f))
            .ok_or_else(|| zbus::fdo::Error::UnknownObject(format!("array {} is gone", self.name)))
    }
}

/// One md array. State: healthy, degraded, rebuilding, resyncing, checking, failed,
/// missing. SyncPercent is -1 and SyncEtaSeconds 0 when nothing syncs; UsedPercent is the
/// file system's fill level (0 when not mounted).
#[interface(name = "org.tiervault.Pools1.Array")]
impl ArrayObject {
    /// The md array name (`vault-ddb`, `vault-data0`, ...), also its /dev/md/ link and
    /// file-system label.
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }
    /// The kernel's md device (`md127`); empty when the array is not assembled.
    #[zbus(property)]
    fn device(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.dev.clone())
    }
    /// The RAID level as md names it: raid1, raid5, raid6, raid10.
    #[zbus(property)]
    fn level(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.level.clone())
    }
    /// The array's state: healthy; degraded (a member missing, nothing rebuilding);
    /// rebuilding (onto a spare); resyncing (bringing parity in step, e.g. after
    /// creation); checking (a scrub); failed (more members lost than the level
    /// survives); missing (not assembled).
    #[zbus(property)]
    fn state(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.state.name().to_owned())
    }
    /// Members the array is made of (spares not counted).
    #[zbus(property)]
    fn raid_disks(&self) -> zbus::fdo::Result<u32> {
        self.get(|a| a.raid_disks)
    }
    /// Members missing from the array (md's `degraded`).
    #[zbus(property)]
    fn degraded(&self) -> zbus::fdo::Result<u32> {
        self.get(|a| a.degraded)
    }
    /// md's `sync_action`: idle, resync, recover, check, repair, reshape, frozen.
    #[zbus(property)]
    fn sync_action(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.sync_action.clone())
    }
    /// Percent done of the running resync, rebuild or scrub; -1 when nothing syncs.
    #[zbus(property)]
    fn sync_percent(&self) -> zbus::fdo::Result<f64> {
        self.get(|a| a.sync_percent.unwrap_or(-1.0))
    }
    /// Seconds left of the running sync at its current speed; 0 when nothing syncs.
    #[zbus(property)]
    fn sync_eta_seconds(&self) -> zbus::fdo::Result<u64> {
        self.get(|a| a.sync_eta_secs.unwrap_or(0))
    }
    /// Sectors the last scrub found inconsistent (md's `mismatch_cnt`).
    #[zbus(property)]
    fn mismatch_count(&self) -> zbus::fdo::Result<u64> {
        self.get(|a| a.mismatch_cnt)
    }
    /// Usable size of the array in bytes.
    #[zbus(property)]
    fn size(&self) -> zbus::fdo::Result<u64> {
        self.get(|a| a.size_bytes)
    }
    /// Where its file system is mounted; empty when it is not.
    #[zbus(property)]
    fn mount_point(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.mount.clone().unwrap_or_default())
    }
    /// The file system's fill level as `df` counts it; 0 when not mounted. Alerts at 80,
    /// 90 and 95 %.
    #[zbus(property)]
    fn used_percent(&self) -> zbus::fdo::Result<u32> {
        self.get(|a| a.used_percent.unwrap_or(0))
    }

    /// Starts a scrub of this array (as Manager.Scrub).
    async fn scrub(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), BusError> {
        let caller = Caller::identify(conn, &header).await;
        self.svc.scrub(&caller, &self.name, false).map(|_| ())
    }
}

pub struct DiskObject {
    svc: Arc<Service>,
    serial: String,
}

impl DiskObject {
    fn get<T>(&self, f: impl FnOnce(&DiskStatus) -> T) -> zbus::fdo::Result<T> {
        self.svc
            .status()
            .and_then(|s| s.disk(&self.serial).map(f))
            .ok_or_else(|| zbus::fdo::Error::UnknownObject(format!("disk {} is gone", self.serial)))
    }
}

/// One disk of the pool (or a blank one that could become a spare). State: active, spare,
/// rebuilding, faulty, missing, removed, unused. Slot is -1 when it has none.
#[interface(name = "org.tiervault.Pools1.Disk")]
impl DiskObject {
    /// The disk's serial number: how the plan, Replace and alerts name it.
    #[zbus(property(emits_changed_signal = "const"))]
    fn serial(&self) -> String {
        self.serial.clone()
    }
    /// Its kernel name now (`sdc`, `nvme1n1`); empty when the disk is missing.
    #[zbus(property)]
    fn device(&self) -> zbus::fdo::Result<String> {
        self.get(|d| d.device.clone())
    }
    /// The array it belongs to (by the kernel, else by the plan); empty for an unused disk.
    #[zbus(property)]
    fn array(&self) -> zbus::fdo::Result<String> {
        self.get(|d| d.array.clone())
    }
    /// The disk's state: active (in sync), spare, rebuilding (a spare being rebuilt into
    /// a slot), faulty, missing (planned but not present), removed (present, out of its
    /// array), unused (a blank disk no array holds).
    #[zbus(property)]
    fn state(&self) -> zbus::fdo::Result<String> {
        self.get(|d| d.state.name().to_owned())
    }
    /// Its slot in the array (md's `slot`); -1 when it has none: a spare, a missing disk,
    /// a faulty member once md has taken it out.
    #[zbus(property)]
    fn slot(&self) -> zbus::fdo::Result<i32> {
        self.get(|d| d.slot.map_or(-1, |s| s as i32))
    }
    /// Size in bytes; 0 when missing.
    #[zbus(property)]
    fn size(&self) -> zbus::fdo::Result<u64> {
        self.get(|d| d.size_bytes)
    }
}

/// Announces changes of the pool on the bus; owned by the service's loop.
pub struct Publisher {
    svc: Arc<Service>,
    arrays: Mirror<String>,
    disks: Mirror<String>,
    manager: Mirror<()>,
}

impl Publisher {
    pub fn new(svc: Arc<Service>) -> Publisher {
        Publisher {
            svc,
            arrays: Mirror::new(ARRAY_INTERFACE),
            disks: Mirror::new(DISK_INTERFACE),
            manager: Mirror::new(MANAGER_INTERFACE),
        }
    }

    pub async fn publish(&mut self, conn: &zbus::Connection) -> zbus::Result<()> {
        if let Some(status) = self.svc.status() {
            let svc = self.svc.clone();
            let arrays: BTreeMap<String, _> = status
                .arrays
                .iter()
                .map(|a| (a.name.clone(), (array_path(&a.name), array_props(a))))
                .collect();
            self.arrays
                .sync(conn, arrays, |name| ArrayObject {
                    svc: svc.clone(),
                    name: name.clone(),
                })
                .await?;
            let disks: BTreeMap<String, _> = status
                .disks
                .iter()
                .map(|d| (d.serial.clone(), (disk_path(&d.serial), disk_props(d))))
                .collect();
            self.disks
                .sync(conn, disks, |serial| DiskObject {
                    svc: svc.clone(),
                    serial: serial.clone(),
                })
                .await?;
            // The manager object is registered at start; only its State changes.
            let manager = BTreeMap::from([(
                (),
                (
                    ROOT.to_owned(),
                    Props::from([("State", prop(overall(&status)))]),
                ),
            )]);
            self.manager
                .sync(conn, manager, |_| Manager::new(svc.clone()))
                .await?;
        }
        if self.svc.alerts.take_dirty() {
            self.svc.alerts.publish(conn).await?;
        }
        Ok(())
    }
}
