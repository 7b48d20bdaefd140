//! How bad a threshold sensor's reading is, with hysteresis.
//!
//! IPMI gives each threshold sensor up to six limits (lower/upper non-critical, critical,
//! non-recoverable). A reading that crosses a limit takes the level at once; to come back it must
//! clear the limit by a margin, so a value hovering at a limit does not raise and clear an alert
//! on every poll.

use serde::{Deserialize, Serialize};
pub use tiervault_ipmi::Thresholds;

/// Severity of a reading against its limits, ordered from good to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Ok,
    NonCritical,
    Critical,
    NonRecoverable,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::NonCritical => "non-critical",
            Level::Critical => "critical",
            Level::NonRecoverable => "non-recoverable",
        }
    }
}

/// `by`'s limits where it sets them (configuration over the SDR).
pub fn overridden(sdr: &Thresholds, by: &Thresholds) -> Thresholds {
    Thresholds {
        lnr: by.lnr.or(sdr.lnr),
        lcr: by.lcr.or(sdr.lcr),
        lnc: by.lnc.or(sdr.lnc),
        unc: by.unc.or(sdr.unc),
        ucr: by.ucr.or(sdr.ucr),
        unr: by.unr.or(sdr.unr),
    }
}

/// Whether any limit is set.
pub fn has_limits(t: &Thresholds) -> bool {
    [t.lnr, t.lcr, t.lnc, t.unc, t.ucr, t.unr]
        .iter()
        .any(Option::is_some)
}

/// The level of `value` with no memory of the past. A limit is crossed when the value is at
/// or beyond it (IPMI's "going high/low" events assert at the limit).
pub fn level(t: &Thresholds, value: f64) -> Level {
    let upper = [
        (t.unr, Level::NonRecoverable),
        (t.ucr, Level::Critical),
        (t.unc, Level::NonCritical),
    ];
    let lower = [
        (t.lnr, Level::NonRecoverable),
        (t.lcr, Level::Critical),
        (t.lnc, Level::NonCritical),
    ];
    let high = upper
        .iter()
        .find(|(l, _)| l.is_some_and(|l| value >= l))
        .map_or(Level::Ok, |(_, lv)| *lv);
    let low = lower
        .iter()
        .find(|(l, _)| l.is_some_and(|l| value <= l))
        .map_or(Level::Ok, |(_, lv)| *lv);
    high.max(low)
}

/// The level of `value` given the level of the previous reading: worse at once, better only
/// once the value has cleared the limit by `hysteresis` (in the sensor's unit).
pub fn level_after(t: &Thresholds, value: f64, previous: Level, hysteresis: f64) -> Level {
    let now = level(t, value);
    if now >= previous {
        return now;
    }
    let margin = hysteresis.abs();
    // The level the value would have if it were `margin` worse in either direction.
    let held = level(t, value + margin).max(level(t, value - margin));
    now.max(held.min(previous))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn temp() -> Thresholds {
        Thresholds {
            unc: Some(75.0),
            ucr: Some(85.0),
            unr: Some(95.0),
            ..Thresholds::default()
        }
    }

    fn fan() -> Thresholds {
        Thresholds {
            lnr: Some(300.0),
            lcr: Some(500.0),
            lnc: Some(800.0),
            ..Thresholds::default()
        }
    }

    #[test]
    fn limits_are_crossed_at_the_limit() {
        let t = temp();
        assert_eq!(level(&t, 74.9), Level::Ok);
        assert_eq!(level(&t, 75.0), Level::NonCritical);
        assert_eq!(level(&t, 85.0), Level::Critical);
        assert_eq!(level(&t, 120.0), Level::NonRecoverable);
        let f = fan();
        assert_eq!(level(&f, 4000.0), Level::Ok);
        assert_eq!(level(&f, 500.0), Level::Critical);
        assert_eq!(level(&f, 0.0), Level::NonRecoverable);
        assert_eq!(level(&Thresholds::default(), 1e9), Level::Ok);
    }

    #[test]
    fn a_value_hovering_at_a_limit_does_not_flap() {
        let t = temp();
        // Already above the non-critical limit, hovering at the critical one.
        let mut level = Level::NonCritical;
        let mut changes = 0;
        for v in [84.0, 85.2, 84.6, 85.1, 84.2, 85.0, 84.9] {
            let next = level_after(&t, v, level, 2.0);
            changes += usize::from(next != level);
            level = next;
        }
        assert_eq!(level, Level::Critical);
        assert_eq!(changes, 1, "one rise, no fall while within 2 degrees");
        // Clearing by the margin brings it down, to the level the value has.
        assert_eq!(
            level_after(&t, 82.9, Level::Critical, 2.0),
            Level::NonCritical
        );
        assert_eq!(level_after(&t, 60.0, Level::Critical, 2.0), Level::Ok);
        // The lower side works the same way.
        assert_eq!(
            level_after(&fan(), 520.0, Level::Critical, 50.0),
            Level::Critical
        );
        assert_eq!(
            level_after(&fan(), 560.0, Level::Critical, 50.0),
            Level::NonCritical
        );
    }

    #[test]
    fn configuration_overrides_only_what_it_sets() {
        let cfg = Thresholds {
            ucr: Some(80.0),
            ..Thresholds::default()
        };
        let t = overridden(&temp(), &cfg);
        assert_eq!(t.ucr, Some(80.0));
        assert_eq!(t.unc, Some(75.0));
        assert!(has_limits(&t) && !has_limits(&Thresholds::default()));
    }

    proptest! {
        #[test]
        fn hysteresis_never_hides_a_worse_reading_nor_invents_one(
            v in -1000.0f64..1000.0,
            prev in 0usize..4,
            h in 0.0f64..50.0,
        ) {
            let prev = [Level::Ok, Level::NonCritical, Level::Critical, Level::NonRecoverable][prev];
            for t in [temp(), fan()] {
                let now = level(&t, v);
                let after = level_after(&t, v, prev, h);
                prop_assert!(after >= now, "never better than the raw level");
                prop_assert!(after <= now.max(prev), "never worse than raw or previous");
                if h == 0.0 {
                    prop_assert_eq!(after, now);
                }
            }
        }
    }
}
