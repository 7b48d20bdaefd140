//! The index cache against the parts it is derived from: absorbing, other copies, hidden
//! packs, a collection's replaced parts, damage and the memory budget.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use super::cache::{self, View};
use super::{encode_part, Index, PackInfo};
use crate::blob::Kind;
use crate::id::{Id, PackId};
use crate::pack::PackEntry;

fn id(n: u64) -> Id {
    Id(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn pack(tag: u8, ids: std::ops::Range<u64>) -> PackInfo {
    PackInfo {
        id: PackId([tag; 16]),
        dir: 0,
        len: 1 << 20,
        entries: ids
            .enumerate()
            .map(|(i, n)| PackEntry {
                id: id(n),
                digest: [0; 16],
                offset: i as u64 * 100,
                len: 100,
                kind: Kind::Data,
            })
            .collect(),
    }
}

/// Write a part naming `packs`; returns its name.
fn write_part(root: &Path, packs: &[PackInfo]) -> String {
    let bytes = encode_part(packs);
    let name = Id::digest(&bytes).hex();
    std::fs::create_dir_all(root.join("index")).expect("mkdir");
    std::fs::write(root.join("index").join(&name), bytes).expect("write part");
    name
}

fn names(root: &Path) -> BTreeSet<String> {
    crate::repo::list_dir(&root.join("index"))
        .expect("list")
        .into_iter()
        .collect()
}

const BUDGET: u64 = 32 << 20;

fn open(root: &Path, condemned: &HashSet<PackId>) -> Index {
    let view = View::open(root, BUDGET).expect("open view");
    assert!(view.is_some(), "the cache is usable");
    let (idx, problems) =
        Index::build(&root.join("index"), view, &names(root), condemned).expect("build");
    assert!(problems.is_empty(), "{problems:?}");
    idx
}

fn refresh(root: &Path, rebuild: bool) -> super::RefreshReport {
    cache::refresh(root, &names(root), BUDGET, rebuild)
        .expect("refresh")
        .expect("not locked")
}

fn pack_of(idx: &Index, n: u64) -> Option<u8> {
    idx.get(&id(n))
        .expect("get")
        .map(|l| idx.pack(l.pack).id.0[0])
}

#[test]
fn absorbs_parts_and_answers_from_other_copies_when_one_is_hidden() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    write_part(root, &[pack(1, 0..1000)]);
    write_part(root, &[pack(2, 500..1500)]);
    let r = refresh(root, false);
    assert_eq!((r.parts_absorbed, r.entries_absorbed), (2, 2000));
    assert_eq!(r.alternatives, 500, "ids in both packs have an other copy");
    assert_eq!(refresh(root, false), super::RefreshReport::default());

    let idx = open(root, &HashSet::new());
    assert!(idx.cached());
    assert_eq!(idx.count().expect("count"), 1500);
    assert_eq!(pack_of(&idx, 10), Some(1));
    assert_eq!(pack_of(&idx, 1400), Some(2));
    assert_eq!(pack_of(&idx, 5000), None);
    let first = pack_of(&idx, 700).expect("present");
    let loc = idx.get(&id(700)).expect("get").expect("present");
    assert_eq!((loc.len, loc.kind), (100, Kind::Data));

    // Condemn whichever copy the cache answers with: the other one answers instead.
    let hidden: HashSet<PackId> = [PackId([first; 16])].into();
    let idx = open(root, &hidden);
    assert_eq!(pack_of(&idx, 700), Some(3 - first));
    let only_in_hidden = if first == 1 { 10 } else { 1400 };
    assert_eq!(pack_of(&idx, only_in_hidden), None);
    assert_eq!(idx.count().expect("count"), 1000);
    assert_eq!(idx.live_packs().count(), 1);
    assert!(!idx.has_pack(&PackId([first; 16])));
}

#[test]
fn a_collections_replaced_parts_are_compacted_and_other_copies_take_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let a = write_part(root, &[pack(1, 0..1000)]);
    write_part(root, &[pack(2, 500..1500)]);
    refresh(root, false);
    // A collection deleted pack 1 and rewrote its part without it.
    std::fs::remove_file(root.join("index").join(&a)).expect("remove part");
    write_part(root, &[pack(3, 2000..2100)]);

    // A session that cannot update the cache hides the dead pack and reads the new part.
    let stale = open(root, &HashSet::new());
    assert_eq!(pack_of(&stale, 10), None, "dead pack hidden");
    assert_eq!(pack_of(&stale, 700), Some(2));
    assert_eq!(
        pack_of(&stale, 2050),
        Some(3),
        "unabsorbed part in the overlay"
    );
    assert_eq!(stale.count().expect("count"), 1100);

    let r = refresh(root, false);
    assert_eq!((r.parts_gone, r.parts_absorbed), (1, 1));
    assert_eq!(r.entries_dropped, 500, "ids only in the dead pack");
    let idx = open(root, &HashSet::new());
    assert_eq!(pack_of(&idx, 10), None);
    assert_eq!(pack_of(&idx, 700), Some(2));
    assert_eq!(pack_of(&idx, 2050), Some(3));
    assert_eq!(idx.count().expect("count"), 1100);

    // A rebuild from the parts gives the same answers.
    let r = refresh(root, true);
    assert!(r.rebuilt);
    assert_eq!(r.entries_absorbed, 1100);
    let again = open(root, &HashSet::new());
    assert_eq!(again.count().expect("count"), 1100);
    assert_eq!(pack_of(&again, 700), Some(2));
}

#[test]
fn damaged_or_half_written_cache_files_are_rebuilt_never_trusted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    write_part(root, &[pack(1, 0..3000)]);
    refresh(root, false);
    let packs = root.join(cache::DIR).join("packs");

    // The pack table no longer matches the watermark: the view is refused, refresh rebuilds.
    std::fs::write(&packs, b"garbage").expect("write");
    assert!(View::open(root, BUDGET).expect("open").is_none());
    assert!(refresh(root, false).rebuilt);
    assert_eq!(pack_of(&open(root, &HashSet::new()), 5), Some(1));

    // A damaged run file: refresh drops the cache and rebuilds it.
    let primary = root.join(cache::DIR).join("primary");
    let run = std::fs::read_dir(&primary)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "tvr"))
        .expect("a run file");
    let mut b = std::fs::read(&run).expect("read");
    let n = b.len();
    b[n - 1] ^= 0xff;
    std::fs::write(&run, b).expect("write");
    assert!(View::open(root, BUDGET).expect("open").is_none());
    assert!(refresh(root, false).rebuilt);
    let idx = open(root, &HashSet::new());
    assert_eq!(idx.count().expect("count"), 3000);

    // A part whose content does not match its name is reported, not absorbed.
    std::fs::write(root.join("index").join("00".repeat(32)), b"not a part").expect("write");
    let r = refresh(root, false);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(r.problems[0].contains(&"00".repeat(32)), "{:?}", r.problems);
}

#[test]
fn memory_stays_within_the_budget_whatever_the_entries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // 400 k entries: ~32 MiB as an in-memory map, ~1 MiB of cache tables.
    for p in 0..4u8 {
        let base = p as u64 * 100_000;
        write_part(root, &[pack(p + 1, base..base + 100_000)]);
    }
    let r = cache::refresh(root, &names(root), super::MIN_BUDGET, false)
        .expect("refresh")
        .expect("not locked");
    assert_eq!(r.entries_absorbed, 400_000);
    let view = View::open(root, super::MIN_BUDGET)
        .expect("open")
        .expect("usable");
    let (idx, _) = Index::build(
        &root.join("index"),
        Some(view),
        &names(root),
        &HashSet::new(),
    )
    .expect("build");
    assert!(
        idx.memory_used() <= super::MIN_BUDGET,
        "{} bytes for a budget of {}",
        idx.memory_used(),
        super::MIN_BUDGET
    );
    for n in [0, 123_456, 399_999] {
        assert!(idx.contains(&id(n)).expect("get"), "{n}");
    }
    assert!(!idx.contains(&id(400_000)).expect("get"));
}

#[test]
fn a_crash_between_the_two_commits_or_after_the_rows_is_caught_by_the_watermark() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    write_part(root, &[pack(1, 0..500)]);
    refresh(root, false);
    let cache_dir = root.join(cache::DIR);
    let saved = tmp.path().join("saved-primary");
    copy_dir(&cache_dir.join("primary"), &saved);

    // A second refresh commits alts, then primary; put the old primary back, as if the
    // process died between the two commits.
    write_part(root, &[pack(2, 500..900)]);
    refresh(root, false);
    std::fs::remove_dir_all(cache_dir.join("primary")).expect("remove");
    copy_dir(&saved, &cache_dir.join("primary"));
    assert!(
        View::open(root, BUDGET).expect("open").is_none(),
        "mismatched commits"
    );
    let r = refresh(root, false);
    assert!(r.rebuilt, "{r:?}");
    let idx = open(root, &HashSet::new());
    assert_eq!(idx.count().expect("count"), 900);

    // Rows appended by a writer that died before committing are ignored, then overwritten.
    let packs = cache_dir.join("packs");
    let mut rows = std::fs::read(&packs).expect("read");
    rows.extend_from_slice(&[0xee; 64]);
    std::fs::write(&packs, rows).expect("write");
    let idx = open(root, &HashSet::new());
    assert_eq!(pack_of(&idx, 600), Some(2));
    write_part(root, &[pack(3, 900..1000)]);
    let r = refresh(root, false);
    assert!(!r.rebuilt && r.parts_absorbed == 1, "{r:?}");
    let idx = open(root, &HashSet::new());
    assert_eq!(pack_of(&idx, 950), Some(3));
    assert_eq!(idx.count().expect("count"), 1000);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}
