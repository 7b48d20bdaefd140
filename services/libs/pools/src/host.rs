//! The narrow seam between the pool logic and the machine: what it observes (block disks,
//! md arrays, their file systems and mounts) and the operations it runs. The real
//! implementation (`real.rs`) reads sysfs and runs mdadm, wipefs, mkfs and mount; the fake
//! (`fake.rs`) simulates md semantics and injects faults for the unit tests.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ops::Op;

/// Everything the pool logic looks at, read in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    pub disks: Vec<BlockDisk>,
    pub arrays: Vec<MdArray>,
    /// `mkfs.xfs` is installed (else ext4 is used).
    pub have_xfs: bool,
}

/// A whole disk (not a partition, md or loop device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDisk {
    /// Kernel name: `sdc`, `nvme1n1`, `vdb`.
    pub name: String,
    pub serial: Option<String>,
    pub size_bytes: u64,
    pub usage: DiskUsage,
    /// What the kernel uses it (or a partition of it) for besides an md array we know:
    /// `mounted at /boot (sda1)`, `held by dm-0`, `swap`. Such a disk is never touched.
    pub busy: Vec<String>,
    /// Removable media or USB (a transfer drive): never made a spare on its own.
    pub removable: bool,
}

/// What a disk carries, from its signatures, the kernel's holders and the mount table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DiskUsage {
    /// No signature at all.
    Blank,
    /// An md superblock: a member (or spare) of the array with this name and UUID, which may
    /// or may not be assembled.
    MdMember {
        array_name: String,
        array_uuid: String,
    },
    /// Partition table, file system, LVM, LUKS... (what was found, with offsets).
    Data { found: Vec<String> },
}

/// An assembled (or inactive) md array and what the kernel says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MdArray {
    /// `md127`.
    pub dev: String,
    /// The short md name (`vault-data0`, without the `host:` part).
    pub name: String,
    pub uuid: String,
    /// `raid5`, `raid6`, `raid10`, ...
    pub level: String,
    pub raid_disks: u32,
    /// sysfs `array_state`: clear, inactive, readonly, read-auto, clean, active, ...
    pub array_state: String,
    /// sysfs `degraded`: members missing from the array.
    pub degraded: u32,
    /// sysfs `sync_action`: idle, resync, recover, check, repair, reshape, frozen.
    pub sync_action: String,
    /// sysfs `sync_completed` as (done, total) sectors while a sync runs.
    pub sync_completed: Option<(u64, u64)>,
    /// sysfs `sync_speed` in KiB/s while a sync runs.
    pub sync_speed_kib: Option<u64>,
    pub mismatch_cnt: u64,
    pub size_bytes: u64,
    pub members: Vec<MdMember>,
    pub fs: Option<FsInfo>,
    pub mount: Option<Mounted>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MdMember {
    /// Kernel name of the member disk (`sdc`).
    pub disk: String,
    /// Its slot in the array; `None` for a spare or a faulty member.
    pub slot: Option<u32>,
    /// sysfs `dev-*/state`: in_sync, faulty, spare, write_mostly, blocked, replacement, ...
    pub state: Vec<String>,
}

impl MdMember {
    pub fn has(&self, flag: &str) -> bool {
        self.state.iter().any(|s| s == flag)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsInfo {
    /// `xfs`, `ext4`, ...
    pub kind: String,
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mounted {
    pub at: PathBuf,
    pub total_bytes: u64,
    pub avail_bytes: u64,
}

impl Mounted {
    /// Percent of the file system in use, as `df` counts it (used / (used + available)).
    pub fn used_percent(&self) -> u32 {
        let used = self.total_bytes.saturating_sub(self.avail_bytes);
        if self.total_bytes == 0 {
            return 0;
        }
        ((used as u128 * 100).div_ceil(self.total_bytes as u128)) as u32
    }
}

impl Observed {
    pub fn disk_by_serial(&self, serial: &str) -> Option<&BlockDisk> {
        self.disks
            .iter()
            .find(|d| d.serial.as_deref() == Some(serial))
    }

    pub fn disk_by_name(&self, name: &str) -> Option<&BlockDisk> {
        self.disks.iter().find(|d| d.name == name)
    }

    pub fn array_by_name(&self, name: &str) -> Option<&MdArray> {
        self.arrays.iter().find(|a| a.name == name)
    }

    /// The serial of a disk by kernel name, or the name itself when it has none.
    pub fn serial_of(&self, disk: &str) -> String {
        self.disk_by_name(disk)
            .and_then(|d| d.serial.clone())
            .unwrap_or_else(|| disk.to_owned())
    }

    /// The assembled arrays `disk` is part of.
    pub fn holders_of(&self, disk: &str) -> Vec<&MdArray> {
        self.arrays
            .iter()
            .filter(|a| a.members.iter().any(|m| m.disk == disk))
            .collect()
    }
}

/// Why the machine could not be read or an operation failed. Names the command or file.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}`: cannot run: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// The machine as the pool logic sees it.
pub trait Host {
    /// Reads disks, arrays, file systems and mounts.
    fn observe(&self) -> Result<Observed, HostError>;
    /// Runs one operation (an mdadm, wipefs, mkfs or mount command, a file write).
    fn run(&self, op: &Op) -> Result<(), HostError>;
    /// A small text file (mdadm.conf, a mount unit); `None` when absent.
    fn read_file(&self, path: &Path) -> Result<Option<String>, HostError>;
}
