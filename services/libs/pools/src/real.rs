//! The real machine behind [`Host`]: disks and md arrays from sysfs, signatures read from
//! the devices themselves ([`crate::probe`]), mounts from mountinfo, and the operations run
//! as mdadm, wipefs, mkfs and mount commands (their exact command lines are [`Op::argv`]).
//! Tested in the tier-3 VM (tests/tests/vm_pools.rs), where md RAID exists.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::host::{
    BlockDisk, DiskUsage, FsInfo, Host, HostError, MdArray, MdMember, Mounted, Observed,
};
use crate::ops::Op;
use crate::parse::mountinfo::{parse_mountinfo, MountInfo};
use crate::parse::sysfs::{parse_md_sysfs, read_block_family, read_raw_md_sysfs, SyncCompleted};
use crate::parse::{short_array_name, DevNum};
use crate::probe::{signatures, Signature, SignatureKind};

/// The machine under `sys` (`/sys`), `dev` (`/dev`) and `proc` (`/proc`).
#[derive(Debug, Clone)]
pub struct RealHost {
    sys: PathBuf,
    dev: PathBuf,
    proc: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Io {
        path: path.to_owned(),
        source,
    }
}

fn malformed(path: &Path, message: impl std::fmt::Display) -> HostError {
    HostError::Malformed {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn attr(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

impl RealHost {
    pub fn new(sys: &Path) -> RealHost {
        RealHost::with_roots(sys, Path::new("/dev"), Path::new("/proc"))
    }

    pub fn with_roots(sys: &Path, dev: &Path, proc: &Path) -> RealHost {
        RealHost {
            sys: sys.to_owned(),
            dev: dev.to_owned(),
            proc: proc.to_owned(),
        }
    }

    fn probe(&self, name: &str, size: u64) -> Result<Vec<Signature>, HostError> {
        let path = self.dev.join(name);
        let file = File::open(&path).map_err(io_err(&path))?;
        signatures(file, size).map_err(|e| malformed(&path, e))
    }

    fn mountinfo(&self) -> Result<MountInfo, HostError> {
        let path = self.proc.join("self/mountinfo");
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        parse_mountinfo(&text).map_err(|e| malformed(&path, e))
    }

    /// Devices in use as swap (`/proc/swaps`), by kernel name.
    fn swaps(&self) -> Vec<String> {
        attr(&self.proc.join("swaps"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|p| p.strip_prefix("/dev/").map(str::to_owned))
            .collect()
    }

    fn disk(
        &self,
        d: tiervault_model::DiskInfo,
        mounts: &MountInfo,
        swaps: &[String],
    ) -> Result<BlockDisk, HostError> {
        let class_block = self.sys.join("class/block");
        let family = read_block_family(&class_block, &d.name)
            .map_err(|e| malformed(&class_block.join(&d.name), e))?;
        let mut busy: Vec<String> = mounts
            .mounts_of(&family)
            .map(|m| format!("mounted at {} ({})", m.mount_point, m.source))
            .collect();
        busy.extend(
            family
                .iter()
                .skip(1)
                // Partitions are the disk's own; md holders are reported as arrays.
                .filter(|b| !b.name.starts_with("md") && !b.name.starts_with(&d.name))
                .map(|b| format!("held by {}", b.name)),
        );
        busy.extend(
            family
                .iter()
                .filter(|b| swaps.contains(&b.name))
                .map(|b| format!("swap ({})", b.name)),
        );
        let sigs = self.probe(&d.name, d.size_bytes)?;
        let usage = usage_of(&sigs);
        let removable = d.bus == tiervault_model::Bus::Usb
            || attr(&self.sys.join("block").join(&d.name).join("removable")).as_deref()
                == Some("1");
        Ok(BlockDisk {
            name: d.name,
            serial: d.serial,
            size_bytes: d.size_bytes,
            usage,
            busy,
            removable,
        })
    }

    fn array(&self, dev: &str, mounts: &MountInfo) -> Result<Option<MdArray>, HostError> {
        let block = self.sys.join("block").join(dev);
        let md_dir = block.join("md");
        if !md_dir.is_dir() {
            return Ok(None);
        }
        let raw = read_raw_md_sysfs(&md_dir).map_err(|e| malformed(&md_dir, e))?;
        let md = parse_md_sysfs(&raw).map_err(|e| malformed(&md_dir, e))?;
        let mut members = Vec::new();
        for d in &md.devices {
            let Some(disk) = d.block.clone() else {
                continue;
            };
            // The raw attributes are keyed by directory (`dev-vdb`), the parsed device by
            // its name (`vdb`).
            let state = raw
                .devices
                .get(&format!("dev-{}", d.name))
                .and_then(|r| r.attrs.get("state"))
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|w| !w.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            members.push(MdMember {
                disk,
                slot: d.slot,
                state,
            });
        }
        // Name and UUID as the members' superblocks say (mdadm's forms).
        let mut name = String::new();
        let mut uuid = md
            .uuid
            .filter(|u| !u.is_nil())
            .map(|u| u.to_string())
            .unwrap_or_default();
        for m in &members {
            let size = attr(&self.sys.join("block").join(&m.disk).join("size"))
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(0, |s| s * 512);
            if let Ok(sigs) = self.probe(&m.disk, size) {
                if let Some(sb) = sigs.iter().find_map(|s| s.md.as_ref()) {
                    name = sb
                        .name
                        .as_deref()
                        .map(short_array_name)
                        .unwrap_or_default()
                        .to_owned();
                    uuid = sb.array_uuid.clone();
                    break;
                }
            }
        }
        let size_bytes = attr(&block.join("size"))
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(0, |s| s * 512);
        let running = md.array_state.is_running();
        let fs = if running && size_bytes > 0 {
            self.probe(dev, size_bytes)
                .ok()
                .and_then(|sigs| {
                    sigs.into_iter().find(|s| {
                        matches!(
                            s.kind,
                            SignatureKind::Xfs
                                | SignatureKind::Ext2
                                | SignatureKind::Ext3
                                | SignatureKind::Ext4
                                | SignatureKind::Btrfs
                                | SignatureKind::Lvm2
                                | SignatureKind::Luks
                        )
                    })
                })
                .map(|s| FsInfo {
                    kind: s.kind.blkid_name().to_owned(),
                    label: s.label,
                })
        } else {
            None
        };
        let devnum = attr(&block.join("dev")).and_then(|t| DevNum::from_str(&t).ok());
        let mount = match devnum.and_then(|n| mounts.mounts_of_dev(n).next()) {
            Some(m) => {
                let at = PathBuf::from(&m.mount_point);
                let st = rustix::fs::statvfs(&at).map_err(|e| HostError::Io {
                    path: at.clone(),
                    source: e.into(),
                })?;
                Some(Mounted {
                    total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
                    avail_bytes: st.f_bavail.saturating_mul(st.f_frsize),
                    at,
                })
            }
            None => None,
        };
        let (sync_completed, sync_action) = (md.sync_completed, md.sync_action);
        Ok(Some(MdArray {
            dev: dev.to_owned(),
            name,
            uuid,
            level: md.level.map(|l| l.as_str().to_owned()).unwrap_or_default(),
            raid_disks: md.raid_disks.map_or(0, |r| r.count),
            array_state: md.array_state.as_str().to_owned(),
            degraded: md.degraded.unwrap_or(0),
            sync_action: sync_action.map_or("idle", |a| a.as_str()).to_owned(),
            sync_completed: match sync_completed {
                Some(SyncCompleted::Sectors { done, total }) => Some((done, total)),
                _ => None,
            },
            sync_speed_kib: md.sync_speed,
            mismatch_cnt: md.mismatch_cnt.unwrap_or(0),
            size_bytes,
            members,
            fs,
            mount,
        }))
    }

    fn command(&self, op: &Op, argv: &[String]) -> Result<(), HostError> {
        let line = op.to_string();
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| HostError::Other(format!("{line}: empty command")))?;
        let out = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| HostError::Spawn {
                command: line.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        // The first lines say what went wrong; usage text that may follow does not.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let head: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(6)
            .collect();
        Err(HostError::Command {
            command: line,
            status: out.status.to_string(),
            stderr: head.join(" | "),
        })
    }
}

/// How long a new array's `/dev/md/NAME` link may take: udev makes it after mdadm returns.
const NODE_WAIT: Duration = Duration::from_secs(20);

/// Waits for a device node udev is about to create (the `/dev/md/NAME` link of an array
/// just created or assembled).
fn wait_for_node(dev: &Path) -> Result<(), HostError> {
    let start = Instant::now();
    while !dev.exists() {
        if start.elapsed() > NODE_WAIT {
            return Err(HostError::Other(format!(
                "{}: did not appear within {} s (is udev running?)",
                dev.display(),
                NODE_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What a disk's signatures say about its use.
fn usage_of(sigs: &[Signature]) -> DiskUsage {
    if let Some(sb) = sigs.iter().find_map(|s| s.md.as_ref()) {
        return DiskUsage::MdMember {
            array_name: sb
                .name
                .as_deref()
                .map(short_array_name)
                .unwrap_or_default()
                .to_owned(),
            array_uuid: sb.array_uuid.clone(),
        };
    }
    if sigs.is_empty() {
        DiskUsage::Blank
    } else {
        DiskUsage::Data {
            found: sigs.iter().map(ToString::to_string).collect(),
        }
    }
}

impl Host for RealHost {
    fn observe(&self) -> Result<Observed, HostError> {
        let hw = tiervault_sys::read_hardware(&self.sys, &self.proc)
            .map_err(|e| HostError::Other(e.to_string()))?;
        let mounts = self.mountinfo()?;
        let swaps = self.swaps();
        let mut disks = Vec::new();
        for d in hw.disks {
            disks.push(self.disk(d, &mounts, &swaps)?);
        }
        let block = self.sys.join("block");
        let mut names: Vec<String> = fs::read_dir(&block)
            .map_err(io_err(&block))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("md"))
            .collect();
        names.sort();
        let mut arrays = Vec::new();
        for n in names {
            if let Some(a) = self.array(&n, &mounts)? {
                arrays.push(a);
            }
        }
        Ok(Observed {
            disks,
            arrays,
            have_xfs: on_path("mkfs.xfs"),
        })
    }

    fn read_file(&self, path: &Path) -> Result<Option<String>, HostError> {
        match fs::read_to_string(path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::Io {
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    fn run(&self, op: &Op) -> Result<(), HostError> {
        match op {
            Op::WriteFile { path, text, .. } => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(io_err(dir))?;
                }
                tiervault_sys::durable::write_atomic(path, text.as_bytes(), 0o644)
                    .map_err(io_err(path))
            }
            Op::Link { path, target } => {
                let dir = path.parent().unwrap_or(Path::new("/"));
                fs::create_dir_all(dir).map_err(io_err(dir))?;
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(path)(e)),
                }
                std::os::unix::fs::symlink(target, path).map_err(io_err(path))?;
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(dir))
            }
            Op::SyncAction { dev, action } => {
                let path = self.sys.join("block").join(dev).join("md/sync_action");
                fs::write(&path, action).map_err(io_err(&path))
            }
            Op::Mount { dev, at, .. } => {
                wait_for_node(dev)?;
                fs::create_dir_all(at).map_err(io_err(at))?;
                let argv = op.argv().unwrap_or_default();
                self.command(op, &argv)
            }
            Op::Mkfs { dev, .. } => {
                wait_for_node(dev)?;
                let argv = op.argv().unwrap_or_default();
                self.command(op, &argv)
            }
            other => {
                let argv = other
                    .argv()
                    .ok_or_else(|| HostError::Other(format!("{other}: not a command")))?;
                self.command(other, &argv)
            }
        }
    }
}
