//! Tier 3: the health service `vault-healthd` (release build) in a qemu guest, reading its BMC
//! the way the appliance does, through the kernel's IPMI driver (`/dev/ipmi0`, ipmitool
//! `-I open`), and SMART from an emulated NVMe disk with smartctl. The BMC is OpenIPMI's
//! `ipmi_sim` on the host (common/ipmisim.rs, the tier-2 fixture), attached to the guest as
//! qemu's external BMC (`ipmi-bmc-extern` behind an ISA KCS interface; run-guest.sh
//! `--ipmi-bmc`): the readings set on the host are what the guest's driver reads.
//!
//! One boot (emulation is slow). Before it, the host puts a fault in the simulator: FAN1 at
//! 300 RPM (below its lower critical 500: the simulator logs the threshold events in its SEL)
//! and an OEM record in the SEL. In the guest: `/dev/ipmi0` appears, `ipmitool -I open` reads
//! the sensors, `vault-healthd --once` writes status.json and alerts.json, `--clear-sel`
//! archives and clears the SEL. Every assertion is made here on what the guest reported:
//! readings and levels, the fan alert (health.fan, severity 8), the SEL alerts (critical
//! records severity 7), the NVMe disk by serial with SMART passed, no health.source error;
//! after the clear, no SEL alert, the archive holds the records, and the simulator's SEL is
//! empty (checked from the host over LAN). Says SKIPPED when qemu, ipmi_sim, ipmitool or
//! smartctl are missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ipmisim::{self, IpmiSim};
use common::vm::{self, Drive, Run};
use serde_json::Value;

const TEST: &str = "vm_health";
const NVME_SERIAL: &str = "TVHEALTH-NVME0";
const SMARTCTL: &str = "/usr/sbin/smartctl";
/// FAN1's reading during the run: below its lower critical threshold (500 RPM).
const FAN1_RPM: f64 = 300.0;
/// The OEM SEL record added before the boot (type 0xc0: manufacturer ID 0x000157, data).
const OEM_RECORD: [u8; 13] = [
    0, 0, 0, 0, 0x57, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x42, 0x43,
];

const SCRIPT: &str = r#"
set -u
export PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
export TZ=UTC LC_ALL=C HEALTHD_LOG=info
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
STATE=/tmp/healthd
CONF=/etc/tiervault/healthd.toml

# /dev/ipmi0: devtmpfs makes it when ipmi_devintf registers the interface; made by hand from
# sysfs should it not.
t0=$(ms)
while [ ! -c /dev/ipmi0 ]; do
    if [ -r /sys/class/ipmi/ipmi0/dev ]; then
        IFS=: read -r maj min </sys/class/ipmi/ipmi0/dev
        mknod /dev/ipmi0 c "$maj" "$min" && echo "made /dev/ipmi0 ($maj:$min) from sysfs"
        break
    fi
    if [ $(( $(ms) - t0 )) -gt 60000 ]; then
        echo "no /dev/ipmi0 after 60 s"; dmesg | grep -i ipmi | tail -n 30
        tv-result timeout="/dev/ipmi0"
        exit 90
    fi
    sleep 0.1
done
tv-result ipmi0_uptime_ms:=$(ms) ipmi0_wait_ms:=$(( $(ms) - t0 )) \
    driver="$(dmesg | grep -i 'ipmi_si' | grep -iE 'initialized|found new bmc' | cut -c 16- | head -n 3)"

# Sanity: ipmitool through the kernel driver.
t0=$(ms)
ipmitool -I open sensor list >/tmp/sensors.txt 2>/tmp/sensors.err
rc=$?
tv-result sensor_list_rc:=$rc sensor_list_ms:=$(( $(ms) - t0 )) \
    sensor_lines:=$(grep -c '|' /tmp/sensors.txt) \
    sensor_fan1="$(grep '^FAN1 ' /tmp/sensors.txt)" sensor_cpu="$(grep '^CPU_Temp ' /tmp/sensors.txt)" \
    sensor_err="$(grep -v 'IANA PEN' /tmp/sensors.err | head -c 1000)"
[ $rc -eq 0 ] || exit 91

mkdir -p /etc/tiervault
cat >"$CONF" <<EOF
state-dir = "$STATE"
poll-seconds = 30
pool-status = "/tmp/absent/poold-status.json"
bus = "none"
[appliance]
id = "msp-vm-01"
hostname = "tiervault-guest"
[ipmi]
timeout-secs = 120
ipmitool = "/usr/bin/ipmitool"
[ipmi.transport]
kind = "local"
[smart]
smartctl = "/usr/sbin/smartctl"
timeout-seconds = 120
EOF
vault-healthd --config "$CONF" --check-config >/tmp/check.log 2>&1
rc=$?
tv-result check_rc:=$rc check="$(head -c 1000 /tmp/check.log)"
[ $rc -eq 0 ] || exit 92

t0=$(ms)
vault-healthd --config "$CONF" --once >/tmp/once.log 2>&1
rc=$?
tv-result once_rc:=$rc once_ms:=$(( $(ms) - t0 )) once_log="$(tail -c 3000 /tmp/once.log)"
[ $rc -eq 0 ] || exit 93
tv-result "status:=$(cat $STATE/status.json)"
tv-result "alerts:=$(cat $STATE/alerts.json)"

t0=$(ms)
vault-healthd --config "$CONF" --clear-sel >/tmp/clear.log 2>&1
rc=$?
tv-result clear_rc:=$rc clear_ms:=$(( $(ms) - t0 )) clear_log="$(tail -c 2000 /tmp/clear.log)"
[ $rc -eq 0 ] || exit 94
tv-result "status_after_clear:=$(cat $STATE/status.json)"
tv-result "alerts_after_clear:=$(cat $STATE/alerts.json)"
tv-result "archive:=[$(awk 'NR > 1 { printf "," } { printf "%s", $0 }' $STATE/sel-archive.jsonl)]"
ipmitool -I open sel elist >/tmp/sel.txt 2>&1
tv-result sel_after_clear_rc:=$? sel_after_clear="$(grep -v 'IANA PEN' /tmp/sel.txt | head -c 1000)"

# A further round (a restart of the service): the fan alert goes on, the SEL raises nothing.
vault-healthd --config "$CONF" --once >/tmp/once2.log 2>&1
rc=$?
tv-result once2_rc:=$rc once2_log="$(tail -c 2000 /tmp/once2.log)"
[ $rc -eq 0 ] || exit 95
tv-result "alerts_round2:=$(cat $STATE/alerts.json)" \
    archive_lines_round2:=$(wc -l <$STATE/sel-archive.jsonl)
"#;

/// The host tools, or why the test cannot run here.
fn tools() -> Result<(vm::Vm, PathBuf), String> {
    let vm = vm::available()?;
    ipmisim::available()?;
    if !Path::new(SMARTCTL).is_file() {
        return Err(format!(
            "{SMARTCTL} is not installed (apt-get install smartmontools)"
        ));
    }
    let out = Command::new("sh")
        .args(["-c", "command -v ipmitool"])
        .output()
        .map_err(|e| format!("sh: {e}"))?;
    let ipmitool = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || ipmitool.is_empty() {
        return Err("ipmitool is not installed (apt-get install ipmitool)".into());
    }
    Ok((vm, PathBuf::from(ipmitool)))
}

fn arr<'a>(run: &Run, doc: &'a Value, key: &str) -> &'a Vec<Value> {
    doc[key]
        .as_array()
        .unwrap_or_else(|| run.fail(format_args!("no array {key:?} in {doc}")))
}

fn sensor<'a>(run: &Run, status: &'a Value, name: &str) -> &'a Value {
    arr(run, status, "sensors")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| run.fail(format_args!("no sensor {name} in status.json: {status}")))
}

/// status.json's active alerts of a class.
fn active<'a>(run: &Run, status: &'a Value, class: &str) -> Vec<&'a Value> {
    arr(run, status, "alerts")
        .iter()
        .filter(|a| a["class"] == class)
        .collect()
}

#[test]
fn healthd_reads_the_bmc_through_dev_ipmi0_and_smart_of_an_nvme_disk() {
    let (vm, ipmitool) = match tools() {
        Ok(t) => t,
        Err(reason) => {
            return common::skip(&format!(
                "{TEST} (tier 3, qemu guest with ipmi_sim as its BMC): {reason}"
            ))
        }
    };
    let bins = vm::release_binaries(&["tiervault-healthd"]);
    let healthd = bins
        .get("vault-healthd")
        .unwrap_or_else(|| panic!("no vault-healthd among {bins:?}"));

    // The BMC, with the fault in place before the guest boots.
    let sim = IpmiSim::start();
    sim.set_reading("FAN1", FAN1_RPM);
    sim.add_sel(0xc0, OEM_RECORD);
    let sel_before = String::from_utf8_lossy(&sim.ipmitool(&["sel", "elist"]).stdout).into_owned();
    let sel_records = sel_before.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        sel_before.contains("FAN1") && sel_records >= 3,
        "the simulator's SEL before the boot:\n{sel_before}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let disk = vm::sparse_image(dir.path(), "nvme0.img", 64);
    let run = vm
        .guest(TEST, SCRIPT)
        .module("ipmi_msghandler")
        .module("ipmi_si")
        .module("ipmi_devintf")
        .binary(&ipmitool, "/usr/bin/ipmitool")
        .binary(SMARTCTL, SMARTCTL)
        .binary(healthd, "/usr/local/bin/vault-healthd")
        .drive(Drive::nvme(&disk, NVME_SERIAL))
        .ipmi_bmc(sim.vm_port)
        .timeout(Duration::from_secs(420))
        .run();
    if run.code != 0 {
        run.fail(format_args!(
            "the guest script failed (exit code {}); ipmi_sim's log:\n{}",
            run.code,
            sim.log()
        ));
    }

    // ipmitool through /dev/ipmi0 saw the simulator's sensors and values.
    let fan1 = run.result_str("sensor_fan1");
    let cols: Vec<&str> = fan1.split('|').map(str::trim).collect();
    run.ensure(
        cols.len() >= 4 && cols[1].parse::<f64>().ok() == Some(FAN1_RPM) && cols[3] == "cr",
        format_args!("ipmitool -I open: FAN1 should read {FAN1_RPM} RPM, status cr: {fan1:?}"),
    );
    let cpu = run.result_str("sensor_cpu");
    run.ensure(
        cpu.split('|')
            .nth(1)
            .and_then(|v| v.trim().parse::<f64>().ok())
            == Some(45.0),
        format_args!("ipmitool -I open: CPU_Temp should read 45: {cpu:?}"),
    );
    let lines = run.result_i64("sensor_lines");
    let expected = ipmisim::analog_sensors().len() as i64 + 1;
    run.ensure(
        lines >= expected,
        format_args!("ipmitool sensor list: {lines} rows, expected at least {expected}"),
    );

    // One round of vault-healthd.
    let status = run.result("status").clone();
    let fan = sensor(&run, &status, "FAN1");
    run.ensure(
        fan["value"].as_f64() == Some(FAN1_RPM) && fan["level"] == "critical",
        format_args!("FAN1 in status.json: {fan}"),
    );
    let cpu = sensor(&run, &status, "CPU_Temp");
    run.ensure(
        cpu["value"].as_f64() == Some(45.0) && cpu["level"] == "ok",
        format_args!("CPU_Temp in status.json: {cpu}"),
    );
    let inlet = sensor(&run, &status, "Inlet_Temp");
    run.ensure(
        inlet["value"].as_f64() == Some(24.0),
        format_args!("Inlet_Temp in status.json: {inlet}"),
    );
    let psu = sensor(&run, &status, "PSU1_Power");
    run.ensure(
        psu["value"].as_f64() == Some(160.0),
        format_args!("PSU1_Power in status.json: {psu}"),
    );
    run.ensure(
        status["fru"].to_string().contains(ipmisim::CHASSIS_SERIAL),
        format_args!("FRU inventory through /dev/ipmi0: {}", status["fru"]),
    );
    let errors = &status["errors"];
    run.ensure(
        errors.as_object().is_some_and(|e| e.is_empty()),
        format_args!("source errors in status.json: {errors}"),
    );
    run.ensure(
        active(&run, &status, "health.source").is_empty(),
        format_args!("health.source alerts: {status}"),
    );

    let fan_alerts = active(&run, &status, "health.fan");
    run.ensure(
        fan_alerts.len() == 1 && fan_alerts[0]["key"] == "FAN1" && fan_alerts[0]["severity"] == 8,
        format_args!("the fan alert (health.fan FAN1, severity 8): {fan_alerts:?}"),
    );
    for class in ["health.temperature", "health.psu"] {
        run.ensure(
            active(&run, &status, class).is_empty(),
            format_args!("{class} raised on nominal readings: {status}"),
        );
    }
    let sel_alerts = active(&run, &status, "health.sel");
    run.ensure(
        sel_alerts.len() == sel_records,
        format_args!(
            "one SEL alert per record ({sel_records}): {sel_alerts:?}\nSEL:\n{sel_before}"
        ),
    );
    run.ensure(
        sel_alerts.iter().any(|a| {
            a["severity"] == 7
                && a["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains("FAN1") && s.contains("Lower Critical going low"))
        }),
        format_args!("a severity-7 SEL alert for FAN1's lower critical event: {sel_alerts:?}"),
    );

    // The NVMe disk: found in sysfs, SMART read with smartctl.
    let disks = arr(&run, &status, "disks");
    let nvme = disks
        .iter()
        .find(|d| d["serial"] == NVME_SERIAL)
        .unwrap_or_else(|| run.fail(format_args!("no disk {NVME_SERIAL} in {disks:?}")));
    run.ensure(
        disks.len() == 1
            && nvme["protocol"] == "NVMe"
            && nvme["passed"] == true
            && nvme["model"] == "QEMU NVMe Ctrl"
            && nvme["capacity_bytes"] == 64u64 << 20
            && nvme["device"]
                .as_str()
                .is_some_and(|d| d.starts_with("/dev/nvme")),
        format_args!("the NVMe disk in status.json: {nvme}"),
    );
    run.ensure(
        active(&run, &status, "health.smart").is_empty()
            && arr(&run, &status, "alerts")
                .iter()
                .all(|a| a["key"] != NVME_SERIAL),
        format_args!("alerts on a healthy NVMe disk: {status}"),
    );

    // alerts.json: the same active alerts, from the healthd source.
    let alerts = run.result("alerts").clone();
    let stored = arr(&run, &alerts, "alerts");
    run.ensure(
        alerts["source"] == "healthd"
            && stored.iter().all(|a| a["cleared_ns"].is_null())
            && stored.len() == arr(&run, &status, "alerts").len(),
        format_args!("alerts.json after the round: {alerts}"),
    );

    // --clear-sel: the SEL alerts cleared, the records archived, the BMC's SEL empty.
    run.ensure(
        run.result_str("clear_log")
            .contains(&format!("cleared the BMC event log ({sel_records} records")),
        "vault-healthd --clear-sel's report",
    );
    let after = run.result("status_after_clear").clone();
    run.ensure(
        active(&run, &after, "health.sel").is_empty(),
        format_args!("SEL alerts after --clear-sel: {after}"),
    );
    run.ensure(
        active(&run, &after, "health.fan").len() == 1,
        format_args!("the fan alert must outlive --clear-sel: {after}"),
    );
    let alerts_after = run.result("alerts_after_clear").clone();
    let cleared_sel = arr(&run, &alerts_after, "alerts")
        .iter()
        .filter(|a| a["class"] == "health.sel" && a["cleared_ns"].is_i64())
        .count();
    run.ensure(
        cleared_sel == sel_records,
        format_args!("{sel_records} SEL alerts cleared in alerts.json: {alerts_after}"),
    );
    let archive = run.result("archive").clone();
    let archived = archive.as_array().cloned().unwrap_or_default();
    let has_record = |pred: &dyn Fn(&Value) -> bool| archived.iter().any(|r| pred(&r["entry"]));
    run.ensure(
        archived.len() == sel_records
            && has_record(&|e| {
                e["sensor_name"] == "FAN1"
                    && e["event"] == "Lower Critical going low"
                    && e["direction"] == "asserted"
            })
            && has_record(&|e| {
                e["sensor"]
                    .as_str()
                    .is_some_and(|s| s.to_ascii_lowercase().contains("oem"))
            }),
        format_args!(
            "sel-archive.jsonl ({sel_records} records, FAN1's and the OEM one): {archive}"
        ),
    );
    let sel_left = run.result_str("sel_after_clear");
    run.ensure(
        sel_left.contains("SEL has no entries"),
        format_args!("ipmitool -I open sel elist after --clear-sel: {sel_left:?}"),
    );
    // The next round: nothing new raised, nothing re-raised, the fan alert the same one.
    let round2 = run.result("alerts_round2").clone();
    let all2 = arr(&run, &round2, "alerts");
    let fan_id = fan_alerts[0]["id"].clone();
    run.ensure(
        all2.len() == arr(&run, &alerts_after, "alerts").len()
            && all2
                .iter()
                .filter(|a| a["cleared_ns"].is_null())
                .map(|a| (&a["class"], &a["id"]))
                .eq([(&Value::from("health.fan"), &fan_id)])
            && run.result_i64("archive_lines_round2") == sel_records as i64,
        format_args!(
            "alerts.json after a further round (only the fan alert {fan_id} active): {round2}"
        ),
    );
    let host_sel = String::from_utf8_lossy(&sim.ipmitool(&["sel", "elist"]).stdout).into_owned();
    run.ensure(
        host_sel.trim().is_empty(),
        format_args!("the simulator's SEL over LAN after the guest cleared it: {host_sel}"),
    );

    eprintln!(
        "{TEST}: boot to power-off {:.1} s (build {:.1} s); /dev/ipmi0 at {} ms of uptime \
         (waited {} ms); ipmitool sensor list {} ms; vault-healthd --once {} ms, --clear-sel {} \
         ms; {} sensors, {} SEL records archived",
        run.elapsed.as_secs_f64(),
        run.build.as_secs_f64(),
        run.result_i64("ipmi0_uptime_ms"),
        run.result_i64("ipmi0_wait_ms"),
        run.result_i64("sensor_list_ms"),
        run.result_i64("once_ms"),
        run.result_i64("clear_ms"),
        arr(&run, &status, "sensors").len(),
        archived.len(),
    );
}
