//! `ipmitool chassis status`: eleven `Key : value` lines, one per field of the Get Chassis
//! Status answer. All eleven are required: a listing missing `Cooling/Fan Fault` must not read
//! as "no fan fault". Newer ipmitool versions add lines (front-panel button states); those
//! are ignored.

use super::{complete_lines, ParseError};
use crate::model::ChassisStatus;

const KEYS: [&str; 11] = [
    "System Power",
    "Power Overload",
    "Power Interlock",
    "Main Power Fault",
    "Power Control Fault",
    "Power Restore Policy",
    "Last Power Event",
    "Chassis Intrusion",
    "Front-Panel Lockout",
    "Drive Fault",
    "Cooling/Fan Fault",
];

/// Parses `ipmitool chassis status` output.
pub fn parse_chassis(text: &str) -> Result<ChassisStatus, ParseError> {
    let mut values: [Option<(usize, &str, &str)>; 11] = [None; 11];
    for (no, line) in complete_lines(text)? {
        let Some((key, value)) = line.split_once(':') else {
            return Err(ParseError::new(no, line, "not a `Key : value` line"));
        };
        let Some(slot) = KEYS.iter().position(|k| k.eq_ignore_ascii_case(key.trim())) else {
            continue;
        };
        if values[slot].is_some() {
            return Err(ParseError::new(no, line, "field repeated"));
        }
        values[slot] = Some((no, line, value.trim()));
    }
    let mut flags = [false; 11];
    let mut texts = [String::new(), String::new()];
    for (slot, key) in KEYS.iter().enumerate() {
        let Some((no, line, value)) = values[slot] else {
            return Err(ParseError::new(0, "", format!("no `{key}` line")));
        };
        match slot {
            5 => texts[0] = value.to_string(),
            6 => texts[1] = value.to_string(),
            _ => {
                flags[slot] = match value.to_ascii_lowercase().as_str() {
                    "on" | "true" | "active" => true,
                    "off" | "false" | "inactive" => false,
                    _ => {
                        return Err(ParseError::new(
                            no,
                            line,
                            "not on/off, true/false or active/inactive",
                        ))
                    }
                }
            }
        }
    }
    let [policy, last_event] = texts;
    Ok(ChassisStatus {
        power_on: flags[0],
        power_overload: flags[1],
        power_interlock: flags[2],
        main_power_fault: flags[3],
        power_control_fault: flags[4],
        power_restore_policy: policy,
        last_power_event: last_event,
        intrusion: flags[7],
        front_panel_lockout: flags[8],
        drive_fault: flags[9],
        fan_fault: flags[10],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_power_on_and_off() {
        let on = parse_chassis(include_str!("../../testdata/chassis_status.on.txt")).expect("on");
        assert!(on.power_on);
        assert!(!(on.fan_fault || on.drive_fault || on.intrusion || on.main_power_fault));
        assert_eq!(on.power_restore_policy, "always-off");
        let off =
            parse_chassis(include_str!("../../testdata/chassis_status.off.txt")).expect("off");
        assert!(!off.power_on);
    }

    #[test]
    fn hand_made_faults() {
        // ipmi_sim always answers zero fault bits; this file is what ipmitool prints for
        // a chassis with every fault set (its ipmi_chassis_status, bit by bit).
        let s = parse_chassis(include_str!(
            "../../testdata/handmade/chassis_status.faults.txt"
        ))
        .expect("faults");
        assert!(s.power_on && s.power_overload && s.main_power_fault && s.power_control_fault);
        assert!(s.intrusion && s.drive_fault && s.fan_fault && s.front_panel_lockout);
        assert_eq!(s.last_power_event, "ac-failed fault");
    }

    #[test]
    fn garbage_and_missing_fields() {
        let good = include_str!("../../testdata/chassis_status.on.txt");
        let without_fan: String = good
            .lines()
            .filter(|l| !l.starts_with("Cooling"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = parse_chassis(&without_fan).expect_err("missing");
        assert!(err.reason.contains("Cooling/Fan Fault"), "{err}");
        assert!(parse_chassis(
            &good.replace("Drive Fault          : false", "Drive Fault : maybe")
        )
        .is_err());
        assert!(parse_chassis(&format!("{good}garbage\n")).is_err());
        assert!(parse_chassis(&format!("{good}System Power : on\n")).is_err());
        assert!(parse_chassis(&good[..good.len() - 3]).is_err());
        let newer = format!("{good}Sleep Button Disable : not allowed\n");
        assert!(parse_chassis(&newer).is_ok());
    }
}
