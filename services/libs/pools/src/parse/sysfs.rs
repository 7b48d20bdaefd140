//! An md array's sysfs directory (`/sys/block/md127/md/`) and a block device's family
//! (partitions, holders) in `/sys/class/block`.
//!
//! Two layers: [`read_raw_md_sysfs`] reads the attribute files into a [`RawMdSysfs`] (the
//! only I/O here, from a directory it is given), and [`parse_md_sysfs`] turns their strings
//! into an [`MdSysfs`]; [`read_md_sysfs`] does both. The single-attribute parsers
//! ([`parse_array_state`], [`parse_sync_completed`], [`parse_dev_state`], ...) are public
//! for a watcher that polls one file.
//!
//! What the captured states read (`testdata/md/*/sysfs.*`; one `path=value` line per
//! attribute, `path -> target` per link):
//!
//! | state | array_state | degraded | sync_action | sync_completed | members |
//! |---|---|---|---|---|---|
//! | RAID5 just created (recovering onto its last member) | clean | 1 | recover | `0 / 126976` | new member `spare` with its slot, the hot spare `spare` with slot `none` |
//! | RAID6/RAID10 just created | clean | 0 | resync | `12032 / 126976` (RAID10: of 253952) | `in_sync` |
//! | clean | clean | 0 | idle | none | `in_sync`; spare `spare`, slot `none` |
//! | member failed, rebuilding onto the spare | clean | 1 | recover | `0 / 126976` (RAID5, just started), `8064 / 126976` (RAID10) | failed `faulty` slot `none`; spare `spare` with the slot it rebuilds |
//! | rebuilt, degraded without spare | clean | 0 / 1 | idle | none | `faulty` until removed |
//! | RAID5 with 2 failed members | **write-pending** | 2 | idle | none | both `faulty`; one keeps its slot |
//! | check | clean | 0 | check | `5120 / 126976` | `in_sync`; `mismatch_cnt` 0 |
//! | inactive (incremental, 1 of 5) | inactive | (absent) | (absent) | (absent) | `spare`, slot `none`; level and raid_disks empty, uuid all zeros |
//! | read-only / auto-read-only | readonly / read-auto | 0 | idle | none | `in_sync` |
//! | replacing a member | clean | 0 | recover | `8064 / 126976` | old `in_sync,want_replacement`, new `spare,replacement`, same slot |
//! | reshape 4 → 5 | clean | 0 | reshape | `5120 / 126976` | raid_disks `5 (4)`, reshape_position a number |

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{BlockDev, DevNum, MdUuid, RaidLevel, SyncAction};

/// `array_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArrayState {
    /// No devices, no size, no level.
    Clear,
    /// Members assembled, not started.
    Inactive,
    Suspended,
    Readonly,
    /// Read-only until the first write.
    ReadAuto,
    /// Running, no writes pending.
    Clean,
    Active,
    /// A write is waiting for the superblock to be updated; a RAID5 that lost two members
    /// stays here (`testdata/md/05-r5-failed`).
    WritePending,
    ActiveIdle,
    /// RAID0/linear lost a member (or a failed RAID4/5/6 on newer kernels).
    Broken,
}

impl ArrayState {
    pub fn as_str(self) -> &'static str {
        match self {
            ArrayState::Clear => "clear",
            ArrayState::Inactive => "inactive",
            ArrayState::Suspended => "suspended",
            ArrayState::Readonly => "readonly",
            ArrayState::ReadAuto => "read-auto",
            ArrayState::Clean => "clean",
            ArrayState::Active => "active",
            ArrayState::WritePending => "write-pending",
            ArrayState::ActiveIdle => "active-idle",
            ArrayState::Broken => "broken",
        }
    }

    /// The array is started (serving I/O, maybe read-only).
    pub fn is_running(self) -> bool {
        !matches!(self, ArrayState::Clear | ArrayState::Inactive)
    }
}

impl fmt::Display for ArrayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ArrayState {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "clear" => ArrayState::Clear,
            "inactive" => ArrayState::Inactive,
            "suspended" => ArrayState::Suspended,
            "readonly" => ArrayState::Readonly,
            "read-auto" => ArrayState::ReadAuto,
            "clean" => ArrayState::Clean,
            "active" => ArrayState::Active,
            "write-pending" => ArrayState::WritePending,
            "active-idle" => ArrayState::ActiveIdle,
            "broken" => ArrayState::Broken,
            _ => return Err(()),
        })
    }
}

/// `raid_disks`: `4`, or `5 (4)` during a reshape (new, then old).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaidDisks {
    pub count: u32,
    pub before_reshape: Option<u32>,
}

/// `sync_completed` while something runs: sectors done and to do, or `delayed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncCompleted {
    Delayed,
    Sectors { done: u64, total: u64 },
}

impl SyncCompleted {
    /// Percent done (0 when delayed or the total is 0).
    pub fn percent(&self) -> f64 {
        match *self {
            SyncCompleted::Sectors { done, total } if total > 0 => {
                done as f64 * 100.0 / total as f64
            }
            _ => 0.0,
        }
    }
}

/// One word of a member's `state` (a comma list).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DevFlag {
    Faulty,
    InSync,
    Journal,
    WriteMostly,
    Blocked,
    /// Not faulty, not journal, not in sync: a hot spare, or rebuilding into a slot.
    Spare,
    WriteError,
    WantReplacement,
    Replacement,
    ExternalBbl,
    Failfast,
    /// A word this parser does not know, kept.
    Other(String),
}

impl DevFlag {
    fn parse(s: &str) -> DevFlag {
        match s {
            "faulty" => DevFlag::Faulty,
            "in_sync" => DevFlag::InSync,
            "journal" => DevFlag::Journal,
            "write_mostly" => DevFlag::WriteMostly,
            "blocked" => DevFlag::Blocked,
            "spare" => DevFlag::Spare,
            "write_error" => DevFlag::WriteError,
            "want_replacement" => DevFlag::WantReplacement,
            "replacement" => DevFlag::Replacement,
            "external_bbl" => DevFlag::ExternalBbl,
            "failfast" => DevFlag::Failfast,
            other => DevFlag::Other(other.to_string()),
        }
    }
}

/// One `dev-*/` directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdSysfsDevice {
    /// The name in the directory (`dev-vda` → `vda`).
    pub name: String,
    /// The member's block device, from the `block` link's last component (`vda`, `sda1`).
    pub block: Option<String>,
    pub state: Vec<DevFlag>,
    /// `slot`: `None` for `none` (spare, faulty out of its slot).
    pub slot: Option<u32>,
    /// `errors`: read errors corrected or not.
    pub errors: Option<u64>,
    /// `recovery_start` sector (`None` for `none`: fully in sync).
    pub recovery_start: Option<u64>,
    /// `size` in KiB used on this member.
    pub size_kib: Option<u64>,
    /// `offset`: data offset in sectors.
    pub offset_sectors: Option<u64>,
}

impl MdSysfsDevice {
    pub fn has(&self, flag: &DevFlag) -> bool {
        self.state.contains(flag)
    }

    pub fn is_faulty(&self) -> bool {
        self.has(&DevFlag::Faulty)
    }

    pub fn is_in_sync(&self) -> bool {
        self.has(&DevFlag::InSync) && !self.is_faulty()
    }

    /// A spare that is rebuilding into a slot (has one), or a hot spare (has none).
    pub fn is_spare(&self) -> bool {
        self.has(&DevFlag::Spare)
    }

    /// A spare with a slot: being rebuilt (recovery or replacement) into it.
    pub fn is_rebuilding(&self) -> bool {
        self.is_spare() && self.slot.is_some()
    }
}

/// An array's sysfs state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdSysfs {
    pub array_state: ArrayState,
    /// `level` (empty for an inactive array → `None`).
    pub level: Option<RaidLevel>,
    pub raid_disks: Option<RaidDisks>,
    /// `metadata_version` (`1.2`, `0.90`, `external:imsm`; `none` → `None`).
    pub metadata_version: Option<String>,
    /// `uuid` (all zeros before the array starts → `None`).
    pub uuid: Option<MdUuid>,
    /// `degraded`: slots without an in-sync member (absent while inactive).
    pub degraded: Option<u32>,
    pub sync_action: Option<SyncAction>,
    /// `last_sync_action` (`none` → `None`).
    pub last_sync_action: Option<SyncAction>,
    /// `sync_completed` (`none` → `None`).
    pub sync_completed: Option<SyncCompleted>,
    /// `sync_speed` in KiB/s (`none` → `None`).
    pub sync_speed: Option<u64>,
    /// `mismatch_cnt` (sectors found inconsistent by the last check/repair).
    pub mismatch_cnt: Option<u64>,
    /// `reshape_position` in sectors (`none` → `None`).
    pub reshape_position: Option<u64>,
    /// `component_size` in KiB.
    pub component_size_kib: Option<u64>,
    /// `chunk_size` in bytes.
    pub chunk_size: Option<u64>,
    pub consistency_policy: Option<String>,
    /// `bitmap/location` (`+8`, `file`; `none` → `None`).
    pub bitmap_location: Option<String>,
    /// Sorted by name.
    pub devices: Vec<MdSysfsDevice>,
}

impl MdSysfs {
    pub fn device(&self, name: &str) -> Option<&MdSysfsDevice> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// More slots down than the level survives (a RAID5 with 2 failed members): the data
    /// cannot be served. `degraded` counts the slots down. For RAID10 this counts one lost
    /// member as the limit, so two failures in different mirror pairs (which RAID10 survives)
    /// read as failed: the cautious side; the slots of the pairs would tell.
    pub fn has_failed(&self) -> bool {
        match (self.level, self.raid_disks, self.degraded) {
            (Some(level), Some(disks), Some(degraded)) => {
                degraded > level.redundancy(disks.count) || self.array_state == ArrayState::Broken
            }
            _ => self.array_state == ArrayState::Broken,
        }
    }
}

/// Attribute strings as read, before parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMdSysfs {
    /// Where they were read (for error messages), if from a directory.
    pub dir: Option<PathBuf>,
    /// Attribute name (`array_state`, `bitmap/location`) → value without the newline.
    pub attrs: BTreeMap<String, String>,
    /// Directory name (`dev-vda`) → its attributes.
    pub devices: BTreeMap<String, RawMdDevice>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMdDevice {
    pub attrs: BTreeMap<String, String>,
    /// The `block` link's target.
    pub block_link: Option<String>,
}

/// Reading or understanding sysfs failed.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{attr} is missing")]
    Missing { attr: String },
    #[error("{attr}={value:?} is not {expected}")]
    Bad {
        attr: String,
        value: String,
        expected: &'static str,
    },
}

/// The array attributes [`read_raw_md_sysfs`] reads (absent ones are skipped).
pub const MD_ATTRS: &[&str] = &[
    "array_state",
    "level",
    "raid_disks",
    "metadata_version",
    "uuid",
    "degraded",
    "sync_action",
    "last_sync_action",
    "sync_completed",
    "sync_speed",
    "mismatch_cnt",
    "reshape_position",
    "component_size",
    "chunk_size",
    "consistency_policy",
    "bitmap/location",
];

/// The member attributes read from each `dev-*/`.
pub const DEV_ATTRS: &[&str] = &[
    "state",
    "slot",
    "errors",
    "recovery_start",
    "size",
    "offset",
];

/// `array_state`; `None` for a word the kernel does not print.
pub fn parse_array_state(value: &str) -> Option<ArrayState> {
    value.trim().parse().ok()
}

/// `sync_completed`: `none` → `Some(None)`; `None` when it does not read.
pub fn parse_sync_completed(value: &str) -> Option<Option<SyncCompleted>> {
    match value.trim() {
        "none" => Some(None),
        "delayed" => Some(Some(SyncCompleted::Delayed)),
        v => {
            let (done, total) = v.split_once('/')?;
            Some(Some(SyncCompleted::Sectors {
                done: done.trim().parse().ok()?,
                total: total.trim().parse().ok()?,
            }))
        }
    }
}

/// `raid_disks`: `4` or `5 (4)`; empty → `Some(None)`; `None` when it does not read.
pub fn parse_raid_disks(value: &str) -> Option<Option<RaidDisks>> {
    let v = value.trim();
    if v.is_empty() {
        return Some(None);
    }
    let (count, before) = match v.split_once(' ') {
        Some((n, old)) => {
            let old = old.trim().strip_prefix('(')?.strip_suffix(')')?;
            (n, Some(old.parse().ok()?))
        }
        None => (v, None),
    };
    Some(Some(RaidDisks {
        count: count.parse().ok()?,
        before_reshape: before,
    }))
}

/// A member's `state`: a comma list (`in_sync,want_replacement`).
pub fn parse_dev_state(value: &str) -> Vec<DevFlag> {
    value
        .trim()
        .split(',')
        .filter(|w| !w.is_empty())
        .map(DevFlag::parse)
        .collect()
}

/// `slot` (or any `none`-or-number attribute): `none` → `Some(None)`; `None` when it does not read.
pub fn parse_none_or_number(value: &str) -> Option<Option<u64>> {
    match value.trim() {
        "none" => Some(None),
        v => v.parse().ok().map(Some),
    }
}

/// Parses what [`read_raw_md_sysfs`] read.
pub fn parse_md_sysfs(raw: &RawMdSysfs) -> Result<MdSysfs, SysfsError> {
    let name = |attr: &str| match &raw.dir {
        Some(dir) => dir.join(attr).display().to_string(),
        None => attr.to_string(),
    };
    let bad = |attr: &str, value: &str, expected| SysfsError::Bad {
        attr: name(attr),
        value: value.to_string(),
        expected,
    };
    let get = |attr: &str| raw.attrs.get(attr).map(|v| v.trim());
    let none_or = |attr: &str| -> Result<Option<u64>, SysfsError> {
        get(attr)
            .map(|v| parse_none_or_number(v).ok_or_else(|| bad(attr, v, "`none` or a number")))
            .transpose()
            .map(Option::flatten)
    };
    let number = |attr: &str| -> Result<Option<u64>, SysfsError> {
        get(attr)
            .map(|v| v.parse().map_err(|_| bad(attr, v, "a number")))
            .transpose()
    };
    let action = |attr: &str| -> Result<Option<SyncAction>, SysfsError> {
        match get(attr) {
            None | Some("none") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| bad(attr, v, "a sync action")),
        }
    };
    let text = |attr: &str| {
        get(attr)
            .filter(|v| !v.is_empty() && *v != "none")
            .map(str::to_string)
    };

    let state_text = get("array_state").ok_or_else(|| SysfsError::Missing {
        attr: name("array_state"),
    })?;
    let array_state = parse_array_state(state_text)
        .ok_or_else(|| bad("array_state", state_text, "an array state"))?;
    let level = match get("level") {
        None | Some("") => None,
        Some(v) => Some(v.parse().map_err(|_| bad("level", v, "a RAID level"))?),
    };
    let raid_disks = match get("raid_disks") {
        None => None,
        Some(v) => parse_raid_disks(v).ok_or_else(|| bad("raid_disks", v, "`N` or `N (M)`"))?,
    };
    let uuid = match get("uuid") {
        None => None,
        Some(v) => {
            Some(v.parse::<MdUuid>().map_err(|_| bad("uuid", v, "a UUID"))?).filter(|u| !u.is_nil())
        }
    };
    let sync_completed = match get("sync_completed") {
        None => None,
        Some(v) => parse_sync_completed(v)
            .ok_or_else(|| bad("sync_completed", v, "`none`, `delayed` or `done / total`"))?,
    };
    let degraded = number("degraded")?
        .map(|d| u32::try_from(d).map_err(|_| bad("degraded", &d.to_string(), "a slot count")))
        .transpose()?;

    let mut devices = Vec::with_capacity(raw.devices.len());
    for (dir, dev) in &raw.devices {
        let attr = |a: &str| format!("{dir}/{a}");
        let dget = |a: &str| dev.attrs.get(a).map(|v| v.trim());
        let dnone_or = |a: &str| -> Result<Option<u64>, SysfsError> {
            dget(a)
                .map(|v| {
                    parse_none_or_number(v).ok_or_else(|| bad(&attr(a), v, "`none` or a number"))
                })
                .transpose()
                .map(Option::flatten)
        };
        let dnumber = |a: &str| -> Result<Option<u64>, SysfsError> {
            dget(a)
                .map(|v| v.parse().map_err(|_| bad(&attr(a), v, "a number")))
                .transpose()
        };
        let slot = dnone_or("slot")?
            .map(|s| {
                u32::try_from(s).map_err(|_| bad(&attr("slot"), &s.to_string(), "a slot number"))
            })
            .transpose()?;
        devices.push(MdSysfsDevice {
            name: dir.strip_prefix("dev-").unwrap_or(dir).to_string(),
            block: dev
                .block_link
                .as_deref()
                .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            state: dget("state").map(parse_dev_state).unwrap_or_default(),
            slot,
            errors: dnumber("errors")?,
            recovery_start: dnone_or("recovery_start")?,
            size_kib: dnumber("size")?,
            offset_sectors: dnumber("offset")?,
        });
    }
    Ok(MdSysfs {
        array_state,
        level,
        raid_disks,
        metadata_version: text("metadata_version"),
        uuid,
        degraded,
        sync_action: action("sync_action")?,
        last_sync_action: action("last_sync_action")?,
        sync_completed,
        sync_speed: none_or("sync_speed")?,
        mismatch_cnt: number("mismatch_cnt")?,
        reshape_position: none_or("reshape_position")?,
        component_size_kib: number("component_size")?,
        chunk_size: number("chunk_size")?,
        consistency_policy: text("consistency_policy"),
        bitmap_location: text("bitmap/location"),
        devices,
    })
}

/// One attribute file without its newline; `None` when it does not exist.
fn read_attr(path: &Path) -> Result<Option<String>, SysfsError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim_end_matches('\n').to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SysfsError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads [`MD_ATTRS`] and each `dev-*/`'s [`DEV_ATTRS`] and `block` link from `md_dir`
/// (real: `/sys/block/md127/md`).
pub fn read_raw_md_sysfs(md_dir: &Path) -> Result<RawMdSysfs, SysfsError> {
    let mut raw = RawMdSysfs {
        dir: Some(md_dir.to_path_buf()),
        ..RawMdSysfs::default()
    };
    for attr in MD_ATTRS {
        if let Some(v) = read_attr(&md_dir.join(attr))? {
            raw.attrs.insert((*attr).to_string(), v);
        }
    }
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SysfsError::Read { path, source }
    };
    for entry in fs::read_dir(md_dir).map_err(read_err(md_dir))? {
        let entry = entry.map_err(read_err(md_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // `dev-*` are directories; `rdN` are links to them.
        if !name.starts_with("dev-") || !entry.file_type().map_err(read_err(&path))?.is_dir() {
            continue;
        }
        let mut dev = RawMdDevice::default();
        for attr in DEV_ATTRS {
            if let Some(v) = read_attr(&path.join(attr))? {
                dev.attrs.insert((*attr).to_string(), v);
            }
        }
        let link = path.join("block");
        dev.block_link = match fs::read_link(&link) {
            Ok(target) => Some(target.to_string_lossy().into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(SysfsError::Read { path: link, source }),
        };
        raw.devices.insert(name, dev);
    }
    Ok(raw)
}

/// [`read_raw_md_sysfs`] then [`parse_md_sysfs`].
pub fn read_md_sysfs(md_dir: &Path) -> Result<MdSysfs, SysfsError> {
    parse_md_sysfs(&read_raw_md_sysfs(md_dir)?)
}

/// A block device, its partitions and everything built on them (holders: md arrays, dm
/// devices, and theirs, recursively), read from `class_block` (real: `/sys/class/block`).
/// The disk comes first. Give the result to
/// [`MountInfo::mounts_of`](super::mountinfo::MountInfo::mounts_of).
pub fn read_block_family(class_block: &Path, name: &str) -> Result<Vec<BlockDev>, SysfsError> {
    let mut out: Vec<BlockDev> = Vec::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        if out.iter().any(|d| d.name == n) || out.len() > 4096 {
            continue;
        }
        let dir = class_block.join(&n);
        let dev_path = dir.join("dev");
        let text = read_attr(&dev_path)?.ok_or_else(|| SysfsError::Missing {
            attr: dev_path.display().to_string(),
        })?;
        let dev = DevNum::from_str(&text).map_err(|_| SysfsError::Bad {
            attr: dev_path.display().to_string(),
            value: text.clone(),
            expected: "major:minor",
        })?;
        out.push(BlockDev {
            name: n.clone(),
            dev,
        });
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SysfsError::Read { path, source }
        };
        // Partitions: subdirectories with a `partition` file.
        for entry in fs::read_dir(&dir).map_err(read_err(&dir))? {
            let entry = entry.map_err(read_err(&dir))?;
            if entry.path().join("partition").is_file() {
                todo.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let holders = dir.join("holders");
        match fs::read_dir(&holders) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(read_err(&holders))?;
                    todo.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SysfsError::Read {
                    path: holders,
                    source,
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    macro_rules! listing {
        ($path:literal) => {
            include_str!(concat!("../../testdata/md/", $path))
        };
    }

    /// The capture's listing (`path=value`, `path -> target`) as the raw attributes.
    fn raw_from_listing(text: &str) -> RawMdSysfs {
        let mut raw = RawMdSysfs::default();
        for line in text.lines() {
            if let Some((path, target)) = line.split_once(" -> ") {
                if let Some((dir, "block")) = path.split_once('/') {
                    raw.devices.entry(dir.to_string()).or_default().block_link =
                        Some(target.to_string());
                }
            } else if let Some((path, value)) = line.split_once('=') {
                match path.split_once('/') {
                    Some((dir, attr)) if dir.starts_with("dev-") => {
                        raw.devices
                            .entry(dir.to_string())
                            .or_default()
                            .attrs
                            .insert(attr.to_string(), value.to_string());
                    }
                    _ => {
                        raw.attrs.insert(path.to_string(), value.to_string());
                    }
                }
            }
        }
        raw
    }

    fn parse(text: &str) -> MdSysfs {
        parse_md_sysfs(&raw_from_listing(text)).unwrap()
    }

    /// The same listing as a directory tree, files ending in a newline as sysfs shows them.
    fn materialize(text: &str, dir: &Path) {
        for line in text.lines() {
            if let Some((path, target)) = line.split_once(" -> ") {
                let p = dir.join(path);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, p).unwrap();
            } else if let Some((path, value)) = line.split_once('=') {
                let p = dir.join(path);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(p, format!("{value}\n")).unwrap();
            }
        }
    }

    fn states(s: &MdSysfs) -> Vec<(String, String, Option<u32>)> {
        s.devices
            .iter()
            .map(|d| {
                let words: Vec<String> = d
                    .state
                    .iter()
                    .map(|f| {
                        serde_json::to_value(f)
                            .unwrap()
                            .as_str()
                            .unwrap_or("?")
                            .to_string()
                    })
                    .collect();
                (d.name.clone(), words.join(","), d.slot)
            })
            .collect()
    }

    fn st(name: &str, state: &str, slot: Option<u32>) -> (String, String, Option<u32>) {
        (name.to_string(), state.to_string(), slot)
    }

    #[test]
    fn raid5_being_created_recovers_onto_its_last_member() {
        let s = parse(listing!("00-create/sysfs.md0"));
        assert_eq!(s.array_state, ArrayState::Clean);
        assert_eq!(s.level, Some(RaidLevel::Raid5));
        assert_eq!(
            s.raid_disks,
            Some(RaidDisks {
                count: 3,
                before_reshape: None
            })
        );
        assert_eq!(s.degraded, Some(1));
        assert_eq!(s.sync_action, Some(SyncAction::Recover));
        assert_eq!(s.last_sync_action, Some(SyncAction::Recover));
        assert_eq!(
            s.sync_completed,
            Some(SyncCompleted::Sectors {
                done: 0,
                total: 126_976
            })
        );
        assert_eq!(s.sync_speed, Some(691));
        assert_eq!(s.metadata_version.as_deref(), Some("1.2"));
        assert_eq!(s.uuid, "9dab6a3d:5a99556a:efffaae8:2d51e817".parse().ok());
        assert_eq!(s.component_size_kib, Some(63_488));
        assert_eq!(s.chunk_size, Some(524_288));
        assert_eq!(s.bitmap_location.as_deref(), Some("+8"));
        assert_eq!(s.consistency_policy.as_deref(), Some("bitmap"));
        assert_eq!(
            states(&s),
            [
                st("vda", "in_sync", Some(0)),
                st("vdb", "in_sync", Some(1)),
                st("vdc", "spare", Some(2)),
                st("vdd", "spare", None),
            ]
        );
        let vdc = s.device("vdc").unwrap();
        assert!(vdc.is_rebuilding());
        assert_eq!(vdc.recovery_start, Some(6912));
        assert_eq!(vdc.block.as_deref(), Some("vdc"));
        assert_eq!(
            (vdc.size_kib, vdc.offset_sectors, vdc.errors),
            (Some(63_488), Some(4096), Some(0))
        );
        assert!(!s.device("vdd").unwrap().is_rebuilding());
        assert!(!s.has_failed());
    }

    #[test]
    fn clean_arrays() {
        let s = parse(listing!("01-clean/sysfs.md0"));
        assert_eq!(
            (
                s.array_state,
                s.degraded,
                s.sync_action,
                s.sync_completed,
                s.sync_speed
            ),
            (
                ArrayState::Clean,
                Some(0),
                Some(SyncAction::Idle),
                None,
                None
            )
        );
        assert_eq!(s.mismatch_cnt, Some(0));
        assert_eq!(s.reshape_position, None);
        assert_eq!(s.device("vdd").unwrap().state, [DevFlag::Spare]);
        assert!(s.devices[..3].iter().all(MdSysfsDevice::is_in_sync));

        let r10 = parse(listing!("01-clean/sysfs.md1"));
        assert_eq!(r10.level, Some(RaidLevel::Raid10));
        assert_eq!(
            r10.device("nvme0n1").unwrap().block.as_deref(),
            Some("nvme0n1")
        );
        let v090 = parse(listing!("01-clean/sysfs.md3"));
        assert_eq!(v090.metadata_version.as_deref(), Some("0.90"));
        let r0 = parse(listing!("01-clean/sysfs.md4"));
        assert_eq!(
            (
                r0.level,
                r0.degraded,
                r0.sync_action,
                r0.bitmap_location.clone()
            ),
            (Some(RaidLevel::Raid0), None, None, None)
        );
        let wm = parse(listing!("01-clean/sysfs.md5"));
        assert_eq!(
            wm.device("vdo").unwrap().state,
            [DevFlag::InSync, DevFlag::WriteMostly]
        );
    }

    #[test]
    fn member_failed_while_rebuilding_onto_the_spare() {
        let s = parse(listing!("02-r5-fail-recovering/sysfs.md0"));
        assert_eq!(
            (s.array_state, s.degraded, s.sync_action),
            (ArrayState::Clean, Some(1), Some(SyncAction::Recover))
        );
        assert!(matches!(
            s.sync_completed,
            Some(SyncCompleted::Sectors { total: 126_976, .. })
        ));
        assert_eq!(
            states(&s),
            [
                st("vda", "in_sync", Some(0)),
                st("vdb", "faulty", None),
                st("vdc", "in_sync", Some(2)),
                st("vdd", "spare", Some(1)),
            ]
        );
        let s = parse(listing!("03-r5-rebuilt/sysfs.md0"));
        assert_eq!(
            (s.degraded, s.sync_action, s.sync_completed),
            (Some(0), Some(SyncAction::Idle), None)
        );
        assert_eq!(s.device("vdb").unwrap().state, [DevFlag::Faulty]);
        assert_eq!(s.device("vdd").unwrap().state, [DevFlag::InSync]);
    }

    #[test]
    fn degraded_without_spare_and_failed_raid5() {
        let s = parse(listing!("04-r5-degraded/sysfs.md0"));
        assert_eq!(
            (s.array_state, s.degraded, s.sync_action),
            (ArrayState::Clean, Some(1), Some(SyncAction::Idle))
        );
        assert_eq!(
            states(&s),
            [
                st("vda", "in_sync", Some(0)),
                st("vdc", "faulty", None),
                st("vdd", "in_sync", Some(1))
            ]
        );
        assert!(!s.has_failed());

        let s = parse(listing!("05-r5-failed/sysfs.md0"));
        assert_eq!(s.array_state, ArrayState::WritePending);
        assert_eq!(
            (s.degraded, s.sync_action),
            (Some(2), Some(SyncAction::Idle))
        );
        assert_eq!(
            states(&s),
            [
                st("vda", "faulty", Some(0)),
                st("vdc", "faulty", None),
                st("vdd", "in_sync", Some(1))
            ]
        );
        assert!(s.has_failed());
    }

    #[test]
    fn check_inactive_read_only_replace_reshape() {
        let s = parse(listing!("07-r6-check/sysfs.md2"));
        assert_eq!(s.sync_action, Some(SyncAction::Check));
        assert_eq!(
            s.sync_completed,
            Some(SyncCompleted::Sectors {
                done: 5120,
                total: 126_976
            })
        );
        assert_eq!((s.degraded, s.mismatch_cnt), (Some(0), Some(0)));
        let after = parse(listing!("07-r6-check/sysfs-after.md2"));
        assert_eq!(
            (after.sync_action, after.last_sync_action),
            (Some(SyncAction::Idle), Some(SyncAction::Check))
        );

        let s = parse(listing!("08-r6-incremental/sysfs.md127"));
        assert_eq!(s.array_state, ArrayState::Inactive);
        assert!(!s.array_state.is_running());
        assert_eq!(
            (s.level, s.raid_disks, s.uuid, s.degraded, s.sync_action),
            (None, None, None, None, None)
        );
        assert_eq!(s.last_sync_action, None);
        assert_eq!(states(&s), [st("vde", "spare", None)]);
        assert!(!s.has_failed());
        let s = parse(listing!("08-r6-incremental/sysfs-complete.md127"));
        assert_eq!(
            (s.array_state, s.last_sync_action),
            (ArrayState::Clean, None)
        );

        assert_eq!(
            parse(listing!("09-r6-readonly/sysfs.md2")).array_state,
            ArrayState::Readonly
        );
        assert_eq!(
            parse(listing!("09-r6-readonly/sysfs-auto.md2")).array_state,
            ArrayState::ReadAuto
        );

        let s = parse(listing!("11-r10-replace/sysfs.md1"));
        assert_eq!(
            (s.degraded, s.sync_action),
            (Some(0), Some(SyncAction::Recover))
        );
        let old = s.device("nvme0n1").unwrap();
        assert_eq!(
            (old.state.clone(), old.slot),
            (vec![DevFlag::InSync, DevFlag::WantReplacement], Some(0))
        );
        let new = s.device("nvme2n1").unwrap();
        assert_eq!(
            (new.state.clone(), new.slot),
            (vec![DevFlag::Spare, DevFlag::Replacement], Some(0))
        );
        assert!(new.is_rebuilding());
        let s = parse(listing!("11-r10-replace/sysfs-after.md1"));
        assert_eq!(s.device("nvme0n1").unwrap().state, [DevFlag::Faulty]);
        assert_eq!(s.device("nvme2n1").unwrap().state, [DevFlag::InSync]);

        let s = parse(listing!("12-r6-reshape/sysfs.md2"));
        assert_eq!(
            s.raid_disks,
            Some(RaidDisks {
                count: 5,
                before_reshape: Some(4)
            })
        );
        assert_eq!(s.sync_action, Some(SyncAction::Reshape));
        assert_eq!(s.reshape_position, Some(15_360));
        assert_eq!(s.device("vdi").unwrap().slot, Some(4));
        let p = s.sync_completed.unwrap().percent();
        assert!((p - 4.03).abs() < 0.01, "{p}");
    }

    #[test]
    fn reader_over_a_tree_made_from_the_captures() {
        for (name, text) in [
            ("recovering", listing!("02-r5-fail-recovering/sysfs.md0")),
            ("failed", listing!("05-r5-failed/sysfs.md0")),
            ("inactive", listing!("08-r6-incremental/sysfs.md127")),
            ("replace", listing!("11-r10-replace/sysfs.md1")),
            ("reshape", listing!("12-r6-reshape/sysfs.md2")),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let md = tmp.path().join("md");
            materialize(text, &md);
            let read = read_md_sysfs(&md).unwrap();
            assert_eq!(read, parse(text), "{name}");
            assert!(
                read.devices
                    .iter()
                    .all(|d| d.block.as_deref() == Some(d.name.as_str())),
                "{name}"
            );
        }
    }

    #[test]
    fn reader_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let md = tmp.path().join("md");
        fs::create_dir_all(md.join("dev-sda")).unwrap();
        let e = read_md_sysfs(&md).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is missing", md.join("array_state").display())
        );
        fs::write(md.join("array_state"), "clean\n").unwrap();
        fs::write(md.join("dev-sda/slot"), "first\n").unwrap();
        let e = read_md_sysfs(&md).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}=\"first\" is not `none` or a number",
                md.join("dev-sda/slot").display()
            )
        );
        fs::write(md.join("dev-sda/slot"), "none\n").unwrap();
        fs::write(md.join("sync_completed"), "12 of 40\n").unwrap();
        let e = read_md_sysfs(&md).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "sync_completed=\"12 of 40\" is not `none`, `delayed` or `done / total`"
            ),
            "{e}"
        );
        fs::remove_file(md.join("sync_completed")).unwrap();
        let ok = read_md_sysfs(&md).unwrap();
        assert_eq!(
            (ok.devices[0].name.as_str(), ok.devices[0].block.clone()),
            ("sda", None)
        );
        // Not a directory at all.
        let e = read_md_sysfs(&tmp.path().join("nope")).unwrap_err();
        assert!(matches!(e, SysfsError::Read { .. }), "{e}");
    }

    #[test]
    fn single_attribute_parsers() {
        assert_eq!(parse_array_state("broken\n"), Some(ArrayState::Broken));
        assert_eq!(
            parse_array_state("active-idle"),
            Some(ArrayState::ActiveIdle)
        );
        assert_eq!(parse_array_state("sleepy"), None);
        assert_eq!(
            parse_sync_completed("delayed"),
            Some(Some(SyncCompleted::Delayed))
        );
        assert_eq!(parse_sync_completed("none\n"), Some(None));
        assert_eq!(
            parse_sync_completed("1/2"),
            Some(Some(SyncCompleted::Sectors { done: 1, total: 2 }))
        );
        assert_eq!(parse_sync_completed("1 / x"), None);
        assert_eq!(parse_raid_disks(""), Some(None));
        assert_eq!(parse_raid_disks("5 (x)"), None);
        assert_eq!(
            parse_dev_state("faulty,blocked,write_error,external_bbl,failfast,journal,new_thing"),
            [
                DevFlag::Faulty,
                DevFlag::Blocked,
                DevFlag::WriteError,
                DevFlag::ExternalBbl,
                DevFlag::Failfast,
                DevFlag::Journal,
                DevFlag::Other("new_thing".to_string())
            ]
        );
        assert_eq!(parse_none_or_number("none"), Some(None));
        assert_eq!(parse_none_or_number("7"), Some(Some(7)));
        let mut raw = RawMdSysfs::default();
        raw.attrs.insert("array_state".into(), "broken".into());
        raw.attrs.insert("level".into(), "raid0".into());
        assert!(parse_md_sysfs(&raw).unwrap().has_failed());
        raw.attrs.insert("level".into(), "raid9".into());
        assert_eq!(
            parse_md_sysfs(&raw).unwrap_err().to_string(),
            "level=\"raid9\" is not a RAID level"
        );
    }

    #[test]
    fn block_family_follows_partitions_and_holders() {
        // sdb with sdb1, sdb1 a member of md0, md0 partitioned (md0p1) and under dm-0.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let node = |path: &str, dev: &str| {
            fs::create_dir_all(root.join(path)).unwrap();
            fs::write(root.join(path).join("dev"), format!("{dev}\n")).unwrap();
        };
        node("sdb", "8:16");
        node("sdb/sdb1", "8:17");
        fs::write(root.join("sdb/sdb1/partition"), "1\n").unwrap();
        node("sdb1", "8:17");
        fs::create_dir_all(root.join("sdb1/holders/md0")).unwrap();
        node("md0", "9:0");
        node("md0/md0p1", "259:7");
        fs::write(root.join("md0/md0p1/partition"), "1\n").unwrap();
        node("md0p1", "259:7");
        fs::create_dir_all(root.join("md0p1/holders/dm-0")).unwrap();
        node("dm-0", "253:0");
        node("sdc", "8:32");
        let family = read_block_family(root, "sdb").unwrap();
        let mut names: Vec<_> = family
            .iter()
            .map(|d| (d.name.as_str(), d.dev.to_string()))
            .collect();
        assert_eq!(names[0], ("sdb", "8:16".to_string()));
        names.sort();
        assert_eq!(
            names,
            [
                ("dm-0", "253:0".to_string()),
                ("md0", "9:0".to_string()),
                ("md0p1", "259:7".to_string()),
                ("sdb", "8:16".to_string()),
                ("sdb1", "8:17".to_string()),
            ]
        );
        assert_eq!(read_block_family(root, "sdc").unwrap().len(), 1);
        let e = read_block_family(root, "sdz").unwrap_err();
        assert!(e.to_string().ends_with("sdz/dev is missing"), "{e}");
        fs::write(root.join("sdc/dev"), "8-32\n").unwrap();
        let e = read_block_family(root, "sdc").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("sdc/dev=\"8-32\" is not major:minor"),
            "{e}"
        );
    }

    proptest::proptest! {
        #[test]
        fn attribute_parsers_never_panic(v in "\\PC{0,40}") {
            let _ = parse_array_state(&v);
            let _ = parse_sync_completed(&v);
            let _ = parse_raid_disks(&v);
            let _ = parse_dev_state(&v);
            let _ = parse_none_or_number(&v);
            let mut raw = RawMdSysfs::default();
            for attr in MD_ATTRS {
                raw.attrs.insert((*attr).to_string(), v.clone());
            }
            raw.attrs.insert("array_state".into(), "clean".into());
            let dev = RawMdDevice {
                attrs: DEV_ATTRS.iter().map(|a| ((*a).to_string(), v.clone())).collect(),
                block_link: Some(v.clone()),
            };
            raw.devices.insert("dev-x".into(), dev);
            let _ = parse_md_sysfs(&raw);
        }
    }
}
