//! Retention rules: which snapshots a `forget` keeps.
//!
//! The rules follow restic's `forget --keep-*` so operators can carry their habits over:
//!
//! - `last = N` keeps the N newest snapshots.
//! - `hourly`, `daily`, `weekly`, `monthly`, `yearly = N` each keep the newest snapshot of
//!   each of the N newest periods that hold a snapshot. Periods are calendar periods in UTC;
//!   weeks are ISO weeks (Monday to Sunday, numbered within the ISO week-based year), so the
//!   week that straddles New Year is one week, not two.
//! - `within = D` keeps every snapshot taken no more than D before the newest snapshot
//!   (not before "now": a vault whose backups stopped still keeps its last stretch).
//!
//! A snapshot is kept when any rule keeps it; [`plan`] reports which rules did, so the CLI can
//! say why. Periods a rule finds empty do not use up its count: `daily = 7` over a month of
//! weekly backups keeps seven snapshots, not one.
//!
//! A policy that keeps nothing is refused ([`RetentionError::EmptyPolicy`]) rather than
//! planned: forgetting every snapshot is never what a missing setting meant.
//!
//! Durations (`within`) are written as a sequence of `<n><unit>` with units `h` (hour), `d`
//! (day), `w` (7 days), `m` (30 days) and `y` (365 days), e.g. `30d`, `12h`, `1y6m`. In
//! configuration files `within` holds that string; [`KeepPolicy::within_ns`] holds its value
//! in nanoseconds, and serialising writes the value back in the largest units first, so
//! `"13m"` round-trips as `"1y3w4d"` (the same duration).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Snapshot;

const NS_PER_HOUR: i64 = 3_600_000_000_000;
const NS_PER_DAY: i64 = 24 * NS_PER_HOUR;

/// Largest first: [`format_duration`] relies on this order.
const UNITS: [(char, i64); 5] = [
    ('y', 365 * NS_PER_DAY),
    ('m', 30 * NS_PER_DAY),
    ('w', 7 * NS_PER_DAY),
    ('d', NS_PER_DAY),
    ('h', NS_PER_HOUR),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("retention policy keeps nothing: set a keep count above 0 or a within duration")]
    EmptyPolicy,
    #[error("duration {input:?}: {reason} (expected e.g. \"30d\", \"12h\", \"1y6m\"; units h, d, w, m, y)")]
    BadDuration { input: String, reason: &'static str },
    #[error("within duration of {0} ns is negative")]
    NegativeWithin(i64),
    #[error("within duration of {0} ns is not a whole number of hours and has no written form")]
    UnwritableDuration(i64),
    #[error("snapshot time {0} ns has no calendar date")]
    TimeOutOfRange(i64),
}

/// How many snapshots each rule keeps. `Default` keeps nothing (and is refused by [`plan`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeepPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    /// Written as a duration string (see the module doc), held in nanoseconds.
    #[serde(
        rename = "within",
        with = "within_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub within_ns: Option<i64>,
}

impl KeepPolicy {
    /// True when no rule would keep anything.
    pub fn is_empty(&self) -> bool {
        self.within_ns.is_none()
            && [
                self.last,
                self.hourly,
                self.daily,
                self.weekly,
                self.monthly,
                self.yearly,
            ]
            .iter()
            .all(|&n| n == 0)
    }
}

/// The decision for one snapshot: kept when `reasons` is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub keep: bool,
    /// The rules that keep it, in the order `last`, `hourly`, `daily`, `weekly`, `monthly`,
    /// `yearly`, `within`.
    pub reasons: Vec<&'static str>,
}

/// Parses a duration like `"30d"` or `"1y6m"` into nanoseconds.
pub fn parse_duration(input: &str) -> Result<i64, RetentionError> {
    let bad = |reason| RetentionError::BadDuration {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: i64 = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let (number, tail) = rest.split_at(digits);
        let mut chars = tail.chars();
        let unit = chars.next().ok_or_else(|| bad("number without a unit"))?;
        let scale = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|&(_, ns)| ns)
            .ok_or_else(|| bad("unknown unit"))?;
        let n: i64 = number.parse().map_err(|_| bad("number too large"))?;
        total = n
            .checked_mul(scale)
            .and_then(|ns| total.checked_add(ns))
            .ok_or_else(|| bad("longer than the ~292 years nanoseconds can count"))?;
        rest = chars.as_str();
    }
    Ok(total)
}

/// Writes a duration in the form [`parse_duration`] reads, largest units first.
pub fn format_duration(ns: i64) -> Result<String, RetentionError> {
    if ns < 0 {
        return Err(RetentionError::NegativeWithin(ns));
    }
    if ns % NS_PER_HOUR != 0 {
        return Err(RetentionError::UnwritableDuration(ns));
    }
    if ns == 0 {
        return Ok("0h".to_owned());
    }
    let mut out = String::new();
    let mut rest = ns;
    for (unit, scale) in UNITS {
        let n = rest / scale;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push(unit);
            rest -= n * scale;
        }
    }
    Ok(out)
}

mod within_text {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(ns) => s.serialize_str(&super::format_duration(*ns).map_err(S::Error::custom)?),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse_duration(&text).map_err(D::Error::custom))
            .transpose()
    }
}

#[derive(Debug, Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// A calendar period as a comparable key; fields a period does not use are zero.
type Bucket = (i32, u8, u8, u8);

impl Period {
    fn bucket(self, t: OffsetDateTime) -> Bucket {
        let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
        match self {
            Period::Hour => (y, m, d, t.hour()),
            Period::Day => (y, m, d, 0),
            Period::Week => {
                let (iso_year, week, _) = t.to_iso_week_date();
                (iso_year, week, 0, 0)
            }
            Period::Month => (y, m, 0, 0),
            Period::Year => (y, 0, 0, 0),
        }
    }
}

struct PeriodRule {
    name: &'static str,
    period: Period,
    remaining: u32,
    last_kept: Option<Bucket>,
}

/// Decides, for each snapshot time (nanoseconds since the Unix epoch, UTC, in any order), whether
/// `policy` keeps it. The result has one verdict per input, in input order.
///
/// The policy is checked even when `times_ns` is empty, so a bad setting surfaces on the first
/// run rather than on the first run with snapshots.
pub fn plan(times_ns: &[i64], policy: &KeepPolicy) -> Result<Vec<Verdict>, RetentionError> {
    if policy.is_empty() {
        return Err(RetentionError::EmptyPolicy);
    }
    if let Some(w) = policy.within_ns.filter(|w| *w < 0) {
        return Err(RetentionError::NegativeWithin(w));
    }
    let mut verdicts = vec![Verdict::default(); times_ns.len()];

    // Newest first; the sort is stable so equal times keep input order, which makes the plan
    // deterministic (and which of two equal times is kept does not change the kept times).
    let mut order: Vec<usize> = (0..times_ns.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(times_ns[i]));

    let mut last_remaining = policy.last;
    let mut rules = [
        ("hourly", Period::Hour, policy.hourly),
        ("daily", Period::Day, policy.daily),
        ("weekly", Period::Week, policy.weekly),
        ("monthly", Period::Month, policy.monthly),
        ("yearly", Period::Year, policy.yearly),
    ]
    .map(|(name, period, remaining)| PeriodRule {
        name,
        period,
        remaining,
        last_kept: None,
    });
    // Saturating: a `within` longer than the representable past keeps everything, as it should.
    let within_cutoff = match (policy.within_ns, order.first()) {
        (Some(w), Some(&newest)) => Some(times_ns[newest].saturating_sub(w)),
        _ => None,
    };

    for i in order {
        let t = times_ns[i];
        let reasons = &mut verdicts[i].reasons;
        if last_remaining > 0 {
            last_remaining -= 1;
            reasons.push("last");
        }
        if rules.iter().any(|r| r.remaining > 0) {
            let date = OffsetDateTime::from_unix_timestamp_nanos(i128::from(t))
                .map_err(|_| RetentionError::TimeOutOfRange(t))?;
            for rule in rules.iter_mut().filter(|r| r.remaining > 0) {
                let bucket = rule.period.bucket(date);
                if rule.last_kept != Some(bucket) {
                    rule.last_kept = Some(bucket);
                    rule.remaining -= 1;
                    reasons.push(rule.name);
                }
            }
        }
        if within_cutoff.is_some_and(|cutoff| t >= cutoff) {
            reasons.push("within");
        }
        verdicts[i].keep = !reasons.is_empty();
    }
    Ok(verdicts)
}

/// The snapshots `policy` does not keep, the policy applied to each group of snapshots of
/// the same host and set of paths (one backup job's history is one group).
pub fn expired<'s>(
    all: &'s [Snapshot],
    policy: &KeepPolicy,
) -> Result<Vec<&'s Snapshot>, RetentionError> {
    let mut groups: BTreeMap<(String, Vec<Vec<u8>>), Vec<&Snapshot>> = BTreeMap::new();
    for s in all {
        let mut paths: Vec<Vec<u8>> = s.body.paths.iter().map(|p| p.to_vec()).collect();
        paths.sort();
        groups
            .entry((s.body.hostname.clone(), paths))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for snaps in groups.values() {
        let times: Vec<i64> = snaps.iter().map(|s| s.header.time_ns).collect();
        let verdicts = plan(&times, policy)?;
        out.extend(
            snaps
                .iter()
                .zip(verdicts)
                .filter(|(_, v)| !v.keep)
                .map(|(s, _)| *s),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn ns(t: OffsetDateTime) -> i64 {
        i64::try_from(t.unix_timestamp_nanos()).expect("test times fit in i64")
    }

    fn kept(times: &[i64], policy: &KeepPolicy) -> Vec<bool> {
        plan(times, policy)
            .expect("plan")
            .iter()
            .map(|v| v.keep)
            .collect()
    }

    #[test]
    fn empty_policy_is_refused_even_without_snapshots() {
        let none = KeepPolicy::default();
        assert_eq!(plan(&[], &none), Err(RetentionError::EmptyPolicy));
        assert_eq!(plan(&[1, 2, 3], &none), Err(RetentionError::EmptyPolicy));
    }

    #[test]
    fn empty_input_gives_empty_plan() {
        let p = KeepPolicy {
            last: 3,
            ..Default::default()
        };
        assert_eq!(plan(&[], &p), Ok(vec![]));
    }

    #[test]
    fn last_keeps_the_newest_whatever_the_input_order() {
        let times = [30, 10, 50, 20, 40];
        let p = KeepPolicy {
            last: 2,
            ..Default::default()
        };
        assert_eq!(kept(&times, &p), [false, false, true, false, true]);
        let v = plan(&times, &p).expect("plan");
        assert_eq!(v[2].reasons, ["last"]);
        assert!(v[0].reasons.is_empty());
    }

    #[test]
    fn daily_keeps_the_newest_of_each_newest_day() {
        // Ten days, several snapshots a day at varying hours.
        let mut times = Vec::new();
        for day in 1..=10u8 {
            for hour in [1u8, (day * 2) % 24, 23 - day] {
                let t = datetime!(2024-03-01 00:00 UTC)
                    .replace_day(day)
                    .and_then(|t| t.replace_hour(hour))
                    .expect("valid date");
                times.push(ns(t));
            }
        }
        let p = KeepPolicy {
            daily: 3,
            ..Default::default()
        };
        let v = plan(&times, &p).expect("plan");
        let mut kept: Vec<i64> = times
            .iter()
            .zip(&v)
            .filter(|(_, v)| v.keep)
            .map(|(t, _)| *t)
            .collect();
        kept.sort_unstable();
        let newest_of = |day: u8| {
            times
                .iter()
                .copied()
                .filter(|&t| {
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t))
                        .expect("date")
                        .day()
                        == day
                })
                .max()
                .expect("day has snapshots")
        };
        assert_eq!(kept, [newest_of(8), newest_of(9), newest_of(10)]);
        assert!(v.iter().filter(|v| v.keep).all(|v| v.reasons == ["daily"]));
    }

    #[test]
    fn empty_days_do_not_use_up_the_count() {
        // Weekly backups: daily=3 keeps three of them, not only the newest.
        let times: Vec<i64> = (0..6)
            .map(|w| ns(datetime!(2024-01-01 12:00 UTC) + time::Duration::weeks(w)))
            .collect();
        let p = KeepPolicy {
            daily: 3,
            ..Default::default()
        };
        assert_eq!(kept(&times, &p), [false, false, false, true, true, true]);
    }

    #[test]
    fn hourly_with_two_in_one_hour_keeps_the_newer_and_the_previous_hour() {
        let times = [
            ns(datetime!(2024-05-05 10:05 UTC)),
            ns(datetime!(2024-05-05 10:50 UTC)),
            ns(datetime!(2024-05-05 09:59:59 UTC)),
            ns(datetime!(2024-05-05 09:00 UTC)),
            ns(datetime!(2024-05-05 08:30 UTC)),
        ];
        let p = KeepPolicy {
            hourly: 2,
            ..Default::default()
        };
        assert_eq!(kept(&times, &p), [false, true, true, false, false]);
    }

    #[test]
    fn weekly_uses_iso_weeks_across_new_year() {
        // Mon 2024-12-30 .. Sun 2025-01-05 is ISO week 2025-W01; Sun 2024-12-29 ends 2024-W52.
        let times = [
            ns(datetime!(2024-12-29 18:00 UTC)), // 2024-W52
            ns(datetime!(2024-12-30 09:00 UTC)), // 2025-W01
            ns(datetime!(2024-12-31 09:00 UTC)), // 2025-W01
            ns(datetime!(2025-01-02 09:00 UTC)), // 2025-W01, newest of its week
            ns(datetime!(2024-12-23 09:00 UTC)), // 2024-W52
            ns(datetime!(2024-12-16 09:00 UTC)), // 2024-W51
        ];
        let p = KeepPolicy {
            weekly: 2,
            ..Default::default()
        };
        // Calendar years would split W01 into 2024 and 2025 and keep 2024-12-31 too.
        assert_eq!(kept(&times, &p), [true, false, false, true, false, false]);
    }

    #[test]
    fn monthly_and_yearly_keep_the_newest_of_each_period() {
        let times = [
            ns(datetime!(2022-06-01 00:00 UTC)),
            ns(datetime!(2022-12-31 23:59 UTC)),
            ns(datetime!(2023-01-01 00:00 UTC)),
            ns(datetime!(2023-01-31 12:00 UTC)),
            ns(datetime!(2023-02-01 12:00 UTC)),
            ns(datetime!(2023-02-14 12:00 UTC)),
        ];
        let monthly = KeepPolicy {
            monthly: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&times, &monthly),
            [false, true, false, true, false, true]
        );
        let yearly = KeepPolicy {
            yearly: 5,
            ..Default::default()
        };
        assert_eq!(
            kept(&times, &yearly),
            [false, true, false, false, false, true]
        );
    }

    #[test]
    fn within_counts_back_from_the_newest_snapshot() {
        let newest = ns(datetime!(2020-01-10 00:00 UTC));
        let times = [
            newest,
            newest - 2 * NS_PER_DAY,     // exactly at the cutoff: kept
            newest - 2 * NS_PER_DAY - 1, // one nanosecond older
            newest - 30 * NS_PER_DAY,
        ];
        let p = KeepPolicy {
            within_ns: Some(parse_duration("2d").expect("duration")),
            ..Default::default()
        };
        let v = plan(&times, &p).expect("plan");
        assert_eq!(
            v.iter().map(|v| v.keep).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert_eq!(v[1].reasons, ["within"]);
    }

    #[test]
    fn reasons_name_every_rule_that_keeps() {
        let times = [ns(datetime!(2021-07-07 07:07 UTC))];
        let p = KeepPolicy {
            last: 1,
            hourly: 1,
            daily: 1,
            weekly: 1,
            monthly: 1,
            yearly: 1,
            within_ns: Some(0),
        };
        let v = plan(&times, &p).expect("plan");
        assert_eq!(
            v[0].reasons,
            ["last", "hourly", "daily", "weekly", "monthly", "yearly", "within"]
        );
    }

    #[test]
    fn negative_within_is_refused() {
        let p = KeepPolicy {
            within_ns: Some(-1),
            ..Default::default()
        };
        assert_eq!(plan(&[0], &p), Err(RetentionError::NegativeWithin(-1)));
    }

    #[test]
    fn extreme_times_plan_without_overflow() {
        let days = KeepPolicy {
            daily: 3,
            ..Default::default()
        };
        assert_eq!(kept(&[i64::MIN, i64::MAX, 0], &days), [true, true, true]);
        // newest - within underflows i64 here; the cutoff saturates and keeps the oldest.
        let within = KeepPolicy {
            within_ns: Some(i64::MAX),
            ..Default::default()
        };
        assert_eq!(kept(&[i64::MIN, -2], &within), [true, true]);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("12h"), Ok(12 * NS_PER_HOUR));
        assert_eq!(parse_duration("30d"), Ok(30 * NS_PER_DAY));
        assert_eq!(parse_duration("2w"), Ok(14 * NS_PER_DAY));
        assert_eq!(parse_duration("1y6m"), Ok(545 * NS_PER_DAY));
        assert_eq!(parse_duration("1d12h"), Ok(36 * NS_PER_HOUR));
        assert_eq!(parse_duration("0h"), Ok(0));
        for bad in [
            "",
            "d",
            "12",
            "1x",
            "1d ",
            " 1d",
            "-1d",
            "1.5d",
            "1D",
            "99999999999y",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(RetentionError::BadDuration { ref input, .. }) if input == bad),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn durations_format_largest_units_first() {
        assert_eq!(format_duration(545 * NS_PER_DAY).as_deref(), Ok("1y6m"));
        assert_eq!(format_duration(390 * NS_PER_DAY).as_deref(), Ok("1y3w4d"));
        assert_eq!(format_duration(0).as_deref(), Ok("0h"));
        assert_eq!(
            format_duration(NS_PER_HOUR + 1),
            Err(RetentionError::UnwritableDuration(NS_PER_HOUR + 1))
        );
    }

    #[test]
    fn policy_reads_and_writes_kebab_case_with_within_as_text() {
        let p: KeepPolicy =
            serde_json::from_str(r#"{"daily": 7, "within": "1y6m"}"#).expect("parse");
        assert_eq!(
            p,
            KeepPolicy {
                daily: 7,
                within_ns: Some(545 * NS_PER_DAY),
                ..Default::default()
            }
        );
        let text = serde_json::to_string(&p).expect("write");
        assert!(text.contains(r#""within":"1y6m""#), "{text}");
        assert_eq!(
            serde_json::from_str::<KeepPolicy>(&text).expect("reparse"),
            p
        );
        let no_within = serde_json::to_string(&KeepPolicy::default()).expect("write");
        assert!(!no_within.contains("within"), "{no_within}");
    }

    #[test]
    fn policy_rejects_unknown_fields_and_bad_durations() {
        let unknown = serde_json::from_str::<KeepPolicy>(r#"{"keep-daily": 7}"#)
            .expect_err("unknown field accepted");
        assert!(unknown.to_string().contains("keep-daily"), "{unknown}");
        let bad = serde_json::from_str::<KeepPolicy>(r#"{"within": "30 days"}"#)
            .expect_err("bad duration accepted");
        assert!(bad.to_string().contains("30 days"), "{bad}");
    }

    /// Seconds from a 2020 base, from a narrow range so equal times and shared periods occur.
    fn times() -> impl Strategy<Value = Vec<i64>> {
        let base = ns(datetime!(2020-01-01 00:00 UTC));
        let t = prop_oneof![
            (0i64..3 * 365 * 24 * 3600).prop_map(move |s| base + s * 1_000_000_000),
            (0i64..200).prop_map(move |s| base + s * 600 * 1_000_000_000),
        ];
        proptest::collection::vec(t, 0..60)
    }

    fn policies() -> impl Strategy<Value = KeepPolicy> {
        (
            [0u32..6, 0u32..6, 0u32..6, 0u32..6, 0u32..6, 0u32..6],
            proptest::option::of(0i64..2000),
        )
            .prop_map(
                |([last, hourly, daily, weekly, monthly, yearly], hours)| KeepPolicy {
                    last,
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                    within_ns: hours.map(|h| h * NS_PER_HOUR),
                },
            )
            .prop_filter("empty policies are refused", |p| !p.is_empty())
    }

    fn kept_times(times: &[i64], policy: &KeepPolicy) -> Vec<i64> {
        let mut out: Vec<i64> = times
            .iter()
            .zip(kept(times, policy))
            .filter(|(_, k)| *k)
            .map(|(t, _)| *t)
            .collect();
        out.sort_unstable();
        out
    }

    proptest! {
        #[test]
        fn last_alone_keeps_exactly_the_newest(times in times(), n in 1u32..80) {
            let p = KeepPolicy { last: n, ..Default::default() };
            let mut want = times.clone();
            want.sort_unstable_by(|a, b| b.cmp(a));
            want.truncate(n as usize);
            want.sort_unstable();
            prop_assert_eq!(kept_times(&times, &p), want);
        }

        #[test]
        fn the_newest_is_always_kept(times in times(), p in policies()) {
            prop_assume!(!times.is_empty());
            let got = kept_times(&times, &p);
            prop_assert_eq!(got.last(), times.iter().max());
        }

        #[test]
        fn input_order_does_not_matter(
            (times, shuffled) in times().prop_flat_map(|t| (Just(t.clone()), Just(t).prop_shuffle())),
            p in policies(),
        ) {
            prop_assert_eq!(kept_times(&times, &p), kept_times(&shuffled, &p));
        }

        #[test]
        fn adding_rules_never_forgets_more(
            times in times(),
            p in policies(),
            extra in [0u32..4, 0u32..4, 0u32..4, 0u32..4, 0u32..4, 0u32..4],
            extra_hours in proptest::option::of(0i64..2000),
        ) {
            let more = KeepPolicy {
                last: p.last + extra[0],
                hourly: p.hourly + extra[1],
                daily: p.daily + extra[2],
                weekly: p.weekly + extra[3],
                monthly: p.monthly + extra[4],
                yearly: p.yearly + extra[5],
                within_ns: match (p.within_ns, extra_hours) {
                    (w, None) => w,
                    (None, Some(h)) => Some(h * NS_PER_HOUR),
                    (Some(w), Some(h)) => Some(w + h * NS_PER_HOUR),
                },
            };
            let before = kept(&times, &p);
            let after = kept(&times, &more);
            for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                prop_assert!(!b || *a, "snapshot {} at {} forgotten", i, times[i]);
            }
        }

        #[test]
        fn any_time_and_duration_plan_without_error(
            times in proptest::collection::vec(any::<i64>(), 0..20),
            within in proptest::option::of(0i64..=i64::MAX),
        ) {
            let p = KeepPolicy { hourly: 3, weekly: 2, yearly: 9, within_ns: within, ..Default::default() };
            prop_assert!(plan(&times, &p).is_ok());
        }

        #[test]
        fn written_durations_read_back(hours in 0i64..(i64::MAX / NS_PER_HOUR)) {
            let ns = hours * NS_PER_HOUR;
            let text = format_duration(ns).expect("whole hours are writable");
            prop_assert_eq!(parse_duration(&text), Ok(ns));
        }
    }
}
