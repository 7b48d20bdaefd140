//! The remote vault's configuration file (TOML).
//!
//! ```toml
//! version = 1
//! listen = "0.0.0.0:7443"
//! data-dir = "/var/lib/tiervault-remote"
//! idle-timeout = "15min"   # close a connection that sends nothing for this long (s, min, h)
//! max-connections = 256    # connections served at once; more are refused before TLS
//! index-bytes = 268435456  # memory each open tenant vault's chunk index may hold (>= 16 MiB)
//! [tls]
//! ca = "ca.pem"            # issues the appliances' client certificates
//! cert = "server.pem"
//! key = "server.key"
//! [tenants.acme]
//! retention = "30d"        # replicated snapshots cannot be forgotten by the appliance before this age
//! quota-bytes = 0          # 0: unlimited
//! keep = { daily = 30, monthly = 24 }   # the remote's own rules for `vault-remoted prune`
//! ```
//! Relative paths are relative to the config file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tiervault_store::retention::{parse_duration, KeepPolicy};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: reading")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    version: u32,
    listen: String,
    data_dir: PathBuf,
    #[serde(default)]
    idle_timeout: Option<String>,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default)]
    index_bytes: Option<u64>,
    tls: RawTls,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTenant {
    #[serde(default)]
    retention: Option<String>,
    #[serde(default)]
    quota_bytes: u64,
    /// The remote's own keep rules (`vault-remoted prune`), e.g. `{ daily = 30, monthly = 24 }`.
    #[serde(default)]
    keep: Option<KeepPolicy>,
}

/// A tenant's policy on the remote side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    /// The appliance cannot forget a snapshot younger than this (ns).
    pub retention_ns: i64,
    /// Stored bytes allowed (0: unlimited).
    pub quota_bytes: u64,
    /// Keep rules the remote applies by itself, without keys (None: keep everything).
    pub keep: Option<KeepPolicy>,
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// Default for `max-connections`: each connection holds a blocking thread and up to 64
/// queued requests, so the bound keeps a flood from exhausting threads or memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Default for `idle-timeout`: long enough for a client paused by a bandwidth window to keep
/// its session, short enough that abandoned connections do not pile up.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Longest time a peer may take for the TLS handshake (or the idle timeout, if shorter).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    /// A connection that sends nothing for this long is closed (also bounds the TLS
    /// handshake, together with [`HANDSHAKE_TIMEOUT`]).
    pub idle_timeout: std::time::Duration,
    /// Connections served at once (handshakes included); more are closed at once.
    pub max_connections: usize,
    /// Memory bound of each open tenant vault's chunk index (a connection opens one).
    pub index_bytes: u64,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub tenants: BTreeMap<String, TenantPolicy>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.version != 1 {
            return Err(invalid(format!(
                "unsupported version {} (expected 1)",
                raw.version
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let idle_timeout = match &raw.idle_timeout {
            Some(t) => parse_timeout(t).map_err(|e| invalid(format!("idle-timeout: {e}")))?,
            None => DEFAULT_IDLE_TIMEOUT,
        };
        if raw.max_connections == 0 {
            return Err(invalid("max-connections: must be at least 1".into()));
        }
        let index_bytes = raw
            .index_bytes
            .unwrap_or(tiervault_store::DEFAULT_INDEX_BUDGET);
        if index_bytes < tiervault_store::MIN_INDEX_BUDGET {
            return Err(invalid(format!(
                "index-bytes: {index_bytes} is below the least a chunk index needs ({})",
                tiervault_store::MIN_INDEX_BUDGET
            )));
        }
        let mut tenants = BTreeMap::new();
        for (name, t) in raw.tenants {
            tiervault_tls::Tenant::parse(&name)
                .map_err(|e| invalid(format!("tenants.{name}: {e}")))?;
            let retention_ns = match &t.retention {
                Some(r) => parse_duration(r)
                    .map_err(|e| invalid(format!("tenants.{name}.retention: {e}")))?,
                None => 0,
            };
            tenants.insert(
                name,
                TenantPolicy {
                    retention_ns,
                    quota_bytes: t.quota_bytes,
                    keep: t.keep,
                },
            );
        }
        Ok(Config {
            listen: raw.listen,
            data_dir: abs(&raw.data_dir),
            idle_timeout,
            max_connections: raw.max_connections,
            index_bytes,
            ca: abs(&raw.tls.ca),
            cert: abs(&raw.tls.cert),
            key: abs(&raw.tls.key),
            tenants,
        })
    }

    /// Where a tenant's vault lives.
    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.data_dir.join("tenants").join(tenant)
    }
}

/// A timeout such as "90s", "15min" or "2h" (retention durations count in days and months,
/// so they have no seconds and "m" means months there: not reused here).
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. \"15min\""))?;
    let secs = match unit {
        "s" => n,
        "min" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (s, min or h)")),
    };
    if secs == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_fields() {
        let c = Config::parse(
            "version = 1\nlisten = \"127.0.0.1:0\"\ndata-dir = \"d\"\n[tls]\nca = \"ca.pem\"\ncert = \"s.pem\"\nkey = \"s.key\"\n[tenants.acme]\nretention = \"30d\"\n",
            Path::new("/etc/r/remoted.toml"),
        )
        .expect("parse");
        assert_eq!(c.data_dir, Path::new("/etc/r/d"));
        assert_eq!(c.tenants["acme"].retention_ns, 30 * 86_400 * 1_000_000_000);
        let e = Config::parse(
            "version = 1\nlisten = \"x\"\ndata-dir = \"d\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[tenants.Bad_Name]\n",
            Path::new("r.toml"),
        )
        .expect_err("bad tenant");
        assert!(e.to_string().contains("Bad_Name"), "{e}");
        assert_eq!(c.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
        let e = Config::parse(
            "version = 1\nlisten = \"x\"\ndata-dir = \"d\"\nmax-connections = 0\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            Path::new("r.toml"),
        )
        .expect_err("zero connections");
        assert!(e.to_string().contains("max-connections"), "{e}");
        assert_eq!(c.index_bytes, tiervault_store::DEFAULT_INDEX_BUDGET);
        let e = Config::parse(
            "version = 1\nlisten = \"x\"\ndata-dir = \"d\"\nindex-bytes = 4096\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            Path::new("r.toml"),
        )
        .expect_err("tiny index budget");
        assert!(e.to_string().contains("index-bytes: 4096"), "{e}");
        assert_eq!(parse_timeout("90s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(
            parse_timeout("15min"),
            Ok(std::time::Duration::from_secs(900))
        );
        assert_eq!(
            parse_timeout("2h"),
            Ok(std::time::Duration::from_secs(7200))
        );
        for (bad, says) in [
            ("\"0s\"", "longer than zero"),
            ("\"soon\"", "expected a number"),
            ("\"15m\"", "unknown unit"),
        ] {
            let e = Config::parse(
                &format!("version = 1\nlisten = \"x\"\ndata-dir = \"d\"\nidle-timeout = {bad}\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n"),
                Path::new("r.toml"),
            )
            .expect_err("bad idle-timeout");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        let e = Config::parse("version = 2\n", Path::new("r.toml")).expect_err("version");
        assert!(e.to_string().contains("r.toml"), "{e}");
    }
}
