//! The replication service's loop (`vault-replicad`): catch up at start (so at boot), then
//! replicate each new snapshot as it is committed; retry after failures; report status.
//!
//! Each run opens the vault afresh and closes it after: a long-lived session would keep a
//! garbage collection waiting (docs/format.md section 10).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tiervault_store::{Id, Repo};

use crate::alerts::AlertRules;
use crate::cache::KnownCache;
use crate::driver::{replicate, Options, Progress, Report};
use crate::error::{Error, Result};
use crate::spec::TargetSpec;
use crate::status::{self, Lag, RunStatus};

/// `replicad.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceConfig {
    pub version: u32,
    /// The local vault directory.
    pub vault: PathBuf,
    /// `tiervault://HOST[:PORT]` or a replica directory.
    pub to: String,
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// A file with a `[bandwidth]` table (re-read when it changes).
    #[serde(default)]
    pub schedule: Option<PathBuf>,
    /// How often to look for new snapshots.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// First wait after a failure (doubles up to 32×).
    #[serde(default = "default_retry")]
    pub retry_seconds: u64,
    /// Memory bound of the cache of ids the target holds. Default: the tier's dedup cache
    /// size from `appliance-config`, else 4 GiB.
    #[serde(default)]
    pub cache_bytes: Option<u64>,
    /// Memory the vault's chunk index may hold. Default: the tier's index budget from
    /// `appliance-config`, else the store's default (256 MiB).
    #[serde(default)]
    pub index_bytes: Option<u64>,
    /// The appliance config `vaultctl provision` wrote.
    #[serde(default = "default_appliance_config")]
    pub appliance_config: PathBuf,
    /// `replication.lag` is raised when the oldest snapshot not yet on the target is older
    /// than this many minutes (fractions allowed); at three times it, its severity rises.
    #[serde(default = "default_lag_alert")]
    pub lag_alert_minutes: f64,
    /// `replication.failing` is raised when the attempts have failed for longer than this
    /// many minutes (fractions allowed).
    #[serde(default = "default_failing_alert")]
    pub failing_alert_minutes: f64,
    /// Cleared alerts kept in `replication/alerts.json`.
    #[serde(default = "default_alert_history")]
    pub alert_history: usize,
}

/// 24 h: the seeds' service replicates daily (seed 001, "replicates data daily to the remote
/// vault"), so a snapshot a day old that is still not off-site is a missed replication; the
/// seed's own long-running threshold is 24 h too (seed 003).
fn default_lag_alert() -> f64 {
    24.0 * 60.0
}

/// 1 h: the seed raises a failed replication "upon detection", but this service retries by
/// itself (retry-seconds, doubling up to 16×, so about ten attempts an hour at the default):
/// one failed attempt is a link that dropped, an hour of them is a failed replication.
fn default_failing_alert() -> f64 {
    60.0
}

fn default_alert_history() -> usize {
    200
}

/// The longest threshold accepted: ten years, far below what nanoseconds in an i64 can hold.
const MAX_ALERT_MINUTES: f64 = 10.0 * 366.0 * 24.0 * 60.0;

fn default_appliance_config() -> PathBuf {
    PathBuf::from(tiervault_model::DEFAULT_APPLIANCE_CONFIG)
}

fn default_poll() -> u64 {
    5
}

fn default_retry() -> u64 {
    30
}

impl ServiceConfig {
    pub fn parse(text: &str) -> std::result::Result<ServiceConfig, String> {
        let c: ServiceConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if c.version != 1 {
            return Err(format!("unsupported version {} (expected 1)", c.version));
        }
        if c.poll_seconds == 0 || c.retry_seconds == 0 {
            return Err("poll-seconds and retry-seconds must be at least 1".into());
        }
        if c.cache_bytes == Some(0) {
            return Err("cache-bytes must be at least 1 (omit it for the tier's size)".into());
        }
        if c.index_bytes
            .is_some_and(|b| b < tiervault_store::MIN_INDEX_BUDGET)
        {
            return Err(format!(
                "index-bytes must be at least {} (16 MiB; omit it for the tier's budget)",
                tiervault_store::MIN_INDEX_BUDGET
            ));
        }
        for (name, v) in [
            ("lag-alert-minutes", c.lag_alert_minutes),
            ("failing-alert-minutes", c.failing_alert_minutes),
        ] {
            if !(v > 0.0 && v <= MAX_ALERT_MINUTES) {
                return Err(format!(
                    "{name} must be more than 0 and at most {MAX_ALERT_MINUTES} (ten years), not {v}"
                ));
            }
        }
        Ok(c)
    }

    /// The alert thresholds in nanoseconds.
    pub fn alert_rules(&self) -> AlertRules {
        // In range by parse(): at most ten years, so the product fits an i64.
        let ns = |minutes: f64| (minutes * 60e9).round() as i64;
        AlertRules {
            lag_ns: ns(self.lag_alert_minutes),
            failing_ns: ns(self.failing_alert_minutes),
        }
    }

    /// Set this process's chunk index budget from `index-bytes`, else the appliance config.
    pub fn apply_index_budget(&self) -> std::result::Result<u64, String> {
        let (bytes, _) = tiervault_model::setting(
            self.index_bytes,
            &self.appliance_config,
            |plan| plan.index_memory_bytes,
            tiervault_store::DEFAULT_INDEX_BUDGET,
        )
        .map_err(|e| e.to_string())?;
        tiervault_store::set_index_budget(bytes);
        Ok(tiervault_store::index_budget())
    }
}

/// What the service reports to its supervisor (systemd STATUS=).
pub trait Notify {
    fn status(&self, text: &str);

    /// "Still working": called from every turn of the loop, every tick of its waits and every
    /// blob a run sends, so that the supervisor's watchdog sees a hung loop stop calling.
    /// Called far more often than any watchdog interval; the implementation rate-limits.
    fn watchdog(&self) {}
}

/// A run's progress as watchdog pings.
struct Alive<'a>(&'a dyn Notify);

impl Progress for Alive<'_> {
    fn snapshot(&self, _index: usize, _count: usize, _id: &Id, _bytes: u64) {
        self.0.watchdog();
    }

    fn sent(&self, _n: u64) {
        self.0.watchdog();
    }
}

/// Run until `stop` is set.
pub fn run(cfg: &ServiceConfig, spec: &TargetSpec, stop: &AtomicBool, notify: &dyn Notify) {
    let mut last_seen: Option<Vec<String>> = None;
    let mut failures = 0u32;
    let mut memo = None;
    while !stop.load(Ordering::Relaxed) {
        notify.watchdog();
        let names = snapshot_names(&cfg.vault);
        let request = requested(&cfg.vault);
        let due = last_seen.as_ref() != Some(&names) || failures > 0 || request.is_some();
        if due {
            // The run's status (written by run_once) answers the request; a request that
            // arrives during the run stays for the next turn.
            if let Some(r) = &request {
                answered(&cfg.vault, r);
            }
            match run_once(cfg, spec, &Alive(notify), &mut memo, &|| notify.watchdog()) {
                Ok(r) => {
                    failures = 0;
                    last_seen = Some(names);
                    notify.status(&format!(
                        "up to date: {} snapshot(s) sent, {} blob(s), {} bytes in the last run",
                        r.snapshots_sent, r.blobs_sent, r.bytes_sent
                    ));
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!("replication to {} failed: {e}", spec.to);
                    notify.status(&format!("retrying after: {e}"));
                }
            }
        }
        let wait = if failures > 0 {
            cfg.retry_seconds
                .saturating_mul(1 << failures.min(5).saturating_sub(1))
        } else {
            cfg.poll_seconds
        };
        sleep_unless_stopped(Duration::from_secs(wait), &cfg.vault, stop, notify);
    }
}

/// Sleeps `d`, returning early on stop or on a replication request.
fn sleep_unless_stopped(
    d: Duration,
    vault: &std::path::Path,
    stop: &AtomicBool,
    notify: &dyn Notify,
) {
    let end = std::time::Instant::now() + d;
    let request = request_path(vault);
    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < end && !request.exists() {
        notify.watchdog();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `replication/request` in the vault: another service (the ingest service's `Replicate`)
/// asks vault-replicad for a run now. The file holds the request time; vault-replicad removes
/// it when the run starts and records the run in `replication/status.json`
/// ([`RunStatus`]), whose `last_attempt_ns` at or after the request time answers it.
pub fn request_path(vault: &std::path::Path) -> PathBuf {
    vault.join("replication").join("request")
}

/// Asks vault-replicad to replicate now; returns the request time (unix ns) to compare with
/// the status's `last_attempt_ns`.
pub fn request_now(vault: &std::path::Path) -> std::io::Result<i64> {
    let dir = vault.join("replication");
    std::fs::create_dir_all(&dir)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    tiervault_sys::durable::write_atomic(&request_path(vault), now.to_string().as_bytes(), 0o640)?;
    Ok(now)
}

fn requested(vault: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(request_path(vault)).ok()
}

/// Removes the request being served, unless a newer one replaced it meanwhile.
fn answered(vault: &std::path::Path, request: &str) {
    if requested(vault).as_deref() == Some(request) {
        let _ = std::fs::remove_file(request_path(vault));
    }
}

/// The snapshot file names (a cheap change detector).
fn snapshot_names(vault: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(vault.join("snapshots"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// One replication run, with its status recorded.
pub fn once(cfg: &ServiceConfig, spec: &TargetSpec) -> Result<Report> {
    run_once(cfg, spec, &(), &mut None, &|| {})
}

/// The lag last computed and what it was computed from: while the vault's snapshots, what the
/// target holds and the cache stay the same, so does the lag, and recomputing it (reading
/// every pending snapshot's references) after every failed attempt of an outage would be
/// wasted work.
struct LagMemo {
    names: Vec<String>,
    on_target: Vec<String>,
    cache_key: String,
    lag: Lag,
}

fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// One attempt and its record in `replication/status.json`: the outcome, when failures began,
/// and the lag behind the target after it (also after a failure: that lag is what the
/// alerts and metrics need most).
fn run_once(
    cfg: &ServiceConfig,
    spec: &TargetSpec,
    progress: &dyn Progress,
    memo: &mut Option<LagMemo>,
    tick: &dyn Fn(),
) -> Result<Report> {
    let mut status = RunStatus::load(&cfg.vault).unwrap_or_default();
    status.last_attempt_ns = now_ns();
    let repo = match Repo::open(&cfg.vault, tiervault_store::io::default_io()) {
        Ok(r) => r,
        Err(e) => {
            let e = Error::from(e);
            failed(&mut status, spec, &e);
            let _ = status.save(&cfg.vault);
            return Err(e);
        }
    };
    let mut cache = None;
    let result = attempt(cfg, spec, &repo, progress, &mut cache);
    match &result {
        Ok((_, target, key, on)) => {
            status.target = target.clone();
            status.cache_key = key.clone();
            status.last_success_ns = Some(now_ns());
            status.last_error = None;
            status.failing_since_ns = None;
            status.on_target = on.clone();
        }
        Err(e) => failed(&mut status, spec, e),
    }
    update_lag(cfg, &repo, &mut status, cache, memo, tick);
    match result {
        Ok((report, ..)) => {
            status.save(&cfg.vault)?;
            Ok(report)
        }
        Err(e) => {
            if let Err(s) = status.save(&cfg.vault) {
                tracing::warn!("recording the failed attempt: {s}");
            }
            Err(e)
        }
    }
}

fn failed(status: &mut RunStatus, spec: &TargetSpec, e: &Error) {
    status.last_error = Some(e.to_string());
    status
        .failing_since_ns
        .get_or_insert(status.last_attempt_ns);
    if status.target.is_empty() {
        status.target = spec.to.clone();
    }
}

/// Opens the target, sends what it lacks; returns the report, the target's name, the cache
/// key and the snapshots it holds. The known-ids cache it loaded is left in `loaded` (also
/// when sending failed) for the lag.
fn attempt(
    cfg: &ServiceConfig,
    spec: &TargetSpec,
    repo: &Repo,
    progress: &dyn Progress,
    loaded: &mut Option<(String, KnownCache)>,
) -> Result<(Report, String, String, Vec<String>)> {
    let mut target = spec.open(repo.vault_id())?;
    let key = if spec.is_remote() {
        target.describe()
    } else {
        spec.cache_key()
    };
    let (bound, _) = crate::cache::budget(cfg.cache_bytes, &cfg.appliance_config)?;
    let (_, cache) = loaded.insert((
        key.clone(),
        KnownCache::load_within(KnownCache::path_for(repo.root(), &key), bound),
    ));
    let report = replicate(
        repo,
        &mut *target,
        Some(cache),
        &Options::default(),
        progress,
    )?;
    let held: HashSet<Id> = target.snapshots()?.into_iter().map(|s| s.id).collect();
    let mut on: Vec<String> = held.iter().map(Id::hex).collect();
    on.sort();
    Ok((report, target.describe(), key, on))
}

/// Records the lag behind the target in `status` (see [`LagMemo`]). A lag that cannot be
/// computed leaves the previous figures with their time: the attempt's own outcome is what
/// matters here, and the figures' age shows that they are old.
fn update_lag(
    cfg: &ServiceConfig,
    repo: &Repo,
    status: &mut RunStatus,
    loaded: Option<(String, KnownCache)>,
    memo: &mut Option<LagMemo>,
    tick: &dyn Fn(),
) {
    let names = snapshot_names(&cfg.vault);
    let key = loaded
        .as_ref()
        .map_or_else(|| status.cache_key.clone(), |(k, _)| k.clone());
    if let Some(m) = memo
        .as_ref()
        .filter(|m| m.names == names && m.on_target == status.on_target && m.cache_key == key)
    {
        status.set_lag(&m.lag, now_ns());
        return;
    }
    // The attempt failed before loading the cache (the target could not be reached): the
    // one of the last success, if any (an empty one otherwise: the target is known to hold
    // nothing then).
    let cache = loaded.map(|(_, c)| c).unwrap_or_else(|| {
        let path = KnownCache::path_for(repo.root(), &key);
        match crate::cache::budget(cfg.cache_bytes, &cfg.appliance_config) {
            Ok((bound, _)) => KnownCache::load_within(path, bound),
            Err(_) => KnownCache::load(path),
        }
    });
    let on: HashSet<Id> = status
        .on_target
        .iter()
        .filter_map(|h| Id::from_hex(h))
        .collect();
    match status::lag_with(repo, &on, &cache, tick) {
        Ok(lag) => {
            status.set_lag(&lag, now_ns());
            *memo = Some(LagMemo {
                names,
                on_target: status.on_target.clone(),
                cache_key: key,
                lag,
            });
        }
        Err(e) => tracing::warn!("computing the lag behind {}: {e}", status.target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    /// Counts watchdog calls; stops the loop a few calls after the first report, or at once on
    /// a failure (so that a broken run fails the test rather than hanging it).
    struct Counting<'a> {
        stop: &'a AtomicBool,
        pings: AtomicUsize,
        at_status: Mutex<Option<usize>>,
        statuses: Mutex<Vec<String>>,
    }

    impl Notify for Counting<'_> {
        fn status(&self, text: &str) {
            self.statuses.lock().expect("lock").push(text.to_owned());
            *self.at_status.lock().expect("lock") = Some(self.pings.load(Ordering::SeqCst));
            if !text.starts_with("up to date") {
                self.stop.store(true, Ordering::SeqCst);
            }
        }

        fn watchdog(&self) {
            let n = self.pings.fetch_add(1, Ordering::SeqCst) + 1;
            if self
                .at_status
                .lock()
                .expect("lock")
                .is_some_and(|at| n >= at + 3)
            {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn the_loop_its_waits_and_a_run_ping_the_watchdog() {
        let tmp = tempfile::tempdir().expect("tmp");
        let files: Vec<(String, Vec<u8>)> = (0..4u32)
            .map(|i| {
                let bytes = (0..200_000u32)
                    .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
                    .collect();
                (format!("f{i}"), bytes)
            })
            .collect();
        let vault = vault_with(tmp.path(), &files);
        let (cfg, spec) = to_directory(&vault, &tmp.path().join("replica"));
        let stop = AtomicBool::new(false);
        let n = Counting {
            stop: &stop,
            pings: AtomicUsize::new(0),
            at_status: Mutex::new(None),
            statuses: Mutex::new(Vec::new()),
        };
        run(&cfg, &spec, &stop, &n);
        let statuses = n.statuses.lock().expect("lock").clone();
        assert_eq!(statuses.len(), 1, "{statuses:?}");
        assert!(
            statuses[0].starts_with("up to date: 1 snapshot(s)"),
            "{statuses:?}"
        );
        // The loop's own ping, the snapshot's, and one per blob sent (several files' chunks
        // and the tree): a run pings as it goes, not only between runs.
        let in_run = n.at_status.lock().expect("lock").unwrap_or(0);
        assert!(in_run >= 4, "{in_run} pings before the first report");
        // And the wait after it pinged until the stop.
        assert!(n.pings.load(Ordering::SeqCst) >= in_run + 3);
    }

    /// The service's config and target for replicating `vault` to the directory `replica`.
    fn to_directory(vault: &Path, replica: &Path) -> (ServiceConfig, TargetSpec) {
        let cfg = ServiceConfig::parse(&format!(
            "version = 1\nvault = {vault:?}\nto = {replica:?}\npoll-seconds = 1\n\
             cache-bytes = 1048576\nappliance-config = \"/nonexistent/a.toml\"\n"
        ))
        .expect("config");
        let spec = TargetSpec {
            to: replica.display().to_string(),
            ca: None,
            cert: None,
            key: None,
            window_bytes: None,
            limiter: None,
        };
        (cfg, spec)
    }

    fn vault_with_a_snapshot(tmp: &Path) -> PathBuf {
        vault_with(tmp, &[("f".into(), b"some bytes to replicate".to_vec())])
    }

    /// A vault under `tmp` with one snapshot of a tree of `files` (name, content).
    fn vault_with(tmp: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
        use tiervault_store::{backup, InitOptions, Secret, Vault};
        let src = tmp.join("src");
        std::fs::create_dir_all(&src).expect("src");
        for (name, bytes) in files {
            std::fs::write(src.join(name), bytes).expect("write");
        }
        let vault = tmp.join("vault");
        let v = Vault::init(
            &vault,
            &Secret::KeyFile(b"0123456789abcdef0123456789abcdef".to_vec()),
            &InitOptions {
                kdf_time: Duration::ZERO,
                ..InitOptions::default()
            },
            tiervault_store::io::default_io(),
        )
        .expect("init");
        backup::backup(
            &v,
            backup::Source::Paths(vec![src]),
            &backup::Options::default(),
            &backup::Progress::default(),
        )
        .expect("backup");
        vault
    }

    #[test]
    fn a_run_records_when_failures_began_and_the_lag_also_after_a_failure() {
        let tmp = tempfile::tempdir().expect("tmp");
        let vault = vault_with_a_snapshot(tmp.path());
        // The replica's parent is a file: the target cannot be created until it is removed.
        let blocker = tmp.path().join("blocker");
        std::fs::write(&blocker, b"").expect("blocker");
        let (cfg, spec) = to_directory(&vault, &blocker.join("replica"));
        let before = now_ns();
        once(&cfg, &spec).expect_err("the target cannot be created");
        let first = RunStatus::load(&vault).expect("status");
        let since = first.failing_since_ns.expect("failing since");
        assert_eq!(since, first.last_attempt_ns);
        assert!(since >= before);
        assert!(first.last_error.is_some());
        assert_eq!(first.last_success_ns, None);
        // Never replicated: the one snapshot is pending, with all its bytes.
        let lag = first.lag().expect("lag computed after a failure");
        assert_eq!(lag.pending_snapshots, 1);
        assert!(lag.pending_bytes > 0);
        assert!(lag.oldest_pending_ns.is_some_and(|t| t <= since));
        assert!(first.lag_computed_ns.is_some_and(|t| t >= since));

        // A second failure keeps the start of the failures.
        once(&cfg, &spec).expect_err("still failing");
        let second = RunStatus::load(&vault).expect("status");
        assert_eq!(second.failing_since_ns, Some(since));
        assert!(second.last_attempt_ns > first.last_attempt_ns);

        // The target comes back: caught up, no failure.
        std::fs::remove_file(&blocker).expect("unblock");
        once(&cfg, &spec).expect("replicates");
        let ok = RunStatus::load(&vault).expect("status");
        assert_eq!(
            (ok.failing_since_ns, ok.last_error.as_deref()),
            (None, None)
        );
        assert_eq!(ok.on_target.len(), 1);
        assert_eq!(
            ok.lag(),
            Some(Lag {
                pending_snapshots: 0,
                oldest_pending_ns: None,
                pending_bytes: 0
            })
        );
    }

    #[test]
    fn alert_thresholds_default_parse_and_are_checked() {
        let base = "version = 1\nvault = \"v\"\nto = \"x\"\n";
        let c = ServiceConfig::parse(base).expect("defaults");
        assert_eq!(c.alert_history, 200);
        assert_eq!(
            c.alert_rules(),
            AlertRules {
                lag_ns: 24 * 3600 * 1_000_000_000,
                failing_ns: 3600 * 1_000_000_000
            }
        );
        let c = ServiceConfig::parse(&format!(
            "{base}lag-alert-minutes = 0.05\nfailing-alert-minutes = 2\n"
        ))
        .expect("a fraction and an integer");
        assert_eq!(
            c.alert_rules(),
            AlertRules {
                lag_ns: 3_000_000_000,
                failing_ns: 120_000_000_000
            }
        );
        for bad in [
            "lag-alert-minutes = 0",
            "failing-alert-minutes = -1",
            "lag-alert-minutes = nan",
            "lag-alert-minutes = 1e12",
        ] {
            let e = ServiceConfig::parse(&format!("{base}{bad}\n")).expect_err(bad);
            let key = bad.split(' ').next().unwrap_or_default();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn config_parses_and_names_bad_fields() {
        let c = ServiceConfig::parse(
            "version = 1\nvault = \"/srv/v\"\nto = \"tiervault://r:7443\"\nca = \"ca.pem\"\n",
        )
        .expect("parse");
        assert_eq!(c.poll_seconds, 5);
        assert_eq!(c.retry_seconds, 30);
        let e = ServiceConfig::parse("version = 1\nvault = \"v\"\nto = \"x\"\nbogus = 1\n")
            .expect_err("unknown field");
        assert!(e.contains("bogus"), "{e}");
        let e =
            ServiceConfig::parse("version = 2\nvault = \"v\"\nto = \"x\"\n").expect_err("version");
        assert!(e.contains("version 2"), "{e}");
        let e = ServiceConfig::parse("version = 1\nvault = \"v\"\nto = \"x\"\npoll-seconds = 0\n")
            .expect_err("zero poll");
        assert!(e.contains("poll-seconds"), "{e}");
        let e = ServiceConfig::parse("version = 1\nto = \"x\"\n").expect_err("no vault");
        assert!(e.contains("vault"), "{e}");
        assert_eq!(c.cache_bytes, None);
        assert_eq!(
            c.appliance_config,
            Path::new(tiervault_model::DEFAULT_APPLIANCE_CONFIG)
        );
        let e = ServiceConfig::parse("version = 1\nvault = \"v\"\nto = \"x\"\ncache-bytes = 0\n")
            .expect_err("zero cache");
        assert!(e.contains("cache-bytes"), "{e}");
        let c = ServiceConfig::parse(
            "version = 1\nvault = \"v\"\nto = \"x\"\ncache-bytes = 1048576\nappliance-config = \"/a.toml\"\n",
        )
        .expect("parse");
        assert_eq!(c.cache_bytes, Some(1 << 20));
        let e =
            ServiceConfig::parse("version = 1\nvault = \"v\"\nto = \"x\"\nindex-bytes = 1024\n")
                .expect_err("too small");
        assert!(e.contains("index-bytes"), "{e}");
        let explicit = ServiceConfig::parse(
            "version = 1\nvault = \"v\"\nto = \"x\"\nindex-bytes = 33554432\nappliance-config = \"/nonexistent/a.toml\"\n",
        )
        .expect("parses");
        assert_eq!(explicit.apply_index_budget(), Ok(32 << 20));
        assert_eq!(c.appliance_config, Path::new("/a.toml"));
    }
}
