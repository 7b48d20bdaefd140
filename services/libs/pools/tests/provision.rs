//! Provisioning against the simulated machine: what runs on blank disks, that a second run
//! changes nothing, and that disks carrying data are refused unless named by serial.

mod common;

use std::path::Path;

use common::{layout, machine, targets, SIZE};
use tiervault_pools::fake::FakeHost;
use tiervault_pools::host::DiskUsage;
use tiervault_pools::provision::{provision, Consent, ProvisionError, Report};

fn run(host: &FakeHost, wipe: &[&str], dry_run: bool) -> Result<Report, ProvisionError> {
    let consent = Consent {
        wipe: wipe.iter().map(|s| s.to_string()).collect(),
    };
    provision(host, &layout(), &consent, &targets(), dry_run, &mut |_| {})
}

#[test]
fn blank_disks_become_the_planned_pool_and_a_second_run_changes_nothing() {
    let host = machine(true);
    let first = run(&host, &[], false).expect("provisioning blank disks");
    let log = host.log();
    let creates: Vec<_> = log
        .iter()
        .filter(|l| l.starts_with("mdadm --create"))
        .collect();
    assert_eq!(creates.len(), 3, "{log:#?}");
    assert!(creates[0].contains("/dev/md/vault-ddb") && creates[0].contains("--level=raid10"));
    assert!(creates[0].contains("--raid-devices=4 --spare-devices=1"));
    assert!(creates[1].contains("--level=raid5 --raid-devices=3 --spare-devices=1"));
    assert!(
        creates[2].contains("--spare-devices=0"),
        "the shared spare lives in data0"
    );
    assert!(log
        .iter()
        .any(|l| l == "mkfs.xfs -q -f -L vault-data1 -d su=512k,sw=2 /dev/md/vault-data1"));
    assert!(log
        .iter()
        .any(|l| l == "mount -t xfs -o noatime /dev/md/vault-data0 /srv/tiervault/data0"));
    let conf = host
        .file(Path::new("/etc/mdadm/mdadm.conf"))
        .expect("mdadm.conf written");
    for name in ["vault-ddb", "vault-data0", "vault-data1"] {
        let line = conf
            .lines()
            .find(|l| l.starts_with(&format!("ARRAY /dev/md/{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from mdadm.conf:\n{conf}"));
        assert!(line.contains("UUID=fake-uuid-"), "{line}");
    }
    let unit = host
        .file(Path::new("/etc/systemd/system/srv-tiervault-data0.mount"))
        .expect("mount unit");
    assert!(unit.contains("What=/dev/md/vault-data0\nWhere=/srv/tiervault/data0\nType=xfs"));
    assert!(host
        .file(Path::new(
            "/etc/systemd/system/local-fs.target.wants/srv-tiervault-data0.mount"
        ))
        .is_some());
    assert!(first.changed());

    let ran = host.log().len();
    let second = run(&host, &[], false).expect("second run");
    assert!(!second.changed(), "second run did {:#?}", second.ops);
    assert_eq!(host.log().len(), ran, "the second run ran commands");
    assert!(second.unchanged.len() >= 7, "{:#?}", second.unchanged);
}

#[test]
fn without_xfs_the_arrays_get_ext4_with_matching_stripes() {
    let host = machine(false);
    run(&host, &[], false).expect("provisioning");
    assert!(host.log().iter().any(|l| l
        == "mkfs.ext4 -q -F -L vault-data0 -E stride=128,stripe_width=256 /dev/md/vault-data0"));
}

#[test]
fn a_disk_with_data_is_refused_unless_named_and_nothing_runs() {
    let host = FakeHost::new(true);
    for i in 0..5 {
        host.insert_disk(
            &format!("nvme{i}n1"),
            &format!("NV{i}"),
            SIZE,
            DiskUsage::Blank,
        );
    }
    for i in 0..7u8 {
        let usage = if i == 2 {
            DiskUsage::Data {
                found: vec!["ext4 file system at offset 1080".into()],
            }
        } else {
            DiskUsage::Blank
        };
        host.insert_disk(
            &format!("vd{}", (b'b' + i) as char),
            &format!("VD{i}"),
            SIZE,
            usage,
        );
    }
    let err = run(&host, &[], false).expect_err("must refuse");
    let text = err.to_string();
    assert!(
        text.contains("VD2 (/dev/vdd): carries ext4 file system at offset 1080")
            && text.contains("--wipe VD2"),
        "{text}"
    );
    assert!(host.log().is_empty(), "ran {:?}", host.log());

    // A dry run with consent shows the wipe first and touches nothing.
    let dry = run(&host, &["VD2"], true).expect("dry run");
    assert!(host.log().is_empty());
    let lines: Vec<String> = dry.ops.iter().map(|o| o.to_string()).collect();
    let wipe = lines
        .iter()
        .position(|l| l == "wipefs --all --force /dev/vdd")
        .expect("wipe listed");
    let create = lines
        .iter()
        .position(|l| l.starts_with("mdadm --create /dev/md/vault-data0"))
        .expect("create listed");
    assert!(wipe < create);
    assert!(
        lines.iter().any(|l| l.starts_with("mkfs.xfs")),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("write /etc/mdadm/mdadm.conf")));

    run(&host, &["VD2"], false).expect("with --wipe VD2");
    let log = host.log();
    let wiped = log
        .iter()
        .position(|l| l == "wipefs --all --force /dev/vdd");
    let created = log
        .iter()
        .position(|l| l.starts_with("mdadm --create /dev/md/vault-data0"));
    assert!(wiped.is_some() && wiped < created, "{log:#?}");
}

#[test]
fn busy_disks_and_unknown_serials_are_refused_even_with_wipe() {
    let host = machine(true);
    host.set_busy("VD0", "mounted at /mnt/usb (vdb1)");
    let err = run(&host, &["VD0", "NOPE"], false).expect_err("must refuse");
    let text = err.to_string();
    assert!(
        text.contains("VD0 (/dev/vdb): in use (mounted at /mnt/usb (vdb1))"),
        "{text}"
    );
    assert!(
        text.contains("--wipe NOPE: no disk of the plan has this serial"),
        "{text}"
    );
    assert!(host.log().is_empty());
}

#[test]
fn stopped_arrays_are_assembled_not_recreated() {
    let host = machine(true);
    run(&host, &[], false).expect("first");
    host.stop_all();
    let before = host.log().len();
    let report = run(&host, &[], false).expect("after stop");
    let ran = &host.log()[before..];
    assert_eq!(
        ran.iter()
            .filter(|l| l.starts_with("mdadm --assemble"))
            .count(),
        3,
        "{ran:#?}"
    );
    assert!(!ran
        .iter()
        .any(|l| l.starts_with("mdadm --create") || l.starts_with("mkfs")));
    assert_eq!(ran.iter().filter(|l| l.starts_with("mount ")).count(), 3);
    assert!(report.changed());
}

#[test]
fn a_failed_step_stops_the_run_and_a_rerun_finishes_the_job() {
    let host = machine(true);
    host.fail_next("mkfs.xfs -q -f -L vault-data0");
    let err = run(&host, &[], false).expect_err("injected fault");
    assert!(
        err.to_string().contains("mkfs.xfs -q -f -L vault-data0"),
        "{err}"
    );
    run(&host, &[], false).expect("rerun");
    let log = host.log();
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("mdadm --create"))
            .count(),
        3
    );
    assert!(log
        .iter()
        .any(|l| l.contains("mount -t xfs -o noatime /dev/md/vault-data1")));
    assert!(!run(&host, &[], false).expect("third").changed());
}

#[test]
fn bring_up_assembles_and_mounts_but_never_creates() {
    let host = machine(true);
    let mut seen = Vec::new();
    let empty = tiervault_pools::provision::bring_up(&host, &layout(), &targets(), &mut |op| {
        seen.push(op.to_string())
    })
    .expect("bring-up on blank disks");
    assert!(seen.is_empty(), "{seen:#?}");
    assert!(empty
        .unchanged
        .iter()
        .any(|l| l.contains("not provisioned")));
    run(&host, &[], false).expect("provision");
    host.stop_all();
    let before = host.log().len();
    tiervault_pools::provision::bring_up(&host, &layout(), &targets(), &mut |_| {})
        .expect("bring-up");
    let ran = &host.log()[before..];
    assert_eq!(
        ran.iter()
            .filter(|l| l.starts_with("mdadm --assemble"))
            .count(),
        3
    );
    assert_eq!(ran.iter().filter(|l| l.starts_with("mount ")).count(), 3);
    assert!(!ran
        .iter()
        .any(|l| l.starts_with("mkfs") || l.starts_with("mdadm --create")));
}
