//! `vaultctl index`: the chunk index cache's state and its rebuild, and the memory budget
//! every command gives the index.

use anyhow::{Context, Result};
use serde_json::json;
use tiervault_model::SettingSource;

use crate::cli::{Global, IndexCmd};
use crate::open::open_repo;
use crate::output::{peak_rss_bytes, print_json, size};
use crate::Outcome;

/// Set the index budget for this process: --index-mib, else the tier's from the appliance
/// config, else the default. Returns it with its source.
pub fn set_budget(g: &Global) -> Result<(u64, SettingSource)> {
    let (bytes, source) = tiervault_model::setting(
        g.index_mib.map(|m| m << 20),
        &g.appliance_config,
        |plan| plan.index_memory_bytes,
        tiervault_store::DEFAULT_INDEX_BUDGET,
    )
    .context("reading the index budget")?;
    tiervault_store::set_index_budget(bytes);
    Ok((tiervault_store::index_budget(), source))
}

fn source_name(s: &SettingSource) -> String {
    match s {
        SettingSource::Explicit => "--index-mib".into(),
        SettingSource::Appliance(p) => p.display().to_string(),
        SettingSource::Default => "default".into(),
    }
}

pub fn run(g: &Global, cmd: &IndexCmd) -> Result<Outcome> {
    // Set already by `cmd::run`; read again here for its source.
    let budget = set_budget(g)?;
    let repo = open_repo(g)?;
    match cmd {
        IndexCmd::Status => {
            let st = repo.index_cache_status()?;
            let memory = repo.index().memory_used();
            if g.json {
                let mut v = serde_json::to_value(&st)?;
                v["budget_bytes"] = json!(budget.0);
                v["budget_from"] = json!(source_name(&budget.1));
                v["memory_used_bytes"] = json!(memory);
                v["peak_rss_bytes"] = json!(peak_rss_bytes());
                print_json(&v);
            } else {
                outln!(
                    "index cache:   {}",
                    match (st.usable, st.up_to_date) {
                        (false, _) => "absent or unusable (the next backup or rebuild makes it)",
                        (true, true) => "up to date",
                        (true, false) => "behind the index parts (the next open catches up)",
                    }
                );
                outln!(
                    "entries:       {} ({} other copies)",
                    st.entries,
                    st.other_copies
                );
                outln!("on disk:       {} in {} runs", size(st.disk_bytes), st.runs);
                outln!(
                    "index parts:   {} absorbed of {}",
                    st.parts_absorbed,
                    st.parts
                );
                outln!(
                    "memory:        {} used of a {} budget (from {})",
                    size(memory),
                    size(budget.0),
                    source_name(&budget.1)
                );
            }
        }
        IndexCmd::Rebuild => {
            let started = std::time::Instant::now();
            let r = repo.refresh_index_cache(true)?;
            let secs = started.elapsed().as_secs_f64();
            if g.json {
                let mut v = serde_json::to_value(&r)?;
                v["seconds"] = json!(secs);
                v["peak_rss_bytes"] = json!(peak_rss_bytes());
                print_json(&v);
            } else if !g.quiet {
                outln!(
                    "rebuilt the index cache from {} index parts: {} entries, {} other copies, \
                     in {secs:.1} s",
                    r.parts_absorbed,
                    r.entries_absorbed,
                    r.alternatives
                );
            }
            for p in &r.problems {
                eprintln!("warning: {p}");
            }
            if !r.problems.is_empty() {
                return Ok(Outcome::Damage);
            }
        }
    }
    Ok(Outcome::Ok)
}
