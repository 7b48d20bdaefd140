//! What the service does on its own to keep redundancy: take faulty members out (so the disk
//! can be pulled), lend a spare to a degraded sibling array of the same spare group, and make
//! a blank disk that was inserted a hot spare. And the operator's explicit replacement.
//! Pure: computes operations from an observation; the service runs them.

use std::path::PathBuf;

use serde::Serialize;

use crate::health::{ArrayState, PoolStatus};
use crate::host::{BlockDisk, DiskUsage, MdArray, Observed};
use crate::layout::Layout;
use crate::ops::Op;

fn dev(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/{name}"))
}

fn md(a: &MdArray) -> PathBuf {
    dev(&a.dev)
}

/// The smallest member of an array: a spare must be at least this big.
fn member_size(obs: &Observed, a: &MdArray) -> u64 {
    a.members
        .iter()
        .filter_map(|m| obs.disk_by_name(&m.disk))
        .map(|d| d.size_bytes)
        .min()
        .unwrap_or(u64::MAX)
}

fn spares_of(a: &MdArray) -> impl Iterator<Item = &str> {
    a.members
        .iter()
        .filter(|m| m.slot.is_none() && m.has("spare") && !m.has("faulty"))
        .map(|m| m.disk.as_str())
}

/// A blank disk nobody planned that may become a spare: whole, not removable media, not in
/// use, with a serial (every later step names it by serial).
fn spare_candidate(d: &BlockDisk, layout: &Layout) -> bool {
    d.usage == DiskUsage::Blank
        && d.busy.is_empty()
        && !d.removable
        && d.serial
            .as_deref()
            .is_some_and(|s| layout.array_of(s).is_none())
}

/// One automatic step and why it is taken (for the log and the audit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub op: Op,
    pub why: String,
}

/// The automatic steps for the pool as it is now.
pub fn automatic(layout: &Layout, obs: &Observed, status: &PoolStatus) -> Vec<Action> {
    let mut out = Vec::new();
    // Faulty members out: md no longer uses them, and a removed disk can be pulled safely.
    for a in &obs.arrays {
        for m in a.members.iter().filter(|m| m.has("faulty")) {
            out.push(Action {
                op: Op::Remove {
                    md: md(a),
                    dev: dev(&m.disk),
                },
                why: format!(
                    "{} (/dev/{}) is faulty in {}: taken out so it can be replaced",
                    obs.serial_of(&m.disk),
                    m.disk,
                    a.name
                ),
            });
        }
    }
    // Degraded arrays with no spare of their own.
    let mut lent: Vec<String> = Vec::new();
    let mut needy: Vec<&MdArray> = Vec::new();
    for a in &obs.arrays {
        let state = status.array(&a.name).map(|s| s.state);
        if state != Some(ArrayState::Degraded) || spares_of(a).next().is_some() {
            continue;
        }
        let need = member_size(obs, a);
        let group = layout.array(&a.name).map(|s| s.spare_group.as_str());
        let donor = obs.arrays.iter().find_map(|b| {
            if b.name == a.name || layout.array(&b.name).map(|s| s.spare_group.as_str()) != group {
                return None;
            }
            spares_of(b)
                .find(|d| {
                    !lent.iter().any(|l| l == d)
                        && obs.disk_by_name(d).is_some_and(|x| x.size_bytes >= need)
                })
                .map(|d| (b, d.to_owned()))
        });
        match donor {
            Some((b, disk)) => {
                let serial = obs.serial_of(&disk);
                out.push(Action {
                    op: Op::Remove {
                        md: md(b),
                        dev: dev(&disk),
                    },
                    why: format!(
                        "{} is degraded: lending it {serial}, a spare of {}",
                        a.name, b.name
                    ),
                });
                out.push(Action {
                    op: Op::AddSpare {
                        md: md(a),
                        dev: dev(&disk),
                    },
                    why: format!("{serial} rebuilds the missing member of {}", a.name),
                });
                lent.push(disk);
            }
            None => needy.push(a),
        }
    }
    // Blank disks become spares: first where an array is degraded without one, then where
    // spares are fewest.
    let mut candidates: Vec<&BlockDisk> = obs
        .disks
        .iter()
        .filter(|d| spare_candidate(d, layout))
        .collect();
    candidates.sort_by_key(|d| d.name.clone());
    let mut added: Vec<(String, usize)> = obs
        .arrays
        .iter()
        .map(|a| (a.name.clone(), spares_of(a).count()))
        .collect();
    for d in candidates {
        let fits = |a: &MdArray| d.size_bytes >= member_size(obs, a) && !a.members.is_empty();
        let target = needy
            .iter()
            .position(|a| fits(a))
            .map(|i| needy.remove(i))
            .or_else(|| {
                obs.arrays
                    .iter()
                    .filter(|a| {
                        fits(a)
                            && status
                                .array(&a.name)
                                .is_some_and(|s| s.state != ArrayState::Failed)
                    })
                    .min_by_key(|a| {
                        added
                            .iter()
                            .find(|(n, _)| *n == a.name)
                            .map_or(0, |(_, c)| *c)
                    })
            });
        let Some(a) = target else { continue };
        if let Some(entry) = added.iter_mut().find(|(n, _)| *n == a.name) {
            entry.1 += 1;
        }
        out.push(Action {
            op: Op::AddSpare {
                md: md(a),
                dev: dev(&d.name),
            },
            why: format!(
                "blank disk {} (/dev/{}) inserted: hot spare of {}",
                d.serial.as_deref().unwrap_or("?"),
                d.name,
                a.name
            ),
        });
    }
    out
}

/// Why an explicit replacement cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceError {
    #[error("{0}: no disk with this serial in any array (see `vaultctl pool status`)")]
    UnknownOld(String),
    #[error("{0}: no disk with this serial is present (is it inserted?)")]
    MissingNew(String),
    #[error("{serial} (/dev/{dev}): carries {what}; name it with --wipe {serial} to use it")]
    NewNotBlank {
        serial: String,
        dev: String,
        what: String,
    },
    #[error("{serial} (/dev/{dev}): in use ({why})")]
    NewBusy {
        serial: String,
        dev: String,
        why: String,
    },
    #[error("{new} ({new_size} bytes) is smaller than the members of {array} ({need} bytes)")]
    TooSmall {
        new: String,
        new_size: u64,
        array: String,
        need: u64,
    },
    #[error("{array} has failed: a replacement cannot rebuild it (restore the array's data from replication)")]
    ArrayFailed { array: String },
}

/// The steps of `vaultctl pool replace OLD NEW`. A member still in sync is hot-replaced
/// (`mdadm --replace`: redundancy is kept while NEW is rebuilt); a faulty, spare or missing
/// one is taken out and NEW added, which md rebuilds.
pub fn replace(
    layout: &Layout,
    obs: &Observed,
    status: &PoolStatus,
    old: &str,
    new: &str,
    wipe_new: bool,
) -> Result<Vec<Op>, ReplaceError> {
    let new_disk = obs
        .disk_by_serial(new)
        .ok_or_else(|| ReplaceError::MissingNew(new.to_owned()))?;
    if !new_disk.busy.is_empty() || !obs.holders_of(&new_disk.name).is_empty() {
        let mut why = new_disk.busy.clone();
        why.extend(
            obs.holders_of(&new_disk.name)
                .iter()
                .map(|a| format!("member of {}", a.name)),
        );
        return Err(ReplaceError::NewBusy {
            serial: new.to_owned(),
            dev: new_disk.name.clone(),
            why: why.join(", "),
        });
    }
    let mut ops = Vec::new();
    match &new_disk.usage {
        DiskUsage::Blank => {}
        other if wipe_new => {
            let _ = other;
            ops.push(Op::Wipe {
                serial: new.to_owned(),
                dev: dev(&new_disk.name),
            });
        }
        DiskUsage::MdMember {
            array_name,
            array_uuid,
        } => {
            return Err(ReplaceError::NewNotBlank {
                serial: new.to_owned(),
                dev: new_disk.name.clone(),
                what: format!("an md superblock of array {array_name} ({array_uuid})"),
            })
        }
        DiskUsage::Data { found } => {
            return Err(ReplaceError::NewNotBlank {
                serial: new.to_owned(),
                dev: new_disk.name.clone(),
                what: found.join(", "),
            })
        }
    }
    // Where OLD is: in an assembled array by the kernel, else by the plan.
    let old_disk = obs.disk_by_serial(old);
    let in_kernel = old_disk.and_then(|d| {
        obs.arrays.iter().find_map(|a| {
            a.members
                .iter()
                .find(|m| m.disk == d.name)
                .map(|m| (a, m.clone()))
        })
    });
    let array = match &in_kernel {
        Some((a, _)) => (*a).clone(),
        None => {
            let spec = layout
                .array_of(old)
                .ok_or_else(|| ReplaceError::UnknownOld(old.to_owned()))?;
            obs.array_by_name(&spec.name)
                .cloned()
                .ok_or_else(|| ReplaceError::ArrayFailed {
                    array: spec.name.clone(),
                })?
        }
    };
    if status
        .array(&array.name)
        .is_some_and(|s| s.state == ArrayState::Failed)
    {
        return Err(ReplaceError::ArrayFailed { array: array.name });
    }
    let need = member_size(obs, &array);
    if new_disk.size_bytes < need {
        return Err(ReplaceError::TooSmall {
            new: new.to_owned(),
            new_size: new_disk.size_bytes,
            array: array.name,
            need,
        });
    }
    let md = md(&array);
    let new_dev = dev(&new_disk.name);
    match in_kernel {
        Some((_, m)) if m.has("in_sync") && !m.has("faulty") => {
            ops.push(Op::AddSpare {
                md: md.clone(),
                dev: new_dev.clone(),
            });
            ops.push(Op::Replace {
                md,
                old: dev(&m.disk),
                new: new_dev,
            });
        }
        Some((_, m)) => {
            ops.push(Op::Remove {
                md: md.clone(),
                dev: dev(&m.disk),
            });
            ops.push(Op::AddSpare { md, dev: new_dev });
        }
        None => ops.push(Op::AddSpare { md, dev: new_dev }),
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MdMember;

    fn disk(name: &str, serial: &str, usage: DiskUsage) -> BlockDisk {
        BlockDisk {
            name: name.into(),
            serial: Some(serial.into()),
            size_bytes: 100,
            usage,
            busy: vec![],
            removable: false,
        }
    }

    fn member(disk: &str, slot: Option<u32>, state: &str) -> MdMember {
        MdMember {
            disk: disk.into(),
            slot,
            state: vec![state.into()],
        }
    }

    #[test]
    fn removable_and_planned_disks_never_become_spares() {
        let layout = Layout { arrays: vec![] };
        let mut usb = disk("sdz", "USB1", DiskUsage::Blank);
        usb.removable = true;
        assert!(!spare_candidate(&usb, &layout));
        assert!(spare_candidate(
            &disk("sdy", "NEW1", DiskUsage::Blank),
            &layout
        ));
        let data = disk(
            "sdx",
            "OLD",
            DiskUsage::Data {
                found: vec!["gpt".into()],
            },
        );
        assert!(!spare_candidate(&data, &layout));
    }

    #[test]
    fn faulty_members_are_taken_out() {
        let obs = Observed {
            disks: vec![disk("vdb", "A", DiskUsage::Blank)],
            arrays: vec![MdArray {
                dev: "md127".into(),
                name: "vault-data0".into(),
                members: vec![member("vdb", None, "faulty")],
                ..MdArray::default()
            }],
            have_xfs: true,
        };
        let status = crate::health::pool_status(&Layout { arrays: vec![] }, &obs);
        let acts = automatic(&Layout { arrays: vec![] }, &obs, &status);
        assert_eq!(acts[0].op.to_string(), "mdadm /dev/md127 --remove /dev/vdb");
    }
}
