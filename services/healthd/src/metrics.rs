//! The Prometheus metrics the MSP scrapes over the management tunnel: sensor readings and
//! levels, SMART facts, the pool's array states (from vault-poold's status file), the last
//! result of every job (from vault-ingestd's job history), the replication lag (from
//! vault-replicad's status file), active alerts by priority, and the notification spools.
//!
//! The other services' files are read with small local structs that take only what the
//! metrics need and ignore the rest: health must not break (or link the replication engine)
//! when another service adds a field. A file that is missing or cannot be read gives its
//! families no samples, and `tiervault_metrics_source_up{source=...}` 0 says so.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tiervault_alerts::Alert;
use tiervault_notify::Metric;

use crate::config::HealthConfig;
use crate::service::Snapshot;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every metric for one scrape.
pub fn collect(latest: &Snapshot, alerts: &[Alert], cfg: &HealthConfig) -> Vec<Metric> {
    let mut value = Metric::gauge(
        "tiervault_sensor_value",
        "A BMC sensor's reading in its unit (label unit).",
    );
    let mut level = Metric::gauge(
        "tiervault_sensor_level",
        "A BMC sensor's level: 0 ok, 1 non-critical, 2 critical, 3 non-recoverable.",
    );
    for v in &latest.sensors {
        let s = &v.sensor;
        let kind = serde_json::to_value(s.kind)
            .ok()
            .and_then(|k| k.as_str().map(str::to_owned))
            .unwrap_or_default();
        if let Some(x) = s.value {
            value.samples.push((
                labels(&[("sensor", &s.name), ("kind", &kind), ("unit", &s.unit)]),
                x,
            ));
        }
        level
            .samples
            .push((labels(&[("sensor", &s.name)]), v.level as u8 as f64));
    }
    let mut passed = Metric::gauge(
        "tiervault_disk_smart_passed",
        "1 when the disk's SMART overall assessment passes, 0 when it fails.",
    );
    let mut temp = Metric::gauge(
        "tiervault_disk_temperature_celsius",
        "A disk's temperature from SMART.",
    );
    let mut hours = Metric::gauge(
        "tiervault_disk_power_on_hours",
        "A disk's power-on hours from SMART.",
    );
    for d in &latest.disks {
        let l = labels(&[
            ("serial", &d.serial),
            ("device", &d.device),
            ("model", &d.model),
        ]);
        if let Some(p) = d.passed {
            passed.samples.push((l.clone(), f64::from(u8::from(p))));
        }
        if let Some(t) = d.temperature_c {
            temp.samples.push((l.clone(), t as f64));
        }
        if let Some(h) = d.power_on_hours {
            hours.samples.push((l, h as f64));
        }
    }
    let mut active = Metric::gauge(
        "tiervault_alerts_active",
        "Active alerts of the health service by priority.",
    );
    for p in ["P1", "P2", "P3", "notify", "record"] {
        let n = alerts
            .iter()
            .filter(|a| a.is_active() && a.priority().as_str() == p)
            .count();
        active.samples.push((labels(&[("priority", p)]), n as f64));
    }
    let mut out = vec![value, level, passed, temp, hours, active];
    let mut up = Metric::gauge(
        "tiervault_metrics_source_up",
        "1 when another service's file these metrics come from was read, 0 when it is \
         missing or damaged (its metrics have no samples then).",
    );
    let pool = pool_metrics(&cfg.pool_status);
    up.samples.push((
        labels(&[("source", "pool_status")]),
        f64::from(u8::from(!pool.is_empty())),
    ));
    out.extend(pool);
    let now = tiervault_alerts::now_ns();
    for (source, (families, read)) in [
        ("job_history", job_metrics(&cfg.job_history)),
        (
            "replication_status",
            replication_metrics(&cfg.replication_status, now),
        ),
    ] {
        up.samples
            .push((labels(&[("source", source)]), f64::from(u8::from(read))));
        out.extend(families);
    }
    out.push(up);
    out
}

fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// What the metrics take from vault-replicad's `replication/status.json`
/// (`tiervault_replicate::status::RunStatus`).
#[derive(Deserialize)]
struct ReplicationStatus {
    #[serde(default)]
    target: String,
    #[serde(default)]
    last_success_ns: Option<i64>,
    #[serde(default)]
    pending_snapshots: u64,
    #[serde(default)]
    oldest_pending_ns: Option<i64>,
    #[serde(default)]
    pending_bytes: u64,
    /// `None`: the lag figures were never computed (an older vault-replicad).
    #[serde(default)]
    lag_computed_ns: Option<i64>,
}

/// Reads a JSON file into `T`; `None` when it is missing or not what it should be.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The replication families at `now_ns`, and whether the status file was read.
fn replication_metrics(path: &Path, now_ns: i64) -> (Vec<Metric>, bool) {
    let mut success = Metric::gauge(
        "tiervault_replication_last_success_timestamp_seconds",
        "When the last replication run to the target succeeded (Unix seconds; 0: never).",
    );
    let mut pending = Metric::gauge(
        "tiervault_replication_pending_snapshots",
        "Local snapshots not yet on the replication target.",
    );
    let mut lag = Metric::gauge(
        "tiervault_replication_lag_seconds",
        "Age of the oldest local snapshot not yet on the target; 0 when caught up.",
    );
    let mut bytes = Metric::gauge(
        "tiervault_replication_pending_bytes",
        "Stored bytes the pending snapshots reference that the target is not known to hold \
         (an upper bound).",
    );
    let mut computed = Metric::gauge(
        "tiervault_replication_lag_computed_timestamp_seconds",
        "When vault-replicad computed the pending figures (Unix seconds): they are as of then.",
    );
    let status = read_json::<ReplicationStatus>(path);
    if let Some(st) = &status {
        let l = labels(&[("target", &st.target)]);
        success
            .samples
            .push((l.clone(), st.last_success_ns.map_or(0.0, seconds)));
        if let Some(at) = st.lag_computed_ns {
            pending
                .samples
                .push((l.clone(), st.pending_snapshots as f64));
            let age = st
                .oldest_pending_ns
                .filter(|_| st.pending_snapshots > 0)
                .map_or(0, |t| now_ns.saturating_sub(t).max(0));
            lag.samples.push((l.clone(), seconds(age)));
            bytes.samples.push((l.clone(), st.pending_bytes as f64));
            computed.samples.push((l, seconds(at)));
        }
    }
    (
        vec![success, pending, lag, bytes, computed],
        status.is_some(),
    )
}

/// vault-ingestd's `history.json` (services/ingestd/src/history.rs), as far as the metrics
/// need it.
#[derive(Deserialize)]
struct JobHistory {
    format: String,
    #[serde(default)]
    runs: Vec<JobRun>,
}

#[derive(Deserialize)]
struct JobRun {
    #[serde(default)]
    id: u64,
    #[serde(default)]
    operation: String,
    /// The backup job's name; empty for ad-hoc operations.
    #[serde(default)]
    job: String,
    status: String,
    #[serde(default)]
    started_ns: i64,
    #[serde(default)]
    ended_ns: i64,
    #[serde(default)]
    bytes_read: u64,
    #[serde(default)]
    bytes_stored: u64,
}

const JOB_HISTORY_FORMAT: &str = "tiervault-job-history";
/// The results a finished run can have; `tiervault_job_last_status` has a sample for each
/// (1 for the last run's, 0 for the others), so a series never goes stale when the result
/// changes.
const FINISHED: [&str; 4] = ["success", "warnings", "failed", "skipped"];

/// The job families, and whether the history was read. Runs are grouped by job name and
/// operation (ad-hoc restores, verifies and replications have no job name).
fn job_metrics(path: &Path) -> (Vec<Metric>, bool) {
    let mut last = Metric::gauge(
        "tiervault_job_last_status",
        "1 for the result (label status) of the job's last finished run, 0 for the others.",
    );
    let mut end = Metric::gauge(
        "tiervault_job_last_end_timestamp_seconds",
        "When the job's last finished run ended (Unix seconds).",
    );
    let mut duration = Metric::gauge(
        "tiervault_job_last_duration_seconds",
        "How long the job's last finished run took (0 when it never started).",
    );
    let mut bytes = Metric::gauge(
        "tiervault_job_last_bytes",
        "Bytes of the job's last finished run: read from the sources (kind read) and newly \
         stored after dedup and compression (kind stored).",
    );
    let mut runs = Metric::gauge(
        "tiervault_job_runs",
        "Runs of the job by status in the retained (bounded) history: a gauge, since the \
         oldest runs leave it.",
    );
    let history = read_json::<JobHistory>(path).filter(|h| h.format == JOB_HISTORY_FORMAT);
    if let Some(h) = &history {
        let mut counts: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        let mut latest: BTreeMap<(&str, &str), &JobRun> = BTreeMap::new();
        for r in &h.runs {
            *counts
                .entry((r.job.as_str(), r.operation.as_str(), r.status.as_str()))
                .or_default() += 1;
            if !matches!(r.status.as_str(), "queued" | "running") {
                let slot = latest
                    .entry((r.job.as_str(), r.operation.as_str()))
                    .or_insert(r);
                // Skipped runs end when queued, so the end time orders them with the others.
                if (r.ended_ns, r.id) > (slot.ended_ns, slot.id) {
                    *slot = r;
                }
            }
        }
        for ((job, op), r) in &latest {
            let l = labels(&[("job", job), ("operation", op)]);
            let mut statuses: Vec<&str> = FINISHED.to_vec();
            if !statuses.contains(&r.status.as_str()) {
                statuses.push(&r.status);
            }
            for st in statuses {
                last.samples.push((
                    labels(&[("job", job), ("operation", op), ("status", st)]),
                    f64::from(u8::from(st == r.status)),
                ));
            }
            end.samples.push((l.clone(), seconds(r.ended_ns)));
            let took = if r.started_ns > 0 {
                r.ended_ns.saturating_sub(r.started_ns).max(0)
            } else {
                0
            };
            duration.samples.push((l.clone(), seconds(took)));
            for (kind, b) in [("read", r.bytes_read), ("stored", r.bytes_stored)] {
                bytes.samples.push((
                    labels(&[("job", job), ("operation", op), ("kind", kind)]),
                    b as f64,
                ));
            }
        }
        for ((job, op, st), n) in counts {
            runs.samples.push((
                labels(&[("job", job), ("operation", op), ("status", st)]),
                n as f64,
            ));
        }
    }
    (vec![last, end, duration, bytes, runs], history.is_some())
}

/// The arrays' states from vault-poold's `status.json` (absent: no metric, not an error; the
/// pool service may not run on a test box).
fn pool_metrics(path: &Path) -> Vec<Metric> {
    let Some(doc) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return Vec::new();
    };
    let mut state = Metric::gauge(
        "tiervault_array_state",
        "1 for the state an md array is in (label state), from vault-poold.",
    );
    let mut degraded = Metric::gauge(
        "tiervault_array_degraded_members",
        "Members an md array lacks.",
    );
    let mut used = Metric::gauge(
        "tiervault_array_used_percent",
        "How full the file system on an array is.",
    );
    for a in doc["arrays"].as_array().into_iter().flatten() {
        let name = a["name"].as_str().unwrap_or_default();
        let st = a["state"].as_str().unwrap_or_default();
        state
            .samples
            .push((labels(&[("array", name), ("state", st)]), 1.0));
        if let Some(d) = a["degraded"].as_f64() {
            degraded.samples.push((labels(&[("array", name)]), d));
        }
        if let Some(u) = a["used_percent"].as_f64() {
            used.samples.push((labels(&[("array", name)]), u));
        }
    }
    vec![state, degraded, used]
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn text(families: &[Metric]) -> String {
        tiervault_notify::prometheus::render(families)
    }

    /// The sample lines of `text` (no HELP or TYPE).
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn replication_lag_and_last_success() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("status.json");
        std::fs::write(
            &path,
            r#"{"target":"tiervault://r:7443 (tenant acme)","cache_key":"k",
                "last_attempt_ns":1700000100000000000,"last_success_ns":1700000000500000000,
                "last_error":"connection refused","on_target":["aa"],
                "failing_since_ns":1700000050000000000,"pending_snapshots":2,
                "oldest_pending_ns":1700000000000000000,"pending_bytes":4096,
                "lag_computed_ns":1700000100000000000,"a_later_field":[1,2]}"#,
        )
        .expect("write");
        let (m, read) = replication_metrics(&path, 1_700_000_000 * S + 90 * S);
        assert!(read);
        let t = text(&m);
        assert_eq!(
            samples(&t),
            [
                r#"tiervault_replication_last_success_timestamp_seconds{target="tiervault://r:7443 (tenant acme)"} 1700000000.5"#,
                r#"tiervault_replication_pending_snapshots{target="tiervault://r:7443 (tenant acme)"} 2"#,
                r#"tiervault_replication_lag_seconds{target="tiervault://r:7443 (tenant acme)"} 90"#,
                r#"tiervault_replication_pending_bytes{target="tiervault://r:7443 (tenant acme)"} 4096"#,
                r#"tiervault_replication_lag_computed_timestamp_seconds{target="tiervault://r:7443 (tenant acme)"} 1700000100"#,
            ],
            "{t}"
        );
        assert!(
            t.contains("# TYPE tiervault_replication_lag_seconds gauge\n"),
            "{t}"
        );
    }

    #[test]
    fn replication_caught_up_never_succeeded_and_older_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("status.json");
        // Caught up: lag 0 even though an oldest time is left over.
        std::fs::write(
            &path,
            r#"{"target":"/r","last_success_ns":null,"pending_snapshots":0,
                "oldest_pending_ns":5,"pending_bytes":0,"lag_computed_ns":10000000000}"#,
        )
        .expect("write");
        let (m, _) = replication_metrics(&path, 100 * S);
        assert_eq!(
            samples(&text(&m)),
            [
                r#"tiervault_replication_last_success_timestamp_seconds{target="/r"} 0"#,
                r#"tiervault_replication_pending_snapshots{target="/r"} 0"#,
                r#"tiervault_replication_lag_seconds{target="/r"} 0"#,
                r#"tiervault_replication_pending_bytes{target="/r"} 0"#,
                r#"tiervault_replication_lag_computed_timestamp_seconds{target="/r"} 10"#,
            ]
        );
        // A file from before the lag was recorded: only the last success.
        std::fs::write(
            &path,
            r#"{"target":"/r","cache_key":"k","last_attempt_ns":1,"last_success_ns":2000000000,
                "last_error":null,"on_target":[]}"#,
        )
        .expect("write");
        let (m, read) = replication_metrics(&path, 100 * S);
        assert!(read);
        assert_eq!(
            samples(&text(&m)),
            [r#"tiervault_replication_last_success_timestamp_seconds{target="/r"} 2"#]
        );
    }

    #[test]
    fn missing_or_damaged_files_give_no_samples_and_say_so() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("nope.json");
        let torn = dir.path().join("torn.json");
        std::fs::write(&torn, b"{\"target\": \"/r\", \"last_succ").expect("write");
        let other = dir.path().join("other.json");
        std::fs::write(&other, br#"{"format":"something-else","runs":[]}"#).expect("write");
        for p in [&missing, &torn] {
            let (m, read) = replication_metrics(p, 0);
            assert!(!read);
            assert_eq!(m.len(), 5);
            assert!(samples(&text(&m)).is_empty());
        }
        for p in [&missing, &torn, &other] {
            let (m, read) = job_metrics(p);
            assert!(!read, "{}", p.display());
            assert_eq!(m.len(), 5);
            assert!(samples(&text(&m)).is_empty());
        }
        // A directory where a file should be.
        let (_, read) = job_metrics(dir.path());
        assert!(!read);
    }

    #[test]
    fn job_results_counts_and_last_runs() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("history.json");
        let run = |id: u64, op: &str, job: &str, status: &str, start: i64, end: i64, read: u64| {
            format!(
                r#"{{"id":{id},"operation":"{op}","job":"{job}","trigger":"schedule",
                    "status":"{status}","target":["/data"],"queued_ns":{q},"started_ns":{s},
                    "ended_ns":{e},"bytes_read":{read},"bytes_stored":{st},"files":3,
                    "skipped_items":0,"excluded":0,"compression_ratio":1.5,"dedup_ratio":2.0,
                    "snapshot":"","message":"","warnings":[],"future":true}}"#,
                q = if start > 0 { start } else { end },
                s = start * S,
                e = end * S,
                st = read / 4,
            )
        };
        let runs = [
            run(1, "backup", "nightly", "success", 100, 160, 4000),
            run(2, "backup", "nightly", "failed", 1000, 1030, 800),
            // Skipped: never started; ended when queued.
            run(3, "backup", "nightly", "skipped", 0, 1010, 0),
            run(4, "backup", "nightly", "running", 2000, 0, 0),
            run(5, "restore", "", "warnings", 500, 502, 100),
            run(6, "backup", "weekly", "success", 10, 70, 1_000_000),
        ];
        std::fs::write(
            &path,
            format!(
                r#"{{"format":"tiervault-job-history","version":1,"next_id":7,"runs":[{}]}}"#,
                runs.join(",")
            ),
        )
        .expect("write");
        let (m, read) = job_metrics(&path);
        assert!(read);
        let t = text(&m);
        let want = r#"tiervault_job_last_status{job="",operation="restore",status="success"} 0
tiervault_job_last_status{job="",operation="restore",status="warnings"} 1
tiervault_job_last_status{job="",operation="restore",status="failed"} 0
tiervault_job_last_status{job="",operation="restore",status="skipped"} 0
tiervault_job_last_status{job="nightly",operation="backup",status="success"} 0
tiervault_job_last_status{job="nightly",operation="backup",status="warnings"} 0
tiervault_job_last_status{job="nightly",operation="backup",status="failed"} 1
tiervault_job_last_status{job="nightly",operation="backup",status="skipped"} 0
tiervault_job_last_status{job="weekly",operation="backup",status="success"} 1
tiervault_job_last_status{job="weekly",operation="backup",status="warnings"} 0
tiervault_job_last_status{job="weekly",operation="backup",status="failed"} 0
tiervault_job_last_status{job="weekly",operation="backup",status="skipped"} 0
tiervault_job_last_end_timestamp_seconds{job="",operation="restore"} 502
tiervault_job_last_end_timestamp_seconds{job="nightly",operation="backup"} 1030
tiervault_job_last_end_timestamp_seconds{job="weekly",operation="backup"} 70
tiervault_job_last_duration_seconds{job="",operation="restore"} 2
tiervault_job_last_duration_seconds{job="nightly",operation="backup"} 30
tiervault_job_last_duration_seconds{job="weekly",operation="backup"} 60
tiervault_job_last_bytes{job="",operation="restore",kind="read"} 100
tiervault_job_last_bytes{job="",operation="restore",kind="stored"} 25
tiervault_job_last_bytes{job="nightly",operation="backup",kind="read"} 800
tiervault_job_last_bytes{job="nightly",operation="backup",kind="stored"} 200
tiervault_job_last_bytes{job="weekly",operation="backup",kind="read"} 1000000
tiervault_job_last_bytes{job="weekly",operation="backup",kind="stored"} 250000
tiervault_job_runs{job="",operation="restore",status="warnings"} 1
tiervault_job_runs{job="nightly",operation="backup",status="failed"} 1
tiervault_job_runs{job="nightly",operation="backup",status="running"} 1
tiervault_job_runs{job="nightly",operation="backup",status="skipped"} 1
tiervault_job_runs{job="nightly",operation="backup",status="success"} 1
tiervault_job_runs{job="weekly",operation="backup",status="success"} 1"#;
        assert_eq!(samples(&t), want.lines().collect::<Vec<_>>(), "{t}");
        assert!(t.contains("# TYPE tiervault_job_runs gauge\n"), "{t}");
    }

    #[test]
    fn a_result_unknown_to_this_version_is_shown_too() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("history.json");
        std::fs::write(
            &path,
            r#"{"format":"tiervault-job-history","runs":[{"id":1,"operation":"verify",
                "job":"","status":"cancelled","started_ns":0,"ended_ns":0}]}"#,
        )
        .expect("write");
        let (m, _) = job_metrics(&path);
        let t = text(&m);
        assert!(
            t.contains(
                r#"tiervault_job_last_status{job="",operation="verify",status="cancelled"} 1"#
            ),
            "{t}"
        );
        assert!(
            t.contains(r#"tiervault_job_last_duration_seconds{job="",operation="verify"} 0"#),
            "{t}"
        );
    }
}
