//! Reading the machine's hardware from sysfs and procfs into a
//! [`HardwareDescription`](tiervault_model::HardwareDescription).
//!
//! The roots are parameters (`/sys` and `/proc` on a real machine), so tests point them at a
//! fake tree. What is read:
//! - `<sys>/block/<name>/`: every block device except loop, ram, zram, dm-, md, nbd and sr
//!   (optical) devices: `size` (512-byte sectors), `queue/rotational`, `device/model`, the
//!   serial (`device/serial`, else `serial` (virtio), else `device/vpd_pg80`, else
//!   `device/wwid` or `wwid`), the RPM from `device/vpd_pgb1` (SCSI block device
//!   characteristics), the bay from an `device/enclosure_device:<slot>` link, and the bus
//!   from the device's sysfs path (`/nvme`, `/virtio`, `/usb`, `/ata`, `end_device-` for SAS,
//!   `/mmc`) or its `device/subsystem` link;
//! - `<proc>/meminfo`: MemTotal;
//! - `<proc>/cpuinfo`: logical CPUs, sockets (`physical id`) and physical cores
//!   (`physical id`, `core id` pairs).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tiervault_model::{Bus, CpuInfo, DiskInfo, HardwareDescription, MemoryInfo, HARDWARE_SCHEMA};

/// Why the hardware could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
}

const SKIPPED_PREFIXES: [&str; 7] = ["loop", "ram", "zram", "dm-", "md", "nbd", "sr"];

/// Reads the hardware under `sys_root` (e.g. `/sys`) and `proc_root` (e.g. `/proc`).
pub fn read_hardware(sys_root: &Path, proc_root: &Path) -> Result<HardwareDescription, HwError> {
    Ok(HardwareDescription {
        schema: HARDWARE_SCHEMA,
        source: Some(format!(
            "sysfs {} and procfs {}",
            sys_root.display(),
            proc_root.display()
        )),
        cpu: read_cpu(&proc_root.join("cpuinfo"))?,
        memory: read_memory(&proc_root.join("meminfo"))?,
        disks: read_disks(&sys_root.join("block"))?,
    })
}

fn read(path: &Path) -> Result<String, HwError> {
    fs::read_to_string(path).map_err(|source| HwError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A sysfs attribute, trimmed; `None` when absent or empty.
fn attr(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let s = String::from_utf8_lossy(&bytes);
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_owned())
}

fn read_disks(block: &Path) -> Result<Vec<DiskInfo>, HwError> {
    let entries = fs::read_dir(block).map_err(|source| HwError::Read {
        path: block.to_owned(),
        source,
    })?;
    let mut disks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| HwError::Read {
            path: block.to_owned(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        disks.push(read_disk(&entry.path(), name)?);
    }
    disks.sort_by(|a, b| (a.name.len(), &a.name).cmp(&(b.name.len(), &b.name)));
    Ok(disks)
}

fn read_disk(dir: &Path, name: String) -> Result<DiskInfo, HwError> {
    let size_path = dir.join("size");
    let sectors: u64 = read(&size_path)?
        .trim()
        .parse()
        .map_err(|_| HwError::Malformed {
            path: size_path.clone(),
            reason: "not a number of 512-byte sectors".into(),
        })?;
    let dev = dir.join("device");
    let rotational = attr(&dir.join("queue/rotational")).is_some_and(|r| r == "1");
    let serial = attr(&dev.join("serial"))
        .or_else(|| attr(&dir.join("serial")))
        .or_else(|| vpd_pg80(&dev.join("vpd_pg80")))
        .or_else(|| attr(&dev.join("wwid")))
        .or_else(|| attr(&dir.join("wwid")));
    Ok(DiskInfo {
        size_bytes: sectors.saturating_mul(512),
        rotational,
        rpm: vpd_rpm(&dev.join("vpd_pgb1")),
        model: attr(&dev.join("model")),
        serial,
        bus: bus(dir, &dev),
        slot: slot(&dev),
        name,
    })
}

/// The unit serial number page (0x80): a 4-byte header, then the serial (length in byte 3).
fn vpd_pg80(path: &Path) -> Option<String> {
    let b = fs::read(path).ok()?;
    let len = usize::from(*b.get(3)?);
    let s = String::from_utf8_lossy(b.get(4..(4 + len).min(b.len()))?);
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_owned())
}

/// The block device characteristics page (0xb1): bytes 4-5 are the medium rotation rate
/// (1 = non-rotating, 0x0401..=0xfffe = RPM, others unknown).
fn vpd_rpm(path: &Path) -> Option<u32> {
    let b = fs::read(path).ok()?;
    let rate = u32::from(u16::from_be_bytes([*b.get(4)?, *b.get(5)?]));
    (0x0401..=0xfffe).contains(&rate).then_some(rate)
}

/// The enclosure bay: a `device/enclosure_device:<slot name>` link, e.g.
/// `enclosure_device:Slot 09` or `enclosure_device:9`; the trailing number is the bay.
fn slot(dev: &Path) -> Option<u32> {
    fs::read_dir(dev).ok()?.flatten().find_map(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        let rest = n.strip_prefix("enclosure_device:")?;
        let digits: String = rest
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().ok()
    })
}

fn bus(dir: &Path, dev: &Path) -> Bus {
    let path = fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_owned())
        .to_string_lossy()
        .into_owned();
    let by_path = [
        ("/nvme", Bus::Nvme),
        ("/virtio", Bus::Virtio),
        ("/usb", Bus::Usb),
        ("/end_device-", Bus::Sas),
        ("/ata", Bus::Sata),
        ("/mmc", Bus::Mmc),
    ];
    if let Some((_, b)) = by_path.iter().find(|(k, _)| path.contains(k)) {
        return *b;
    }
    let subsystem = fs::read_link(dev.join("subsystem"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
    match subsystem.as_deref() {
        Some("nvme") => Bus::Nvme,
        Some("virtio") => Bus::Virtio,
        Some("scsi") => Bus::Scsi,
        Some("usb") => Bus::Usb,
        Some("mmc") => Bus::Mmc,
        _ => Bus::Unknown,
    }
}

fn read_memory(meminfo: &Path) -> Result<MemoryInfo, HwError> {
    let text = read(meminfo)?;
    let malformed = || HwError::Malformed {
        path: meminfo.to_owned(),
        reason: "no \"MemTotal: N kB\" line".into(),
    };
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .ok_or_else(malformed)?;
    let kb: u64 = line
        .trim()
        .strip_suffix("kB")
        .ok_or_else(malformed)?
        .trim()
        .parse()
        .map_err(|_| malformed())?;
    Ok(MemoryInfo {
        total_bytes: kb.saturating_mul(1024),
    })
}

fn read_cpu(cpuinfo: &Path) -> Result<CpuInfo, HwError> {
    let text = read(cpuinfo)?;
    let mut threads = 0u32;
    let mut model = None;
    let mut sockets = BTreeSet::new();
    let mut cores = BTreeSet::new();
    // One block per logical CPU, separated by blank lines.
    for block in text.split("\n\n") {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
        };
        if field("processor").is_none() {
            continue;
        }
        threads += 1;
        if model.is_none() {
            model = field("model name");
        }
        if let (Some(p), c) = (field("physical id"), field("core id")) {
            sockets.insert(p.clone());
            cores.insert((p, c.unwrap_or_else(|| threads.to_string())));
        }
    }
    if threads == 0 {
        return Err(HwError::Malformed {
            path: cpuinfo.to_owned(),
            reason: "no \"processor\" entries".into(),
        });
    }
    // Without topology lines (some VMs, non-x86), each logical CPU counts as a core.
    let count = |s: usize| u32::try_from(s).unwrap_or(u32::MAX);
    Ok(CpuInfo {
        model,
        sockets: count(sockets.len()).max(1),
        cores: if cores.is_empty() {
            threads
        } else {
            count(cores.len())
        },
        threads,
    })
}

#[cfg(test)]
mod tests;
