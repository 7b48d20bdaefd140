//! A disk's SMART data from `smartctl --json` (smartmontools 7.x): the facts the health rules
//! need, for ATA and NVMe alike. Pure: tested on outputs captured from qemu's emulated disks
//! (testdata/smart/) and on garbage.
//!
//! smartctl reports trouble in its exit status as well as in the JSON (a bit mask: 1 command
//! line, 2 device open failed, 4 a SMART command failed, 8 "disk failing", 16 prefail attribute
//! at threshold, 32 an attribute was at threshold in the past, 64 errors in the error log,
//! 128 errors in the self-test log), so both are kept.

use serde::Serialize;
use serde_json::Value;

/// Why a report could not be read. Always names the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartError {
    #[error("{device}: smartctl printed no JSON ({why})")]
    NotJson { device: String, why: String },
    #[error("{device}: smartctl could not open the device: {messages}")]
    OpenFailed { device: String, messages: String },
    #[error(
        "{device}: the device does not support SMART or smartctl could not read it: {messages}"
    )]
    Unsupported { device: String, messages: String },
}

/// NVMe's SMART / health information log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NvmeHealth {
    /// Bits: 0 spare below threshold, 1 temperature, 2 reliability degraded, 3 read-only,
    /// 4 volatile backup failed, 5 persistent memory read-only.
    pub critical_warning: u64,
    pub available_spare: Option<u64>,
    pub available_spare_threshold: Option<u64>,
    pub percentage_used: Option<u64>,
    pub media_errors: Option<u64>,
    pub unsafe_shutdowns: Option<u64>,
    pub error_log_entries: Option<u64>,
}

/// One entry of the self-test log, newest first as smartctl lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelfTest {
    /// "Short offline", "Extended offline", "Short", "Extended", ...
    pub kind: String,
    pub status: String,
    /// `None` while running or when smartctl does not say.
    pub passed: Option<bool>,
    pub power_on_hours: Option<u64>,
}

/// What the health rules read of one disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SmartReport {
    pub device: String,
    /// "ATA", "NVMe", "SCSI".
    pub protocol: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub capacity_bytes: Option<u64>,
    /// The overall assessment; `None` when the disk gives none.
    pub passed: Option<bool>,
    pub temperature_c: Option<i64>,
    pub power_on_hours: Option<u64>,
    /// ATA attribute 5 (raw).
    pub reallocated_sectors: Option<u64>,
    /// ATA attribute 197 (raw).
    pub pending_sectors: Option<u64>,
    /// ATA attribute 198 (raw).
    pub offline_uncorrectable: Option<u64>,
    /// ATA attributes whose normalised value is at or below their threshold now.
    pub failing_attributes: Vec<String>,
    pub nvme: Option<NvmeHealth>,
    pub self_tests: Vec<SelfTest>,
    /// Percent left of a self-test in progress.
    pub self_test_remaining: Option<u64>,
    pub exit_status: u64,
    /// smartctl's own messages (warnings and errors), for the operator.
    pub messages: Vec<String>,
}

fn u(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Parses `smartctl --json -x DEVICE` output. `device` names the disk in errors.
pub fn parse(device: &str, text: &str) -> Result<SmartReport, SmartError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| SmartError::NotJson {
        device: device.to_owned(),
        why: e.to_string(),
    })?;
    if !doc.is_object() {
        return Err(SmartError::NotJson {
            device: device.to_owned(),
            why: "not a JSON object".into(),
        });
    }
    let messages: Vec<String> = doc["smartctl"]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["string"].as_str().map(str::to_owned))
        .collect();
    let exit_status = u(&doc["smartctl"]["exit_status"]).unwrap_or(0);
    // Bit 0: smartctl did not understand the device (no SMART there at all, e.g. virtio).
    if exit_status & 1 != 0 {
        return Err(SmartError::Unsupported {
            device: device.to_owned(),
            messages: messages.join("; "),
        });
    }
    if exit_status & 2 != 0 {
        return Err(SmartError::OpenFailed {
            device: device.to_owned(),
            messages: messages.join("; "),
        });
    }
    let mut r = SmartReport {
        device: doc["device"]["name"].as_str().unwrap_or(device).to_owned(),
        protocol: s(&doc["device"]["protocol"]),
        model: s(&doc["model_name"]),
        serial: s(&doc["serial_number"]),
        firmware: s(&doc["firmware_version"]),
        capacity_bytes: u(&doc["user_capacity"]["bytes"])
            .or_else(|| u(&doc["nvme_total_capacity"])),
        passed: doc["smart_status"]["passed"].as_bool(),
        temperature_c: doc["temperature"]["current"].as_i64(),
        power_on_hours: u(&doc["power_on_time"]["hours"]),
        exit_status,
        messages,
        ..SmartReport::default()
    };
    for a in doc["ata_smart_attributes"]["table"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let raw = u(&a["raw"]["value"]);
        match u(&a["id"]) {
            Some(5) => r.reallocated_sectors = raw,
            Some(197) => r.pending_sectors = raw,
            Some(198) => r.offline_uncorrectable = raw,
            _ => {}
        }
        // A threshold of 0 means "never fails" by ATA's convention.
        if let (Some(value), Some(thresh)) = (u(&a["value"]), u(&a["thresh"])) {
            if thresh > 0 && value <= thresh {
                r.failing_attributes.push(s(&a["name"]));
            }
        }
    }
    let log = &doc["nvme_smart_health_information_log"];
    if log.is_object() {
        r.nvme = Some(NvmeHealth {
            critical_warning: u(&log["critical_warning"]).unwrap_or(0),
            available_spare: u(&log["available_spare"]),
            available_spare_threshold: u(&log["available_spare_threshold"]),
            percentage_used: u(&log["percentage_used"]),
            media_errors: u(&log["media_errors"]),
            unsafe_shutdowns: u(&log["unsafe_shutdowns"]),
            error_log_entries: u(&log["num_err_log_entries"]),
        });
        r.temperature_c = r.temperature_c.or_else(|| log["temperature"].as_i64());
        r.power_on_hours = r.power_on_hours.or_else(|| u(&log["power_on_hours"]));
    }
    for t in doc["ata_smart_self_test_log"]["standard"]["table"]
        .as_array()
        .into_iter()
        .flatten()
    {
        r.self_tests.push(SelfTest {
            kind: s(&t["type"]["string"]),
            status: s(&t["status"]["string"]),
            passed: t["status"]["passed"].as_bool(),
            power_on_hours: u(&t["lifetime_hours"]),
        });
    }
    for t in doc["nvme_self_test_log"]["table"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let result = u(&t["self_test_result"]["value"]);
        r.self_tests.push(SelfTest {
            kind: s(&t["self_test_code"]["string"]),
            status: s(&t["self_test_result"]["string"]),
            // NVMe result codes: 0 completed without error, 1-2 aborted, 3-4 fatal/unknown
            // segment, 5-7 failed segments.
            passed: result.map(|v| v == 0),
            power_on_hours: u(&t["power_on_hours"]),
        });
    }
    let ata_running = &doc["ata_smart_data"]["self_test"]["status"];
    r.self_test_remaining = u(&ata_running["remaining_percent"]).or_else(|| {
        let op = &doc["nvme_self_test_log"]["current_self_test_completion_percent"];
        u(op).map(|done| 100u64.saturating_sub(done))
    });
    let has_data = r.passed.is_some()
        || r.nvme.is_some()
        || !doc["ata_smart_attributes"].is_null()
        || r.temperature_c.is_some();
    if !has_data {
        return Err(SmartError::Unsupported {
            device: device.to_owned(),
            messages: if r.messages.is_empty() {
                "no SMART data in the output".into()
            } else {
                r.messages.join("; ")
            },
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn capture(name: &str) -> String {
        let path = format!("{}/testdata/smart/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn qemu_nvme_disk() {
        let r = parse("/dev/nvme0", &capture("qemu-nvme.json")).expect("parsed");
        assert_eq!(r.protocol, "NVMe");
        assert_eq!(r.serial, "NVSMART0");
        assert_eq!(r.model, "QEMU NVMe Ctrl");
        assert_eq!(r.passed, Some(true));
        assert_eq!(r.temperature_c, Some(50));
        assert_eq!(r.power_on_hours, Some(0));
        let n = r.nvme.expect("NVMe health log");
        assert_eq!(n.critical_warning, 0);
        assert_eq!(n.media_errors, Some(0));
        assert_eq!(n.percentage_used, Some(0));
        assert!(r.self_tests.is_empty());
    }

    #[test]
    fn qemu_ata_disk_before_and_after_a_short_self_test() {
        let r = parse("/dev/sda", &capture("qemu-ata.json")).expect("parsed");
        assert_eq!(
            (r.protocol.as_str(), r.serial.as_str()),
            ("ATA", "ATASMART0")
        );
        assert_eq!(r.capacity_bytes, Some(64 << 20));
        assert_eq!(r.passed, Some(true));
        assert_eq!(r.temperature_c, Some(31));
        assert_eq!(r.reallocated_sectors, Some(0));
        assert_eq!(r.pending_sectors, None, "qemu's disk has no attribute 197");
        assert!(
            r.failing_attributes.is_empty(),
            "{:?}",
            r.failing_attributes
        );
        assert!(r.self_tests.is_empty());
        // smartctl's exit status 4: some of -x's logs are not implemented by qemu.
        assert_eq!(r.exit_status, 4);
        let after = parse("/dev/sda", &capture("qemu-ata-after-short-test.json")).expect("parsed");
        assert_eq!(
            after.self_tests,
            vec![SelfTest {
                kind: "Short offline".into(),
                status: "Completed without error".into(),
                passed: Some(true),
                power_on_hours: Some(4660),
            }]
        );
    }

    #[test]
    fn devices_without_smart_are_named_errors() {
        let e = parse("/dev/sdz", &capture("missing-device.json")).expect_err("missing");
        assert!(matches!(e, SmartError::OpenFailed { .. }), "{e}");
        assert!(e.to_string().contains("No such device"), "{e}");
        let e = parse("/dev/vda", &capture("virtio-no-smart.json")).expect_err("virtio");
        assert!(matches!(e, SmartError::Unsupported { .. }), "{e}");
        assert!(
            e.to_string().contains("Unable to detect device type"),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_an_error_naming_the_device() {
        for text in ["", "{", "[]", "null", "smartctl 7.3\n=== START"] {
            let e = parse("/dev/sdq", text).expect_err(text);
            assert!(e.to_string().contains("/dev/sdq"), "{e}");
        }
    }

    #[test]
    fn open_failure_is_reported_with_smartctls_words() {
        let text = r#"{"smartctl":{"exit_status":2,"messages":[{"string":"Smartctl open device: /dev/sdz failed: No such device","severity":"error"}]}}"#;
        let e = parse("/dev/sdz", text).expect_err("open failed");
        assert!(matches!(e, SmartError::OpenFailed { .. }));
        assert!(e.to_string().contains("No such device"), "{e}");
    }

    #[test]
    fn absurd_and_mistyped_values_are_absent_not_a_crash() {
        let text = r#"{"smart_status":{"passed":"yes"},"temperature":{"current":1e308},
            "ata_smart_attributes":{"table":[{"id":"5","raw":{"value":-3}},{"id":197,"raw":{"value":18446744073709551615}},7]},
            "nvme_smart_health_information_log":{"critical_warning":"x","media_errors":-1}}"#;
        let r = parse("/dev/sdq", text).expect("parsed");
        assert_eq!(r.passed, None);
        assert_eq!(r.temperature_c, None);
        assert_eq!(r.reallocated_sectors, None);
        assert_eq!(r.pending_sectors, Some(u64::MAX));
        assert_eq!(r.nvme.as_ref().map(|n| n.media_errors), Some(None));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errs(text in ".{0,400}") {
            let _ = parse("/dev/x", &text);
        }

        #[test]
        fn any_json_shape_parses_or_errs(
            keys in proptest::collection::vec("[a-z_]{1,12}", 0..6),
            n in any::<i64>(),
        ) {
            let mut doc = serde_json::Map::new();
            for k in keys {
                doc.insert(k, serde_json::json!({"table": [n, {"id": n}], "passed": n}));
            }
            let _ = parse("/dev/x", &Value::Object(doc).to_string());
        }
    }
}
