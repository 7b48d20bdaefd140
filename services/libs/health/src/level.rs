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

/// The alarms of a sensor in OpenBMC's terms (`Threshold.Warning`'s `WarningAlarmHigh`, ...):
/// which limits, on which side, its level stands for. A level is set on one side only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Alarms {
    pub warning_high: bool,
    pub warning_low: bool,
    pub critical_high: bool,
    pub critical_low: bool,
    /// Non-recoverable (OpenBMC's `HardShutdown`).
    pub hard_shutdown_high: bool,
    pub hard_shutdown_low: bool,
}

/// The alarms for `level` (from [`level_after`]) at `value`. The side is the one whose nearest
/// limit the value is closer to: a level held by hysteresis has the value just inside it. A
/// sensor whose critical limit is set but not its non-critical one has no warning alarm.
pub fn alarms(t: &Thresholds, value: Option<f64>, level: Level) -> Alarms {
    let Some(v) = value.filter(|_| level != Level::Ok) else {
        return Alarms::default();
    };
    let nearest = |limits: [Option<f64>; 3], dist: &dyn Fn(f64) -> f64| {
        limits
            .into_iter()
            .flatten()
            .map(dist)
            .fold(f64::INFINITY, f64::min)
    };
    let to_high = nearest([t.unc, t.ucr, t.unr], &|l| l - v);
    let to_low = nearest([t.lnc, t.lcr, t.lnr], &|l| v - l);
    if to_high.is_infinite() && to_low.is_infinite() {
        return Alarms::default();
    }
    let high = to_high <= to_low;
    let at = |l: Level| level >= l;
    // An alarm exists only where its limit does, as in OpenBMC.
    let on = |side: bool, l: Level, limit: Option<f64>| side && at(l) && limit.is_some();
    Alarms {
        warning_high: on(high, Level::NonCritical, t.unc),
        warning_low: on(!high, Level::NonCritical, t.lnc),
        critical_high: on(high, Level::Critical, t.ucr),
        critical_low: on(!high, Level::Critical, t.lcr),
        hard_shutdown_high: on(high, Level::NonRecoverable, t.unr),
        hard_shutdown_low: on(!high, Level::NonRecoverable, t.lnr),
    }
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
    fn alarms_are_on_the_side_of_the_limit_crossed() {
        let t = temp();
        assert_eq!(alarms(&t, Some(70.0), Level::Ok), Alarms::default());
        let a = alarms(&t, Some(86.0), Level::Critical);
        assert!(a.warning_high && a.critical_high && !a.hard_shutdown_high);
        assert!(!a.warning_low && !a.critical_low);
        // Held by hysteresis just below the limit: still the high side.
        let a = alarms(&t, Some(74.0), Level::NonCritical);
        assert!(a.warning_high && !a.critical_high);
        let f = fan();
        let a = alarms(&f, Some(0.0), Level::NonRecoverable);
        assert!(a.warning_low && a.critical_low && a.hard_shutdown_low && !a.warning_high);
        // No reading, or no limits (a power supply's state): no threshold alarm.
        assert_eq!(alarms(&f, None, Level::Critical), Alarms::default());
        let only_critical = Thresholds {
            ucr: Some(85.0),
            ..Thresholds::default()
        };
        let a = alarms(&only_critical, Some(90.0), Level::Critical);
        assert!(a.critical_high && !a.warning_high);
        let none = Thresholds::default();
        assert_eq!(alarms(&none, Some(1.0), Level::Critical), Alarms::default());
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
