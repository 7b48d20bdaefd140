//! The tier-test pool shared by the crate's tests: a RAID10 OS/dedup-DB array of 4 NVMe
//! disks with a spare, and two RAID5 data arrays of 3 disks sharing one spare.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tiervault_model::{ArrayPlan, DiskRef, Plan, RaidLevel, Role, SparePlan};
use tiervault_pools::fake::FakeHost;
use tiervault_pools::host::DiskUsage;
use tiervault_pools::layout::Layout;
use tiervault_pools::provision::Targets;

pub const SIZE: u64 = 128 << 20;

fn disk(serial: &str, device: &str) -> DiskRef {
    DiskRef {
        serial: serial.into(),
        device: device.into(),
        size_bytes: SIZE,
        slot: None,
    }
}

pub fn plan() -> Plan {
    let os: Vec<DiskRef> = (0..4)
        .map(|i| disk(&format!("NV{i}"), &format!("nvme{i}n1")))
        .collect();
    let d: Vec<DiskRef> = (0..7u8)
        .map(|i| disk(&format!("VD{i}"), &format!("vd{}", (b'b' + i) as char)))
        .collect();
    Plan {
        tier: "tier-test".into(),
        usable_bytes: 0,
        usable_tib: 0,
        index_memory_bytes: 16 << 20,
        dedup_cache_bytes: 0,
        arrays: vec![
            ArrayPlan {
                name: "os0".into(),
                role: Role::Os,
                level: RaidLevel::Raid10,
                members: os,
            },
            ArrayPlan {
                name: "data0".into(),
                role: Role::Data,
                level: RaidLevel::Raid5,
                members: d[0..3].to_vec(),
            },
            ArrayPlan {
                name: "data1".into(),
                role: Role::Data,
                level: RaidLevel::Raid5,
                members: d[3..6].to_vec(),
            },
        ],
        spares: vec![
            SparePlan {
                role: Role::Os,
                arrays: vec!["os0".into()],
                disk: disk("NV4", "nvme4n1"),
            },
            SparePlan {
                role: Role::Data,
                arrays: vec!["data0".into(), "data1".into()],
                disk: d[6].clone(),
            },
        ],
        unused: vec![],
    }
}

/// The machine with every planned disk present and blank.
pub fn machine(have_xfs: bool) -> FakeHost {
    let host = FakeHost::new(have_xfs);
    for i in 0..5 {
        host.insert_disk(
            &format!("nvme{i}n1"),
            &format!("NV{i}"),
            SIZE,
            DiskUsage::Blank,
        );
    }
    for i in 0..7u8 {
        let name = format!("vd{}", (b'b' + i) as char);
        host.insert_disk(&name, &format!("VD{i}"), SIZE, DiskUsage::Blank);
    }
    host
}

pub fn targets() -> Targets {
    Targets {
        mdadm_conf: PathBuf::from("/etc/mdadm/mdadm.conf"),
        units_dir: Some(PathBuf::from("/etc/systemd/system")),
    }
}

pub fn layout() -> Layout {
    Layout::from_plan(&plan(), Path::new("/srv/tiervault"))
}
