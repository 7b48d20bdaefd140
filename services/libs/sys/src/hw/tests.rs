//! `read_hardware` against a fake sysfs/procfs tree built in a temporary directory.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use tempfile::TempDir;
use tiervault_model::Bus;

use super::*;

fn write(path: &Path, content: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

/// A block device at `devices/<dev_path>/block/<name>` linked from `block/<name>`, with its
/// `device` link pointing at `devices/<dev_path>`.
fn block(
    sys: &Path,
    dev_path: &str,
    name: &str,
    sectors: u64,
    rotational: bool,
) -> std::path::PathBuf {
    let dev = sys.join("devices").join(dev_path);
    let dir = dev.join("block").join(name);
    write(&dir.join("size"), format!("{sectors}\n"));
    write(
        &dir.join("queue/rotational"),
        if rotational { "1\n" } else { "0\n" },
    );
    symlink("../..", dir.join("device")).expect("device link");
    fs::create_dir_all(sys.join("block")).expect("block dir");
    symlink(
        format!("../devices/{dev_path}/block/{name}"),
        sys.join("block").join(name),
    )
    .expect("block link");
    dev
}

fn virtual_block(sys: &Path, name: &str) {
    let dir = sys.join("devices/virtual/block").join(name);
    write(&dir.join("size"), "0\n");
    fs::create_dir_all(sys.join("block")).expect("block dir");
    symlink(
        format!("../devices/virtual/block/{name}"),
        sys.join("block").join(name),
    )
    .expect("link");
}

const CPUINFO: &str = "\
processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz\nphysical id\t: 0\ncore id\t\t: 0\n\n\
processor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz\nphysical id\t: 0\ncore id\t\t: 0\n\n\
processor\t: 2\nmodel name\t: Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz\nphysical id\t: 0\ncore id\t\t: 1\n\n\
processor\t: 3\nmodel name\t: Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz\nphysical id\t: 1\ncore id\t\t: 0\n\n\
processor\t: 4\nmodel name\t: Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz\nphysical id\t: 1\ncore id\t\t: 1\n\n";

fn fake() -> TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    let (sys, proc_) = (t.path().join("sys"), t.path().join("proc"));
    // SATA disk behind AHCI: serial from VPD page 0x80, RPM from page 0xb1, bay 3.
    let sda = block(
        &sys,
        "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0",
        "sda",
        3_907_029_168,
        true,
    );
    write(&sda.join("model"), "ST2000NM0033-9ZM\n");
    let mut pg80 = vec![0, 0x80, 0, 8];
    pg80.extend_from_slice(b"Z1X0ABCD");
    write(&sda.join("vpd_pg80"), pg80);
    write(&sda.join("vpd_pgb1"), [0, 0xb1, 0, 0x3c, 0x1c, 0x20, 0, 0]);
    fs::create_dir_all(sda.join("enclosure_device:Slot 03")).expect("slot");
    // SAS 15K disk: serial attribute, bus from end_device- in the path.
    let sdb = block(
        &sys,
        "pci0000:00/0000:00:03.0/0000:02:00.0/host1/port-1:0/end_device-1:0/target1:0:0/1:0:0:0",
        "sdb",
        879_097_968,
        true,
    );
    write(&sdb.join("model"), "ST450MP0005     \n");
    write(&sdb.join("serial"), "S7M0SAS1\n");
    write(&sdb.join("vpd_pgb1"), [0, 0xb1, 0, 0x3c, 0x3a, 0x98, 0, 0]);
    // NVMe SSD: serial attribute on the controller.
    let nvme = block(
        &sys,
        "pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0",
        "nvme0n1",
        937_703_088,
        false,
    );
    write(&nvme.join("model"), "INTEL SSDPE2KX010T8\n");
    write(&nvme.join("serial"), "PHLJ0001\n");
    // virtio disk: serial at the block level (as on this VM), bus from the path.
    block(
        &sys,
        "pci0000:00/0000:00:02.0/virtio1",
        "vda",
        536_870_912,
        true,
    );
    write(
        &sys.join("devices/pci0000:00/0000:00:02.0/virtio1/block/vda/serial"),
        "overlayblk",
    );
    // A SCSI disk with only a wwid, bus from the subsystem link.
    let sdc = block(
        &sys,
        "platform/host2/target2:0:0/2:0:0:0",
        "sdc",
        1000,
        false,
    );
    write(&sdc.join("wwid"), "naa.5000c500a1b2c3d4\n");
    fs::create_dir_all(sys.join("bus/scsi")).expect("bus");
    symlink(sys.join("bus/scsi"), sdc.join("subsystem")).expect("subsystem");
    for v in ["loop0", "ram0", "zram0", "dm-0", "md127", "sr0"] {
        virtual_block(&sys, v);
    }
    write(
        &proc_.join("meminfo"),
        "MemTotal:       65832424 kB\nMemFree:        1234 kB\n",
    );
    write(&proc_.join("cpuinfo"), CPUINFO);
    t
}

#[test]
fn reads_disks_memory_and_cpus() {
    let t = fake();
    let hw = read_hardware(&t.path().join("sys"), &t.path().join("proc")).expect("read");
    let names: Vec<&str> = hw.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["sda", "sdb", "sdc", "vda", "nvme0n1"],
        "virtual devices skipped"
    );
    let d = |n: &str| hw.disks.iter().find(|d| d.name == n).expect(n);

    let sda = d("sda");
    assert_eq!(sda.size_bytes, 3_907_029_168 * 512);
    assert!(sda.rotational);
    assert_eq!(sda.rpm, Some(7200));
    assert_eq!(sda.model.as_deref(), Some("ST2000NM0033-9ZM"));
    assert_eq!(sda.serial.as_deref(), Some("Z1X0ABCD"));
    assert_eq!(sda.bus, Bus::Sata);
    assert_eq!(sda.slot, Some(3));

    let sdb = d("sdb");
    assert_eq!((sdb.bus, sdb.rpm, sdb.slot), (Bus::Sas, Some(15000), None));
    assert_eq!(sdb.model.as_deref(), Some("ST450MP0005"));
    assert_eq!(sdb.serial.as_deref(), Some("S7M0SAS1"));

    let nvme = d("nvme0n1");
    assert_eq!((nvme.bus, nvme.rotational), (Bus::Nvme, false));
    assert_eq!(nvme.serial.as_deref(), Some("PHLJ0001"));

    let vda = d("vda");
    assert_eq!(
        (vda.bus, vda.serial.as_deref()),
        (Bus::Virtio, Some("overlayblk"))
    );
    assert_eq!(vda.size_bytes, 256 << 30);

    let sdc = d("sdc");
    assert_eq!(
        (sdc.bus, sdc.serial.as_deref()),
        (Bus::Scsi, Some("naa.5000c500a1b2c3d4"))
    );

    assert_eq!(hw.memory.total_bytes, 65_832_424 * 1024);
    assert_eq!((hw.cpu.sockets, hw.cpu.cores, hw.cpu.threads), (2, 4, 5));
    assert_eq!(
        hw.cpu.model.as_deref(),
        Some("Intel(R) Xeon(R) CPU E5-2620 v3 @ 2.40GHz")
    );
}

#[test]
fn cpuinfo_without_topology_counts_threads_as_cores() {
    let t = fake();
    write(
        &t.path().join("proc/cpuinfo"),
        "processor : 0\n\nprocessor : 1\n\nprocessor : 2\n",
    );
    let hw = read_hardware(&t.path().join("sys"), &t.path().join("proc")).expect("read");
    assert_eq!((hw.cpu.sockets, hw.cpu.cores, hw.cpu.threads), (1, 3, 3));
}

#[test]
fn errors_name_the_file() {
    let t = fake();
    write(&t.path().join("proc/meminfo"), "MemFree: 1 kB\n");
    let e = read_hardware(&t.path().join("sys"), &t.path().join("proc")).expect_err("meminfo");
    assert!(
        e.to_string()
            .ends_with("proc/meminfo: no \"MemTotal: N kB\" line"),
        "{e}"
    );

    let t = fake();
    write(
        &t.path()
            .join("sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda/size"),
        "lots\n",
    );
    let e = read_hardware(&t.path().join("sys"), &t.path().join("proc")).expect_err("size");
    assert!(
        e.to_string()
            .ends_with("vda/size: not a number of 512-byte sectors"),
        "{e}"
    );

    let e = read_hardware(&t.path().join("nowhere"), &t.path().join("proc")).expect_err("no sys");
    assert!(e.to_string().ends_with("nowhere/block: cannot read"), "{e}");
}

/// The description round-trips through the fixture format.
#[test]
fn dump_parses_back() {
    let t = fake();
    let hw = read_hardware(&t.path().join("sys"), &t.path().join("proc")).expect("read");
    let back = HardwareDescription::parse(Path::new("dump.toml"), &hw.to_toml()).expect("parse");
    assert_eq!(back, hw);
}

/// This machine's own sysfs, when there is one: it must read without error.
#[test]
fn reads_this_machine() {
    let (sys, proc_) = (Path::new("/sys"), Path::new("/proc"));
    if !sys.join("block").is_dir() || !proc_.join("meminfo").is_file() {
        eprintln!("SKIPPED: no /sys/block or /proc/meminfo here");
        return;
    }
    let hw = read_hardware(sys, proc_).expect("this machine");
    assert!(hw.cpu.threads >= 1);
    assert!(hw.memory.total_bytes > 0);
    assert!(hw
        .disks
        .iter()
        .all(|d| !d.name.starts_with("loop") && !d.name.starts_with("zram")));
}
