//! The hand-made damaged outputs in testdata/handmade/: each is refused naming its line, or
//! read with the implausible values flagged.

use tiervault_ipmi::parse::{chassis, fru, sel, sensor};
use tiervault_ipmi::SensorStatus;

fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/handmade")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_truncated_sensor_list_is_refused_at_its_last_line() {
    let err = sensor::parse_sensor_list(&data("sensor_list.truncated.txt")).expect_err("cut");
    assert_eq!(err.line_no, 4, "{err}");
    assert!(
        err.line.starts_with("FAN2") && err.reason.contains("truncated"),
        "{err}"
    );
}

#[test]
fn a_row_with_missing_columns_is_refused() {
    let err = sensor::parse_sensor_list(&data("sensor_list.columns.txt")).expect_err("columns");
    assert_eq!(err.line_no, 2, "{err}");
    assert!(err.reason.contains("10 columns"), "{err}");
}

#[test]
fn absurd_numbers_unknown_units_and_status_words_are_flagged() {
    let all = sensor::parse_sensor_list(&data("sensor_list.absurd.txt")).expect("parses");
    let by = |name: &str| all.iter().find(|s| s.name == name).expect(name);
    for name in ["CPU_Temp", "Inlet_Temp"] {
        let s = by(name);
        assert_eq!(s.value, None, "{s:?}");
        assert!(s.anomaly.is_some(), "{s:?}");
        // The thresholds, which are fine, survive.
        assert!(s.thresholds.ucr.is_some(), "{s:?}");
    }
    let fan = by("FAN1");
    assert_eq!(
        (fan.value, fan.thresholds.lnr, fan.thresholds.lcr),
        (Some(4800.0), None, Some(500.0))
    );
    assert!(
        fan.anomaly.as_deref().is_some_and(|a| a.contains("-inf")),
        "{fan:?}"
    );
    let flux = by("Flux");
    assert_eq!(
        (flux.kind, flux.anomaly.as_deref()),
        (tiervault_ipmi::SensorKind::Other, None)
    );
    let fan2 = by("FAN2");
    assert_eq!(fan2.status, SensorStatus::NotAvailable);
    assert!(
        fan2.anomaly.as_deref().is_some_and(|a| a.contains("zz")),
        "{fan2:?}"
    );
    // A raw (unconverted) reading and ipmitool's unformatted hex thresholds: no numbers.
    let raw = by("P3V3");
    assert_eq!(
        (raw.value, raw.thresholds.lnr, raw.thresholds.lcr),
        (None, None, None)
    );
}

#[test]
fn sel_garbage_is_refused() {
    let err = sel::parse_sel(&data("sel_elist.direction.txt")).expect_err("direction");
    assert_eq!(err.line_no, 2, "{err}");
    let err = sel::parse_sel(&data("sel_elist.id.txt")).expect_err("id");
    assert!(err.line.contains("g1"), "{err}");
}

#[test]
fn fru_text_before_any_device_is_refused() {
    let err = fru::parse_fru(&data("fru_print.preamble.txt")).expect_err("preamble");
    assert_eq!(err.line_no, 1, "{err}");
}

#[test]
fn chassis_faults_and_a_truncated_status() {
    let s = chassis::parse_chassis(&data("chassis_status.faults.txt")).expect("faults");
    assert!(s.fan_fault && s.drive_fault && s.intrusion && s.main_power_fault);
    assert_eq!(s.power_restore_policy, "previous");
    let err = chassis::parse_chassis(&data("chassis_status.truncated.txt")).expect_err("cut");
    assert!(err.reason.contains("Front-Panel Lockout"), "{err}");
}
