//! When each disk runs its SMART self-tests: short ones weekly, long ones monthly by default,
//! staggered so that no two disks of one array test at once (a self-test slows its disk, and an
//! array is as slow as its slowest member).

use serde::{Deserialize, Serialize};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// `[smart.self-tests]` of the health configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct SelfTestPolicy {
    /// Days between short self-tests; 0 turns them off.
    pub short_every_days: u32,
    /// Days between long (extended) self-tests; 0 turns them off.
    pub long_every_days: u32,
}

impl Default for SelfTestPolicy {
    fn default() -> Self {
        SelfTestPolicy {
            short_every_days: 7,
            long_every_days: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestKind {
    Short,
    Long,
}

impl TestKind {
    /// smartctl's word for it (`smartctl -t short|long`).
    pub fn smartctl_arg(self) -> &'static str {
        match self {
            TestKind::Short => "short",
            TestKind::Long => "long",
        }
    }
}

/// What the scheduler knows of one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskTests {
    pub serial: String,
    /// The array it belongs to; a disk in none is a group of its own.
    pub array: Option<String>,
    /// A self-test is in progress (from its SMART report).
    pub running: bool,
    pub last_short_ns: Option<i64>,
    pub last_long_ns: Option<i64>,
}

impl DiskTests {
    fn group(&self) -> &str {
        self.array.as_deref().unwrap_or(&self.serial)
    }
}

/// How overdue a test is, in ns (positive = due); never tested = due since the epoch.
fn overdue(last: Option<i64>, every_days: u32, now_ns: i64) -> Option<i64> {
    if every_days == 0 {
        return None;
    }
    let since = now_ns.saturating_sub(last.unwrap_or(0));
    let late = since.saturating_sub(i64::from(every_days).saturating_mul(DAY_NS));
    (late >= 0).then_some(late)
}

/// The tests to start now: at most one per array, none in an array where one runs; within an
/// array the most overdue disk first, a long test before a short one (a long test also reads
/// everything a short one does, so it resets the short test's clock).
pub fn due(policy: &SelfTestPolicy, disks: &[DiskTests], now_ns: i64) -> Vec<(String, TestKind)> {
    let mut groups: Vec<&str> = disks.iter().map(DiskTests::group).collect();
    groups.sort_unstable();
    groups.dedup();
    let mut out = Vec::new();
    for g in groups {
        let members: Vec<&DiskTests> = disks.iter().filter(|d| d.group() == g).collect();
        if members.iter().any(|d| d.running) {
            continue;
        }
        let best = members
            .iter()
            .filter_map(|d| {
                let long = overdue(d.last_long_ns, policy.long_every_days, now_ns)
                    .map(|late| (1, late, TestKind::Long));
                let last_short = d.last_short_ns.max(d.last_long_ns);
                let short = overdue(last_short, policy.short_every_days, now_ns)
                    .map(|late| (0, late, TestKind::Short));
                long.or(short)
                    .map(|(rank, late, kind)| (rank, late, kind, *d))
            })
            // Long before short, then the most overdue, then by serial for a stable order.
            .max_by(|a, b| {
                (a.0, a.1)
                    .cmp(&(b.0, b.1))
                    .then_with(|| b.3.serial.cmp(&a.3.serial))
            });
        if let Some((_, _, kind, d)) = best {
            out.push((d.serial.clone(), kind));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn disk(serial: &str, array: Option<&str>, short: Option<i64>, long: Option<i64>) -> DiskTests {
        DiskTests {
            serial: serial.into(),
            array: array.map(str::to_owned),
            running: false,
            last_short_ns: short.map(|d| d * DAY_NS),
            last_long_ns: long.map(|d| d * DAY_NS),
        }
    }

    #[test]
    fn one_disk_per_array_and_long_tests_first() {
        let now = 100 * DAY_NS;
        let disks = [
            disk("A1", Some("vault-data0"), Some(99), Some(99)),
            disk("A2", Some("vault-data0"), Some(90), Some(95)),
            disk("A3", Some("vault-data0"), Some(98), Some(60)),
            disk("B1", Some("vault-data1"), Some(92), Some(80)),
            disk("OS", None, None, None),
        ];
        let d = due(&SelfTestPolicy::default(), &disks, now);
        assert_eq!(
            d,
            [
                ("OS".to_owned(), TestKind::Long),
                ("A3".to_owned(), TestKind::Long),
                ("B1".to_owned(), TestKind::Short),
            ]
        );
    }

    #[test]
    fn nothing_starts_beside_a_running_test_and_nothing_when_turned_off() {
        let now = 100 * DAY_NS;
        let mut disks = [
            disk("A1", Some("a"), None, None),
            disk("A2", Some("a"), None, None),
        ];
        disks[1].running = true;
        assert!(due(&SelfTestPolicy::default(), &disks, now).is_empty());
        disks[1].running = false;
        let off = SelfTestPolicy {
            short_every_days: 0,
            long_every_days: 0,
        };
        assert!(due(&off, &disks, now).is_empty());
    }

    #[test]
    fn a_long_test_resets_the_short_clock() {
        let now = 100 * DAY_NS;
        let disks = [disk("A1", Some("a"), Some(50), Some(98))];
        assert!(due(&SelfTestPolicy::default(), &disks, now).is_empty());
    }

    proptest! {
        #[test]
        fn never_two_disks_of_one_array(
            specs in proptest::collection::vec((0u8..3, proptest::option::of(0i64..200), proptest::option::of(0i64..200), any::<bool>()), 0..12),
            now in 0i64..400,
        ) {
            let disks: Vec<DiskTests> = specs.iter().enumerate().map(|(i, (a, s, l, running))| DiskTests {
                serial: format!("D{i}"),
                array: Some(format!("md{a}")),
                running: *running,
                last_short_ns: s.map(|d| d * DAY_NS),
                last_long_ns: l.map(|d| d * DAY_NS),
            }).collect();
            let picked = due(&SelfTestPolicy::default(), &disks, now * DAY_NS);
            let mut arrays: Vec<&str> = picked.iter().map(|(s, _)| {
                disks.iter().find(|d| &d.serial == s).and_then(|d| d.array.as_deref()).unwrap_or("")
            }).collect();
            let n = arrays.len();
            arrays.sort_unstable();
            arrays.dedup();
            prop_assert_eq!(arrays.len(), n);
            for a in arrays {
                prop_assert!(!disks.iter().any(|d| d.array.as_deref() == Some(a) && d.running));
            }
        }
    }
}
