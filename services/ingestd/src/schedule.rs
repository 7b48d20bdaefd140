//! When a backup job runs. The forms an MSP engineer writes in a job file:
//! `manual`, `hourly` (on the hour), `daily HH:MM`, `weekly DAY HH:MM` (DAY = mon … sun),
//! `every N(min|h|d)` (e.g. `every 6h`, `every 15min`, aligned to multiples of the duration since the epoch so
//! the times do not drift with restarts). Times are in the appliance's local time zone, read
//! once at start (the offset is fixed for the process; a DST change takes effect at the next
//! restart, which the daily service restart of an appliance update brings).

use std::fmt;

use time::{Duration, OffsetDateTime, Time, UtcOffset, Weekday};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Manual,
    Hourly,
    Daily(Time),
    Weekly(Weekday, Time),
    Every(Duration),
}

#[derive(Debug, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const FORMS: &str = "manual, hourly, daily HH:MM, weekly DAY HH:MM, every N(min|h|d)";

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let bad = |why: &str| ScheduleError(format!("schedule \"{text}\": {why} (forms: {FORMS})"));
        match words.as_slice() {
            ["manual"] => Ok(Schedule::Manual),
            ["hourly"] => Ok(Schedule::Hourly),
            ["daily", t] => Ok(Schedule::Daily(clock(t).map_err(|e| bad(&e))?)),
            ["weekly", d, t] => Ok(Schedule::Weekly(
                weekday(d).map_err(|e| bad(&e))?,
                clock(t).map_err(|e| bad(&e))?,
            )),
            ["every", d] => {
                let split = d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len());
                let (n, unit) = d.split_at(split);
                let n: i64 = n
                    .parse()
                    .map_err(|_| bad("the interval is not N(min|h|d)"))?;
                let each = match unit {
                    "min" => Duration::MINUTE,
                    "h" => Duration::HOUR,
                    "d" => Duration::DAY,
                    _ => return Err(bad("the interval's unit must be min, h or d")),
                };
                if !(1..=366 * 24 * 60).contains(&n) {
                    return Err(bad("the interval must be between 1min and a year"));
                }
                Ok(Schedule::Every(each * n as i32))
            }
            _ => Err(bad("not understood")),
        }
    }

    /// The first run time strictly after `after`, in the zone `offset`; None for manual jobs.
    pub fn next_after(&self, after: OffsetDateTime, offset: UtcOffset) -> Option<OffsetDateTime> {
        let t = after.to_offset(offset);
        let next = match self {
            Schedule::Manual => return None,
            Schedule::Hourly => {
                let top = t.replace_time(Time::from_hms(t.hour(), 0, 0).ok()?);
                top + Duration::HOUR
            }
            Schedule::Daily(at) => {
                let today = t.replace_time(*at);
                if today > t {
                    today
                } else {
                    today + Duration::DAY
                }
            }
            Schedule::Weekly(day, at) => {
                let ahead = (day.number_days_from_monday() as i64
                    - t.weekday().number_days_from_monday() as i64)
                    .rem_euclid(7);
                let candidate = t.replace_time(*at) + Duration::days(ahead);
                if candidate > t {
                    candidate
                } else {
                    candidate + Duration::WEEK
                }
            }
            Schedule::Every(d) => {
                let step = d.whole_nanoseconds();
                let now = t.unix_timestamp_nanos();
                let next = (now.div_euclid(step) + 1) * step;
                OffsetDateTime::from_unix_timestamp_nanos(next)
                    .ok()?
                    .to_offset(offset)
            }
        };
        Some(next)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Manual => f.write_str("manual"),
            Schedule::Hourly => f.write_str("hourly"),
            Schedule::Daily(t) => write!(f, "daily {:02}:{:02}", t.hour(), t.minute()),
            Schedule::Weekly(d, t) => write!(
                f,
                "weekly {} {:02}:{:02}",
                &d.to_string()[..3].to_lowercase(),
                t.hour(),
                t.minute()
            ),
            Schedule::Every(d) => {
                let m = d.whole_minutes();
                if m % 1440 == 0 {
                    write!(f, "every {}d", m / 1440)
                } else if m % 60 == 0 {
                    write!(f, "every {}h", m / 60)
                } else {
                    write!(f, "every {m}min")
                }
            }
        }
    }
}

fn clock(text: &str) -> Result<Time, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("\"{text}\" is not HH:MM"))?;
    let h: u8 = h.parse().map_err(|_| format!("\"{text}\" is not HH:MM"))?;
    let m: u8 = m.parse().map_err(|_| format!("\"{text}\" is not HH:MM"))?;
    Time::from_hms(h, m, 0).map_err(|_| format!("\"{text}\" is not a time of day"))
}

fn weekday(text: &str) -> Result<Weekday, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return Err(format!("\"{text}\" is not a day (mon … sun)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::{datetime, offset};

    #[test]
    fn forms_parse_and_print_back() {
        for text in [
            "manual",
            "hourly",
            "daily 02:30",
            "weekly sun 03:00",
            "every 6h",
            "every 15min",
            "every 2d",
        ] {
            let s = Schedule::parse(text).expect(text);
            assert_eq!(s.to_string(), text);
        }
    }

    #[test]
    fn bad_schedules_name_the_text_and_the_fault() {
        for (text, fault) in [
            ("daily 25:00", "not a time of day"),
            ("daily 2pm", "not HH:MM"),
            ("weekly someday 01:00", "not a day"),
            ("every 10s", "unit must be min, h or d"),
            ("every 0h", "between 1min and a year"),
            ("fortnightly", "not understood"),
            ("", "not understood"),
        ] {
            let e = Schedule::parse(text).expect_err(text).to_string();
            assert!(e.contains(&format!("\"{text}\"")), "{e}");
            assert!(e.contains(fault), "{text}: {e}");
        }
    }

    #[test]
    fn next_times_in_local_time() {
        let off = offset!(+2);
        let now = datetime!(2026-11-23 01:15 +2); // a Monday
        let next = |s: &str| {
            Schedule::parse(s)
                .expect(s)
                .next_after(now, off)
                .expect("scheduled")
        };
        assert_eq!(next("hourly"), datetime!(2026-11-23 02:00 +2));
        assert_eq!(next("daily 02:30"), datetime!(2026-11-23 02:30 +2));
        assert_eq!(next("daily 01:15"), datetime!(2026-11-24 01:15 +2));
        assert_eq!(next("weekly sun 03:00"), datetime!(2026-11-29 03:00 +2));
        assert_eq!(next("weekly mon 03:00"), datetime!(2026-11-23 03:00 +2));
        assert_eq!(next("weekly mon 01:00"), datetime!(2026-11-30 01:00 +2));
        assert_eq!(next("every 6h"), datetime!(2026-11-23 02:00 +2)); // 00:00 UTC
        assert_eq!(
            Schedule::Manual.next_after(now, off),
            None,
            "manual jobs never run by themselves"
        );
    }

    proptest! {
        #[test]
        fn next_is_after_now_and_within_one_period(
            secs in 1_600_000_000i64..1_900_000_000,
            form in 0usize..4,
        ) {
            let text = ["hourly", "daily 04:05", "weekly wed 23:59", "every 90min"][form];
            let period = [3600i64, 86_400, 604_800, 5400][form];
            let now = OffsetDateTime::from_unix_timestamp(secs).expect("time");
            let off = offset!(-5);
            let next = Schedule::parse(text).expect(text).next_after(now, off).expect("some");
            prop_assert!(next > now);
            prop_assert!((next - now).whole_seconds() <= period);
            // Asking again from just before the next run gives the same run.
            let again = Schedule::parse(text).expect(text)
                .next_after(next - Duration::SECOND, off).expect("some");
            prop_assert_eq!(again, next);
        }
    }
}
