//! No input makes a parser panic: arbitrary lines, lines built from the tokens ipmitool's
//! layouts are made of, and real captures cut or corrupted anywhere.

use proptest::prelude::*;
use tiervault_ipmi::parse::{chassis, fru, sel, sensor};

const CAPTURES: [&str; 7] = [
    include_str!("../testdata/sensor_list.fault.txt"),
    include_str!("../testdata/sdr_elist.fault.txt"),
    include_str!("../testdata/sel_elist.fault.txt"),
    include_str!("../testdata/sel_list.fault.txt"),
    include_str!("../testdata/fru_print.txt"),
    include_str!("../testdata/chassis_status.on.txt"),
    include_str!("../testdata/sensor_list.ok.txt"),
];

fn all_parsers(text: &str) {
    let sensors = sensor::parse_sensor_list(text);
    let sdr = sensor::parse_sdr_elist(text);
    if let (Ok(sensors), Ok(sdr)) = (sensors, sdr) {
        let merged = sensor::merge(sensors, sdr);
        // Whatever was accepted holds no NaN or absurd number.
        for s in merged {
            let t = s.thresholds;
            for v in [s.value, t.lnr, t.lcr, t.lnc, t.unc, t.ucr, t.unr]
                .into_iter()
                .flatten()
            {
                assert!(
                    v.is_finite() && v.abs() <= tiervault_ipmi::parse::PLAUSIBLE_LIMIT,
                    "{v}"
                );
            }
        }
    }
    let _ = sel::parse_sel(text);
    let _ = fru::parse_fru(text);
    let _ = chassis::parse_chassis(text);
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("|".to_string()),
        Just(" | ".to_string()),
        Just(":".to_string()),
        Just(" ".to_string()),
        Just("na".to_string()),
        Just("ok".to_string()),
        Just("cr".to_string()),
        Just("0x".to_string()),
        Just("0x0300".to_string()),
        Just("NaN".to_string()),
        Just("1e308".to_string()),
        Just("-inf".to_string()),
        Just("45.000".to_string()),
        Just("degrees C".to_string()),
        Just("discrete".to_string()),
        Just("06h".to_string()),
        Just("10.1".to_string()),
        Just("Pre-Init".to_string()),
        Just("11/23/26".to_string()),
        Just("08:37:15 UTC".to_string()),
        Just("Asserted".to_string()),
        Just("OEM record c0".to_string()),
        Just("Linux kernel panic".to_string()),
        Just("FRU Device Description".to_string()),
        Just("(ID 0)".to_string()),
        Just("System Power".to_string()),
        Just("\n".to_string()),
        "[a-f0-9]{1,6}",
        ".{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_lines(lines in prop::collection::vec(".{0,120}", 0..12), newline in any::<bool>()) {
        let mut text = lines.join("\n");
        if newline {
            text.push('\n');
        }
        all_parsers(&text);
    }

    #[test]
    fn lines_of_ipmitool_tokens(tokens in prop::collection::vec(token(), 0..60)) {
        all_parsers(&(tokens.concat() + "\n"));
    }

    #[test]
    fn captures_cut_anywhere(which in 0..CAPTURES.len(), at in any::<prop::sample::Index>()) {
        let text = CAPTURES[which];
        let mut cut = at.index(text.len() + 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        all_parsers(&text[..cut]);
    }

    #[test]
    fn captures_corrupted(
        which in 0..CAPTURES.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), token()), 1..6),
    ) {
        let mut text = CAPTURES[which].to_string();
        for (at, insert) in edits {
            let mut pos = at.index(text.len() + 1);
            while !text.is_char_boundary(pos) {
                pos -= 1;
            }
            text.insert_str(pos, &insert);
        }
        all_parsers(&text);
    }
}
