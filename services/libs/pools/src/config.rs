//! `/etc/tiervault/poold.toml`: where the plan is, where arrays are mounted and recorded,
//! and how the pool service watches and maintains them. Every key has a default. `vaultctl
//! pool` reads the same file when it works without the service.
//!
//! ```toml
//! appliance-config = "/etc/tiervault/appliance.toml"   # the plan `vaultctl provision` wrote
//! pool-root = "/srv/tiervault"        # vault-ddb → <root>/vault, vault-dataN → <root>/dataN
//! state-dir = "/var/lib/tiervault/poold"
//! mdadm-conf = "/etc/mdadm/mdadm.conf"
//! units-dir = "/etc/systemd/system"   # "" = write no mount units
//! bus = "system"                      # or a D-Bus address
//! bring-up = true                     # assemble and mount the pool's arrays at start
//! auto-spare = true                   # blank disks become spares; spares are lent
//! scrub-every-days = 30               # 0 = never
//! rescan-seconds = 60                 # a full re-read even when no event came
//! sync-poll-seconds = 5               # progress updates while an array syncs
//! # sysfs-root = "/sys", dev-root = "/dev", proc-root = "/proc": tests point them elsewhere
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::layout::DEFAULT_POOL_ROOT;
use crate::provision::Targets;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolConfig {
    #[serde(default = "default_appliance")]
    pub appliance_config: PathBuf,
    #[serde(default = "default_root")]
    pub pool_root: PathBuf,
    #[serde(default = "default_state")]
    pub state_dir: PathBuf,
    #[serde(default = "default_mdadm_conf")]
    pub mdadm_conf: PathBuf,
    #[serde(default = "default_units")]
    pub units_dir: PathBuf,
    #[serde(default = "default_bus")]
    pub bus: String,
    #[serde(default = "yes")]
    pub bring_up: bool,
    #[serde(default = "yes")]
    pub auto_spare: bool,
    #[serde(default = "default_scrub")]
    pub scrub_every_days: u32,
    #[serde(default = "default_rescan")]
    pub rescan_seconds: u64,
    #[serde(default = "default_sync_poll")]
    pub sync_poll_seconds: u64,
    /// Cleared alerts kept.
    #[serde(default = "default_alert_history")]
    pub alert_history: usize,
    /// Where sysfs, the device nodes and procfs are (tests point them at a fake tree).
    #[serde(default = "default_sys")]
    pub sysfs_root: PathBuf,
    #[serde(default = "default_dev")]
    pub dev_root: PathBuf,
    #[serde(default = "default_proc")]
    pub proc_root: PathBuf,
}

fn default_appliance() -> PathBuf {
    PathBuf::from(tiervault_model::DEFAULT_APPLIANCE_CONFIG)
}
fn default_root() -> PathBuf {
    PathBuf::from(DEFAULT_POOL_ROOT)
}
fn default_state() -> PathBuf {
    PathBuf::from("/var/lib/tiervault/poold")
}
fn default_mdadm_conf() -> PathBuf {
    PathBuf::from("/etc/mdadm/mdadm.conf")
}
fn default_units() -> PathBuf {
    PathBuf::from("/etc/systemd/system")
}
fn default_bus() -> String {
    "system".into()
}
fn yes() -> bool {
    true
}
fn default_scrub() -> u32 {
    30
}
fn default_rescan() -> u64 {
    60
}
fn default_sync_poll() -> u64 {
    5
}
fn default_alert_history() -> usize {
    200
}
fn default_sys() -> PathBuf {
    PathBuf::from("/sys")
}
fn default_dev() -> PathBuf {
    PathBuf::from("/dev")
}
fn default_proc() -> PathBuf {
    PathBuf::from("/proc")
}

impl PoolConfig {
    /// The file at `file`, or the defaults when there is none; relative paths resolved.
    pub fn load(file: &Path) -> Result<PoolConfig, tiervault_daemon::config::ConfigError> {
        let raw: PoolConfig = if file.exists() {
            tiervault_daemon::config::load(file)?
        } else {
            PoolConfig::defaults()
        };
        raw.resolve(file)
            .map_err(|m| tiervault_daemon::config::ConfigError::invalid(file, m))
    }

    /// The built-in defaults (no config file at all).
    pub fn defaults() -> PoolConfig {
        // An empty table takes every default; parsing it cannot fail.
        toml::from_str("").unwrap_or_else(|_| unreachable!("defaults parse"))
    }

    /// Relative paths are relative to the config file's directory.
    pub fn resolve(mut self, file: &Path) -> Result<PoolConfig, String> {
        for p in [
            &mut self.appliance_config,
            &mut self.pool_root,
            &mut self.state_dir,
            &mut self.mdadm_conf,
            &mut self.sysfs_root,
            &mut self.dev_root,
            &mut self.proc_root,
        ] {
            *p = tiervault_daemon::config::resolve(file, p);
        }
        if !self.units_dir.as_os_str().is_empty() {
            self.units_dir = tiervault_daemon::config::resolve(file, &self.units_dir);
        }
        if self.rescan_seconds == 0 {
            return Err("rescan-seconds: must be at least 1".into());
        }
        if self.sync_poll_seconds == 0 {
            return Err("sync-poll-seconds: must be at least 1".into());
        }
        Ok(self)
    }

    pub fn targets(&self) -> Targets {
        Targets {
            mdadm_conf: self.mdadm_conf.clone(),
            units_dir: (!self.units_dir.as_os_str().is_empty()).then(|| self.units_dir.clone()),
        }
    }

    /// The machine these paths describe.
    pub fn host(&self) -> crate::real::RealHost {
        crate::real::RealHost::with_roots(&self.sysfs_root, &self.dev_root, &self.proc_root)
    }

    pub fn rescan(&self) -> Duration {
        Duration::from_secs(self.rescan_seconds)
    }

    pub fn sync_poll(&self) -> Duration {
        Duration::from_secs(self.sync_poll_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let c = PoolConfig::defaults();
        assert_eq!(c.pool_root, Path::new("/srv/tiervault"));
        assert!(c.auto_spare && c.bring_up);
        let c: PoolConfig =
            toml::from_str("pool-root = \"pool\"\nunits-dir = \"\"\n").expect("parse");
        let c = c
            .resolve(Path::new("/etc/tiervault/poold.toml"))
            .expect("valid");
        assert_eq!(c.pool_root, Path::new("/etc/tiervault/pool"));
        assert_eq!(c.targets().units_dir, None);
        let bad: PoolConfig = toml::from_str("rescan-seconds = 0").expect("parse");
        let err = bad.resolve(Path::new("x.toml")).expect_err("zero rescan");
        assert!(err.contains("rescan-seconds"), "{err}");
    }
}
