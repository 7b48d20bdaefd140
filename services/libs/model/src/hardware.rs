//! The recorded hardware description: what `vaultctl hw dump` prints and
//! `vaultctl provision --hardware FILE` reads (TOML, or JSON for a `.json` file).
//!
//! ```toml
//! schema = 1
//! source = "sysfs"                 # free text: where it was captured
//!
//! [cpu]
//! model = "Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz"
//! sockets = 2
//! cores = 12                       # physical cores, all sockets
//! threads = 24                     # logical CPUs
//!
//! [memory]
//! total-bytes = 67_350_000_000     # /proc/meminfo MemTotal
//!
//! [[disk]]
//! name = "sda"                     # kernel name (/dev/sda)
//! size-bytes = 600_127_266_816
//! rotational = true
//! rpm = 15000                      # optional (SCSI VPD page 0xb1)
//! model = "ST600MP0005"            # optional
//! serial = "S7M0A1B2"              # optional; the plan needs it
//! bus = "sas"                      # sata | sas | scsi | nvme | virtio | usb | mmc | unknown
//! slot = 0                         # optional enclosure bay
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The schema version of the description.
pub const HARDWARE_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HardwareDescription {
    pub schema: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskInfo>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CpuInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub sockets: u32,
    /// Physical cores over all sockets.
    pub cores: u32,
    /// Logical CPUs.
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MemoryInfo {
    /// MemTotal: installed RAM less what firmware and the kernel keep.
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskInfo {
    pub name: String,
    pub size_bytes: u64,
    pub rotational: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    pub bus: Bus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    Sata,
    Sas,
    Scsi,
    Nvme,
    Virtio,
    Usb,
    Mmc,
    Unknown,
}

impl DiskInfo {
    /// How messages name the disk: `sdj (bay 9)` or `sdj`.
    pub fn label(&self) -> String {
        match self.slot {
            Some(s) => format!("{} (bay {s})", self.name),
            None => self.name.clone(),
        }
    }
}

/// Why a recorded description could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("{}: cannot read", file.display())]
    Read {
        file: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", file.display())]
    Parse {
        file: std::path::PathBuf,
        message: String,
    },
    #[error("{}: schema: version {found} is not supported (this build reads {HARDWARE_SCHEMA})", file.display())]
    Schema {
        file: std::path::PathBuf,
        found: u32,
    },
    #[error("{}: disk {name:?} appears twice", file.display())]
    DuplicateDisk {
        file: std::path::PathBuf,
        name: String,
    },
}

impl HardwareDescription {
    /// Parses a description: JSON when `file` ends in `.json`, else TOML.
    pub fn parse(file: &Path, text: &str) -> Result<HardwareDescription, HardwareError> {
        let parse = |message: String| HardwareError::Parse {
            file: file.to_owned(),
            message,
        };
        let hw: HardwareDescription = if file.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(text).map_err(|e| parse(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| {
                let at = e.span().map(|s| {
                    let before = text.get(..s.start).unwrap_or(text);
                    before.matches('\n').count() + 1
                });
                let msg = e.message().replace('\n', " ");
                parse(match at {
                    Some(line) => format!("line {line}: {msg}"),
                    None => msg,
                })
            })?
        };
        if hw.schema != HARDWARE_SCHEMA {
            return Err(HardwareError::Schema {
                file: file.to_owned(),
                found: hw.schema,
            });
        }
        for (i, d) in hw.disks.iter().enumerate() {
            if hw.disks[..i].iter().any(|e| e.name == d.name) {
                return Err(HardwareError::DuplicateDisk {
                    file: file.to_owned(),
                    name: d.name.clone(),
                });
            }
        }
        Ok(hw)
    }

    /// Reads and parses a description file.
    pub fn load(file: &Path) -> Result<HardwareDescription, HardwareError> {
        let text = std::fs::read_to_string(file).map_err(|source| HardwareError::Read {
            file: file.to_owned(),
            source,
        })?;
        HardwareDescription::parse(file, &text)
    }

    /// The TOML form (the fixture format).
    pub fn to_toml(&self) -> String {
        // Every field is a plain string, integer, bool or table: serialising cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}
