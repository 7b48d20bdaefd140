//! The index against a `BTreeMap` model: random inserts, commits, reopens (crash without
//! commit), retains, clears and lookups; the index must answer exactly like the model.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use tiervault_chunkindex::{ChunkIndex, Options, IO_RESERVE};

fn key(i: u32) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

/// A budget whose insert buffer takes ~1500 entries, so flushes and merges happen often.
fn opts() -> Options {
    let mut o = Options::with_budget(IO_RESERVE + (256 << 10));
    o.cache_bytes = Some(2 * 16 * 4112);
    o.read_threads = 2;
    o
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u32, u8),
    /// Insert `n` keys starting at pool index `start` (forces flushes and merges).
    InsertMany(u32, u32, u8),
    Commit(u8),
    /// Drop the handle without committing and reopen: back to the last commit.
    Reopen,
    /// Keep entries whose value's first byte is not ≡ 0 modulo the argument.
    Retain(u8),
    Clear,
    Get(u32),
    GetMany(Vec<u32>),
    Iter,
}

const POOL: u32 = 6000;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..POOL, any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
        3 => (0..POOL, 1..2500u32, any::<u8>()).prop_map(|(s, n, v)| Op::InsertMany(s, n, v)),
        2 => any::<u8>().prop_map(Op::Commit),
        2 => Just(Op::Reopen),
        1 => (2..6u8).prop_map(Op::Retain),
        1 => prop_oneof![20 => Just(Op::Iter), 1 => Just(Op::Clear)],
        4 => (0..POOL + 100).prop_map(Op::Get),
        2 => proptest::collection::vec(0..POOL + 100, 0..300).prop_map(Op::GetMany),
    ]
}

fn check_all(index: &ChunkIndex, model: &BTreeMap<[u8; 32], [u8; 16]>) {
    assert_eq!(index.len(), model.len() as u64);
    assert!(index.memory_used() <= index.budget());
    for i in (0..POOL).step_by(97) {
        assert_eq!(
            index.get(&key(i)).expect("get"),
            model.get(&key(i)).copied()
        );
    }
}

fn run(dir: &Path, ops: Vec<Op>) {
    let mut index = ChunkIndex::open(dir, opts()).expect("open");
    let mut model: BTreeMap<[u8; 32], [u8; 16]> = BTreeMap::new();
    let mut committed = (model.clone(), Vec::new());
    for op in ops {
        match op {
            Op::Insert(k, v) => {
                let old = index.insert(&key(k), [v; 16]).expect("insert");
                assert_eq!(old, model.insert(key(k), [v; 16]));
            }
            Op::InsertMany(start, n, v) => {
                for k in start..start + n {
                    let val = [v.wrapping_add(k as u8); 16];
                    let old = index.insert(&key(k), val).expect("insert");
                    assert_eq!(old, model.insert(key(k), val));
                }
            }
            Op::Commit(w) => {
                index.commit(&[w; 3]).expect("commit");
                committed = (model.clone(), vec![w; 3]);
            }
            Op::Reopen => {
                drop(index);
                index = ChunkIndex::open(dir, opts()).expect("reopen");
                model = committed.0.clone();
                assert_eq!(index.watermark(), &committed.1[..]);
            }
            Op::Retain(m) => {
                let dropped = index.retain(|_, v| v[0] % m != 0).expect("retain");
                let before = model.len();
                model.retain(|_, v| v[0] % m != 0);
                assert_eq!(dropped, (before - model.len()) as u64);
            }
            Op::Clear => {
                index.clear().expect("clear");
                model.clear();
            }
            Op::Get(k) => {
                assert_eq!(
                    index.get(&key(k)).expect("get"),
                    model.get(&key(k)).copied()
                );
                assert_eq!(
                    index.contains(&key(k)).expect("contains"),
                    model.contains_key(&key(k))
                );
            }
            Op::GetMany(ks) => {
                let keys: Vec<[u8; 32]> = ks.iter().map(|&k| key(k)).collect();
                let want: Vec<Option<[u8; 16]>> =
                    keys.iter().map(|k| model.get(k).copied()).collect();
                assert_eq!(index.get_many(&keys).expect("get_many"), want);
            }
            Op::Iter => {
                let got: Vec<([u8; 32], [u8; 16])> = index
                    .iter()
                    .expect("iter")
                    .collect::<Result<_, _>>()
                    .expect("scan");
                let want: Vec<([u8; 32], [u8; 16])> = model.iter().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(got, want);
            }
        }
        check_all(&index, &model);
    }
    // Finally: a reopen comes back at the last commit.
    drop(index);
    let index = ChunkIndex::open(dir, opts()).expect("final reopen");
    check_all(&index, &committed.0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_a_btreemap(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tmp");
        run(dir.path(), ops);
    }
}
