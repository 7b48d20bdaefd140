//! The FRU inventory from `ipmitool fru print`: one block per FRU device, opened by
//! `FRU Device Description : NAME (ID n)`, then ` Key : Value` lines (`Chassis Serial`,
//! `Board Part Number`, `Product Manufacturer`, ...), or a line without a colon when the
//! device cannot be read (` Device not present (...)`). ipmitool has no machine-readable FRU
//! listing; this layout has been stable across its versions.

use super::{complete_lines, ParseError};
use crate::model::FruDevice;

const HEADER: &str = "FRU Device Description";

/// Parses `ipmitool fru print` output.
pub fn parse_fru(text: &str) -> Result<Vec<FruDevice>, ParseError> {
    let mut devices: Vec<FruDevice> = Vec::new();
    for (no, line) in complete_lines(text)? {
        let pair = line.split_once(':').map(|(k, v)| (k.trim(), v.trim()));
        if let Some((HEADER, description)) = pair {
            devices.push(device(description));
            continue;
        }
        let Some(current) = devices.last_mut() else {
            return Err(ParseError::new(
                no,
                line,
                "text before the first FRU device",
            ));
        };
        match pair {
            Some(("", _)) => return Err(ParseError::new(no, line, "field without a name")),
            Some((key, value)) => current.fields.push((key.to_string(), value.to_string())),
            None => {
                let note = line.trim();
                current.note = Some(match current.note.take() {
                    Some(before) => format!("{before}; {note}"),
                    None => note.to_string(),
                });
            }
        }
    }
    Ok(devices)
}

/// `Builtin FRU Device (ID 0)` → name `Builtin FRU Device`, ID 0.
fn device(description: &str) -> FruDevice {
    let parsed = description.strip_suffix(')').and_then(|d| {
        let (name, id) = d.rsplit_once("(ID ")?;
        Some((name.trim(), id.trim().parse::<u8>().ok()?))
    });
    let (name, id) = match parsed {
        Some((name, id)) => (name, Some(id)),
        None => (description, None),
    };
    FruDevice {
        name: name.to_string(),
        id,
        fields: Vec::new(),
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURE: &str = include_str!("../../testdata/fru_print.txt");

    #[test]
    fn captured_inventory() {
        let all = parse_fru(CAPTURE).expect("parses");
        let main = &all[0];
        assert_eq!(
            (main.name.as_str(), main.id),
            ("Builtin FRU Device", Some(0))
        );
        assert_eq!(main.chassis_serial(), Some("TV-CHS-0001"));
        assert_eq!(main.board_serial(), Some("TV-BRD-0002"));
        assert_eq!(main.product_serial(), Some("TV-PRD-0003"));
        assert_eq!(main.get("Product Manufacturer"), Some("Tiervault"));
        // A value holding colons keeps them.
        assert!(
            main.get("Board Mfg Date").is_some_and(|d| d.contains(':')),
            "{main:?}"
        );
        let psu = all.iter().find(|d| d.name == "PSU1_FRU").expect("PSU FRU");
        assert_eq!((psu.id, psu.board_serial()), (Some(1), Some("TV-PSU-0004")));
        let empty = all
            .iter()
            .find(|d| d.name == "PSU2_FRU")
            .expect("empty bay FRU");
        assert!(empty.fields.is_empty());
        assert!(
            empty
                .note
                .as_deref()
                .is_some_and(|n| n.contains("not present")),
            "{empty:?}"
        );
    }

    #[test]
    fn odd_headers_and_garbage() {
        let all = parse_fru("FRU Device Description : Something odd\n Key : v\n").expect("parses");
        assert_eq!((all[0].name.as_str(), all[0].id), ("Something odd", None));
        assert!(parse_fru(" Chassis Serial : X\n").is_err());
        assert!(parse_fru("FRU Device Description : A (ID 0)\n : value\n").is_err());
        assert!(parse_fru("FRU Device Description : A (ID 0)\n Chassis Ser").is_err());
        assert!(parse_fru("").expect("empty").is_empty());
    }
}
