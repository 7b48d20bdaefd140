//! Pure parsers of what Linux md, mdadm and the kernel print, tested on outputs captured in a
//! real guest (`testdata/md/`, re-captured by `testdata/capture.sh`).
//!
//! | module | input |
//! |---|---|
//! | [`detail`] | `mdadm --detail --export /dev/mdX` ([`detail::MdDetail`]) and `mdadm --examine --export /dev/sdX` ([`detail::MdExamine`]) |
//! | [`mdstat`] | `/proc/mdstat` ([`mdstat::Mdstat`]) |
//! | [`sysfs`] | `/sys/block/mdX/md/` attribute values ([`sysfs::MdSysfs`]; the one reader here that does I/O, from a root it is given) and a block device's partitions and holders |
//! | [`mountinfo`] | `/proc/self/mountinfo` ([`mountinfo::MountInfo`]) |
//!
//! None of them runs a command; the parsers take text and never panic on it: a line or field
//! they cannot read is an error that names it.

pub mod detail;
pub mod mdstat;
pub mod mountinfo;
pub mod sysfs;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An md RAID level, as md and mdadm spell it (`raid5`, `linear`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaidLevel {
    Linear,
    Raid0,
    Raid1,
    Raid4,
    Raid5,
    Raid6,
    Raid10,
    Multipath,
    Faulty,
    /// An external-metadata container (IMSM, DDF).
    Container,
}

impl RaidLevel {
    /// The name md and mdadm use (`raid5`).
    pub fn as_str(self) -> &'static str {
        match self {
            RaidLevel::Linear => "linear",
            RaidLevel::Raid0 => "raid0",
            RaidLevel::Raid1 => "raid1",
            RaidLevel::Raid4 => "raid4",
            RaidLevel::Raid5 => "raid5",
            RaidLevel::Raid6 => "raid6",
            RaidLevel::Raid10 => "raid10",
            RaidLevel::Multipath => "multipath",
            RaidLevel::Faulty => "faulty",
            RaidLevel::Container => "container",
        }
    }

    /// The level number stored in an md superblock (`-1` linear, `-4` multipath, `-5` faulty).
    pub fn from_superblock(level: i32) -> Option<RaidLevel> {
        Some(match level {
            -1 => RaidLevel::Linear,
            0 => RaidLevel::Raid0,
            1 => RaidLevel::Raid1,
            4 => RaidLevel::Raid4,
            5 => RaidLevel::Raid5,
            6 => RaidLevel::Raid6,
            10 => RaidLevel::Raid10,
            -4 => RaidLevel::Multipath,
            -5 => RaidLevel::Faulty,
            _ => return None,
        })
    }

    /// How many members may fail before the array loses data (0 for linear, raid0).
    pub fn redundancy(self, raid_disks: u32) -> u32 {
        match self {
            RaidLevel::Raid1 | RaidLevel::Multipath => raid_disks.saturating_sub(1),
            RaidLevel::Raid4 | RaidLevel::Raid5 => 1,
            RaidLevel::Raid6 => 2,
            // One per mirror pair with the default near-2 layout; more only by luck.
            RaidLevel::Raid10 => 1,
            RaidLevel::Linear | RaidLevel::Raid0 | RaidLevel::Faulty | RaidLevel::Container => 0,
        }
    }
}

impl fmt::Display for RaidLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name md or mdadm would not print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown RAID level {0:?}")]
pub struct UnknownLevel(pub String);

impl FromStr for RaidLevel {
    type Err = UnknownLevel;

    /// `raid5`, `5`, `linear`, `-1`, ... (mdadm accepts and prints both forms).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "linear" | "-1" => RaidLevel::Linear,
            "raid0" | "0" | "stripe" => RaidLevel::Raid0,
            "raid1" | "1" | "mirror" => RaidLevel::Raid1,
            "raid4" | "4" => RaidLevel::Raid4,
            "raid5" | "5" => RaidLevel::Raid5,
            "raid6" | "6" => RaidLevel::Raid6,
            "raid10" | "10" => RaidLevel::Raid10,
            "multipath" | "mp" | "-4" => RaidLevel::Multipath,
            "faulty" | "-5" => RaidLevel::Faulty,
            "container" => RaidLevel::Container,
            _ => return Err(UnknownLevel(s.to_string())),
        })
    }
}

/// A block device number (`major:minor`, as in `/sys/class/block/*/dev` and mountinfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Text that is not `major:minor`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a major:minor device number")]
pub struct BadDevNum(pub String);

impl FromStr for DevNum {
    type Err = BadDevNum;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDevNum(s.to_string());
        let (major, minor) = s.trim().split_once(':').ok_or_else(bad)?;
        Ok(DevNum {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// An md array's (or member's) UUID. mdadm prints it as four colon-separated groups
/// (`9dab6a3d:5a99556a:efffaae8:2d51e817`), sysfs and blkid as a dashed UUID
/// (`9dab6a3d-5a99-556a-efff-aae82d51e817`): both parse, and compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct MdUuid(pub [u8; 16]);

impl MdUuid {
    /// The dashed form sysfs and blkid print.
    pub fn dashed(&self) -> String {
        let h: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// All zeros: what sysfs shows for an array not yet started.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for MdUuid {
    /// mdadm's form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.0.chunks(4).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            for b in chunk {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Text that is not a UUID in mdadm's, the dashed or the plain hex form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a UUID")]
pub struct BadUuid(pub String);

impl FromStr for MdUuid {
    type Err = BadUuid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadUuid(s.to_string());
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b':' && b != b'-').collect();
        if hex.len() != 32 {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(digits, 16).map_err(|_| bad())?;
        }
        Ok(MdUuid(out))
    }
}

impl From<MdUuid> for String {
    fn from(u: MdUuid) -> String {
        u.to_string()
    }
}

impl TryFrom<String> for MdUuid {
    type Error = BadUuid;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// What an array is syncing. sysfs `sync_action` prints `idle`, `resync`, `recover`,
/// `check`, `repair`, `reshape` or `frozen`; `/proc/mdstat` and `last_sync_action` say
/// `recovery` for [`SyncAction::Recover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncAction {
    Idle,
    /// Making the redundancy consistent (after creation or an unclean stop).
    Resync,
    /// Rebuilding onto a spare or a re-added member.
    Recover,
    /// Reading everything and counting mismatches (`echo check > sync_action`).
    Check,
    /// Like check, and rewriting what does not match.
    Repair,
    /// Changing the shape (members, level, chunk, layout).
    Reshape,
    /// Syncing is blocked (mdadm does this around some changes).
    Frozen,
}

impl SyncAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncAction::Idle => "idle",
            SyncAction::Resync => "resync",
            SyncAction::Recover => "recover",
            SyncAction::Check => "check",
            SyncAction::Repair => "repair",
            SyncAction::Reshape => "reshape",
            SyncAction::Frozen => "frozen",
        }
    }
}

impl fmt::Display for SyncAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a sync action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sync action {0:?}")]
pub struct UnknownSyncAction(pub String);

impl FromStr for SyncAction {
    type Err = UnknownSyncAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "idle" => SyncAction::Idle,
            "resync" => SyncAction::Resync,
            "recover" | "recovery" => SyncAction::Recover,
            "check" => SyncAction::Check,
            "repair" => SyncAction::Repair,
            "reshape" => SyncAction::Reshape,
            "frozen" => SyncAction::Frozen,
            _ => return Err(UnknownSyncAction(s.to_string())),
        })
    }
}

/// A block device by kernel name and number (`vda`, `254:0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockDev {
    pub name: String,
    pub dev: DevNum,
}

/// The short name of an md array name: `tvguest:vault-data0` → `vault-data0` (mdadm prefixes
/// the home host); a name without a host is its own short name.
pub fn short_array_name(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, short)| short)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_and_numbers() {
        for l in [
            RaidLevel::Linear,
            RaidLevel::Raid0,
            RaidLevel::Raid1,
            RaidLevel::Raid4,
            RaidLevel::Raid5,
            RaidLevel::Raid6,
            RaidLevel::Raid10,
            RaidLevel::Multipath,
            RaidLevel::Faulty,
            RaidLevel::Container,
        ] {
            assert_eq!(l.as_str().parse::<RaidLevel>(), Ok(l));
        }
        assert_eq!("6".parse::<RaidLevel>(), Ok(RaidLevel::Raid6));
        assert_eq!(RaidLevel::from_superblock(10), Some(RaidLevel::Raid10));
        assert_eq!(RaidLevel::from_superblock(-1), Some(RaidLevel::Linear));
        assert_eq!(RaidLevel::from_superblock(7), None);
        assert_eq!(
            "raid7".parse::<RaidLevel>().map_err(|e| e.to_string()),
            Err("unknown RAID level \"raid7\"".to_string())
        );
        assert_eq!(RaidLevel::Raid6.redundancy(4), 2);
        assert_eq!(RaidLevel::Raid1.redundancy(3), 2);
    }

    #[test]
    fn dev_numbers_and_names() {
        assert_eq!(
            "9:127".parse(),
            Ok(DevNum {
                major: 9,
                minor: 127
            })
        );
        assert_eq!(
            DevNum {
                major: 259,
                minor: 3
            }
            .to_string(),
            "259:3"
        );
        assert!("9".parse::<DevNum>().is_err());
        assert!("9:x".parse::<DevNum>().is_err());
        assert_eq!(short_array_name("tvguest:vault-data0"), "vault-data0");
        assert_eq!(short_array_name("vault-data0"), "vault-data0");
    }

    #[test]
    fn uuids_in_mdadm_and_dashed_forms_are_one() {
        let a: MdUuid = "9dab6a3d:5a99556a:efffaae8:2d51e817".parse().unwrap();
        let b: MdUuid = "9dab6a3d-5a99-556a-efff-aae82d51e817".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "9dab6a3d:5a99556a:efffaae8:2d51e817");
        assert_eq!(a.dashed(), "9dab6a3d-5a99-556a-efff-aae82d51e817");
        assert!(!a.is_nil());
        assert!("00000000-0000-0000-0000-000000000000"
            .parse::<MdUuid>()
            .unwrap()
            .is_nil());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"9dab6a3d:5a99556a:efffaae8:2d51e817\""
        );
        assert_eq!(
            serde_json::from_str::<MdUuid>("\"9dab6a3d-5a99-556a-efff-aae82d51e817\"").unwrap(),
            a
        );
        for bad in [
            "",
            "9dab6a3d",
            "9dab6a3d:5a99556a:efffaae8:2d51e81g",
            "é9dab6a3d:5a99556a:efffaae8:2d51e8",
        ] {
            assert_eq!(
                bad.parse::<MdUuid>(),
                Err(BadUuid(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn sync_actions_in_both_spellings() {
        assert_eq!("recovery".parse(), Ok(SyncAction::Recover));
        assert_eq!("recover".parse(), Ok(SyncAction::Recover));
        assert_eq!("frozen".parse(), Ok(SyncAction::Frozen));
        assert!("none".parse::<SyncAction>().is_err());
        assert_eq!(SyncAction::Check.to_string(), "check");
    }
}
