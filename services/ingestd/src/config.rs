//! `/etc/tiervault/ingestd.toml`: the vault, where state lives, which paths may be backed up
//! and restored into, and the backup jobs.
//!
//! ```toml
//! vault = "/srv/tiervault/vault"
//! key-file = "/etc/tiervault/vault.key"
//! state-dir = "/var/lib/tiervault/ingestd"
//! backup-roots = ["/mnt", "/srv/shares"]
//! restore-roots = ["/srv/tiervault/restore"]
//!
//! [[job]]
//! name = "nas-finance"
//! paths = ["/mnt/nas/finance"]
//! schedule = "daily 02:00"
//! exclude = ["*.tmp", "~$*"]
//! keep = { daily = 14, weekly = 8, monthly = 12 }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tiervault_store::retention::KeepPolicy;

use crate::schedule::Schedule;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The vault directory.
    pub vault: PathBuf,
    /// The vault's key file; or `passphrase-file`.
    pub key_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    /// Job history, alerts and the audit log.
    pub state_dir: PathBuf,
    /// `system` (default) or a D-Bus address.
    #[serde(default = "default_bus")]
    pub bus: String,
    /// Paths an ad-hoc `Backup` call may name (jobs in this file are trusted as written).
    #[serde(default)]
    pub backup_roots: Vec<PathBuf>,
    /// Directories restores may write under; without any, `Restore` is refused.
    #[serde(default)]
    pub restore_roots: Vec<PathBuf>,
    /// Finished jobs kept in the history (and as D-Bus objects).
    #[serde(default = "default_history")]
    pub history_limit: usize,
    /// Cleared alerts kept.
    #[serde(default = "default_alert_history")]
    pub alert_history: usize,
    /// A job running longer than this raises an alert (the seed's 24 hours).
    #[serde(default = "default_long_running")]
    pub long_running_alert: String,
    /// How long a `Replicate` job waits for vault-replicad's run before it fails.
    #[serde(default = "default_replicate_timeout")]
    pub replicate_timeout: String,
    /// Engine threads per job (default: the number of CPUs).
    pub threads: Option<usize>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobConfig {
    pub name: String,
    pub paths: Vec<PathBuf>,
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Retention applied to this job's snapshots after each successful run.
    pub keep: Option<KeepPolicy>,
}

fn default_bus() -> String {
    "system".into()
}
fn default_history() -> usize {
    1000
}
fn default_alert_history() -> usize {
    500
}
fn default_long_running() -> String {
    "24h".into()
}
fn default_replicate_timeout() -> String {
    "6h".into()
}
fn default_schedule() -> String {
    "manual".into()
}

/// A job as the service runs it.
#[derive(Debug, Clone)]
pub struct Job {
    pub cfg: JobConfig,
    pub schedule: Schedule,
}

impl Config {
    /// Checks what serde cannot and resolves relative paths against the config file's
    /// directory; errors name the job and field.
    pub fn validate(mut self, file: &Path) -> Result<(Config, Vec<Job>), String> {
        let base = file.parent().unwrap_or(Path::new("."));
        let abs = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        self.vault = abs(&self.vault);
        self.state_dir = abs(&self.state_dir);
        self.key_file = self.key_file.as_ref().map(abs);
        self.passphrase_file = self.passphrase_file.as_ref().map(abs);
        if self.key_file.is_some() == self.passphrase_file.is_some() {
            return Err("give exactly one of key-file and passphrase-file".into());
        }
        for (field, roots) in [
            ("backup-roots", &self.backup_roots),
            ("restore-roots", &self.restore_roots),
        ] {
            if let Some(r) = roots.iter().find(|r| !r.is_absolute()) {
                return Err(format!("{field}: {} is not an absolute path", r.display()));
            }
        }
        if self.history_limit == 0 {
            return Err("history-limit must be at least 1".into());
        }
        tiervault_store::retention::parse_duration(&self.long_running_alert)
            .map_err(|e| format!("long-running-alert: {e}"))?;
        tiervault_store::retention::parse_duration(&self.replicate_timeout)
            .map_err(|e| format!("replicate-timeout: {e}"))?;
        let mut names = BTreeSet::new();
        let mut jobs = Vec::new();
        for j in &self.jobs {
            let at = |what: String| format!("job \"{}\": {what}", j.name);
            if j.name.is_empty()
                || j.name.len() > 64
                || !j
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(at("name must be 1-64 of [A-Za-z0-9._-]".into()));
            }
            if !names.insert(j.name.clone()) {
                return Err(at("defined twice".into()));
            }
            if j.paths.is_empty() {
                return Err(at("paths is empty".into()));
            }
            if let Some(p) = j.paths.iter().find(|p| !p.is_absolute()) {
                return Err(at(format!("paths: {} is not absolute", p.display())));
            }
            let schedule = Schedule::parse(&j.schedule).map_err(|e| at(e.to_string()))?;
            tiervault_store::backup::Filter::new(&j.include, &j.exclude)
                .map_err(|e| at(e.to_string()))?;
            jobs.push(Job {
                cfg: j.clone(),
                schedule,
            });
        }
        Ok((self, jobs))
    }

    pub fn replicate_timeout_ns(&self) -> i64 {
        tiervault_store::retention::parse_duration(&self.replicate_timeout)
            .unwrap_or(6 * 3_600_000_000_000)
    }

    pub fn long_running_ns(&self) -> i64 {
        tiervault_store::retention::parse_duration(&self.long_running_alert)
            .unwrap_or(86_400_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Config, Vec<Job>), String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate(Path::new("/etc/tiervault/ingestd.toml"))
    }

    const BASE: &str = "vault = \"v\"\nkey-file = \"k\"\nstate-dir = \"/var/lib/x\"\n";

    #[test]
    fn a_full_config_resolves_relative_paths() {
        let (cfg, jobs) = parse(&format!(
            "{BASE}backup-roots = [\"/mnt\"]\n[[job]]\nname = \"nas-finance\"\npaths = [\"/mnt/nas\"]\nschedule = \"daily 02:00\"\nexclude = [\"*.tmp\"]\nkeep = {{ daily = 7 }}\n"
        ))
        .expect("valid");
        assert_eq!(cfg.vault, PathBuf::from("/etc/tiervault/v"));
        assert_eq!(cfg.key_file, Some(PathBuf::from("/etc/tiervault/k")));
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].schedule.to_string(), "daily 02:00");
        assert_eq!(jobs[0].cfg.keep.as_ref().map(|k| k.daily), Some(7));
        assert_eq!(cfg.long_running_ns(), 86_400_000_000_000);
    }

    #[test]
    fn mistakes_name_the_job_and_field() {
        for (extra, want) in [
            ("[[job]]\nname = \"a b\"\npaths = [\"/x\"]\n", "job \"a b\": name"),
            ("[[job]]\nname = \"a\"\npaths = []\n", "job \"a\": paths is empty"),
            ("[[job]]\nname = \"a\"\npaths = [\"rel\"]\n", "not absolute"),
            ("[[job]]\nname = \"a\"\npaths = [\"/x\"]\nschedule = \"often\"\n", "job \"a\": schedule \"often\""),
            ("[[job]]\nname = \"a\"\npaths = [\"/x\"]\n[[job]]\nname = \"a\"\npaths = [\"/y\"]\n", "defined twice"),
            ("[[job]]\nname = \"a\"\npaths = [\"/x\"]\nexclude = [\"[\"]\n", "job \"a\""),
            ("restore-roots = [\"rel\"]\n", "restore-roots: rel"),
            ("long-running-alert = \"soon\"\n", "long-running-alert"),
            ("colour = \"blue\"\n", "colour"),
        ] {
            let e = parse(&format!("{BASE}{extra}")).expect_err(extra);
            assert!(e.contains(want), "{extra}: {e}");
        }
        let e = parse("vault = \"v\"\nstate-dir = \"/s\"\n").expect_err("no secret");
        assert!(e.contains("key-file"), "{e}");
    }
}
