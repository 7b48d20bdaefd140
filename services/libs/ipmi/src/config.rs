//! How to reach the BMC, as the health service's TOML spells it:
//!
//! ```toml
//! [bmc]
//! timeout_secs = 60
//!
//! [bmc.transport]
//! kind = "lan"                     # or "local" (the kernel driver, /dev/ipmi0)
//! host = "10.0.0.5"
//! user = "admin"
//! password_file = "/etc/tiervault/bmc.password"
//! # password_env = "TIERVAULT_BMC_PASSWORD"  (instead of password_file)
//! ```
//!
//! The password itself is never part of the settings: it stays in a root-only file or in the
//! service's environment, and reaches ipmitool as `-f FILE` or `-E`, never on its command
//! line where `ps` shows it to every user.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The BMC backend's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IpmiConfig {
    pub transport: Transport,
    /// The longest one ipmitool call may take before it is killed: a hung BMC must not hang
    /// the health service. `sensor list` on a large BMC over LAN takes tens of seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The ipmitool binary (a name looked up in PATH, or a path).
    #[serde(default = "default_ipmitool")]
    pub ipmitool: PathBuf,
}

/// Where the BMC is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Transport {
    /// The kernel's IPMI driver (`ipmitool -I open`): `/dev/ipmi<device>`, 0 by default.
    Local {
        #[serde(default)]
        device: Option<u32>,
    },
    /// IPMI 2.0 over LAN (RMCP+, `ipmitool -I lanplus`).
    Lan(LanConfig),
}

/// IPMI-over-LAN settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LanConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    /// A file holding the password (`ipmitool -f`); exactly one of this and `password_env`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable of this process holding the password; it is
    /// handed to ipmitool as `IPMI_PASSWORD` with `-E`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// RMCP+ cipher suite. 3 (HMAC-SHA1, AES-CBC-128) works everywhere; naming it also spares
    /// ipmitool the "Get Channel Cipher Suites" probe, which costs 10 s per call on BMCs (and
    /// on ipmi_sim) that do not answer it.
    #[serde(default = "default_cipher_suite")]
    pub cipher_suite: u8,
    /// Seconds ipmitool waits for each answer (`-N`).
    #[serde(default = "default_session_timeout_secs")]
    pub session_timeout_secs: u32,
    /// How often ipmitool retries an unanswered request (`-R`). With the defaults a BMC that
    /// does not answer at all is reported unreachable after about 10 s.
    #[serde(default = "default_session_retries")]
    pub session_retries: u32,
}

fn default_timeout_secs() -> u64 {
    60
}

fn default_ipmitool() -> PathBuf {
    PathBuf::from("ipmitool")
}

fn default_port() -> u16 {
    623
}

fn default_cipher_suite() -> u8 {
    3
}

fn default_session_timeout_secs() -> u32 {
    2
}

fn default_session_retries() -> u32 {
    2
}

impl IpmiConfig {
    /// Settings for the transport with every default.
    pub fn new(transport: Transport) -> Self {
        IpmiConfig {
            transport,
            timeout_secs: default_timeout_secs(),
            ipmitool: default_ipmitool(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Refuses settings that cannot work, before any BMC is asked.
    pub fn validate(&self) -> Result<()> {
        if self.timeout_secs == 0 {
            return Err(Error::Config("timeout-secs must be at least 1".into()));
        }
        if self.ipmitool.as_os_str().is_empty() {
            return Err(Error::Config("ipmitool must name a program".into()));
        }
        match &self.transport {
            Transport::Local { .. } => Ok(()),
            Transport::Lan(lan) => lan.validate(),
        }
    }
}

impl LanConfig {
    /// LAN settings with the defaults, the password read from `password_file`.
    pub fn new(host: impl Into<String>, user: impl Into<String>, password_file: PathBuf) -> Self {
        LanConfig {
            host: host.into(),
            port: default_port(),
            user: user.into(),
            password_file: Some(password_file),
            password_env: None,
            cipher_suite: default_cipher_suite(),
            session_timeout_secs: default_session_timeout_secs(),
            session_retries: default_session_retries(),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(what.to_string()));
        if self.host.trim().is_empty() || self.host.starts_with('-') {
            return bad("the BMC host must be a name or address");
        }
        if self.user.is_empty() || self.user.starts_with('-') {
            return bad("the BMC user must be a name");
        }
        if self.port == 0 {
            return bad("the BMC port must not be 0");
        }
        match (&self.password_file, &self.password_env) {
            (Some(_), Some(_)) => bad("give either password-file or password-env, not both"),
            (None, None) => bad("give password-file or password-env: ipmitool would prompt"),
            (None, Some(var)) if var.is_empty() => bad("password-env must name a variable"),
            _ if self.cipher_suite > 17 => bad("cipher_suite must be 0-17"),
            _ if self.session_timeout_secs == 0 => bad("session_timeout_secs must be at least 1"),
            _ => Ok(()),
        }
    }
}

impl Transport {
    /// How errors name this transport: `/dev/ipmi0` or `host:port`.
    pub fn label(&self) -> String {
        match self {
            Transport::Local { device } => format!("/dev/ipmi{}", device.unwrap_or(0)),
            Transport::Lan(lan) if lan.host.contains(':') => format!("[{}]:{}", lan.host, lan.port),
            Transport::Lan(lan) => format!("{}:{}", lan.host, lan.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        bmc: IpmiConfig,
    }

    fn parse(text: &str) -> std::result::Result<IpmiConfig, toml::de::Error> {
        toml::from_str::<File>(text).map(|f| f.bmc)
    }

    #[test]
    fn lan_from_toml_takes_defaults() {
        let cfg = parse(
            "[bmc.transport]\nkind = \"lan\"\nhost = \"10.0.0.5\"\nuser = \"admin\"\n\
             password-file = \"/etc/tiervault/bmc.password\"\n",
        )
        .expect("parses");
        cfg.validate().expect("valid");
        assert_eq!(cfg.timeout_secs, 60);
        assert_eq!(cfg.ipmitool, PathBuf::from("ipmitool"));
        let Transport::Lan(lan) = &cfg.transport else {
            panic!("not lan: {cfg:?}")
        };
        assert_eq!((lan.port, lan.cipher_suite), (623, 3));
        assert_eq!((lan.session_timeout_secs, lan.session_retries), (2, 2));
        assert_eq!(cfg.transport.label(), "10.0.0.5:623");
    }

    #[test]
    fn local_from_toml() {
        let cfg =
            parse("[bmc]\ntimeout-secs = 5\n[bmc.transport]\nkind = \"local\"\n").expect("parses");
        assert_eq!(cfg.transport, Transport::Local { device: None });
        assert_eq!(cfg.transport.label(), "/dev/ipmi0");
        let cfg = parse("[bmc.transport]\nkind = \"local\"\ndevice = 1\n").expect("parses");
        assert_eq!(cfg.transport.label(), "/dev/ipmi1");
    }

    #[test]
    fn typos_and_passwords_in_the_file_are_refused() {
        // A password given inline would end up in a world-readable config or on a command line.
        let err = parse(
            "[bmc.transport]\nkind = \"lan\"\nhost = \"h\"\nuser = \"u\"\npassword = \"secret\"\n",
        );
        assert!(err.is_err(), "{err:?}");
        assert!(parse("[bmc]\ntimeout = 5\n[bmc.transport]\nkind = \"local\"\n").is_err());
        assert!(parse("[bmc.transport]\nkind = \"serial\"\n").is_err());
    }

    #[test]
    fn unusable_settings_are_refused() {
        let mut lan = LanConfig::new("10.0.0.5", "admin", PathBuf::from("/pw"));
        assert!(IpmiConfig::new(Transport::Lan(lan.clone()))
            .validate()
            .is_ok());
        lan.password_env = Some("PW".into());
        assert!(IpmiConfig::new(Transport::Lan(lan.clone()))
            .validate()
            .is_err());
        lan.password_file = None;
        assert!(IpmiConfig::new(Transport::Lan(lan.clone()))
            .validate()
            .is_ok());
        lan.password_env = None;
        assert!(IpmiConfig::new(Transport::Lan(lan.clone()))
            .validate()
            .is_err());
        let mut lan = LanConfig::new("-oProxyCommand", "admin", PathBuf::from("/pw"));
        assert!(IpmiConfig::new(Transport::Lan(lan.clone()))
            .validate()
            .is_err());
        lan.host = "fe80::1".into();
        assert_eq!(Transport::Lan(lan).label(), "[fe80::1]:623");
        let mut cfg = IpmiConfig::new(Transport::Local { device: None });
        cfg.timeout_secs = 0;
        assert!(cfg.validate().is_err());
    }
}
