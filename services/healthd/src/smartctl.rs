//! The disks and their SMART data: the [`SmartSource`] seam, and [`Smartctl`], which lists the
//! whole disks in sysfs and runs `smartctl --json` under a deadline (a disk that hangs must not
//! hang the service) through the same bounded runner as the BMC reader.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tiervault_health::selftest::TestKind;
use tiervault_health::smart::{parse, SmartError, SmartReport};
use tiervault_ipmi::runner::{Invocation, ProcessRunner, RunError, Runner};

/// A disk the service watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name: `sda`, `nvme0n1`.
    pub name: String,
    pub device: PathBuf,
    /// The md array it is a member of (from sysfs `holders/`), for self-test staggering.
    pub array: Option<String>,
}

pub trait SmartSource: Send {
    fn disks(&self) -> Vec<Disk>;
    fn report(&self, disk: &Disk) -> Result<SmartReport, SmartError>;
    fn start_test(&self, disk: &Disk, kind: TestKind) -> Result<(), String>;
}

pub struct Smartctl {
    program: PathBuf,
    timeout: Duration,
    sysfs_root: PathBuf,
    dev_root: PathBuf,
    runner: Box<dyn Runner>,
}

impl Smartctl {
    pub fn new(
        program: PathBuf,
        timeout: Duration,
        sysfs_root: PathBuf,
        dev_root: PathBuf,
    ) -> Self {
        Smartctl {
            program,
            timeout,
            sysfs_root,
            dev_root,
            runner: Box::new(ProcessRunner),
        }
    }

    fn run(&self, disk: &Disk, args: &[&str]) -> Result<String, SmartError> {
        let device = disk.device.display().to_string();
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.push(device.clone());
        let inv = Invocation {
            program: self.program.clone(),
            args: all,
            env: Vec::new(),
            timeout: self.timeout,
        };
        match self.runner.run(&inv) {
            // smartctl's exit status is a bit mask the parser reads from the JSON itself.
            Ok(out) => Ok(out.stdout),
            Err(RunError::NotFound) => Err(SmartError::Unsupported {
                device,
                messages: format!(
                    "{} not found (install smartmontools)",
                    self.program.display()
                ),
            }),
            Err(e) => Err(SmartError::NotJson {
                device,
                why: format!("{}: {e}", self.program.display()),
            }),
        }
    }
}

/// Block devices that are not disks of their own.
fn is_virtual(name: &str) -> bool {
    ["loop", "ram", "md", "dm-", "zram", "sr", "nbd", "fd"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The md device holding disk `name` (`md127`), from sysfs `holders/`: the disks of one array
/// share it, which is all the self-test staggering needs.
fn array_of(sysfs_root: &Path, name: &str) -> Option<String> {
    let holders = sysfs_root.join("block").join(name).join("holders");
    let mut found: Vec<String> = std::fs::read_dir(holders)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|h| h.starts_with("md"))
        .collect();
    found.sort();
    found.into_iter().next()
}

impl SmartSource for Smartctl {
    fn disks(&self) -> Vec<Disk> {
        let Ok(entries) = std::fs::read_dir(self.sysfs_root.join("block")) else {
            return Vec::new();
        };
        let mut out: Vec<Disk> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !is_virtual(n))
            .map(|name| Disk {
                device: self.dev_root.join(&name),
                array: array_of(&self.sysfs_root, &name),
                name,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn report(&self, disk: &Disk) -> Result<SmartReport, SmartError> {
        let text = self.run(disk, &["--json=c", "-x"])?;
        parse(&disk.device.display().to_string(), &text)
    }

    fn start_test(&self, disk: &Disk, kind: TestKind) -> Result<(), String> {
        let text = self
            .run(disk, &["--json=c", "-t", kind.smartctl_arg()])
            .map_err(|e| e.to_string())?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("smartctl -t: {e}"))?;
        match doc["smartctl"]["exit_status"].as_u64() {
            Some(0) => Ok(()),
            other => Err(format!(
                "smartctl -t {} {}: exit status {other:?}: {}",
                kind.smartctl_arg(),
                disk.device.display(),
                doc["smartctl"]["messages"]
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_disks_with_their_arrays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = dir.path().join("block");
        for d in ["sda", "sdb", "nvme0n1", "loop0", "md127", "dm-0", "sr0"] {
            std::fs::create_dir_all(b.join(d).join("holders")).expect("mkdir");
        }
        std::fs::create_dir_all(b.join("sdb/holders/md127")).expect("mkdir");
        let s = Smartctl::new(
            "smartctl".into(),
            Duration::from_secs(1),
            dir.path().into(),
            "/dev".into(),
        );
        let disks = s.disks();
        let names: Vec<(&str, Option<&str>)> = disks
            .iter()
            .map(|d| (d.name.as_str(), d.array.as_deref()))
            .collect();
        assert_eq!(
            names,
            [("nvme0n1", None), ("sda", None), ("sdb", Some("md127"))]
        );
        assert_eq!(disks[0].device, PathBuf::from("/dev/nvme0n1"));
    }

    #[test]
    fn a_missing_smartctl_is_a_named_error() {
        let s = Smartctl::new(
            "/nonexistent/smartctl".into(),
            Duration::from_secs(5),
            "/sys".into(),
            "/dev".into(),
        );
        let disk = Disk {
            name: "sda".into(),
            device: "/dev/sda".into(),
            array: None,
        };
        let e = s.report(&disk).expect_err("no smartctl");
        assert!(e.to_string().contains("/dev/sda"), "{e}");
    }
}
