//! Readers beside the one writer: several processes of a vault look chunks up while one of
//! them maintains the index.

use tiervault_chunkindex::{ChunkIndex, Error, Options, IO_RESERVE};

fn key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

fn val(i: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// A small budget, so a few thousand inserts flush and merge runs.
fn small() -> Options {
    let mut o = Options::with_budget(IO_RESERVE + (512 << 10));
    o.cache_bytes = Some(0);
    o
}

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
