//! `/proc/self/mountinfo` ([`parse_mountinfo`]) and "is this disk in use by a mount".
//!
//! ```text
//! 26 1 9:5 / /mnt/vault\040data rw,relatime - ext4 /dev/md5 rw
//! ```
//! mount id, parent id, `major:minor`, root, mount point, mount options, optional fields
//! (`shared:1`, ...), `-`, filesystem type, source, superblock options. The kernel escapes
//! space, tab, newline and backslash in paths as `\040`, `\011`, `\012`, `\134`.

use serde::{Deserialize, Serialize};

use super::{BlockDev, DevNum};

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// The `st_dev` of files in the mount: the block device for ext4/XFS, an anonymous
    /// `0:N` for btrfs, tmpfs, proc ...
    pub dev: DevNum,
    /// The directory of the filesystem mounted here (`/` unless a bind mount), unescaped.
    pub root: String,
    /// Unescaped (`/mnt/vault data`).
    pub mount_point: String,
    pub mount_options: String,
    pub optional_fields: Vec<String>,
    pub fstype: String,
    /// Unescaped (`/dev/md5`; `none`, `tmpfs`, ... for virtual filesystems).
    pub source: String,
    pub super_options: String,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    pub entries: Vec<MountEntry>,
}

impl MountInfo {
    /// The mounts of any of `devices` (a disk with its partitions and holders, as
    /// [`super::sysfs::read_block_family`] gives them): matched by device number, or by a
    /// source of `/dev/<name>` (btrfs shows an anonymous device number, not the disk's).
    pub fn mounts_of<'a>(
        &'a self,
        devices: &'a [BlockDev],
    ) -> impl Iterator<Item = &'a MountEntry> + 'a {
        self.entries.iter().filter(move |e| {
            devices.iter().any(|d| {
                e.dev == d.dev || e.source.strip_prefix("/dev/").is_some_and(|n| n == d.name)
            })
        })
    }

    /// Is any of `devices` mounted?
    pub fn any_mounted(&self, devices: &[BlockDev]) -> bool {
        self.mounts_of(devices).next().is_some()
    }

    /// The mounts of one device number.
    pub fn mounts_of_dev(&self, dev: DevNum) -> impl Iterator<Item = &MountEntry> + '_ {
        self.entries.iter().filter(move |e| e.dev == dev)
    }
}

/// A mountinfo line that does not read right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line}: {problem}: {text:?}")]
pub struct MountInfoError {
    pub line: usize,
    pub text: String,
    pub problem: &'static str,
}

/// Parses `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Result<MountInfo, MountInfoError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |problem| MountInfoError {
            line: i + 1,
            text: line.to_string(),
            problem,
        };
        let words: Vec<&str> = line.split(' ').collect();
        let sep = words
            .iter()
            .position(|w| *w == "-")
            .ok_or_else(|| err("no ` - ` separator"))?;
        if sep < 6 || words.len() < sep + 4 {
            return Err(err("too few fields"));
        }
        entries.push(MountEntry {
            mount_id: words[0].parse().map_err(|_| err("bad mount id"))?,
            parent_id: words[1].parse().map_err(|_| err("bad parent id"))?,
            dev: words[2].parse().map_err(|_| err("bad major:minor"))?,
            root: unescape(words[3]).ok_or_else(|| err("bad escape in the root"))?,
            mount_point: unescape(words[4]).ok_or_else(|| err("bad escape in the mount point"))?,
            mount_options: words[5].to_string(),
            optional_fields: words[6..sep].iter().map(|w| w.to_string()).collect(),
            fstype: words[sep + 1].to_string(),
            source: unescape(words[sep + 2]).ok_or_else(|| err("bad escape in the source"))?,
            super_options: words[sep + 3..].join(" "),
        });
    }
    Ok(MountInfo { entries })
}

/// `\040` → space etc. (three octal digits); `None` for a backslash not followed by them.
fn unescape(s: &str) -> Option<String> {
    if !s.contains('\\') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let digits = b.get(i + 1..i + 4)?;
            if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                return None;
            }
            let v = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(v).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dev(name: &str, major: u32, minor: u32) -> BlockDev {
        BlockDev {
            name: name.to_string(),
            dev: DevNum { major, minor },
        }
    }

    #[test]
    fn guest_mountinfo_with_an_escaped_mount_point() {
        let m = parse_mountinfo(include_str!("../../testdata/md/01-clean/mountinfo")).unwrap();
        assert_eq!(m.entries.len(), 7);
        let e = m.entries.last().unwrap();
        assert_eq!((e.mount_id, e.parent_id), (26, 1));
        assert_eq!(e.dev, DevNum { major: 9, minor: 5 });
        assert_eq!(e.root, "/");
        assert_eq!(e.mount_point, "/mnt/vault data");
        assert_eq!((e.fstype.as_str(), e.source.as_str()), ("ext4", "/dev/md5"));
        assert_eq!(e.mount_options, "rw,relatime");
        assert_eq!(e.super_options, "rw");
        assert!(e.optional_fields.is_empty());
        let cg = &m.entries[5];
        assert_eq!(
            (
                cg.mount_point.as_str(),
                cg.fstype.as_str(),
                cg.source.as_str()
            ),
            ("/sys/fs/cgroup", "cgroup2", "none")
        );

        // vdn and vdo are md5's members (01-clean/holders); md5 is 9:5 (01-clean/block-dev).
        let vdn_family = [dev("vdn", 254, 208), dev("md5", 9, 5)];
        assert!(m.any_mounted(&vdn_family));
        assert_eq!(m.mounts_of(&vdn_family).count(), 1);
        assert!(!m.any_mounted(&[dev("vda", 254, 0), dev("md0", 9, 0)]));
        assert_eq!(m.mounts_of_dev(DevNum { major: 9, minor: 5 }).count(), 1);
    }

    #[test]
    fn host_style_lines_optional_fields_and_btrfs() {
        let text = "29 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro\n\
                    30 29 0:45 /@home /home rw,relatime shared:2 master:3 - btrfs /dev/sdb1 rw,space_cache=v2,subvolid=257,subvol=/@home\n\
                    31 29 8:3 /srv/a\\134b /srv/x\\011y rw - xfs /dev/sd\\040c rw,attr2 inode64\n";
        let m = parse_mountinfo(text).unwrap();
        assert_eq!(m.entries[0].optional_fields, ["shared:1"]);
        assert_eq!(m.entries[1].optional_fields, ["shared:2", "master:3"]);
        assert_eq!(m.entries[1].root, "/@home");
        assert_eq!(m.entries[2].root, "/srv/a\\b");
        assert_eq!(m.entries[2].mount_point, "/srv/x\ty");
        assert_eq!(m.entries[2].source, "/dev/sd c");
        assert_eq!(m.entries[2].super_options, "rw,attr2 inode64");
        // btrfs: the anonymous 0:45 does not match sdb1, the source does.
        assert!(m.any_mounted(&[dev("sdb", 8, 16), dev("sdb1", 8, 17)]));
        assert!(m.any_mounted(&[dev("sda", 8, 0), dev("sda2", 8, 2)]));
        assert!(!m.any_mounted(&[dev("sdd", 8, 48)]));
    }

    #[test]
    fn errors_name_the_line() {
        let err = |t: &str| parse_mountinfo(t).unwrap_err().to_string();
        assert_eq!(
            err("26 1 9:5 / /mnt rw ext4 /dev/md5 rw\n"),
            "mountinfo line 1: no ` - ` separator: \"26 1 9:5 / /mnt rw ext4 /dev/md5 rw\""
        );
        assert_eq!(
            err("\n26 1 9 / /mnt rw - ext4 /dev/md5 rw\n"),
            "mountinfo line 2: bad major:minor: \"26 1 9 / /mnt rw - ext4 /dev/md5 rw\""
        );
        assert_eq!(
            err("26 1 9:5 / /mnt\\04 rw - ext4 /dev/md5 rw\n"),
            "mountinfo line 1: bad escape in the mount point: \"26 1 9:5 / /mnt\\\\04 rw - ext4 /dev/md5 rw\""
        );
        assert_eq!(
            err("26 1 9:5 / - ext4 /dev/md5 rw\n"),
            "mountinfo line 1: too few fields: \"26 1 9:5 / - ext4 /dev/md5 rw\""
        );
        assert!(err("26 1 9:5 / /m rw - ext4\n").contains("too few fields"));
    }

    #[test]
    fn this_hosts_mountinfo_parses() {
        // The host's own table: whatever is mounted here, every line must read.
        if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") {
            let m = parse_mountinfo(&text).unwrap();
            assert!(m.entries.iter().any(|e| e.mount_point == "/"));
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_mountinfo(&text);
        }

        #[test]
        fn escapes_round_trip(path in "/[ \\t\\\\a-z]{0,20}") {
            let escaped: String = path.chars().map(|c| match c {
                ' ' => "\\040".to_string(),
                '\t' => "\\011".to_string(),
                '\\' => "\\134".to_string(),
                c => c.to_string(),
            }).collect();
            let line = format!("1 1 8:1 / {escaped} rw - ext4 /dev/sda1 rw\n");
            let m = parse_mountinfo(&line).unwrap();
            proptest::prop_assert_eq!(&m.entries[0].mount_point, &path);
        }
    }
}
