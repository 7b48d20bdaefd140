//! Turning one profile file into a [`Profile`], or a [`ProfileError`] naming the field.
//!
//! Checks here need only the one file; the cross-file ones (compositions name known
//! single-server tiers) are in [`crate::profiles`].

use std::path::Path;

use crate::capacity::{self, INDEX_ENTRY_BYTES, INDEX_RAM_SHARE_DIVISOR};
use crate::error::ProfileError;
use crate::profile::{DiskGroup, Profile, ProfileFile, ProfileKind, Role, Server, PROFILE_SCHEMA};

/// Parses and checks a profile's text. `file` is used in messages and for the name check
/// (`tier-5.toml` must say `name = "tier-5"`).
pub fn parse_profile(file: &Path, text: &str) -> Result<Profile, ProfileError> {
    let raw: ProfileFile = toml::from_str(text).map_err(|e| parse_error(file, text, &e))?;
    check(file, raw)
}

/// A TOML error as one line with its position.
pub(crate) fn parse_error(file: &Path, text: &str, e: &toml::de::Error) -> ProfileError {
    let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
    ProfileError::Parse {
        file: file.to_owned(),
        line,
        column,
        message: e.message().replace('\n', " "),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn check(file: &Path, raw: ProfileFile) -> Result<Profile, ProfileError> {
    let f = || file.to_owned();
    if raw.schema != PROFILE_SCHEMA {
        return Err(ProfileError::Schema {
            file: f(),
            found: raw.schema,
            supported: PROFILE_SCHEMA,
        });
    }
    if let Some(stem) = file.file_stem().and_then(|s| s.to_str()) {
        if stem != raw.name {
            return Err(ProfileError::NameMismatch {
                file: f(),
                name: raw.name,
                expected: stem.to_owned(),
            });
        }
    }
    let kind = match raw.composed_of {
        Some(parts) => {
            let server_keys: [(&'static str, bool); 7] = [
                (
                    "available-capacity-tib",
                    raw.available_capacity_tib.is_some(),
                ),
                ("chassis", raw.chassis.is_some()),
                ("cpu", raw.cpu.is_some()),
                ("memory", raw.memory.is_some()),
                ("network", raw.network.is_some()),
                ("power", raw.power.is_some()),
                ("disk-group", !raw.disk_groups.is_empty()),
            ];
            if let Some((field, _)) = server_keys.iter().find(|(_, present)| *present) {
                return Err(ProfileError::NotInComposition { file: f(), field });
            }
            if parts.len() < 2 {
                return Err(ProfileError::Invalid {
                    file: f(),
                    field: "composed-of".into(),
                    reason: "a composition names at least two servers".into(),
                });
            }
            ProfileKind::Composition(parts)
        }
        None => {
            const WHY: &str =
                "a single-server tier needs it; a tier of several servers has composed-of instead";
            let missing = |field| ProfileError::Missing {
                file: f(),
                field,
                why: WHY,
            };
            let server = Server {
                available_capacity_tib: raw
                    .available_capacity_tib
                    .ok_or_else(|| missing("available-capacity-tib"))?,
                chassis: raw.chassis.ok_or_else(|| missing("chassis"))?,
                cpu: raw.cpu.ok_or_else(|| missing("cpu"))?,
                memory: raw.memory.ok_or_else(|| missing("memory"))?,
                network: raw.network.ok_or_else(|| missing("network"))?,
                power: raw.power.ok_or_else(|| missing("power"))?,
                disk_groups: raw.disk_groups,
            };
            check_server(file, &server)?;
            ProfileKind::Server(Box::new(server))
        }
    };
    Ok(Profile {
        name: raw.name,
        marketing_capacity_tb: raw.marketing_capacity_tb,
        reading: raw.reading,
        file: f(),
        kind,
    })
}

fn check_server(file: &Path, s: &Server) -> Result<(), ProfileError> {
    let invalid = |field: String, reason: String| ProfileError::Invalid {
        file: file.to_owned(),
        field,
        reason,
    };
    let roles = |r: Role| s.disk_groups.iter().filter(|g| g.role == r).count();
    if roles(Role::Os) != 1 || roles(Role::Data) == 0 {
        return Err(invalid(
            "disk-group".into(),
            format!(
                "a server needs exactly one role = \"os\" group and at least one role = \"data\" group (found {} and {})",
                roles(Role::Os),
                roles(Role::Data)
            ),
        ));
    }
    if s.cpu.sockets == 0 || s.cpu.cores_per_socket == 0 {
        return Err(invalid(
            "cpu".into(),
            "sockets and cores-per-socket must be at least 1".into(),
        ));
    }
    for (i, g) in s.disk_groups.iter().enumerate() {
        check_group(file, &format!("disk-group[{i}]"), g)?;
    }
    let disks: u64 = s.disk_groups.iter().map(|g| u64::from(g.count)).sum();
    if disks > u64::from(s.chassis.bays) {
        return Err(invalid(
            "chassis.bays".into(),
            format!(
                "the disk groups hold {disks} disks but the chassis has {} bays",
                s.chassis.bays
            ),
        ));
    }
    let usable = capacity::usable_bytes(s);
    let computed = capacity::usable_tib(s);
    if computed != s.available_capacity_tib {
        return Err(ProfileError::Capacity {
            file: file.to_owned(),
            computed,
            stated: s.available_capacity_tib,
        });
    }
    let needed = capacity::index_bytes_needed(usable);
    let budget = s.memory.index_budget;
    if budget < needed {
        return Err(ProfileError::IndexBudgetTooSmall {
            file: file.to_owned(),
            budget: budget.to_string(),
            needed: needed.approx(true),
            entries: capacity::index_entries(usable),
            entry_bytes: INDEX_ENTRY_BYTES,
        });
    }
    if budget.0 > s.memory.ram.0 / INDEX_RAM_SHARE_DIVISOR {
        return Err(ProfileError::IndexBudgetTooLarge {
            file: file.to_owned(),
            budget: budget.to_string(),
            ram: s.memory.ram.to_string(),
        });
    }
    Ok(())
}

fn check_group(file: &Path, field: &str, g: &DiskGroup) -> Result<(), ProfileError> {
    let file = || file.to_owned();
    if g.spares > g.count {
        return Err(ProfileError::SparesExceedDisks {
            file: file(),
            field: format!("{field}.spares"),
            spares: g.spares,
            disks: g.count,
        });
    }
    if g.arrays.is_empty() {
        return Err(ProfileError::Invalid {
            file: file(),
            field: format!("{field}.arrays"),
            reason: "a disk group needs at least one array".into(),
        });
    }
    if g.size.0 == 0 {
        return Err(ProfileError::Invalid {
            file: file(),
            field: format!("{field}.size"),
            reason: "must be more than 0 bytes".into(),
        });
    }
    for (j, a) in g.arrays.iter().enumerate() {
        let field = format!("{field}.arrays[{j}]");
        if a.members < a.level.min_members() {
            return Err(ProfileError::ArrayTooSmall {
                file: file(),
                field: format!("{field}.members"),
                level: a.level.name(),
                members: a.members,
                min: a.level.min_members(),
            });
        }
        if a.level == crate::profile::RaidLevel::Raid10 && a.members % 2 != 0 {
            return Err(ProfileError::Invalid {
                file: file(),
                field: format!("{field}.members"),
                reason: format!(
                    "a raid10 (mirrored pairs) needs an even number of disks, got {}",
                    a.members
                ),
            });
        }
        if a.count == 0 {
            return Err(ProfileError::Invalid {
                file: file(),
                field: format!("{field}.count"),
                reason: "must be at least 1".into(),
            });
        }
    }
    let in_arrays = g.array_disks();
    if in_arrays + u64::from(g.spares) != u64::from(g.count) {
        return Err(ProfileError::DiskCount {
            file: file(),
            field: format!("{field}.count"),
            in_arrays,
            spares: g.spares,
            count: g.count,
        });
    }
    Ok(())
}
