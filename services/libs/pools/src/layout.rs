//! What the pool should look like, derived from the provisioning plan: md arrays with names
//! that say what they are, their members and hot spares by serial, the file system each one
//! carries and where it is mounted. Pure: nothing here looks at a disk.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tiervault_model::{Plan, RaidLevel, Role};

/// mdadm's default chunk, stated so the file system's stripe unit matches it.
pub const CHUNK_KIB: u32 = 512;
/// Where the arrays are mounted unless the config says otherwise.
pub const DEFAULT_POOL_ROOT: &str = "/srv/tiervault";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub arrays: Vec<ArraySpec>,
}

/// One md array as it must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArraySpec {
    /// `vault-ddb` (the OS/dedup-DB array), `vault-data0`, `vault-data1`, ...: the md name
    /// (`mdadm --name`), the `/dev/md/` link and the file system label.
    pub name: String,
    pub role: Role,
    #[serde(serialize_with = "level_name")]
    pub level: RaidLevel,
    /// Serials of the active members, in slot order.
    pub members: Vec<String>,
    /// Serials of the hot spares created with the array.
    pub spares: Vec<String>,
    /// Arrays that may borrow this array's spares (one `spare-group` in mdadm.conf).
    pub spare_group: String,
    pub chunk_kib: u32,
    pub mount: PathBuf,
}

fn level_name<S: serde::Serializer>(l: &RaidLevel, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(l.name())
}

impl ArraySpec {
    /// The md device path mdadm creates for it (and udev keeps).
    pub fn md_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/md/{}", self.name))
    }

    /// Members that hold data (the file system's stripe width in chunks).
    pub fn data_members(&self) -> u32 {
        self.level.data_members(self.members.len() as u32)
    }

    /// How many members may be lost before the array fails (any choice of them for
    /// RAID5/6; for RAID10 the best case, one per mirror pair).
    pub fn redundancy(&self) -> u32 {
        let n = self.members.len() as u32;
        match self.level {
            RaidLevel::Raid1 => n.saturating_sub(1),
            RaidLevel::Raid5 => 1,
            RaidLevel::Raid6 => 2,
            RaidLevel::Raid10 => n / 2,
        }
    }

    pub fn all_serials(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .chain(self.spares.iter())
            .map(String::as_str)
    }
}

/// The array name for a plan array (`os0` → `vault-ddb`, `data1` → `vault-data1`).
pub fn array_name(plan_name: &str, role: Role, os_arrays: usize) -> String {
    match role {
        Role::Os if os_arrays <= 1 => "vault-ddb".to_owned(),
        Role::Os => format!("vault-ddb{}", plan_name.trim_start_matches("os")),
        Role::Data => format!("vault-{plan_name}"),
    }
}

/// The mount point of an array under `root`: `vault-ddb` holds the vault itself (config,
/// keys, index, snapshots), `vault-dataN` one of its data directories.
pub fn mount_point(root: &Path, name: &str) -> PathBuf {
    match name.strip_prefix("vault-") {
        Some("ddb") => root.join("vault"),
        Some(rest) => root.join(rest),
        None => root.join(name),
    }
}

impl Layout {
    /// The layout of `plan` with mounts under `root`. A spare serving several arrays is
    /// created in the first and lent to the others through its spare group.
    pub fn from_plan(plan: &Plan, root: &Path) -> Layout {
        let os_arrays = plan.arrays.iter().filter(|a| a.role == Role::Os).count();
        let mut arrays: Vec<ArraySpec> = plan
            .arrays
            .iter()
            .map(|a| {
                let name = array_name(&a.name, a.role, os_arrays);
                ArraySpec {
                    mount: mount_point(root, &name),
                    name,
                    role: a.role,
                    level: a.level,
                    members: a.members.iter().map(|d| d.serial.clone()).collect(),
                    spares: Vec::new(),
                    spare_group: format!("vault-{}", a.role.name()),
                    chunk_kib: CHUNK_KIB,
                }
            })
            .collect();
        for spare in &plan.spares {
            let home = spare
                .arrays
                .iter()
                .find_map(|plan_name| {
                    plan.arrays
                        .iter()
                        .position(|a| &a.name == plan_name)
                        .filter(|&i| i < arrays.len())
                })
                .or_else(|| arrays.iter().position(|a| a.role == spare.role));
            if let Some(i) = home {
                arrays[i].spares.push(spare.disk.serial.clone());
            }
        }
        Layout { arrays }
    }

    pub fn array(&self, name: &str) -> Option<&ArraySpec> {
        self.arrays.iter().find(|a| a.name == name)
    }

    /// The array a serial belongs to (as member or spare).
    pub fn array_of(&self, serial: &str) -> Option<&ArraySpec> {
        self.arrays
            .iter()
            .find(|a| a.all_serials().any(|s| s == serial))
    }

    /// Data directories of the vault, in array order.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.arrays
            .iter()
            .filter(|a| a.role == Role::Data)
            .map(|a| a.mount.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiervault_model::{ArrayPlan, DiskRef, SparePlan};

    fn disk(serial: &str) -> DiskRef {
        DiskRef {
            serial: serial.into(),
            device: serial.to_lowercase(),
            size_bytes: 1 << 30,
            slot: None,
        }
    }

    fn plan() -> Plan {
        Plan {
            tier: "tier-test".into(),
            usable_bytes: 0,
            usable_tib: 0,
            index_memory_bytes: 0,
            dedup_cache_bytes: 0,
            arrays: vec![
                ArrayPlan {
                    name: "os0".into(),
                    role: Role::Os,
                    level: RaidLevel::Raid10,
                    members: ["O0", "O1", "O2", "O3"].map(disk).to_vec(),
                },
                ArrayPlan {
                    name: "data0".into(),
                    role: Role::Data,
                    level: RaidLevel::Raid5,
                    members: ["D0", "D1", "D2"].map(disk).to_vec(),
                },
                ArrayPlan {
                    name: "data1".into(),
                    role: Role::Data,
                    level: RaidLevel::Raid6,
                    members: ["D3", "D4", "D5", "D6"].map(disk).to_vec(),
                },
            ],
            spares: vec![
                SparePlan {
                    role: Role::Os,
                    arrays: vec!["os0".into()],
                    disk: disk("O4"),
                },
                SparePlan {
                    role: Role::Data,
                    arrays: vec!["data0".into(), "data1".into()],
                    disk: disk("D7"),
                },
            ],
            unused: vec![],
        }
    }

    #[test]
    fn names_mounts_and_spares_follow_the_plan() {
        let l = Layout::from_plan(&plan(), Path::new("/srv/tiervault"));
        let names: Vec<_> = l.arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["vault-ddb", "vault-data0", "vault-data1"]);
        assert_eq!(l.arrays[0].mount, Path::new("/srv/tiervault/vault"));
        assert_eq!(l.arrays[2].mount, Path::new("/srv/tiervault/data1"));
        assert_eq!(l.arrays[0].spares, ["O4"]);
        // The shared data spare lives in the first array it serves.
        assert_eq!(l.arrays[1].spares, ["D7"]);
        assert!(l.arrays[2].spares.is_empty());
        assert_eq!(l.arrays[1].spare_group, l.arrays[2].spare_group);
        assert_eq!(
            l.array_of("D5").map(|a| a.name.as_str()),
            Some("vault-data1")
        );
        assert_eq!(
            l.data_dirs(),
            [
                PathBuf::from("/srv/tiervault/data0"),
                PathBuf::from("/srv/tiervault/data1")
            ]
        );
    }

    #[test]
    fn stripe_geometry_and_redundancy() {
        let l = Layout::from_plan(&plan(), Path::new("/p"));
        let (ddb, d0, d1) = (&l.arrays[0], &l.arrays[1], &l.arrays[2]);
        assert_eq!((ddb.data_members(), ddb.redundancy()), (2, 2));
        assert_eq!((d0.data_members(), d0.redundancy()), (2, 1));
        assert_eq!((d1.data_members(), d1.redundancy()), (2, 2));
        assert_eq!(d0.md_path(), Path::new("/dev/md/vault-data0"));
    }

    #[test]
    fn several_os_arrays_get_numbered_names() {
        assert_eq!(array_name("os0", Role::Os, 1), "vault-ddb");
        assert_eq!(array_name("os1", Role::Os, 2), "vault-ddb1");
        assert_eq!(
            mount_point(Path::new("/r"), "vault-ddb1"),
            Path::new("/r/ddb1")
        );
    }
}
