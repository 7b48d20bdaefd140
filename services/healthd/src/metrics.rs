//! The Prometheus metrics the MSP scrapes over the management tunnel: sensor readings and
//! levels, SMART facts, the pool's array states (from vault-poold's status file), active alerts
//! by priority, and the notification spools.

use std::path::Path;

use tiervault_alerts::Alert;
use tiervault_notify::Metric;

use crate::service::Snapshot;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every metric for one scrape.
pub fn collect(latest: &Snapshot, alerts: &[Alert], pool_status: &Path) -> Vec<Metric> {
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
    out.extend(pool_metrics(pool_status));
    out
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
