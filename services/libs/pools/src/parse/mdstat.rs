//! `/proc/mdstat` ([`parse_mdstat`]).
//!
//! ```text
//! Personalities : [raid0] [raid1] [raid6] [raid5] [raid4] [raid10]
//! md0 : active raid5 vdc[4] vdd[3] vdb[1](F) vda[0]
//!       126976 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [U_U]
//!       [>....................]  recovery =  4.0% (2560/63488) finish=0.7min speed=1280K/sec
//!       bitmap: 0/1 pages [0KB], 65536KB chunk
//!
//! md127 : inactive vde[0](S)
//!       63488 blocks super 1.2
//!
//! unused devices: <none>
//! ```
//!
//! An array's first line gives its state, level and members (`name[index]` and flags); the
//! indented lines after it its size and health (`[raid disks/in sync]`, `[U_U]`), the sync
//! in progress and the bitmap. Indented lines this parser does not know are kept in
//! [`MdstatArray::other`] rather than refused (the kernel's personalities add their own);
//! a known line that does not read right is an error naming its line.

use serde::{Deserialize, Serialize};

use super::{RaidLevel, SyncAction};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mdstat {
    /// `Personalities : [raid1] ...`, without the brackets.
    pub personalities: Vec<String>,
    /// In the kernel's order (newest first).
    pub arrays: Vec<MdstatArray>,
    /// `unused devices: <none>` → empty.
    pub unused_devices: Vec<String>,
}

impl Mdstat {
    pub fn array(&self, name: &str) -> Option<&MdstatArray> {
        self.arrays.iter().find(|a| a.name == name)
    }
}

/// `active`, `active (read-only)`, `active (auto-read-only)` or `inactive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MdstatState {
    Active,
    /// `mdadm --readonly`.
    ReadOnly,
    /// Started read-only (`start_ro`, udev incremental assembly) until the first write.
    AutoReadOnly,
    /// Assembled but not started: members are still missing.
    Inactive,
}

/// One member: `vdb[1](F)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdstatMember {
    /// Kernel name (`vdb`, `nvme0n1`, `sda1`, `dm-3`).
    pub name: String,
    /// The number in brackets: the member's descriptor index, not its slot.
    pub index: u32,
    /// `(F)`.
    pub faulty: bool,
    /// `(S)`: not in a slot (a spare; every member of an inactive array shows it).
    pub spare: bool,
    /// `(W)` (RAID1).
    pub write_mostly: bool,
    /// `(R)`: rebuilding to replace another member.
    pub replacement: bool,
    /// `(J)`: the RAID4/5/6 write journal.
    pub journal: bool,
}

/// The progress line: `[>....]  recovery =  4.0% (2560/63488) finish=0.7min speed=1280K/sec`,
/// or `resync=DELAYED` / `resync=PENDING`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// `resync`, `recovery`, `check`, `repair` or `reshape`.
    pub action: SyncAction,
    /// Waiting for another array on the same disks (`DELAYED`) or for a start (`PENDING`).
    pub waiting: Option<SyncWaiting>,
    /// Percent done, one decimal as printed.
    pub percent: Option<f64>,
    /// Done and total, in KiB (per member for most levels).
    pub done_kib: Option<u64>,
    pub total_kib: Option<u64>,
    /// `finish=0.7min`.
    pub finish_minutes: Option<f64>,
    /// `speed=1280K/sec`.
    pub speed_kib_per_sec: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncWaiting {
    Delayed,
    Pending,
}

/// `bitmap: 1/1 pages [4KB], 65536KB chunk[, file: /path]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdstatBitmap {
    pub pages_used: u64,
    pub pages_total: u64,
    /// The bitmap's memory in KiB (`[4KB]`).
    pub memory_kib: u64,
    /// Data covered by one bit, KiB.
    pub chunk_kib: u64,
    /// An external bitmap's file.
    pub file: Option<String>,
}

/// One array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MdstatArray {
    /// `md127`.
    pub name: String,
    pub state: MdstatState,
    /// `None` for an inactive array.
    pub level: Option<RaidLevel>,
    pub members: Vec<MdstatMember>,
    /// Usable size in KiB (an inactive array: the members' total).
    pub blocks: Option<u64>,
    /// `super 1.2` → `1.2`; `None` means 0.90 (the kernel prints nothing for it).
    pub metadata: Option<String>,
    /// `512k chunk` / `512K chunks`, KiB.
    pub chunk_kib: Option<u64>,
    /// RAID4/5/6 `algorithm N`.
    pub algorithm: Option<u32>,
    /// RAID10 `2 near-copies` (or far-/offset-copies).
    pub copies: Option<String>,
    /// `[3/2]`: raid disks.
    pub raid_disks: Option<u32>,
    /// `[3/2]`: members in sync.
    pub in_sync: Option<u32>,
    /// `[U_U]`: per slot, `true` = up.
    pub slots: Option<Vec<bool>>,
    pub progress: Option<SyncProgress>,
    pub bitmap: Option<MdstatBitmap>,
    /// Indented lines not understood, trimmed.
    pub other: Vec<String>,
}

impl MdstatArray {
    /// Fewer members in sync than raid disks (`[3/2]`).
    pub fn is_degraded(&self) -> bool {
        matches!((self.raid_disks, self.in_sync), (Some(n), Some(m)) if m < n)
    }

    /// The members marked `(F)`.
    pub fn faulty_members(&self) -> impl Iterator<Item = &MdstatMember> {
        self.members.iter().filter(|m| m.faulty)
    }

    /// The slots shown down (`_`) in `[U_U]`.
    pub fn down_slots(&self) -> Vec<u32> {
        self.slots
            .iter()
            .flatten()
            .zip(0u32..)
            .filter(|(up, _)| !**up)
            .map(|(_, i)| i)
            .collect()
    }
}

/// A line of `/proc/mdstat` that does not read right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/proc/mdstat line {line}: {problem}: {text:?}")]
pub struct MdstatError {
    pub line: usize,
    pub text: String,
    pub problem: MdstatProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdstatProblem {
    #[error("an indented line before any array")]
    Orphan,
    #[error("not `mdN : state [level] members`")]
    Header,
    #[error("unknown array state {0:?}")]
    State(String),
    #[error("unknown RAID level {0:?}")]
    Level(String),
    #[error("member {0:?} is not `name[index](flags)`")]
    Member(String),
    #[error("the size line does not start with `N blocks`")]
    Blocks,
    #[error("bad {0} in the size line")]
    StatusField(&'static str),
    #[error("bad sync progress")]
    Progress,
    #[error("bad bitmap line")]
    Bitmap,
    #[error("a top-level line that is neither an array, `Personalities` nor `unused devices`")]
    TopLevel,
}

/// Parses `/proc/mdstat`.
pub fn parse_mdstat(text: &str) -> Result<Mdstat, MdstatError> {
    let mut out = Mdstat {
        personalities: Vec::new(),
        arrays: Vec::new(),
        unused_devices: Vec::new(),
    };
    for (i, raw) in text.lines().enumerate() {
        let err = |problem| MdstatError {
            line: i + 1,
            text: raw.to_string(),
            problem,
        };
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if raw.starts_with(|c: char| c.is_whitespace()) {
            let array = out
                .arrays
                .last_mut()
                .ok_or_else(|| err(MdstatProblem::Orphan))?;
            continuation(array, line).map_err(err)?;
        } else if let Some(rest) = line.strip_prefix("Personalities :") {
            out.personalities = rest
                .split_whitespace()
                .map(|p| p.trim_start_matches('[').trim_end_matches(']').to_string())
                .collect();
        } else if let Some(rest) = line.strip_prefix("unused devices:") {
            out.unused_devices = rest
                .split_whitespace()
                .filter(|d| *d != "<none>")
                .map(str::to_string)
                .collect();
        } else if line.starts_with("md") && line.contains(" : ") {
            out.arrays.push(header(line).map_err(err)?);
        } else if line.starts_with("read_ahead") || line.starts_with("Event:") {
            // Old kernels' extra lines.
        } else {
            return Err(err(MdstatProblem::TopLevel));
        }
    }
    Ok(out)
}

/// `md0 : active (auto-read-only) raid6 vde[0] vdi[4](S) ...`
fn header(line: &str) -> Result<MdstatArray, MdstatProblem> {
    let (name, rest) = line.split_once(" : ").ok_or(MdstatProblem::Header)?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(MdstatProblem::Header);
    }
    let mut words = rest.split_whitespace().peekable();
    let mut state = match words.next() {
        Some("active") => MdstatState::Active,
        Some("inactive") => MdstatState::Inactive,
        Some(other) => return Err(MdstatProblem::State(other.to_string())),
        None => return Err(MdstatProblem::Header),
    };
    if let Some(&w) = words.peek() {
        if w.starts_with('(') {
            state = match w {
                "(read-only)" => MdstatState::ReadOnly,
                "(auto-read-only)" => MdstatState::AutoReadOnly,
                other => return Err(MdstatProblem::State(other.to_string())),
            };
            words.next();
        }
    }
    let mut level = None;
    if state != MdstatState::Inactive {
        let w = words.next().ok_or(MdstatProblem::Header)?;
        level = Some(w.parse().map_err(|_| MdstatProblem::Level(w.to_string()))?);
    }
    let members = words.map(member).collect::<Result<Vec<_>, _>>()?;
    Ok(MdstatArray {
        name: name.to_string(),
        state,
        level,
        members,
        blocks: None,
        metadata: None,
        chunk_kib: None,
        algorithm: None,
        copies: None,
        raid_disks: None,
        in_sync: None,
        slots: None,
        progress: None,
        bitmap: None,
        other: Vec::new(),
    })
}

/// `vdb[1](F)`, `vdo[1](W)`, `nvme2n1[5](R)`, `vdi[4](S)`.
fn member(word: &str) -> Result<MdstatMember, MdstatProblem> {
    let bad = || MdstatProblem::Member(word.to_string());
    let (name, rest) = word.split_once('[').ok_or_else(bad)?;
    let (index, mut flags) = rest.split_once(']').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let mut m = MdstatMember {
        name: name.to_string(),
        index: index.parse().map_err(|_| bad())?,
        faulty: false,
        spare: false,
        write_mostly: false,
        replacement: false,
        journal: false,
    };
    while !flags.is_empty() {
        let (flag, rest) = flags
            .strip_prefix('(')
            .and_then(|f| f.split_once(')'))
            .ok_or_else(bad)?;
        match flag {
            "F" => m.faulty = true,
            "S" => m.spare = true,
            "W" => m.write_mostly = true,
            "R" => m.replacement = true,
            "J" => m.journal = true,
            _ => return Err(bad()),
        }
        flags = rest;
    }
    Ok(m)
}

fn continuation(array: &mut MdstatArray, line: &str) -> Result<(), MdstatProblem> {
    if line.contains(" blocks") && array.blocks.is_none() {
        status_line(array, line)
    } else if line.starts_with('[') {
        array.progress = Some(progress(line).ok_or(MdstatProblem::Progress)?);
        Ok(())
    } else if let Some(p) = waiting(line) {
        array.progress = Some(p);
        Ok(())
    } else if let Some(rest) = line.strip_prefix("bitmap:") {
        array.bitmap = Some(bitmap(rest).ok_or(MdstatProblem::Bitmap)?);
        Ok(())
    } else {
        array.other.push(line.to_string());
        Ok(())
    }
}

/// `126976 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [UU_]`
fn status_line(array: &mut MdstatArray, line: &str) -> Result<(), MdstatProblem> {
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let (Some(n), Some(&"blocks")) = (words.first(), words.get(1)) else {
        return Err(MdstatProblem::Blocks);
    };
    array.blocks = Some(n.parse().map_err(|_| MdstatProblem::Blocks)?);
    let mut i = 2;
    while i < words.len() {
        let w = words[i];
        let next = words.get(i + 1).copied();
        match (w, next) {
            ("super", Some(v)) => {
                array.metadata = Some(v.to_string());
                i += 1;
            }
            ("algorithm", Some(v)) => {
                array.algorithm = Some(
                    v.parse()
                        .map_err(|_| MdstatProblem::StatusField("algorithm"))?,
                );
                i += 1;
            }
            ("level", Some(_)) => i += 1, // repeats the header's level
            (size, Some("chunk" | "chunks")) if size.ends_with(['k', 'K']) => {
                let kib = &size[..size.len() - 1];
                array.chunk_kib = Some(
                    kib.parse()
                        .map_err(|_| MdstatProblem::StatusField("chunk size"))?,
                );
                i += 1;
            }
            (n, Some(copies)) if copies.ends_with("-copies") => {
                array.copies = Some(format!("{n} {copies}"));
                i += 1;
            }
            _ if w.starts_with('[') && w.ends_with(']') => {
                let inner = &w[1..w.len() - 1];
                if let Some((a, b)) = inner.split_once('/') {
                    let num = |s: &str| {
                        s.parse()
                            .map_err(|_| MdstatProblem::StatusField("[raid disks/in sync]"))
                    };
                    array.raid_disks = Some(num(a)?);
                    array.in_sync = Some(num(b)?);
                } else if !inner.is_empty() && inner.bytes().all(|b| b == b'U' || b == b'_') {
                    array.slots = Some(inner.bytes().map(|b| b == b'U').collect());
                } else {
                    return Err(MdstatProblem::StatusField("[U_] pattern"));
                }
            }
            _ => {} // `64k rounding` (linear), `near=2`-style words of other kernels
        }
        i += 1;
    }
    Ok(())
}

/// `[=>...]  recovery =  6.4% (4096/63488) finish=0.7min speed=1365K/sec`
fn progress(line: &str) -> Option<SyncProgress> {
    let after_bar = &line[line.find(']')? + 1..];
    let (action, rest) = after_bar.split_once('=')?;
    let action = action.trim().parse().ok()?;
    let mut p = SyncProgress {
        action,
        waiting: None,
        percent: None,
        done_kib: None,
        total_kib: None,
        finish_minutes: None,
        speed_kib_per_sec: None,
    };
    for word in rest.split_whitespace() {
        if let Some(pct) = word.strip_suffix('%') {
            p.percent = Some(pct.parse().ok()?);
        } else if let Some(pair) = word.strip_prefix('(').and_then(|w| w.strip_suffix(')')) {
            let (done, total) = pair.split_once('/')?;
            p.done_kib = Some(done.parse().ok()?);
            p.total_kib = Some(total.parse().ok()?);
        } else if let Some(min) = word
            .strip_prefix("finish=")
            .and_then(|w| w.strip_suffix("min"))
        {
            p.finish_minutes = Some(min.parse().ok()?);
        } else if let Some(speed) = word
            .strip_prefix("speed=")
            .and_then(|w| w.strip_suffix("K/sec"))
        {
            p.speed_kib_per_sec = Some(speed.parse().ok()?);
        } else {
            return None;
        }
    }
    p.percent?;
    Some(p)
}

/// `resync=DELAYED`, `recovery=PENDING`, ...
fn waiting(line: &str) -> Option<SyncProgress> {
    let (action, what) = line.split_once('=')?;
    let waiting = match what.trim() {
        "DELAYED" => SyncWaiting::Delayed,
        "PENDING" => SyncWaiting::Pending,
        _ => return None,
    };
    Some(SyncProgress {
        action: action.trim().parse().ok()?,
        waiting: Some(waiting),
        percent: None,
        done_kib: None,
        total_kib: None,
        finish_minutes: None,
        speed_kib_per_sec: None,
    })
}

/// ` 1/1 pages [4KB], 65536KB chunk, file: /bitmap`
fn bitmap(rest: &str) -> Option<MdstatBitmap> {
    let mut parts = rest.split(',').map(str::trim);
    let pages = parts.next()?;
    let (count, mem) = pages.split_once(" pages ")?;
    let (used, total) = count.trim().split_once('/')?;
    let mem = mem.trim().strip_prefix('[')?.strip_suffix("KB]")?;
    let chunk = parts.next()?.strip_suffix("KB chunk")?;
    let file = match parts.next() {
        Some(f) => Some(f.strip_prefix("file:")?.trim().to_string()),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(MdstatBitmap {
        pages_used: used.parse().ok()?,
        pages_total: total.parse().ok()?,
        memory_kib: mem.parse().ok()?,
        chunk_kib: chunk.trim().parse().ok()?,
        file,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    macro_rules! md {
        ($path:literal) => {
            parse_mdstat(include_str!(concat!("../../testdata/md/", $path))).unwrap()
        };
    }

    fn flags(a: &MdstatArray) -> Vec<String> {
        a.members
            .iter()
            .map(|m| {
                let mut s = format!("{}[{}]", m.name, m.index);
                for (on, f) in [
                    (m.write_mostly, "W"),
                    (m.journal, "J"),
                    (m.faulty, "F"),
                    (m.spare, "S"),
                    (m.replacement, "R"),
                ] {
                    if on {
                        s.push_str(&format!("({f})"));
                    }
                }
                s
            })
            .collect()
    }

    #[test]
    fn arrays_being_created() {
        let s = md!("00-create/mdstat");
        assert_eq!(
            s.personalities,
            ["raid0", "raid1", "raid6", "raid5", "raid4", "raid10"]
        );
        let names: Vec<_> = s.arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["md5", "md4", "md3", "md2", "md1", "md0"]);
        assert!(s.unused_devices.is_empty());

        // RAID5 is created degraded and recovers onto its last member.
        let r5 = s.array("md0").unwrap();
        assert_eq!(
            (r5.state, r5.level),
            (MdstatState::Active, Some(RaidLevel::Raid5))
        );
        assert_eq!(flags(r5), ["vdc[4]", "vdd[3](S)", "vdb[1]", "vda[0]"]);
        assert_eq!(r5.blocks, Some(126_976));
        assert_eq!(r5.metadata.as_deref(), Some("1.2"));
        assert_eq!((r5.chunk_kib, r5.algorithm), (Some(512), Some(2)));
        assert_eq!((r5.raid_disks, r5.in_sync), (Some(3), Some(2)));
        assert_eq!(r5.slots, Some(vec![true, true, false]));
        assert_eq!(r5.down_slots(), [2]);
        assert!(r5.is_degraded());
        let p = r5.progress.as_ref().unwrap();
        assert_eq!(p.action, SyncAction::Recover);
        assert_eq!(p.percent, Some(3.2));
        assert_eq!((p.done_kib, p.total_kib), (Some(2304), Some(63_488)));
        assert_eq!(p.finish_minutes, Some(1.3));
        assert_eq!(p.speed_kib_per_sec, Some(768));
        assert_eq!(p.waiting, None);
        let b = r5.bitmap.as_ref().unwrap();
        assert_eq!(
            (b.pages_used, b.pages_total, b.memory_kib, b.chunk_kib),
            (1, 1, 4, 65_536)
        );
        assert_eq!(b.file, None);

        // RAID6 and RAID10 resync.
        let r6 = s.array("md2").unwrap();
        assert_eq!(
            r6.progress.as_ref().map(|p| (p.action, p.percent)),
            Some((SyncAction::Resync, Some(4.0)))
        );
        assert!(!r6.is_degraded());
        let r10 = s.array("md1").unwrap();
        assert_eq!(r10.copies.as_deref(), Some("2 near-copies"));
        assert_eq!(r10.chunk_kib, Some(512));
        assert_eq!(
            r10.progress.as_ref().and_then(|p| p.total_kib),
            Some(126_976)
        );

        // RAID1 with a write-mostly member, 1.0 metadata; 0.90 prints no `super`.
        let wm = s.array("md5").unwrap();
        assert_eq!(flags(wm), ["vdo[1](W)", "vdn[0]"]);
        assert_eq!(wm.metadata.as_deref(), Some("1.0"));
        assert_eq!(s.array("md3").unwrap().metadata, None);
        // RAID0: no [n/m], no bitmap, a whitespace-only line after it.
        let r0 = s.array("md4").unwrap();
        assert_eq!(
            (r0.raid_disks, r0.slots.clone(), r0.bitmap.clone()),
            (None, None, None)
        );
        assert_eq!(r0.chunk_kib, Some(512));
        assert!(r0.other.is_empty());
    }

    #[test]
    fn clean_arrays() {
        let s = md!("01-clean/mdstat");
        for a in &s.arrays {
            assert_eq!(a.state, MdstatState::Active, "{}", a.name);
            assert_eq!(a.progress, None, "{}", a.name);
            assert!(!a.is_degraded(), "{}", a.name);
            assert_eq!(a.faulty_members().count(), 0);
        }
        assert_eq!(s.array("md0").unwrap().slots, Some(vec![true; 3]));
    }

    #[test]
    fn failed_member_recovering_onto_the_spare() {
        let r5 = md!("02-r5-fail-recovering/mdstat")
            .array("md0")
            .cloned()
            .unwrap();
        assert_eq!(flags(&r5), ["vdc[4]", "vdd[3]", "vdb[1](F)", "vda[0]"]);
        assert_eq!((r5.raid_disks, r5.in_sync), (Some(3), Some(2)));
        assert_eq!(r5.down_slots(), [1]);
        let p = r5.progress.unwrap();
        assert_eq!(
            (p.action, p.percent, p.done_kib),
            (SyncAction::Recover, Some(4.0), Some(2560))
        );

        let r5 = md!("03-r5-rebuilt/mdstat").array("md0").cloned().unwrap();
        assert_eq!(flags(&r5), ["vdc[4]", "vdd[3]", "vdb[1](F)", "vda[0]"]);
        assert!(!r5.is_degraded());
        assert_eq!(r5.progress, None);
    }

    #[test]
    fn degraded_then_failed_raid5() {
        let r5 = md!("04-r5-degraded/mdstat").array("md0").cloned().unwrap();
        assert_eq!(flags(&r5), ["vdc[4](F)", "vdd[3]", "vda[0]"]);
        assert_eq!((r5.raid_disks, r5.in_sync), (Some(3), Some(2)));
        assert_eq!(r5.down_slots(), [2]);
        assert_eq!(r5.progress, None);

        // Two failed members: still `active`, [3/1] [_U_]: mdstat alone does not say "failed";
        // a RAID5 with more than one slot down is.
        let r5 = md!("05-r5-failed/mdstat").array("md0").cloned().unwrap();
        assert_eq!(r5.state, MdstatState::Active);
        assert_eq!(flags(&r5), ["vdc[4](F)", "vdd[3]", "vda[0](F)"]);
        assert_eq!((r5.raid_disks, r5.in_sync), (Some(3), Some(1)));
        assert_eq!(r5.down_slots(), [0, 2]);
        assert_eq!(r5.faulty_members().count(), 2);

        // Stopped, and the assembly that failed left nothing behind.
        assert!(md!("06-r5-assemble-failed/mdstat").array("md0").is_none());
    }

    #[test]
    fn check_reshape_and_replacement() {
        let r6 = md!("07-r6-check/mdstat").array("md2").cloned().unwrap();
        let p = r6.progress.unwrap();
        assert_eq!(
            (p.action, p.percent, p.total_kib),
            (SyncAction::Check, Some(4.0), Some(63_488))
        );

        let r6 = md!("12-r6-reshape/mdstat").array("md2").cloned().unwrap();
        assert_eq!((r6.raid_disks, r6.in_sync), (Some(5), Some(5)));
        let p = r6.progress.unwrap();
        assert_eq!(
            (p.action, p.percent, p.speed_kib_per_sec),
            (SyncAction::Reshape, Some(2.4), Some(512))
        );
        assert_eq!(p.finish_minutes, Some(1.9));

        let r10 = md!("11-r10-replace/mdstat").array("md1").cloned().unwrap();
        assert_eq!(
            flags(&r10),
            [
                "nvme2n1[5](R)",
                "nvme4n1[4]",
                "nvme3n1[3]",
                "nvme1n1[1]",
                "nvme0n1[0]"
            ]
        );
        assert!(!r10.is_degraded());
        assert_eq!(r10.progress.map(|p| p.action), Some(SyncAction::Recover));
        let after = md!("11-r10-replace/mdstat-after")
            .array("md1")
            .cloned()
            .unwrap();
        assert_eq!(
            flags(&after),
            [
                "nvme2n1[5]",
                "nvme4n1[4]",
                "nvme3n1[3]",
                "nvme1n1[1]",
                "nvme0n1[0](F)"
            ]
        );
    }

    #[test]
    fn inactive_read_only_and_stopped() {
        let s = md!("08-r6-incremental/mdstat");
        let a = s.array("md127").unwrap();
        assert_eq!((a.state, a.level), (MdstatState::Inactive, None));
        assert_eq!(flags(a), ["vde[0](S)"]);
        assert_eq!(
            (a.blocks, a.metadata.as_deref()),
            (Some(63_488), Some("1.2"))
        );
        assert_eq!(
            (a.raid_disks, a.slots.clone(), a.bitmap.clone()),
            (None, None, None)
        );
        let a = md!("08-r6-incremental/mdstat-complete")
            .array("md127")
            .cloned()
            .unwrap();
        assert_eq!((a.state, a.members.len()), (MdstatState::Active, 5));

        let a = md!("09-r6-readonly/mdstat").array("md2").cloned().unwrap();
        assert_eq!(
            (a.state, a.level),
            (MdstatState::ReadOnly, Some(RaidLevel::Raid6))
        );
        let a = md!("09-r6-readonly/mdstat-auto")
            .array("md2")
            .cloned()
            .unwrap();
        assert_eq!(a.state, MdstatState::AutoReadOnly);

        let s = md!("13-stopped/mdstat");
        assert!(s.arrays.is_empty());
        assert_eq!(s.personalities.len(), 6);
    }

    #[test]
    fn delayed_external_bitmap_unused_and_unknown_lines() {
        let text = "Personalities : [raid1]\n\
                    md1 : active raid1 sdc1[1] sdd1[0]\n      \
                    1000 blocks super 1.2 [2/2] [UU]\n      \
                    \tresync=DELAYED\n      \
                    bitmap: 2/8 pages [8KB], 4096KB chunk, file: /var/md1.bitmap\n      \
                    something new\n\n\
                    md0 : active linear sda[0] sdb[1]\n      \
                    2000 blocks super 1.2 64k rounding\n\n\
                    unused devices: sde sdf\n";
        let s = parse_mdstat(text).unwrap();
        let md1 = s.array("md1").unwrap();
        let p = md1.progress.as_ref().unwrap();
        assert_eq!(
            (p.action, p.waiting, p.percent),
            (SyncAction::Resync, Some(SyncWaiting::Delayed), None)
        );
        let b = md1.bitmap.as_ref().unwrap();
        assert_eq!(
            (b.pages_used, b.pages_total, b.memory_kib, b.chunk_kib),
            (2, 8, 8, 4096)
        );
        assert_eq!(b.file.as_deref(), Some("/var/md1.bitmap"));
        assert_eq!(md1.other, ["something new"]);
        let md0 = s.array("md0").unwrap();
        assert_eq!(
            (md0.level, md0.blocks),
            (Some(RaidLevel::Linear), Some(2000))
        );
        assert_eq!(s.unused_devices, ["sde", "sdf"]);
    }

    #[test]
    fn errors_name_the_line() {
        let err = |t: &str| parse_mdstat(t).unwrap_err().to_string();
        assert_eq!(
            err("Personalities : [raid1]\nmd0 : active raid7 sda[0]\n"),
            "/proc/mdstat line 2: unknown RAID level \"raid7\": \"md0 : active raid7 sda[0]\""
        );
        assert_eq!(
            err("md0 : resting raid1 sda[0]\n"),
            "/proc/mdstat line 1: unknown array state \"resting\": \"md0 : resting raid1 sda[0]\""
        );
        assert_eq!(
            err("md0 : active raid1 sda[x]\n"),
            "/proc/mdstat line 1: member \"sda[x]\" is not `name[index](flags)`: \"md0 : active raid1 sda[x]\""
        );
        assert_eq!(
            err("md0 : active raid1 sda[0](Q)\n")
                .split(": member")
                .nth(1)
                .map(|s| s.starts_with(" \"sda[0](Q)\"")),
            Some(true)
        );
        assert_eq!(
            err("md0 : active raid1 sda[0]\n      100 blocks [2/x] [UU]\n"),
            "/proc/mdstat line 2: bad [raid disks/in sync] in the size line: \"      100 blocks [2/x] [UU]\""
        );
        assert_eq!(
            err("md0 : active raid1 sda[0]\n      100 blocks [2/2] [UX]\n"),
            "/proc/mdstat line 2: bad [U_] pattern in the size line: \"      100 blocks [2/2] [UX]\""
        );
        assert_eq!(
            err("md0 : active raid1 sda[0]\n      100 blocks\n      [==>..]  resync = lots\n"),
            "/proc/mdstat line 3: bad sync progress: \"      [==>..]  resync = lots\""
        );
        assert_eq!(
            err("      100 blocks\n"),
            "/proc/mdstat line 1: an indented line before any array: \"      100 blocks\""
        );
        assert_eq!(err("garbage\n"), "/proc/mdstat line 1: a top-level line that is neither an array, `Personalities` nor `unused devices`: \"garbage\"");
        assert!(err("md0 : active raid1 sda[0]\n      bitmap: lots\n")
            .starts_with("/proc/mdstat line 2: bad bitmap line"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*") {
            let _ = parse_mdstat(&text);
        }

        #[test]
        fn never_panics_on_mangled_real_output(
            cut in 0usize..1400,
            junk in "[ \\[\\]()/=%.:a-zA-Z0-9_\n]{0,40}",
        ) {
            let real = include_str!("../../testdata/md/00-create/mdstat");
            let mut cut = cut.min(real.len());
            while !real.is_char_boundary(cut) {
                cut -= 1;
            }
            let text = format!("{}{}{}", &real[..cut], junk, &real[cut..]);
            let _ = parse_mdstat(&text);
        }
    }
}
