//! What a disk's SMART report means for the MSP: one finding per condition, keyed by the disk's
//! serial (the name an engineer uses for the RMA and for `vaultctl pool replace`).

use serde::{Deserialize, Serialize};

use crate::finding::Finding;
use crate::smart::SmartReport;

pub const CLASS_FAILING: &str = "smart.failing";
pub const CLASS_PREFAIL: &str = "smart.prefail-attribute";
pub const CLASS_SECTORS: &str = "smart.sectors";
pub const CLASS_MEDIA: &str = "smart.media-errors";
pub const CLASS_WEAR: &str = "smart.wear";
pub const CLASS_TEMPERATURE: &str = "smart.temperature";
pub const CLASS_SELF_TEST: &str = "smart.self-test-failed";

/// Limits from the health configuration (`[smart]`), with defaults for enterprise disks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct SmartLimits {
    /// Hottest a spinning/SATA disk may run, °C.
    pub max_temperature_ata_c: i64,
    /// Hottest an NVMe disk may run, °C.
    pub max_temperature_nvme_c: i64,
    /// How far below the limit a hot disk must cool before the alert clears, °C.
    pub temperature_hysteresis_c: i64,
    /// Percent of rated endurance used that warrants planning a replacement.
    pub wear_warn_percent: u64,
}

impl Default for SmartLimits {
    fn default() -> Self {
        SmartLimits {
            max_temperature_ata_c: 55,
            max_temperature_nvme_c: 70,
            temperature_hysteresis_c: 3,
            wear_warn_percent: 90,
        }
    }
}

fn who(r: &SmartReport) -> String {
    let serial = if r.serial.is_empty() {
        "(no serial)"
    } else {
        r.serial.as_str()
    };
    format!("disk {serial} ({}, {})", r.device, r.model)
}

fn key(r: &SmartReport) -> String {
    if r.serial.is_empty() {
        r.device.clone()
    } else {
        r.serial.clone()
    }
}

/// The findings for one report. `before` are this disk's findings from the previous
/// assessment (for hysteresis: a disk that was too hot stays so until it has cooled by the
/// margin).
pub fn assess(r: &SmartReport, limits: &SmartLimits, before: &[Finding]) -> Vec<Finding> {
    let mut out = Vec::new();
    let replace = format!(
        "Replace it: `vaultctl pool replace {} NEW_SERIAL` once a new disk is in.",
        key(r)
    );
    let mut push = |class: &'static str, severity: u8, summary: String, detail: String| {
        out.push(Finding {
            class,
            key: key(r),
            severity,
            summary,
            detail,
        })
    };
    let nvme_warning = r.nvme.as_ref().map_or(0, |n| n.critical_warning);
    // Bits 2 (reliability degraded) and 3 (media read-only) are NVMe's "failing".
    if r.passed == Some(false) || nvme_warning & 0b1100 != 0 {
        push(
            CLASS_FAILING,
            9,
            format!("{} reports it is failing (SMART overall health)", who(r)),
            format!(
                "The disk's own assessment is FAILED{}. {replace}",
                if nvme_warning != 0 {
                    format!(" (NVMe critical warning 0x{nvme_warning:02x})")
                } else {
                    String::new()
                }
            ),
        );
    }
    if !r.failing_attributes.is_empty() {
        push(
            CLASS_PREFAIL,
            8,
            format!(
                "{}: SMART attribute at its failure threshold: {}",
                who(r),
                r.failing_attributes.join(", ")
            ),
            format!("A pre-failure attribute reached the vendor's threshold. {replace}"),
        );
    }
    let pending = r.pending_sectors.unwrap_or(0);
    let uncorrectable = r.offline_uncorrectable.unwrap_or(0);
    if pending > 0 || uncorrectable > 0 {
        push(
            CLASS_SECTORS,
            7,
            format!(
                "{}: {pending} pending and {uncorrectable} uncorrectable sectors",
                who(r)
            ),
            format!(
                "Sectors the disk could not read; md rewrites them from redundancy on the next \
                 scrub, but a growing count means the disk is going. Reallocated so far: {}. \
                 {replace}",
                r.reallocated_sectors.unwrap_or(0)
            ),
        );
    }
    if let Some(n) = &r.nvme {
        if n.media_errors.unwrap_or(0) > 0 {
            push(
                CLASS_MEDIA,
                7,
                format!(
                    "{}: {} media and data integrity errors",
                    who(r),
                    n.media_errors.unwrap_or(0)
                ),
                format!("The controller found unrecovered data errors. {replace}"),
            );
        }
        let spare_low = nvme_warning & 1 != 0
            || matches!((n.available_spare, n.available_spare_threshold), (Some(a), Some(t)) if a < t);
        let used = n.percentage_used.unwrap_or(0);
        if spare_low || used >= 100 {
            push(
                CLASS_WEAR,
                8,
                format!(
                    "{}: worn out ({used}% of rated endurance, spare {}%)",
                    who(r),
                    n.available_spare.unwrap_or(0)
                ),
                format!("The disk may turn read-only at any time. {replace}"),
            );
        } else if used >= limits.wear_warn_percent {
            push(
                CLASS_WEAR,
                6,
                format!("{}: {used}% of rated endurance used", who(r)),
                "Plan its replacement at the next visit.".into(),
            );
        }
    }
    if let Some(t) = r.temperature_c {
        let max = if r.nvme.is_some() {
            limits.max_temperature_nvme_c
        } else {
            limits.max_temperature_ata_c
        };
        let was_hot = before
            .iter()
            .any(|f| f.class == CLASS_TEMPERATURE && f.key == key(r));
        let limit = if was_hot {
            max - limits.temperature_hysteresis_c
        } else {
            max
        };
        if t >= limit {
            push(
                CLASS_TEMPERATURE,
                6,
                format!("{} runs at {t} °C (limit {max} °C)", who(r)),
                "Check the chassis fans and the room's cooling; heat shortens a disk's life."
                    .into(),
            );
        }
    }
    if let Some(last) = r.self_tests.first() {
        if last.passed == Some(false) {
            push(
                CLASS_SELF_TEST,
                8,
                format!(
                    "{}: the last self-test ({}) failed: {}",
                    who(r),
                    last.kind,
                    last.status
                ),
                format!("The disk found errors reading its own surface. {replace}"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smart::{parse, NvmeHealth, SelfTest};

    fn capture(name: &str) -> SmartReport {
        let path = format!("{}/testdata/smart/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse("/dev/x", &text).expect("capture parses")
    }

    fn classes(f: &[Finding]) -> Vec<(&'static str, u8)> {
        f.iter().map(|f| (f.class, f.severity)).collect()
    }

    #[test]
    fn healthy_qemu_disks_raise_nothing() {
        for c in [
            "qemu-nvme.json",
            "qemu-ata.json",
            "qemu-ata-after-short-test.json",
        ] {
            assert!(
                assess(&capture(c), &SmartLimits::default(), &[]).is_empty(),
                "{c}"
            );
        }
    }

    #[test]
    fn a_failing_ata_disk_names_its_serial_and_the_replace_command() {
        let mut r = capture("qemu-ata.json");
        r.passed = Some(false);
        r.pending_sectors = Some(8);
        r.failing_attributes = vec!["Reallocated_Sector_Ct".into()];
        r.self_tests.insert(
            0,
            SelfTest {
                kind: "Extended offline".into(),
                status: "Completed: read failure".into(),
                passed: Some(false),
                power_on_hours: Some(9000),
            },
        );
        let f = assess(&r, &SmartLimits::default(), &[]);
        assert_eq!(
            classes(&f),
            [
                (CLASS_FAILING, 9),
                (CLASS_PREFAIL, 8),
                (CLASS_SECTORS, 7),
                (CLASS_SELF_TEST, 8)
            ]
        );
        assert!(f.iter().all(|f| f.key == "ATASMART0"));
        assert!(
            f[0].detail.contains("vaultctl pool replace ATASMART0"),
            "{}",
            f[0].detail
        );
    }

    #[test]
    fn nvme_wear_and_warnings() {
        let mut r = capture("qemu-nvme.json");
        fn n(r: &mut SmartReport) -> &mut NvmeHealth {
            r.nvme.as_mut().expect("nvme")
        }
        n(&mut r).percentage_used = Some(93);
        assert_eq!(
            classes(&assess(&r, &SmartLimits::default(), &[])),
            [(CLASS_WEAR, 6)]
        );
        n(&mut r).critical_warning = 0x01;
        assert_eq!(
            classes(&assess(&r, &SmartLimits::default(), &[])),
            [(CLASS_WEAR, 8)]
        );
        n(&mut r).critical_warning = 0x04;
        n(&mut r).media_errors = Some(3);
        n(&mut r).percentage_used = Some(5);
        assert_eq!(
            classes(&assess(&r, &SmartLimits::default(), &[])),
            [(CLASS_FAILING, 9), (CLASS_MEDIA, 7)]
        );
    }

    #[test]
    fn temperature_clears_only_after_cooling_by_the_margin() {
        let mut r = capture("qemu-ata.json");
        let l = SmartLimits::default();
        r.temperature_c = Some(55);
        let hot = assess(&r, &l, &[]);
        assert_eq!(classes(&hot), [(CLASS_TEMPERATURE, 6)]);
        r.temperature_c = Some(53);
        assert_eq!(classes(&assess(&r, &l, &hot)), [(CLASS_TEMPERATURE, 6)]);
        assert!(
            assess(&r, &l, &[]).is_empty(),
            "53 °C is fine for a cool disk"
        );
        r.temperature_c = Some(51);
        assert!(assess(&r, &l, &hot).is_empty());
    }
}
