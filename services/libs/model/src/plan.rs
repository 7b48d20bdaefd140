//! Matching a hardware description against a tier and planning its arrays.
//!
//! Disks are matched to a profile's disk groups by class and size, never by position:
//! - class: `ssd` wants a non-rotational disk; `15k` a rotational one whose RPM, when known,
//!   is at least 10,000; `7.2k` any rotational disk (a faster one meets the spec);
//! - size: at least the profile's vendor size (a "2 TB" disk has ≥ 2 × 10^12 bytes);
//! - a disk without a serial number is never planned: the plan and every later destructive
//!   step name disks by serial.
//!
//! Groups are filled largest disk size first (data before OS), each taking the smallest disks
//! that fit, so an OS group never takes a data-sized disk another group needs. Within a group
//! disks are ordered by bay (when known), then by kernel name; the arrays take them in that
//! order and the last ones become hot spares. A plan is only a plan: nothing here touches a
//! disk.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::capacity;
use crate::dedup_cache::dedup_cache_bytes;
use crate::hardware::{DiskInfo, HardwareDescription};
use crate::profile::{DiskClass, DiskGroup, Profile, ProfileKind, RaidLevel, Role, Server};
use crate::profiles::Profiles;
use crate::size::ByteSize;

/// MemTotal must reach this many sixteenths of the profile's RAM (firmware and the kernel
/// keep a few percent of the installed memory).
pub const RAM_TOLERANCE_SIXTEENTHS: u64 = 15;
/// A rotational disk reporting at least this RPM counts as a 15K disk.
const FAST_RPM_MIN: u32 = 10_000;

/// What provisioning records: the tier, its arrays, spares and memory figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Plan {
    pub tier: String,
    /// Usable bytes of the data arrays.
    pub usable_bytes: u64,
    pub usable_tib: u64,
    /// RAM the dedup chunk index may use.
    pub index_memory_bytes: u64,
    /// Table 9's cache size for the tier's capacity (replication's remote-id cache).
    pub dedup_cache_bytes: u64,
    #[serde(rename = "array")]
    pub arrays: Vec<ArrayPlan>,
    #[serde(default, rename = "spare")]
    pub spares: Vec<SparePlan>,
    /// Kernel names of the disks the plan leaves alone.
    #[serde(default)]
    pub unused: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArrayPlan {
    /// `os0`, `data0`, `data1`, ...
    pub name: String,
    pub role: Role,
    pub level: RaidLevel,
    pub members: Vec<DiskRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SparePlan {
    pub role: Role,
    /// The arrays this hot spare serves.
    pub arrays: Vec<String>,
    pub disk: DiskRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskRef {
    pub serial: String,
    pub device: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
}

/// Why the hardware does not fit a tier: one line, naming what is missing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Mismatch {
    #[error("{tier} needs {need} {label} ({class}) ≥ {size}, found {found}{}", hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default())]
    Disks {
        tier: String,
        label: &'static str,
        class: &'static str,
        need: u32,
        size: String,
        found: usize,
        hint: Option<String>,
    },
    #[error("{tier} needs {need} RAM (MemTotal ≥ {min}), found {found}")]
    Ram {
        tier: String,
        need: String,
        min: String,
        found: String,
    },
    #[error("{tier} needs {need} CPU cores, found {found}")]
    Cpu { tier: String, need: u32, found: u32 },
    #[error("{tier} is a composition of several servers ({parts}): provision each server with its own tier")]
    Composition { tier: String, parts: String },
}

/// Why no plan could be chosen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChooseError {
    #[error("unknown tier {name:?} (profiles: {known})")]
    UnknownTier { name: String, known: String },
    /// `auto` and no single-server tier fits: the smallest tier's mismatch.
    #[error("no tier fits this hardware; the smallest: {0}")]
    NoTier(Mismatch),
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
}

/// `--tier auto` or `--tier tier-N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierRequest {
    Auto,
    Named(String),
}

impl FromStr for TierRequest {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<TierRequest, Self::Err> {
        Ok(if s == "auto" {
            TierRequest::Auto
        } else {
            TierRequest::Named(s.to_owned())
        })
    }
}

/// The named tier's plan, or for `auto` the largest single-server tier that fits.
pub fn choose(
    profiles: &Profiles,
    hw: &HardwareDescription,
    request: &TierRequest,
) -> Result<Plan, ChooseError> {
    match request {
        TierRequest::Named(name) => {
            let p = profiles.get(name).ok_or_else(|| ChooseError::UnknownTier {
                name: name.clone(),
                known: profiles.names().join(", "),
            })?;
            Ok(plan(p, hw)?)
        }
        TierRequest::Auto => {
            let mut smallest = None;
            for p in profiles.all().iter().rev().filter(|p| p.server().is_some()) {
                match plan(p, hw) {
                    Ok(plan) => return Ok(plan),
                    Err(m) => smallest = Some(m),
                }
            }
            Err(match smallest {
                Some(m) => ChooseError::NoTier(m),
                None => ChooseError::UnknownTier {
                    name: "auto".into(),
                    known: "no single-server tier".into(),
                },
            })
        }
    }
}

/// Plans `profile` on `hw`, or says precisely why it does not fit.
pub fn plan(profile: &Profile, hw: &HardwareDescription) -> Result<Plan, Mismatch> {
    let server = match &profile.kind {
        ProfileKind::Server(s) => s,
        ProfileKind::Composition(parts) => {
            return Err(Mismatch::Composition {
                tier: profile.name.clone(),
                parts: parts.join(" + "),
            })
        }
    };
    let chosen = assign(&profile.name, server, hw)?;
    check_ram_cpu(&profile.name, server, hw)?;
    let disk_ref = |d: usize| {
        let disk = &hw.disks[d];
        DiskRef {
            serial: disk.serial.clone().unwrap_or_default(),
            device: disk.name.clone(),
            size_bytes: disk.size_bytes,
            slot: disk.slot,
        }
    };
    let (mut arrays, mut spares) = (Vec::new(), Vec::new());
    let mut numbers = [0usize; 2];
    for (g, disks) in server.disk_groups.iter().zip(&chosen) {
        let mut next = disks.iter().copied();
        let mut names = Vec::new();
        for spec in &g.arrays {
            for _ in 0..spec.count {
                let n = &mut numbers[usize::from(g.role == Role::Data)];
                let name = format!("{}{}", g.role.name(), *n);
                *n += 1;
                names.push(name.clone());
                arrays.push(ArrayPlan {
                    name,
                    role: g.role,
                    level: spec.level,
                    members: next
                        .by_ref()
                        .take(spec.members as usize)
                        .map(disk_ref)
                        .collect(),
                });
            }
        }
        spares.extend(next.map(|d| SparePlan {
            role: g.role,
            arrays: names.clone(),
            disk: disk_ref(d),
        }));
    }
    let used: BTreeSet<usize> = chosen.iter().flatten().copied().collect();
    let usable = capacity::usable_bytes(server);
    Ok(Plan {
        tier: profile.name.clone(),
        usable_bytes: usable,
        usable_tib: capacity::usable_tib(server),
        index_memory_bytes: server.memory.index_budget.0,
        dedup_cache_bytes: dedup_cache_bytes(f64::from(profile.marketing_capacity_tb)),
        arrays,
        spares,
        unused: (0..hw.disks.len())
            .filter(|d| !used.contains(d))
            .map(|d| hw.disks[d].name.clone())
            .collect(),
    })
}

fn class_ok(class: DiskClass, d: &DiskInfo) -> bool {
    match class {
        DiskClass::Ssd => !d.rotational,
        DiskClass::Hdd15k => d.rotational && d.rpm.is_none_or(|r| r >= FAST_RPM_MIN),
        DiskClass::Hdd7k2 => d.rotational,
    }
}

fn has_serial(d: &DiskInfo) -> bool {
    d.serial.as_deref().is_some_and(|s| !s.trim().is_empty())
}

fn fits(g: &DiskGroup, d: &DiskInfo) -> bool {
    class_ok(g.class, d) && d.size_bytes >= g.size.0
}

/// Bay first (disks without one last), then kernel name in natural order (sdz before sdaa).
fn bay_order(d: &DiskInfo) -> (u32, usize, &str) {
    (d.slot.unwrap_or(u32::MAX), d.name.len(), d.name.as_str())
}

/// For each disk group (profile order), the indices of its disks in bay order.
fn assign(
    tier: &str,
    server: &Server,
    hw: &HardwareDescription,
) -> Result<Vec<Vec<usize>>, Mismatch> {
    let groups = &server.disk_groups;
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| std::cmp::Reverse(groups[g].size));
    let mut taken = vec![false; hw.disks.len()];
    let mut chosen = vec![Vec::new(); groups.len()];
    for gi in order {
        let g = &groups[gi];
        let mut eligible: Vec<usize> = (0..hw.disks.len())
            .filter(|&d| !taken[d] && fits(g, &hw.disks[d]) && has_serial(&hw.disks[d]))
            .collect();
        if eligible.len() < g.count as usize {
            return Err(Mismatch::Disks {
                tier: tier.to_owned(),
                label: g.role.disks_label(),
                class: g.class.label(),
                need: g.count,
                size: g.size.approx(false),
                found: eligible.len(),
                hint: hint(server, g, hw, &taken, &eligible),
            });
        }
        // Best fit: the smallest disks that are large enough.
        eligible.sort_by_key(|&d| (hw.disks[d].size_bytes, bay_order(&hw.disks[d])));
        eligible.truncate(g.count as usize);
        eligible.sort_by_key(|&d| bay_order(&hw.disks[d]));
        for &d in &eligible {
            taken[d] = true;
        }
        chosen[gi] = eligible;
    }
    Ok(chosen)
}

/// The likeliest reason a group came up short, when the description shows one.
fn hint(
    server: &Server,
    g: &DiskGroup,
    hw: &HardwareDescription,
    taken: &[bool],
    eligible: &[usize],
) -> Option<String> {
    let free = || {
        hw.disks
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .map(|(_, d)| d)
    };
    if let Some(d) = free().find(|d| fits(g, d) && !has_serial(d)) {
        return Some(format!("{} has no serial number", d.label()));
    }
    if let Some(d) = free()
        .find(|d| class_ok(g.class, d) && d.size_bytes < g.size.0 && d.size_bytes >= g.size.0 / 2)
    {
        return Some(format!(
            "{} is {}, too small?",
            d.label(),
            ByteSize(d.size_bytes).approx(false)
        ));
    }
    if let Some(d) = free().find(|d| d.size_bytes >= g.size.0 && !class_ok(g.class, d)) {
        let what = match (d.rotational, d.rpm) {
            (false, _) => "an SSD".to_owned(),
            (true, Some(r)) => format!("a {r} RPM disk"),
            (true, None) => "rotational".to_owned(),
        };
        return Some(format!("{} is {what}, not {}", d.label(), g.class.label()));
    }
    let slots: Vec<u32> = eligible.iter().filter_map(|&d| hw.disks[d].slot).collect();
    let (lo, hi) = (*slots.iter().min()?, *slots.iter().max()?);
    let occupied: BTreeSet<u32> = hw.disks.iter().filter_map(|d| d.slot).collect();
    let short = (g.count as usize).saturating_sub(eligible.len());
    let gaps: Vec<String> = (lo..=hi)
        .filter(|s| !occupied.contains(s))
        .take(short)
        .map(|s| s.to_string())
        .collect();
    match gaps.len() {
        0 if short == 1 && hi + 1 < server.chassis.bays && !occupied.contains(&(hi + 1)) => {
            Some(format!("missing bay {}?", hi + 1))
        }
        0 => None,
        1 => Some(format!("missing bay {}?", gaps[0])),
        _ => Some(format!("missing bays {}?", gaps.join(", "))),
    }
}

fn check_ram_cpu(tier: &str, server: &Server, hw: &HardwareDescription) -> Result<(), Mismatch> {
    let ram = server.memory.ram.0;
    let min = ram / 16 * RAM_TOLERANCE_SIXTEENTHS;
    if hw.memory.total_bytes < min {
        return Err(Mismatch::Ram {
            tier: tier.to_owned(),
            need: server.memory.ram.approx(true),
            min: ByteSize(min).approx(true),
            found: ByteSize(hw.memory.total_bytes).approx(true),
        });
    }
    let need = server.cpu.cores();
    if hw.cpu.cores < need {
        return Err(Mismatch::Cpu {
            tier: tier.to_owned(),
            need,
            found: hw.cpu.cores,
        });
    }
    Ok(())
}
