//! Self-heal: replace damaged or missing blobs with good copies from another holder (the
//! remote vault or a replica), after checking each copy with the key.
//!
//! A pack holding a damaged blob is replaced, not patched: its good blobs and the healed
//! ones go into new packs, then the damaged pack is condemned and, once no older session
//! can still read it, moved to `quarantine/` — the garbage collector's protocol
//! (docs/format.md section 10), so backups and restores may run meanwhile.

use std::collections::HashSet;

use crate::blob::Kind;
use crate::codec::Decoder;
use crate::error::{Error, Result};
use crate::gc::{self, GcOptions, GcProgress, GcReport, View};
use crate::id::{Id, IdSet, PackId};
use crate::ingest::Ingest;
use crate::vault::Vault;
use crate::verify::Report as VerifyReport;

/// Somewhere stored blobs can be fetched from by id.
pub trait BlobSource {
    /// Stored bytes of the blobs it holds among `ids` (the others are left out).
    fn fetch(&mut self, ids: &[Id]) -> std::result::Result<Vec<(Id, Kind, Vec<u8>)>, String>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealReport {
    /// Blobs replaced by a good copy.
    pub healed: Vec<Id>,
    /// Damaged or missing blobs the source did not have (or sent bad copies of).
    pub unavailable: Vec<Id>,
    /// Damaged packs moved to `quarantine/`.
    pub quarantined: Vec<PackId>,
}

/// Heal the damage `found` reported, from `source`.
pub fn heal(
    vault: &Vault,
    found: &VerifyReport,
    source: &mut dyn BlobSource,
    source_name: &str,
    progress: &dyn GcProgress,
) -> Result<HealReport> {
    let _lock = gc::lock(vault)?;
    if !gc::read_condemned(vault.root())?.is_empty() {
        return Err(Error::GcPending(vault.root().to_path_buf()));
    }
    // What the parts say about the damaged packs and the missing blobs (which packs held
    // them), then about every pack to replace.
    let named: HashSet<PackId> = found
        .damage
        .iter()
        .filter_map(|d| d.pack.as_deref().and_then(PackId::from_hex))
        .collect();
    let unplaced: IdSet = found
        .damage
        .iter()
        .filter(|d| d.pack.is_none())
        .filter_map(|d| d.blob.as_deref().and_then(Id::from_hex))
        .collect();
    let view = View::load_for(vault, &named, &unplaced)?;
    // Which blobs and packs are damaged.
    let mut bad_ids = IdSet::default();
    let mut bad_packs: HashSet<PackId> = HashSet::new();
    for d in &found.damage {
        let pack = d.pack.as_deref().and_then(PackId::from_hex);
        match (d.blob.as_deref().and_then(Id::from_hex), pack) {
            (Some(id), p) => {
                bad_ids.insert(id);
                bad_packs.extend(p);
                // A missing blob's stale index entries name the pack it was in.
                if p.is_none() {
                    for (pk, ..) in view.copies.get(&id).into_iter().flatten() {
                        bad_packs.insert(*pk);
                    }
                }
            }
            (None, Some(p)) => {
                // The whole pack is unreadable: every blob in it needs a copy.
                bad_packs.insert(p);
                bad_ids.extend(view.contents.get(&p).into_iter().flatten().map(|e| e.0));
            }
            (None, None) => {}
        }
    }
    let mut report = HealReport::default();
    if bad_ids.is_empty() {
        return Ok(report);
    }
    let view = View::load_for(vault, &bad_packs, &IdSet::default())?;
    progress.stage(&format!(
        "fetching {} blob(s) from {}",
        bad_ids.len(),
        source_name
    ));
    let mut wanted: Vec<Id> = bad_ids.iter().copied().collect();
    wanted.sort();
    let fetched = source
        .fetch(&wanted)
        .map_err(|reason| Error::Invalid(format!("fetching from {}: {reason}", source_name)))?;
    let mut ing = Ingest::for_copying(vault);
    let mut dec = Decoder::new();
    let mut good = IdSet::default();
    for (id, kind, stored) in fetched {
        if !bad_ids.contains(&id) || good.contains(&id) {
            continue;
        }
        // Never trust the source: the copy must open with our key and match its id.
        let mut copy = stored.clone();
        if let Err(reason) = dec.decode(vault.keys(), &id, &mut copy) {
            tracing::warn!("{} sent a bad copy of {id}: {reason}", source_name);
            continue;
        }
        ing.put_checked(vault, &id, kind, crate::pack::digest16(&stored), &stored)?;
        good.insert(id);
    }
    report.healed = wanted
        .iter()
        .filter(|i| good.contains(i))
        .copied()
        .collect();
    report.unavailable = wanted
        .iter()
        .filter(|i| !good.contains(i))
        .copied()
        .collect();
    // Replace only packs whose every damaged blob now has a good copy; the rest keep
    // showing their damage.
    let replace: HashSet<PackId> = bad_packs
        .into_iter()
        .filter(|p| {
            view.contents
                .get(p)
                .into_iter()
                .flatten()
                .all(|e| !bad_ids.contains(&e.0) || good.contains(&e.0))
        })
        .collect();
    for p in &replace {
        let digests = gc::trailer_digests(vault, &view, p);
        for (id, off, len, kind) in view.contents.get(p).into_iter().flatten() {
            if bad_ids.contains(id) || ing.has(vault, id)? {
                continue;
            }
            let Ok(stored) = view.read(vault, p, *off, *len) else {
                continue;
            };
            let digest = digests.as_ref().and_then(|d| d.get(off)).copied();
            if let Some(d) = digest.filter(|d| *d == crate::pack::digest16(&stored)) {
                ing.put_checked(vault, id, *kind, d, &stored)?;
            }
        }
    }
    ing.flush(vault)?;
    if replace.is_empty() {
        return Ok(report);
    }
    gc::publish(vault, &replace)?;
    let mut gr = GcReport::default();
    gc::finish(
        vault,
        &replace,
        &GcOptions::default(),
        progress,
        &mut gr,
        true,
    )?;
    report.quarantined = replace.into_iter().collect();
    report.quarantined.sort();
    Ok(report)
}
