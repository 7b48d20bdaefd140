//! Read-only commands: snapshots, ls, cat, diff, stats.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::Result;
use serde_json::{json, Value};
use tiervault_store::browse::{self, Change, Found};
use tiervault_store::stats;

use crate::cli::{CatArgs, DiffArgs, Global, LsArgs, SnapshotsArgs};
use crate::open::open;
use crate::output::{
    entry_json, mode_string, print_json, rfc3339_ns, show, size, snapshot_json, Stdout,
};
use crate::Outcome;

pub fn snapshots(g: &Global, a: &SnapshotsArgs) -> Result<Outcome> {
    let vault = open(g)?;
    let (all, bad) = vault.snapshots()?;
    for (name, e) in &bad {
        eprintln!("warning: snapshot file {name} is unreadable: {e} (run vaultctl verify)");
    }
    let filter = a.path.as_ref().map(|p| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.clone())
            .as_os_str()
            .as_bytes()
            .to_vec()
    });
    let list: Vec<_> = all
        .iter()
        .filter(|s| {
            filter
                .as_ref()
                .is_none_or(|f| s.body.paths.iter().any(|p| p.as_slice() == f.as_slice()))
        })
        .collect();
    if g.json {
        print_json(&Value::Array(
            list.iter().map(|s| snapshot_json(s)).collect(),
        ));
    } else if !g.quiet {
        outln!(
            "{:<8}  {:<30}  {:<12}  {:>10}  {:<8}  paths",
            "id",
            "time",
            "host",
            "size",
            "status"
        );
        for s in &list {
            let paths: Vec<String> = s.body.paths.iter().map(|p| show(p)).collect();
            outln!(
                "{:<8}  {:<30}  {:<12}  {:>10}  {:<8}  {}",
                s.short_id(),
                rfc3339_ns(s.header.time_ns),
                s.body.hostname,
                size(s.body.summary.bytes),
                if s.has_warnings() {
                    "warnings"
                } else {
                    "complete"
                },
                paths.join(" ")
            );
        }
        outln!("{} snapshot(s)", list.len());
    }
    Ok(Outcome::Ok)
}

pub fn ls(g: &Global, a: &LsArgs) -> Result<Outcome> {
    let vault = open(g)?;
    let snap = vault.resolve(&a.snapshot, a.path.as_deref().map(str::as_bytes))?;
    let path = a.path.as_deref().unwrap_or("").as_bytes();
    let prefix: Vec<u8> = browse::components(path).join(&b'/');
    let mut rows = Vec::new();
    let mut push = |p: &[u8], e: &tiervault_store::Entry| -> tiervault_store::Result<()> {
        rows.push((p.to_vec(), e.clone()));
        Ok(())
    };
    match browse::find(&vault, &snap, path)? {
        Found::Root(t) => browse::walk(&vault, &t, b"", &mut push)?,
        Found::Entry(e) => {
            push(&prefix, &e)?;
            if let Some(id) = e.subtree {
                let t = vault.read_tree(&id)?;
                browse::walk(&vault, &t, &prefix, &mut push)?;
            }
        }
    }
    if g.json {
        print_json(&Value::Array(
            rows.iter().map(|(p, e)| entry_json(p, e)).collect(),
        ));
    } else {
        let mut out = std::io::BufWriter::new(Stdout::lock());
        for (p, e) in &rows {
            let link = e
                .target
                .as_ref()
                .map(|t| format!(" -> {}", show(t)))
                .unwrap_or_default();
            writeln!(
                out,
                "{} {:>5}/{:<5} {:>12} {} {}{}",
                mode_string(e),
                e.uid,
                e.gid,
                e.size.unwrap_or(0),
                rfc3339_ns(e.mtime),
                show(p),
                link
            )?;
        }
        out.flush()?;
    }
    Ok(Outcome::Ok)
}

pub fn cat(g: &Global, a: &CatArgs) -> Result<Outcome> {
    let vault = open(g)?;
    let snap = vault.resolve(&a.snapshot, Some(a.path.as_bytes()))?;
    let e = match browse::find(&vault, &snap, a.path.as_bytes())? {
        Found::Entry(e) if e.kind == tiervault_store::NodeType::File => *e,
        _ => {
            return Err(tiervault_store::Error::NotAFile {
                snapshot: snap.short_id(),
                path: a.path.clone(),
            }
            .into())
        }
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, Stdout::lock());
    browse::cat(&vault, &e, &mut out)?;
    out.flush()?;
    Ok(Outcome::Ok)
}

pub fn diff(g: &Global, a: &DiffArgs) -> Result<Outcome> {
    let vault = open(g)?;
    let from = vault.resolve(&a.from, None)?;
    let to = vault.resolve(&a.to, None)?;
    let mut changes = Vec::new();
    browse::diff(&vault, &from.body.root, &to.body.root, b"", &mut changes)?;
    let word = |c: Change| match c {
        Change::Added => ("+", "added"),
        Change::Removed => ("-", "removed"),
        Change::Modified => ("M", "modified"),
    };
    if g.json {
        print_json(&Value::Array(
            changes
                .iter()
                .map(|(p, c)| json!({"path": show(p), "change": word(*c).1}))
                .collect(),
        ));
    } else {
        for (p, c) in &changes {
            outln!("{} {}", word(*c).0, show(p));
        }
    }
    Ok(Outcome::Ok)
}

pub fn stats(g: &Global) -> Result<Outcome> {
    let vault = open(g)?;
    let st = stats::stats(&vault)?;
    if g.json {
        print_json(&serde_json::to_value(&st)?);
    } else {
        outln!("snapshots:          {}", st.snapshots);
        outln!(
            "logical size:       {} (all files of all snapshots)",
            size(st.logical_bytes)
        );
        outln!(
            "unique data:        {} in {} chunks",
            size(st.unique_bytes),
            st.chunks
        );
        outln!(
            "stored (packs):     {} in {} packs, {} blobs",
            size(st.stored_bytes),
            st.packs,
            st.blobs
        );
        outln!("dedup ratio:        {:.2}x", st.dedup_ratio);
        outln!("compression ratio:  {:.2}x", st.compression_ratio);
    }
    Ok(Outcome::Ok)
}
