//! The operations the pool logic asks the host to run, and the exact command line each one
//! is: `--dry-run` prints these, the real host runs them, the fake simulates them.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// File system made on an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    Xfs,
    Ext4,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Xfs => "xfs",
            FsKind::Ext4 => "ext4",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// Erase every signature of a disk the operator named by serial (`--wipe SERIAL`).
    Wipe {
        serial: String,
        dev: PathBuf,
    },
    /// `mdadm --create` with metadata 1.2 and a write-intent bitmap.
    Create {
        name: String,
        level: String,
        chunk_kib: u32,
        members: Vec<PathBuf>,
        spares: Vec<PathBuf>,
    },
    /// Assemble an existing array by its UUID from the disks that carry it.
    Assemble {
        name: String,
        uuid: String,
        devs: Vec<PathBuf>,
    },
    Mkfs {
        dev: PathBuf,
        kind: FsKind,
        label: String,
        /// Stripe unit (the md chunk) and width (data members).
        chunk_kib: u32,
        data_members: u32,
        /// The array was created by this run: a signature mkfs finds on it is a leftover
        /// from the disks' past (md's data area starts where an old array's did), so it is
        /// overwritten.
        fresh: bool,
    },
    Mount {
        dev: PathBuf,
        at: PathBuf,
        kind: FsKind,
    },
    /// Replace a small file crash-safely (mdadm.conf, a mount unit, a wants link's target).
    WriteFile {
        path: PathBuf,
        text: String,
        /// What it is, for the dry-run listing.
        what: String,
    },
    /// A symlink (enabling a mount unit under `local-fs.target.wants/`).
    Link {
        path: PathBuf,
        target: PathBuf,
    },
    AddSpare {
        md: PathBuf,
        dev: PathBuf,
    },
    /// Take a faulty or spare member out of an array.
    Remove {
        md: PathBuf,
        dev: PathBuf,
    },
    /// Mark a member failed (moving a spare between arrays, `pool replace`).
    Fail {
        md: PathBuf,
        dev: PathBuf,
    },
    /// Hot replacement: `new` (already a spare of `md`) is rebuilt from `old` while `old`
    /// stays in service, then `old` is marked faulty.
    Replace {
        md: PathBuf,
        old: PathBuf,
        new: PathBuf,
    },
    /// Start (`check`) or stop (`idle`) a scrub: a write to the array's `sync_action`.
    SyncAction {
        dev: String,
        action: String,
    },
}

impl Op {
    /// The command line that carries the operation out; `None` for file writes and sysfs
    /// writes, which the host does itself.
    pub fn argv(&self) -> Option<Vec<String>> {
        let s = |p: &PathBuf| p.display().to_string();
        let v = match self {
            Op::Wipe { dev, .. } => vec!["wipefs".into(), "--all".into(), "--force".into(), s(dev)],
            Op::Create {
                name,
                level,
                chunk_kib,
                members,
                spares,
            } => {
                let mut v = vec![
                    "mdadm".into(),
                    "--create".into(),
                    format!("/dev/md/{name}"),
                    "--run".into(),
                    "--metadata=1.2".into(),
                    format!("--level={level}"),
                    format!("--raid-devices={}", members.len()),
                    format!("--spare-devices={}", spares.len()),
                    format!("--chunk={chunk_kib}"),
                    "--bitmap=internal".into(),
                    // The hostname part mdadm adds does not matter: mdadm.conf names the
                    // array by UUID and gives it its /dev/md/ path.
                    format!("--name={name}"),
                ];
                v.extend(members.iter().chain(spares).map(s));
                v
            }
            Op::Assemble { name, uuid, devs } => {
                let mut v = vec![
                    "mdadm".into(),
                    "--assemble".into(),
                    format!("/dev/md/{name}"),
                    "--run".into(),
                    format!("--uuid={uuid}"),
                ];
                v.extend(devs.iter().map(s));
                v
            }
            Op::Mkfs {
                dev,
                kind: FsKind::Xfs,
                label,
                chunk_kib,
                data_members,
                fresh,
            } => {
                let mut v = vec!["mkfs.xfs".into(), "-q".into()];
                if *fresh {
                    v.push("-f".into());
                }
                v.extend([
                    "-L".into(),
                    label.clone(),
                    "-d".into(),
                    format!("su={chunk_kib}k,sw={data_members}"),
                    s(dev),
                ]);
                v
            }
            Op::Mkfs {
                dev,
                kind: FsKind::Ext4,
                label,
                chunk_kib,
                data_members,
                fresh,
            } => {
                // ext4 counts in 4 KiB blocks: stride = chunk, stripe width = a full stripe.
                let stride = (chunk_kib / 4).max(1);
                let mut v = vec!["mkfs.ext4".into(), "-q".into()];
                if *fresh {
                    v.push("-F".into());
                }
                v.extend([
                    "-L".into(),
                    label.clone(),
                    "-E".into(),
                    format!(
                        "stride={stride},stripe_width={}",
                        stride * (*data_members).max(1)
                    ),
                    s(dev),
                ]);
                v
            }
            Op::Mount { dev, at, kind } => vec![
                "mount".into(),
                "-t".into(),
                kind.name().into(),
                "-o".into(),
                "noatime".into(),
                s(dev),
                s(at),
            ],
            Op::AddSpare { md, dev } => vec!["mdadm".into(), s(md), "--add".into(), s(dev)],
            Op::Remove { md, dev } => vec!["mdadm".into(), s(md), "--remove".into(), s(dev)],
            Op::Fail { md, dev } => vec!["mdadm".into(), s(md), "--fail".into(), s(dev)],
            Op::Replace { md, old, new } => vec![
                "mdadm".into(),
                s(md),
                "--replace".into(),
                s(old),
                "--with".into(),
                s(new),
            ],
            Op::WriteFile { .. } | Op::Link { .. } | Op::SyncAction { .. } => return None,
        };
        Some(v)
    }

    /// Whether the operation destroys what is on a disk.
    pub fn destructive(&self) -> bool {
        matches!(self, Op::Wipe { .. } | Op::Create { .. } | Op::Mkfs { .. })
    }
}

/// One line per operation, as `--dry-run` prints it.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(argv) = self.argv() {
            return f.write_str(&argv.join(" "));
        }
        match self {
            Op::WriteFile { path, what, .. } => write!(f, "write {} ({what})", path.display()),
            Op::Link { path, target } => {
                write!(f, "ln -sfn {} {}", target.display(), path.display())
            }
            Op::SyncAction { dev, action } => {
                write!(f, "echo {action} > /sys/block/{dev}/md/sync_action")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_names_every_setting_the_issue_asks_for() {
        let op = Op::Create {
            name: "vault-data0".into(),
            level: "raid6".into(),
            chunk_kib: 512,
            members: (0..4)
                .map(|i| PathBuf::from(format!("/dev/sd{i}")))
                .collect(),
            spares: vec![PathBuf::from("/dev/sdx")],
        };
        assert_eq!(
            op.to_string(),
            "mdadm --create /dev/md/vault-data0 --run --metadata=1.2 --level=raid6 \
             --raid-devices=4 --spare-devices=1 --chunk=512 --bitmap=internal \
             --name=vault-data0 /dev/sd0 /dev/sd1 /dev/sd2 /dev/sd3 /dev/sdx"
        );
        assert!(op.destructive());
    }

    #[test]
    fn mkfs_stripe_geometry_matches_the_array() {
        let mkfs = |kind| Op::Mkfs {
            dev: "/dev/md/vault-data0".into(),
            kind,
            label: "vault-data0".into(),
            chunk_kib: 512,
            data_members: 8,
            fresh: false,
        };
        let xfs = mkfs(FsKind::Xfs);
        assert_eq!(
            xfs.to_string(),
            "mkfs.xfs -q -L vault-data0 -d su=512k,sw=8 /dev/md/vault-data0"
        );
        let ext4 = mkfs(FsKind::Ext4);
        assert_eq!(
            ext4.to_string(),
            "mkfs.ext4 -q -L vault-data0 -E stride=128,stripe_width=1024 /dev/md/vault-data0"
        );
    }

    #[test]
    fn non_commands_describe_themselves() {
        let w = Op::WriteFile {
            path: "/etc/mdadm/mdadm.conf".into(),
            text: String::new(),
            what: "arrays by UUID".into(),
        };
        assert_eq!(
            w.to_string(),
            "write /etc/mdadm/mdadm.conf (arrays by UUID)"
        );
        assert!(w.argv().is_none());
        let s = Op::SyncAction {
            dev: "md127".into(),
            action: "check".into(),
        };
        assert_eq!(
            s.to_string(),
            "echo check > /sys/block/md127/md/sync_action"
        );
    }
}
