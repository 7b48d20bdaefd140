//! A fake machine for `vault-poold`: the tier-test pool (tests/vm/profiles/tier-test.toml) laid
//! out as files, so the service's bus API, event handling and alerts can be tested on a host
//! without md. `vault-poold` reads it through the `sysfs-root`, `dev-root` and `proc-root` of
//! its poold.toml (RealHost, services/libs/pools/src/real.rs):
//!
//! - `sys/devices/...`: one directory per disk (`size`, `dev`, `removable`, `queue/rotational`,
//!   the serial in `device/serial` for NVMe and `serial` for virtio, `holders/mdN`) and per md
//!   array (`size`, `dev`, and `md/` with the attributes and `dev-*` member directories the
//!   kernel shows, as in services/libs/pools/testdata/md/*/sysfs.mdN); `sys/block/<name>` and
//!   `sys/class/block/<name>` are links to them, as on a real machine;
//! - `dev/<name>`: sparse 128 MiB image files; members carry an md 1.2 superblock at 4 KiB (the
//!   captured testdata/md/superblock-1.2.bin with the array's name, UUID, level and role
//!   table written in, checksum recomputed), which is how RealHost learns the array's name;
//! - `proc/self/mountinfo`, `proc/swaps`, `proc/meminfo`, `proc/cpuinfo`.
//!
//! The arrays: `vault-ddb` = md127, RAID10 of nvme0n1-nvme3n1 (NV0-NV3) with spare nvme4n1
//! (NV4); `vault-data0` = md126, RAID5 of vdb-vdd (VD0-VD2) with the shared spare vdh (VD6);
//! `vault-data1` = md125, RAID5 of vde-vdg (VD3-VD5). All assembled, clean and idle.
//!
//! Tests change the machine by rewriting attributes ([`FakeMachine::set`]) the way the kernel
//! does (the state steps below follow the captures). Each file is replaced atomically (write,
//! rename), but a step of several files is not: the service may read between two of them, as
//! it may read between two attribute changes of the real kernel. The steps are ordered so that
//! any such mixed read is a state the real array passes through as well.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::bus::repo_root;

/// Every disk of the tier-test machine: 128 MiB.
pub const DISK_BYTES: u64 = 128 << 20;
/// md's data offset on these members (4096 sectors, as mdadm 4.2 chose in the captures).
const DATA_OFFSET_SECTORS: u64 = 4096;
/// Each member's share of an array, in KiB (`component_size`).
pub const COMPONENT_KIB: u64 = (DISK_BYTES / 1024) - DATA_OFFSET_SECTORS / 2;
/// The sectors a resync or recovery walks (`sync_completed`'s total): the component size.
pub const SYNC_SECTORS: u64 = COMPONENT_KIB * 2;

/// A disk of the fake machine.
#[derive(Debug, Clone)]
pub struct Disk {
    /// Kernel name: `nvme0n1`, `vdb`.
    pub name: String,
    pub serial: String,
    pub nvme: bool,
    /// `major:minor`.
    pub devnum: String,
    /// Its directory under `sys/devices/`, relative to `sys/`.
    pub rel: String,
}

/// An md array of the fake machine.
#[derive(Debug, Clone)]
pub struct Array {
    /// `vault-data0`.
    pub name: String,
    /// `md126`.
    pub dev: String,
    pub level: &'static str,
    pub uuid: [u8; 16],
    /// Members in slot order, then spares (kernel names).
    pub members: Vec<String>,
    pub spares: Vec<String>,
}

impl Array {
    /// `9:126`.
    pub fn devnum(&self) -> String {
        format!("9:{}", self.dev.trim_start_matches("md"))
    }

    /// The UUID as sysfs prints it (`9dab6a3d-5a99-556a-efff-aae82d51e817`).
    pub fn uuid_dashed(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// The UUID as mdadm prints it (`9dab6a3d:5a99556a:efffaae8:2d51e817`).
    pub fn uuid_mdadm(&self) -> String {
        self.uuid
            .chunks(4)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Array size in 512-byte sectors: two components' worth for RAID5 of 3 and RAID10 of 4.
    pub fn size_sectors(&self) -> u64 {
        let data_members = match self.level {
            "raid10" => self.members.len() as u64 / 2,
            "raid5" => self.members.len() as u64 - 1,
            _ => 1,
        };
        data_members * COMPONENT_KIB * 2
    }
}

/// The fake machine and the service's configuration, in a temporary directory.
pub struct FakeMachine {
    pub dir: tempfile::TempDir,
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub proc: PathBuf,
    /// The poold.toml to give `vault-poold --config`.
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub disks: Vec<Disk>,
    pub arrays: Vec<Array>,
    /// Extra mountinfo lines (array mounts), after the base ones.
    mounts: Vec<String>,
}

/// The plan's disks: 5 NVMe (NV0-NV4, nvme0n1-nvme4n1), 7 virtio (VD0-VD6, vdb-vdh).
fn tier_test_disks() -> Vec<Disk> {
    let mut out = Vec::new();
    for i in 0..5u32 {
        let name = format!("nvme{i}n1");
        out.push(Disk {
            rel: format!(
                "devices/pci0000:00/0000:00:{:02x}.0/nvme/nvme{i}/{name}",
                3 + i
            ),
            name,
            serial: format!("NV{i}"),
            nvme: true,
            devnum: format!("259:{i}"),
        });
    }
    for i in 0..7u32 {
        let name = format!("vd{}", (b'b' + i as u8) as char);
        out.push(Disk {
            rel: format!(
                "devices/pci0000:00/0000:00:{:02x}.0/virtio{}/block/{name}",
                9 + i,
                2 + i
            ),
            name,
            serial: format!("VD{i}"),
            nvme: false,
            devnum: format!("254:{}", 16 * (i + 1)),
        });
    }
    out
}

fn tier_test_arrays() -> Vec<Array> {
    let uuid = |seed: u8| {
        let mut u = [0u8; 16];
        for (i, b) in u.iter_mut().enumerate() {
            *b = seed.wrapping_mul(37).wrapping_add(i as u8 * 11) ^ 0x5a;
        }
        u
    };
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        Array {
            name: "vault-ddb".into(),
            dev: "md127".into(),
            level: "raid10",
            uuid: uuid(1),
            members: names(&["nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1"]),
            spares: names(&["nvme4n1"]),
        },
        Array {
            name: "vault-data0".into(),
            dev: "md126".into(),
            level: "raid5",
            uuid: uuid(2),
            members: names(&["vdb", "vdc", "vdd"]),
            spares: names(&["vdh"]),
        },
        Array {
            name: "vault-data1".into(),
            dev: "md125".into(),
            level: "raid5",
            uuid: uuid(3),
            members: names(&["vde", "vdf", "vdg"]),
            spares: Vec::new(),
        },
    ]
}

/// The appliance config `vaultctl provision` would have written for the tier-test machine
/// (tiervault_model::ApplianceConfig; written by hand, as this crate does not link the model).
fn appliance_toml(disks: &[Disk]) -> String {
    let disk = |name: &str| {
        let d = disks.iter().find(|d| d.name == name).expect("planned disk");
        format!(
            "serial = \"{}\"\ndevice = \"{}\"\nsize-bytes = {DISK_BYTES}\n",
            d.serial, d.name
        )
    };
    let mut t = String::from(
        "version = 1\n\n[plan]\ntier = \"tier-test\"\nusable-bytes = 536870912\nusable-tib = 0\n\
         index-memory-bytes = 16777216\ndedup-cache-bytes = 0\nunused = []\n",
    );
    for (name, role, level, members) in [
        (
            "os0",
            "os",
            "raid10",
            &["nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1"][..],
        ),
        ("data0", "data", "raid5", &["vdb", "vdc", "vdd"][..]),
        ("data1", "data", "raid5", &["vde", "vdf", "vdg"][..]),
    ] {
        t += &format!(
            "\n[[plan.array]]\nname = \"{name}\"\nrole = \"{role}\"\nlevel = \"{level}\"\n"
        );
        for m in members {
            t += &format!("[[plan.array.members]]\n{}", disk(m));
        }
    }
    for (role, arrays, d) in [
        ("os", "[\"os0\"]", "nvme4n1"),
        ("data", "[\"data0\", \"data1\"]", "vdh"),
    ] {
        t += &format!(
            "\n[[plan.spare]]\nrole = \"{role}\"\narrays = {arrays}\n[plan.spare.disk]\n{}",
            disk(d)
        );
    }
    t
}

/// Writes `text` to `path` atomically (a reader sees the old or the new value, never an
/// empty file), creating the directory.
pub fn write_atomic(path: &Path, text: &str) {
    let dir = path.parent().expect("parent");
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().expect("name").to_string_lossy()
    ));
    fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn link(target: &str, at: &Path) {
    if let Some(dir) = at.parent() {
        fs::create_dir_all(dir).expect("link dir");
    }
    symlink(target, at).unwrap_or_else(|e| panic!("{} -> {target}: {e}", at.display()));
}

/// `../` repeated `n` times.
fn up(n: usize) -> String {
    "../".repeat(n)
}

/// The 4 KiB at offset 4096 of member `dev_number` of `array`: the captured 1.2 superblock
/// (services/libs/pools/testdata/md/superblock-1.2.bin, a RAID10 member) with this array's
/// identity and geometry; member `n` of the role table has slot `n`, spares come after them.
fn superblock(array: &Array, dev_number: u32) -> Vec<u8> {
    let template = repo_root().join("services/libs/pools/testdata/md/superblock-1.2.bin");
    let mut sb = fs::read(&template).unwrap_or_else(|e| panic!("{}: {e}", template.display()));
    assert_eq!(sb.len(), 4096, "{}", template.display());
    let put32 =
        |sb: &mut Vec<u8>, at: usize, v: u32| sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |sb: &mut Vec<u8>, at: usize, v: u64| sb[at..at + 8].copy_from_slice(&v.to_le_bytes());
    assert_eq!(
        u32::from_le_bytes([sb[0], sb[1], sb[2], sb[3]]),
        0xa92b_4efc,
        "md magic"
    );
    // set_uuid, set_name ("host:name", NUL-padded).
    sb[16..32].copy_from_slice(&array.uuid);
    let name = format!("tvguest:{}", array.name);
    sb[32..64].fill(0);
    sb[32..32 + name.len()].copy_from_slice(name.as_bytes());
    let (level, layout) = match array.level {
        "raid10" => (10, 0x102),
        _ => (5, 2),
    };
    put32(&mut sb, 72, level);
    put32(&mut sb, 76, layout);
    put64(&mut sb, 80, SYNC_SECTORS);
    put32(&mut sb, 92, array.members.len() as u32);
    put64(&mut sb, 136, SYNC_SECTORS);
    put32(&mut sb, 160, dev_number);
    // device_uuid: unique per member.
    for (i, b) in sb[168..184].iter_mut().enumerate() {
        *b = array.uuid[i] ^ (dev_number as u8 + 1).wrapping_mul(0x3d);
    }
    let max_dev = u32::from_le_bytes([sb[220], sb[221], sb[222], sb[223]]) as usize;
    let roles = 256..256 + 2 * max_dev;
    for b in &mut sb[roles.clone()] {
        *b = 0xff;
    }
    let all = array.members.len() + array.spares.len();
    for n in 0..all {
        let r: u16 = if n < array.members.len() {
            n as u16
        } else {
            0xffff
        };
        sb[256 + 2 * n..258 + 2 * n].copy_from_slice(&r.to_le_bytes());
    }
    let sum = tiervault_pools::probe::md1_checksum(&sb[..roles.end]);
    put32(&mut sb, 216, sum);
    sb
}

impl FakeMachine {
    /// The tier-test machine with its three arrays assembled, clean and idle, nothing
    /// mounted, and a poold.toml serving on `bus`.
    pub fn tier_test(bus: &str) -> FakeMachine {
        let dir = tempfile::Builder::new()
            .prefix("tiervault-fakemd-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let m = FakeMachine {
            sys: root.join("sys"),
            dev: root.join("dev"),
            proc: root.join("proc"),
            config: root.join("etc/poold.toml"),
            state_dir: root.join("state"),
            disks: tier_test_disks(),
            arrays: tier_test_arrays(),
            mounts: Vec::new(),
            dir,
        };
        for d in m.disks.clone() {
            m.make_disk(&d);
        }
        for a in m.arrays.clone() {
            m.make_array(&a);
        }
        m.make_proc();
        let etc = root.join("etc");
        fs::create_dir_all(&etc).expect("etc");
        fs::write(etc.join("appliance.toml"), appliance_toml(&m.disks)).expect("appliance.toml");
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let config = format!(
            "# vault-poold on the fake tier-test machine (tests/tests/common/fakemd.rs).\n\
             appliance-config = {appliance}\n\
             pool-root = {pool}\n\
             state-dir = {state}\n\
             mdadm-conf = {mdadm}\n\
             units-dir = \"\"\n\
             bus = {bus:?}\n\
             # mdadm cannot run here: no assembling at start, no automatic --remove/--add.\n\
             bring-up = false\n\
             auto-spare = false\n\
             scrub-every-days = 0\n\
             # Regular files never signal POLLPRI the way md sysfs attributes do, so in this\n\
             # fake tree the rescan is what notices every change: once a second, also while an\n\
             # array syncs.\n\
             rescan-seconds = 1\n\
             sync-poll-seconds = 1\n\
             sysfs-root = {sys}\n\
             dev-root = {dev}\n\
             proc-root = {proc}\n",
            appliance = q(&etc.join("appliance.toml")),
            pool = q(&root.join("srv")),
            state = q(&m.state_dir),
            mdadm = q(&etc.join("mdadm.conf")),
            sys = q(&m.sys),
            dev = q(&m.dev),
            proc = q(&m.proc),
        );
        fs::write(&m.config, config).expect("poold.toml");
        m
    }

    pub fn disk(&self, name: &str) -> &Disk {
        self.disks
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no disk {name}"))
    }

    pub fn array(&self, name: &str) -> &Array {
        self.arrays
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no array {name}"))
    }

    /// `sys/devices/virtual/block/<mdN>/md` of the array `name`.
    pub fn md_dir(&self, name: &str) -> PathBuf {
        self.sys
            .join("devices/virtual/block")
            .join(&self.array(name).dev)
            .join("md")
    }

    /// An md attribute (`sync_action`, `dev-vdc/state`), without the newline.
    pub fn read(&self, array: &str, attr: &str) -> String {
        let p = self.md_dir(array).join(attr);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim_end()
            .to_string()
    }

    /// Rewrites md attributes of `array` in the order given (each file atomically).
    pub fn set(&self, array: &str, attrs: &[(&str, &str)]) {
        let md = self.md_dir(array);
        for (attr, value) in attrs {
            write_atomic(&md.join(attr), &format!("{value}\n"));
        }
    }

    fn make_disk(&self, d: &Disk) {
        let dir = self.sys.join(&d.rel);
        fs::create_dir_all(dir.join("queue")).expect("disk dir");
        fs::create_dir_all(dir.join("holders")).expect("holders");
        fs::create_dir_all(dir.join("device")).expect("device");
        let w = |p: &str, v: &str| fs::write(dir.join(p), format!("{v}\n")).expect(p);
        w("size", &(DISK_BYTES / 512).to_string());
        w("dev", &d.devnum);
        w("removable", "0");
        w("ro", "0");
        if d.nvme {
            w("queue/rotational", "0");
            w("device/serial", &format!("{:<20}", d.serial));
            w("device/model", "QEMU NVMe Ctrl");
        } else {
            w("queue/rotational", "1");
            w("serial", &d.serial);
        }
        link(
            &format!("{}{}", up(1), d.rel),
            &self.sys.join("block").join(&d.name),
        );
        link(
            &format!("{}{}", up(2), d.rel),
            &self.sys.join("class/block").join(&d.name),
        );
        // The device node: a sparse image.
        fs::create_dir_all(&self.dev).expect("dev");
        let f = fs::File::create(self.dev.join(&d.name)).expect("image");
        f.set_len(DISK_BYTES).expect("set_len");
    }

    fn make_array(&self, a: &Array) {
        let rel = format!("devices/virtual/block/{}", a.dev);
        let dir = self.sys.join(&rel);
        let md = dir.join("md");
        fs::create_dir_all(md.join("bitmap")).expect("md dir");
        fs::create_dir_all(dir.join("holders")).expect("holders");
        let w = |p: &Path, v: &str| fs::write(p, format!("{v}\n")).expect("attr");
        w(&dir.join("size"), &a.size_sectors().to_string());
        w(&dir.join("dev"), &a.devnum());
        w(&dir.join("removable"), "0");
        w(&dir.join("ro"), "0");
        link(&format!("../{rel}"), &self.sys.join("block").join(&a.dev));
        link(
            &format!("../../{rel}"),
            &self.sys.join("class/block").join(&a.dev),
        );
        let layout = if a.level == "raid10" { "258" } else { "2" };
        let chunk = (512 * 1024).to_string();
        let comp = COMPONENT_KIB.to_string();
        let uuid = a.uuid_dashed();
        let raid_disks = a.members.len().to_string();
        for (attr, value) in [
            ("array_size", "default"),
            ("array_state", "clean"),
            ("chunk_size", chunk.as_str()),
            ("component_size", comp.as_str()),
            ("consistency_policy", "bitmap"),
            ("degraded", "0"),
            ("last_sync_action", "resync"),
            ("layout", layout),
            ("level", a.level),
            ("metadata_version", "1.2"),
            ("mismatch_cnt", "0"),
            ("raid_disks", raid_disks.as_str()),
            ("reshape_position", "none"),
            ("resync_start", "none"),
            ("sync_action", "idle"),
            ("sync_completed", "none"),
            ("sync_speed", "none"),
            ("sync_speed_max", "200000 (system)"),
            ("sync_speed_min", "1000 (system)"),
            ("uuid", uuid.as_str()),
            ("bitmap/location", "+8"),
            ("bitmap/metadata", "internal"),
        ] {
            w(&md.join(attr), value);
        }
        let all: Vec<(usize, &String)> = a
            .members
            .iter()
            .chain(a.spares.iter())
            .enumerate()
            .collect();
        for (n, disk) in all {
            let slot = (n < a.members.len()).then_some(n as u32);
            let d = self.disk(disk);
            let devdir = md.join(format!("dev-{disk}"));
            fs::create_dir_all(&devdir).expect("dev- dir");
            let slot_text = slot.map_or("none".to_string(), |s| s.to_string());
            for (attr, value) in [
                ("errors", "0"),
                ("offset", "4096"),
                ("new_offset", "4096"),
                ("recovery_start", if slot.is_some() { "none" } else { "0" }),
                ("size", comp.as_str()),
                ("slot", slot_text.as_str()),
                ("state", if slot.is_some() { "in_sync" } else { "spare" }),
                ("bad_blocks", ""),
            ] {
                w(&devdir.join(attr), value);
            }
            // dev-X/block -> ../../../../../<the disk's directory below devices/>
            let target = format!(
                "{}{}",
                up(5),
                d.rel.strip_prefix("devices/").expect("under devices")
            );
            link(&target, &devdir.join("block"));
            if let Some(s) = slot {
                link(&format!("dev-{disk}"), &md.join(format!("rd{s}")));
            }
            // The disk's holders/mdN -> the array's directory.
            link(
                &format!("{}{rel}", up(d.rel.split('/').count() + 1)),
                &self.sys.join(&d.rel).join("holders").join(&a.dev),
            );
            // The member's superblock.
            let mut f = fs::OpenOptions::new()
                .write(true)
                .open(self.dev.join(disk))
                .expect("image");
            f.seek(SeekFrom::Start(4096)).expect("seek");
            f.write_all(&superblock(a, n as u32)).expect("superblock");
        }
        // The array's own device node: blank (no file system signature).
        let f = fs::File::create(self.dev.join(&a.dev)).expect("md image");
        f.set_len(a.size_sectors() * 512).expect("set_len");
    }

    fn make_proc(&self) {
        fs::create_dir_all(self.proc.join("self")).expect("proc");
        self.write_mountinfo();
        fs::write(
            self.proc.join("swaps"),
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        )
        .expect("swaps");
        fs::write(
            self.proc.join("meminfo"),
            "MemTotal:         917504 kB\nMemFree:          524288 kB\nMemAvailable:     655360 kB\n",
        )
        .expect("meminfo");
        let cpu = |n: u32| {
            format!(
                "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: QEMU Virtual CPU version 2.5+\n\
                 physical id\t: 0\ncore id\t\t: {n}\ncpu cores\t: 2\n\n"
            )
        };
        fs::write(self.proc.join("cpuinfo"), cpu(0) + &cpu(1)).expect("cpuinfo");
    }

    fn write_mountinfo(&self) {
        let mut text = String::from(
            "1 1 0:2 / / rw - rootfs rootfs rw\n\
             21 1 0:19 / /proc rw,relatime - proc proc rw\n\
             22 1 0:20 / /sys rw,relatime - sysfs sys rw\n\
             23 1 0:5 / /dev rw,relatime - devtmpfs dev rw,mode=755\n\
             24 1 0:21 / /tmp rw,relatime - tmpfs tmp rw\n",
        );
        for l in &self.mounts {
            text += l;
            text.push('\n');
        }
        write_atomic(&self.proc.join("self/mountinfo"), &text);
    }

    /// Lists array `name` as mounted at `at` (an XFS on its md device) in the fake
    /// mountinfo. RealHost statvfs()s `at` itself, so its fill level is that of whatever
    /// file system is really there.
    pub fn mount(&mut self, name: &str, at: &Path) {
        let a = self.array(name).clone();
        let at = at.display().to_string();
        assert!(!at.contains([' ', '\t', '\n', '\\']), "unescaped path {at}");
        let id = 30 + self.mounts.len();
        self.mounts.push(format!(
            "{id} 1 {} / {at} rw,relatime - xfs /dev/{} rw,attr2,inode64,sunit=1024,swidth=2048",
            a.devnum(),
            a.dev
        ));
        self.write_mountinfo();
    }

    // --- state steps, as the kernel takes them (services/libs/pools/testdata/md) ---

    /// A member fails (02/05: `state` = faulty; it keeps its slot until md takes it out) and
    /// the array counts one more missing member (`degraded`).
    pub fn fail(&self, array: &str, disk: &str) {
        let degraded: u32 = self.read(array, "degraded").parse().expect("degraded");
        self.set(
            array,
            &[
                (&format!("dev-{disk}/state"), "faulty"),
                ("degraded", &(degraded + 1).to_string()),
            ],
        );
    }

    /// md takes the faulty `failed` out of its slot and recovers onto the spare `spare`
    /// (02-r5-fail-recovering: the spare takes the slot and stays `spare` until in sync),
    /// `done` of [`SYNC_SECTORS`] at `speed_kib` KiB/s. `sync_action` is written last: a
    /// read before it sees a degraded array, as the kernel shows between the two.
    pub fn start_recovery(
        &self,
        array: &str,
        failed: &str,
        spare: &str,
        done: u64,
        speed_kib: u64,
    ) {
        let slot = self.read(array, &format!("dev-{failed}/slot"));
        self.set(
            array,
            &[
                (&format!("dev-{failed}/slot"), "none"),
                (&format!("dev-{spare}/slot"), &slot),
                (&format!("dev-{spare}/recovery_start"), &(done).to_string()),
                ("sync_completed", &format!("{done} / {SYNC_SECTORS}")),
                ("sync_speed", &speed_kib.to_string()),
                ("last_sync_action", "recovery"),
                ("sync_action", "recover"),
            ],
        );
    }

    /// Recovery progress.
    pub fn progress(&self, array: &str, done: u64, speed_kib: u64) {
        self.set(
            array,
            &[
                ("sync_completed", &format!("{done} / {SYNC_SECTORS}")),
                ("sync_speed", &speed_kib.to_string()),
            ],
        );
    }

    /// The recovery reached the end (03-r5-rebuilt, first half): the spare is in sync and
    /// nothing is missing, while `sync_action` still says `recover`. Wait until the service
    /// has seen this (Degraded = 0) before [`Self::sync_idle`], so that no read mixes an old
    /// `degraded` with the new `idle` (a degraded array with nothing rebuilding, which the
    /// real array never shows at the end of a rebuild).
    pub fn recovery_done(&self, array: &str, spare: &str) {
        self.set(
            array,
            &[
                (&format!("dev-{spare}/state"), "in_sync"),
                (&format!("dev-{spare}/recovery_start"), "none"),
                (
                    "sync_completed",
                    &format!("{SYNC_SECTORS} / {SYNC_SECTORS}"),
                ),
                ("degraded", "0"),
            ],
        );
    }

    /// The sync thread ends: `idle`, no progress (03-r5-rebuilt).
    pub fn sync_idle(&self, array: &str) {
        self.set(
            array,
            &[
                ("sync_completed", "none"),
                ("sync_speed", "none"),
                ("sync_action", "idle"),
            ],
        );
    }

    /// A RAID5 loses its second member (05-r5-failed): `degraded` 2, and the array, which
    /// cannot write any more, stays `write-pending`.
    pub fn fail_second(&self, array: &str, disk: &str) {
        self.fail(array, disk);
        self.set(array, &[("array_state", "write-pending")]);
    }
}
