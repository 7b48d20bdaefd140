//! When to try a failing target again, and the clock that decides it is time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::config_error;
use crate::NotifyError;

/// The time source of a [`Dispatcher`](crate::Dispatcher), in Unix nanoseconds. Injectable so
/// that tests step through hours of backoff without sleeping.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        tiervault_alerts::now_ns()
    }
}

/// A clock that moves only when told: for tests of services built on this crate too.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ns: i64) -> ManualClock {
        ManualClock(AtomicI64::new(start_ns))
    }

    pub fn set(&self, ns: i64) {
        self.0.store(ns, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ns| {
                Some(ns.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Exponential backoff with jitter: after the n-th failure in a row the next try waits a
/// random time between half and all of `min(initial × 2^(n-1), max)`. The jitter keeps a fleet
/// of appliances that lost the same receiver from all coming back at the same second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Backoff {
    /// The wait after the first failure, seconds (before jitter).
    #[serde(default = "default_initial")]
    pub initial_secs: u64,
    /// The longest wait, seconds: also caps a server's `Retry-After`.
    #[serde(default = "default_max")]
    pub max_secs: u64,
}

fn default_initial() -> u64 {
    10
}

fn default_max() -> u64 {
    15 * 60
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_secs: default_initial(),
            max_secs: default_max(),
        }
    }
}

impl Backoff {
    pub fn validate(&self, context: &str) -> Result<(), NotifyError> {
        if self.initial_secs == 0 {
            return Err(config_error(
                context,
                "backoff.initial-secs",
                "must be at least 1: a failing receiver would be hammered",
            ));
        }
        if self.max_secs < self.initial_secs {
            return Err(config_error(
                context,
                "backoff.max-secs",
                format!(
                    "{} is below initial-secs {}",
                    self.max_secs, self.initial_secs
                ),
            ));
        }
        if self.max_secs > 24 * 3600 {
            return Err(config_error(
                context,
                "backoff.max-secs",
                "must be at most a day: P1 alerts would wait longer",
            ));
        }
        Ok(())
    }

    /// The wait before the next try after `failures` failures in a row (at least 1), at least
    /// what the receiver asked for (`Retry-After`) but never above `max`. `rng` supplies the
    /// jitter.
    pub fn delay(
        &self,
        failures: u32,
        asked: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let max = Duration::from_secs(self.max_secs);
        let exponent = failures.saturating_sub(1).min(32);
        let full = Duration::from_secs(self.initial_secs)
            .saturating_mul(1u32 << exponent.min(31))
            .min(max);
        let half = full / 2;
        let spread = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
        let jittered = half + Duration::from_millis(rng.u64(0..=spread));
        jittered.max(asked.unwrap_or_default()).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubling_with_jitter_and_is_capped() {
        let backoff = Backoff {
            initial_secs: 2,
            max_secs: 60,
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for failures in 1..=40u32 {
            let full = (2u64 << (failures - 1).min(20)).min(60);
            for _ in 0..20 {
                let d = backoff.delay(failures, None, &mut rng);
                assert!(d >= Duration::from_secs(full) / 2, "{failures}: {d:?}");
                assert!(d <= Duration::from_secs(full), "{failures}: {d:?}");
            }
        }
    }

    #[test]
    fn honours_retry_after_up_to_the_cap() {
        let backoff = Backoff {
            initial_secs: 1,
            max_secs: 30,
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let d = backoff.delay(1, Some(Duration::from_secs(20)), &mut rng);
        assert_eq!(d, Duration::from_secs(20));
        let d = backoff.delay(1, Some(Duration::from_secs(3600)), &mut rng);
        assert_eq!(d, Duration::from_secs(30));
    }

    #[test]
    fn validation() {
        Backoff::default().validate("t").expect("default");
        for bad in [
            Backoff {
                initial_secs: 0,
                max_secs: 10,
            },
            Backoff {
                initial_secs: 10,
                max_secs: 5,
            },
            Backoff {
                initial_secs: 1,
                max_secs: 100_000,
            },
        ] {
            assert!(bad.validate("t").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let clock = ManualClock::new(5);
        clock.advance(Duration::from_nanos(10));
        assert_eq!(clock.now_ns(), 15);
        clock.set(1);
        assert_eq!(clock.now_ns(), 1);
    }
}
