//! The per-service alert store: one JSON file, rewritten whole and crash-safely on every
//! change.
//!
//! A whole rewrite is affordable because the store is small by construction (at most
//! [`MAX_ACTIVE`] active alerts of a few KiB, plus a bounded history) and changes at the pace
//! problems happen, not at the pace of data; in exchange there is no log to replay or
//! compact, and a crash at any instant leaves either the old file or the new one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};
use tiervault_sys::durable::write_atomic;

use crate::alert::{check_ack, check_line, check_new, invalid, MAX_ID_LEN};
use crate::{now_ns, Ack, Alert, AlertError, NewAlert};

/// The hard cap on active alerts in one store: a source raising alerts in a loop with
/// ever-new keys is refused beyond this, rather than growing the file (and every rewrite of
/// it) without bound.
pub const MAX_ACTIVE: usize = 10_000;

const FORMAT: &str = "tiervault-alerts";
const VERSION: u32 = 1;
// Alerts name hosts, jobs and paths: readable by the service's group (support tooling), not
// by everyone.
const FILE_MODE: u32 = 0o640;

/// What [`AlertStore::raise`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The alert raised, or the active one it was folded into.
    pub id: u64,
    /// Whether a new alert was created (`false`: an active alert with the same class and key
    /// was updated).
    pub new: bool,
}

/// What [`AlertStore::open`] found besides the alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// When the store file could not be read back (torn, garbage, another format or version),
    /// the path its content was moved to before starting empty. The caller should raise an
    /// alert about it: whatever was active in it is no longer shown.
    pub recovered_from: Option<PathBuf>,
    /// Why the file could not be read back, for that alert's detail.
    pub reason: Option<String>,
}

/// The alerts of one service, kept in one file that every change rewrites before returning.
///
/// One process owns a store file: two stores on one file would overwrite each other's
/// changes.
#[derive(Debug)]
pub struct AlertStore {
    path: PathBuf,
    source: String,
    max_cleared: usize,
    next_id: u64,
    alerts: BTreeMap<u64, Alert>,
    /// (class, key) of every active alert: the de-duplication index.
    active: HashMap<(String, String), u64>,
    /// (cleared_ns, id) of every cleared alert, so the oldest-cleared is dropped first.
    cleared: BTreeSet<(i64, u64)>,
}

/// One change to the store, written to disk before it is applied in memory, so that a failed
/// write leaves memory as it was without having to undo anything.
struct Change {
    /// An alert added (its id is new) or replaced.
    upsert: Option<Alert>,
    /// Cleared alerts dropped from the history, after the upsert.
    drop: BTreeSet<u64>,
    next_id: u64,
}

/// The alerts in service `source`'s store file, read only: nothing is created, repaired or
/// set aside, as the file is another service's (a relay passing its alerts on reads it).
/// A missing file is no alerts.
pub fn read_store(path: &Path, source: &str) -> Result<Vec<Alert>, AlertError> {
    check_source(source)?;
    let mut store = AlertStore::empty(path, source, usize::MAX);
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AlertError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    match store.load(&bytes)? {
        Ok(()) => Ok(store.alerts.into_values().collect()),
        Err(reason) => Err(AlertError::Damaged {
            path: path.to_owned(),
            reason,
        }),
    }
}

impl AlertStore {
    /// A store of nothing yet, not written.
    fn empty(path: &Path, source: &str, max_cleared: usize) -> AlertStore {
        AlertStore {
            path: path.to_owned(),
            source: source.to_owned(),
            max_cleared,
            next_id: 1,
            alerts: BTreeMap::new(),
            active: HashMap::new(),
            cleared: BTreeSet::new(),
        }
    }

    /// Opens (creating if absent) the store file `path` for service `source`, keeping at most
    /// `max_cleared` cleared alerts. The directory must exist.
    ///
    /// A file that cannot be read back does not stop the service: its content is moved to
    /// `<name>.corrupt-<unix seconds>` (see [`OpenReport`]) and the store starts empty. Its
    /// ids then start above the largest id still legible in the old file and above
    /// `unix seconds << 20`: ids become D-Bus object paths and operators acknowledge by id, so
    /// a new alert must not take the id of one in the set-aside file (which may have been
    /// illegible there). The clock-based start stays above every id handed out since an
    /// earlier recovery unless the clock went back or more than 2^20 alerts per second were
    /// raised in between; it is only used when recovering, so a healthy store keeps small ids.
    ///
    /// A file of another service is [`AlertError::WrongSource`]: a configuration mistake,
    /// left untouched. If `max_cleared` is smaller than when the file was written, the oldest
    /// cleared alerts are dropped and the file rewritten now.
    pub fn open(
        path: &Path,
        source: &str,
        max_cleared: usize,
    ) -> Result<(AlertStore, OpenReport), AlertError> {
        check_source(source)?;
        let mut store = AlertStore::empty(path, source, max_cleared);
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Created now so that an unwritable directory shows at start-up, not when the
                // first alert is lost.
                store.commit(store.no_change())?;
                return Ok((store, OpenReport::default()));
            }
            Err(source) => {
                return Err(AlertError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        match store.load(&bytes)? {
            Ok(()) => {
                let drop = store.excess_cleared(None);
                if !drop.is_empty() {
                    store.commit(Change {
                        upsert: None,
                        drop,
                        next_id: store.next_id,
                    })?;
                }
                Ok((store, OpenReport::default()))
            }
            Err(reason) => {
                let aside = set_aside(path, &bytes)?;
                store.next_id = recovery_next_id(&bytes, now_ns());
                store.commit(store.no_change())?;
                Ok((
                    store,
                    OpenReport {
                        recovered_from: Some(aside),
                        reason: Some(reason),
                    },
                ))
            }
        }
    }

    /// Raises an alert, or folds it into the active alert with the same class and key: that
    /// one's last-seen time, count, summary and detail are updated and its severity rises if
    /// the new one is higher (it never falls). Rising drops an acknowledgement, since the
    /// operator acknowledged something less bad than what is happening now. A class and key
    /// whose alert was cleared get a new alert with a new id.
    pub fn raise(&mut self, new: NewAlert, now_ns: i64) -> Result<Raised, AlertError> {
        check_new(&new)?;
        if let Some(current) = self.find_active(&new.class, &new.key) {
            let mut alert = current.clone();
            alert.last_seen_ns = now_ns;
            alert.count = alert.count.saturating_add(1);
            alert.summary = new.summary;
            alert.detail = new.detail;
            if new.severity > alert.severity {
                alert.severity = new.severity;
                alert.ack = None;
            }
            let id = alert.id;
            self.commit(Change {
                upsert: Some(alert),
                drop: BTreeSet::new(),
                next_id: self.next_id,
            })?;
            return Ok(Raised { id, new: false });
        }
        if self.active.len() >= MAX_ACTIVE {
            return Err(AlertError::TooManyActive {
                path: self.path.clone(),
                limit: MAX_ACTIVE,
                class: new.class,
                key: new.key,
            });
        }
        let id = self.next_id;
        let next_id = id.checked_add(1).ok_or_else(|| AlertError::IdsExhausted {
            path: self.path.clone(),
        })?;
        let alert = Alert {
            id,
            source: self.source.clone(),
            class: new.class,
            key: new.key,
            severity: new.severity,
            summary: new.summary,
            detail: new.detail,
            raised_ns: now_ns,
            last_seen_ns: now_ns,
            count: 1,
            cleared_ns: None,
            ack: None,
        };
        self.commit(Change {
            upsert: Some(alert),
            drop: BTreeSet::new(),
            next_id,
        })?;
        Ok(Raised { id, new: true })
    }

    /// Clears the active alert with this class and key and returns its id; `Ok(None)` when
    /// none is active (clearing what is fine is not a mistake). Cleared alerts beyond the
    /// store's `max_cleared` are dropped, oldest-cleared first (by clear time, then id), which
    /// may be this one when `max_cleared` is 0.
    pub fn clear(
        &mut self,
        class: &str,
        key: &str,
        now_ns: i64,
    ) -> Result<Option<u64>, AlertError> {
        let Some(current) = self.find_active(class, key) else {
            return Ok(None);
        };
        let mut alert = current.clone();
        alert.cleared_ns = Some(now_ns);
        let id = alert.id;
        let drop = self.excess_cleared(Some((now_ns, id)));
        self.commit(Change {
            upsert: Some(alert),
            drop,
            next_id: self.next_id,
        })?;
        Ok(Some(id))
    }

    /// Acknowledges alert `id`, active or cleared. Acknowledging again replaces the previous
    /// acknowledgement (who, when and comment): the store keeps only the latest. `by` must be
    /// non-empty; `comment` may be empty.
    pub fn acknowledge(
        &mut self,
        id: u64,
        by: &str,
        comment: &str,
        now_ns: i64,
    ) -> Result<(), AlertError> {
        check_ack(by, comment)?;
        let mut alert = self
            .alerts
            .get(&id)
            .ok_or(AlertError::NotFound(id))?
            .clone();
        alert.ack = Some(Ack {
            by: by.to_owned(),
            at_ns: now_ns,
            comment: comment.to_owned(),
        });
        self.commit(Change {
            upsert: Some(alert),
            drop: BTreeSet::new(),
            next_id: self.next_id,
        })
    }

    /// The alert with this id, if it is still in the store.
    pub fn get(&self, id: u64) -> Option<&Alert> {
        self.alerts.get(&id)
    }

    /// The active alert with this class and key.
    pub fn find_active(&self, class: &str, key: &str) -> Option<&Alert> {
        let id = self.active.get(&(class.to_owned(), key.to_owned()))?;
        self.alerts.get(id)
    }

    /// Every alert in the store, active and cleared, in id order.
    pub fn all(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// The active alerts, in id order.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().filter(|a| a.is_active())
    }

    /// How many alerts are active.
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// The id the next new alert will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The service this store belongs to.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How many cleared alerts are kept.
    pub fn max_cleared(&self) -> usize {
        self.max_cleared
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn no_change(&self) -> Change {
        Change {
            upsert: None,
            drop: BTreeSet::new(),
            next_id: self.next_id,
        }
    }

    /// Writes the store as it will be after `change`, then applies it.
    fn commit(&mut self, change: Change) -> Result<(), AlertError> {
        let upsert_is_new = change
            .upsert
            .as_ref()
            .is_some_and(|a| !self.alerts.contains_key(&a.id));
        let doc = DocOut {
            format: FORMAT,
            version: VERSION,
            source: &self.source,
            next_id: change.next_id,
            alerts: AlertsAfter {
                alerts: &self.alerts,
                change: &change,
                upsert_is_new,
            },
        };
        let mut bytes = serde_json::to_vec(&doc).map_err(|source| AlertError::Encode {
            path: self.path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes, FILE_MODE).map_err(|source| AlertError::Write {
            path: self.path.clone(),
            source,
        })?;

        if let Some(alert) = change.upsert {
            if let Some(old) = self.alerts.remove(&alert.id) {
                self.unindex(&old);
            }
            self.index(&alert);
            self.alerts.insert(alert.id, alert);
        }
        for id in change.drop {
            if let Some(old) = self.alerts.remove(&id) {
                self.unindex(&old);
            }
        }
        self.next_id = change.next_id;
        Ok(())
    }

    fn index(&mut self, alert: &Alert) {
        match alert.cleared_ns {
            None => {
                self.active
                    .insert((alert.class.clone(), alert.key.clone()), alert.id);
            }
            Some(at) => {
                self.cleared.insert((at, alert.id));
            }
        }
    }

    fn unindex(&mut self, alert: &Alert) {
        match alert.cleared_ns {
            None => {
                self.active
                    .remove(&(alert.class.clone(), alert.key.clone()));
            }
            Some(at) => {
                self.cleared.remove(&(at, alert.id));
            }
        }
    }

    /// The ids of the cleared alerts beyond `max_cleared` once `newly_cleared` (clear time,
    /// id) is cleared too, oldest-cleared first.
    fn excess_cleared(&self, newly_cleared: Option<(i64, u64)>) -> BTreeSet<u64> {
        let total = self.cleared.len() + usize::from(newly_cleared.is_some());
        let Some(excess) = total.checked_sub(self.max_cleared).filter(|&n| n > 0) else {
            return BTreeSet::new();
        };
        // The `excess` oldest of all are among the `excess` oldest already cleared plus the
        // new one.
        let mut oldest: Vec<(i64, u64)> = self.cleared.iter().take(excess).copied().collect();
        oldest.extend(newly_cleared);
        oldest.sort_unstable();
        oldest.into_iter().take(excess).map(|(_, id)| id).collect()
    }

    /// Fills the (empty) store from a file's bytes. `Ok(Err(reason))`: the file cannot be
    /// read back and is to be set aside.
    fn load(&mut self, bytes: &[u8]) -> Result<Result<(), String>, AlertError> {
        let header: Header = match serde_json::from_slice(bytes) {
            Ok(header) => header,
            Err(e) => return Ok(Err(format!("not a JSON object: {e}"))),
        };
        if header.format.as_deref() != Some(FORMAT) {
            return Ok(Err(format!(
                "format {:?}, not {FORMAT:?}",
                header.format.as_deref().unwrap_or("(none)")
            )));
        }
        if header.version != Some(u64::from(VERSION)) {
            return Ok(Err(format!(
                "version {}, this build reads version {VERSION}",
                header
                    .version
                    .map_or_else(|| "(none)".to_owned(), |v| v.to_string())
            )));
        }
        match header.source {
            None => return Ok(Err("no source".to_owned())),
            Some(found) if found != self.source => {
                return Err(AlertError::WrongSource {
                    path: self.path.clone(),
                    expected: self.source.clone(),
                    found,
                })
            }
            Some(_) => {}
        }
        let doc: DocIn = match serde_json::from_slice(bytes) {
            Ok(doc) => doc,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(self.fill(doc))
    }

    /// Takes the alerts of a parsed file, checking what the store relies on, so that a
    /// hand-edited or damaged file cannot break the invariants (one active alert per class
    /// and key, ids below `next_id`).
    /// All or nothing: on error the store is left empty.
    fn fill(&mut self, doc: DocIn) -> Result<(), String> {
        let result = self.fill_checked(doc);
        if result.is_err() {
            self.alerts.clear();
            self.active.clear();
            self.cleared.clear();
        }
        result
    }

    fn fill_checked(&mut self, doc: DocIn) -> Result<(), String> {
        if doc.next_id == 0 {
            return Err("next_id is 0".to_owned());
        }
        let mut previous = 0;
        for alert in doc.alerts {
            let id = alert.id;
            if id <= previous || id >= doc.next_id {
                return Err(format!(
                    "alert {id} is out of order or not below next_id {}",
                    doc.next_id
                ));
            }
            previous = id;
            if alert.source != self.source {
                return Err(format!("alert {id} is from source {:?}", alert.source));
            }
            if alert.count == 0 {
                return Err(format!("alert {id} has count 0"));
            }
            let new = NewAlert {
                class: alert.class.clone(),
                key: alert.key.clone(),
                severity: alert.severity,
                summary: alert.summary.clone(),
                detail: alert.detail.clone(),
            };
            check_new(&new).map_err(|e| format!("alert {id}: {e}"))?;
            if let Some(ack) = &alert.ack {
                check_ack(&ack.by, &ack.comment).map_err(|e| format!("alert {id}: {e}"))?;
            }
            if alert.is_active() && self.find_active(&alert.class, &alert.key).is_some() {
                return Err(format!(
                    "alert {id}: a second active alert for {} {:?}",
                    alert.class, alert.key
                ));
            }
            self.index(&alert);
            self.alerts.insert(id, alert);
        }
        self.next_id = doc.next_id;
        Ok(())
    }
}

fn check_source(source: &str) -> Result<(), AlertError> {
    check_line("source", source)?;
    if source.len() > MAX_ID_LEN {
        return Err(invalid(
            "source",
            format!(
                "is {} bytes long, at most {MAX_ID_LEN} allowed",
                source.len()
            ),
        ));
    }
    Ok(())
}

/// Copies an unreadable store's `bytes` to `<name>.corrupt-<unix seconds>` (with `-2`, `-3`,
/// ... when that exists) and returns that path. A copy rather than a rename: the store file
/// is then replaced atomically by the empty store, so a crash in between leaves the corrupt
/// file in place to be set aside again, never a missing file that would restart ids at 1.
fn set_aside(path: &Path, bytes: &[u8]) -> Result<PathBuf, AlertError> {
    let mut name = path.file_name().unwrap_or(path.as_os_str()).to_owned();
    name.push(format!(".corrupt-{}", now_ns().div_euclid(1_000_000_000)));
    let first = path.with_file_name(&name);
    let mut aside = first.clone();
    let mut n = 1u64;
    loop {
        match fs::symlink_metadata(&aside) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(source) => {
                return Err(AlertError::Write {
                    path: aside,
                    source,
                })
            }
            Ok(_) => {
                n += 1;
                let mut numbered = name.clone();
                numbered.push(format!("-{n}"));
                aside = first.with_file_name(numbered);
            }
        }
    }
    write_atomic(&aside, bytes, FILE_MODE).map_err(|source| AlertError::Write {
        path: aside.clone(),
        source,
    })?;
    Ok(aside)
}

/// The first id after recovering from an unreadable file (see [`AlertStore::open`]).
fn recovery_next_id(bytes: &[u8], now_ns: i64) -> u64 {
    let seed = u64::try_from(now_ns.div_euclid(1_000_000_000)).unwrap_or(0) << 20;
    let legible = largest_legible_id(bytes).map_or(1, |id| id.saturating_add(1));
    seed.max(legible).max(1)
}

/// The largest id that can still be read in a damaged store: the values of every `"id"` and
/// of `"next_id"` (less one), found by scanning rather than parsing, since the JSON may be cut
/// anywhere. A false match can only make the result larger, which is harmless.
fn largest_legible_id(bytes: &[u8]) -> Option<u64> {
    let mut largest = None;
    for (pattern, less) in [(&b"\"id\""[..], 0), (&b"\"next_id\""[..], 1)] {
        let mut at = 0;
        while let Some(pos) = find(&bytes[at..], pattern) {
            at += pos + pattern.len();
            if let Some(value) = number_after_colon(&bytes[at..]) {
                let id = value.saturating_sub(less);
                largest = Some(largest.map_or(id, |l: u64| l.max(id)));
            }
        }
    }
    largest
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn number_after_colon(bytes: &[u8]) -> Option<u64> {
    let mut rest = bytes
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let mut value: u64 = 0;
    let mut digits = 0;
    while let Some((&b, tail)) = rest.split_first() {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
        rest = tail;
    }
    (digits > 0).then_some(value)
}

/// The fields read first, to tell a file of another format, version or service from a damaged
/// one.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u64>,
    source: Option<String>,
}

#[derive(Deserialize)]
struct DocIn {
    next_id: u64,
    alerts: Vec<Alert>,
}

#[derive(Serialize)]
struct DocOut<'a> {
    format: &'static str,
    version: u32,
    source: &'a str,
    next_id: u64,
    alerts: AlertsAfter<'a>,
}

/// The alerts as they will be after a change, serialised without copying the store.
struct AlertsAfter<'a> {
    alerts: &'a BTreeMap<u64, Alert>,
    change: &'a Change,
    upsert_is_new: bool,
}

impl Serialize for AlertsAfter<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let upsert = self.change.upsert.as_ref();
        let replaced = self.alerts.values().map(|a| match upsert {
            Some(u) if u.id == a.id => u,
            _ => a,
        });
        // A new alert has the largest id, so appending it keeps id order.
        let added = upsert.filter(|_| self.upsert_is_new);
        serializer.collect_seq(
            replaced
                .chain(added)
                .filter(|a| !self.change.drop.contains(&a.id)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    fn new_alert(key: &str) -> NewAlert {
        NewAlert {
            class: "job.failed".into(),
            key: key.into(),
            severity: Severity::try_from(5).expect("severity"),
            summary: "s".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn active_alerts_are_capped_but_still_update_and_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.json");
        let (mut store, _) = AlertStore::open(&path, "ingest", 10).expect("open");
        // Filled in memory only: ten thousand durable raises would make a slow test.
        for id in 1..=MAX_ACTIVE as u64 {
            let alert = Alert {
                id,
                source: "ingest".into(),
                class: "job.failed".into(),
                key: format!("k{id}"),
                severity: Severity::try_from(5).expect("severity"),
                summary: "s".into(),
                detail: String::new(),
                raised_ns: 1,
                last_seen_ns: 1,
                count: 1,
                cleared_ns: None,
                ack: None,
            };
            store.index(&alert);
            store.alerts.insert(id, alert);
        }
        store.next_id = MAX_ACTIVE as u64 + 1;
        let on_disk = fs::read(&path).expect("read");

        match store.raise(new_alert("one-too-many"), 2) {
            Err(e @ AlertError::TooManyActive { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains("10000") && message.contains("one-too-many"),
                    "{message}"
                );
            }
            other => panic!("expected TooManyActive, got {other:?}"),
        }
        assert_eq!(fs::read(&path).expect("read"), on_disk, "nothing written");
        assert_eq!(store.next_id(), MAX_ACTIVE as u64 + 1);

        let again = store
            .raise(new_alert("k7"), 3)
            .expect("an active alert still updates");
        assert_eq!((again.id, again.new), (7, false));
        store.clear("job.failed", "k7", 4).expect("clear");
        let room = store
            .raise(new_alert("one-too-many"), 5)
            .expect("room again");
        assert!(room.new);
        assert_eq!(store.active_count(), MAX_ACTIVE);
    }

    #[test]
    fn legible_ids_are_found_in_cut_json() {
        let text = br#"{"format":"tiervault-alerts","version":1,"source":"ingest","next_id":42,"alerts":[{"id":7,"source":"ingest"},{"id" : 40,"sou"#;
        assert_eq!(largest_legible_id(text), Some(41));
        assert_eq!(largest_legible_id(br#"{"id":9"#), Some(9));
        assert_eq!(largest_legible_id(b"\x00\xffgarbage"), None);
        assert_eq!(largest_legible_id(br#"{"id": "x"}"#), None);
        assert_eq!(
            largest_legible_id(br#"{"id":99999999999999999999999}"#),
            None
        );
    }

    #[test]
    fn recovery_starts_above_both_the_clock_seed_and_legible_ids() {
        let now = 1_700_000_000 * 1_000_000_000i64;
        let seed = 1_700_000_000u64 << 20;
        assert_eq!(recovery_next_id(b"garbage", now), seed);
        let huge = format!(r#"{{"id":{}"#, seed + 5);
        assert_eq!(recovery_next_id(huge.as_bytes(), now), seed + 6);
        assert_eq!(recovery_next_id(b"garbage", -5), 1);
        // Still exactly representable where ids travel as JSON numbers read as doubles.
        assert!(seed < 1 << 53);
    }
}
