//! The replication service's alerts, decided from its status file alone: a pure function of
//! what the last runs recorded ([`RunStatus`], lag figures included), the time and the
//! thresholds, so that every rule is tested with fixed times and the service (vault-replicad)
//! only applies the result to its alert store.
//!
//! | class | key | raised when | severity |
//! |---|---|---|---|
//! | `replication.lag` | the target | the oldest snapshot not yet on the target is older than `lag-alert-minutes` | 7; 8 when older than 3× that |
//! | `replication.failing` | the target | the attempts have failed for longer than `failing-alert-minutes` | 7 |
//!
//! Both clear by themselves when the condition ends: the target caught up (no pending
//! snapshot, or none that old), a run succeeded.

use crate::status::RunStatus;

pub const CLASS_LAG: &str = "replication.lag";
pub const CLASS_FAILING: &str = "replication.failing";
/// Every class this module raises: the service clears alerts of these classes whose key is
/// not the configured target any more (the configuration named another target).
pub const CLASSES: [&str; 2] = [CLASS_LAG, CLASS_FAILING];

// Severities on PRODUCT.md's scale (seed 003): 10–9 P1, 8–7 P2, 6–5 P3.
//
// The seed raises "backup and/or replication job failed or skipped" and "job exceeded a run
// time of 24 hours" at 7 (P2), so a replication that is a threshold behind, or that keeps
// failing, is 7 as well: the customer's off-site copy is stale, which is what the service is
// bought for, while the local copies are intact (not P1, no data is lost or at risk yet).
// Three times the threshold behind (three days at the default) is the same problem
// persisting: 8, still P2 but higher, and raising the severity drops an acknowledgement
// given at 7 (tiervault-alerts), so an acknowledged lag that keeps growing is seen again.
const SEVERITY_BEHIND: u8 = 7;
const SEVERITY_FAR_BEHIND: u8 = 8;
const FAR_BEHIND_FACTOR: i64 = 3;
const SEVERITY_FAILING: u8 = 7;

/// The thresholds, in nanoseconds (see `ServiceConfig::alert_rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertRules {
    /// `replication.lag` when the oldest pending snapshot is older than this.
    pub lag_ns: i64,
    /// `replication.failing` when the attempts have failed for longer than this.
    pub failing_ns: i64,
}

/// An alert to raise (or keep raised), in the shared alert model's terms.
pub use tiervault_alerts::Finding;

/// What the service does with its alert store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertChange {
    Raise(Finding),
    /// Clear the active alert of (class, key), if there is one.
    Clear {
        class: &'static str,
        key: String,
    },
}

/// The alert changes for target `target` (the configured target: the alerts' key) given the
/// status file's content at `now_ns`.
///
/// No status (the service has not finished an attempt yet) says nothing: no change. Lag
/// figures that were never computed say nothing about the lag either. A condition is met only
/// when strictly older than its threshold: exactly at the threshold nothing is raised yet.
pub fn evaluate(
    target: &str,
    status: Option<&RunStatus>,
    now_ns: i64,
    rules: &AlertRules,
) -> Vec<AlertChange> {
    let Some(status) = status else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(lag) = status.lag() {
        let clear = AlertChange::Clear {
            class: CLASS_LAG,
            key: target.to_string(),
        };
        let age = lag
            .oldest_pending_ns
            .filter(|_| lag.pending_snapshots > 0)
            .map(|t| now_ns.saturating_sub(t));
        out.push(match age {
            Some(age) if age > rules.lag_ns => {
                let severity = if age > rules.lag_ns.saturating_mul(FAR_BEHIND_FACTOR) {
                    SEVERITY_FAR_BEHIND
                } else {
                    SEVERITY_BEHIND
                };
                AlertChange::Raise(Finding {
                    class: CLASS_LAG,
                    key: target.to_string(),
                    severity,
                    summary: format!(
                        "replication to {target} is behind: {} snapshot(s) not on the target, \
                         the oldest {} old",
                        lag.pending_snapshots,
                        age_text(age)
                    ),
                    detail: format!(
                        "Pending: {} snapshot(s), up to {} bytes to send, the oldest taken at \
                         {} (threshold {}; figures of {}).\n{}",
                        lag.pending_snapshots,
                        lag.pending_bytes,
                        time_text(lag.oldest_pending_ns),
                        age_text(rules.lag_ns),
                        time_text(status.lag_computed_ns),
                        failure_text(status)
                    ),
                })
            }
            _ => clear,
        });
    }
    let failing_for = status.last_error.as_ref().map(|_| {
        // A file written before failing_since_ns was recorded: count from the last attempt,
        // which under-states the outage rather than raising at once.
        now_ns.saturating_sub(status.failing_since_ns.unwrap_or(status.last_attempt_ns))
    });
    out.push(match failing_for {
        Some(d) if d > rules.failing_ns => AlertChange::Raise(Finding {
            class: CLASS_FAILING,
            key: target.to_string(),
            severity: SEVERITY_FAILING,
            summary: format!("replication to {target} has failed for {}", age_text(d)),
            detail: format!(
                "{}\nThe service keeps retrying (with backoff); the alert clears after a run \
                 succeeds.",
                failure_text(status)
            ),
        }),
        _ => AlertChange::Clear {
            class: CLASS_FAILING,
            key: target.to_string(),
        },
    });
    out
}

/// The last error and success, for an alert's detail.
fn failure_text(status: &RunStatus) -> String {
    format!(
        "Last attempt {}: {}. Last success: {}.",
        time_text(Some(status.last_attempt_ns)),
        status.last_error.as_deref().unwrap_or("succeeded"),
        status
            .last_success_ns
            .map_or_else(|| "never".to_string(), |t| time_text(Some(t)))
    )
}

/// A duration as an operator reads it, coarse on purpose: an alert's summary is rewritten
/// (and its count raised) only when its text changes, so a summary with seconds would rewrite
/// the alert file every poll. Minutes below an hour, hours below two days, then days.
pub fn age_text(ns: i64) -> String {
    const MIN: i64 = 60 * 1_000_000_000;
    let minutes = ns.max(0) / MIN;
    match minutes {
        0 => "under a minute".to_string(),
        1..=59 => format!("{minutes} min"),
        60..=2879 => format!("{} h", minutes / 60),
        _ => format!("{} days", minutes / (24 * 60)),
    }
}

/// A Unix-ns time as RFC 3339 UTC (seconds), or `unknown`.
fn time_text(ns: Option<i64>) -> String {
    ns.and_then(|ns| time::OffsetDateTime::from_unix_timestamp(ns.div_euclid(1_000_000_000)).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Lag;

    const S: i64 = 1_000_000_000;
    const H: i64 = 3600 * S;
    /// 2024-01-01T00:00:00Z
    const T0: i64 = 1_704_067_200 * S;
    const RULES: AlertRules = AlertRules {
        lag_ns: 24 * H,
        failing_ns: H,
    };

    fn ok_status(pending: u64, oldest: Option<i64>) -> RunStatus {
        let mut s = RunStatus {
            target: "tiervault://r:7443".into(),
            last_attempt_ns: T0,
            last_success_ns: Some(T0),
            ..RunStatus::default()
        };
        s.set_lag(
            &Lag {
                pending_snapshots: pending,
                oldest_pending_ns: oldest,
                pending_bytes: 1234,
            },
            T0,
        );
        s
    }

    fn failing(mut s: RunStatus, since: Option<i64>, last_success: Option<i64>) -> RunStatus {
        s.last_error = Some("connection refused".into());
        s.failing_since_ns = since;
        s.last_success_ns = last_success;
        s
    }

    fn raised(changes: &[AlertChange], class: &str) -> Option<Finding> {
        changes.iter().find_map(|c| match c {
            AlertChange::Raise(f) if f.class == class => Some(f.clone()),
            _ => None,
        })
    }

    fn cleared(changes: &[AlertChange], class: &str) -> bool {
        changes
            .iter()
            .any(|c| matches!(c, AlertChange::Clear { class: k, key } if *k == class && key == "T"))
    }

    #[test]
    fn no_status_says_nothing() {
        assert!(evaluate("T", None, T0, &RULES).is_empty());
    }

    #[test]
    fn caught_up_and_no_snapshots_clear_both() {
        for s in [ok_status(0, None), ok_status(0, Some(T0 - 100 * H))] {
            let c = evaluate("T", Some(&s), T0 + 100 * H, &RULES);
            assert_eq!(c.len(), 2, "{c:?}");
            assert!(
                cleared(&c, CLASS_LAG) && cleared(&c, CLASS_FAILING),
                "{c:?}"
            );
        }
    }

    #[test]
    fn lag_is_raised_only_past_the_threshold_and_rises_at_three_times() {
        let s = ok_status(3, Some(T0));
        // Exactly at the threshold: not yet.
        let c = evaluate("T", Some(&s), T0 + 24 * H, &RULES);
        assert!(cleared(&c, CLASS_LAG), "{c:?}");
        // One nanosecond past it.
        let f =
            raised(&evaluate("T", Some(&s), T0 + 24 * H + 1, &RULES), CLASS_LAG).expect("raised");
        assert_eq!((f.severity, f.key.as_str()), (7, "T"));
        assert_eq!(
            f.summary,
            "replication to T is behind: 3 snapshot(s) not on the target, the oldest 24 h old"
        );
        assert!(f.detail.contains("1234 bytes"), "{}", f.detail);
        assert!(f.detail.contains("2024-01-01T00:00:00Z"), "{}", f.detail);
        // Exactly at 3×: still 7; past it: 8.
        let f = raised(&evaluate("T", Some(&s), T0 + 72 * H, &RULES), CLASS_LAG).expect("7");
        assert_eq!(f.severity, 7);
        let f = raised(&evaluate("T", Some(&s), T0 + 72 * H + 1, &RULES), CLASS_LAG).expect("8");
        assert_eq!(f.severity, 8);
        assert!(
            f.summary.ends_with("the oldest 3 days old"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn lag_figures_never_computed_leave_the_lag_alert_alone() {
        let mut s = ok_status(3, Some(T0 - 100 * H));
        s.lag_computed_ns = None;
        let c = evaluate("T", Some(&s), T0, &RULES);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(cleared(&c, CLASS_FAILING));
    }

    #[test]
    fn a_clock_behind_the_snapshots_clears() {
        let s = ok_status(1, Some(T0 + 10 * H));
        assert!(cleared(&evaluate("T", Some(&s), T0, &RULES), CLASS_LAG));
    }

    #[test]
    fn failing_counts_from_the_first_failure_not_the_last_success() {
        // Succeeded 10 days ago, nothing to send since; failing since T0.
        let s = failing(ok_status(1, Some(T0)), Some(T0), Some(T0 - 240 * H));
        let c = evaluate("T", Some(&s), T0 + H, &RULES);
        assert!(
            cleared(&c, CLASS_FAILING),
            "exactly at the threshold: {c:?}"
        );
        let c = evaluate("T", Some(&s), T0 + H + 1, &RULES);
        let f = raised(&c, CLASS_FAILING).expect("raised");
        assert_eq!(f.severity, 7);
        assert_eq!(f.summary, "replication to T has failed for 1 h");
        assert!(f.detail.contains("connection refused"), "{}", f.detail);
        assert!(
            f.detail.contains("Last success: 2023-12-22"),
            "{}",
            f.detail
        );
        // The lag is its own alert: one snapshot pending for an hour is not past 24 h.
        assert!(cleared(&c, CLASS_LAG), "{c:?}");
    }

    #[test]
    fn never_succeeded_is_failing_and_behind() {
        // Never succeeded: the first attempt, at T0, failed; every snapshot is pending.
        let s = failing(ok_status(2, Some(T0 - 30 * H)), Some(T0), None);
        let c = evaluate("T", Some(&s), T0 + 2 * H, &RULES);
        let f = raised(&c, CLASS_FAILING).expect("failing");
        assert!(f.detail.contains("Last success: never"), "{}", f.detail);
        let lag = raised(&c, CLASS_LAG).expect("lag");
        assert_eq!(lag.severity, 7);
        assert!(lag.summary.contains("2 snapshot(s)"), "{}", lag.summary);
        assert!(lag.summary.ends_with("32 h old"), "{}", lag.summary);
    }

    #[test]
    fn an_older_file_without_failing_since_counts_from_the_last_attempt() {
        let s = failing(ok_status(0, None), None, Some(T0 - 100 * H));
        assert!(cleared(
            &evaluate("T", Some(&s), T0 + H, &RULES),
            CLASS_FAILING
        ));
        assert!(raised(&evaluate("T", Some(&s), T0 + 2 * H, &RULES), CLASS_FAILING).is_some());
    }

    #[test]
    fn a_success_clears_the_failure() {
        let s = ok_status(0, None);
        assert!(cleared(
            &evaluate("T", Some(&s), T0 + 500 * H, &RULES),
            CLASS_FAILING
        ));
    }

    #[test]
    fn ages_read_coarsely() {
        let m = 60 * S;
        assert_eq!(age_text(-5), "under a minute");
        assert_eq!(age_text(59 * S), "under a minute");
        assert_eq!(age_text(m), "1 min");
        assert_eq!(age_text(59 * m + 59 * S), "59 min");
        assert_eq!(age_text(H), "1 h");
        assert_eq!(age_text(47 * H + 59 * m), "47 h");
        assert_eq!(age_text(48 * H), "2 days");
        assert_eq!(age_text(i64::MAX), format!("{} days", i64::MAX / (24 * H)));
    }
}
