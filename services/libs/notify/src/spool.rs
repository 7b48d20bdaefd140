//! A durable first-in first-out queue of notifications for one target: a directory with one
//! file per entry.
//!
//! One file per entry, written with [`write_atomic`], means an append is one small crash-safe
//! write and a delivery one unlink, whatever the queue's length; a crash leaves whole entries
//! only. Names are the zero-padded spool sequence number (`00000000000000000042.json`), so
//! the directory listing sorted by name is the queue, and the queue survives restarts with no
//! index to rebuild or trust.
//!
//! The spool is bounded because the appliance runs for years and a receiver may be gone for
//! good: over the entry or byte cap, entries are dropped lowest priority first (`record`, then
//! `notify`, then P3, P2, P1), oldest first within a priority, so paging alerts survive an
//! outage that floods the queue with minor ones. Anything that is not a well-formed entry (a
//! truncated or foreign file, a notification the receiver refused for good) is moved to the
//! `set-aside` subdirectory with a `.why` file beside it, itself bounded, for a person to look
//! at; it never stops the service.
//!
//! One process owns a spool directory.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiervault_alerts::Priority;
use tiervault_sys::durable::write_atomic;

use crate::error::config_error;
use crate::{Notification, NotifyError};

/// The subdirectory of a spool that holds what was set aside.
pub const SET_ASIDE_DIR: &str = "set-aside";

// Notifications name hosts, arrays and customers: readable by the service's group (support
// tooling), not by everyone.
const ENTRY_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;
/// Entries are a few KiB (alert texts are capped at 4 KiB each); anything much larger is not
/// ours and is not read into memory.
const MAX_ENTRY_BYTES: u64 = 1 << 20;
const ENTRY_SUFFIX: &str = ".json";
const NAME_DIGITS: usize = 20;

/// How much a spool may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SpoolCaps {
    /// Most entries waiting.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Most bytes of entries waiting.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Most set-aside entries kept for inspection; the oldest are deleted beyond.
    #[serde(default = "default_max_set_aside")]
    pub max_set_aside: usize,
}

fn default_max_entries() -> usize {
    10_000
}

fn default_max_bytes() -> u64 {
    64 << 20
}

fn default_max_set_aside() -> usize {
    1_000
}

impl Default for SpoolCaps {
    fn default() -> Self {
        SpoolCaps {
            max_entries: default_max_entries(),
            max_bytes: default_max_bytes(),
            max_set_aside: default_max_set_aside(),
        }
    }
}

impl SpoolCaps {
    pub fn validate(&self, context: &str) -> Result<(), NotifyError> {
        if self.max_entries == 0 {
            return Err(config_error(context, "max-entries", "must be at least 1"));
        }
        // Below this one maximal notification would not fit and every append would drop it.
        if self.max_bytes < 64 * 1024 {
            return Err(config_error(context, "max-bytes", "must be at least 65536"));
        }
        if self.max_set_aside == 0 {
            return Err(config_error(
                context,
                "max-set-aside",
                "must be at least 1: keep the evidence of the latest failure",
            ));
        }
        Ok(())
    }
}

/// An entry or foreign file moved to the set-aside directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Its name in the spool directory.
    pub name: String,
    /// Where it is now.
    pub to: PathBuf,
    pub reason: String,
}

/// What [`Spool::open`] found besides the entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolOpenReport {
    /// Damaged entries and foreign files, moved aside.
    pub set_aside: Vec<SetAside>,
    /// Temporary files of writes a crash interrupted, deleted.
    pub removed_temporaries: usize,
    /// Entries dropped because the caps are lower than when they were written.
    pub dropped: Dropped,
}

/// Entries dropped to stay under the caps, by priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub record: usize,
    pub notify: usize,
    /// P1 to P3: only once no `record` or `notify` entry was left to drop.
    pub paging: usize,
}

impl Dropped {
    pub fn total(&self) -> usize {
        self.record + self.notify + self.paging
    }

    fn count(&mut self, priority: Priority) {
        match priority {
            Priority::Record => self.record += 1,
            Priority::Notify => self.notify += 1,
            _ => self.paging += 1,
        }
    }

    pub(crate) fn add(&mut self, other: Dropped) {
        self.record += other.record;
        self.notify += other.notify;
        self.paging += other.paging;
    }
}

/// What [`Spool::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The entry's spool sequence number.
    pub seq: u64,
    /// What was dropped to make room (possibly the new entry itself, if it is the least
    /// important and the spool is full of more important ones).
    pub dropped: Dropped,
}

/// The head of a spool, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub seq: u64,
    pub notification: Notification,
}

/// Counters of a spool since it was opened, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub pending: usize,
    pub bytes: u64,
    pub dropped: u64,
    pub set_aside: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    bytes: u64,
    priority: Priority,
}

/// A durable FIFO of notifications in one directory (see the module docs).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    caps: SpoolCaps,
    entries: VecDeque<Entry>,
    bytes: u64,
    next_seq: u64,
    dropped_total: u64,
    set_aside_total: u64,
    /// The last set-aside name prefix handed out: names must stay unique and ordered even
    /// when the clock stalls or steps back.
    last_aside_stamp: i64,
}

impl Spool {
    /// Opens the spool in `dir`, creating it (and its parents) if needed. Damaged entries and
    /// foreign files are set aside, leftovers of interrupted writes deleted, and the caps
    /// applied; all of it is in the report and logged. Errors only when the directory itself
    /// cannot be used.
    pub fn open(dir: &Path, caps: SpoolCaps) -> Result<(Spool, SpoolOpenReport), NotifyError> {
        caps.validate(&dir.display().to_string())?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            caps,
            entries: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
            dropped_total: 0,
            set_aside_total: 0,
            last_aside_stamp: 0,
        };
        create_dir(dir)?;
        create_dir(&spool.aside_dir())?;
        let mut report = SpoolOpenReport::default();
        let listing = fs::read_dir(dir).map_err(|source| spool_dir_error(dir, source))?;
        let mut names = BTreeSet::new();
        for item in listing {
            let item = item.map_err(|source| spool_dir_error(dir, source))?;
            match item.file_name().into_string() {
                Ok(name) => {
                    names.insert(name);
                }
                Err(raw) => {
                    // Not UTF-8: certainly not ours. Moved under a name we can show.
                    let shown = raw.to_string_lossy().into_owned();
                    let moved = spool.move_aside(&item.path(), &shown, "not a spool entry")?;
                    report.set_aside.push(moved);
                }
            }
        }
        for name in names {
            if name == SET_ASIDE_DIR {
                continue;
            }
            let path = dir.join(&name);
            if is_our_temporary(&name) {
                match fs::remove_file(&path) {
                    Ok(()) => report.removed_temporaries += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(NotifyError::Write { path, source }),
                }
                continue;
            }
            let Some(seq) = entry_seq(&name) else {
                let moved = spool.move_aside(&path, &name, "not a spool entry")?;
                report.set_aside.push(moved);
                continue;
            };
            match read_entry(&path) {
                Ok((notification, bytes)) => spool.entries.push_back(Entry {
                    seq,
                    bytes,
                    priority: notification.priority(),
                }),
                Err(reason) => {
                    let moved = spool.move_aside(&path, &name, &reason)?;
                    report.set_aside.push(moved);
                }
            }
        }
        // Names sort as their numbers (fixed width), so the entries are already in order.
        spool.bytes = spool.entries.iter().map(|e| e.bytes).sum();
        spool.next_seq = spool.entries.back().map_or(1, |e| e.seq.saturating_add(1));
        for moved in &report.set_aside {
            tracing::warn!(
                spool = %dir.display(),
                name = %moved.name,
                to = %moved.to.display(),
                reason = %moved.reason,
                "set aside a file that is not a readable spool entry"
            );
        }
        if report.removed_temporaries > 0 {
            tracing::info!(
                spool = %dir.display(),
                count = report.removed_temporaries,
                "removed temporary files of interrupted writes"
            );
        }
        report.dropped = spool.enforce_caps()?;
        if !report.set_aside.is_empty() {
            spool.prune_aside()?;
        }
        Ok((spool, report))
    }

    /// Adds `notification` at the tail, on disk before returning, then drops what the caps
    /// require.
    pub fn append(&mut self, notification: &Notification) -> Result<Appended, NotifyError> {
        let bytes = notification.to_json()?;
        if self.next_seq == u64::MAX {
            return Err(NotifyError::SequenceExhausted {
                path: self.dir.clone(),
            });
        }
        let seq = self.next_seq;
        let path = self.entry_path(seq);
        write_atomic(&path, &bytes, ENTRY_MODE)
            .map_err(|source| NotifyError::Write { path, source })?;
        self.next_seq = seq + 1;
        self.entries.push_back(Entry {
            seq,
            bytes: bytes.len() as u64,
            priority: notification.priority(),
        });
        self.bytes += bytes.len() as u64;
        let dropped = self.enforce_caps()?;
        Ok(Appended { seq, dropped })
    }

    /// The oldest entry, read back from disk. Entries that became unreadable since they were
    /// written are set aside on the way (and counted in [`Spool::stats`]); an entry that
    /// vanished is skipped.
    pub fn head(&mut self) -> Result<Option<Queued>, NotifyError> {
        while let Some(entry) = self.entries.front().copied() {
            let path = self.entry_path(entry.seq);
            match read_entry(&path) {
                Ok((notification, _)) => {
                    return Ok(Some(Queued {
                        seq: entry.seq,
                        notification,
                    }))
                }
                Err(_) if !path.exists() => {
                    tracing::warn!(path = %path.display(), "spool entry vanished; skipping it");
                    self.forget(entry.seq);
                }
                Err(reason) => {
                    let name = entry_name(entry.seq);
                    let moved = self.move_aside(&path, &name, &reason)?;
                    tracing::warn!(
                        spool = %self.dir.display(),
                        name = %name,
                        to = %moved.to.display(),
                        reason = %reason,
                        "set aside a damaged spool entry"
                    );
                    self.forget(entry.seq);
                    self.prune_aside()?;
                }
            }
        }
        Ok(None)
    }

    /// Removes entry `seq` after its delivery. Removing an entry that is not there is not an
    /// error: the result is the same.
    pub fn complete(&mut self, seq: u64) -> Result<(), NotifyError> {
        let path = self.entry_path(seq);
        remove_if_present(&path)?;
        sync_dir(&self.dir)?;
        self.forget(seq);
        Ok(())
    }

    /// Moves entry `seq` to the set-aside directory with `reason` beside it: the receiver
    /// refused it for good.
    pub fn set_aside(&mut self, seq: u64, reason: &str) -> Result<SetAside, NotifyError> {
        let path = self.entry_path(seq);
        let moved = self.move_aside(&path, &entry_name(seq), reason)?;
        self.forget(seq);
        self.prune_aside()?;
        Ok(moved)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of entries waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where set-aside files go.
    pub fn aside_dir(&self) -> PathBuf {
        self.dir.join(SET_ASIDE_DIR)
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            pending: self.entries.len(),
            bytes: self.bytes,
            dropped: self.dropped_total,
            set_aside: self.set_aside_total,
        }
    }

    fn entry_path(&self, seq: u64) -> PathBuf {
        self.dir.join(entry_name(seq))
    }

    fn forget(&mut self, seq: u64) {
        if let Some(pos) = self.entries.iter().position(|e| e.seq == seq) {
            if let Some(entry) = self.entries.remove(pos) {
                self.bytes -= entry.bytes;
            }
        }
    }

    /// Drops entries, least important and oldest first, until the spool is within its caps.
    fn enforce_caps(&mut self) -> Result<Dropped, NotifyError> {
        let mut dropped = Dropped::default();
        while self.entries.len() > self.caps.max_entries || self.bytes > self.caps.max_bytes {
            // The entries are in age order, so the first of the lowest rank is the oldest.
            let Some((pos, _)) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(pos, e)| (rank(e.priority), *pos))
            else {
                break;
            };
            let Some(victim) = self.entries.remove(pos) else {
                break;
            };
            remove_if_present(&self.entry_path(victim.seq))?;
            self.bytes -= victim.bytes;
            dropped.count(victim.priority);
        }
        if dropped.total() > 0 {
            sync_dir(&self.dir)?;
            self.dropped_total += dropped.total() as u64;
            if dropped.paging > 0 {
                tracing::error!(
                    spool = %self.dir.display(),
                    record = dropped.record,
                    notify = dropped.notify,
                    paging = dropped.paging,
                    "spool full of P1-P3 notifications: dropped the oldest, including paging ones"
                );
            } else {
                tracing::warn!(
                    spool = %self.dir.display(),
                    record = dropped.record,
                    notify = dropped.notify,
                    "spool full: dropped the oldest record/notify notifications"
                );
            }
        }
        Ok(dropped)
    }

    /// Renames `path` into the set-aside directory under a unique, time-ordered name and
    /// writes `reason` beside it.
    fn move_aside(
        &mut self,
        path: &Path,
        name: &str,
        reason: &str,
    ) -> Result<SetAside, NotifyError> {
        let aside_dir = self.aside_dir();
        let stamp = tiervault_alerts::now_ns().max(self.last_aside_stamp + 1);
        self.last_aside_stamp = stamp;
        let aside_name = format!("{stamp:0width$}-{name}", width = NAME_DIGITS);
        let to = aside_dir.join(&aside_name);
        fs::rename(path, &to).map_err(|source| NotifyError::Write {
            path: path.to_owned(),
            source,
        })?;
        let why_path = aside_dir.join(format!("{aside_name}.why"));
        let why = format!(
            "{name} set aside at {}: {reason}\n",
            crate::notification::format_rfc3339(stamp)
        );
        write_atomic(&why_path, why.as_bytes(), ENTRY_MODE).map_err(|source| {
            NotifyError::Write {
                path: why_path,
                source,
            }
        })?;
        sync_dir(&self.dir)?;
        self.set_aside_total += 1;
        Ok(SetAside {
            name: name.to_owned(),
            to,
            reason: reason.to_owned(),
        })
    }

    /// Deletes the oldest set-aside items beyond the cap: the directory must not grow over
    /// years of a receiver refusing everything.
    fn prune_aside(&mut self) -> Result<(), NotifyError> {
        let aside_dir = self.aside_dir();
        let listing =
            fs::read_dir(&aside_dir).map_err(|source| spool_dir_error(&aside_dir, source))?;
        let mut items = BTreeSet::new();
        for item in listing {
            let item = item.map_err(|source| spool_dir_error(&aside_dir, source))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".why").unwrap_or(&name).to_owned();
            items.insert(stem);
        }
        let excess = items.len().saturating_sub(self.caps.max_set_aside);
        for stem in items.into_iter().take(excess) {
            for path in [aside_dir.join(&stem), aside_dir.join(format!("{stem}.why"))] {
                let removed = match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
                    Ok(_) => fs::remove_file(&path),
                    Err(e) => Err(e),
                };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(NotifyError::Write { path, source }),
                }
            }
        }
        if excess > 0 {
            tracing::info!(
                dir = %aside_dir.display(),
                count = excess,
                "deleted the oldest set-aside notifications beyond the cap"
            );
            sync_dir(&aside_dir)?;
        }
        Ok(())
    }
}

/// Lower ranks are dropped first.
fn rank(priority: Priority) -> u8 {
    match priority {
        Priority::Record => 0,
        Priority::Notify => 1,
        Priority::P3 => 2,
        Priority::P2 => 3,
        Priority::P1 => 4,
    }
}

fn entry_name(seq: u64) -> String {
    format!("{seq:0width$}{ENTRY_SUFFIX}", width = NAME_DIGITS)
}

fn entry_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(ENTRY_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `write_atomic`'s temporary of an entry: `.<entry name>.tmp-<pid>`.
fn is_our_temporary(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.split_once(".tmp-"))
        .is_some_and(|(entry, pid)| {
            entry_seq(entry).is_some() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Reads and decodes one entry; the error is the reason to set it aside.
fn read_entry(path: &Path) -> Result<(Notification, u64), String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(format!(
            "{} bytes, larger than any notification",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)
        .and_then(|f| f.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    let notification =
        Notification::from_json(&bytes).map_err(|e| format!("not a notification: {e}"))?;
    Ok((notification, bytes.len() as u64))
}

fn create_dir(dir: &Path) -> Result<(), NotifyError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| spool_dir_error(dir, source))
}

fn spool_dir_error(dir: &Path, source: io::Error) -> NotifyError {
    NotifyError::SpoolDir {
        path: dir.to_owned(),
        source,
    }
}

fn remove_if_present(path: &Path) -> Result<(), NotifyError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NotifyError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Makes removals and renames in `dir` durable: otherwise a power cut could bring a delivered
/// entry back (a duplicate) or lose a set-aside one.
fn sync_dir(dir: &Path) -> Result<(), NotifyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| NotifyError::Write {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::tests::{alert, appliance};
    use crate::Transition;

    fn note(seq: u64, severity: u8) -> Notification {
        Notification::new(
            &alert(seq, severity),
            Transition::Raised,
            &appliance(),
            seq,
            0,
        )
    }

    fn caps(max_entries: usize) -> SpoolCaps {
        SpoolCaps {
            max_entries,
            ..SpoolCaps::default()
        }
    }

    fn drain(spool: &mut Spool) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(q) = spool.head().expect("head") {
            out.push(q.notification.sequence);
            spool.complete(q.seq).expect("complete");
        }
        out
    }

    #[test]
    fn names_sort_as_numbers_and_temporaries_are_recognised() {
        assert_eq!(entry_name(42), "00000000000000000042.json");
        assert_eq!(entry_seq("00000000000000000042.json"), Some(42));
        assert_eq!(entry_seq("42.json"), None);
        assert_eq!(entry_seq("0000000000000000004x.json"), None);
        assert!(is_our_temporary(".00000000000000000042.json.tmp-123"));
        assert!(!is_our_temporary(".bashrc"));
        assert!(!is_our_temporary(".x.json.tmp-1"));
        assert!(entry_name(u64::MAX - 1) > entry_name(9));
    }

    #[test]
    fn survives_reopen_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), SpoolCaps::default()).expect("open");
        for seq in 1..=3 {
            spool.append(&note(seq, 7)).expect("append");
        }
        let first = spool.head().expect("head").expect("entry");
        spool.complete(first.seq).expect("complete");
        drop(spool);
        let (mut spool, report) = Spool::open(dir.path(), SpoolCaps::default()).expect("reopen");
        assert_eq!(report, SpoolOpenReport::default());
        assert_eq!(spool.len(), 2);
        spool.append(&note(4, 7)).expect("append");
        assert_eq!(drain(&mut spool), [2, 3, 4]);
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn over_the_cap_drops_record_and_notify_before_paging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), caps(4)).expect("open");
        // seq: severity → P1, record, P3, notify
        for (seq, severity) in [(1, 10), (2, 1), (3, 5), (4, 3)] {
            let a = spool.append(&note(seq, severity)).expect("append");
            assert_eq!(a.dropped.total(), 0);
        }
        let a = spool.append(&note(5, 9)).expect("append");
        assert_eq!(
            a.dropped,
            Dropped {
                record: 1,
                ..Dropped::default()
            }
        );
        let a = spool.append(&note(6, 2)).expect("append");
        // The new record entry is the least important: it is the one dropped.
        assert_eq!(a.dropped.record, 1);
        let a = spool.append(&note(7, 7)).expect("append");
        assert_eq!(a.dropped.notify, 1);
        let a = spool.append(&note(8, 10)).expect("append");
        assert_eq!(a.dropped.paging, 1, "only paging entries were left");
        assert_eq!(spool.stats().dropped, 4);
        // P3 (3) went first among the paging ones.
        assert_eq!(drain(&mut spool), [1, 5, 7, 8]);
    }

    #[test]
    fn byte_cap_applies_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = note(1, 1).to_json().expect("json").len() as u64;
        let caps = SpoolCaps {
            max_bytes: 64 * 1024,
            ..SpoolCaps::default()
        };
        let (mut spool, _) = Spool::open(dir.path(), caps).expect("open");
        let n = 64 * 1024 / one + 5;
        for seq in 1..=n {
            spool.append(&note(seq, 1)).expect("append");
        }
        assert!(spool.bytes() <= 64 * 1024);
        assert_eq!(spool.stats().dropped + spool.len() as u64, n);
    }

    #[test]
    fn lowered_caps_apply_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), caps(10)).expect("open");
        for seq in 1..=5 {
            spool
                .append(&note(seq, if seq == 1 { 10 } else { 3 }))
                .expect("append");
        }
        drop(spool);
        let (mut spool, report) = Spool::open(dir.path(), caps(2)).expect("reopen");
        assert_eq!(report.dropped.notify, 3);
        assert_eq!(drain(&mut spool), [1, 5]);
    }

    #[test]
    fn refused_entries_are_set_aside_with_their_reason_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let caps = SpoolCaps {
            max_set_aside: 2,
            ..SpoolCaps::default()
        };
        let (mut spool, _) = Spool::open(dir.path(), caps).expect("open");
        for seq in 1..=3 {
            spool.append(&note(seq, 7)).expect("append");
        }
        let mut moved = Vec::new();
        for _ in 0..3 {
            let q = spool.head().expect("head").expect("entry");
            moved.push(
                spool
                    .set_aside(q.seq, "HTTP 400 Bad Request")
                    .expect("aside"),
            );
        }
        assert!(spool.is_empty());
        assert_eq!(spool.stats().set_aside, 3);
        let mut names: Vec<String> = fs::read_dir(spool.aside_dir())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 4, "two items and their reasons: {names:?}");
        assert!(!moved[0].to.exists(), "the oldest was pruned");
        let why = fs::read_to_string(format!("{}.why", moved[2].to.display())).expect("why");
        assert!(why.contains("HTTP 400 Bad Request"), "{why}");
        assert!(why.contains("00000000000000000003.json"), "{why}");
    }

    #[test]
    fn caps_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            caps(0),
            SpoolCaps {
                max_bytes: 100,
                ..SpoolCaps::default()
            },
            SpoolCaps {
                max_set_aside: 0,
                ..SpoolCaps::default()
            },
        ] {
            assert!(Spool::open(dir.path(), bad).is_err(), "{bad:?}");
        }
    }
}
