//! `mdadm --detail --export /dev/mdX` ([`parse_detail_export`]), `mdadm --detail /dev/mdX`
//! ([`parse_detail`]) and `mdadm --examine --export /dev/sdX` ([`parse_examine_export`]).
//!
//! **Which to trust for member health.** mdadm 4.2's `--detail --export` has no word for a
//! failed member: the captured states show a faulty member still in the array reported as
//! `ROLE=spare` (`testdata/md/04-r5-degraded`), a member failed by a `--fail` that would
//! have broken the array keeping its slot (`05-r5-failed`: `vda` is `faulty` in sysfs and
//! `(F)` in mdstat, `ROLE=0` here), and a replacement sharing the slot of the member it
//! replaces (`11-r10-replace`). The export is right about membership, UUID, name, level and
//! slots of healthy members; use sysfs `dev-*/state` ([`super::sysfs`]) or the human
//! `--detail` table ([`MdDetailReport::members`]) for which members are faulty, spare or
//! rebuilding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{short_array_name, MdUuid, RaidLevel};

/// An md array name: mdadm stores `homehost:name` (`tvguest:vault-data0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayName {
    /// As stored (`tvguest:vault-data0`).
    pub full: String,
    /// The part after the home host (`vault-data0`); the whole name when there is no host.
    pub short: String,
}

impl ArrayName {
    pub fn new(full: &str) -> ArrayName {
        ArrayName {
            full: full.to_string(),
            short: short_array_name(full).to_string(),
        }
    }

    /// The home host part (`tvguest`), if any.
    pub fn host(&self) -> Option<&str> {
        self.full.split_once(':').map(|(host, _)| host)
    }
}

/// A member's role as `MD_DEVICE_*_ROLE` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberRole {
    /// An active member in this slot (or rebuilding into it; see the module doc).
    Active(u32),
    Spare,
    Faulty,
    Journal,
    /// A word this parser does not know, kept as printed.
    Other(String),
}

impl MemberRole {
    fn parse(s: &str) -> MemberRole {
        match s {
            "spare" => MemberRole::Spare,
            "faulty" => MemberRole::Faulty,
            "journal" => MemberRole::Journal,
            _ => s
                .parse()
                .map_or_else(|_| MemberRole::Other(s.to_string()), MemberRole::Active),
        }
    }
}

/// One `MD_DEVICE_<key>_ROLE` / `MD_DEVICE_<key>_DEV` pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportMember {
    /// The kernel name (`vdc`, `nvme0n1`, `sda1`): the last component of `path`.
    pub devname: String,
    /// `MD_DEVICE_*_DEV` (`/dev/vdc`).
    pub path: String,
    pub role: MemberRole,
}

/// `mdadm --detail --export /dev/mdX`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdDetail {
    /// `MD_LEVEL`; absent for an inactive array.
    pub level: Option<RaidLevel>,
    /// `MD_DEVICES`: the array's raid disks (for an inactive array, the members present).
    pub raid_devices: Option<u32>,
    /// `MD_METADATA` (`1.2`, `0.90`, `imsm`, ...).
    pub metadata: Option<String>,
    /// `MD_UUID`.
    pub uuid: MdUuid,
    /// `MD_NAME` (1.x metadata only).
    pub name: Option<ArrayName>,
    /// `MD_DEVNAME`: the `/dev/md/<name>` link mdadm made, when it made one.
    pub devname: Option<String>,
    /// In mdadm's order.
    pub members: Vec<ExportMember>,
    /// Keys not listed above (`MD_CONTAINER`, `MD_MEMBER`, ...), as printed.
    pub other: BTreeMap<String, String>,
}

/// `mdadm --examine --export /dev/sdX`: one member's superblock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdExamine {
    pub level: Option<RaidLevel>,
    /// `MD_DEVICES`: the array's raid disks.
    pub raid_devices: Option<u32>,
    /// `MD_UUID`: the array's UUID.
    pub uuid: MdUuid,
    /// `MD_NAME` (1.x only).
    pub name: Option<ArrayName>,
    /// `MD_DEV_UUID`: this member's own UUID (1.x only).
    pub dev_uuid: Option<MdUuid>,
    /// `MD_ARRAY_SIZE` as mdadm prints it (`130.02MB`, decimal units, rounded).
    pub array_size: Option<String>,
    /// `MD_UPDATE_TIME`, seconds since the epoch.
    pub update_time: Option<u64>,
    /// `MD_EVENTS`.
    pub events: Option<u64>,
    pub other: BTreeMap<String, String>,
}

impl MdExamine {
    /// The disk carries a superblock of this array (compare with the array's `MD_UUID`
    /// or sysfs `uuid`; both forms are equal as [`MdUuid`]s).
    pub fn belongs_to(&self, array: &MdUuid) -> bool {
        self.uuid == *array
    }
}

/// What was wrong with mdadm's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    #[error("{what} line {line}: {text:?} is not KEY=VALUE")]
    NotKeyValue {
        what: &'static str,
        line: usize,
        text: String,
    },
    #[error("{what} line {line}: {key} appears twice")]
    Duplicate {
        what: &'static str,
        line: usize,
        key: String,
    },
    #[error("{what}: {key} is missing")]
    Missing { what: &'static str, key: String },
    #[error("{what}: {key}={value:?} is not {expected}")]
    BadValue {
        what: &'static str,
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("{what} line {line}: {text:?} is neither `Key : value` nor a member table row")]
    BadLine {
        what: &'static str,
        line: usize,
        text: String,
    },
}

const DETAIL_EXPORT: &str = "mdadm --detail --export";
const EXAMINE_EXPORT: &str = "mdadm --examine --export";
const DETAIL: &str = "mdadm --detail";

/// `KEY=VALUE` lines into a map (blank lines skipped, a repeated key refused).
fn key_values(what: &'static str, text: &str) -> Result<Vec<(String, String)>, DetailError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || DetailError::NotKeyValue {
            what,
            line: i + 1,
            text: raw.to_string(),
        };
        let (key, value) = line.split_once('=').ok_or_else(bad)?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad());
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(DetailError::Duplicate {
                what,
                line: i + 1,
                key: key.to_string(),
            });
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Takes the typed keys out of the map one by one; what is left is `other`.
struct Fields {
    what: &'static str,
    map: Vec<(String, String)>,
}

impl Fields {
    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.map.iter().position(|(k, _)| k == key)?;
        Some(self.map.remove(i).1)
    }

    fn bad(&self, key: &str, value: &str, expected: &'static str) -> DetailError {
        DetailError::BadValue {
            what: self.what,
            key: key.to_string(),
            value: value.to_string(),
            expected,
        }
    }

    fn number<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>, DetailError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| self.bad(key, &v, "a number")),
        }
    }

    fn level(&mut self) -> Result<Option<RaidLevel>, DetailError> {
        match self.take("MD_LEVEL") {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| self.bad("MD_LEVEL", &v, "a RAID level")),
        }
    }

    fn uuid(&mut self, key: &str) -> Result<Option<MdUuid>, DetailError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| self.bad(key, &v, "a UUID")),
        }
    }

    fn required_uuid(&mut self, key: &str) -> Result<MdUuid, DetailError> {
        self.uuid(key)?.ok_or_else(|| DetailError::Missing {
            what: self.what,
            key: key.to_string(),
        })
    }
}

/// Parses `mdadm --detail --export /dev/mdX`.
pub fn parse_detail_export(text: &str) -> Result<MdDetail, DetailError> {
    let mut f = Fields {
        what: DETAIL_EXPORT,
        map: key_values(DETAIL_EXPORT, text)?,
    };
    let level = f.level()?;
    let raid_devices = f.number("MD_DEVICES")?;
    let metadata = f.take("MD_METADATA");
    let uuid = f.required_uuid("MD_UUID")?;
    let name = f.take("MD_NAME").map(|n| ArrayName::new(&n));
    let devname = f.take("MD_DEVNAME");

    // MD_DEVICE_<key>_ROLE and MD_DEVICE_<key>_DEV, in the order the ROLE keys come.
    let keys: Vec<String> = f
        .map
        .iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("MD_DEVICE_")
                .and_then(|rest| rest.strip_suffix("_ROLE"))
                .map(str::to_string)
        })
        .collect();
    let mut members = Vec::with_capacity(keys.len());
    for key in keys {
        let role_key = format!("MD_DEVICE_{key}_ROLE");
        let dev_key = format!("MD_DEVICE_{key}_DEV");
        let role = f.take(&role_key).map(|r| MemberRole::parse(&r));
        let path = f.take(&dev_key).ok_or_else(|| DetailError::Missing {
            what: DETAIL_EXPORT,
            key: dev_key.clone(),
        })?;
        let devname = path.rsplit('/').next().unwrap_or(&path).to_string();
        if devname.is_empty() {
            return Err(f.bad(&dev_key, &path, "a device path"));
        }
        members.push(ExportMember {
            devname,
            path,
            role: role.unwrap_or(MemberRole::Other(String::new())),
        });
    }
    // A _DEV without its _ROLE.
    if let Some((k, _)) = f
        .map
        .iter()
        .find(|(k, _)| k.starts_with("MD_DEVICE_") && k.ends_with("_DEV"))
    {
        let role_key = format!("{}_ROLE", k.trim_end_matches("_DEV"));
        return Err(DetailError::Missing {
            what: DETAIL_EXPORT,
            key: role_key,
        });
    }
    Ok(MdDetail {
        level,
        raid_devices,
        metadata,
        uuid,
        name,
        devname,
        members,
        other: f.map.into_iter().collect(),
    })
}

/// Parses `mdadm --examine --export /dev/sdX` (one member's superblock).
pub fn parse_examine_export(text: &str) -> Result<MdExamine, DetailError> {
    let mut f = Fields {
        what: EXAMINE_EXPORT,
        map: key_values(EXAMINE_EXPORT, text)?,
    };
    Ok(MdExamine {
        level: f.level()?,
        raid_devices: f.number("MD_DEVICES")?,
        uuid: f.required_uuid("MD_UUID")?,
        name: f.take("MD_NAME").map(|n| ArrayName::new(&n)),
        dev_uuid: f.uuid("MD_DEV_UUID")?,
        array_size: f.take("MD_ARRAY_SIZE"),
        update_time: f.number("MD_UPDATE_TIME")?,
        events: f.number("MD_EVENTS")?,
        other: f.map.into_iter().collect(),
    })
}

/// The progress mdadm shows in `--detail` (`Rebuild Status : 8% complete`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetailProgress {
    /// `Rebuild`, `Resync`, `Check`, `Reshape`, ... (the word before ` Status`).
    pub kind: String,
    pub percent: u32,
}

/// One row of `--detail`'s member table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetailMember {
    /// `Number` (`None` for `-`).
    pub number: Option<u32>,
    pub major: u32,
    pub minor: u32,
    /// `RaidDevice`: the slot (`None` for `-`: spares, faulty members out of a slot).
    pub raid_device: Option<u32>,
    /// The state words (`active sync set-A`, `spare rebuilding`, `faulty`, `removed`).
    pub state: Vec<String>,
    /// `/dev/vda`; `None` for a `removed` slot.
    pub path: Option<String>,
}

impl DetailMember {
    fn has(&self, word: &str) -> bool {
        self.state.iter().any(|w| w == word)
    }

    pub fn is_faulty(&self) -> bool {
        self.has("faulty")
    }

    /// An empty slot (no device).
    pub fn is_removed(&self) -> bool {
        self.has("removed")
    }

    /// A spare being rebuilt into a slot.
    pub fn is_rebuilding(&self) -> bool {
        self.has("rebuilding")
    }

    /// A spare (rebuilding or not).
    pub fn is_spare(&self) -> bool {
        self.has("spare")
    }

    /// Active and in sync.
    pub fn is_in_sync(&self) -> bool {
        self.has("active") && self.has("sync") && !self.is_faulty()
    }

    /// The kernel name (`vda`), from `path`.
    pub fn devname(&self) -> Option<&str> {
        self.path.as_deref().and_then(|p| p.rsplit('/').next())
    }
}

/// `mdadm --detail /dev/mdX` (the human form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdDetailReport {
    /// The first line's device (`/dev/md0`).
    pub device: Option<String>,
    /// `Version` (metadata).
    pub version: Option<String>,
    pub level: Option<RaidLevel>,
    /// `Array Size` in KiB.
    pub array_size_kib: Option<u64>,
    /// `Used Dev Size` in KiB.
    pub used_dev_size_kib: Option<u64>,
    pub raid_devices: Option<u32>,
    pub total_devices: Option<u32>,
    /// `State`, split at commas (`clean`, `degraded`, `recovering`; `FAILED`; `inactive`).
    pub state: Vec<String>,
    pub active_devices: Option<u32>,
    pub working_devices: Option<u32>,
    pub failed_devices: Option<u32>,
    pub spare_devices: Option<u32>,
    pub progress: Option<DetailProgress>,
    /// `Name` without mdadm's `(local to host ...)` note.
    pub name: Option<ArrayName>,
    pub uuid: Option<MdUuid>,
    /// `Events` as printed (`19`; 0.90 prints `0.20`).
    pub events: Option<String>,
    pub members: Vec<DetailMember>,
    /// Every `Key : value` line, as printed (value trimmed), in order.
    pub fields: Vec<(String, String)>,
}

impl MdDetailReport {
    fn has_state(&self, word: &str) -> bool {
        self.state.iter().any(|w| w.eq_ignore_ascii_case(word))
    }

    /// `State` says `FAILED`: too many members lost, the array cannot serve data.
    pub fn is_failed(&self) -> bool {
        self.has_state("failed")
    }

    pub fn is_degraded(&self) -> bool {
        self.has_state("degraded")
    }

    pub fn is_inactive(&self) -> bool {
        self.has_state("inactive")
    }

    /// The value of a `Key : value` line.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `mdadm --detail /dev/mdX`.
pub fn parse_detail(text: &str) -> Result<MdDetailReport, DetailError> {
    let mut device = None;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut members = Vec::new();
    let mut in_table = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let bad_line = || DetailError::BadLine {
            what: DETAIL,
            line: i + 1,
            text: raw.to_string(),
        };
        if in_table {
            members.push(parse_member_row(line).ok_or_else(bad_line)?);
        } else if line.starts_with("Number") && line.contains("RaidDevice") {
            in_table = true;
        } else if let Some((key, value)) = raw.split_once(" : ") {
            fields.push((key.trim().to_string(), value.trim().to_string()));
        } else if let Some(dev) = line
            .strip_suffix(':')
            .filter(|_| i == 0 || device.is_none())
        {
            device = Some(dev.to_string());
        } else {
            return Err(bad_line());
        }
    }
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let bad = |key: &str, value: &str, expected: &'static str| DetailError::BadValue {
        what: DETAIL,
        key: key.to_string(),
        value: value.to_string(),
        expected,
    };
    let count = |key: &str| -> Result<Option<u32>, DetailError> {
        get(key)
            .map(|v| v.parse().map_err(|_| bad(key, v, "a number")))
            .transpose()
    };
    // `126976 (124.00 MiB 130.02 MB)`: KiB first.
    let kib = |key: &str| -> Result<Option<u64>, DetailError> {
        get(key)
            .map(|v| {
                v.split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| bad(key, v, "a size in KiB"))
            })
            .transpose()
    };
    let level = get("Raid Level")
        .map(|v| v.parse().map_err(|_| bad("Raid Level", v, "a RAID level")))
        .transpose()?;
    let progress = fields
        .iter()
        .find_map(|(k, v)| k.strip_suffix(" Status").map(|kind| (kind, v)))
        .map(|(kind, v)| {
            v.strip_suffix("% complete")
                .and_then(|p| p.trim().parse().ok())
                .map(|percent| DetailProgress {
                    kind: kind.to_string(),
                    percent,
                })
                .ok_or_else(|| bad(&format!("{kind} Status"), v, "`N% complete`"))
        })
        .transpose()?;
    let uuid = get("UUID")
        .map(|v| {
            strip_local_note(v)
                .parse()
                .map_err(|_| bad("UUID", v, "a UUID"))
        })
        .transpose()?;
    Ok(MdDetailReport {
        device,
        version: get("Version").map(str::to_string),
        level,
        array_size_kib: kib("Array Size")?,
        used_dev_size_kib: kib("Used Dev Size")?,
        raid_devices: count("Raid Devices")?,
        total_devices: count("Total Devices")?,
        state: get("State")
            .map(|s| {
                s.split(',')
                    .map(|w| w.trim().to_string())
                    .filter(|w| !w.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        active_devices: count("Active Devices")?,
        working_devices: count("Working Devices")?,
        failed_devices: count("Failed Devices")?,
        spare_devices: count("Spare Devices")?,
        progress,
        name: get("Name").map(|v| ArrayName::new(strip_local_note(v))),
        uuid,
        events: get("Events").map(str::to_string),
        members,
        fields,
    })
}

/// `tvguest:vault-data0  (local to host tvguest)` → `tvguest:vault-data0`.
fn strip_local_note(v: &str) -> &str {
    match v.find(" (") {
        Some(i) if v.ends_with(')') => v[..i].trim_end(),
        _ => v,
    }
}

/// `0  254  0  0  active sync  /dev/vda`, `-  0  0  2  removed`, `-  254  64  -  /dev/vde`.
fn parse_member_row(line: &str) -> Option<DetailMember> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < 4 {
        return None;
    }
    let opt = |w: &str| -> Option<Option<u32>> {
        if w == "-" {
            Some(None)
        } else {
            w.parse().ok().map(Some)
        }
    };
    let number = opt(words[0])?;
    let major = words[1].parse().ok()?;
    let minor = words[2].parse().ok()?;
    let raid_device = opt(words[3])?;
    let path = match words.last() {
        Some(w) if w.starts_with('/') && words.len() > 4 => words.pop().map(str::to_string),
        _ => None,
    };
    Some(DetailMember {
        number,
        major,
        minor,
        raid_device,
        state: words[4..].iter().map(|w| w.to_string()).collect(),
        path,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    macro_rules! md {
        ($path:literal) => {
            include_str!(concat!("../../testdata/md/", $path))
        };
    }

    fn uuid(s: &str) -> MdUuid {
        s.parse().unwrap()
    }

    fn roles(d: &MdDetail) -> Vec<(&str, MemberRole)> {
        d.members
            .iter()
            .map(|m| (m.devname.as_str(), m.role.clone()))
            .collect()
    }

    #[test]
    fn export_of_a_clean_raid5_with_a_spare() {
        let d = parse_detail_export(md!("01-clean/detail-export.md0")).unwrap();
        assert_eq!(d.level, Some(RaidLevel::Raid5));
        assert_eq!(d.raid_devices, Some(3));
        assert_eq!(d.metadata.as_deref(), Some("1.2"));
        assert_eq!(d.uuid, uuid("9dab6a3d:5a99556a:efffaae8:2d51e817"));
        let name = d.name.as_ref().unwrap();
        assert_eq!(name.full, "tvguest:vault-data0");
        assert_eq!(name.short, "vault-data0");
        assert_eq!(name.host(), Some("tvguest"));
        assert_eq!(d.devname, None);
        assert_eq!(
            roles(&d),
            [
                ("vdc", MemberRole::Active(2)),
                ("vda", MemberRole::Active(0)),
                ("vdd", MemberRole::Spare),
                ("vdb", MemberRole::Active(1)),
            ]
        );
        assert_eq!(d.members[0].path, "/dev/vdc");
        assert!(d.other.is_empty(), "{:?}", d.other);
    }

    #[test]
    fn export_of_other_levels_and_metadata() {
        let r10 = parse_detail_export(md!("01-clean/detail-export.md1")).unwrap();
        assert_eq!(r10.level, Some(RaidLevel::Raid10));
        assert_eq!(r10.raid_devices, Some(4));
        assert_eq!(r10.name.unwrap().short, "vault-os0");
        assert_eq!(r10.members.len(), 5);
        let spare = r10
            .members
            .iter()
            .find(|m| m.role == MemberRole::Spare)
            .unwrap();
        assert_eq!(spare.devname, "nvme4n1");

        let r6 = parse_detail_export(md!("01-clean/detail-export.md2")).unwrap();
        assert_eq!(r6.level, Some(RaidLevel::Raid6));
        assert_eq!(r6.uuid, uuid("491c4c8d-88b2-b50c-1e8c-d723fbad13ca"));

        // 0.90: no name.
        let v090 = parse_detail_export(md!("01-clean/detail-export.md3")).unwrap();
        assert_eq!(v090.metadata.as_deref(), Some("0.90"));
        assert_eq!(v090.name, None);
        assert_eq!(v090.level, Some(RaidLevel::Raid1));

        let r0 = parse_detail_export(md!("01-clean/detail-export.md4")).unwrap();
        assert_eq!(
            (r0.level, r0.metadata.as_deref()),
            (Some(RaidLevel::Raid0), Some("1.1"))
        );
    }

    #[test]
    fn export_misreports_faulty_members_as_the_module_doc_says() {
        // Rebuilding onto vdd after vdb failed: vdd already has slot 1, faulty vdb is "spare".
        let d = parse_detail_export(md!("02-r5-fail-recovering/detail-export.md0")).unwrap();
        assert_eq!(
            roles(&d),
            [
                ("vdc", MemberRole::Active(2)),
                ("vda", MemberRole::Active(0)),
                ("vdd", MemberRole::Active(1)),
                ("vdb", MemberRole::Spare),
            ]
        );
        // Two members failed: vda (refused with EBUSY, yet marked faulty) keeps slot 0.
        let d = parse_detail_export(md!("05-r5-failed/detail-export.md0")).unwrap();
        assert_eq!(
            roles(&d),
            [
                ("vdc", MemberRole::Spare),
                ("vda", MemberRole::Active(0)),
                ("vdd", MemberRole::Active(1)),
            ]
        );
        // Replacement: nvme2n1 rebuilding into the slot of nvme0n1, both report 0.
        let d = parse_detail_export(md!("11-r10-replace/detail-export.md1")).unwrap();
        let zero: Vec<_> = d
            .members
            .iter()
            .filter(|m| m.role == MemberRole::Active(0))
            .map(|m| m.devname.as_str())
            .collect();
        assert_eq!(zero, ["nvme2n1", "nvme0n1"]);
    }

    #[test]
    fn export_of_an_inactive_array() {
        let d = parse_detail_export(md!("08-r6-incremental/detail-export.md127")).unwrap();
        assert_eq!(d.level, None);
        assert_eq!(d.raid_devices, Some(1));
        assert_eq!(d.devname.as_deref(), Some("vault-data1"));
        assert_eq!(roles(&d), [("vde", MemberRole::Spare)]);
        let full =
            parse_detail_export(md!("08-r6-incremental/detail-export-complete.md127")).unwrap();
        assert_eq!(full.level, Some(RaidLevel::Raid6));
        assert_eq!(full.members.len(), 5);
        assert_eq!(full.uuid, d.uuid);
    }

    #[test]
    fn examine_tells_which_array_a_disk_belongs_to() {
        let data0 = parse_detail_export(md!("01-clean/detail-export.md0")).unwrap();
        let os0 = parse_detail_export(md!("01-clean/detail-export.md1")).unwrap();
        let e = parse_examine_export(md!("01-clean/examine-export.vda")).unwrap();
        assert_eq!(e.level, Some(RaidLevel::Raid5));
        assert_eq!(e.raid_devices, Some(3));
        assert_eq!(e.name.as_ref().unwrap().short, "vault-data0");
        assert_eq!(e.array_size.as_deref(), Some("130.02MB"));
        assert_eq!(e.update_time, Some(1_795_411_208));
        assert_eq!(e.events, Some(19));
        assert_eq!(
            e.dev_uuid,
            Some(uuid("b0959b85:9098ac35:0138af17:001db11d"))
        );
        assert!(e.belongs_to(&data0.uuid));
        assert!(!e.belongs_to(&os0.uuid));
        // The spare carries the same array UUID and its own device UUID.
        let spare = parse_examine_export(md!("01-clean/examine-export.vdd")).unwrap();
        assert!(spare.belongs_to(&data0.uuid));
        assert_ne!(spare.dev_uuid, e.dev_uuid);
        let nvme = parse_examine_export(md!("01-clean/examine-export.nvme0n1")).unwrap();
        assert!(nvme.belongs_to(&os0.uuid));
        // 0.90: no name, no device UUID; 1.1 raid0: events 0, no array size.
        let v090 = parse_examine_export(md!("01-clean/examine-export.vdj")).unwrap();
        assert_eq!((v090.name.clone(), v090.dev_uuid), (None, None));
        assert_eq!(v090.events, Some(20));
        let r0 = parse_examine_export(md!("01-clean/examine-export.vdl")).unwrap();
        assert_eq!((r0.events, r0.array_size.clone()), (Some(0), None));
        // After the array failed the superblock is still there, with later events.
        let failed = parse_examine_export(md!("05-r5-failed/examine-export.vda")).unwrap();
        assert!(failed.belongs_to(&data0.uuid));
        assert_eq!(failed.events, Some(42));
    }

    #[test]
    fn export_errors_name_the_line_and_key() {
        let err = |t: &str| parse_detail_export(t).unwrap_err().to_string();
        assert_eq!(
            err("MD_LEVEL=raid5\nmdadm: cannot open /dev/md9\n"),
            "mdadm --detail --export line 2: \"mdadm: cannot open /dev/md9\" is not KEY=VALUE"
        );
        assert_eq!(
            err("MD_LEVEL=raid5\n"),
            "mdadm --detail --export: MD_UUID is missing"
        );
        assert_eq!(
            err("MD_LEVEL=raid9\nMD_UUID=9dab6a3d:5a99556a:efffaae8:2d51e817\n"),
            "mdadm --detail --export: MD_LEVEL=\"raid9\" is not a RAID level"
        );
        assert_eq!(
            err("MD_DEVICES=three\nMD_UUID=9dab6a3d:5a99556a:efffaae8:2d51e817\n"),
            "mdadm --detail --export: MD_DEVICES=\"three\" is not a number"
        );
        assert_eq!(
            err("MD_UUID=9dab6a3d\n"),
            "mdadm --detail --export: MD_UUID=\"9dab6a3d\" is not a UUID"
        );
        assert_eq!(
            err("MD_UUID=9dab6a3d:5a99556a:efffaae8:2d51e817\nMD_DEVICE_dev_vda_ROLE=0\n"),
            "mdadm --detail --export: MD_DEVICE_dev_vda_DEV is missing"
        );
        assert_eq!(
            err("MD_UUID=9dab6a3d:5a99556a:efffaae8:2d51e817\nMD_DEVICE_dev_vda_DEV=/dev/vda\n"),
            "mdadm --detail --export: MD_DEVICE_dev_vda_ROLE is missing"
        );
        assert_eq!(
            err("MD_UUID=1\nMD_UUID=2\n"),
            "mdadm --detail --export line 2: MD_UUID appears twice"
        );
        assert_eq!(
            parse_examine_export("MD_LEVEL=raid1\n")
                .unwrap_err()
                .to_string(),
            "mdadm --examine --export: MD_UUID is missing"
        );
    }

    #[test]
    fn unknown_keys_and_roles_are_kept() {
        let d = parse_detail_export(
            "MD_LEVEL=raid1\nMD_UUID=9dab6a3d:5a99556a:efffaae8:2d51e817\nMD_CONTAINER=/dev/md/imsm0\n\
             MD_DEVICE_dev_sda_ROLE=journal\nMD_DEVICE_dev_sda_DEV=/dev/sda\n\
             MD_DEVICE_dev_sdb_ROLE=weird\nMD_DEVICE_dev_sdb_DEV=/dev/sdb\n",
        )
        .unwrap();
        assert_eq!(
            d.other.get("MD_CONTAINER").map(String::as_str),
            Some("/dev/md/imsm0")
        );
        assert_eq!(d.members[0].role, MemberRole::Journal);
        assert_eq!(d.members[1].role, MemberRole::Other("weird".to_string()));
    }

    #[test]
    fn human_detail_of_a_clean_raid5() {
        let r = parse_detail(md!("01-clean/detail.md0")).unwrap();
        assert_eq!(r.device.as_deref(), Some("/dev/md0"));
        assert_eq!(r.version.as_deref(), Some("1.2"));
        assert_eq!(r.level, Some(RaidLevel::Raid5));
        assert_eq!(r.array_size_kib, Some(126_976));
        assert_eq!(r.used_dev_size_kib, Some(63_488));
        assert_eq!((r.raid_devices, r.total_devices), (Some(3), Some(4)));
        assert_eq!(r.state, ["clean"]);
        assert_eq!(
            (
                r.active_devices,
                r.working_devices,
                r.failed_devices,
                r.spare_devices
            ),
            (Some(3), Some(4), Some(0), Some(1))
        );
        assert_eq!(r.name.as_ref().unwrap().full, "tvguest:vault-data0");
        assert_eq!(r.uuid, Some(uuid("9dab6a3d:5a99556a:efffaae8:2d51e817")));
        assert_eq!(r.events.as_deref(), Some("19"));
        assert_eq!(r.field("Layout"), Some("left-symmetric"));
        assert_eq!(r.field("Chunk Size"), Some("512K"));
        assert_eq!(r.progress, None);
        assert_eq!(r.members.len(), 4);
        let spare = &r.members[3];
        assert_eq!(
            (spare.number, spare.major, spare.minor, spare.raid_device),
            (Some(3), 254, 48, None)
        );
        assert!(spare.is_spare() && !spare.is_rebuilding());
        assert_eq!(spare.devname(), Some("vdd"));
        assert!(r.members[..3].iter().all(DetailMember::is_in_sync));
    }

    #[test]
    fn human_detail_while_recovering_and_failed() {
        let r = parse_detail(md!("02-r5-fail-recovering/detail.md0")).unwrap();
        assert_eq!(r.state, ["clean", "degraded", "recovering"]);
        assert!(r.is_degraded() && !r.is_failed());
        assert_eq!(
            r.progress,
            Some(DetailProgress {
                kind: "Rebuild".to_string(),
                percent: 8
            })
        );
        let rebuilding = r.members.iter().find(|m| m.is_rebuilding()).unwrap();
        assert_eq!(
            (rebuilding.devname(), rebuilding.raid_device),
            (Some("vdd"), Some(1))
        );
        let faulty: Vec<_> = r.members.iter().filter(|m| m.is_faulty()).collect();
        assert_eq!(faulty.len(), 1);
        assert_eq!(
            (faulty[0].devname(), faulty[0].raid_device),
            (Some("vdb"), None)
        );

        // RAID5 with two failed members: FAILED, a removed slot, two faulty rows.
        let r = parse_detail(md!("05-r5-failed/detail.md0")).unwrap();
        assert_eq!(r.state, ["clean", "FAILED"]);
        assert!(r.is_failed());
        assert_eq!(
            (
                r.active_devices,
                r.working_devices,
                r.failed_devices,
                r.spare_devices
            ),
            (Some(1), Some(1), Some(2), Some(0))
        );
        let removed = r.members.iter().find(|m| m.is_removed()).unwrap();
        assert_eq!(
            (
                removed.number,
                removed.major,
                removed.minor,
                removed.raid_device,
                removed.path.clone()
            ),
            (None, 0, 0, Some(2), None)
        );
        let faulty: Vec<_> = r
            .members
            .iter()
            .filter(|m| m.is_faulty())
            .map(|m| (m.devname().unwrap_or(""), m.raid_device))
            .collect();
        assert_eq!(faulty, [("vda", Some(0)), ("vdc", None)]);
    }

    #[test]
    fn human_detail_of_check_reshape_replace_inactive_and_090() {
        let r = parse_detail(md!("07-r6-check/detail.md2")).unwrap();
        assert_eq!(r.state, ["clean", "checking"]);
        assert_eq!(
            r.progress.as_ref().map(|p| (p.kind.as_str(), p.percent)),
            Some(("Check", 12))
        );

        let r = parse_detail(md!("12-r6-reshape/detail.md2")).unwrap();
        assert_eq!(r.state, ["clean", "reshaping"]);
        assert_eq!(
            r.progress.as_ref().map(|p| (p.kind.as_str(), p.percent)),
            Some(("Reshape", 9))
        );
        assert_eq!(r.field("Delta Devices"), Some("1, (4->5)"));
        assert_eq!(r.raid_devices, Some(5));

        let r = parse_detail(md!("11-r10-replace/detail.md1")).unwrap();
        assert_eq!(r.state, ["clean", "recovering"]);
        assert_eq!(r.members[0].state, ["active", "sync", "set-A"]);
        assert!(r.members[0].is_in_sync());
        assert_eq!(r.members[1].devname(), Some("nvme2n1"));
        assert!(r.members[1].is_rebuilding());
        assert_eq!(r.members[1].raid_device, Some(0));

        let r = parse_detail(md!("08-r6-incremental/detail.md127")).unwrap();
        assert_eq!(r.state, ["inactive"]);
        assert!(r.is_inactive());
        assert_eq!(r.level, Some(RaidLevel::Raid6));
        assert_eq!(r.array_size_kib, None);
        let m = &r.members[0];
        assert_eq!(
            (m.number, m.raid_device, m.state.len(), m.devname()),
            (None, None, 0, Some("vde"))
        );

        let r = parse_detail(md!("01-clean/detail.md3")).unwrap();
        assert_eq!(r.version.as_deref(), Some("0.90"));
        assert_eq!(r.uuid, Some(uuid("0a9a91aa:7c8d3d9d:132b9c70:d75a485d")));
        assert_eq!(r.events.as_deref(), Some("0.20"));
        assert_eq!(r.field("Preferred Minor"), Some("3"));
    }

    #[test]
    fn human_detail_errors_name_the_line() {
        let e = parse_detail("/dev/md0:\n    Raid Level : raid5\nsomething odd\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mdadm --detail line 3: \"something odd\" is neither `Key : value` nor a member table row"
        );
        let e = parse_detail(
            "    Number   Major   Minor   RaidDevice State\n   0 254 x 0 active sync /dev/vda\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("mdadm --detail line 2:"), "{e}");
        let e = parse_detail("    Rebuild Status : soon\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mdadm --detail: Rebuild Status=\"soon\" is not `N% complete`"
        );
        let e = parse_detail("    Raid Devices : many\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mdadm --detail: Raid Devices=\"many\" is not a number"
        );
    }

    #[test]
    fn results_serialize_to_json() {
        let d = parse_detail_export(md!("01-clean/detail-export.md0")).unwrap();
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["level"], "raid5");
        assert_eq!(json["uuid"], "9dab6a3d:5a99556a:efffaae8:2d51e817");
        assert_eq!(json["members"][0]["role"]["active"], 2);
        assert_eq!(json["members"][2]["role"], "spare");
    }
}
