//! The hardware-profile schema: one TOML file per tier (`hardware-profiles/tier-N.toml`).
//!
//! A single-server tier describes the server (chassis, CPU, memory, network, power, disk
//! groups); a tier of several servers (tier-150, tier-200) only names its parts
//! (`composed-of`). The file format is documented in `docs/hardware.md`; the checks are in
//! [`crate::validate`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::size::ByteSize;

/// The schema version this crate reads and writes.
pub const PROFILE_SCHEMA: u32 = 1;

/// A profile file as written (every server table optional; [`crate::validate`] decides).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileFile {
    pub schema: u32,
    pub name: String,
    /// The tier's marketing (backend) capacity in TB: the N of tier-N.
    pub marketing_capacity_tb: u32,
    /// How the seed's merged table cells were read for this tier.
    #[serde(default)]
    pub reading: Option<String>,
    #[serde(default)]
    pub available_capacity_tib: Option<u64>,
    #[serde(default)]
    pub composed_of: Option<Vec<String>>,
    #[serde(default)]
    pub chassis: Option<Chassis>,
    #[serde(default)]
    pub cpu: Option<Cpu>,
    #[serde(default)]
    pub memory: Option<Memory>,
    #[serde(default)]
    pub network: Option<Network>,
    #[serde(default)]
    pub power: Option<Power>,
    #[serde(default, rename = "disk-group")]
    pub disk_groups: Vec<DiskGroup>,
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub marketing_capacity_tb: u32,
    pub reading: Option<String>,
    /// The file it came from (error messages name it).
    pub file: PathBuf,
    pub kind: ProfileKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProfileKind {
    Server(Box<Server>),
    /// Names of single-server tiers, one per server.
    Composition(Vec<String>),
}

/// One server of a tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// The seed's "Available Capacity", in TiB (checked against the arrays).
    pub available_capacity_tib: u64,
    pub chassis: Chassis,
    pub cpu: Cpu,
    pub memory: Memory,
    pub network: Network,
    pub power: Power,
    pub disk_groups: Vec<DiskGroup>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Chassis {
    pub model: String,
    pub rack_units: u32,
    pub bays: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Cpu {
    pub sockets: u32,
    pub cores_per_socket: u32,
    pub ghz: f64,
}

impl Cpu {
    pub fn cores(&self) -> u32 {
        self.sockets * self.cores_per_socket
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Memory {
    /// Installed RAM.
    pub ram: ByteSize,
    /// Bytes of RAM the dedup chunk index may use.
    pub index_budget: ByteSize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Network {
    pub management: String,
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Power {
    pub psus: u32,
    pub watts: u32,
}

/// Disks of one kind and their arrays and hot spares.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskGroup {
    pub role: Role,
    pub count: u32,
    /// Minimum size of each disk (vendor units: "2 TB" = 2 * 10^12 bytes).
    pub size: ByteSize,
    pub class: DiskClass,
    pub arrays: Vec<ArraySpec>,
    #[serde(default)]
    pub spares: u32,
}

impl DiskGroup {
    /// Disks the arrays take (spares excluded).
    pub fn array_disks(&self) -> u64 {
        self.arrays
            .iter()
            .map(|a| u64::from(a.members) * u64::from(a.count))
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The OS and dedup-DB disks.
    Os,
    /// The data vault disks.
    Data,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Os => "os",
            Role::Data => "data",
        }
    }
    /// How messages name the role's disks ("OS/dedup-DB disks", "data disks").
    pub fn disks_label(self) -> &'static str {
        match self {
            Role::Os => "OS/dedup-DB disks",
            Role::Data => "data disks",
        }
    }
}

/// The class a disk must have (matched on the rotational flag and, when known, the RPM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum DiskClass {
    #[serde(rename = "ssd")]
    Ssd,
    #[serde(rename = "15k")]
    Hdd15k,
    #[serde(rename = "7.2k")]
    Hdd7k2,
}

impl DiskClass {
    pub fn label(self) -> &'static str {
        match self {
            DiskClass::Ssd => "SSD",
            DiskClass::Hdd15k => "15K",
            DiskClass::Hdd7k2 => "7.2K",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArraySpec {
    pub level: RaidLevel,
    /// Disks per array.
    pub members: u32,
    /// How many such arrays.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RaidLevel {
    Raid1,
    Raid5,
    Raid6,
    Raid10,
}

impl RaidLevel {
    pub fn name(self) -> &'static str {
        match self {
            RaidLevel::Raid1 => "raid1",
            RaidLevel::Raid5 => "raid5",
            RaidLevel::Raid6 => "raid6",
            RaidLevel::Raid10 => "raid10",
        }
    }

    /// The fewest members Linux md accepts for a redundant array of this level.
    pub fn min_members(self) -> u32 {
        match self {
            RaidLevel::Raid1 => 2,
            RaidLevel::Raid5 => 3,
            RaidLevel::Raid6 | RaidLevel::Raid10 => 4,
        }
    }

    /// Members whose capacity holds data (the rest is parity or mirror copies).
    pub fn data_members(self, members: u32) -> u32 {
        match self {
            RaidLevel::Raid1 => members.min(1),
            RaidLevel::Raid5 => members.saturating_sub(1),
            RaidLevel::Raid6 => members.saturating_sub(2),
            RaidLevel::Raid10 => members / 2,
        }
    }
}

impl Profile {
    pub fn server(&self) -> Option<&Server> {
        match &self.kind {
            ProfileKind::Server(s) => Some(s),
            ProfileKind::Composition(_) => None,
        }
    }
}
