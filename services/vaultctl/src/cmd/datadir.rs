//! `vaultctl data-dir`: the vault's data directories (one per data array on an appliance):
//! which are usable, how full they are, and adding one.

use anyhow::{Context, Result};
use serde_json::json;
use tiervault_store::{io, Repo};

use crate::cli::{DataDirCmd, Global};
use crate::open::{open_repo, vault_dir};
use crate::output::{print_json, size};
use crate::Outcome;

pub fn run(g: &Global, cmd: &DataDirCmd) -> Result<Outcome> {
    match cmd {
        DataDirCmd::List => list(g),
        DataDirCmd::Add { path } => {
            let dir = vault_dir(g);
            let n = Repo::add_data_dir(&dir, path, io::default_io()).with_context(|| {
                format!(
                    "adding data directory {} to {}",
                    path.display(),
                    dir.display()
                )
            })?;
            if g.json {
                print_json(&json!({
                    "vault": dir.display().to_string(),
                    "dir": n,
                    "path": path.display().to_string(),
                }));
            } else if !g.quiet {
                outln!("added data directory {n}: {}", path.display());
            }
            Ok(Outcome::Ok)
        }
        DataDirCmd::Mark { dir: n } => {
            let dir = vault_dir(g);
            let path = Repo::mark_data_dir(&dir, *n, io::default_io())
                .with_context(|| format!("marking data directory {n} of {}", dir.display()))?;
            if g.json {
                print_json(&json!({
                    "vault": dir.display().to_string(),
                    "dir": n,
                    "path": path.display().to_string(),
                }));
            } else if !g.quiet {
                outln!(
                    "data directory {n} ({}) is usable again; run `vaultctl verify \
                     --heal-from ...` to restore the packs it held",
                    path.display()
                );
            }
            Ok(Outcome::Ok)
        }
    }
}

fn list(g: &Global) -> Result<Outcome> {
    let repo = open_repo(g)?;
    let dirs = repo.data_dir_report()?;
    if g.json {
        print_json(&json!(dirs
            .iter()
            .map(|d| json!({
                "dir": d.dir,
                "path": d.path.display().to_string(),
                "configured": d.configured,
                "available": d.problem.is_none(),
                "problem": d.problem.as_ref().map(ToString::to_string),
                "free_bytes": d.space.map(|s| s.free),
                "total_bytes": d.space.map(|s| s.total),
                "packs": d.packs,
                "pack_bytes": d.pack_bytes,
            }))
            .collect::<Vec<_>>()));
        return Ok(Outcome::Ok);
    }
    for d in &dirs {
        let room = d.space.map_or_else(
            || "size unknown".to_string(),
            |s| format!("{} free of {}", size(s.free), size(s.total)),
        );
        let state = match &d.problem {
            None => "available".to_string(),
            Some(p) => format!("UNAVAILABLE: {p}"),
        };
        outln!(
            "{:>3}  {}  {state}; {room}; {} pack(s), {}",
            d.dir,
            d.path.display(),
            d.packs,
            size(d.pack_bytes)
        );
    }
    Ok(Outcome::Ok)
}
