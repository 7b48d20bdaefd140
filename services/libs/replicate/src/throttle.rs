//! Bandwidth limit for replication, with time windows, changeable while the service runs.
//!
//! Replication shares the appliance's WAN link with the people in the office, so an operator
//! caps it during working hours and lets it run free at night. The `[bandwidth]` table of the
//! replication config says how:
//!
//! ```toml
//! [bandwidth]
//! default = "unlimited"      # or "50MB/s", "2MiB/s", "800kB/s", "100Mbit/s"
//! [[bandwidth.window]]
//! days = "mon-fri"           # "sat,sun", "mon,wed,fri", "fri-mon", "daily"
//! from = "08:00"
//! to = "18:00"               # to < from: the window runs past midnight into the next day
//! rate = "2MB/s"
//! ```
//!
//! The first window that contains the current time gives the rate; outside every window the
//! default does. Windows are `from` inclusive, `to` exclusive, in the appliance's wall-clock
//! time, and `days` names the day a window starts on: `days = "fri"`, 22:00 to 06:00 covers
//! Saturday 03:00 but not Friday 03:00.
//!
//! - [`Schedule`] answers "what rate at this time".
//! - [`ScheduleSource`] re-reads the config file when it changes, so a new limit needs no restart.
//! - [`Limiter`] is a token bucket that blocks the sending thread.

use std::fmt;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use time::{OffsetDateTime, UtcOffset, Weekday};

/// How often a waiting sender looks at the schedule again, and how often the config file is
/// looked at: a window boundary or an edited file takes effect within this time.
const RECHECK: Duration = Duration::from_secs(1);

/// The smallest burst: below this, per-take overhead and wake-ups would dominate at low rates.
const MIN_BURST: u64 = 64 << 10;

/// A value of the config that does not parse, with the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: {problem}")]
pub struct ValueError {
    pub text: String,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "expected a number and a unit per second, like 2MB/s, 1.5MiB/s or 100Mbit/s, or unlimited"
    )]
    Syntax,
    #[error("a rate is per second: write it like 2MB/s")]
    NotPerSecond,
    #[error(
        "unknown unit {0:?}; use B, kB, MB, GB, KiB, MiB, GiB, bit, kbit, Mbit or Gbit, then /s"
    )]
    Unit(String),
    #[error("less than 1 byte per second")]
    TooSmall,
    #[error("more than 2^64 - 1 bytes per second")]
    TooLarge,
    #[error("{0:?} is not a day; use mon … sun (or full names), ranges like mon-fri, lists like sat,sun, or daily")]
    Day(String),
    #[error("expected a time of day as HH:MM, from 00:00 to 24:00")]
    Time,
    #[error("a window cannot start at 24:00; start it at 00:00")]
    StartsAtEndOfDay,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// `field` says where the value was, like `[bandwidth] window 2 rate`.
    #[error("{field} = {text:?}: {problem}")]
    Value {
        field: String,
        text: String,
        problem: Problem,
    },
    #[error(
        "{field}: from and to are both {at}; a window for the whole day is from 00:00 to 24:00"
    )]
    EmptyWindow { field: String, at: String },
    /// The file is not TOML, or its `[bandwidth]` table has the wrong shape (an unknown key, a
    /// missing one, a number where text belongs).
    #[error("line {line}: {message}")]
    Toml { line: usize, message: String },
    #[error("{path}: reading")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("replication config {path}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ScheduleError>,
    },
}

// ---------------------------------------------------------------------------------------------
// Rates

/// A bandwidth limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    Unlimited,
    BytesPerSecond(NonZeroU64),
}

impl Rate {
    /// None: unlimited.
    pub fn bytes_per_second(self) -> Option<u64> {
        match self {
            Rate::Unlimited => None,
            Rate::BytesPerSecond(n) => Some(n.get()),
        }
    }
}

/// Spellings of units before "/s", as bytes per unit: a numerator and a denominator, because a
/// bit is an eighth of a byte. "KB" is left out on purpose: it means 1000 to some and 1024 to
/// others, and the error for it lists what to write instead.
const UNITS: [(&str, u128, u128); 11] = [
    ("B", 1, 1),
    ("kB", 1_000, 1),
    ("MB", 1_000_000, 1),
    ("GB", 1_000_000_000, 1),
    ("KiB", 1 << 10, 1),
    ("MiB", 1 << 20, 1),
    ("GiB", 1 << 30, 1),
    ("bit", 1, 8),
    ("kbit", 1_000, 8),
    ("Mbit", 1_000_000, 8),
    ("Gbit", 1_000_000_000, 8),
];

impl FromStr for Rate {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Rate, ValueError> {
        let bad = |problem| ValueError {
            text: text.to_owned(),
            problem,
        };
        let s = text.trim();
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::Unlimited);
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(frac)
            || (number.contains('.') && frac.is_empty())
            // Nine decimals are a nano-unit, far below any link's resolution.
            || frac.len() > 9
        {
            return Err(bad(Problem::Syntax));
        }
        let unit = unit
            .trim_start()
            .strip_suffix("/s")
            .ok_or_else(|| bad(Problem::NotPerSecond))?;
        let &(_, per_unit, divisor) = UNITS
            .iter()
            .find(|(name, ..)| *name == unit)
            .ok_or_else(|| bad(Problem::Unit(unit.to_owned())))?;
        // 20 digits with 9 decimals times 2^30 still fits in a u128; anything longer is beyond
        // u64 bytes per second anyway.
        if whole.len() > 20 {
            return Err(bad(Problem::TooLarge));
        }
        let scale = 10u128.pow(frac.len() as u32);
        let parse = |d: &str| d.parse::<u128>().map_err(|_| bad(Problem::Syntax));
        let frac_value = if frac.is_empty() { 0 } else { parse(frac)? };
        let scaled = parse(whole)? * scale + frac_value;
        let bytes = scaled * per_unit / (scale * divisor);
        let bytes = u64::try_from(bytes).map_err(|_| bad(Problem::TooLarge))?;
        NonZeroU64::new(bytes)
            .map(Rate::BytesPerSecond)
            .ok_or_else(|| bad(Problem::TooSmall))
    }
}

/// The largest unit that divides the rate exactly, so the text parses back to the same rate.
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match self {
            Rate::Unlimited => return f.write_str("unlimited"),
            Rate::BytesPerSecond(n) => n.get(),
        };
        for (name, per_unit) in [
            ("GiB", 1u64 << 30),
            ("GB", 1_000_000_000),
            ("MiB", 1 << 20),
            ("MB", 1_000_000),
            ("KiB", 1 << 10),
            ("kB", 1_000),
        ] {
            if n % per_unit == 0 {
                return write!(f, "{}{name}/s", n / per_unit);
            }
        }
        write!(f, "{n}B/s")
    }
}

// ---------------------------------------------------------------------------------------------
// Days and times

/// A set of weekdays: bit i is the i-th day counted from Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Days(u8);

const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl Days {
    const ALL: Days = Days(0x7f);

    fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.number_days_from_monday()) != 0
    }
}

impl FromStr for Days {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Days, ValueError> {
        let day = |part: &str| {
            let p = part.trim().to_ascii_lowercase();
            DAY_NAMES
                .iter()
                .position(|n| p == *n || p == n[..3])
                .ok_or_else(|| ValueError {
                    text: text.to_owned(),
                    problem: Problem::Day(part.trim().to_owned()),
                })
        };
        if text.trim().eq_ignore_ascii_case("daily") {
            return Ok(Days::ALL);
        }
        let mut bits = 0u8;
        for part in text.split(',') {
            let (first, last) = part.split_once('-').unwrap_or((part, part));
            let (mut d, last) = (day(first)?, day(last)?);
            // Ranges may wrap past Sunday: "fri-mon" is the long weekend.
            loop {
                bits |= 1 << d;
                if d == last {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
        Ok(Days(bits))
    }
}

/// Minutes since midnight, 0 to 1440: 24:00 is there so a window can end at midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TimeOfDay(u16);

impl FromStr for TimeOfDay {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<TimeOfDay, ValueError> {
        let bad = || ValueError {
            text: text.to_owned(),
            problem: Problem::Time,
        };
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !(1..=2).contains(&h.len()) || m.len() != 2 || !all_digits(h) || !all_digits(m) {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 60 + m))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

// ---------------------------------------------------------------------------------------------
// Schedule

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    days: Days,
    from: TimeOfDay,
    to: TimeOfDay,
    rate: Rate,
}

impl Window {
    fn contains(&self, day: Weekday, minute: TimeOfDay) -> bool {
        if self.from < self.to {
            self.days.contains(day) && self.from <= minute && minute < self.to
        } else {
            // Past midnight: the evening part is on a listed day, the morning part on the day
            // after one.
            (self.days.contains(day) && minute >= self.from)
                || (self.days.contains(day.previous()) && minute < self.to)
        }
    }
}

/// What rate applies when: a default and windows that override it, first match wins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSchedule")]
pub struct Schedule {
    default: Rate,
    windows: Vec<Window>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSchedule {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    window: Vec<RawWindow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWindow {
    days: String,
    from: String,
    to: String,
    rate: String,
}

/// The rest of the replication config belongs to other parts of the service, so unknown
/// top-level keys are theirs, not mistakes.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    bandwidth: Option<RawSchedule>,
}

fn field<T: FromStr<Err = ValueError>>(
    name: impl FnOnce() -> String,
    text: &str,
) -> Result<T, ScheduleError> {
    text.parse().map_err(|e: ValueError| ScheduleError::Value {
        field: name(),
        text: e.text,
        problem: e.problem,
    })
}

impl TryFrom<RawSchedule> for Schedule {
    type Error = ScheduleError;

    fn try_from(raw: RawSchedule) -> Result<Schedule, ScheduleError> {
        let default = match &raw.default {
            Some(text) => field(|| "[bandwidth] default".into(), text)?,
            None => Rate::Unlimited,
        };
        let mut windows = Vec::with_capacity(raw.window.len());
        for (i, w) in raw.window.iter().enumerate() {
            // Counted from 1, as an operator counts the [[bandwidth.window]] tables in the file.
            let name = |key: &'static str| move || format!("[bandwidth] window {} {key}", i + 1);
            let days = field(name("days"), &w.days)?;
            let from: TimeOfDay = field(name("from"), &w.from)?;
            let to = field(name("to"), &w.to)?;
            let rate = field(name("rate"), &w.rate)?;
            if from.0 == 24 * 60 {
                return Err(ScheduleError::Value {
                    field: name("from")(),
                    text: w.from.clone(),
                    problem: Problem::StartsAtEndOfDay,
                });
            }
            if from == to {
                return Err(ScheduleError::EmptyWindow {
                    field: format!("[bandwidth] window {}", i + 1),
                    at: from.to_string(),
                });
            }
            windows.push(Window {
                days,
                from,
                to,
                rate,
            });
        }
        Ok(Schedule { default, windows })
    }
}

impl Schedule {
    /// No limit at any time: for an appliance without a bandwidth config.
    pub fn unlimited() -> Schedule {
        Schedule::fixed(Rate::Unlimited)
    }

    /// The same rate at all times (a command-line limit, say).
    pub fn fixed(rate: Rate) -> Schedule {
        Schedule {
            default: rate,
            windows: Vec::new(),
        }
    }

    /// The `[bandwidth]` table of a replication config's text; without one, unlimited.
    pub fn from_config(text: &str) -> Result<Schedule, ScheduleError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start.min(text.len()));
            ScheduleError::Toml {
                line: text.as_bytes()[..at]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1,
                message: e.message().to_owned(),
            }
        })?;
        raw.bandwidth
            .map_or_else(|| Ok(Schedule::unlimited()), Schedule::try_from)
    }

    /// Read and parse a replication config file.
    pub fn load(path: &Path) -> Result<Schedule, ScheduleError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Read {
            path: path.to_owned(),
            source,
        })?;
        Schedule::from_config(&text).map_err(|e| ScheduleError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Bytes per second allowed at `t` (None: unlimited). `t` is read as wall-clock time in its
    /// own offset, so pass the appliance's local time (what [`SystemClock::wall`] gives).
    pub fn rate_at(&self, t: OffsetDateTime) -> Option<u64> {
        let minute = TimeOfDay(u16::from(t.hour()) * 60 + u16::from(t.minute()));
        let day = t.weekday();
        self.windows
            .iter()
            .find(|w| w.contains(day, minute))
            .map_or(self.default, |w| w.rate)
            .bytes_per_second()
    }
}

// ---------------------------------------------------------------------------------------------
// Reloading

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below is a plain assignment of finished values, so a panicking holder
    // cannot leave the state half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The whole chain, for one log line: `Display` leaves out the sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A schedule read from a replication config file and read again whenever the file changes,
/// so an operator can change the limit without restarting the service.
pub struct ScheduleSource {
    path: PathBuf,
    state: Mutex<SourceState>,
}

struct SourceState {
    schedule: Arc<Schedule>,
    /// Modification time and length of the file when last looked at (None: it could not be
    /// looked at). Either changing means someone wrote the file.
    seen: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
    problem: Option<Arc<ScheduleError>>,
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.modified()?, m.len()))
}

impl ScheduleSource {
    /// Read `path` now. A missing or invalid file is an error here, while an operator is
    /// watching the service start; later, a bad edit keeps the schedule read before.
    pub fn open(path: impl Into<PathBuf>) -> Result<ScheduleSource, ScheduleError> {
        let path = path.into();
        // Look before reading: a write between the two then shows as a change next time,
        // where the other order would miss it for good.
        let seen = stamp(&path).map_err(|source| ScheduleError::Read {
            path: path.clone(),
            source,
        })?;
        let schedule = Schedule::load(&path)?;
        Ok(ScheduleSource {
            path,
            state: Mutex::new(SourceState {
                schedule: Arc::new(schedule),
                seen: Some(seen),
                checked: None,
                problem: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current schedule; the file is looked at when `now` is a second or more after the
    /// last look.
    pub fn schedule(&self, now: Instant) -> Arc<Schedule> {
        let mut st = lock(&self.state);
        if st
            .checked
            .is_none_or(|c| now.saturating_duration_since(c) >= RECHECK)
        {
            st.checked = Some(now);
            self.refresh(&mut st);
        }
        st.schedule.clone()
    }

    /// Why the file's current contents are not in use (None: they are), for a status display.
    pub fn problem(&self) -> Option<Arc<ScheduleError>> {
        lock(&self.state).problem.clone()
    }

    fn refresh(&self, st: &mut SourceState) {
        let now_seen = match stamp(&self.path) {
            Ok(s) => s,
            Err(source) => {
                // Warn once when the file goes away, not every second while it stays away.
                if st.seen.take().is_some() {
                    let e = ScheduleError::Read {
                        path: self.path.clone(),
                        source,
                    };
                    tracing::warn!("{}; keeping the bandwidth schedule read before", chain(&e));
                    st.problem = Some(Arc::new(e));
                }
                return;
            }
        };
        if st.seen == Some(now_seen) {
            return;
        }
        st.seen = Some(now_seen);
        match Schedule::load(&self.path) {
            Ok(s) => {
                if *st.schedule != s {
                    tracing::info!("{}: bandwidth schedule reloaded", self.path.display());
                }
                st.schedule = Arc::new(s);
                st.problem = None;
            }
            Err(e) => {
                tracing::warn!("{}; keeping the bandwidth schedule read before", chain(&e));
                st.problem = Some(Arc::new(e));
            }
        }
    }
}

/// Where a [`Limiter`] gets the rate from.
pub trait RateSource: Send + Sync {
    /// Bytes per second allowed at local wall-clock time `wall` (None: unlimited). `now` is
    /// the limiter's monotonic time, for sources that look at files at most so often.
    fn rate(&self, now: Instant, wall: OffsetDateTime) -> Option<u64>;
}

impl RateSource for Schedule {
    fn rate(&self, _now: Instant, wall: OffsetDateTime) -> Option<u64> {
        self.rate_at(wall)
    }
}

impl RateSource for ScheduleSource {
    fn rate(&self, now: Instant, wall: OffsetDateTime) -> Option<u64> {
        self.schedule(now).rate_at(wall)
    }
}

// ---------------------------------------------------------------------------------------------
// Clock

/// Time as the limiter sees it; tests substitute a clock whose `sleep` only moves time on.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    /// Local wall-clock time, for the schedule's windows.
    fn wall(&self) -> OffsetDateTime;
    fn sleep(&self, d: Duration);
}

/// The real clock, with wall-clock time at a fixed UTC offset.
///
/// Pass `UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)` (the `local-offset`
/// feature of `time`), taken before the process starts threads: on Linux `time` refuses to
/// read the local offset once there are several, and quietly getting UTC would shift every
/// window. The offset stays fixed: after a daylight-saving change the windows are an hour off
/// until the service restarts.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    offset: UtcOffset,
}

impl SystemClock {
    pub fn new(offset: UtcOffset) -> SystemClock {
        SystemClock { offset }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc().to_offset(self.offset)
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

// ---------------------------------------------------------------------------------------------
// Limiter

/// Bytes are counted in nano-bytes (bytes × 10⁹) so that a rate in bytes per second times an
/// interval in nanoseconds is an exact integer: no rounding drift over a long transfer.
const NANO: u128 = 1_000_000_000;

fn burst(rate: u64) -> u64 {
    (rate / 4).max(MIN_BURST)
}

/// A token bucket that blocks the sender until the schedule allows its bytes.
///
/// Takers queue in order: each [`take`](Limiter::take) reserves the next `n` bytes of the
/// stream and waits until time has paid for them, so a large take does not starve behind small
/// ones nor let small ones overtake it. The bucket holds at most a quarter second at the
/// current rate (at least 64 KiB), and starts empty, so a restart loop cannot send a burst on
/// top of what went out just before.
///
/// A take of `n` bytes waits about `n / rate` in sleeps of at most a second, looking at the
/// schedule again after each, but the caller then sends all `n` at once. To keep the link smooth
/// rather than idle-then-flooded, callers split what they send into pieces of at most
/// [`piece_len`](Limiter::piece_len) bytes and take each before sending it.
pub struct Limiter {
    rates: Arc<dyn RateSource>,
    clock: Arc<dyn Clock>,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    /// Nano-bytes reserved by takers since the start.
    reserved: u128,
    /// Nano-bytes time has paid for since the start; `earned - reserved` is the bucket's fill
    /// (negative while takers wait), capped at the burst.
    earned: u128,
    at: Instant,
    /// The rate found at `at`.
    rate: Option<u64>,
}

/// A place in the limiter's queue: the bytes up to `end` (nano-bytes) may go once earned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    end: u128,
}

impl Limiter {
    pub fn new(rates: Arc<dyn RateSource>, clock: Arc<dyn Clock>) -> Limiter {
        let at = clock.now();
        let rate = rates.rate(at, clock.wall());
        Limiter {
            rates,
            clock,
            bucket: Mutex::new(Bucket {
                reserved: 0,
                earned: 0,
                at,
                rate,
            }),
        }
    }

    /// Block until `n` more bytes may be sent.
    pub fn take(&self, n: u64) {
        if n == 0 {
            return;
        }
        let ticket = self.reserve(n);
        loop {
            let wait = self.wait_for(ticket);
            if wait.is_zero() {
                return;
            }
            self.clock.sleep(wait.min(RECHECK));
        }
    }

    /// Queue `n` bytes without blocking, for callers that wait their own way (an async task
    /// sleeping on its runtime): poll [`wait_for`](Limiter::wait_for) until it is zero,
    /// sleeping at most a second at a time so a schedule change is noticed.
    pub fn reserve(&self, n: u64) -> Ticket {
        let mut b = self.refilled();
        b.reserved += u128::from(n) * NANO;
        if b.rate.is_none() {
            b.earned = b.reserved;
        }
        Ticket { end: b.reserved }
    }

    /// How long until the ticket's bytes may go at the current rate (zero: now).
    pub fn wait_for(&self, ticket: Ticket) -> Duration {
        let b = self.refilled();
        match b.rate {
            _ if b.earned >= ticket.end => Duration::ZERO,
            None => Duration::ZERO,
            Some(r) => {
                let ns = (ticket.end - b.earned).div_ceil(u128::from(r));
                Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
            }
        }
    }

    /// The rate allowed now (None: unlimited).
    pub fn rate(&self) -> Option<u64> {
        self.rates.rate(self.clock.now(), self.clock.wall())
    }

    /// The largest piece worth taking at once at the current rate (u64::MAX when unlimited).
    pub fn piece_len(&self) -> u64 {
        self.rate().map_or(u64::MAX, burst)
    }

    /// Bytes taken so far, including those still waiting.
    pub fn taken(&self) -> u64 {
        u64::try_from(lock(&self.bucket).reserved / NANO).unwrap_or(u64::MAX)
    }

    /// The bucket brought up to now.
    fn refilled(&self) -> MutexGuard<'_, Bucket> {
        // Ask the source before locking: it may read a file.
        let now = self.clock.now();
        let rate = self.rates.rate(now, self.clock.wall());
        let mut b = lock(&self.bucket);
        let elapsed = now.saturating_duration_since(b.at);
        // An interval that straddles a window change is paid at the lower of its two rates,
        // so the limit of either window is never exceeded.
        let paid = match (b.rate, rate) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        };
        match paid {
            None => b.earned = b.reserved,
            Some(r) => {
                let gained = u128::from(r).saturating_mul(elapsed.as_nanos());
                let cap = b.reserved + u128::from(burst(rate.unwrap_or(r))) * NANO;
                b.earned = b.earned.saturating_add(gained).min(cap);
            }
        }
        // Where the rate turns unlimited, waiting takers go at once; a bucket left that way
        // is empty, so the next limited window starts without a burst.
        if rate.is_none() {
            b.earned = b.earned.max(b.reserved);
        }
        b.at = b.at.max(now);
        b.rate = rate;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::{datetime, offset};

    fn sched(toml: &str) -> Schedule {
        Schedule::from_config(toml).expect("valid schedule")
    }

    fn rate(s: &str) -> Result<u64, ValueError> {
        s.parse::<Rate>()
            .map(|r| r.bytes_per_second().expect("a limited rate"))
    }

    const OFFICE: &str = r#"
        [bandwidth]
        default = "unlimited"
        [[bandwidth.window]]
        days = "mon-fri"
        from = "08:00"
        to = "18:00"
        rate = "2MB/s"
    "#;

    // --- parsing ---------------------------------------------------------------------------

    #[test]
    fn every_unit() {
        for (text, want) in [
            ("1B/s", 1),
            ("800kB/s", 800_000),
            ("50MB/s", 50_000_000),
            ("2GB/s", 2_000_000_000),
            ("3KiB/s", 3 << 10),
            ("2MiB/s", 2 << 20),
            ("1GiB/s", 1 << 30),
            ("16000000000GiB/s", 16_000_000_000 << 30),
            ("16bit/s", 2),
            ("8kbit/s", 1_000),
            ("100Mbit/s", 12_500_000),
            ("1Gbit/s", 125_000_000),
            ("1.5MB/s", 1_500_000),
            ("0.5MiB/s", 512 << 10),
            (" 2 MB/s ", 2_000_000),
        ] {
            assert_eq!(rate(text), Ok(want), "{text}");
        }
        for text in ["unlimited", "Unlimited", " UNLIMITED "] {
            assert_eq!(text.parse::<Rate>(), Ok(Rate::Unlimited));
        }
    }

    #[test]
    fn bad_rates_are_named() {
        for (text, problem) in [
            ("", Problem::Syntax),
            ("fast", Problem::Syntax),
            ("MB/s", Problem::Syntax),
            ("1.MB/s", Problem::Syntax),
            ("1.2.3MB/s", Problem::Syntax),
            ("2MB", Problem::NotPerSecond),
            ("2MB/h", Problem::NotPerSecond),
            ("2XB/s", Problem::Unit("XB".into())),
            ("2KB/s", Problem::Unit("KB".into())),
            ("2mb/s", Problem::Unit("mb".into())),
            ("0MB/s", Problem::TooSmall),
            ("4bit/s", Problem::TooSmall),
            ("0.0000000001B/s", Problem::Syntax),
            ("99999999999999999999GB/s", Problem::TooLarge),
            ("999999999999999999999999B/s", Problem::TooLarge),
        ] {
            let e = text.parse::<Rate>().expect_err(text);
            assert_eq!(e.problem, problem, "{text}");
            assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
        }
    }

    #[test]
    fn rates_print_back_to_themselves() {
        for text in [
            "2MB/s",
            "2MiB/s",
            "12500kB/s",
            "7B/s",
            "unlimited",
            "3GiB/s",
            "1KiB/s",
        ] {
            let r: Rate = text.parse().expect(text);
            assert_eq!(r.to_string(), text);
        }
    }

    #[test]
    fn days_lists_and_ranges() {
        let days = |s: &str| s.parse::<Days>().expect(s);
        assert_eq!(days("mon-fri"), Days(0b001_1111));
        assert_eq!(days("sat,sun"), Days(0b110_0000));
        assert_eq!(days("mon,wed,fri"), Days(0b001_0101));
        assert_eq!(days("daily"), Days::ALL);
        assert_eq!(days("Monday - Wednesday, SUN"), Days(0b100_0111));
        assert_eq!(days("fri-mon"), Days(0b111_0001));
        assert_eq!(days("tue-tue"), Days(0b000_0010));
        for (text, part) in [
            ("mon-fr", "fr"),
            ("", ""),
            ("mon,,fri", ""),
            ("weekdays", "weekdays"),
        ] {
            let e = text.parse::<Days>().expect_err(text);
            assert_eq!(e.problem, Problem::Day(part.into()), "{text}");
        }
    }

    #[test]
    fn times() {
        let t = |s: &str| s.parse::<TimeOfDay>().map(|t| t.0);
        assert_eq!(t("08:00"), Ok(480));
        assert_eq!(t("8:05"), Ok(485));
        assert_eq!(t("23:59"), Ok(1439));
        assert_eq!(t("24:00"), Ok(1440));
        for bad in [
            "24:01", "25:00", "08:60", "8", "08:0", "008:00", "-1:00", "08:00:00", "ab:cd",
        ] {
            assert_eq!(
                t(bad),
                Err(ValueError {
                    text: bad.into(),
                    problem: Problem::Time
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_errors_name_field_and_text() {
        let cases = [
            ("default = \"2XB/s\"", "[bandwidth] default = \"2XB/s\""),
            (
                "[[bandwidth.window]]\ndays = \"daily\"\nfrom = \"08:00\"\nto = \"18:00\"\nrate = \"1MB/s\"\n\
                 [[bandwidth.window]]\ndays = \"mon-fry\"\nfrom = \"08:00\"\nto = \"18:00\"\nrate = \"1MB/s\"",
                "[bandwidth] window 2 days = \"mon-fry\": \"fry\" is not a day",
            ),
            (
                "[[bandwidth.window]]\ndays = \"daily\"\nfrom = \"8h\"\nto = \"18:00\"\nrate = \"1MB/s\"",
                "[bandwidth] window 1 from = \"8h\"",
            ),
            (
                "[[bandwidth.window]]\ndays = \"daily\"\nfrom = \"08:00\"\nto = \"18:00\"\nrate = \"fast\"",
                "[bandwidth] window 1 rate = \"fast\"",
            ),
            (
                "[[bandwidth.window]]\ndays = \"daily\"\nfrom = \"24:00\"\nto = \"06:00\"\nrate = \"1MB/s\"",
                "[bandwidth] window 1 from = \"24:00\": a window cannot start at 24:00",
            ),
            (
                "[[bandwidth.window]]\ndays = \"daily\"\nfrom = \"08:00\"\nto = \"8:00\"\nrate = \"1MB/s\"",
                "[bandwidth] window 1: from and to are both 08:00",
            ),
        ];
        for (body, want) in cases {
            let e = Schedule::from_config(&format!("[bandwidth]\n{body}")).expect_err(body);
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn shape_errors_give_the_line() {
        let e = Schedule::from_config("version = 1\n[bandwidth]\ndefualt = \"1MB/s\"\n")
            .expect_err("typo");
        assert!(
            matches!(&e, ScheduleError::Toml { line: 3, message } if message.contains("defualt")),
            "{e:?}"
        );
        let e = Schedule::from_config(
            "[bandwidth]\n\n[[bandwidth.window]]\ndays = \"daily\"\nfrom = \"08:00\"\nto = \"18:00\"\n",
        )
        .expect_err("no rate");
        assert!(e.to_string().contains("rate"), "{e}");
        let e = Schedule::from_config("[bandwidth]\ndefault = 2000000\n").expect_err("number");
        assert!(matches!(e, ScheduleError::Toml { line: 2, .. }), "{e:?}");
    }

    #[test]
    fn other_tables_are_left_alone_and_no_table_is_unlimited() {
        let s = sched("version = 1\ntarget = \"x\"\n[retention]\nkeep = 3\n");
        assert_eq!(s, Schedule::unlimited());
        let s = sched("[bandwidth]\n");
        assert_eq!(s, Schedule::unlimited());
        let s = sched("[other]\nx = 1\n[bandwidth]\ndefault = \"3MB/s\"\n");
        assert_eq!(s, fixed("3MB/s"));
    }

    #[test]
    fn embeds_in_a_larger_config() {
        #[derive(Deserialize)]
        struct Cfg {
            bandwidth: Schedule,
        }
        let c: Cfg = toml::from_str(OFFICE).expect("valid");
        assert_eq!(c.bandwidth, sched(OFFICE));
        let e = toml::from_str::<Cfg>("[bandwidth]\ndefault = \"2 parsecs\"\n")
            .err()
            .expect("invalid");
        assert!(e.to_string().contains("\"2 parsecs\""), "{e}");
    }

    // --- rate_at ---------------------------------------------------------------------------

    #[test]
    fn office_hours_boundaries() {
        let s = sched(OFFICE);
        // 2024-06-07 is a Friday.
        assert_eq!(s.rate_at(datetime!(2024-06-07 07:59:59 +02:00)), None);
        assert_eq!(
            s.rate_at(datetime!(2024-06-07 08:00 +02:00)),
            Some(2_000_000)
        );
        assert_eq!(
            s.rate_at(datetime!(2024-06-07 17:59 +02:00)),
            Some(2_000_000)
        );
        assert_eq!(
            s.rate_at(datetime!(2024-06-07 17:59:59.999 +02:00)),
            Some(2_000_000)
        );
        assert_eq!(s.rate_at(datetime!(2024-06-07 18:00 +02:00)), None);
        assert_eq!(s.rate_at(datetime!(2024-06-08 10:00 +02:00)), None);
        assert_eq!(
            s.rate_at(datetime!(2024-06-10 10:00 +02:00)),
            Some(2_000_000)
        );
        // The same instant, read in another offset, is another wall-clock time.
        let t = datetime!(2024-06-07 07:30 +02:00);
        assert_eq!(s.rate_at(t), None);
        assert_eq!(s.rate_at(t.to_offset(offset!(+03:00))), Some(2_000_000));
    }

    #[test]
    fn first_matching_window_wins_and_overnight_windows() {
        let s = sched(
            r#"
            [bandwidth]
            default = "10MB/s"
            [[bandwidth.window]]
            days = "mon-fri"
            from = "08:00"
            to = "18:00"
            rate = "2MB/s"
            [[bandwidth.window]]
            days = "daily"
            from = "07:00"
            to = "19:00"
            rate = "5MB/s"
            [[bandwidth.window]]
            days = "sun"
            from = "22:00"
            to = "06:00"
            rate = "unlimited"
            "#,
        );
        let at = |t| s.rate_at(t);
        assert_eq!(at(datetime!(2024-06-07 12:00 UTC)), Some(2_000_000)); // Friday
        assert_eq!(at(datetime!(2024-06-07 07:30 UTC)), Some(5_000_000));
        assert_eq!(at(datetime!(2024-06-08 12:00 UTC)), Some(5_000_000)); // Saturday
        assert_eq!(at(datetime!(2024-06-08 23:00 UTC)), Some(10_000_000));
        // Sunday night into Monday morning.
        assert_eq!(at(datetime!(2024-06-09 21:59 UTC)), Some(10_000_000));
        assert_eq!(at(datetime!(2024-06-09 22:00 UTC)), None);
        assert_eq!(at(datetime!(2024-06-09 23:59:59 UTC)), None);
        assert_eq!(at(datetime!(2024-06-10 00:00 UTC)), None); // Monday
        assert_eq!(at(datetime!(2024-06-10 05:59 UTC)), None);
        assert_eq!(at(datetime!(2024-06-10 06:00 UTC)), Some(10_000_000));
        // The morning part belongs to the day after a listed day only.
        assert_eq!(at(datetime!(2024-06-09 03:00 UTC)), Some(10_000_000)); // Sunday
        assert_eq!(at(datetime!(2024-06-10 22:30 UTC)), Some(10_000_000)); // Monday
    }

    #[test]
    fn overnight_window_on_weeknights() {
        let s = sched(
            "[bandwidth]\ndefault = \"1MB/s\"\n[[bandwidth.window]]\ndays = \"mon-fri\"\n\
             from = \"20:00\"\nto = \"06:00\"\nrate = \"unlimited\"\n",
        );
        assert_eq!(s.rate_at(datetime!(2024-06-07 23:00 UTC)), None); // Friday night
        assert_eq!(s.rate_at(datetime!(2024-06-08 05:59 UTC)), None); // Saturday morning
        assert_eq!(s.rate_at(datetime!(2024-06-08 21:00 UTC)), Some(1_000_000));
        assert_eq!(s.rate_at(datetime!(2024-06-10 03:00 UTC)), Some(1_000_000)); // Monday
        let whole_day = sched(
            "[bandwidth]\n[[bandwidth.window]]\ndays = \"sat\"\nfrom = \"00:00\"\n\
             to = \"24:00\"\nrate = \"1MB/s\"\n",
        );
        assert_eq!(
            whole_day.rate_at(datetime!(2024-06-08 00:00 UTC)),
            Some(1_000_000)
        );
        assert_eq!(
            whole_day.rate_at(datetime!(2024-06-08 23:59:59 UTC)),
            Some(1_000_000)
        );
        assert_eq!(whole_day.rate_at(datetime!(2024-06-09 00:00 UTC)), None);
    }

    // --- the limiter -----------------------------------------------------------------------

    /// Time moves only when someone sleeps.
    struct FakeClock {
        base: Instant,
        wall0: OffsetDateTime,
        state: Mutex<(Duration, Vec<Duration>)>,
    }

    impl FakeClock {
        fn at(wall0: OffsetDateTime) -> Arc<FakeClock> {
            Arc::new(FakeClock {
                base: Instant::now(),
                wall0,
                state: Mutex::new((Duration::ZERO, Vec::new())),
            })
        }

        fn elapsed(&self) -> Duration {
            lock(&self.state).0
        }

        fn sleeps(&self) -> Vec<Duration> {
            lock(&self.state).1.clone()
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.base + self.elapsed()
        }

        fn wall(&self) -> OffsetDateTime {
            self.wall0 + self.elapsed()
        }

        fn sleep(&self, d: Duration) {
            let mut st = lock(&self.state);
            st.0 += d;
            st.1.push(d);
        }
    }

    fn limiter(s: Schedule, clock: &Arc<FakeClock>) -> Limiter {
        Limiter::new(Arc::new(s), clock.clone())
    }

    fn fixed(text: &str) -> Schedule {
        Schedule::fixed(text.parse().expect(text))
    }

    /// Send `total` bytes the way a sender should: in pieces no larger than the limiter says.
    fn send(l: &Limiter, mut total: u64) {
        while total > 0 {
            let n = l.piece_len().min(total);
            l.take(n);
            total -= n;
        }
    }

    const FRIDAY_NOON: OffsetDateTime = datetime!(2024-06-07 12:00 UTC);

    #[test]
    fn ten_megabytes_at_two_megabytes_per_second_take_five_seconds() {
        let clock = FakeClock::at(FRIDAY_NOON);
        let l = limiter(fixed("2MB/s"), &clock);
        send(&l, 10_000_000);
        let secs = clock.elapsed().as_secs_f64();
        assert!((4.75..=5.25).contains(&secs), "{secs}");
        assert_eq!(l.taken(), 10_000_000);
        // Several waits of a quarter second, not one lump.
        let sleeps = clock.sleeps();
        assert!(sleeps.len() >= 20, "{sleeps:?}");
        assert!(
            sleeps.iter().all(|d| *d <= Duration::from_millis(250)),
            "{sleeps:?}"
        );
    }

    #[test]
    fn one_large_take_waits_in_steps_of_at_most_a_second() {
        let clock = FakeClock::at(FRIDAY_NOON);
        let l = limiter(fixed("2MB/s"), &clock);
        l.take(10_000_000);
        assert_eq!(clock.elapsed(), Duration::from_secs(5));
        assert!(clock.sleeps().iter().all(|d| *d <= RECHECK));
    }

    #[test]
    fn unlimited_takes_no_time() {
        let clock = FakeClock::at(FRIDAY_NOON);
        let l = limiter(Schedule::unlimited(), &clock);
        send(&l, 10_000_000_000);
        l.take(u64::MAX / 2);
        assert_eq!(clock.elapsed(), Duration::ZERO);
        assert_eq!(l.piece_len(), u64::MAX);
        assert_eq!(l.rate(), None);
    }

    #[test]
    fn an_idle_bucket_allows_a_burst_of_a_quarter_second() {
        let clock = FakeClock::at(FRIDAY_NOON);
        let l = limiter(fixed("2MB/s"), &clock);
        clock.sleep(Duration::from_secs(60));
        l.take(500_000);
        assert_eq!(clock.elapsed(), Duration::from_secs(60));
        l.take(500_000);
        assert_eq!(clock.elapsed(), Duration::from_millis(60_250));
        // At low rates the bucket still holds 64 KiB.
        let l = limiter(fixed("1kB/s"), &clock);
        clock.sleep(Duration::from_secs(600));
        let before = clock.elapsed();
        l.take(64 << 10);
        assert_eq!(clock.elapsed(), before);
    }

    #[test]
    fn a_window_starting_mid_transfer_changes_the_rate() {
        let s = sched(
            "[bandwidth]\ndefault = \"1MB/s\"\n[[bandwidth.window]]\ndays = \"mon-fri\"\n\
             from = \"08:00\"\nto = \"18:00\"\nrate = \"4MB/s\"\n",
        );
        let clock = FakeClock::at(datetime!(2024-06-07 07:59:57 UTC));
        let l = limiter(s, &clock);
        // Three seconds at 1 MB/s, then 4 MB at 4 MB/s: four seconds, not seven.
        send(&l, 7_000_000);
        let secs = clock.elapsed().as_secs_f64();
        assert!((3.9..=4.2).contains(&secs), "{secs}");
    }

    #[test]
    fn a_window_ending_mid_transfer_lifts_the_limit() {
        let clock = FakeClock::at(datetime!(2024-06-07 17:59:58 UTC));
        let l = limiter(sched(OFFICE), &clock);
        // One large take: the wait notices 18:00 within a second and lets it go.
        l.take(100_000_000);
        let secs = clock.elapsed().as_secs_f64();
        assert!((2.0..=3.0).contains(&secs), "{secs}");
        let before = clock.elapsed();
        send(&l, 1 << 30);
        assert_eq!(clock.elapsed(), before);
    }

    #[test]
    fn takers_queue_in_order() {
        let clock = FakeClock::at(FRIDAY_NOON);
        let l = limiter(fixed("1MB/s"), &clock);
        let big = l.reserve(2_000_000);
        let small = l.reserve(1_000);
        // The small one queued behind the big one: it waits for both.
        assert_eq!(l.wait_for(big), Duration::from_secs(2));
        assert_eq!(l.wait_for(small), Duration::from_millis(2_001));
        clock.sleep(Duration::from_secs(2));
        assert_eq!(l.wait_for(big), Duration::ZERO);
        assert_eq!(l.wait_for(small), Duration::from_millis(1));
    }

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Limiter>();
        send_sync::<ScheduleSource>();
        // Real time, lower bound only: 200 kB at 1 MB/s cannot go in under 0.2 s.
        let l = Arc::new(Limiter::new(
            Arc::new(fixed("1MB/s")),
            Arc::new(SystemClock::new(UtcOffset::UTC)),
        ));
        let start = Instant::now();
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        l.take(10_000);
                    }
                })
            })
            .collect();
        let status = {
            let l = l.clone();
            std::thread::spawn(move || {
                let mut seen = 0;
                while seen < 200_000 {
                    assert_eq!(l.rate(), Some(1_000_000));
                    seen = l.taken();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        for t in senders {
            t.join().expect("sender");
        }
        status.join().expect("status reader");
        assert!(
            start.elapsed() >= Duration::from_millis(195),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn system_clock_reads_wall_time_in_its_offset() {
        let c = SystemClock::new(offset!(+05:30));
        assert_eq!(c.wall().offset(), offset!(+05:30));
    }

    proptest! {
        #[test]
        fn never_faster_than_the_rate(
            rate in 10_000u64..=50_000_000,
            sizes in proptest::collection::vec(1u64..=1_000_000, 1..16),
            idle_first in any::<bool>(),
        ) {
            let clock = FakeClock::at(FRIDAY_NOON);
            let l = limiter(Schedule::fixed(Rate::BytesPerSecond(
                NonZeroU64::new(rate).expect("nonzero"))), &clock);
            if idle_first {
                clock.sleep(Duration::from_secs(3600));
            }
            let start = clock.elapsed();
            for &n in &sizes {
                l.take(n);
            }
            let spent = (clock.elapsed() - start).as_nanos();
            let total = u128::from(sizes.iter().sum::<u64>());
            let allowance = if idle_first { u128::from(burst(rate)) } else { 0 };
            let floor = total.saturating_sub(allowance) * NANO / u128::from(rate);
            prop_assert!(spent >= floor, "{spent} < {floor}");
            // And not slower either, beyond a nanosecond of rounding per sleep.
            let ceiling = total * NANO / u128::from(rate) + clock.sleeps().len() as u128;
            prop_assert!(spent <= ceiling, "{spent} > {ceiling}");
        }

        #[test]
        fn any_rate_prints_back(n in 1u64..) {
            let r = Rate::BytesPerSecond(NonZeroU64::new(n).expect("nonzero"));
            prop_assert_eq!(r.to_string().parse::<Rate>(), Ok(r));
        }
    }

    // --- reloading -------------------------------------------------------------------------

    fn write_at(path: &Path, text: &str, mtime_secs: u64) {
        std::fs::write(path, text).expect("write config");
        std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open config")
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_secs))
            .expect("set mtime");
    }

    fn config(rate: &str) -> String {
        format!("version = 1\n[bandwidth]\ndefault = \"{rate}\"\n")
    }

    #[test]
    fn reloads_when_the_file_changes_and_keeps_the_last_good_schedule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replication.toml");
        write_at(&path, &config("1MB/s"), 1_700_000_000);
        let src = ScheduleSource::open(&path).expect("open");
        let t0 = Instant::now();
        let w = FRIDAY_NOON;
        assert_eq!(src.schedule(t0).rate_at(w), Some(1_000_000));

        write_at(&path, &config("5MB/s"), 1_700_000_010);
        // Looked at no more than once a second.
        assert_eq!(
            src.schedule(t0 + Duration::from_millis(500)).rate_at(w),
            Some(1_000_000)
        );
        assert_eq!(
            src.schedule(t0 + Duration::from_secs(1)).rate_at(w),
            Some(5_000_000)
        );
        assert!(src.problem().is_none());

        write_at(&path, &config("5 parsecs"), 1_700_000_020);
        assert_eq!(
            src.schedule(t0 + Duration::from_secs(2)).rate_at(w),
            Some(5_000_000)
        );
        let problem = chain(&*src.problem().expect("a problem"));
        assert!(problem.contains("replication.toml"), "{problem}");
        assert!(problem.contains("\"5 parsecs\""), "{problem}");

        // Same mtime, different length: still noticed.
        write_at(&path, &config("3MiB/s"), 1_700_000_020);
        assert_eq!(
            src.schedule(t0 + Duration::from_secs(3)).rate_at(w),
            Some(3 << 20)
        );
        assert!(src.problem().is_none());

        // A deleted file keeps the schedule too.
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(
            src.schedule(t0 + Duration::from_secs(4)).rate_at(w),
            Some(3 << 20)
        );
        assert!(matches!(
            src.problem().as_deref(),
            Some(ScheduleError::Read { .. })
        ));
        write_at(&path, &config("2MB/s"), 1_700_000_030);
        assert_eq!(
            src.schedule(t0 + Duration::from_secs(5)).rate_at(w),
            Some(2_000_000)
        );
    }

    #[test]
    fn open_refuses_a_missing_or_invalid_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replication.toml");
        let e = ScheduleSource::open(&path).err().expect("missing");
        assert!(matches!(e, ScheduleError::Read { .. }), "{e:?}");
        write_at(&path, &config("2KB/s"), 1_700_000_000);
        let e = ScheduleSource::open(&path).err().expect("invalid");
        let text = chain(&e);
        assert!(
            text.contains("replication.toml") && text.contains("\"2KB/s\""),
            "{text}"
        );
    }

    #[test]
    fn the_limiter_follows_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replication.toml");
        write_at(&path, &config("1MB/s"), 1_700_000_000);
        let src = Arc::new(ScheduleSource::open(&path).expect("open"));
        let clock = FakeClock::at(FRIDAY_NOON);
        let l = Limiter::new(src.clone(), clock.clone());
        send(&l, 2_000_000);
        assert_eq!(clock.elapsed(), Duration::from_secs(2));
        write_at(&path, &config("5MB/s"), 1_700_000_010);
        // The file is looked at a second after the last look; meanwhile the bucket fills by
        // that second's worth at the old rate.
        clock.sleep(RECHECK);
        let before = clock.elapsed();
        send(&l, 10_000_000);
        let secs = (clock.elapsed() - before).as_secs_f64();
        assert!((1.75..=1.85).contains(&secs), "{secs}");
        assert_eq!(l.rate(), Some(5_000_000));
    }

    #[test]
    fn a_changed_file_takes_effect_within_a_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replication.toml");
        write_at(&path, &config("1MB/s"), 1_700_000_000);
        let src = Arc::new(ScheduleSource::open(&path).expect("open"));
        let clock = FakeClock::at(FRIDAY_NOON);
        let l = Limiter::new(src.clone(), clock.clone());
        send(&l, 2_000_000);
        write_at(&path, &config("5MB/s"), 1_700_000_010);
        let before = clock.elapsed();
        send(&l, 10_000_000);
        // At worst one more second at 1 MB/s, then 9 MB at 5 MB/s.
        let secs = (clock.elapsed() - before).as_secs_f64();
        assert!((1.9..=2.85).contains(&secs), "{secs}");
    }
}
