//! `/etc/tiervault/healthd.toml`. Every key has a default; without `[ipmi]` the service reads
//! no BMC, without `[notify]` alerts stay on the appliance (D-Bus, status file).
//!
//! ```toml
//! state-dir = "/var/lib/tiervault/healthd"
//! poll-seconds = 30                 # sensors, chassis, SEL
//! smart-poll-minutes = 30           # SMART of every disk
//! pool-status = "/var/lib/tiervault/poold/status.json"   # array states for the metrics
//! job-history = "/var/lib/tiervault/ingestd/history.json" # job results for the metrics
//! replication-status = "/srv/tiervault/vault/replication/status.json" # replication lag
//! bus = "system"                    # or a D-Bus address, or "none"; absent: system if reachable
//! [[relay]]                         # another service's alerts, sent to the targets too
//! source = "poold"                  # (default: poold, ingestd and replicad at their paths)
//! alerts = "/var/lib/tiervault/poold/alerts.json"
//! [appliance]                       # who is speaking, in every notification
//! id = "msp-0042"
//! hostname = "vault-acme-01"
//! [ipmi.transport]                  # tiervault-ipmi: local /dev/ipmi0 or LAN
//! kind = "local"
//! [sensors]                         # hysteresis, per-sensor limits, ignored sensors
//! [smart]                           # enabled, smartctl, limits, self-tests
//! [[contract]]                      # support and warranty expiry
//! name = "support"
//! expires = 2027-03-31
//! [notify]                          # tiervault-notify: spools, webhook, SMTP
//! [metrics]                         # Prometheus text on a loopback port
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tiervault_health::contract::Contract;
use tiervault_health::selftest::SelfTestPolicy;
use tiervault_health::sensor_rules::SensorPolicy;
use tiervault_health::smart_rules::SmartLimits;
use tiervault_ipmi::IpmiConfig;
use tiervault_notify::{Appliance, MetricsConfig, NotifyConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthConfig {
    #[serde(default = "default_state")]
    pub state_dir: PathBuf,
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    #[serde(default = "default_smart_poll")]
    pub smart_poll_minutes: u64,
    #[serde(default = "default_pool_status")]
    pub pool_status: PathBuf,
    /// vault-ingestd's job history, for the job-result metrics.
    #[serde(default = "default_job_history")]
    pub job_history: PathBuf,
    /// vault-replicad's status file, for the replication-lag metrics.
    #[serde(default = "default_replication_status")]
    pub replication_status: PathBuf,
    /// `system`, a D-Bus address, or `none`. Absent: the system bus when it can be reached.
    #[serde(default)]
    pub bus: Option<String>,
    /// The other services' alert files whose changes go to the notification targets too:
    /// health is the one service with the network for them.
    #[serde(default = "default_relays", rename = "relay")]
    pub relays: Vec<Relay>,
    /// Cleared alerts kept.
    #[serde(default = "default_alert_history")]
    pub alert_history: usize,
    #[serde(default)]
    pub appliance: Option<Appliance>,
    #[serde(default)]
    pub ipmi: Option<IpmiConfig>,
    #[serde(default)]
    pub sensors: SensorPolicy,
    #[serde(default)]
    pub smart: SmartConfig,
    #[serde(default, rename = "contract")]
    pub contracts: Vec<Contract>,
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

/// `[[relay]]`: one service's alert file (the shared alert model's `alerts.json`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Relay {
    /// The service's name as its alerts carry it (`poold`, `ingestd`, `replicad`).
    pub source: String,
    pub alerts: PathBuf,
}

/// `[smart]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmartConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_smartctl")]
    pub smartctl: PathBuf,
    #[serde(default = "default_smart_timeout")]
    pub timeout_seconds: u64,
    /// Where the disks are listed (`<sysfs-root>/block`); tests point it elsewhere.
    #[serde(default = "default_sys")]
    pub sysfs_root: PathBuf,
    #[serde(default = "default_dev")]
    pub dev_root: PathBuf,
    #[serde(default)]
    pub limits: SmartLimits,
    #[serde(default)]
    pub self_tests: SelfTestPolicy,
}

impl Default for SmartConfig {
    fn default() -> Self {
        SmartConfig {
            enabled: true,
            smartctl: default_smartctl(),
            timeout_seconds: default_smart_timeout(),
            sysfs_root: default_sys(),
            dev_root: default_dev(),
            limits: SmartLimits::default(),
            self_tests: SelfTestPolicy::default(),
        }
    }
}

fn default_state() -> PathBuf {
    PathBuf::from("/var/lib/tiervault/healthd")
}
fn default_poll() -> u64 {
    30
}
fn default_smart_poll() -> u64 {
    30
}
fn default_pool_status() -> PathBuf {
    PathBuf::from("/var/lib/tiervault/poold/status.json")
}
fn default_job_history() -> PathBuf {
    PathBuf::from("/var/lib/tiervault/ingestd/history.json")
}
fn default_replication_status() -> PathBuf {
    PathBuf::from("/srv/tiervault/vault/replication/status.json")
}
fn default_relays() -> Vec<Relay> {
    [
        ("poold", "/var/lib/tiervault/poold/alerts.json"),
        ("ingestd", "/var/lib/tiervault/ingestd/alerts.json"),
        ("replicad", "/srv/tiervault/vault/replication/alerts.json"),
    ]
    .into_iter()
    .map(|(source, alerts)| Relay {
        source: source.into(),
        alerts: alerts.into(),
    })
    .collect()
}
fn default_alert_history() -> usize {
    500
}
fn yes() -> bool {
    true
}
fn default_smartctl() -> PathBuf {
    PathBuf::from("smartctl")
}
fn default_smart_timeout() -> u64 {
    60
}
fn default_sys() -> PathBuf {
    PathBuf::from("/sys")
}
fn default_dev() -> PathBuf {
    PathBuf::from("/dev")
}

impl HealthConfig {
    /// The file at `file`, or the defaults when there is none; relative paths resolved against
    /// the file's directory; every section checked.
    pub fn load(file: &Path) -> Result<HealthConfig, tiervault_daemon::config::ConfigError> {
        let mut cfg: HealthConfig = if file.exists() {
            tiervault_daemon::config::load(file)?
        } else {
            tiervault_daemon::config::parse(file, "")?
        };
        let invalid = |m: String| tiervault_daemon::config::ConfigError::invalid(file, m);
        for p in [
            &mut cfg.state_dir,
            &mut cfg.pool_status,
            &mut cfg.job_history,
            &mut cfg.replication_status,
            &mut cfg.smart.sysfs_root,
            &mut cfg.smart.dev_root,
        ] {
            *p = tiervault_daemon::config::resolve(file, p);
        }
        if cfg.poll_seconds == 0 || cfg.smart_poll_minutes == 0 {
            return Err(invalid(
                "poll-seconds and smart-poll-minutes must be at least 1".into(),
            ));
        }
        for r in &mut cfg.relays {
            r.alerts = tiervault_daemon::config::resolve(file, &r.alerts);
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &cfg.relays {
            if r.source.is_empty() || r.source == "healthd" || !seen.insert(r.source.as_str()) {
                return Err(invalid(format!(
                    "[[relay]] source {:?}: each relayed service once, by its own name \
                     (not healthd, whose alerts are sent anyway)",
                    r.source
                )));
            }
        }
        if let Some(ipmi) = &cfg.ipmi {
            ipmi.validate()
                .map_err(|e| invalid(format!("[ipmi]: {e}")))?;
        }
        if let Some(n) = &cfg.notify {
            n.validate()
                .map_err(|e| invalid(format!("[notify]: {e}")))?;
            if cfg.appliance.is_none() {
                return Err(invalid(
                    "[notify] needs [appliance] (id and hostname): every notification says \
                     which appliance speaks"
                        .into(),
                ));
            }
        }
        if let Some(a) = &cfg.appliance {
            a.validate()
                .map_err(|e| invalid(format!("[appliance]: {e}")))?;
        }
        if let Some(m) = &cfg.metrics {
            m.validate()
                .map_err(|e| invalid(format!("[metrics]: {e}")))?;
        }
        Ok(cfg)
    }

    pub fn poll(&self) -> Duration {
        Duration::from_secs(self.poll_seconds)
    }

    pub fn smart_poll(&self) -> Duration {
        Duration::from_secs(self.smart_poll_minutes * 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<HealthConfig, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("healthd.toml");
        std::fs::write(&f, text).expect("write");
        HealthConfig::load(&f).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_a_full_file() {
        let c = load("").expect("empty file");
        assert_eq!(c.poll_seconds, 30);
        assert!(c.ipmi.is_none() && c.notify.is_none() && c.smart.enabled);
        let c = load(
            r#"
poll-seconds = 5
[appliance]
id = "msp-0042"
hostname = "vault-acme-01"
[ipmi]
transport = { kind = "lan", host = "127.0.0.1", port = 9623, user = "admin", password-file = "/etc/tiervault/bmc.pw" }
[sensors]
fan-hysteresis = 200.0
[sensors.limits."CPU Temp"]
ucr = 85.0
[smart.self-tests]
long-every-days = 60
[[contract]]
name = "support"
expires = 2027-03-31
"#,
        )
        .expect("full file");
        assert_eq!(c.sensors.limits["CPU Temp"].ucr, Some(85.0));
        assert_eq!(c.smart.self_tests.long_every_days, 60);
        assert_eq!(c.contracts.len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let e = load("poll-second = 5").expect_err("unknown key");
        assert!(e.contains("poll-second"), "{e}");
        let e = load("poll-seconds = 0").expect_err("zero");
        assert!(e.contains("poll-seconds"), "{e}");
        let e = load("[notify]\nspool-dir = \"/tmp/x\"\n").expect_err("notify without appliance");
        assert!(e.contains("[appliance]"), "{e}");
        let relay = "[[relay]]\nsource = \"poold\"\nalerts = \"a.json\"\n";
        let e = load(&relay.repeat(2)).expect_err("a service relayed twice");
        assert!(e.contains("\"poold\""), "{e}");
        let e = load("[[relay]]\nsource = \"healthd\"\nalerts = \"a.json\"\n")
            .expect_err("its own alerts relayed");
        assert!(e.contains("\"healthd\""), "{e}");
        let c = load(relay).expect("one relay");
        assert_eq!(c.relays.len(), 1, "a [[relay]] replaces the defaults");
        assert!(
            c.relays[0].alerts.is_absolute(),
            "resolved against the file"
        );
    }
}
