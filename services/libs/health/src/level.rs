//! How bad a threshold sensor's reading is, with hysteresis.
//!
//! IPMI gives each threshold sensor up to six limits (lower/upper non-critical, critical,
//! non-recoverable). A reading that crosses a limit takes the level at once; to come back it must
//! clear the limit by a margin, so a value hovering at a limit does not raise and clear an alert
//! on every poll.

use serde::{Deserialize, Serialize};

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

/// A sensor's limits; any may be absent (the BMC's SDR leaves most unset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Thresholds {
    pub lower_non_recoverable: Option<f64>,
    pub lower_critical: Option<f64>,
    pub lower_non_critical: Option<f64>,
    pub upper_non_critical: Option<f64>,
    pub upper_critical: Option<f64>,
    pub upper_non_recoverable: Option<f64>,
}

impl Thresholds {
    /// `other`'s limits where it sets them (configuration over the SDR).
    pub fn overridden_by(self, other: &Thresholds) -> Thresholds {
        Thresholds {
            lower_non_recoverable: other.lower_non_recoverable.or(self.lower_non_recoverable),
            lower_critical: other.lower_critical.or(self.lower_critical),
            lower_non_critical: other.lower_non_critical.or(self.lower_non_critical),
            upper_non_critical: other.upper_non_critical.or(self.upper_non_critical),
            upper_critical: other.upper_critical.or(self.upper_critical),
            upper_non_recoverable: other.upper_non_recoverable.or(self.upper_non_recoverable),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Thresholds::default()
    }

    /// The level of `value` with no memory of the past. A limit is crossed when the value is at
    /// or beyond it (IPMI's "going high/low" events assert at the limit).
    pub fn level(&self, value: f64) -> Level {
        let upper = [
            (self.upper_non_recoverable, Level::NonRecoverable),
            (self.upper_critical, Level::Critical),
            (self.upper_non_critical, Level::NonCritical),
        ];
        let lower = [
            (self.lower_non_recoverable, Level::NonRecoverable),
            (self.lower_critical, Level::Critical),
            (self.lower_non_critical, Level::NonCritical),
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
    pub fn level_after(&self, value: f64, previous: Level, hysteresis: f64) -> Level {
        let now = self.level(value);
        if now >= previous {
            return now;
        }
        let margin = hysteresis.abs();
        // The level the value would have if it were `margin` worse in either direction.
        let held = self.level(value + margin).max(self.level(value - margin));
        now.max(held.min(previous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn temp() -> Thresholds {
        Thresholds {
            upper_non_critical: Some(75.0),
            upper_critical: Some(85.0),
            upper_non_recoverable: Some(95.0),
            ..Thresholds::default()
        }
    }

    fn fan() -> Thresholds {
        Thresholds {
            lower_non_recoverable: Some(300.0),
            lower_critical: Some(500.0),
            lower_non_critical: Some(800.0),
            ..Thresholds::default()
        }
    }

    #[test]
    fn limits_are_crossed_at_the_limit() {
        let t = temp();
        assert_eq!(t.level(74.9), Level::Ok);
        assert_eq!(t.level(75.0), Level::NonCritical);
        assert_eq!(t.level(85.0), Level::Critical);
        assert_eq!(t.level(120.0), Level::NonRecoverable);
        let f = fan();
        assert_eq!(f.level(4000.0), Level::Ok);
        assert_eq!(f.level(500.0), Level::Critical);
        assert_eq!(f.level(0.0), Level::NonRecoverable);
        assert_eq!(Thresholds::default().level(1e9), Level::Ok);
    }

    #[test]
    fn a_value_hovering_at_a_limit_does_not_flap() {
        let t = temp();
        // Already above the non-critical limit, hovering at the critical one.
        let mut level = Level::NonCritical;
        let mut changes = 0;
        for v in [84.0, 85.2, 84.6, 85.1, 84.2, 85.0, 84.9] {
            let next = t.level_after(v, level, 2.0);
            changes += usize::from(next != level);
            level = next;
        }
        assert_eq!(level, Level::Critical);
        assert_eq!(changes, 1, "one rise, no fall while within 2 degrees");
        // Clearing by the margin brings it down, to the level the value has.
        assert_eq!(
            t.level_after(82.9, Level::Critical, 2.0),
            Level::NonCritical
        );
        assert_eq!(t.level_after(60.0, Level::Critical, 2.0), Level::Ok);
        // The lower side works the same way.
        assert_eq!(
            fan().level_after(520.0, Level::Critical, 50.0),
            Level::Critical
        );
        assert_eq!(
            fan().level_after(560.0, Level::Critical, 50.0),
            Level::NonCritical
        );
    }

    #[test]
    fn configuration_overrides_only_what_it_sets() {
        let cfg = Thresholds {
            upper_critical: Some(80.0),
            ..Thresholds::default()
        };
        let t = temp().overridden_by(&cfg);
        assert_eq!(t.upper_critical, Some(80.0));
        assert_eq!(t.upper_non_critical, Some(75.0));
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
                let now = t.level(v);
                let after = t.level_after(v, prev, h);
                prop_assert!(after >= now, "never better than the raw level");
                prop_assert!(after <= now.max(prev), "never worse than raw or previous");
                if h == 0.0 {
                    prop_assert_eq!(after, now);
                }
            }
        }
    }
}
