//! The appliance config `vaultctl provision` writes (default `/etc/tiervault/appliance.toml`)
//! and the pools and ingest services read: the chosen tier and its plan.
//!
//! ```toml
//! version = 1
//!
//! [plan]
//! tier = "tier-5"
//! usable-bytes = 6000000000000
//! usable-tib = 5
//! index-memory-bytes = 268435456
//! dedup-cache-bytes = 8589934592
//! unused = []
//!
//! [[plan.array]]
//! name = "os0"
//! role = "os"
//! level = "raid10"
//! [[plan.array.members]]
//! serial = "T5-OS-0"
//! device = "sda"
//! size-bytes = 450098159616
//! slot = 0
//! # ...
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

pub const APPLIANCE_SCHEMA: u32 = 1;

/// Where `vaultctl provision` writes the appliance config unless told otherwise.
pub const DEFAULT_APPLIANCE_CONFIG: &str = "/etc/tiervault/appliance.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApplianceConfig {
    pub version: u32,
    pub plan: Plan,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    #[error("{}: version: {found} is not supported (this build reads {APPLIANCE_SCHEMA})", file.display())]
    Version { file: PathBuf, found: u32 },
    #[error("{}: reading: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ApplianceConfig {
    pub fn new(plan: Plan) -> ApplianceConfig {
        ApplianceConfig {
            version: APPLIANCE_SCHEMA,
            plan,
        }
    }

    pub fn to_toml(&self) -> String {
        // Strings, integers and tables only: serialising cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// Read the config at `file`; `Ok(None)` when there is none (an appliance not yet
    /// provisioned, or embedded mode).
    pub fn load_if_present(file: &Path) -> Result<Option<ApplianceConfig>, ApplianceError> {
        match std::fs::read_to_string(file) {
            Ok(text) => Self::parse(file, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ApplianceError::Read {
                file: file.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(file: &Path, text: &str) -> Result<ApplianceConfig, ApplianceError> {
        let c: ApplianceConfig = toml::from_str(text).map_err(|e| ApplianceError::Parse {
            file: file.to_owned(),
            message: e.message().replace('\n', " "),
        })?;
        if c.version != APPLIANCE_SCHEMA {
            return Err(ApplianceError::Version {
                file: file.to_owned(),
                found: c.version,
            });
        }
        Ok(c)
    }
}

/// Where a memory setting came from (for logs and `--json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// Set by the operator (a command-line flag or a service's config).
    Explicit,
    /// The hardware tier's plan in this appliance config.
    Appliance(PathBuf),
    /// Neither: the built-in default.
    Default,
}

/// A per-appliance setting: `explicit` if given, else `from_plan` of the appliance config at
/// `appliance` when it exists, else `default`.
pub fn setting(
    explicit: Option<u64>,
    appliance: &Path,
    from_plan: impl Fn(&Plan) -> u64,
    default: u64,
) -> Result<(u64, SettingSource), ApplianceError> {
    if let Some(b) = explicit {
        return Ok((b, SettingSource::Explicit));
    }
    Ok(match ApplianceConfig::load_if_present(appliance)? {
        Some(c) => (
            from_plan(&c.plan),
            SettingSource::Appliance(appliance.to_path_buf()),
        ),
        None => (default, SettingSource::Default),
    })
}
