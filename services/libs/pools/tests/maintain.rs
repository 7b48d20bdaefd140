//! The service's own steps against the simulated machine: a failed member is rebuilt onto
//! the spare, a degraded array without a spare borrows its sibling's, an inserted blank disk
//! becomes a spare, and an explicit replacement.

mod common;

use common::{layout, machine, targets, SIZE};
use tiervault_pools::fake::FakeHost;
use tiervault_pools::health::{pool_status, ArrayState, DiskState, PoolStatus};
use tiervault_pools::host::{DiskUsage, Host};
use tiervault_pools::maintain::{automatic, replace, ReplaceError};
use tiervault_pools::provision::{provision, Consent};

fn built() -> FakeHost {
    let host = machine(true);
    provision(
        &host,
        &layout(),
        &Consent::default(),
        &targets(),
        false,
        &mut |_| {},
    )
    .expect("provisioning");
    host.finish_syncs();
    host
}

fn status(host: &FakeHost) -> PoolStatus {
    pool_status(&layout(), &host.observe().expect("observe"))
}

/// Runs the automatic steps until there are none left; returns their command lines.
fn settle(host: &FakeHost) -> Vec<String> {
    let mut ran = Vec::new();
    for _ in 0..10 {
        let obs = host.observe().expect("observe");
        let acts = automatic(&layout(), &obs, &pool_status(&layout(), &obs));
        if acts.is_empty() {
            return ran;
        }
        for a in acts {
            host.run(&a.op).expect("automatic step");
            ran.push(a.op.to_string());
        }
    }
    panic!("automatic steps never settled: {ran:#?}");
}

#[test]
fn a_failed_member_rebuilds_onto_the_spare_and_is_taken_out() {
    let host = built();
    assert!(status(&host)
        .arrays
        .iter()
        .all(|a| a.state == ArrayState::Healthy));
    host.fail_disk("VD1");
    let s = status(&host);
    let a = s.array("vault-data0").expect("data0");
    assert_eq!(a.state, ArrayState::Rebuilding);
    assert_eq!(s.disk("VD1").map(|d| d.state), Some(DiskState::Faulty));
    assert_eq!(s.disk("VD6").map(|d| d.state), Some(DiskState::Rebuilding));
    let ran = settle(&host);
    assert_eq!(ran, ["mdadm /dev/md126 --remove /dev/vdc"]);
    assert_eq!(
        status(&host).disk("VD1").map(|d| d.state),
        Some(DiskState::Removed)
    );
    host.finish_syncs();
    let s = status(&host);
    assert_eq!(
        s.array("vault-data0").map(|a| a.state),
        Some(ArrayState::Healthy)
    );
    assert_eq!(s.disk("VD6").map(|d| d.state), Some(DiskState::Active));
    // Pulled from the whole array, the replaced member is history, not a missing disk.
    host.pull_disk("VD1");
    assert!(
        status(&host).disk("VD1").is_none(),
        "{:?}",
        status(&host).disk("VD1")
    );
}

#[test]
fn a_member_pulled_from_a_degraded_array_is_missing() {
    let host = built();
    host.fail_disk("VD4");
    settle(&host);
    host.pull_disk("VD4");
    let s = status(&host);
    assert_eq!(
        s.array("vault-data1").map(|a| a.state),
        Some(ArrayState::Rebuilding),
        "{s:?}"
    );
    assert_eq!(s.disk("VD4").map(|d| d.state), Some(DiskState::Missing));
}

#[test]
fn a_degraded_array_borrows_its_siblings_spare() {
    let host = built();
    host.fail_disk("VD4");
    assert_eq!(
        status(&host).array("vault-data1").map(|a| a.state),
        Some(ArrayState::Degraded)
    );
    let ran = settle(&host);
    assert!(
        ran.contains(&"mdadm /dev/md126 --remove /dev/vdh".to_owned()),
        "{ran:#?}"
    );
    assert!(
        ran.contains(&"mdadm /dev/md125 --add /dev/vdh".to_owned()),
        "{ran:#?}"
    );
    assert_eq!(
        status(&host).array("vault-data1").map(|a| a.state),
        Some(ArrayState::Rebuilding)
    );
    host.finish_syncs();
    assert_eq!(
        status(&host).array("vault-data1").map(|a| a.state),
        Some(ArrayState::Healthy)
    );
}

#[test]
fn an_inserted_blank_disk_becomes_a_spare_but_a_usb_stick_or_a_used_disk_does_not() {
    let host = built();
    host.insert_disk("vdx", "NEW1", SIZE, DiskUsage::Blank);
    host.insert_disk(
        "vdy",
        "OLDDATA",
        SIZE,
        DiskUsage::Data {
            found: vec!["gpt partition table".into()],
        },
    );
    host.insert_disk("vdz", "SMALL", SIZE / 2, DiskUsage::Blank);
    assert_eq!(
        status(&host).disk("NEW1").map(|d| d.state),
        Some(DiskState::Unused)
    );
    let ran = settle(&host);
    // data1 had no spare of its own: the new disk goes there.
    assert_eq!(ran, ["mdadm /dev/md125 --add /dev/vdx"]);
    assert_eq!(
        status(&host).disk("NEW1").map(|d| d.state),
        Some(DiskState::Spare)
    );
    assert!(status(&host).disk("OLDDATA").is_none());
}

#[test]
fn replace_hot_swaps_an_in_sync_member_and_refuses_disks_with_data() {
    let host = built();
    host.insert_disk(
        "vdy",
        "USED",
        SIZE,
        DiskUsage::Data {
            found: vec!["xfs file system at offset 0".into()],
        },
    );
    let obs = host.observe().expect("observe");
    let s = pool_status(&layout(), &obs);
    let err = replace(&layout(), &obs, &s, "VD3", "USED", false).expect_err("refused");
    assert!(
        matches!(&err, ReplaceError::NewNotBlank { serial, .. } if serial == "USED"),
        "{err}"
    );
    assert!(err.to_string().contains("--wipe USED"), "{err}");
    let ops = replace(&layout(), &obs, &s, "VD3", "USED", true).expect("with wipe");
    let lines: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        lines,
        [
            "wipefs --all --force /dev/vdy",
            "mdadm /dev/md125 --add /dev/vdy",
            "mdadm /dev/md125 --replace /dev/vde --with /dev/vdy",
        ]
    );
    assert!(matches!(
        replace(&layout(), &obs, &s, "NOPE", "USED", true),
        Err(ReplaceError::UnknownOld(_))
    ));
    assert!(matches!(
        replace(&layout(), &obs, &s, "VD3", "GONE", true),
        Err(ReplaceError::MissingNew(_))
    ));
}
