//! Crash safety, damage detection, budget enforcement, exactness, concurrency, and readers
//! beside the one writer.

use std::path::{Path, PathBuf};

use tiervault_chunkindex::{ChunkIndex, Error, Options, IO_RESERVE};

fn key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

fn val(i: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn small() -> Options {
    let mut o = Options::with_budget(IO_RESERVE + (512 << 10));
    o.cache_bytes = Some(0);
    o
}

fn fill(index: &mut ChunkIndex, range: std::ops::Range<u64>) {
    for i in range {
        index.insert(&key(i), val(i)).expect("insert");
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn run_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|n| n.starts_with("run-"))
        .map(|n| dir.join(n))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for n in files(from) {
        if n != "LOCK" {
            std::fs::copy(from.join(&n), to.join(&n)).expect("copy");
        }
    }
}

#[test]
fn drop_without_commit_returns_to_the_last_commit() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut index = ChunkIndex::open(dir.path(), small()).expect("open");
    fill(&mut index, 0..20_000);
    index.commit(b"one").expect("commit");
    fill(&mut index, 20_000..60_000); // flushes and merges: uncommitted run files on disk
    assert!(index.stats().runs >= 1);
    drop(index);
    let index = ChunkIndex::open(dir.path(), small()).expect("reopen");
    assert_eq!(index.len(), 20_000);
    assert_eq!(index.watermark(), b"one");
    assert_eq!(index.get(&key(19_999)).expect("get"), Some(val(19_999)));
    assert_eq!(index.get(&key(20_000)).expect("get"), None);
    assert_eq!(index.get(&key(59_999)).expect("get"), None);
    // Only the runs the manifest names are left.
    assert_eq!(run_files(dir.path()).len(), index.stats().runs);
}

#[test]
fn crash_states_around_a_commit() {
    let dir = tempfile::tempdir().expect("tmp");
    let before = tempfile::tempdir().expect("tmp");
    let mut index = ChunkIndex::open(dir.path(), small()).expect("open");
    fill(&mut index, 0..30_000);
    index.commit(b"A").expect("commit A");
    index.retain(|k, _| k[0] & 1 == 0).expect("retain"); // replaces every committed run
    fill(&mut index, 30_000..40_000);
    // A crash just before the manifest's rename: all files of both states on disk.
    copy_dir(dir.path(), before.path());
    std::fs::write(before.path().join("MANIFEST.tmp"), b"half a manifest").expect("tmp");
    index.commit(b"B").expect("commit B");
    let want_b = index.len();
    drop(index);

    let a = ChunkIndex::open(before.path(), small()).expect("open crash state A");
    assert_eq!(a.watermark(), b"A");
    assert_eq!(a.len(), 30_000);
    assert!((0..30_000)
        .step_by(101)
        .all(|i| a.get(&key(i)).expect("get") == Some(val(i))));
    assert!(!files(before.path()).contains(&"MANIFEST.tmp".to_string()));
    drop(a);

    // A crash after the rename but before the old runs were deleted.
    let after = tempfile::tempdir().expect("tmp");
    copy_dir(before.path(), after.path());
    for n in files(dir.path()) {
        if n != "LOCK" {
            std::fs::copy(dir.path().join(&n), after.path().join(&n)).expect("copy");
        }
    }
    let b = ChunkIndex::open(after.path(), small()).expect("open crash state B");
    assert_eq!(b.watermark(), b"B");
    assert_eq!(b.len(), want_b);
    for i in (0..40_000).step_by(37) {
        let want = (i >= 30_000 || key(i)[0] & 1 == 0).then(|| val(i));
        assert_eq!(b.get(&key(i)).expect("get"), want, "key {i}");
    }
    assert_eq!(run_files(after.path()).len(), b.stats().runs);
}

#[test]
fn stray_and_partial_files_are_removed_at_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut index = ChunkIndex::open(dir.path(), small()).expect("open");
    fill(&mut index, 0..1000);
    index.commit(b"").expect("commit");
    drop(index);
    std::fs::write(dir.path().join("run-00000000000000ff.tvr"), [1u8; 5000]).expect("stray");
    std::fs::write(dir.path().join("MANIFEST.tmp"), b"partial").expect("partial");
    std::fs::write(dir.path().join("notes.txt"), b"not ours").expect("other");
    let index = ChunkIndex::open(dir.path(), small()).expect("reopen");
    assert_eq!(index.len(), 1000);
    let names = files(dir.path());
    assert!(!names.contains(&"run-00000000000000ff.tvr".to_string()));
    assert!(!names.contains(&"MANIFEST.tmp".to_string()));
    assert!(
        names.contains(&"notes.txt".to_string()),
        "foreign files are left alone"
    );
}

fn committed_single_run(dir: &Path, n: u64) -> PathBuf {
    let mut index = ChunkIndex::open(dir, small()).expect("open");
    fill(&mut index, 0..n);
    index.retain(|_, _| true).expect("compact");
    index.commit(b"").expect("commit");
    drop(index);
    let runs = run_files(dir);
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

#[test]
fn a_corrupt_page_is_an_error_naming_the_file_never_a_wrong_answer() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = committed_single_run(dir.path(), 5000);
    let mut bytes = std::fs::read(&run).expect("read");
    bytes[4096 * 3 + 100] ^= 0x40; // inside page 3
    std::fs::write(&run, &bytes).expect("write");
    let mut index =
        ChunkIndex::open(dir.path(), small()).expect("open (pages are checked when read)");
    let mut damaged = 0;
    for i in 0..5000 {
        match index.get(&key(i)) {
            Ok(v) => assert_eq!(v, Some(val(i))),
            Err(e) => {
                assert!(e.is_damage(), "{e}");
                assert!(e.to_string().contains(&run.display().to_string()), "{e}");
                assert!(e.to_string().contains("page 3"), "{e}");
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 85, "exactly the keys of the damaged page fail");
    let all: Vec<[u8; 32]> = (0..5000).map(key).collect();
    assert!(index
        .get_many(&all)
        .expect_err("batch touches page 3")
        .is_damage());
    let scan: Result<Vec<_>, Error> = index.iter().expect("iter").collect();
    assert!(scan.expect_err("scan must fail").is_damage());
}

#[test]
fn corrupt_tables_footer_manifest_or_length_fail_open() {
    for (what, damage) in [
        ("filter", 0usize),
        ("footer", 1),
        ("truncated", 2),
        ("manifest", 3),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let run = committed_single_run(dir.path(), 3000);
        let mut bytes = std::fs::read(&run).expect("read");
        let len = bytes.len();
        let target = match damage {
            0 => {
                bytes[len - 200] ^= 1;
                run.clone()
            }
            1 => {
                bytes[len - 60] ^= 1;
                run.clone()
            }
            2 => {
                bytes.truncate(len - 4096);
                run.clone()
            }
            _ => {
                let m = dir.path().join("MANIFEST");
                let mut mb = std::fs::read(&m).expect("manifest");
                mb[20] ^= 1;
                std::fs::write(&m, mb).expect("write");
                m
            }
        };
        if damage < 3 {
            std::fs::write(&run, &bytes).expect("write");
        }
        let err = ChunkIndex::open(dir.path(), small()).err().expect(what);
        assert!(err.is_damage(), "{what}: {err}");
        assert!(
            err.to_string().contains(&target.display().to_string()),
            "{what}: {err}"
        );
    }
}

#[test]
fn memory_stays_within_a_small_budget_and_the_filter_must_fit() {
    let dir = tempfile::tempdir().expect("tmp");
    let budget = IO_RESERVE + (2 << 20);
    let mut o = Options::with_budget(budget);
    o.cache_bytes = Some(64 << 10);
    let mut index = ChunkIndex::open(dir.path(), o.clone()).expect("open");
    let mut n = 0u64;
    // Insert until the budget is exhausted (the filter and tables grow with the entries).
    let err = loop {
        match index.insert(&key(n), val(n)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(
            index.memory_used() <= budget,
            "at {n}: {}",
            index.memory_used()
        );
    };
    assert!(matches!(err, Error::BudgetExhausted { .. }), "{err}");
    assert!(n > 200_000, "only {n} entries in a 2 MiB budget");
    index.commit(b"full").expect("commit");
    assert_eq!(index.get(&key(n / 2)).expect("get"), Some(val(n / 2)));
    drop(index);
    // The same budget still opens for lookups; a smaller one cannot hold the filter.
    let mut index = ChunkIndex::open(dir.path(), o.clone()).expect("reopen");
    assert_eq!(index.get(&key(7)).expect("get"), Some(val(7)));
    assert!(matches!(
        index.insert(&key(n), val(n)),
        Err(Error::BudgetExhausted { .. })
    ));
    assert!(index.memory_used() <= budget);
    drop(index);
    o.budget_bytes = IO_RESERVE + (1 << 20);
    match ChunkIndex::open(dir.path(), o).err() {
        Some(Error::BudgetTooSmall {
            entries,
            needed,
            budget: b,
        }) => {
            assert_eq!(entries, n);
            assert!(needed > b);
        }
        other => panic!("expected BudgetTooSmall, got {other:?}"),
    }
}

#[test]
fn filter_false_positives_are_never_reported_present() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut o = small();
    o.bits_per_entry = 6; // many false positives
    let mut index = ChunkIndex::open(dir.path(), o).expect("open");
    fill(&mut index, 0..20_000);
    index.commit(b"").expect("commit");
    for i in (0..20_000).step_by(7) {
        // Same filter block and bits, same 8-byte prefix (same page): only the full key
        // tells them apart.
        let mut twin = key(i);
        twin[12] ^= 0x01;
        assert_eq!(index.get(&twin).expect("get"), None);
        assert_eq!(index.get(&key(i)).expect("get"), Some(val(i)));
    }
    for i in 20_000..40_000 {
        assert_eq!(index.get(&key(i)).expect("get"), None);
    }
}

#[test]
fn a_second_handle_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let _a = ChunkIndex::open(dir.path(), small()).expect("open");
    assert!(matches!(
        ChunkIndex::open(dir.path(), small()).err(),
        Some(Error::Locked { .. })
    ));
}

#[test]
fn lookups_from_several_threads() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut o = small();
    o.cache_bytes = Some(256 << 10);
    o.budget_bytes += 256 << 10;
    let mut index = ChunkIndex::open(dir.path(), o).expect("open");
    fill(&mut index, 0..50_000);
    let index = &index;
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for i in (t..60_000).step_by(4) {
                    let want = (i < 50_000).then(|| val(i));
                    assert_eq!(index.get(&key(i)).expect("get"), want);
                }
            });
        }
    });
    let keys: Vec<[u8; 32]> = (0..60_000).rev().map(key).collect();
    let got = index.get_many(&keys).expect("get_many");
    for (k, g) in (0..60_000u64).rev().zip(got) {
        assert_eq!(g, (k < 50_000).then(|| val(k)));
    }
}

#[test]
fn options_and_watermark_are_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut o = small();
    o.bits_per_entry = 2;
    assert!(matches!(
        ChunkIndex::open(dir.path(), o).err(),
        Some(Error::Invalid(_))
    ));
    let mut index = ChunkIndex::open(dir.path(), small()).expect("open");
    assert!(matches!(
        index.commit(&vec![0; tiervault_chunkindex::MAX_WATERMARK + 1]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ChunkIndex::open(
            tempfile::tempdir().expect("tmp").path(),
            Options::with_budget(1 << 20)
        )
        .err(),
        Some(Error::BudgetTooSmall { .. })
    ));
}

#[test]
fn run_count_stays_logarithmic_and_iter_is_sorted() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut index = ChunkIndex::open(dir.path(), small()).expect("open");
    let n = 200_000u64;
    let mut max_runs = 0;
    for i in 0..n {
        index.insert(&key(i), val(i)).expect("insert");
        max_runs = max_runs.max(index.stats().runs);
    }
    // The buffer takes ~7,000 entries here: log2(200,000 / 7,000) + 1 ≈ 6.
    assert!(max_runs <= 8, "{max_runs} runs");
    let mut last = None;
    let mut count = 0;
    for e in index.iter().expect("iter") {
        let (k, v) = e.expect("entry");
        assert!(last.is_none_or(|l| l < k));
        let i = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
        assert_eq!(k, key(i));
        last = Some(k);
        count += 1;
    }
    assert_eq!(count, n);
}

// Readers beside the one writer: several processes of a vault look chunks up while one of
// them maintains the index.

#[test]
fn readers_open_beside_the_writer_and_keep_their_view_across_its_merges() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("idx");
    let mut w = ChunkIndex::open(&dir, small()).expect("writer");
    for i in 0..20_000 {
        w.insert(&key(i), val(i)).expect("insert");
    }
    w.commit(b"first").expect("commit");

    // Readers do not take the lock the writer holds, and see the last commit.
    let r = ChunkIndex::open_reader(&dir, small()).expect("reader beside the writer");
    assert_eq!(r.len(), 20_000);
    assert_eq!(r.watermark(), b"first");
    assert_eq!(r.get(&key(7)).expect("get"), Some(val(7)));
    assert_eq!(r.get(&key(20_007)).expect("get"), None);

    // The writer goes on: more runs, merges that delete the run files the reader opened.
    for i in 20_000..60_000 {
        w.insert(&key(i), val(i)).expect("insert");
    }
    w.commit(b"second").expect("commit");
    let hits = (0..20_000)
        .step_by(97)
        .filter(|&i| r.get(&key(i)).expect("reader lookup after merges") == Some(val(i)))
        .count();
    assert_eq!(
        hits,
        (0..20_000).step_by(97).count(),
        "the reader's view still answers"
    );
    assert_eq!(
        r.get(&key(40_000)).expect("get"),
        None,
        "commits after open are not seen"
    );

    let again = ChunkIndex::open_reader(&dir, small()).expect("a new reader");
    assert_eq!(again.len(), 60_000);
    assert_eq!(again.watermark(), b"second");
    let keys: Vec<[u8; 32]> = (59_000..61_000).map(key).collect();
    let got = again.get_many(&keys).expect("get_many");
    assert_eq!(got.iter().filter(|v| v.is_some()).count(), 1_000);
}

#[test]
fn a_reader_refuses_changes_naming_the_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("idx");
    let mut w = ChunkIndex::open(&dir, small()).expect("writer");
    w.insert(&key(1), val(1)).expect("insert");
    w.commit(b"").expect("commit");
    let mut r = ChunkIndex::open_reader(&dir, small()).expect("reader");
    let refused: Vec<Error> = vec![
        r.insert(&key(2), val(2)).expect_err("insert"),
        r.commit(b"x").expect_err("commit"),
        r.retain(|_, _| false).expect_err("retain"),
        r.clear().expect_err("clear"),
    ];
    for e in refused {
        assert!(matches!(e, Error::ReadOnly { .. }), "{e:?}");
        assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
    }
    // Iterating is a read: allowed.
    let all: Vec<_> = r
        .iter()
        .expect("iter")
        .collect::<Result<_, _>>()
        .expect("entries");
    assert_eq!(all.len(), 1);
    // Nothing the writer owns was touched.
    drop(r);
    w.insert(&key(3), val(3)).expect("the writer still writes");
    w.commit(b"").expect("commit");
}

#[test]
fn a_reader_of_a_missing_directory_is_empty_and_creates_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("never-made");
    let r = ChunkIndex::open_reader(&dir, small()).expect("reader");
    assert!(r.is_empty());
    assert_eq!(r.get(&key(1)).expect("get"), None);
    assert!(!dir.exists());
}

#[test]
fn a_capped_insert_buffer_allocates_little_and_iter_committed_needs_a_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let big = Options::with_budget(256 << 20);
    let mut capped = big.clone();
    capped.max_buffer_entries = Some(2_000);
    let mut w = ChunkIndex::open(tmp.path(), capped).expect("open");
    // The buffer holds 2000 entries (48 B slots at 75 % load), not the budget's worth.
    let buffer = w.memory_used() - IO_RESERVE - (big.budget_bytes / 32).min(16 << 20);
    assert!(buffer < 200 << 10, "buffer of {buffer} bytes");
    fill(&mut w, 0..5_000);
    assert!(w.stats().runs >= 1, "the cap flushes to runs");
    assert!(w.iter_committed().is_err(), "buffered entries are refused");
    w.commit(b"c").expect("commit");
    let n = w.iter_committed().expect("iter").count();
    assert_eq!(n, 5_000);
    assert_eq!(w.insert(&key(7), val(8)).expect("insert"), Some(val(7)));
    assert_eq!(w.insert(&key(9_999), val(1)).expect("insert"), None);
    w.commit(b"d").expect("commit");
    w.set_max_buffer_entries(None);
    let grown = w.memory_used();
    assert!(
        grown > 100 << 20,
        "an uncapped buffer takes the budget: {grown}"
    );
    assert!(grown <= big.budget_bytes);
}
