//! `vaultctl health`: the hardware as the health service last read it (BMC sensors, chassis,
//! FRU inventory, SMART of every disk, source errors, active alerts), and clearing the BMC's
//! event log. Through the health service (`org.tiervault.Health1`) when it runs or `--bus` is
//! given, else from the status file it leaves in its state directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::cli::Global;
use crate::output::{print_json, rfc3339_ns};
use crate::service::Api;
use crate::Outcome;

const API: Api = Api {
    name: "org.tiervault.Health1",
    root: "/org/tiervault/Health1",
    manager: "org.tiervault.Health1.Manager",
    what: "the health service",
};

#[derive(Debug, Subcommand)]
pub enum HealthCmd {
    /// Everything: sensors, chassis, disks, source errors and active alerts
    Status(HealthArgs),
    /// BMC sensors: reading, unit, level (with hysteresis) and the limits in force
    Sensors(HealthArgs),
    /// Every disk's SMART: overall health, temperature, power-on hours, reallocated and
    /// pending sectors, NVMe wear, the last self-test
    Disks(HealthArgs),
    /// The FRU inventory: chassis, board, product and power-supply serials, for an RMA
    Fru(HealthArgs),
    /// Clear the BMC's event log (SEL). Its records are archived first (sel-archive.jsonl in
    /// the health service's state directory) and the alerts raised for them are cleared.
    /// Needs the running health service; without it, run `vault-healthd --clear-sel`
    #[command(after_long_help = CLEAR_SEL_HELP)]
    ClearSel,
}

const CLEAR_SEL_HELP: &str = "\
A full SEL stops the BMC from logging new events, so clear it once its records have been
reviewed. Nothing is lost: every record is in sel-archive.jsonl (JSON lines, with the time it
was read), which support bundles include. Allowed to vault-admin (bus policy); audited.";

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The health service's state directory, read when the service is not running
    #[arg(
        long,
        value_name = "DIR",
        env = "VAULT_HEALTHD_STATE",
        default_value = "/var/lib/tiervault/healthd"
    )]
    pub state_dir: PathBuf,
}

pub fn run(g: &Global, c: &HealthCmd) -> Result<Outcome> {
    let (args, part) = match c {
        HealthCmd::ClearSel => return clear_sel(g),
        HealthCmd::Status(a) => (a, None),
        HealthCmd::Sensors(a) => (a, Some("sensors")),
        HealthCmd::Disks(a) => (a, Some("disks")),
        HealthCmd::Fru(a) => (a, Some("fru")),
    };
    let doc = status(g, &args.state_dir)?;
    match part {
        None if g.json => print_json(&doc),
        None => print_all(&doc),
        Some(p) if g.json => print_json(&doc[p]),
        Some("sensors") => print_sensors(&doc),
        Some("disks") => print_disks(&doc),
        Some(_) => print_fru(&doc),
    }
    Ok(Outcome::Ok)
}

/// The service's answer, or its status file.
fn status(g: &Global, state_dir: &Path) -> Result<Value> {
    if let Some(conn) = API.connect(g)? {
        let text = API.call::<_, String>(&conn, "Status", &())?;
        return serde_json::from_str(&text)
            .context("org.tiervault.Health1.Status: the service's answer is not JSON");
    }
    let file = state_dir.join("status.json");
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "{}: no status from the health service (is vault-healthd set up? \
             `vault-healthd --once` writes one)",
            file.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))
}

fn clear_sel(g: &Global) -> Result<Outcome> {
    let Some(conn) = API.connect(g)? else {
        bail!(
            "the health service (org.tiervault.Health1) is not running: start vault-healthd, \
             or clear the event log with `vault-healthd --clear-sel`"
        );
    };
    let n: u32 = API.call(&conn, "ClearSel", &())?;
    if g.json {
        print_json(&serde_json::json!({ "archived": n, "cleared": true }));
    } else if !g.quiet {
        outln!("cleared the BMC event log ({n} records archived in sel-archive.jsonl)");
    }
    Ok(Outcome::Ok)
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(t) => t.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x}"),
        None => "-".into(),
    }
}

fn print_all(doc: &Value) {
    let alerts = doc["alerts"].as_array().map_or(0, Vec::len);
    let worst = doc["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["severity"].as_u64())
        .max();
    let when = doc["updated_ns"]
        .as_i64()
        .map(rfc3339_ns)
        .unwrap_or_else(|| "-".into());
    match worst {
        Some(w) => outln!("health: {alerts} active alerts, highest severity {w} (read {when})"),
        None => outln!("health: no active alerts (read {when})"),
    }
    print_sensors(doc);
    if let Some(c) = doc["chassis"].as_object() {
        let faults: Vec<&str> = [
            ("intrusion", "intrusion"),
            ("fan_fault", "fan fault"),
            ("drive_fault", "drive fault"),
            ("main_power_fault", "main power fault"),
            ("power_overload", "power overload"),
            ("power_control_fault", "power control fault"),
        ]
        .iter()
        .filter(|(k, _)| c.get(*k).and_then(Value::as_bool) == Some(true))
        .map(|(_, words)| *words)
        .collect();
        let power = if c.get("power_on").and_then(Value::as_bool) == Some(true) {
            "on"
        } else {
            "off"
        };
        outln!(
            "chassis: power {power}; {}",
            if faults.is_empty() {
                "no faults".to_owned()
            } else {
                faults.join(", ")
            }
        );
    }
    print_disks(doc);
    if let Some(errors) = doc["errors"].as_object().filter(|e| !e.is_empty()) {
        outln!("cannot read:");
        for (source, e) in errors {
            outln!("  {source}: {}", e.as_str().unwrap_or_default());
        }
    }
    for a in doc["alerts"].as_array().into_iter().flatten() {
        outln!(
            "  alert {:>4}  severity {:>2}  {} {}: {}",
            s(a, "id"),
            s(a, "severity"),
            s(a, "class"),
            s(a, "key"),
            s(a, "summary")
        );
    }
}

fn print_sensors(doc: &Value) {
    let sensors = doc["sensors"].as_array().cloned().unwrap_or_default();
    if sensors.is_empty() {
        outln!("sensors: none (no BMC configured, or it could not be read)");
        return;
    }
    outln!("sensors:");
    for x in &sensors {
        let limits: Vec<String> = ["lnr", "lcr", "lnc", "unc", "ucr", "unr"]
            .iter()
            .filter_map(|k| {
                x["limits"][*k]
                    .as_f64()
                    .map(|v| format!("{k} {}", num(&v.into())))
            })
            .collect();
        let reading = if x["value"].is_null() {
            match &x["status"]["states"] {
                Value::Array(states) if !states.is_empty() => states
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "-".into(),
            }
        } else {
            format!("{} {}", num(&x["value"]), s(x, "unit"))
        };
        outln!(
            "  {:<16} {:<22} {:<16}{}",
            s(x, "name"),
            reading,
            s(x, "level"),
            if limits.is_empty() {
                String::new()
            } else {
                format!(" limits: {}", limits.join(", "))
            }
        );
    }
}

fn print_disks(doc: &Value) {
    let disks = doc["disks"].as_array().cloned().unwrap_or_default();
    if disks.is_empty() {
        outln!("disks: none with SMART");
        return;
    }
    outln!("disks:");
    for d in &disks {
        let health = match d["passed"].as_bool() {
            Some(true) => "PASSED",
            Some(false) => "FAILING",
            None => "unknown",
        };
        let opt = |k: &str, unit: &str| match d[k].as_u64() {
            Some(v) => format!("{v}{unit}"),
            None => "-".into(),
        };
        let last_test = d["self_tests"]
            .as_array()
            .and_then(|t| t.first())
            .map(|t| format!("  last self-test: {} {}", s(t, "kind"), s(t, "status")))
            .unwrap_or_default();
        outln!(
            "  {:<20} {:<14} {:<24} {:<8} {:>5} {:>8}  reallocated {}  pending {}{last_test}",
            s(d, "serial"),
            s(d, "device"),
            s(d, "model"),
            health,
            opt("temperature_c", "°C"),
            opt("power_on_hours", " h"),
            opt("reallocated_sectors", ""),
            opt("pending_sectors", ""),
        );
    }
}

fn print_fru(doc: &Value) {
    let fru = doc["fru"].as_array().cloned().unwrap_or_default();
    if fru.is_empty() {
        outln!("FRU inventory: none read");
        return;
    }
    for dev in &fru {
        outln!("{}:", s(dev, "name"));
        for f in dev["fields"].as_array().into_iter().flatten() {
            if let (Some(k), Some(v)) = (f[0].as_str(), f[1].as_str()) {
                outln!("  {k:<24} {v}");
            }
        }
        if let Some(n) = dev["note"].as_str() {
            outln!("  ({n})");
        }
    }
}
