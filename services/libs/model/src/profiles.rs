//! A directory of profiles (`hardware-profiles/`): every `tier-*.toml` in it, checked alone
//! and together (a composition names single-server tiers of the same directory).

use std::path::Path;

use crate::capacity;
use crate::error::ProfileError;
use crate::profile::{Profile, ProfileKind};
use crate::validate::parse_profile;

/// The profiles of one directory, ordered by capacity (smallest first).
#[derive(Debug, Clone)]
pub struct Profiles {
    list: Vec<Profile>,
}

impl Profiles {
    /// Reads and checks every `tier-*.toml` in `dir` (other files are ignored).
    pub fn load_dir(dir: &Path) -> Result<Profiles, ProfileError> {
        let read_err = |source| ProfileError::Read {
            file: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("tier-") && name.ends_with(".toml") {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(ProfileError::Empty {
                dir: dir.to_owned(),
            });
        }
        let mut list = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| ProfileError::Read {
                file: file.clone(),
                source,
            })?;
            list.push(parse_profile(&file, &text)?);
        }
        Profiles::new(list)
    }

    /// Checks the cross-file rules over already parsed profiles.
    pub fn new(mut list: Vec<Profile>) -> Result<Profiles, ProfileError> {
        list.sort_by_key(|p| (p.marketing_capacity_tb, p.name.clone()));
        let known = list
            .iter()
            .filter(|p| p.server().is_some())
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        for p in &list {
            let ProfileKind::Composition(parts) = &p.kind else {
                continue;
            };
            for (i, name) in parts.iter().enumerate() {
                let field = format!("composed-of[{i}]");
                match list.iter().find(|q| &q.name == name) {
                    None => {
                        return Err(ProfileError::UnknownTier {
                            file: p.file.clone(),
                            field,
                            name: name.clone(),
                            known,
                        })
                    }
                    Some(q) if q.server().is_none() => {
                        return Err(ProfileError::NestedComposition {
                            file: p.file.clone(),
                            field,
                            name: name.clone(),
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(Profiles { list })
    }

    /// All profiles, smallest capacity first.
    pub fn all(&self) -> &[Profile] {
        &self.list
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.list.iter().find(|p| p.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|p| p.name.as_str()).collect()
    }

    /// The servers a profile stands for: itself, or the parts of a composition.
    pub fn servers_of<'a>(&'a self, p: &'a Profile) -> Vec<&'a Profile> {
        match &p.kind {
            ProfileKind::Server(_) => vec![p],
            ProfileKind::Composition(parts) => parts.iter().filter_map(|n| self.get(n)).collect(),
        }
    }

    /// Usable bytes of a tier (summed over a composition's servers).
    pub fn usable_bytes(&self, p: &Profile) -> u64 {
        self.servers_of(p)
            .iter()
            .filter_map(|q| q.server())
            .map(capacity::usable_bytes)
            .sum()
    }
}
