//! The state of each array and disk, derived from what the kernel says (md sysfs) and what
//! the layout expects, and the alerts a change of state raises or clears. Pure functions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::host::{MdArray, Observed};
use crate::layout::{ArraySpec, Layout};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArrayState {
    Healthy,
    /// A member is missing and nothing is rebuilding it.
    Degraded,
    /// A spare is being rebuilt into the array (still degraded until it finishes).
    Rebuilding,
    /// Parity or mirrors being brought in step (after creation or an unclean stop).
    Resyncing,
    /// A scrub (`check`) is reading the whole array.
    Checking,
    /// More members lost than the level survives, or the array will not run.
    Failed,
    /// Not assembled (no disk of it present, or not yet started).
    Missing,
}

impl ArrayState {
    pub fn name(self) -> &'static str {
        match self {
            ArrayState::Healthy => "healthy",
            ArrayState::Degraded => "degraded",
            ArrayState::Rebuilding => "rebuilding",
            ArrayState::Resyncing => "resyncing",
            ArrayState::Checking => "checking",
            ArrayState::Failed => "failed",
            ArrayState::Missing => "missing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskState {
    Active,
    /// A hot spare waiting (or being rebuilt into the array: see `Rebuilding`).
    Spare,
    Rebuilding,
    Faulty,
    /// A disk of the plan that the machine does not have any more.
    Missing,
    /// Present, but not part of its array any more.
    Removed,
    /// Present and not in any array: a blank disk that could become a spare.
    Unused,
}

impl DiskState {
    pub fn name(self) -> &'static str {
        match self {
            DiskState::Active => "active",
            DiskState::Spare => "spare",
            DiskState::Rebuilding => "rebuilding",
            DiskState::Faulty => "faulty",
            DiskState::Missing => "missing",
            DiskState::Removed => "removed",
            DiskState::Unused => "unused",
        }
    }
}

/// An array as the service reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrayStatus {
    pub name: String,
    /// `md127`, or empty when not assembled.
    pub dev: String,
    pub level: String,
    pub state: ArrayState,
    pub raid_disks: u32,
    pub degraded: u32,
    pub sync_action: String,
    /// Percent done of the running resync, recovery or check.
    pub sync_percent: Option<f64>,
    /// Seconds left at the current speed.
    pub sync_eta_secs: Option<u64>,
    pub mismatch_cnt: u64,
    pub size_bytes: u64,
    pub mount: Option<String>,
    pub used_percent: Option<u32>,
}

/// A disk as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskStatus {
    pub serial: String,
    /// Kernel name, empty when missing.
    pub device: String,
    /// The array it belongs to by plan or by superblock, empty when none.
    pub array: String,
    pub state: DiskState,
    pub slot: Option<u32>,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus {
    pub arrays: Vec<ArrayStatus>,
    pub disks: Vec<DiskStatus>,
}

impl PoolStatus {
    pub fn array(&self, name: &str) -> Option<&ArrayStatus> {
        self.arrays.iter().find(|a| a.name == name)
    }
    pub fn disk(&self, serial: &str) -> Option<&DiskStatus> {
        self.disks.iter().find(|d| d.serial == serial)
    }
}

/// Whether the members still in the array can serve every block.
fn survives(spec_level: &str, md: &MdArray) -> bool {
    let n = md.raid_disks;
    if md.degraded == 0 {
        return true;
    }
    match spec_level {
        "raid5" | "raid4" => md.degraded <= 1,
        "raid6" => md.degraded <= 2,
        "raid1" => md.degraded < n,
        "raid10" => {
            // Near-2 layout: slots (0,1), (2,3), ... mirror each other; the array lives while
            // every pair keeps one in-sync member.
            let in_sync: Vec<u32> = md
                .members
                .iter()
                .filter(|m| m.has("in_sync") && !m.has("faulty"))
                .filter_map(|m| m.slot)
                .collect();
            (0..n / 2).all(|p| in_sync.contains(&(2 * p)) || in_sync.contains(&(2 * p + 1)))
        }
        "raid0" | "linear" => false,
        _ => md.degraded == 0,
    }
}

pub fn array_status(spec: Option<&ArraySpec>, name: &str, md: Option<&MdArray>) -> ArrayStatus {
    let Some(md) = md else {
        return ArrayStatus {
            name: name.to_owned(),
            dev: String::new(),
            level: spec.map(|s| s.level.name().to_owned()).unwrap_or_default(),
            state: ArrayState::Missing,
            raid_disks: spec.map_or(0, |s| s.members.len() as u32),
            degraded: 0,
            sync_action: String::new(),
            sync_percent: None,
            sync_eta_secs: None,
            mismatch_cnt: 0,
            size_bytes: 0,
            mount: None,
            used_percent: None,
        };
    };
    let running = !matches!(md.array_state.as_str(), "inactive" | "clear" | "");
    let state = if !running {
        if md.members.is_empty() {
            ArrayState::Missing
        } else {
            ArrayState::Failed
        }
    } else if !survives(&md.level, md) || md.array_state == "broken" {
        ArrayState::Failed
    } else {
        match md.sync_action.as_str() {
            "recover" => ArrayState::Rebuilding,
            "resync" | "reshape" => ArrayState::Resyncing,
            _ if md.degraded > 0 => ArrayState::Degraded,
            "check" | "repair" => ArrayState::Checking,
            _ => ArrayState::Healthy,
        }
    };
    let (sync_percent, sync_eta_secs) = match (md.sync_action.as_str(), md.sync_completed) {
        ("idle" | "frozen" | "", _) | (_, None) => (None, None),
        (_, Some((done, total))) if total > 0 => {
            let pct = (done as f64 * 100.0 / total as f64).min(100.0);
            let eta = md
                .sync_speed_kib
                .filter(|&s| s > 0)
                .map(|s| total.saturating_sub(done) * 512 / (s * 1024));
            (Some((pct * 10.0).round() / 10.0), eta)
        }
        _ => (None, None),
    };
    ArrayStatus {
        name: name.to_owned(),
        dev: md.dev.clone(),
        level: md.level.clone(),
        state,
        raid_disks: md.raid_disks,
        degraded: md.degraded,
        sync_action: md.sync_action.clone(),
        sync_percent,
        sync_eta_secs,
        mismatch_cnt: md.mismatch_cnt,
        size_bytes: md.size_bytes,
        mount: md.mount.as_ref().map(|m| m.at.display().to_string()),
        used_percent: md.mount.as_ref().map(|m| m.used_percent()),
    }
}

/// The whole pool: every array of the layout (and any other `vault-*` array found), every
/// disk of the layout, and blank disks that could become spares.
pub fn pool_status(layout: &Layout, obs: &Observed) -> PoolStatus {
    let mut arrays: Vec<ArrayStatus> = layout
        .arrays
        .iter()
        .map(|s| array_status(Some(s), &s.name, obs.array_by_name(&s.name)))
        .collect();
    for md in &obs.arrays {
        if layout.array(&md.name).is_none() && md.name.starts_with("vault-") {
            arrays.push(array_status(None, &md.name, Some(md)));
        }
    }
    let mut disks: BTreeMap<String, DiskStatus> = BTreeMap::new();
    // Disks in assembled arrays, as the kernel sees them.
    for md in &obs.arrays {
        for m in &md.members {
            let serial = obs.serial_of(&m.disk);
            let state = if m.has("faulty") {
                DiskState::Faulty
            } else if m.has("in_sync") {
                DiskState::Active
            } else if m.slot.is_some() {
                DiskState::Rebuilding
            } else {
                DiskState::Spare
            };
            let size = obs.disk_by_name(&m.disk).map_or(0, |d| d.size_bytes);
            disks.insert(
                serial.clone(),
                DiskStatus {
                    serial,
                    device: m.disk.clone(),
                    array: md.name.clone(),
                    state,
                    slot: m.slot,
                    size_bytes: size,
                },
            );
        }
    }
    // Disks of the plan that no array holds.
    for spec in &layout.arrays {
        for serial in spec.all_serials() {
            if disks.contains_key(serial) {
                continue;
            }
            let (device, state, size) = match obs.disk_by_serial(serial) {
                Some(d) => (d.name.clone(), DiskState::Removed, d.size_bytes),
                // A member gone from an array that is whole again was replaced and pulled:
                // listing it as missing for years would only hide real losses.
                None if spec.members.iter().any(|m| m == serial)
                    && obs
                        .array_by_name(&spec.name)
                        .is_some_and(|a| a.degraded == 0 && !a.members.is_empty()) =>
                {
                    continue
                }
                None => (String::new(), DiskState::Missing, 0),
            };
            disks.insert(
                serial.to_owned(),
                DiskStatus {
                    serial: serial.to_owned(),
                    device,
                    array: spec.name.clone(),
                    state,
                    slot: None,
                    size_bytes: size,
                },
            );
        }
    }
    // Blank disks nobody planned: candidates for a hot spare.
    for d in &obs.disks {
        let Some(serial) = &d.serial else { continue };
        if disks.contains_key(serial) || d.usage != crate::host::DiskUsage::Blank {
            continue;
        }
        if !d.busy.is_empty() {
            continue;
        }
        disks.insert(
            serial.clone(),
            DiskStatus {
                serial: serial.clone(),
                device: d.name.clone(),
                array: String::new(),
                state: DiskState::Unused,
                slot: None,
                size_bytes: d.size_bytes,
            },
        );
    }
    let disks: Vec<DiskStatus> = disks.into_values().collect();
    // A RAID5 is created degraded and recovers onto its last member: a "rebuild" with no
    // disk lost is the initial build, not a degradation.
    for a in &mut arrays {
        let lost = disks.iter().any(|d| {
            d.array == a.name
                && matches!(
                    d.state,
                    DiskState::Faulty | DiskState::Missing | DiskState::Removed
                )
        });
        if a.state == ArrayState::Rebuilding && !lost {
            a.state = ArrayState::Resyncing;
        }
    }
    PoolStatus { arrays, disks }
}

/// An alert to raise or clear, in the shared alert model's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertChange {
    Raise {
        class: &'static str,
        key: String,
        severity: u8,
        summary: String,
        detail: String,
    },
    Clear {
        class: &'static str,
        key: String,
    },
}

pub const CLASS_DEGRADED: &str = "pool.degraded";
pub const CLASS_FAILED: &str = "pool.failed";
pub const CLASS_REBUILT: &str = "pool.rebuild-finished";
pub const CLASS_FULL: &str = "pool.filesystem-full";
pub const CLASS_MISMATCH: &str = "pool.scrub-mismatch";
pub const CLASS_DISK: &str = "pool.disk-faulty";

/// File system fill levels and their severities (the issue's 80/90/95% → 5/7/9).
pub const FULL_LEVELS: [(u32, u8); 3] = [(95, 9), (90, 7), (80, 5)];

fn disks_of(status: &PoolStatus, array: &str, states: &[DiskState]) -> Vec<String> {
    status
        .disks
        .iter()
        .filter(|d| d.array == array && states.contains(&d.state))
        .map(|d| {
            if d.device.is_empty() {
                format!("{} ({})", d.serial, d.state.name())
            } else {
                format!("{} (/dev/{}, {})", d.serial, d.device, d.state.name())
            }
        })
        .collect()
}

/// The alerts that follow from going from `before` to `now` (`before` is `None` at start:
/// then only standing conditions are raised, and nothing is cleared that was not raised).
pub fn alert_changes(before: Option<&PoolStatus>, now: &PoolStatus) -> Vec<AlertChange> {
    let mut out = Vec::new();
    for a in &now.arrays {
        let key = a.name.clone();
        let prev = before.and_then(|b| b.array(&a.name));
        let bad = [DiskState::Faulty, DiskState::Missing, DiskState::Removed];
        let lost = disks_of(now, &a.name, &bad);
        let failed = a.state == ArrayState::Failed;
        let degraded = matches!(a.state, ArrayState::Degraded | ArrayState::Rebuilding);
        if failed {
            out.push(AlertChange::Raise {
                class: CLASS_FAILED,
                key: key.clone(),
                severity: 10,
                summary: format!(
                    "array {} ({}) has failed: {} of {} members lost; its data is unavailable",
                    a.name, a.level, a.degraded, a.raid_disks
                ),
                detail: format!(
                    "Lost or faulty disks: {}. The packs on this array are unavailable; \
                     `vaultctl verify` names the snapshots affected, and replication can \
                     bring them back once the array is rebuilt.",
                    if lost.is_empty() {
                        "unknown".into()
                    } else {
                        lost.join(", ")
                    }
                ),
            });
        } else {
            out.push(AlertChange::Clear {
                class: CLASS_FAILED,
                key: key.clone(),
            });
        }
        if degraded {
            let rebuilding = a.state == ArrayState::Rebuilding;
            out.push(AlertChange::Raise {
                class: CLASS_DEGRADED,
                key: key.clone(),
                severity: 8,
                summary: format!(
                    "array {} ({}) is degraded: {} of {} members missing{}",
                    a.name,
                    a.level,
                    a.degraded,
                    a.raid_disks,
                    match (rebuilding, a.sync_percent) {
                        (true, Some(p)) => format!(", rebuilding onto a spare ({p:.1}%)"),
                        (true, None) => ", rebuilding onto a spare".into(),
                        _ => ", no spare rebuilding".into(),
                    }
                ),
                detail: format!(
                    "Faulty, removed or missing disks: {}. Replace them with \
                     `vaultctl pool replace OLD_SERIAL NEW_SERIAL`, or insert a blank disk \
                     (it becomes a hot spare).",
                    if lost.is_empty() {
                        "none reported".into()
                    } else {
                        lost.join(", ")
                    }
                ),
            });
        } else if !failed {
            out.push(AlertChange::Clear {
                class: CLASS_DEGRADED,
                key: key.clone(),
            });
        }
        if let Some(p) = prev {
            if p.state == ArrayState::Rebuilding && a.state == ArrayState::Healthy {
                out.push(AlertChange::Raise {
                    class: CLASS_REBUILT,
                    key: key.clone(),
                    severity: 3,
                    summary: format!("array {} rebuilt: redundancy restored", a.name),
                    detail: String::new(),
                });
            }
            if p.state == ArrayState::Checking
                && a.state != ArrayState::Checking
                && a.mismatch_cnt > 0
            {
                out.push(AlertChange::Raise {
                    class: CLASS_MISMATCH,
                    key: key.clone(),
                    severity: 5,
                    summary: format!(
                        "scrub of {} found {} mismatched sectors",
                        a.name, a.mismatch_cnt
                    ),
                    detail: "Mismatches on a RAID5/6 array after a clean shutdown point to a \
                             disk returning wrong data; `vaultctl verify` checks the vault's \
                             own checksums."
                        .into(),
                });
            }
        }
        if let (Some(used), Some(mount)) = (a.used_percent, a.mount.as_deref()) {
            match FULL_LEVELS.iter().find(|(level, _)| used >= *level) {
                Some(&(level, severity)) => out.push(AlertChange::Raise {
                    class: CLASS_FULL,
                    key: key.clone(),
                    severity,
                    summary: format!(
                        "file system of {} ({mount}) is {used}% full (≥ {level}%)",
                        a.name
                    ),
                    detail: "Free space: forget old snapshots and collect garbage \
                             (`vaultctl forget`, `vaultctl gc`), or add capacity."
                        .into(),
                }),
                None => out.push(AlertChange::Clear {
                    class: CLASS_FULL,
                    key,
                }),
            }
        }
    }
    for d in &now.disks {
        let was = before.and_then(|b| b.disk(&d.serial)).map(|p| p.state);
        if d.state == DiskState::Faulty {
            out.push(AlertChange::Raise {
                class: CLASS_DISK,
                key: d.serial.clone(),
                severity: 7,
                summary: format!(
                    "disk {} (/dev/{}) in {} is faulty",
                    d.serial, d.device, d.array
                ),
                detail: format!(
                    "Replace it: `vaultctl pool replace {} NEW_SERIAL`.",
                    d.serial
                ),
            });
        } else if was == Some(DiskState::Faulty) || before.is_none() {
            out.push(AlertChange::Clear {
                class: CLASS_DISK,
                key: d.serial.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{MdMember, Mounted};

    fn member(disk: &str, slot: Option<u32>, state: &str) -> MdMember {
        MdMember {
            disk: disk.into(),
            slot,
            state: state.split(',').map(str::to_owned).collect(),
        }
    }

    fn raid5(degraded: u32, action: &str) -> MdArray {
        MdArray {
            dev: "md127".into(),
            name: "vault-data0".into(),
            uuid: "u".into(),
            level: "raid5".into(),
            raid_disks: 3,
            array_state: "clean".into(),
            degraded,
            sync_action: action.into(),
            members: vec![
                member("vdb", Some(0), "in_sync"),
                member("vdc", Some(1), "in_sync"),
                member("vdd", Some(2), "in_sync"),
            ],
            ..MdArray::default()
        }
    }

    #[test]
    fn states_follow_sysfs() {
        let st = |md: &MdArray| array_status(None, "x", Some(md)).state;
        assert_eq!(st(&raid5(0, "idle")), ArrayState::Healthy);
        assert_eq!(st(&raid5(1, "idle")), ArrayState::Degraded);
        assert_eq!(st(&raid5(1, "recover")), ArrayState::Rebuilding);
        assert_eq!(st(&raid5(2, "idle")), ArrayState::Failed);
        assert_eq!(st(&raid5(0, "check")), ArrayState::Checking);
        assert_eq!(st(&raid5(0, "resync")), ArrayState::Resyncing);
        let mut inactive = raid5(0, "idle");
        inactive.array_state = "inactive".into();
        assert_eq!(st(&inactive), ArrayState::Failed);
        assert_eq!(array_status(None, "x", None).state, ArrayState::Missing);
    }

    #[test]
    fn raid10_fails_only_when_a_mirror_pair_is_gone() {
        let mut md = raid5(2, "idle");
        md.level = "raid10".into();
        md.raid_disks = 4;
        md.members = vec![
            member("a", Some(0), "in_sync"),
            member("b", Some(1), "faulty"),
            member("c", Some(2), "faulty"),
            member("d", Some(3), "in_sync"),
        ];
        assert_eq!(
            array_status(None, "x", Some(&md)).state,
            ArrayState::Degraded
        );
        md.members[0] = member("a", Some(0), "faulty");
        md.degraded = 3;
        assert_eq!(array_status(None, "x", Some(&md)).state, ArrayState::Failed);
    }

    #[test]
    fn progress_and_eta_from_sync_completed_and_speed() {
        let mut md = raid5(1, "recover");
        md.sync_completed = Some((25_000, 100_000));
        md.sync_speed_kib = Some(1000);
        let s = array_status(None, "x", Some(&md));
        assert_eq!(s.sync_percent, Some(25.0));
        // 75,000 sectors × 512 B at 1000 KiB/s.
        assert_eq!(s.sync_eta_secs, Some(37));
    }

    fn status_of(md: MdArray) -> PoolStatus {
        let obs = Observed {
            arrays: vec![md],
            ..Observed::default()
        };
        pool_status(&Layout { arrays: vec![] }, &obs)
    }

    fn raised(changes: &[AlertChange]) -> Vec<(&'static str, u8)> {
        changes
            .iter()
            .filter_map(|c| match c {
                AlertChange::Raise {
                    class, severity, ..
                } => Some((*class, *severity)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn alerts_have_the_issue_severities() {
        let healthy = status_of(raid5(0, "idle"));
        assert!(raised(&alert_changes(None, &healthy)).is_empty());
        let mut failed_member = raid5(1, "recover");
        failed_member.members[1] = member("vdc", None, "faulty");
        let rebuilding = status_of(failed_member);
        let r = raised(&alert_changes(Some(&healthy), &rebuilding));
        assert!(r.contains(&(CLASS_DEGRADED, 8)), "{r:?}");
        assert!(r.contains(&(CLASS_DISK, 7)), "{r:?}");
        let back = status_of(raid5(0, "idle"));
        let r = raised(&alert_changes(Some(&rebuilding), &back));
        assert_eq!(r, [(CLASS_REBUILT, 3)]);
        let dead = status_of(raid5(2, "idle"));
        assert!(raised(&alert_changes(Some(&back), &dead)).contains(&(CLASS_FAILED, 10)));
    }

    #[test]
    fn a_new_raid5_recovering_onto_its_last_member_is_resyncing_not_degraded() {
        let mut md = raid5(1, "recover");
        md.members[2] = member("vdd", Some(2), "spare");
        let st = status_of(md);
        assert_eq!(st.arrays[0].state, ArrayState::Resyncing);
        assert!(raised(&alert_changes(None, &st)).is_empty());
    }

    #[test]
    fn fill_levels_map_to_5_7_9() {
        for (used, want) in [(79, None), (80, Some(5)), (90, Some(7)), (97, Some(9))] {
            let mut md = raid5(0, "idle");
            md.mount = Some(Mounted {
                at: "/srv/tiervault/data0".into(),
                total_bytes: 100,
                avail_bytes: 100 - used,
            });
            let got = raised(&alert_changes(None, &status_of(md)))
                .into_iter()
                .find(|(c, _)| *c == CLASS_FULL)
                .map(|(_, s)| s);
            assert_eq!(got, want, "{used}%");
        }
    }
}
