//! The System Event Log from `ipmitool sel elist`.
//!
//! `elist` rather than `list`: the same `|`-separated layout, but sensors are named from the
//! SDRs (`Fan FAN1`, not `Fan #0x03`) and threshold events carry the reading and the
//! threshold. Both are accepted. The layouts, from ipmitool's `ipmi_sel_print_std_entry`:
//!
//! ```text
//!    a | 11/23/26 | 08:37:15 UTC | Fan FAN1 | Lower Critical going low  | Asserted | Reading 300 < Threshold 500 RPM
//!    1 |  Pre-Init  |0000061862| Power Supply PSU1_Status | Presence detected | Asserted
//!    2 |  Pre-Init  |0000062260| OEM record c0 | 000157 | 010203040506
//!    3 | OEM record e0 | 0102030405060708090a0b0c0d
//!    4 | Linux kernel panic: ...
//! ```
//!
//! Record IDs are hex. Dates are `%x` in the C locale (`MM/DD/YY`) and times carry the zone
//! name; [`crate::IpmiTool`] runs ipmitool with `TZ=UTC` and `LC_ALL=C` so that they can be
//! turned into Unix time here without a time-zone database.

use super::{columns, complete_lines, ParseError};
use crate::model::{EventDirection, SelEntry};

/// Parses `ipmitool sel elist` (or `sel list`) output. Empty output is an empty log (ipmitool
/// says "SEL has no entries" on stderr).
pub fn parse_sel(text: &str) -> Result<Vec<SelEntry>, ParseError> {
    complete_lines(text)?
        .into_iter()
        .map(|(no, line)| entry(no, line))
        .collect()
}

fn entry(no: usize, line: &str) -> Result<SelEntry, ParseError> {
    let cols = columns(line);
    let err = |why: &str| ParseError::new(no, line, why);
    if cols.len() < 2 {
        return Err(err("expected at least 2 columns"));
    }
    let id = u16::from_str_radix(cols[0], 16).map_err(|_| err("record ID is not hex"))?;
    let untimed = |sensor: &str, event: String| SelEntry {
        id,
        timestamp: String::new(),
        unix_time: None,
        sensor: sensor.to_string(),
        sensor_type: None,
        sensor_name: None,
        event,
        direction: None,
        detail: None,
    };
    if let Some(panic) = cols[1].strip_prefix("Linux kernel panic") {
        let text = cols[1..].join(" | ");
        let event = panic.trim_start_matches(':').trim().to_string();
        return Ok(untimed(
            "Linux kernel panic",
            if event.is_empty() { text } else { event },
        ));
    }
    if cols[1].starts_with("OEM record") {
        return Ok(untimed(cols[1], cols[2..].join(" | ")));
    }
    if cols.len() < 4 {
        return Err(err("expected at least 4 columns"));
    }
    let (timestamp, unix_time) = if cols[1].eq_ignore_ascii_case("Pre-Init") {
        // Logged before the BMC's clock was set: seconds since the BMC started, not a date.
        (format!("Pre-Init {}", cols[2]), None)
    } else {
        (
            format!("{} {}", cols[1], cols[2]),
            unix_time(cols[1], cols[2]),
        )
    };
    let sensor = cols[3];
    if sensor.starts_with("OEM record") {
        let mut e = untimed(sensor, cols[4..].join(" | "));
        e.timestamp = timestamp;
        e.unix_time = unix_time;
        return Ok(e);
    }
    if cols.len() < 6 {
        return Err(err("expected at least 6 columns"));
    }
    let direction = match cols[5] {
        d if d.eq_ignore_ascii_case("Asserted") => EventDirection::Asserted,
        d if d.eq_ignore_ascii_case("Deasserted") => EventDirection::Deasserted,
        _ => return Err(err("direction is neither Asserted nor Deasserted")),
    };
    let (sensor_type, sensor_name) = split_sensor(sensor);
    Ok(SelEntry {
        id,
        timestamp,
        unix_time,
        sensor: sensor.to_string(),
        sensor_type,
        sensor_name,
        event: cols[4].to_string(),
        direction: Some(direction),
        detail: (cols.len() > 6).then(|| cols[6..].join(" | ")),
    })
}

/// IPMI sensor type names as ipmitool prints them (its `sensor_type_desc` table).
const SENSOR_TYPES: &[&str] = &[
    "Temperature",
    "Voltage",
    "Current",
    "Fan",
    "Physical Security",
    "Platform Security",
    "Processor",
    "Power Supply",
    "Power Unit",
    "Cooling Device",
    "Other",
    "Memory",
    "Drive Slot / Bay",
    "POST Memory Resize",
    "System Firmwares",
    "System Firmware Progress",
    "Event Logging Disabled",
    "Watchdog1",
    "Watchdog 1",
    "System Event",
    "Critical Interrupt",
    "Button",
    "Module / Board",
    "Microcontroller",
    "Add-in Card",
    "Chassis",
    "Chip Set",
    "Other FRU",
    "Cable / Interconnect",
    "Terminator",
    "System Boot Initiated",
    "Boot Error",
    "OS Boot",
    "OS Critical Stop",
    "Slot / Connector",
    "System ACPI Power State",
    "Watchdog2",
    "Watchdog 2",
    "Platform Alert",
    "Entity Presence",
    "Monitor ASIC",
    "LAN",
    "Management Subsys Health",
    "Management Subsystem Health",
    "Battery",
    "Session Audit",
    "Version Change",
    "FRU State",
];

/// `Power Supply PSU1_Status` → (`Power Supply`, `PSU1_Status`): the longest known type name
/// that the column starts with, followed by a space or nothing.
fn split_sensor(sensor: &str) -> (Option<String>, Option<String>) {
    let best = SENSOR_TYPES
        .iter()
        .filter(|t| {
            sensor.len() >= t.len()
                && sensor.is_char_boundary(t.len())
                && sensor[..t.len()].eq_ignore_ascii_case(t)
                && (sensor.len() == t.len() || sensor[t.len()..].starts_with(' '))
        })
        .max_by_key(|t| t.len());
    match best {
        Some(t) => {
            let rest = sensor[t.len()..].trim();
            (
                Some(sensor[..t.len()].to_string()),
                (!rest.is_empty()).then(|| rest.to_string()),
            )
        }
        None => (None, None),
    }
}

/// `MM/DD/YY` (or `MM/DD/YYYY`) and `HH:MM:SS` with an optional `UTC`/`GMT` zone, as Unix
/// time. Any other zone gives `None`: its offset is unknown here.
pub fn unix_time(date: &str, time: &str) -> Option<i64> {
    let mut d = date.split('/');
    let (month, day, year) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() {
        return None;
    }
    let (month, day): (u32, u32) = (digits(month, 1, 2)?, digits(day, 1, 2)?);
    let year: i64 = match year.len() {
        // %y: POSIX maps 69-99 to the 1900s, 00-68 to the 2000s.
        2 => digits::<i64>(year, 2, 2).map(|y| if y >= 69 { 1900 + y } else { 2000 + y })?,
        4 => digits(year, 4, 4)?,
        _ => return None,
    };
    let mut t = time.split_whitespace();
    let clock = t.next()?;
    match t.next() {
        None => {}
        Some(zone) if zone.eq_ignore_ascii_case("UTC") || zone.eq_ignore_ascii_case("GMT") => {}
        Some(_) => return None,
    }
    if t.next().is_some() {
        return None;
    }
    let mut c = clock.split(':');
    let (h, m, s): (i64, i64, i64) = (
        digits(c.next()?, 2, 2)?,
        digits(c.next()?, 2, 2)?,
        digits(c.next()?, 2, 2)?,
    );
    if c.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

fn digits<T: std::str::FromStr>(text: &str, min: usize, max: usize) -> Option<T> {
    let ok = (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| text.parse().ok()).flatten()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELIST: &str = include_str!("../../testdata/sel_elist.fault.txt");
    const LIST: &str = include_str!("../../testdata/sel_list.fault.txt");

    #[test]
    fn captured_elist() {
        let all = parse_sel(ELIST).expect("parses");
        assert!(all.len() >= 10, "{all:#?}");
        // The PSU's presence, logged as the simulator started, before its clock was set.
        let first = &all[0];
        assert_eq!(first.id, 1);
        assert!(first.timestamp.starts_with("Pre-Init "), "{first:?}");
        assert_eq!(first.unix_time, None);
        assert_eq!(first.sensor_type.as_deref(), Some("Power Supply"));
        assert_eq!(first.sensor_name.as_deref(), Some("PSU1_Status"));
        assert_eq!(first.event, "Presence detected");
        assert_eq!(first.direction, Some(EventDirection::Asserted));
        let fan = all
            .iter()
            .find(|e| e.sensor == "Fan FAN1" && e.event == "Lower Critical going low")
            .expect("fan event");
        assert_eq!(fan.direction, Some(EventDirection::Asserted));
        assert_eq!(
            fan.detail.as_deref(),
            Some("Reading 300 < Threshold 500 RPM")
        );
        assert!(fan.unix_time.is_some_and(|t| t > 1_700_000_000), "{fan:?}");
        assert!(all
            .iter()
            .any(|e| e.sensor_name.as_deref() == Some("PSU1_Status")
                && e.event == "Failure detected"
                && e.direction == Some(EventDirection::Deasserted)));
        let oem: Vec<_> = all
            .iter()
            .filter(|e| e.sensor.starts_with("OEM record"))
            .collect();
        assert_eq!(oem.len(), 2, "{oem:#?}");
        assert!(oem.iter().all(|e| e.direction.is_none()));
        // Record IDs are hex: the eleventh record is "b".
        let ids: Vec<u16> = all.iter().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(ids.contains(&0x0b));
    }

    #[test]
    fn captured_plain_list_names_sensors_by_number() {
        let all = parse_sel(LIST).expect("parses");
        let fan = all
            .iter()
            .find(|e| e.sensor == "Fan #0x03")
            .expect("fan by number");
        assert_eq!(fan.sensor_type.as_deref(), Some("Fan"));
        assert_eq!(fan.sensor_name.as_deref(), Some("#0x03"));
        assert_eq!(fan.detail, None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(unix_time("01/01/70", "00:00:00 UTC"), Some(0));
        assert_eq!(unix_time("11/23/26", "08:37:15 UTC"), Some(1_795_423_035));
        assert_eq!(unix_time("11/23/2026", "08:37:15"), Some(1_795_423_035));
        assert_eq!(unix_time("02/29/24", "12:00:00 GMT"), Some(1_709_208_000));
        assert_eq!(unix_time("02/29/23", "12:00:00"), None);
        assert_eq!(unix_time("11/23/26", "09:37:15 CET"), None);
        assert_eq!(unix_time("13/01/26", "00:00:00"), None);
        assert_eq!(unix_time("11/23/26", "24:00:00"), None);
        assert_eq!(unix_time("Pre-Init", "0000061862"), None);
        assert_eq!(unix_time("1/2/3/4", "00:00:00"), None);
    }

    #[test]
    fn sensor_types_split_on_the_longest_known_name() {
        assert_eq!(
            split_sensor("Power Supply PSU1_Status"),
            (Some("Power Supply".into()), Some("PSU1_Status".into()))
        );
        assert_eq!(
            split_sensor("Power Unit"),
            (Some("Power Unit".into()), None)
        );
        assert_eq!(split_sensor("Fanatic X"), (None, None));
        assert_eq!(
            split_sensor("Other FRU x"),
            (Some("Other FRU".into()), Some("x".into()))
        );
    }

    #[test]
    fn other_record_layouts() {
        let text = "   5 | Linux kernel panic: Fatal excep\n  6 | OEM record e0 | 0102\n";
        let all = parse_sel(text).expect("parses");
        assert_eq!(all[0].sensor, "Linux kernel panic");
        assert_eq!(all[0].event, "Fatal excep");
        assert_eq!((all[1].id, all[1].event.as_str()), (6, "0102"));
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        for text in [
            "zz | 11/23/26 | 08:37:15 UTC | Fan FAN1 | Lower Critical going low | Asserted\n",
            "   1\n",
            "   1 | 11/23/26 | 08:37:15 UTC\n",
            "   1 | 11/23/26 | 08:37:15 UTC | Fan FAN1 | Lower Critical going low\n",
            "   1 | 11/23/26 | 08:37:15 UTC | Fan FAN1 | Lower Critical going low | Sideways\n",
            "   1 | 11/23/26 | 08:37:15 UTC | Fan FAN1 | Lower Crit",
            "10000 | 11/23/26 | 08:37:15 UTC | Fan FAN1 | x | Asserted\n",
        ] {
            assert!(parse_sel(text).is_err(), "{text:?}");
        }
        // A date that is not one is kept as text: the event still matters.
        let odd = parse_sel("   1 | Unspecified | Unspecified | Fan FAN1 | x | Asserted\n")
            .expect("parses");
        assert_eq!(
            (odd[0].timestamp.as_str(), odd[0].unix_time),
            ("Unspecified Unspecified", None)
        );
    }
}
