//! Does a disk carry data? The signatures a destructive operation must refuse to overwrite
//! unless the operator names the disk's serial (product invariant 3).
//!
//! [`signatures`] reads a few small blocks at fixed places of a device (or image) and reports
//! every known on-disk signature it finds: partition tables (MBR, protective MBR, GPT primary
//! and backup, 512-byte and 4 KiB sectors), filesystems (ext2/3/4, XFS, btrfs, FAT, NTFS),
//! Linux swap, md RAID superblocks (0.90, 1.0, 1.1, 1.2, with the array's UUID and name),
//! LVM2 physical volumes, LUKS and ZFS labels. `offset` is where the signature's magic lies,
//! the same offset `wipefs -n` prints, so the two can be compared (the tests do, on images
//! made by the real tools).
//!
//! It never reads outside `0..size`, and an I/O error is an error, not "no signature": a
//! disk that cannot be read must not look blank. An empty result means none of the known
//! signatures was found, not that the disk holds no data (random data, an unknown
//! filesystem): callers treat "blank" as a precondition, never as proof.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use crate::parse::RaidLevel;

/// md's superblock magic (0.90 in host order, little-endian for 1.x).
pub const MD_MAGIC: u32 = 0xa92b_4efc;

/// What was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureKind {
    /// A DOS/MBR partition table with at least one partition.
    Mbr,
    /// The protective MBR in front of a GPT (a partition of type 0xEE).
    ProtectiveMbr,
    /// A GPT header at LBA 1.
    Gpt,
    /// The backup GPT header at the last LBA.
    GptBackup,
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Btrfs,
    Swap,
    /// An md RAID member; [`Signature::md`] has the superblock's details.
    Md,
    /// An LVM2 physical volume label.
    Lvm2,
    Luks,
    Fat,
    Ntfs,
    /// A ZFS vdev label (uberblocks).
    Zfs,
}

impl SignatureKind {
    /// The name `blkid`/`wipefs` give it (`PTTYPE` or `TYPE`).
    pub fn blkid_name(self) -> &'static str {
        match self {
            SignatureKind::Mbr => "dos",
            SignatureKind::ProtectiveMbr => "PMBR",
            SignatureKind::Gpt | SignatureKind::GptBackup => "gpt",
            SignatureKind::Ext2 => "ext2",
            SignatureKind::Ext3 => "ext3",
            SignatureKind::Ext4 => "ext4",
            SignatureKind::Xfs => "xfs",
            SignatureKind::Btrfs => "btrfs",
            SignatureKind::Swap => "swap",
            SignatureKind::Md => "linux_raid_member",
            SignatureKind::Lvm2 => "LVM2_member",
            SignatureKind::Luks => "crypto_LUKS",
            SignatureKind::Fat => "vfat",
            SignatureKind::Ntfs => "ntfs",
            SignatureKind::Zfs => "zfs_member",
        }
    }
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.blkid_name())
    }
}

/// The md superblock layout versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MdVersion {
    /// 0.90: the last 64 KiB-aligned 64 KiB block of the device.
    #[serde(rename = "0.90")]
    V0_90,
    /// 1.0: 8 KiB from the end, 4 KiB aligned.
    #[serde(rename = "1.0")]
    V1_0,
    /// 1.1: offset 0.
    #[serde(rename = "1.1")]
    V1_1,
    /// 1.2: offset 4096.
    #[serde(rename = "1.2")]
    V1_2,
}

impl MdVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            MdVersion::V0_90 => "0.90",
            MdVersion::V1_0 => "1.0",
            MdVersion::V1_1 => "1.1",
            MdVersion::V1_2 => "1.2",
        }
    }
}

impl fmt::Display for MdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// This member's role as its own superblock records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MdSuperblockRole {
    /// An active member in this slot.
    Active(u32),
    Spare,
    Faulty,
    Journal,
    /// 0.90 superblocks, or a 1.x device number beyond the role table.
    Unknown,
}

/// What an md superblock says about its array and this member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdSuperblock {
    pub version: MdVersion,
    /// The array's UUID as mdadm prints it (`9dab6a3d:5a99556a:efffaae8:2d51e817`).
    pub array_uuid: String,
    /// The array's name (`host:name`; 1.x only).
    pub name: Option<String>,
    /// `None` for a level number md does not know.
    pub level: Option<RaidLevel>,
    pub raid_disks: u32,
    /// This member's UUID (1.x only), mdadm's format.
    pub device_uuid: Option<String>,
    pub role: MdSuperblockRole,
    pub events: u64,
    /// The superblock's checksum matches its contents (1.x: `sb_csum`; 0.90: `sb_csum`).
    pub checksum_ok: bool,
}

/// One signature found on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub kind: SignatureKind,
    /// Byte offset of the magic that identifies it (what `wipefs -n` prints as OFFSET).
    pub offset: u64,
    /// The filesystem's, PV's or LUKS volume's UUID where it has one, in blkid's format.
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// For [`SignatureKind::Md`].
    pub md: Option<MdSuperblock>,
}

impl Signature {
    fn new(kind: SignatureKind, offset: u64) -> Signature {
        Signature {
            kind,
            offset,
            uuid: None,
            label: None,
            md: None,
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.kind, self.offset)?;
        if let Some(md) = &self.md {
            write!(f, " (md {} superblock, array {}", md.version, md.array_uuid)?;
            if let Some(name) = &md.name {
                write!(f, " {name:?}")?;
            }
            f.write_str(")")?;
        } else if let Some(uuid) = &self.uuid {
            write!(f, " (UUID {uuid})")?;
        }
        Ok(())
    }
}

/// Reading the device failed: the probe cannot say it is blank.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read {len} bytes at offset {offset} of the device")]
    Read {
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
}

/// Every known signature on a device of `size` bytes, in increasing offset order.
pub fn signatures<R: Read + Seek>(reader: R, size: u64) -> Result<Vec<Signature>, ProbeError> {
    let mut dev = Dev { r: reader, size };
    let mut found = Vec::new();
    let sector0 = dev.read(0, 512)?;
    if let Some(s0) = &sector0 {
        probe_boot_sector(s0, &mut found);
    }
    probe_gpt(&mut dev, &mut found)?;
    probe_ext(&mut dev, &mut found)?;
    probe_xfs(&mut dev, &mut found)?;
    probe_btrfs(&mut dev, &mut found)?;
    probe_swap(&mut dev, &mut found)?;
    probe_md(&mut dev, &mut found)?;
    probe_lvm2(&mut dev, &mut found)?;
    probe_luks(&mut dev, &mut found)?;
    probe_zfs(&mut dev, &mut found)?;
    found.sort_by_key(|s| (s.offset, s.kind.blkid_name()));
    Ok(found)
}

/// The device, read only inside `0..size`.
struct Dev<R> {
    r: R,
    size: u64,
}

impl<R: Read + Seek> Dev<R> {
    /// `len` bytes at `offset`, or `None` when they are not all inside the device.
    fn read(&mut self, offset: u64, len: usize) -> Result<Option<Vec<u8>>, ProbeError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => {}
            _ => return Ok(None),
        }
        let err = |source| ProbeError::Read {
            offset,
            len,
            source,
        };
        self.r.seek(SeekFrom::Start(offset)).map_err(err)?;
        let mut buf = vec![0; len];
        self.r.read_exact(&mut buf).map_err(err)?;
        Ok(Some(buf))
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

fn bytes_at(b: &[u8], at: usize, len: usize) -> &[u8] {
    b.get(at..at + len).unwrap_or(&[])
}

/// The standard 8-4-4-4-12 form blkid prints.
fn uuid_string(b: &[u8]) -> Option<String> {
    if b.len() != 16 || b.iter().all(|&x| x == 0) {
        return None;
    }
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    ))
}

/// mdadm's form: the bytes in order, a colon after every 4.
fn md_uuid_string(b: &[u8]) -> String {
    b.chunks(4)
        .map(|c| c.iter().map(|x| format!("{x:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

/// A NUL-padded label (trailing spaces dropped too); `None` when empty.
fn label_string(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]);
    let s = s.trim_end_matches(' ');
    (!s.is_empty()).then(|| s.to_string())
}

/// CRC-32 (IEEE 802.3, as GPT uses), bitwise: only a few headers are checked.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

// ---- sector 0: MBR, protective MBR, FAT, NTFS -------------------------------------------

fn probe_boot_sector(s0: &[u8], found: &mut Vec<Signature>) {
    if let Some(sig) = fat(s0) {
        found.push(sig);
        return;
    }
    if bytes_at(s0, 3, 8) == b"NTFS    " && le16(s0, 510) == 0xAA55 {
        let mut sig = Signature::new(SignatureKind::Ntfs, 3);
        let serial = le64(s0, 0x48);
        sig.uuid = (serial != 0).then(|| format!("{serial:016X}"));
        found.push(sig);
        return;
    }
    if le16(s0, 510) != 0xAA55 {
        return;
    }
    // Four 16-byte entries at 446: boot flag 0x00/0x80, type at +4; all-zero = unused.
    let mut used = 0;
    let mut protective = false;
    for i in 0..4 {
        let e = bytes_at(s0, 446 + 16 * i, 16);
        let (flag, kind) = (e.first().copied(), e.get(4).copied());
        if !matches!(flag, Some(0x00) | Some(0x80)) {
            return; // not a partition table (libblkid's test too)
        }
        if kind.is_some_and(|k| k != 0) {
            used += 1;
            protective |= kind == Some(0xEE);
        }
    }
    if used > 0 {
        let kind = if protective {
            SignatureKind::ProtectiveMbr
        } else {
            SignatureKind::Mbr
        };
        let mut sig = Signature::new(kind, 510);
        let id = le32(s0, 440);
        if kind == SignatureKind::Mbr && id != 0 {
            sig.uuid = Some(format!("{id:08x}"));
        }
        found.push(sig);
    }
}

fn fat(s0: &[u8]) -> Option<Signature> {
    let jump = s0.first().copied();
    if !(jump == Some(0xEB) && s0.get(2) == Some(&0x90) || jump == Some(0xE9)) {
        return None;
    }
    let sector_size = le16(s0, 11);
    let per_cluster = s0.get(13).copied().unwrap_or(0);
    let reserved = le16(s0, 14);
    let fats = s0.get(16).copied().unwrap_or(0);
    if !(512..=4096).contains(&sector_size)
        || !sector_size.is_power_of_two()
        || !per_cluster.is_power_of_two()
        || reserved == 0
        || !(1..=2).contains(&fats)
    {
        return None;
    }
    // FAT32 keeps its type string and serial further in than FAT12/16.
    let (at, serial_at, label_at) = if bytes_at(s0, 82, 5) == b"FAT32" {
        (82, 67, 71)
    } else if bytes_at(s0, 54, 3) == b"FAT" {
        (54, 39, 43)
    } else {
        return None;
    };
    let mut sig = Signature::new(SignatureKind::Fat, at);
    let serial = le32(s0, serial_at);
    sig.uuid = Some(format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff));
    sig.label = label_string(bytes_at(s0, label_at, 11)).filter(|l| l != "NO NAME");
    Some(sig)
}

// ---- GPT -------------------------------------------------------------------------------

fn probe_gpt<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    // Primary and backup are checked on their own: a disk whose primary header was damaged
    // or wiped still has its partitions described at the end.
    for sector in [512u64, 4096] {
        if let Some(h) = dev.read(sector, 512)? {
            if gpt_header_ok(&h, 1) {
                let mut sig = Signature::new(SignatureKind::Gpt, sector);
                sig.uuid = gpt_guid(bytes_at(&h, 56, 16));
                found.push(sig);
            }
        }
        let last = dev.size / sector;
        if last >= 3 {
            let at = (last - 1) * sector;
            if let Some(h) = dev.read(at, 512)? {
                if gpt_header_ok(&h, last - 1) {
                    let mut sig = Signature::new(SignatureKind::GptBackup, at);
                    sig.uuid = gpt_guid(bytes_at(&h, 56, 16));
                    found.push(sig);
                }
            }
        }
    }
    Ok(())
}

/// "EFI PART", a sane header size, this header's own LBA and a matching CRC.
fn gpt_header_ok(h: &[u8], my_lba: u64) -> bool {
    if bytes_at(h, 0, 8) != b"EFI PART" {
        return false;
    }
    let size = le32(h, 12) as usize;
    if !(92..=h.len()).contains(&size) || le64(h, 24) != my_lba {
        return false;
    }
    let mut copy = h[..size].to_vec();
    copy[16..20].fill(0);
    crc32(&copy) == le32(h, 16)
}

/// A GPT GUID: the first three fields little-endian (blkid's PTUUID form).
fn gpt_guid(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let mut m = [0u8; 16];
    m.copy_from_slice(b);
    m[0..4].reverse();
    m[4..6].reverse();
    m[6..8].reverse();
    uuid_string(&m)
}

// ---- filesystems -----------------------------------------------------------------------

fn probe_ext<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    let Some(sb) = dev.read(1024, 1024)? else {
        return Ok(());
    };
    if le16(&sb, 56) != 0xEF53 {
        return Ok(());
    }
    let (compat, incompat, ro_compat) = (le32(&sb, 92), le32(&sb, 96), le32(&sb, 100));
    const HAS_JOURNAL: u32 = 0x4;
    const JOURNAL_DEV: u32 = 0x8;
    if incompat & JOURNAL_DEV != 0 {
        return Ok(()); // an external journal, not a filesystem (blkid: jbd)
    }
    // Features ext3 lacks: extents, 64bit, flex_bg, ... / huge_file, gdt_csum, dir_nlink,
    // extra_isize, metadata_csum, ...
    let ext4 = incompat & !0x1f != 0 || ro_compat & !0x7 != 0;
    let kind = if ext4 {
        SignatureKind::Ext4
    } else if compat & HAS_JOURNAL != 0 {
        SignatureKind::Ext3
    } else {
        SignatureKind::Ext2
    };
    let mut sig = Signature::new(kind, 1024 + 56);
    sig.uuid = uuid_string(bytes_at(&sb, 104, 16));
    sig.label = label_string(bytes_at(&sb, 120, 16));
    found.push(sig);
    Ok(())
}

fn probe_xfs<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    let Some(sb) = dev.read(0, 512)? else {
        return Ok(());
    };
    // Magic, then a block size that is a power of two between 512 and 64 KiB.
    let block = be32(&sb, 4);
    if bytes_at(&sb, 0, 4) != b"XFSB" || !(512..=65536).contains(&block) || !block.is_power_of_two()
    {
        return Ok(());
    }
    let mut sig = Signature::new(SignatureKind::Xfs, 0);
    sig.uuid = uuid_string(bytes_at(&sb, 32, 16));
    sig.label = label_string(bytes_at(&sb, 108, 12));
    found.push(sig);
    Ok(())
}

fn probe_btrfs<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    let Some(sb) = dev.read(65536, 4096)? else {
        return Ok(());
    };
    if bytes_at(&sb, 64, 8) != b"_BHRfS_M" {
        return Ok(());
    }
    let mut sig = Signature::new(SignatureKind::Btrfs, 65536 + 64);
    sig.uuid = uuid_string(bytes_at(&sb, 32, 16));
    sig.label = label_string(bytes_at(&sb, 299, 256));
    found.push(sig);
    Ok(())
}

fn probe_swap<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    for page in [4096u64, 8192, 16384, 65536] {
        let Some(magic) = dev.read(page - 10, 10)? else {
            break;
        };
        if magic != b"SWAPSPACE2" && magic != b"SWAP-SPACE" {
            continue;
        }
        let mut sig = Signature::new(SignatureKind::Swap, page - 10);
        if magic == b"SWAPSPACE2" {
            if let Some(h) = dev.read(1024, 64)? {
                sig.uuid = uuid_string(bytes_at(&h, 12, 16));
                sig.label = label_string(bytes_at(&h, 28, 16));
            }
        }
        found.push(sig);
        break;
    }
    Ok(())
}

// ---- md RAID ---------------------------------------------------------------------------

fn probe_md<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    let sectors = dev.size / 512;
    let mut places = vec![(MdVersion::V1_1, 0u64), (MdVersion::V1_2, 4096)];
    if sectors >= 16 {
        // mdadm: sb_offset = (sectors - 16) & ~7.
        places.push((MdVersion::V1_0, ((sectors - 16) & !7) * 512));
    }
    for (version, at) in places {
        let Some(sb) = dev.read(at, 4096)? else {
            continue;
        };
        if let Some(md) = md_superblock_1(&sb, version, at) {
            let mut sig = Signature::new(SignatureKind::Md, at);
            sig.md = Some(md);
            found.push(sig);
        }
    }
    // 0.90: the last 64 KiB-aligned 64 KiB block (MD_NEW_SIZE_SECTORS).
    if sectors >= 256 {
        let at = ((sectors & !127) - 128) * 512;
        if let Some(sb) = dev.read(at, 4096)? {
            if let Some(md) = md_superblock_090(&sb) {
                let mut sig = Signature::new(SignatureKind::Md, at);
                sig.md = Some(md);
                found.push(sig);
            }
        }
    }
    Ok(())
}

/// A 1.x superblock (all little-endian) at `at`, which its `super_offset` must name.
fn md_superblock_1(sb: &[u8], version: MdVersion, at: u64) -> Option<MdSuperblock> {
    if le32(sb, 0) != MD_MAGIC || le32(sb, 4) != 1 || le64(sb, 144) != at / 512 {
        return None;
    }
    let max_dev = le32(sb, 220) as usize;
    let dev_number = le32(sb, 160) as usize;
    // The checksummed part: 256 bytes of header and the role table.
    let len = 256 + 2 * max_dev;
    let checksum_ok = len <= sb.len() && md1_checksum(&sb[..len]) == le32(sb, 216);
    let role = if dev_number < max_dev && 256 + 2 * dev_number + 2 <= sb.len() {
        match le16(sb, 256 + 2 * dev_number) {
            0xffff => MdSuperblockRole::Spare,
            0xfffe => MdSuperblockRole::Faulty,
            0xfffd => MdSuperblockRole::Journal,
            slot => MdSuperblockRole::Active(u32::from(slot)),
        }
    } else {
        MdSuperblockRole::Unknown
    };
    Some(MdSuperblock {
        version,
        array_uuid: md_uuid_string(bytes_at(sb, 16, 16)),
        name: label_string(bytes_at(sb, 32, 32)),
        level: RaidLevel::from_superblock(le32(sb, 72) as i32),
        raid_disks: le32(sb, 92),
        device_uuid: Some(md_uuid_string(bytes_at(sb, 168, 16))),
        role,
        events: le64(sb, 200),
        checksum_ok,
    })
}

/// md's `calc_sb_1_csum`: the sum of the little-endian u32 words (a trailing u16 too) with
/// `sb_csum` taken as 0, folded to 32 bits. Public so tests can build valid superblocks.
pub fn md1_checksum(sb: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    let mut words = sb.chunks_exact(4);
    for (i, w) in words.by_ref().enumerate() {
        if i != 216 / 4 {
            sum += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    if let [a, b] = words.remainder() {
        sum += u64::from(u16::from_le_bytes([*a, *b]));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// A 0.90 superblock in little-endian host order (the x86 appliance's own arrays).
fn md_superblock_090(sb: &[u8]) -> Option<MdSuperblock> {
    // Words: 0 magic, 1-3 version, 5 set_uuid0, 7 level, 10 raid_disks, 13-15 set_uuid1..3;
    // then the generic state section (word 32 on).
    if le32(sb, 0) != MD_MAGIC || le32(sb, 4) != 0 || le32(sb, 8) != 90 {
        return None;
    }
    let w = |i: usize| le32(sb, 4 * i);
    let uuid = format!("{:08x}:{:08x}:{:08x}:{:08x}", w(5), w(13), w(14), w(15));
    // The state section (word 32): utime, state, active, working, failed, spare, sb_csum,
    // events_lo, events_hi (little-endian layout of the kernel's mdp_super_t).
    let csum = w(38);
    let events = (u64::from(w(40)) << 32) | u64::from(w(39));
    let checksum_ok = md090_checksum(bytes_at(sb, 0, 4096)) == csum;
    // this_disk (word 992 + 0..): number, major, minor, raid_disk, state.
    let this_state = w(992 + 4);
    let role = if this_state & 1 != 0 {
        MdSuperblockRole::Faulty
    } else if this_state & 2 != 0 {
        MdSuperblockRole::Active(w(992 + 3))
    } else {
        MdSuperblockRole::Spare
    };
    Some(MdSuperblock {
        version: MdVersion::V0_90,
        array_uuid: uuid,
        name: None,
        level: RaidLevel::from_superblock(w(7) as i32),
        raid_disks: w(10),
        device_uuid: None,
        role,
        events,
        checksum_ok,
    })
}

/// md's 0.90 checksum: the sum of the 1024 u32 words with `sb_csum` taken as 0, folded.
fn md090_checksum(sb: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    for (i, w) in sb.chunks_exact(4).enumerate() {
        if i != 38 {
            sum += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

// ---- LVM2, LUKS, ZFS -------------------------------------------------------------------

fn probe_lvm2<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    for sector in 0..4u64 {
        let Some(label) = dev.read(sector * 512, 512)? else {
            break;
        };
        // label_header: "LABELONE", sector, crc, offset, "LVM2 001"; pv_header: the PV UUID.
        if bytes_at(&label, 0, 8) != b"LABELONE" || bytes_at(&label, 24, 8) != b"LVM2 001" {
            continue;
        }
        let mut sig = Signature::new(SignatureKind::Lvm2, sector * 512 + 24);
        let id = bytes_at(&label, 32, 32);
        if id.len() == 32 && id.iter().all(u8::is_ascii_alphanumeric) {
            // blkid's form: 6-4-4-4-4-4-6.
            let s = String::from_utf8_lossy(id);
            let cuts = [0, 6, 10, 14, 18, 22, 26, 32];
            let parts: Vec<&str> = cuts.windows(2).map(|w| &s[w[0]..w[1]]).collect();
            sig.uuid = Some(parts.join("-"));
        }
        found.push(sig);
        break;
    }
    Ok(())
}

fn probe_luks<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    // The primary header at 0; LUKS2 keeps a second copy ("SKUL\xba\xbe") at one of these
    // offsets, which still identifies the volume when the first is damaged.
    const SECONDARY: [u64; 9] = [
        0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
    ];
    if let Some(h) = dev.read(0, 512)? {
        if bytes_at(&h, 0, 6) == b"LUKS\xba\xbe" {
            found.push(luks(&h, 0));
        }
    }
    for at in SECONDARY {
        let Some(h) = dev.read(at, 512)? else {
            break;
        };
        if bytes_at(&h, 0, 6) == b"SKUL\xba\xbe" && be16(&h, 6) == 2 {
            found.push(luks(&h, at));
            break;
        }
    }
    Ok(())
}

fn luks(h: &[u8], at: u64) -> Signature {
    let mut sig = Signature::new(SignatureKind::Luks, at);
    sig.uuid = label_string(bytes_at(h, 168, 40));
    if be16(h, 6) == 2 {
        sig.label = label_string(bytes_at(h, 24, 48));
    }
    sig
}

/// A ZFS vdev label: at least 4 uberblocks (magic 0x00bab10c, either byte order) in the
/// uberblock ring (the second 128 KiB) of label 0 or label 1, as libblkid requires.
fn probe_zfs<R: Read + Seek>(
    dev: &mut Dev<R>,
    found: &mut Vec<Signature>,
) -> Result<(), ProbeError> {
    const UB_MAGIC: u64 = 0x00ba_b10c;
    const LABEL: u64 = 256 * 1024;
    for label in [0, LABEL] {
        let Some(ring) = dev.read(label + 128 * 1024, 128 * 1024)? else {
            continue;
        };
        let mut first = None;
        let mut count = 0;
        for (i, ub) in ring.chunks_exact(1024).enumerate() {
            let m = le64(ub, 0);
            if m == UB_MAGIC || m.swap_bytes() == UB_MAGIC {
                first.get_or_insert(label + 128 * 1024 + 1024 * i as u64);
                count += 1;
            }
        }
        if let (Some(at), true) = (first, count >= 4) {
            found.push(Signature::new(SignatureKind::Zfs, at));
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::fs::File;
    use std::io::Cursor;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::parse::MdUuid;

    /// A device of `size` bytes that is zero except where `chunks` put bytes; it panics on a
    /// read that reaches past `size`.
    struct Sparse {
        size: u64,
        pos: u64,
        chunks: Vec<(u64, Vec<u8>)>,
    }

    impl Read for Sparse {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            assert!(
                self.pos + buf.len() as u64 <= self.size,
                "read past the end: {} + {}",
                self.pos,
                buf.len()
            );
            buf.fill(0);
            for (at, data) in &self.chunks {
                let (start, end) = (
                    self.pos.max(*at),
                    (self.pos + buf.len() as u64).min(at + data.len() as u64),
                );
                if start < end {
                    let dst = (start - self.pos) as usize..(end - self.pos) as usize;
                    buf[dst].copy_from_slice(&data[(start - at) as usize..(end - at) as usize]);
                }
            }
            self.pos += buf.len() as u64;
            Ok(buf.len())
        }
    }

    impl Seek for Sparse {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            match to {
                SeekFrom::Start(p) => self.pos = p,
                _ => unreachable!("the probe seeks from the start"),
            }
            Ok(self.pos)
        }
    }

    fn probe_sparse(size: u64, chunks: Vec<(u64, Vec<u8>)>) -> Vec<Signature> {
        signatures(
            Sparse {
                size,
                pos: 0,
                chunks,
            },
            size,
        )
        .unwrap()
    }

    fn testdata(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(rel)
    }

    fn key_values(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `(type, offset, uuid)` of each signature `wipefs -n -J` printed.
    fn wipefs_json(json: &str) -> Vec<(String, u64, Option<String>)> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let off = s["offset"].as_str().unwrap().trim_start_matches("0x");
                (
                    s["type"].as_str().unwrap().to_string(),
                    u64::from_str_radix(off, 16).unwrap(),
                    s["uuid"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    /// Every signature we found is one wipefs lists (same type, offset and UUID), and every
    /// type wipefs lists we found at least once. wipefs lists FAT's three magics (jump at 0,
    /// type string, 0x55AA) where we report one, and libblkid reads the 0x55AA of an NTFS boot
    /// sector as an (empty) DOS table as well, which we do not.
    fn assert_same_as_wipefs(
        ours: &[Signature],
        wipefs: &[(String, u64, Option<String>)],
        what: &str,
    ) {
        let theirs: BTreeSet<(&str, u64)> =
            wipefs.iter().map(|(t, o, _)| (t.as_str(), *o)).collect();
        for s in ours {
            assert!(
                theirs.contains(&(s.kind.blkid_name(), s.offset)),
                "{what}: {s} not in wipefs' {wipefs:?}"
            );
            let their_uuid = wipefs
                .iter()
                .find(|(t, o, _)| t == s.kind.blkid_name() && *o == s.offset)
                .and_then(|w| w.2.clone());
            if let Some(u) = &their_uuid {
                let ours = s
                    .uuid
                    .clone()
                    .or_else(|| s.md.as_ref().map(|m| array_uuid(m).dashed()));
                assert_eq!(
                    ours.map(|o| o.to_lowercase()),
                    Some(u.to_lowercase()),
                    "{what}: UUID of {s}"
                );
            }
        }
        let our_types: BTreeSet<&str> = ours.iter().map(|s| s.kind.blkid_name()).collect();
        let ntfs = our_types.contains("ntfs");
        for (t, o, _) in wipefs {
            if ntfs && t == "dos" {
                continue;
            }
            assert!(
                our_types.contains(t.as_str()),
                "{what}: wipefs' {t} at {o:#x} not found in {ours:?}"
            );
        }
    }

    fn array_uuid(md: &MdSuperblock) -> MdUuid {
        md.array_uuid.parse().unwrap()
    }

    // ---- md superblocks captured in the guest ---------------------------------------------

    /// `md/superblocks.txt`: `VERSION IMAGE size=N offset=N` per excerpt.
    fn excerpts() -> Vec<(String, String, u64, u64)> {
        std::fs::read_to_string(testdata("md/superblocks.txt"))
            .unwrap()
            .lines()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let num = |s: &str, k: &str| s.strip_prefix(k).unwrap().parse::<u64>().unwrap();
                (
                    w[0].to_string(),
                    w[1].trim_end_matches(".img").to_string(),
                    num(w[2], "size="),
                    num(w[3], "offset="),
                )
            })
            .collect()
    }

    /// The captured member `image`, rebuilt from its excerpts as a sparse device.
    fn member(image: &str) -> (u64, Vec<Signature>) {
        let mut size = 0;
        let mut chunks = Vec::new();
        for (version, img, sz, offset) in excerpts() {
            if img == image {
                size = sz;
                chunks.push((
                    offset,
                    std::fs::read(testdata(&format!("md/superblock-{version}.bin"))).unwrap(),
                ));
            }
        }
        assert!(!chunks.is_empty(), "no excerpt of {image}");
        (size, probe_sparse(size, chunks))
    }

    #[test]
    fn md_superblocks_of_every_version_match_blkid_wipefs_and_mdadm() {
        for (image, version, offset, role, events) in [
            (
                "nv1",
                MdVersion::V1_2,
                4096,
                MdSuperblockRole::Active(1),
                44,
            ),
            ("vdl", MdVersion::V1_1, 0, MdSuperblockRole::Active(0), 0),
            (
                "vdn",
                MdVersion::V1_0,
                8_380_416,
                MdSuperblockRole::Active(0),
                20,
            ),
            (
                "vdj",
                MdVersion::V0_90,
                8_323_072,
                MdSuperblockRole::Active(0),
                20,
            ),
        ] {
            let (_, sigs) = member(image);
            let md_sigs: Vec<&Signature> = sigs
                .iter()
                .filter(|s| s.kind == SignatureKind::Md)
                .collect();
            assert_eq!(md_sigs.len(), 1, "{image}: {sigs:?}");
            let sig = md_sigs[0];
            assert_eq!(sig.offset, offset, "{image}");
            let md = sig.md.as_ref().unwrap();
            assert_eq!(md.version, version, "{image}");
            assert!(md.checksum_ok, "{image}");
            assert_eq!(md.role, role, "{image}");
            assert_eq!(md.events, events, "{image}");

            // libblkid's view, captured on the host from the same image.
            let blkid = key_values(
                &std::fs::read_to_string(testdata(&format!("md/blkid/{image}.blkid"))).unwrap(),
            );
            assert_eq!(blkid["TYPE"], "linux_raid_member");
            assert_eq!(array_uuid(md).dashed(), blkid["UUID"], "{image}");
            assert_eq!(
                md.name.as_deref(),
                blkid.get("LABEL").map(String::as_str),
                "{image}"
            );
            assert_eq!(
                md.device_uuid
                    .as_ref()
                    .map(|u| u.parse::<MdUuid>().unwrap().dashed()),
                blkid.get("UUID_SUB").cloned(),
                "{image}"
            );
            assert!(blkid["VERSION"].starts_with(version.as_str()), "{image}");
            let wipefs = wipefs_json(
                &std::fs::read_to_string(testdata(&format!("md/blkid/{image}.wipefs.json")))
                    .unwrap(),
            );
            assert_same_as_wipefs(&sigs, &wipefs, image);

            // The host's mdadm --examine of the image.
            let examine =
                std::fs::read_to_string(testdata(&format!("md/blkid/{image}.examine"))).unwrap();
            assert!(
                examine.contains(&md.array_uuid),
                "{image}: {}",
                md.array_uuid
            );
            assert!(examine.contains(&format!("Events : {events}")), "{image}");
            if let Some(dev) = &md.device_uuid {
                assert!(examine.contains(&format!("Device UUID : {dev}")), "{image}");
            }
            assert!(md.level.is_some());
            assert!(
                examine.contains(&format!("Raid Level : {}", md.level.unwrap())),
                "{image}"
            );
            assert!(
                examine.contains(&format!("Raid Devices : {}", md.raid_disks)),
                "{image}"
            );
        }
    }

    #[test]
    fn md_superblock_details_match_the_guests_examine() {
        let (_, sigs) = member("nv1");
        let md = sigs[0].md.as_ref().unwrap();
        assert_eq!(md.array_uuid, "7210b0ea:e6edea24:c8669956:d2b45e1a");
        assert_eq!(md.name.as_deref(), Some("tvguest:vault-os0"));
        assert_eq!((md.level, md.raid_disks), (Some(RaidLevel::Raid10), 4));
        // The same array's UUID as `mdadm --examine --export` printed in the guest.
        let e = crate::parse::detail::parse_examine_export(include_str!(
            "../testdata/md/01-clean/examine-export.nvme0n1"
        ))
        .unwrap();
        assert_eq!(e.uuid, array_uuid(md));
        assert_eq!(e.name.map(|n| n.full), md.name.clone());

        // 1.0 keeps the array's data at the member's start: its ext4 shows through, as wipefs says.
        let (_, sigs) = member("vdn");
        let kinds: Vec<_> = sigs.iter().map(|s| (s.kind, s.offset)).collect();
        assert_eq!(
            kinds,
            [(SignatureKind::Ext4, 1080), (SignatureKind::Md, 8_380_416)]
        );
        assert_eq!(
            sigs[1].to_string(),
            "linux_raid_member at offset 8380416 (md 1.0 superblock, array f2c25619:ed20e28c:19bfa622:380ff2d3 \"tvguest:vault-wm\")"
        );

        let (_, sigs) = member("vdj");
        let md = sigs[0].md.as_ref().unwrap();
        assert_eq!((md.name.clone(), md.device_uuid.clone()), (None, None));
        assert_eq!(md.array_uuid, "0a9a91aa:7c8d3d9d:132b9c70:d75a485d");
    }

    #[test]
    fn a_damaged_md_superblock_is_still_reported_with_a_bad_checksum() {
        let mut sb = std::fs::read(testdata("md/superblock-1.2.bin")).unwrap();
        sb[200] ^= 1; // events
        let sigs = probe_sparse(1 << 26, vec![(4096, sb.clone())]);
        assert!(!sigs[0].md.as_ref().unwrap().checksum_ok);
        // A superblock whose super_offset names another place is not one (a copy of a 1.2
        // superblock at offset 0 is no 1.1 superblock).
        let sigs = probe_sparse(1 << 26, vec![(0, sb)]);
        assert!(sigs.is_empty(), "{sigs:?}");
    }

    #[test]
    fn excerpts_placed_on_a_too_small_device_are_not_read() {
        // A 1.0 superblock's place depends on the size; a 4 KiB device has no room for md.
        assert!(probe_sparse(4096, vec![]).is_empty());
        assert!(probe_sparse(0, vec![]).is_empty());
        assert!(probe_sparse(511, vec![]).is_empty());
    }

    // ---- images made by the real tools ----------------------------------------------------

    fn find_tool(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    /// Runs `tool args...`; `None` (after printing why) when the tool is missing.
    fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> Option<String> {
        let Some(path) = find_tool(tool) else {
            println!("SKIP: {tool} missing");
            return None;
        };
        let mut cmd = Command::new(path);
        cmd.args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn image(dir: &Path, name: &str, mib: u64) -> PathBuf {
        let p = dir.join(name);
        File::create(&p).unwrap().set_len(mib << 20).unwrap();
        p
    }

    fn probe_file(p: &Path) -> Vec<Signature> {
        let f = File::open(p).unwrap();
        let size = f.metadata().unwrap().len();
        signatures(f, size).unwrap()
    }

    /// Probes `img` and compares with `wipefs -n -J` (skips with a reason when wipefs is missing).
    fn check(img: &Path) -> Vec<Signature> {
        let ours = probe_file(img);
        if let Some(json) = run("wipefs", &["-n", "-J", img.to_str().unwrap()], None) {
            assert_same_as_wipefs(&ours, &wipefs_json(&json), &img.display().to_string());
        }
        ours
    }

    fn kinds(s: &[Signature]) -> Vec<(SignatureKind, u64)> {
        s.iter().map(|s| (s.kind, s.offset)).collect()
    }

    #[test]
    fn blank_disk() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(check(&image(tmp.path(), "blank.img", 64)).is_empty());
    }

    #[test]
    fn ext2_ext3_ext4() {
        let tmp = tempfile::tempdir().unwrap();
        for (fs, kind) in [
            ("ext2", SignatureKind::Ext2),
            ("ext3", SignatureKind::Ext3),
            ("ext4", SignatureKind::Ext4),
        ] {
            let img = image(tmp.path(), &format!("{fs}.img"), 16);
            if run(
                "mke2fs",
                &[
                    "-q",
                    "-F",
                    "-t",
                    fs,
                    "-L",
                    "vault-db",
                    img.to_str().unwrap(),
                ],
                None,
            )
            .is_none()
            {
                return;
            }
            let s = check(&img);
            assert_eq!(kinds(&s), [(kind, 1080)], "{fs}");
            assert_eq!(s[0].label.as_deref(), Some("vault-db"));
        }
    }

    #[test]
    fn xfs() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), "xfs.img", 320); // mkfs.xfs refuses < 300 MiB; sparse
        if run(
            "mkfs.xfs",
            &["-q", "-f", "-L", "data0", img.to_str().unwrap()],
            None,
        )
        .is_none()
        {
            return;
        }
        let s = check(&img);
        assert_eq!(kinds(&s), [(SignatureKind::Xfs, 0)]);
        assert_eq!(s[0].label.as_deref(), Some("data0"));
    }

    #[test]
    fn btrfs() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), "btrfs.img", 128);
        if run(
            "mkfs.btrfs",
            &["-q", "-f", "-L", "pool", img.to_str().unwrap()],
            None,
        )
        .is_none()
        {
            return;
        }
        let s = check(&img);
        assert_eq!(kinds(&s), [(SignatureKind::Btrfs, 65_600)]);
        assert_eq!(s[0].label.as_deref(), Some("pool"));
    }

    #[test]
    fn swap() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), "swap.img", 16);
        if run("mkswap", &["-L", "sw", img.to_str().unwrap()], None).is_none() {
            return;
        }
        let s = check(&img);
        assert_eq!(kinds(&s), [(SignatureKind::Swap, 4086)]);
        assert_eq!(s[0].label.as_deref(), Some("sw"));
    }

    #[test]
    fn dos_and_gpt_partition_tables() {
        let tmp = tempfile::tempdir().unwrap();
        let dos = image(tmp.path(), "dos.img", 16);
        if run(
            "sfdisk",
            &["-q", dos.to_str().unwrap()],
            Some("label: dos\n, 4MiB, L\n"),
        )
        .is_none()
        {
            return;
        }
        let s = check(&dos);
        assert_eq!(kinds(&s), [(SignatureKind::Mbr, 510)]);

        // A DOS label without partitions is not reported (the brief: a used entry).
        let empty = image(tmp.path(), "empty-dos.img", 16);
        run(
            "sfdisk",
            &["-q", empty.to_str().unwrap()],
            Some("label: dos\n"),
        )
        .unwrap();
        assert!(probe_file(&empty).is_empty());

        let gpt = image(tmp.path(), "gpt.img", 16);
        run(
            "sfdisk",
            &["-q", gpt.to_str().unwrap()],
            Some("label: gpt\n, 4MiB, L\n"),
        )
        .unwrap();
        let s = check(&gpt);
        assert_eq!(
            kinds(&s),
            [
                (SignatureKind::ProtectiveMbr, 510),
                (SignatureKind::Gpt, 512),
                (SignatureKind::GptBackup, (16 << 20) - 512)
            ]
        );
        let dump = run("sfdisk", &["--dump", gpt.to_str().unwrap()], None).unwrap();
        assert_eq!(s[1].uuid, s[2].uuid);
        let label_id = dump
            .lines()
            .find_map(|l| l.strip_prefix("label-id: "))
            .unwrap();
        assert_eq!(
            s[1].uuid.as_deref().map(str::to_uppercase),
            Some(label_id.to_string())
        );
    }

    /// A loop device for `img` (with `sector` bytes per sector); `None` with a reason when
    /// losetup is missing or fails (not root, no loop devices).
    struct Loop(String);

    impl Loop {
        fn new(img: &Path, sector: u32) -> Option<Loop> {
            let losetup = find_tool("losetup").or_else(|| {
                println!("SKIP: losetup missing");
                None
            })?;
            let out = Command::new(losetup)
                .args([
                    "-f",
                    "--show",
                    "-b",
                    &sector.to_string(),
                    img.to_str().unwrap_or_default(),
                ])
                .output()
                .ok()?;
            if !out.status.success() {
                println!(
                    "SKIP: losetup failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return None;
            }
            Some(Loop(
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ))
        }
    }

    impl Drop for Loop {
        fn drop(&mut self) {
            if let Some(losetup) = find_tool("losetup") {
                let _ = Command::new(losetup).args(["-d", &self.0]).status();
            }
        }
    }

    #[test]
    fn gpt_with_4k_sectors() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), "gpt4k.img", 16);
        if find_tool("sfdisk").is_none() || find_tool("wipefs").is_none() {
            println!("SKIP: sfdisk or wipefs missing");
            return;
        }
        // sfdisk and wipefs see 4 KiB sectors only on a device that has them.
        let Some(dev) = Loop::new(&img, 4096) else {
            return;
        };
        run("sfdisk", &["-q", &dev.0], Some("label: gpt\n, 4MiB, L\n")).unwrap();
        let theirs = wipefs_json(&run("wipefs", &["-n", "-J", &dev.0], None).unwrap());
        drop(dev);
        let s = probe_file(&img);
        assert_eq!(
            kinds(&s),
            [
                (SignatureKind::ProtectiveMbr, 510),
                (SignatureKind::Gpt, 4096),
                (SignatureKind::GptBackup, (16 << 20) - 4096)
            ]
        );
        assert_same_as_wipefs(&s, &theirs, "gpt4k");
    }

    #[test]
    fn lvm2_physical_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let img = image(tmp.path(), "pv.img", 32);
        if find_tool("pvcreate").is_none() || find_tool("wipefs").is_none() {
            println!("SKIP: pvcreate (lvm2) or wipefs missing");
            return;
        }
        let Some(dev) = Loop::new(&img, 512) else {
            return;
        };
        // No devices file, no udev: leave the host's LVM configuration alone.
        let config = "devices { use_devicesfile=0 obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 }";
        run(
            "pvcreate",
            &["-q", "-ff", "-y", "--config", config, &dev.0],
            None,
        )
        .unwrap();
        let theirs = wipefs_json(&run("wipefs", &["-n", "-J", &dev.0], None).unwrap());
        drop(dev);
        let s = probe_file(&img);
        assert_eq!(kinds(&s), [(SignatureKind::Lvm2, 536)]);
        assert_same_as_wipefs(&s, &theirs, "pv");
    }

    #[test]
    fn luks1_and_luks2() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("key");
        std::fs::write(&key, "not a secret").unwrap();
        for (kind, expected) in [("luks1", vec![0]), ("luks2", vec![0, 0x4000])] {
            let img = image(tmp.path(), &format!("{kind}.img"), 32);
            let args = [
                "luksFormat",
                "-q",
                "--type",
                kind,
                "--pbkdf-force-iterations",
                "1000",
                "--pbkdf",
                "pbkdf2",
                "--key-file",
                key.to_str().unwrap(),
                img.to_str().unwrap(),
            ];
            if run("cryptsetup", &args, None).is_none() {
                return;
            }
            let s = check(&img);
            assert_eq!(
                s.iter().map(|s| s.offset).collect::<Vec<_>>(),
                expected,
                "{kind}"
            );
            assert!(s
                .iter()
                .all(|s| s.kind == SignatureKind::Luks && s.uuid.is_some()));
        }
    }

    #[test]
    fn fat16_fat32_and_ntfs() {
        let tmp = tempfile::tempdir().unwrap();
        for (bits, mib, offset) in [("16", 16, 54), ("32", 64, 82)] {
            let img = image(tmp.path(), &format!("fat{bits}.img"), mib);
            if run(
                "mkfs.vfat",
                &["-F", bits, "-n", "ESP", img.to_str().unwrap()],
                None,
            )
            .is_none()
            {
                return;
            }
            let s = check(&img);
            assert_eq!(kinds(&s), [(SignatureKind::Fat, offset)], "FAT{bits}");
            assert_eq!(s[0].label.as_deref(), Some("ESP"));
        }
        let img = image(tmp.path(), "ntfs.img", 16);
        if run("mkntfs", &["-F", "-Q", "-q", img.to_str().unwrap()], None).is_none() {
            return;
        }
        let s = check(&img);
        assert_eq!(kinds(&s), [(SignatureKind::Ntfs, 3)]);
    }

    #[test]
    fn ext4_on_a_partition_of_a_gpt_disk_shows_only_the_table() {
        // The probe looks at the whole disk; a partition's contents are the partition's to
        // probe. The table alone marks the disk as in use.
        let tmp = tempfile::tempdir().unwrap();
        let disk = image(tmp.path(), "disk.img", 32);
        if run(
            "sfdisk",
            &["-q", disk.to_str().unwrap()],
            Some("label: gpt\nstart=2048, size=16MiB, type=L\n"),
        )
        .is_none()
        {
            return;
        }
        let part = image(tmp.path(), "part.img", 16);
        if run("mkfs.ext4", &["-q", "-F", part.to_str().unwrap()], None).is_none() {
            return;
        }
        let mut d = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        d.seek(SeekFrom::Start(2048 * 512)).unwrap();
        io::copy(&mut File::open(&part).unwrap(), &mut d).unwrap();
        drop(d);
        let s = check(&disk);
        assert_eq!(
            s.iter().map(|s| s.kind).collect::<Vec<_>>(),
            [
                SignatureKind::ProtectiveMbr,
                SignatureKind::Gpt,
                SignatureKind::GptBackup
            ]
        );
        // ... and the partition itself, read at its offset, is ext4.
        let f = File::open(&disk).unwrap();
        let sub = SubReader {
            inner: f,
            start: 2048 * 512,
        };
        let inner = signatures(sub, 16 << 20).unwrap();
        assert_eq!(kinds(&inner), [(SignatureKind::Ext4, 1080)]);
    }

    /// A window onto a larger reader.
    struct SubReader<R> {
        inner: R,
        start: u64,
    }

    impl<R: Read> Read for SubReader<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.inner.read(buf)
        }
    }

    impl<R: Seek> Seek for SubReader<R> {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            let SeekFrom::Start(p) = to else {
                unreachable!()
            };
            self.inner
                .seek(SeekFrom::Start(self.start + p))
                .map(|p| p - self.start)
        }
    }

    // ---- synthetic --------------------------------------------------------------------------

    #[test]
    fn zfs_uberblocks() {
        let mut ring = vec![0u8; 128 * 1024];
        for i in [0usize, 1, 5, 9] {
            ring[i * 1024..i * 1024 + 8].copy_from_slice(&0x00ba_b10c_u64.to_le_bytes());
        }
        let s = probe_sparse(64 << 20, vec![(128 * 1024, ring.clone())]);
        assert_eq!(kinds(&s), [(SignatureKind::Zfs, 128 * 1024)]);
        // Big-endian pools too; three uberblocks are not enough.
        let mut be = vec![0u8; 128 * 1024];
        for i in [2usize, 3, 4, 7] {
            be[i * 1024..i * 1024 + 8].copy_from_slice(&0x00ba_b10c_u64.to_be_bytes());
        }
        assert_eq!(
            kinds(&probe_sparse(64 << 20, vec![(384 * 1024, be)])),
            [(SignatureKind::Zfs, 384 * 1024 + 2048)]
        );
        ring[9 * 1024..9 * 1024 + 8].fill(0);
        assert!(probe_sparse(64 << 20, vec![(128 * 1024, ring)]).is_empty());
    }

    #[test]
    fn a_boot_sector_with_bad_boot_flags_is_no_partition_table() {
        let mut s0 = vec![0u8; 512];
        s0[510] = 0x55;
        s0[511] = 0xAA;
        s0[446 + 4] = 0x83;
        assert_eq!(
            kinds(&probe_sparse(1 << 20, vec![(0, s0.clone())])),
            [(SignatureKind::Mbr, 510)]
        );
        s0[446] = 0x12;
        assert!(probe_sparse(1 << 20, vec![(0, s0)]).is_empty());
    }

    #[test]
    fn read_errors_are_errors_not_blank() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("medium error"))
            }
        }
        impl Seek for Failing {
            fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
                Ok(0)
            }
        }
        let e = signatures(Failing, 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read 512 bytes at offset 0 of the device"
        );
        // A device shorter than it claims: the read past its real end fails.
        let e = signatures(Cursor::new(vec![0u8; 1024]), 1 << 20).unwrap_err();
        assert!(matches!(e, ProbeError::Read { .. }), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn never_panics_nor_reads_past_size(
            size in 0u64..(80 << 20),
            chunks in proptest::collection::vec(
                (0u64..(80 << 20), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)),
                0..8,
            ),
        ) {
            let _ = signatures(Sparse { size, pos: 0, chunks }, size);
        }

        #[test]
        fn never_panics_on_mutated_real_superblocks(
            which in 0usize..4,
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..16),
        ) {
            let (version, _, size, offset) = excerpts()[[0, 1, 2, 4][which]].clone();
            let mut sb = std::fs::read(testdata(&format!("md/superblock-{version}.bin"))).unwrap();
            for (at, v) in flips {
                sb[at] = v;
            }
            let _ = signatures(Sparse { size, pos: 0, chunks: vec![(offset, sb)] }, size);
        }
    }
}
