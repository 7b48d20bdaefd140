//! A simulated machine for the pool logic's tests: disks with serials and signatures, md
//! arrays with md's rules (a spare takes a failed member's place and rebuilds; too many
//! losses fail the array), file systems and mounts, files — and faults on demand.
//! Public so the service's tests can use it too; the real host is tested in the VM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::host::{
    BlockDisk, DiskUsage, FsInfo, Host, HostError, MdArray, MdMember, Mounted, Observed,
};
use crate::ops::Op;

#[derive(Debug, Default)]
struct State {
    obs: Observed,
    files: BTreeMap<PathBuf, String>,
    /// Arrays as their superblocks remember them while stopped, by UUID.
    stopped: BTreeMap<String, MdArray>,
    next_md: u32,
    next_uuid: u32,
    /// Operations run, as their command lines.
    log: Vec<String>,
    /// Fail the next operation whose command line contains this text.
    fail_on: Option<String>,
}

/// The simulated machine. Interior mutability: the logic takes `&dyn Host`.
#[derive(Debug, Default)]
pub struct FakeHost {
    state: Mutex<State>,
}

impl FakeHost {
    pub fn new(have_xfs: bool) -> FakeHost {
        let host = FakeHost::default();
        host.with(|s| {
            s.obs.have_xfs = have_xfs;
            s.next_md = 127;
        });
        host
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Plugs in a disk (blank unless `usage` says otherwise).
    pub fn insert_disk(&self, name: &str, serial: &str, size_bytes: u64, usage: DiskUsage) {
        self.with(|s| {
            s.obs.disks.push(BlockDisk {
                name: name.into(),
                serial: Some(serial.into()),
                size_bytes,
                usage,
                busy: Vec::new(),
                removable: false,
            })
        });
    }

    pub fn set_busy(&self, serial: &str, why: &str) {
        self.with(|s| {
            if let Some(d) = s
                .obs
                .disks
                .iter_mut()
                .find(|d| d.serial.as_deref() == Some(serial))
            {
                d.busy.push(why.into());
            }
        });
    }

    /// Pulls a disk out: gone from the machine and from its array (counted as degraded).
    pub fn pull_disk(&self, serial: &str) {
        self.with(|s| {
            let Some(i) = s
                .obs
                .disks
                .iter()
                .position(|d| d.serial.as_deref() == Some(serial))
            else {
                return;
            };
            let name = s.obs.disks.remove(i).name;
            for a in &mut s.obs.arrays {
                if let Some(m) = a.members.iter().position(|m| m.disk == name) {
                    let was_active = a.members[m].slot.is_some() && !a.members[m].has("faulty");
                    a.members.remove(m);
                    if was_active {
                        a.degraded += 1;
                    }
                }
            }
            take_spares(&mut s.obs);
        });
    }

    /// The kernel marks a member faulty (as `mdadm --fail` or an I/O error would).
    pub fn fail_disk(&self, serial: &str) {
        let name = self.with(|s| {
            s.obs
                .disk_by_serial(serial)
                .map(|d| d.name.clone())
                .unwrap_or_default()
        });
        self.with(|s| fail_member(&mut s.obs, &name));
    }

    /// Finishes every running resync/recovery/check (time passing).
    pub fn finish_syncs(&self) {
        self.with(|s| {
            for a in &mut s.obs.arrays {
                if a.sync_action == "recover" {
                    for m in &mut a.members {
                        if m.slot.is_some() && !m.has("in_sync") && !m.has("faulty") {
                            m.state = vec!["in_sync".into()];
                            a.degraded = a.degraded.saturating_sub(1);
                        }
                    }
                }
                a.sync_action = "idle".into();
                a.sync_completed = None;
            }
            take_spares(&mut s.obs);
        });
    }

    pub fn set_mismatch(&self, array: &str, count: u64) {
        self.with(|s| {
            if let Some(a) = s.obs.arrays.iter_mut().find(|a| a.name == array) {
                a.mismatch_cnt = count;
            }
        });
    }

    /// Stops every array (a reboot stand-in): superblocks stay on the disks.
    pub fn stop_all(&self) {
        self.with(|s| {
            for mut a in std::mem::take(&mut s.obs.arrays) {
                a.mount = None;
                s.stopped.insert(a.uuid.clone(), a);
            }
        });
    }

    pub fn set_usage(&self, array: &str, avail_percent: u64) {
        self.with(|s| {
            if let Some(m) = s
                .obs
                .arrays
                .iter_mut()
                .find(|a| a.name == array)
                .and_then(|a| a.mount.as_mut())
            {
                m.avail_bytes = m.total_bytes * avail_percent / 100;
            }
        });
    }

    pub fn fail_next(&self, command_contains: &str) {
        self.with(|s| s.fail_on = Some(command_contains.into()));
    }

    pub fn log(&self) -> Vec<String> {
        self.with(|s| s.log.clone())
    }

    pub fn file(&self, path: &Path) -> Option<String> {
        self.with(|s| s.files.get(path).cloned())
    }

    pub fn snapshot(&self) -> Observed {
        self.with(|s| s.obs.clone())
    }
}

fn fail_member(obs: &mut Observed, disk: &str) {
    for a in &mut obs.arrays {
        if let Some(m) = a.members.iter_mut().find(|m| m.disk == disk) {
            if m.has("faulty") {
                continue;
            }
            let was_active = m.slot.is_some();
            m.state = vec!["faulty".into()];
            m.slot = None;
            if was_active {
                a.degraded += 1;
            }
        }
    }
    take_spares(obs);
}

/// md puts a spare in the place of a lost member and starts recovering onto it, while the
/// array still runs.
fn take_spares(obs: &mut Observed) {
    for a in &mut obs.arrays {
        let max_lost = match a.level.as_str() {
            "raid5" => 1,
            "raid6" => 2,
            "raid10" => a.raid_disks / 2,
            _ => a.raid_disks.saturating_sub(1),
        };
        if a.degraded == 0 || a.degraded > max_lost || a.sync_action == "recover" {
            continue;
        }
        let used: Vec<u32> = a.members.iter().filter_map(|m| m.slot).collect();
        let Some(free) = (0..a.raid_disks).find(|s| !used.contains(s)) else {
            continue;
        };
        if let Some(spare) = a
            .members
            .iter_mut()
            .find(|m| m.slot.is_none() && m.has("spare"))
        {
            spare.slot = Some(free);
            spare.state = vec![];
            a.sync_action = "recover".into();
            a.sync_completed = Some((0, a.size_bytes / 512));
            a.sync_speed_kib = Some(10_000);
        }
    }
}

fn disk_name(p: &Path) -> String {
    p.to_string_lossy().trim_start_matches("/dev/").to_owned()
}

/// The array a path names: `/dev/md/NAME` or `/dev/mdN`.
fn array_mut<'o>(obs: &'o mut Observed, md: &Path) -> Result<&'o mut MdArray, HostError> {
    let name = disk_name(md).trim_start_matches("md/").to_owned();
    obs.arrays
        .iter_mut()
        .find(|a| a.name == name || a.dev == name)
        .ok_or_else(|| HostError::Other(format!("{}: no such device", md.display())))
}

impl Host for FakeHost {
    fn observe(&self) -> Result<Observed, HostError> {
        Ok(self.snapshot())
    }

    fn read_file(&self, path: &Path) -> Result<Option<String>, HostError> {
        Ok(self.file(path))
    }

    fn run(&self, op: &Op) -> Result<(), HostError> {
        self.with(|s| {
            let line = op.to_string();
            s.log.push(line.clone());
            if let Some(needle) = &s.fail_on {
                if line.contains(needle.as_str()) {
                    s.fail_on = None;
                    return Err(HostError::Command {
                        command: line,
                        status: "exit status: 1".into(),
                        stderr: "injected fault".into(),
                    });
                }
            }
            apply(s, op)
        })
    }
}

fn apply(s: &mut State, op: &Op) -> Result<(), HostError> {
    let missing = |what: &Path| HostError::Other(format!("{}: no such device", what.display()));
    match op {
        Op::Wipe { dev, .. } => {
            let name = disk_name(dev);
            let d = s
                .obs
                .disks
                .iter_mut()
                .find(|d| d.name == name)
                .ok_or_else(|| missing(dev))?;
            d.usage = DiskUsage::Blank;
        }
        Op::Create {
            name,
            level,
            members,
            spares,
            ..
        } => {
            let uuid = format!("fake-uuid-{:04}", s.next_uuid);
            s.next_uuid += 1;
            let mut md_members = Vec::new();
            let mut size = u64::MAX;
            for (i, p) in members.iter().chain(spares).enumerate() {
                let disk = disk_name(p);
                let d = s
                    .obs
                    .disks
                    .iter_mut()
                    .find(|d| d.name == disk)
                    .ok_or_else(|| missing(p))?;
                if d.usage != DiskUsage::Blank {
                    return Err(HostError::Other(format!(
                        "{}: mdadm would ask before overwriting {:?}",
                        p.display(),
                        d.usage
                    )));
                }
                d.usage = DiskUsage::MdMember {
                    array_name: name.clone(),
                    array_uuid: uuid.clone(),
                };
                size = size.min(d.size_bytes);
                let active = i < members.len();
                md_members.push(MdMember {
                    disk,
                    slot: active.then_some(i as u32),
                    state: vec![if active { "in_sync" } else { "spare" }.into()],
                });
            }
            let data = match level.as_str() {
                "raid5" => members.len() as u64 - 1,
                "raid6" => members.len() as u64 - 2,
                "raid10" => members.len() as u64 / 2,
                _ => 1,
            };
            let dev = format!("md{}", s.next_md);
            s.next_md -= 1;
            s.obs.arrays.push(MdArray {
                dev,
                name: name.clone(),
                uuid,
                level: level.clone(),
                raid_disks: members.len() as u32,
                array_state: "clean".into(),
                sync_action: "resync".into(),
                sync_completed: Some((0, size / 512)),
                size_bytes: size.saturating_mul(data),
                members: md_members,
                ..MdArray::default()
            });
        }
        Op::Assemble { uuid, .. } => {
            let mut a = s
                .stopped
                .remove(uuid)
                .ok_or_else(|| HostError::Other(format!("no array with UUID {uuid}")))?;
            a.dev = format!("md{}", s.next_md);
            s.next_md -= 1;
            s.obs.arrays.push(a);
        }
        Op::Mkfs { dev, kind, .. } => {
            let a = array_mut(&mut s.obs, dev)?;
            a.fs = Some(FsInfo {
                kind: kind.name().into(),
                label: Some(a.name.clone()),
            });
        }
        Op::Mount { dev, at, .. } => {
            let a = array_mut(&mut s.obs, dev)?;
            a.mount = Some(Mounted {
                at: at.clone(),
                total_bytes: a.size_bytes.max(1),
                avail_bytes: a.size_bytes.max(1),
            });
        }
        Op::WriteFile { path, text, .. } => {
            s.files.insert(path.clone(), text.clone());
        }
        Op::Link { path, target } => {
            s.files
                .insert(path.clone(), format!("-> {}", target.display()));
        }
        Op::AddSpare { md, dev } => {
            let disk = disk_name(dev);
            let name = disk_name(md).trim_start_matches("md/").to_owned();
            let d = s
                .obs
                .disks
                .iter_mut()
                .find(|d| d.name == disk)
                .ok_or_else(|| missing(dev))?;
            let a = s
                .obs
                .arrays
                .iter_mut()
                .find(|a| a.name == name || a.dev == name)
                .ok_or_else(|| missing(md))?;
            d.usage = DiskUsage::MdMember {
                array_name: a.name.clone(),
                array_uuid: a.uuid.clone(),
            };
            a.members.push(MdMember {
                disk,
                slot: None,
                state: vec!["spare".into()],
            });
            take_spares(&mut s.obs);
        }
        Op::Remove { md, dev } => {
            let disk = disk_name(dev);
            let a = array_mut(&mut s.obs, md)?;
            let i = a
                .members
                .iter()
                .position(|m| m.disk == disk && (m.has("faulty") || m.has("spare")))
                .ok_or_else(|| {
                    HostError::Other(format!(
                        "{}: not faulty or spare in {}",
                        dev.display(),
                        a.name
                    ))
                })?;
            a.members.remove(i);
        }
        Op::Fail { dev, .. } => fail_member(&mut s.obs, &disk_name(dev)),
        Op::Replace { md, old, new } => {
            // Simplified: the new disk takes the old one's slot at once; the old is faulty.
            let (old, new) = (disk_name(old), disk_name(new));
            let a = array_mut(&mut s.obs, md)?;
            let slot = a
                .members
                .iter()
                .find(|m| m.disk == old)
                .and_then(|m| m.slot);
            for m in &mut a.members {
                if m.disk == old {
                    m.slot = None;
                    m.state = vec!["faulty".into()];
                } else if m.disk == new {
                    m.slot = slot;
                    m.state = vec!["in_sync".into()];
                }
            }
        }
        Op::SyncAction { dev, action } => {
            let a = s
                .obs
                .arrays
                .iter_mut()
                .find(|a| &a.dev == dev)
                .ok_or_else(|| HostError::Other(format!("{dev}: no such array")))?;
            a.sync_action = action.clone();
            if action == "check" {
                a.mismatch_cnt = 0;
            }
        }
    }
    Ok(())
}
