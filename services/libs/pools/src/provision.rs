//! Building the pool: from the layout and what the machine has now, the operations still
//! missing — wipe (only disks named by serial), create or assemble each array, make its file
//! system, mount it, and record it in mdadm.conf and a mount unit. Run again on a built
//! pool, it finds nothing to do.
//!
//! Arrays come first: a created array's UUID (which mdadm.conf records) exists only once it
//! is created, so [`provision`] plans the arrays, runs that, observes again and plans the rest.
//! `--dry-run` plans the rest against a prediction of the first round.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::host::{DiskUsage, Host, HostError, MdArray, Observed};
use crate::layout::{ArraySpec, Layout};
use crate::ops::{FsKind, Op};

/// Where the files provisioning writes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// `/etc/mdadm/mdadm.conf`.
    pub mdadm_conf: PathBuf,
    /// `/etc/systemd/system`; `None` writes no mount units (a system without systemd).
    pub units_dir: Option<PathBuf>,
}

/// What the operator allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consent {
    /// Serials of disks that may be wiped although they carry data (`--wipe SERIAL`).
    pub wipe: BTreeSet<String>,
}

/// Why provisioning will not go ahead: every reason at once, each naming the disk.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{}", refusals.join("\n"))]
    Refused { refusals: Vec<String> },
    #[error(transparent)]
    Host(#[from] HostError),
}

/// The outcome of one planning round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Steps {
    pub ops: Vec<Op>,
    /// What is already as it should be, one line per array or file.
    pub unchanged: Vec<String>,
}

impl Steps {
    fn extend(&mut self, other: Steps) {
        self.ops.extend(other.ops);
        self.unchanged.extend(other.unchanged);
    }
}

/// Placeholder for the UUID of an array a dry run would create.
pub const NEW_UUID: &str = "(assigned by mdadm --create)";

fn dev(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/{name}"))
}

/// Round one: wipe, create or assemble every array.
pub fn plan_arrays(
    layout: &Layout,
    obs: &Observed,
    consent: &Consent,
) -> Result<Steps, ProvisionError> {
    let mut refusals = Vec::new();
    let known: BTreeSet<&str> = layout.arrays.iter().flat_map(|a| a.all_serials()).collect();
    for s in &consent.wipe {
        if !known.contains(s.as_str()) {
            refusals.push(format!(
                "--wipe {s}: no disk of the plan has this serial (the plan's disks: {})",
                known.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let mut steps = Steps::default();
    for spec in &layout.arrays {
        if let Some(a) = obs.array_by_name(&spec.name) {
            steps.unchanged.push(format!(
                "{}: assembled as {} ({})",
                spec.name, a.dev, a.uuid
            ));
            continue;
        }
        if let Some(uuid) = carried_uuid(spec, obs) {
            let devs = carriers(obs, &uuid);
            steps.ops.push(Op::Assemble {
                name: spec.name.clone(),
                uuid,
                devs,
            });
            continue;
        }
        let mut members = Vec::new();
        let mut spares = Vec::new();
        for (i, serial) in spec.all_serials().enumerate() {
            let Some(disk) = obs.disk_by_serial(serial) else {
                refusals.push(format!(
                    "{serial}: not found (array {} needs it; is the disk inserted?)",
                    spec.name
                ));
                continue;
            };
            let label = format!("{serial} (/dev/{})", disk.name);
            if !disk.busy.is_empty() {
                refusals.push(format!(
                    "{label}: in use ({}); never touched, even with --wipe",
                    disk.busy.join(", ")
                ));
                continue;
            }
            let holders = obs.holders_of(&disk.name);
            if let Some(h) = holders.first() {
                refusals.push(format!(
                    "{label}: member of the running array {} ({}); never touched",
                    h.dev, h.name
                ));
                continue;
            }
            let found = match &disk.usage {
                DiskUsage::Blank => None,
                DiskUsage::MdMember {
                    array_name,
                    array_uuid,
                } => Some(format!(
                    "an md superblock of array {array_name} ({array_uuid})"
                )),
                DiskUsage::Data { found } => Some(found.join(", ")),
            };
            if let Some(found) = found {
                if consent.wipe.contains(serial) {
                    steps.ops.push(Op::Wipe {
                        serial: serial.to_owned(),
                        dev: dev(&disk.name),
                    });
                } else {
                    refusals.push(format!(
                        "{label}: carries {found}; not touched unless named with --wipe {serial}"
                    ));
                    continue;
                }
            }
            if i < spec.members.len() {
                members.push(dev(&disk.name));
            } else {
                spares.push(dev(&disk.name));
            }
        }
        steps.ops.push(Op::Create {
            name: spec.name.clone(),
            level: spec.level.name().to_owned(),
            chunk_kib: spec.chunk_kib,
            members,
            spares,
        });
    }
    if refusals.is_empty() {
        Ok(steps)
    } else {
        Err(ProvisionError::Refused { refusals })
    }
}

/// The disks that carry a superblock of the array with this UUID.
fn carriers(obs: &Observed, uuid: &str) -> Vec<PathBuf> {
    obs.disks
        .iter()
        .filter(
            |d| matches!(&d.usage, DiskUsage::MdMember { array_uuid, .. } if array_uuid == uuid),
        )
        .map(|d| dev(&d.name))
        .collect()
}

/// The UUID of an array named like `spec` whose superblocks some disks of the plan carry
/// (an array that exists but is not assembled: after a reboot, or stopped).
fn carried_uuid(spec: &ArraySpec, obs: &Observed) -> Option<String> {
    spec.all_serials()
        .filter_map(|s| obs.disk_by_serial(s))
        .find_map(|d| match &d.usage {
            DiskUsage::MdMember {
                array_name,
                array_uuid,
            } if *array_name == spec.name => Some(array_uuid.clone()),
            _ => None,
        })
}

/// Round two: file systems, mounts, mdadm.conf and mount units, for arrays that exist.
/// `created`: the arrays round one just created; whatever signature is found on them is a
/// leftover of the disks' past, and they get a file system whatever it is.
pub fn plan_rest(
    layout: &Layout,
    obs: &Observed,
    targets: &Targets,
    created: &[String],
    current_conf: Option<&str>,
    current_units: &dyn Fn(&Path) -> Option<String>,
) -> Result<Steps, ProvisionError> {
    let mut steps = Steps::default();
    let mut refusals = Vec::new();
    let kind = if obs.have_xfs {
        FsKind::Xfs
    } else {
        FsKind::Ext4
    };
    for spec in &layout.arrays {
        let Some(array) = obs.array_by_name(&spec.name) else {
            refusals.push(format!(
                "{}: array missing after it was assembled",
                spec.name
            ));
            continue;
        };
        let md = spec.md_path();
        let fresh = created.contains(&spec.name);
        let fs = if fresh { None } else { array.fs.as_ref() };
        let fs_kind = match fs {
            None => {
                steps.ops.push(Op::Mkfs {
                    dev: md.clone(),
                    kind,
                    label: spec.name.clone(),
                    chunk_kib: spec.chunk_kib,
                    data_members: spec.data_members(),
                    fresh,
                });
                kind
            }
            Some(fs) if fs.kind == "xfs" => FsKind::Xfs,
            Some(fs) if fs.kind == "ext4" => FsKind::Ext4,
            Some(fs) => {
                refusals.push(format!(
                    "{} ({}): carries a {} file system, not xfs or ext4; not touched",
                    spec.name, array.dev, fs.kind
                ));
                continue;
            }
        };
        match &array.mount {
            Some(m) if m.at == spec.mount => {
                steps
                    .unchanged
                    .push(format!("{}: mounted at {}", spec.name, m.at.display()))
            }
            Some(m) => refusals.push(format!(
                "{} ({}): mounted at {}, the plan says {}; unmount it first",
                spec.name,
                array.dev,
                m.at.display(),
                spec.mount.display()
            )),
            None => steps.ops.push(Op::Mount {
                dev: md.clone(),
                at: spec.mount.clone(),
                kind: fs_kind,
            }),
        }
        if let Some(units) = &targets.units_dir {
            steps.extend(mount_unit_steps(units, spec, fs_kind, current_units));
        }
    }
    let conf = mdadm_conf(current_conf.unwrap_or(""), layout, obs);
    if layout.arrays.is_empty() {
        // Nothing assembled to record (bring-up on disks never provisioned).
    } else if current_conf == Some(conf.as_str()) {
        steps.unchanged.push(format!(
            "{}: lists every array",
            targets.mdadm_conf.display()
        ));
    } else {
        steps.ops.push(Op::WriteFile {
            path: targets.mdadm_conf.clone(),
            text: conf,
            what: "the arrays by UUID, so they assemble at boot".into(),
        });
    }
    if refusals.is_empty() {
        Ok(steps)
    } else {
        Err(ProvisionError::Refused { refusals })
    }
}

fn mount_unit_steps(
    units: &Path,
    spec: &ArraySpec,
    kind: FsKind,
    current: &dyn Fn(&Path) -> Option<String>,
) -> Steps {
    let mut steps = Steps::default();
    let name = unit_name(&spec.mount);
    let path = units.join(&name);
    let text = mount_unit(spec, kind);
    if current(&path).as_deref() == Some(text.as_str()) {
        steps
            .unchanged
            .push(format!("{}: up to date", path.display()));
    } else {
        steps.ops.push(Op::WriteFile {
            path,
            text,
            what: format!("mount unit of {}", spec.name),
        });
    }
    let link = units.join("local-fs.target.wants").join(&name);
    let target = PathBuf::from("..").join(&name);
    if current(&link).is_none() {
        steps.ops.push(Op::Link { path: link, target });
    }
    steps
}

/// systemd's name for the mount unit of `path` (`/srv/tiervault/data0` →
/// `srv-tiervault-data0.mount`), escaped as `systemd-escape --path` does.
pub fn unit_name(path: &Path) -> String {
    let text = path.to_string_lossy();
    let trimmed = text.trim_matches('/');
    let mut out = String::new();
    for (i, c) in trimmed.chars().enumerate() {
        match c {
            '/' => out.push('-'),
            '.' if i == 0 => out.push_str("\\x2e"),
            c if c.is_ascii_alphanumeric() || c == ':' || c == '_' || c == '.' => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    out + ".mount"
}

fn mount_unit(spec: &ArraySpec, kind: FsKind) -> String {
    format!(
        "# Written by vault-poold from the appliance's plan; rewritten when the plan changes.\n\
         [Unit]\n\
         Description=Tiervault pool array {name}\n\
         Documentation=file:///usr/share/doc/tiervault/ARCHITECTURE.md\n\
         \n\
         [Mount]\n\
         What=/dev/md/{name}\n\
         Where={at}\n\
         Type={kind}\n\
         # nofail: a failed data array must not stop the boot; the other arrays keep serving\n\
         # and vault-poold reports the failure.\n\
         Options=noatime,nofail,x-systemd.device-timeout=90s\n\
         \n\
         [Install]\n\
         WantedBy=local-fs.target\n",
        name = spec.name,
        at = spec.mount.display(),
        kind = kind.name(),
    )
}

const CONF_BEGIN: &str =
    "# BEGIN tiervault pools: written by vault-poold; edits between these lines are replaced";
const CONF_END: &str = "# END tiervault pools";

/// mdadm.conf with the managed block (one ARRAY line per array of the layout, by UUID, with
/// its spare group) replaced; every other line kept as it was.
pub fn mdadm_conf(current: &str, layout: &Layout, obs: &Observed) -> String {
    let mut block = vec![CONF_BEGIN.to_owned()];
    for spec in &layout.arrays {
        // An array that is neither assembled nor about to be created has no UUID to give.
        let Some(uuid) = obs.array_by_name(&spec.name).map(|a| a.uuid.as_str()) else {
            continue;
        };
        block.push(format!(
            "ARRAY /dev/md/{} metadata=1.2 UUID={uuid} spare-group={}",
            spec.name, spec.spare_group
        ));
    }
    block.push(CONF_END.to_owned());
    let mut out = Vec::new();
    let mut inside = false;
    let mut placed = false;
    for line in current.lines() {
        if line == CONF_BEGIN {
            inside = true;
            continue;
        }
        if line == CONF_END && inside {
            inside = false;
            if !placed {
                out.extend(block.iter().cloned());
                placed = true;
            }
            continue;
        }
        if !inside {
            out.push(line.to_owned());
        }
    }
    if !placed {
        out.extend(block);
    }
    out.join("\n") + "\n"
}

/// What the machine will look like after round one, for a dry run's second round.
pub fn predict(obs: &Observed, ops: &[Op]) -> Observed {
    let mut next = obs.clone();
    for op in ops {
        match op {
            Op::Create { name, level, .. } => next.arrays.push(MdArray {
                dev: format!("md/{name}"),
                name: name.clone(),
                uuid: NEW_UUID.to_owned(),
                level: level.clone(),
                array_state: "clean".into(),
                sync_action: "resync".into(),
                ..MdArray::default()
            }),
            Op::Assemble { name, uuid, .. } => next.arrays.push(MdArray {
                dev: format!("md/{name}"),
                name: name.clone(),
                uuid: uuid.clone(),
                array_state: "clean".into(),
                sync_action: "idle".into(),
                // Assembling brings the file system back; round two sees it then.
                fs: None,
                ..MdArray::default()
            }),
            _ => {}
        }
    }
    next
}

/// What a provisioning run did or (dry run) would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub ops: Vec<Op>,
    pub unchanged: Vec<String>,
}

impl Report {
    pub fn changed(&self) -> bool {
        !self.ops.is_empty()
    }
}

/// Builds the pool, or with `dry_run` only says how. `on_op` is called before each
/// operation runs (progress, logging).
pub fn provision(
    host: &dyn Host,
    layout: &Layout,
    consent: &Consent,
    targets: &Targets,
    dry_run: bool,
    on_op: &mut dyn FnMut(&Op),
) -> Result<Report, ProvisionError> {
    let obs = host.observe()?;
    let first = plan_arrays(layout, &obs, consent)?;
    let obs = if dry_run {
        predict(&obs, &first.ops)
    } else {
        for op in &first.ops {
            on_op(op);
            host.run(op)?;
        }
        if first.ops.is_empty() {
            obs
        } else {
            host.observe()?
        }
    };
    let conf = host.read_file(&targets.mdadm_conf)?;
    let read = |p: &Path| host.read_file(p).ok().flatten();
    let created: Vec<String> = first
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Create { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let second = plan_rest(layout, &obs, targets, &created, conf.as_deref(), &read)?;
    if !dry_run {
        for op in &second.ops {
            on_op(op);
            host.run(op)?;
        }
    }
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    report.ops.extend(first.ops);
    report.unchanged.extend(first.unchanged);
    report.ops.extend(second.ops);
    report.unchanged.extend(second.unchanged);
    Ok(report)
}

/// What the service does at start (a reboot, or after the arrays were stopped): assemble the
/// arrays of the layout that exist on the disks, mount them and keep mdadm.conf and the
/// mount units current. It never wipes, creates or formats: an array that does not exist
/// yet, or has no file system, is reported for `vaultctl pool provision`.
pub fn bring_up(
    host: &dyn Host,
    layout: &Layout,
    targets: &Targets,
    on_op: &mut dyn FnMut(&Op),
) -> Result<Report, ProvisionError> {
    let obs = host.observe()?;
    let mut report = Report::default();
    let mut assembled = false;
    for spec in &layout.arrays {
        if obs.array_by_name(&spec.name).is_some() {
            continue;
        }
        match carried_uuid(spec, &obs) {
            Some(uuid) => {
                let devs = carriers(&obs, &uuid);
                let op = Op::Assemble {
                    name: spec.name.clone(),
                    uuid,
                    devs,
                };
                on_op(&op);
                // One array that will not assemble must not keep the others down.
                match host.run(&op) {
                    Ok(()) => assembled = true,
                    Err(e) => report.unchanged.push(format!("{}: {e}", spec.name)),
                }
                report.ops.push(op);
            }
            None => report.unchanged.push(format!(
                "{}: not on any disk (not provisioned: `vaultctl pool provision`)",
                spec.name
            )),
        }
    }
    let obs = if assembled { host.observe()? } else { obs };
    let present = Layout {
        arrays: layout
            .arrays
            .iter()
            .filter(|a| {
                obs.array_by_name(&a.name)
                    .is_some_and(|md| md.fs.is_some() && md.array_state != "inactive")
            })
            .cloned()
            .collect(),
    };
    let conf = host.read_file(&targets.mdadm_conf)?;
    let read = |p: &Path| host.read_file(p).ok().flatten();
    let rest = plan_rest(&present, &obs, targets, &[], conf.as_deref(), &read)?;
    for op in rest.ops {
        on_op(&op);
        if let Err(e) = host.run(&op) {
            report.unchanged.push(format!("{op}: {e}"));
        }
        report.ops.push(op);
    }
    report.unchanged.extend(rest.unchanged);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_escaped_like_systemd_escape() {
        assert_eq!(
            unit_name(Path::new("/srv/tiervault/data0")),
            "srv-tiervault-data0.mount"
        );
        assert_eq!(
            unit_name(Path::new("/srv/tier-vault/x y/")),
            "srv-tier\\x2dvault-x\\x20y.mount"
        );
        assert_eq!(unit_name(Path::new("/")), "-.mount");
    }

    #[test]
    fn mdadm_conf_keeps_foreign_lines_and_replaces_its_block() {
        let layout = Layout { arrays: vec![] };
        let obs = Observed::default();
        let first = mdadm_conf("HOMEHOST <system>\nMAILADDR root\n", &layout, &obs);
        assert!(first.starts_with("HOMEHOST <system>\nMAILADDR root\n# BEGIN"));
        let again = mdadm_conf(&first, &layout, &obs);
        assert_eq!(first, again);
    }
}
