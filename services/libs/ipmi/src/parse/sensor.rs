//! Sensors from two ipmitool listings.
//!
//! `ipmitool sensor list` is the backbone: one line per sensor, always ten `|`-separated
//! columns (name, reading, unit, status, then lnr lcr lnc unc ucr unr with `na` for a missing
//! threshold), the same layout since ipmitool 1.8.0. A damaged line is therefore recognisable
//! and nothing else is disturbed by it. Its thresholds come from Get Sensor Thresholds (what
//! the BMC enforces), not from the SDR defaults that `-v` listings print. What it lacks: a
//! discrete sensor's state is only a hex mask (`0x0300`), and there is no sensor type.
//!
//! `ipmitool sdr elist` fills that in: five columns (name, number, status, entity, reading),
//! where a discrete sensor's reading is the list of its asserted states by name (`Presence
//! detected, Failure detected`), and the entity (`10.1`: power supply 1) says what a sensor
//! without a unit belongs to. The verbose `sensor list -v` would give everything at once but
//! as multi-line blocks whose labels have changed between ipmitool versions.

use std::collections::{HashMap, VecDeque};

use super::{columns, complete_lines, number, Number, ParseError};
use crate::model::{Sensor, SensorKind, SensorStatus, Thresholds};

/// One line of `sdr elist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdrRow {
    pub name: String,
    pub number: u8,
    /// `ok`, `ns` (no reading), or a threshold name (`lcr`, `unr`, ...).
    pub status: String,
    /// Entity ID and instance (`10.1` is power supply 1).
    pub entity: (u8, u8),
    /// The reading (`45 degrees C`) or, for a discrete sensor, its asserted states.
    pub reading: String,
}

/// Parses `ipmitool sensor list`. Kinds come from the unit alone here; [`merge`] refines them.
pub fn parse_sensor_list(text: &str) -> Result<Vec<Sensor>, ParseError> {
    complete_lines(text)?
        .into_iter()
        .map(|(no, line)| sensor_row(no, line))
        .collect()
}

fn sensor_row(no: usize, line: &str) -> Result<Sensor, ParseError> {
    let cols = columns(line);
    if cols.len() != 10 {
        let why = format!("expected 10 columns, found {}", cols.len());
        return Err(ParseError::new(no, line, why));
    }
    let name = cols[0];
    if name.is_empty() {
        return Err(ParseError::new(no, line, "no sensor name"));
    }
    let mut anomalies = Vec::new();
    let value = if let Some(hex) = cols[1].strip_prefix("0x") {
        // A raw reading without conversion (discrete sensors): the state is in the status.
        u32::from_str_radix(hex.trim(), 16)
            .map_err(|_| ParseError::new(no, line, "raw reading is not hex"))?;
        None
    } else {
        match number(cols[1]) {
            Number::Absent => None,
            Number::Value(v) => Some(v),
            Number::Implausible(why) => {
                anomalies.push(format!("reading {why}"));
                None
            }
            Number::Unreadable => return Err(ParseError::new(no, line, "reading is not a number")),
        }
    };
    let unit = cols[2].to_string();
    let status = match status_word(cols[3]) {
        Some(status) => status,
        None if cols[3].starts_with("0x") => discrete_bits(cols[3])
            .map(|bits| SensorStatus::Discrete {
                bits,
                states: Vec::new(),
            })
            .ok_or_else(|| ParseError::new(no, line, "discrete state is not a 16-bit hex mask"))?,
        None => {
            anomalies.push(format!("unknown status {:?}", cols[3]));
            SensorStatus::NotAvailable
        }
    };
    let mut limits = [None; 6];
    for (slot, token) in limits.iter_mut().zip(&cols[4..10]) {
        *slot = match number(token) {
            Number::Absent => None,
            Number::Value(v) => Some(v),
            Number::Implausible(why) => {
                anomalies.push(format!("threshold {why}"));
                None
            }
            // Thresholds of sensors without analog units print as hex, and some ipmitool
            // versions print the literal format string "0x-8x" there: not usable as a limit.
            Number::Unreadable if token.starts_with("0x") => None,
            Number::Unreadable => {
                return Err(ParseError::new(no, line, "threshold is not a number"))
            }
        };
    }
    let [lnr, lcr, lnc, unc, ucr, unr] = limits;
    Ok(Sensor {
        name: name.to_string(),
        kind: kind_from_unit(&unit).unwrap_or(SensorKind::Other),
        value,
        unit,
        status,
        thresholds: Thresholds {
            lnr,
            lcr,
            lnc,
            unc,
            ucr,
            unr,
        },
        anomaly: (!anomalies.is_empty()).then(|| anomalies.join("; ")),
    })
}

/// ipmitool's threshold status words. `sdr` listings name the threshold (`lcr`), `sensor`
/// listings only its severity (`cr`); both are accepted.
fn status_word(word: &str) -> Option<SensorStatus> {
    Some(match word.to_ascii_lowercase().as_str() {
        "ok" => SensorStatus::Ok,
        "nc" | "lnc" | "unc" => SensorStatus::NonCritical,
        "cr" | "lcr" | "ucr" => SensorStatus::Critical,
        "nr" | "lnr" | "unr" => SensorStatus::NonRecoverable,
        "na" | "ns" => SensorStatus::NotAvailable,
        _ => return None,
    })
}

/// `0xAABB` as ipmitool prints a discrete state: AA holds states 0-7, BB states 8-14.
fn discrete_bits(token: &str) -> Option<u16> {
    let hex = token.strip_prefix("0x")?;
    if hex.is_empty() || hex.len() > 4 {
        return None;
    }
    let raw = u16::from_str_radix(hex, 16).ok()?;
    Some((raw >> 8) | ((raw & 0xff) << 8))
}

/// The kind a unit implies; `None` when there is no unit to go by.
fn kind_from_unit(unit: &str) -> Option<SensorKind> {
    let unit = unit.to_ascii_lowercase();
    Some(match unit.as_str() {
        "" | "discrete" => return None,
        u if u.starts_with("degrees") => SensorKind::Temperature,
        "rpm" => SensorKind::Fan,
        "volts" => SensorKind::Voltage,
        "amps" => SensorKind::Current,
        "watts" => SensorKind::Power,
        _ => SensorKind::Other,
    })
}

/// The kind an entity implies (IPMI entity IDs): power supplies and power modules, fans and
/// cooling units.
fn kind_from_entity(entity: u8) -> Option<SensorKind> {
    match entity {
        0x0a | 0x14 => Some(SensorKind::PowerSupply),
        0x1d | 0x1e => Some(SensorKind::Fan),
        _ => None,
    }
}

/// Parses `ipmitool sdr elist`.
pub fn parse_sdr_elist(text: &str) -> Result<Vec<SdrRow>, ParseError> {
    complete_lines(text)?
        .into_iter()
        .map(|(no, line)| sdr_row(no, line))
        .collect()
}

fn sdr_row(no: usize, line: &str) -> Result<SdrRow, ParseError> {
    let cols: Vec<&str> = line.splitn(5, '|').map(str::trim).collect();
    let [name, number, status, entity, reading] = cols[..] else {
        let why = format!("expected 5 columns, found {}", cols.len());
        return Err(ParseError::new(no, line, why));
    };
    if name.is_empty() {
        return Err(ParseError::new(no, line, "no sensor name"));
    }
    let number = number
        .strip_suffix('h')
        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        .ok_or_else(|| ParseError::new(no, line, "sensor number is not NNh"))?;
    let entity = entity
        .split_once('.')
        .and_then(|(id, inst)| Some((id.trim().parse().ok()?, inst.trim().parse().ok()?)))
        .ok_or_else(|| ParseError::new(no, line, "entity is not ID.instance"))?;
    Ok(SdrRow {
        name: name.to_string(),
        number,
        status: status.to_string(),
        entity,
        reading: reading.to_string(),
    })
}

/// Completes `sensor list` rows with what `sdr elist` knows: the names of asserted discrete
/// states, and a kind from the entity where the unit gave none. Rows are paired by name in
/// order, since both listings walk the SDR repository in the same order and names repeat on
/// some BMCs.
pub fn merge(mut sensors: Vec<Sensor>, sdr: Vec<SdrRow>) -> Vec<Sensor> {
    let mut by_name: HashMap<String, VecDeque<SdrRow>> = HashMap::new();
    for row in sdr {
        by_name.entry(row.name.clone()).or_default().push_back(row);
    }
    for sensor in &mut sensors {
        let Some(row) = by_name.get_mut(&sensor.name).and_then(VecDeque::pop_front) else {
            continue;
        };
        if kind_from_unit(&sensor.unit).is_none() {
            sensor.kind = kind_from_entity(row.entity.0).unwrap_or(SensorKind::Other);
        }
        if let SensorStatus::Discrete { states, .. } = &mut sensor.status {
            if !row.status.eq_ignore_ascii_case("ns") {
                *states = row
                    .reading
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
            }
        }
    }
    sensors
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_OK: &str = include_str!("../../testdata/sensor_list.ok.txt");
    const SDR_OK: &str = include_str!("../../testdata/sdr_elist.ok.txt");
    const LIST_FAULT: &str = include_str!("../../testdata/sensor_list.fault.txt");
    const SDR_FAULT: &str = include_str!("../../testdata/sdr_elist.fault.txt");

    fn sensors(list: &str, sdr: &str) -> Vec<Sensor> {
        merge(
            parse_sensor_list(list).expect("sensor list parses"),
            parse_sdr_elist(sdr).expect("sdr elist parses"),
        )
    }

    fn find<'a>(all: &'a [Sensor], name: &str) -> &'a Sensor {
        all.iter().find(|s| s.name == name).expect(name)
    }

    #[test]
    fn captured_nominal_readings() {
        let all = sensors(LIST_OK, SDR_OK);
        assert!(all.iter().all(|s| s.anomaly.is_none()), "{all:#?}");
        let cpu = find(&all, "CPU_Temp");
        assert_eq!(cpu.kind, SensorKind::Temperature);
        assert_eq!((cpu.value, cpu.unit.as_str()), (Some(45.0), "degrees C"));
        assert_eq!(cpu.status, SensorStatus::Ok);
        assert_eq!(
            cpu.thresholds,
            Thresholds {
                unc: Some(75.0),
                ucr: Some(85.0),
                unr: Some(95.0),
                ..Thresholds::default()
            }
        );
        let fan = find(&all, "FAN1");
        assert_eq!((fan.kind, fan.value), (SensorKind::Fan, Some(4800.0)));
        assert_eq!(
            (fan.thresholds.lnr, fan.thresholds.lcr, fan.thresholds.lnc),
            (Some(200.0), Some(500.0), Some(1000.0))
        );
        assert_eq!(fan.thresholds.ucr, None);
        let volts = find(&all, "P12V");
        assert_eq!((volts.kind, volts.value), (SensorKind::Voltage, Some(12.0)));
        assert_eq!(volts.thresholds.lcr, Some(10.8));
        assert_eq!(find(&all, "PSU1_Current").kind, SensorKind::Current);
        assert_eq!(find(&all, "PSU1_Power").kind, SensorKind::Power);
        let psu = find(&all, "PSU1_Status");
        assert_eq!(psu.kind, SensorKind::PowerSupply);
        assert_eq!(
            psu.status,
            SensorStatus::Discrete {
                bits: 0x0001,
                states: vec!["Presence detected".into()]
            }
        );
        assert!(!psu.has_state("failure detected"));
        // An empty bay: in the SDRs, no reading, no unit; its entity still says what it is.
        let absent = find(&all, "PSU2_Power");
        assert_eq!((absent.value, absent.unit.as_str()), (None, ""));
        assert_eq!(absent.status, SensorStatus::NotAvailable);
        assert_eq!(absent.kind, SensorKind::PowerSupply);
        assert_eq!(absent.thresholds.ucr, Some(900.0));
    }

    #[test]
    fn captured_fault_state() {
        let all = sensors(LIST_FAULT, SDR_FAULT);
        let cpu = find(&all, "CPU_Temp");
        assert_eq!(
            (cpu.value, &cpu.status),
            (Some(90.0), &SensorStatus::Critical)
        );
        let fan1 = find(&all, "FAN1");
        assert_eq!(
            (fan1.value, &fan1.status),
            (Some(300.0), &SensorStatus::Critical)
        );
        let fan2 = find(&all, "FAN2");
        assert_eq!(
            (fan2.value, &fan2.status),
            (Some(0.0), &SensorStatus::NonRecoverable)
        );
        let psu = find(&all, "PSU1_Status");
        assert!(psu.has_state("Failure detected"), "{psu:?}");
        assert!(matches!(
            psu.status,
            SensorStatus::Discrete { bits: 0x0003, .. }
        ));
        assert_eq!(find(&all, "Inlet_Temp").status, SensorStatus::Ok);
    }

    #[test]
    fn discrete_mask_byte_order() {
        // data2 (states 0-7) is printed first, data3 (states 8-14) second.
        assert_eq!(discrete_bits("0x0100"), Some(0x0001));
        assert_eq!(discrete_bits("0x0300"), Some(0x0003));
        assert_eq!(discrete_bits("0x0001"), Some(0x0100));
        assert_eq!(discrete_bits("0x12345"), None);
        assert_eq!(discrete_bits("0xzz"), None);
    }

    #[test]
    fn implausible_numbers_are_flagged_not_trusted() {
        let text = "T1 | NaN | degrees C | ok | na | na | na | 1e308 | 85.000 | inf\n";
        let all = parse_sensor_list(text).expect("parses");
        let t = &all[0];
        assert_eq!(t.value, None);
        assert_eq!(
            (t.thresholds.unc, t.thresholds.ucr, t.thresholds.unr),
            (None, Some(85.0), None)
        );
        let why = t.anomaly.as_deref().expect("flagged");
        assert!(
            why.contains("NaN") && why.contains("1e308") && why.contains("inf"),
            "{why}"
        );
    }

    #[test]
    fn unknown_units_and_status_words_keep_the_row() {
        let text = "Airflow | 42.000 | CFM | ok | na | na | na | na | na | na\n\
                    Odd | 1.000 | Volts | weird | na | na | na | na | na | na\n";
        let all = parse_sensor_list(text).expect("parses");
        assert_eq!(all[0].kind, SensorKind::Other);
        assert_eq!(all[1].status, SensorStatus::NotAvailable);
        assert!(all[1]
            .anomaly
            .as_deref()
            .is_some_and(|a| a.contains("weird")));
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        for (text, line_no) in [
            ("CPU_Temp | 45.000 | degrees C | ok\n", 1),
            ("A | 1 | Volts | ok | na | na | na | na | na | na\nB | x1 | Volts | ok | na | na | na | na | na | na\n", 2),
            ("A | 1 | Volts | ok | na | na | na | na | na | high\n", 1),
            ("A | 0xzz | discrete | 0x0100 | na | na | na | na | na | na\n", 1),
            ("A | 0x1 | discrete | 0x0100zz | na | na | na | na | na | na\n", 1),
            (" | 1 | Volts | ok | na | na | na | na | na | na\n", 1),
            ("CPU_Temp | 45.000 | degrees C | ok | na | na | na | 75.000 | 85.0", 1),
        ] {
            let err = parse_sensor_list(text).expect_err(text);
            assert_eq!(err.line_no, line_no, "{text:?}: {err}");
        }
        assert!(parse_sdr_elist("CPU_Temp | 01h | ok\n").is_err());
        assert!(parse_sdr_elist("CPU_Temp | 1 | ok | 7.1 | 45 degrees C\n").is_err());
        assert!(parse_sdr_elist("CPU_Temp | 01h | ok | seven | 45 degrees C\n").is_err());
    }

    #[test]
    fn duplicate_names_pair_in_order() {
        let list = "Temp | 40.000 | degrees C | ok | na | na | na | na | na | na\n\
                    Temp | 0x1 | discrete | 0x0200 | na | na | na | na | na | na\n";
        let sdr =
            "Temp | 01h | ok | 3.1 | 40 degrees C\nTemp | 02h | ok | 10.2 | Failure detected\n";
        let all = sensors(list, sdr);
        assert_eq!(all[0].kind, SensorKind::Temperature);
        assert_eq!(all[1].kind, SensorKind::PowerSupply);
        assert!(all[1].has_state("Failure detected"));
    }
}
