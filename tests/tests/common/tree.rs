//! Random file trees for property tests: a proptest strategy producing a [`TreeSpec`] (a plain
//! value, so proptest can shrink it) and [`build`], which writes it to disk.
//!
//! The trees cover what a backup must keep: names of any byte but `/` and NUL (non-UTF-8,
//! leading dashes, spaces, newlines), empty to multi-MiB files skewed to small, sparse files
//! (leading/trailing holes, all-hole files), explicit zeros, symlinks (dangling or not),
//! hard-link groups of 2–3, empty directories, fifos, odd modes (set-id, sticky, 0o000),
//! nanosecond mtimes before 1970 and after 2100, `user.` xattrs and, as root, other owners.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::fsx::{self, InodeMeta};
use super::gen::{self, Kind};

/// Bytes written per generated tree at most; later files are cut to 4 KiB beyond it, so that
/// an unlucky draw of many large files cannot slow the suite down.
pub const MAX_TREE_BYTES: u64 = 24 << 20;

/// A file name: any bytes but `/` and NUL, never `.` or `..`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Name(pub Vec<u8>);

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", fsx::show(&self.0))
    }
}

/// How a file's bytes are laid out.
#[derive(Clone, Debug)]
pub enum Layout {
    /// Data from 0 to the size.
    Dense,
    /// A hole of the file's size with data segments `(offset = index into the size, length)`;
    /// no segments gives an all-hole file.
    Sparse(Vec<(Index, u64)>),
}

#[derive(Clone, Debug)]
pub struct FileSpec {
    pub size: u64,
    pub kind: Kind,
    pub seed: u64,
    pub layout: Layout,
    pub meta: InodeMeta,
}

/// A symlink's target.
#[derive(Clone, Debug)]
pub enum Target {
    /// Another entry of the same directory (or `.` when there is none): not dangling.
    Sibling(Index),
    /// Raw bytes: almost surely dangling.
    Raw(Vec<u8>),
}

#[derive(Clone, Debug)]
pub enum Node {
    File(FileSpec),
    Dir(DirSpec),
    Symlink { target: Target, meta: InodeMeta },
    Fifo(InodeMeta),
}

#[derive(Clone, Debug)]
pub struct DirSpec {
    pub meta: InodeMeta,
    pub entries: BTreeMap<Name, Node>,
}

#[derive(Clone, Debug)]
pub struct TreeSpec {
    pub root: DirSpec,
    /// Extra hard links: (which regular file, which directory), as indexes into the files and
    /// directories in creation order. A file gets at most two extra links (groups of 2–3).
    pub links: Vec<(Index, Index)>,
}

/// The strategy for whole trees.
pub fn tree() -> impl Strategy<Value = TreeSpec> {
    (
        dir(node(), 0..10),
        vec((any::<Index>(), any::<Index>()), 0..4),
    )
        .prop_map(|(root, links)| TreeSpec { root, links })
}

fn node() -> BoxedStrategy<Node> {
    let leaf = prop_oneof![
        10 => file().prop_map(Node::File),
        2 => symlink(),
        1 => meta(Role::Dir).prop_map(|meta| Node::Dir(DirSpec { meta, entries: BTreeMap::new() })),
        1 => meta(Role::Fifo).prop_map(Node::Fifo),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| dir(inner, 0..6).prop_map(Node::Dir))
        .boxed()
}

fn dir(
    inner: impl Strategy<Value = Node>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = DirSpec> {
    (meta(Role::Dir), btree_map(name(), inner, len))
        .prop_map(|(meta, entries)| DirSpec { meta, entries })
}

/// Names skewed towards the awkward bytes.
pub fn name() -> impl Strategy<Value = Name> {
    let byte = prop_oneof![
        6 => b'a'..=b'z',
        1 => Just(b'-'),
        1 => Just(b' '),
        1 => Just(b'\n'),
        1 => Just(b'.'),
        1 => Just(b'\\'),
        2 => 0x80u8..=0xff,
        2 => (1u8..=0xff).prop_filter("no slash", |b| *b != b'/'),
    ];
    vec(byte, 1..16)
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
        .prop_map(Name)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    File,
    Dir,
    Symlink,
    Fifo,
}

fn meta(role: Role) -> impl Strategy<Value = InodeMeta> {
    let mode = match role {
        Role::File | Role::Fifo => prop_oneof![
            4 => Just(0o644u32), 1 => Just(0o600), 1 => Just(0o755), 1 => Just(0o000),
            1 => Just(0o444), 1 => 0u32..0o10000,
        ]
        .boxed(),
        Role::Dir => prop_oneof![
            4 => Just(0o755u32), 1 => Just(0o700), 1 => Just(0o555), 1 => Just(0o1777),
            1 => Just(0o2775), 1 => 0u32..0o10000,
        ]
        .boxed(),
        Role::Symlink => Just(0o777u32).boxed(),
    };
    // Without root, unreadable entries would be skipped by the backup (another test's
    // subject) and could not be cleaned up: keep the owner's permissions.
    let floor = match (fsx::is_root(), role) {
        (true, _) | (false, Role::Symlink) => 0,
        (false, Role::Dir) => 0o700,
        (false, _) => 0o600,
    };
    let mtime = prop_oneof![
        8 => (1_000_000_000i64..1_900_000_000, 0u32..1_000_000_000),
        1 => (-2_000_000_000i64..0, 0u32..1_000_000_000),
        1 => (4_000_000_000i64..7_000_000_000, 0u32..1_000_000_000),
        1 => Just((1_700_000_000i64, 0u32)),
    ];
    let owner = prop_oneof![
        3 => Just(None),
        1 => (select(vec![0u32, 1000, 4242, 65534]), select(vec![0u32, 100, 4242, 65534])).prop_map(Some),
    ];
    let xattrs = if matches!(role, Role::File | Role::Dir) {
        prop_oneof![3 => Just(BTreeMap::new()), 1 => btree_map(xattr_name(), vec(any::<u8>(), 0..48), 1..3)].boxed()
    } else {
        Just(BTreeMap::new()).boxed()
    };
    (mode, mtime, owner, xattrs).prop_map(move |(mode, mtime, owner, xattrs)| InodeMeta {
        mode: mode | floor,
        mtime,
        owner,
        xattrs: xattrs.into_iter().collect(),
    })
}

fn xattr_name() -> impl Strategy<Value = Vec<u8>> {
    let byte = select(b"abcdefghijklmnopqrstuvwxyz0123456789_.-".to_vec());
    vec(byte, 1..10).prop_map(|tail| [b"user.".as_slice(), &tail].concat())
}

fn file() -> impl Strategy<Value = FileSpec> {
    let kind = prop_oneof![5 => Just(Kind::Random), 4 => Just(Kind::Text), 1 => Just(Kind::Zeros)];
    let dense = prop_oneof![
        3 => Just(0u64),
        30 => 1u64..4096,
        10 => 4096u64..262_144,
        3 => 262_144u64..1_048_576,
        1 => 1_048_576u64..3_145_728,
    ]
    .prop_map(|size| (size, Layout::Dense));
    let sparse = (1u64..16 << 20, vec((any::<Index>(), 1u64..262_144), 0..4))
        .prop_map(|(size, segments)| (size, Layout::Sparse(segments)));
    let layout = prop_oneof![12 => dense, 1 => sparse];
    (layout, kind, any::<u64>(), meta(Role::File)).prop_map(|((size, layout), kind, seed, meta)| {
        FileSpec {
            size,
            kind,
            seed,
            layout,
            meta,
        }
    })
}

fn symlink() -> impl Strategy<Value = Node> {
    let target = prop_oneof![
        2 => any::<Index>().prop_map(Target::Sibling),
        1 => vec(1u8..=0xff, 1..40).prop_map(Target::Raw),
        1 => Just(Target::Raw(b"/nonexistent/dangling target".to_vec())),
    ];
    (target, meta(Role::Symlink)).prop_map(|(target, meta)| Node::Symlink { target, meta })
}

/// A deterministic tree for tests that want variety without a property: the strategy sampled
/// with a seeded RNG.
pub fn sample(seed: u64) -> TreeSpec {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    tree()
        .new_tree(&mut runner)
        .expect("sampling the tree strategy")
        .current()
}

/// The proptest configuration of the property tests: `cases` unless `$PROPTEST_CASES` says
/// otherwise; no regression files in the source tree; bounded shrinking, as each case runs
/// vaultctl several times.
pub fn proptest_config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        max_shrink_time: 180_000,
        ..Config::default()
    }
}

/// What [`build`] wrote.
#[derive(Clone, Debug, Default)]
pub struct Built {
    pub files: usize,
    pub dirs: usize,
    /// Bytes of data written (holes excluded).
    pub bytes: u64,
}

/// Writes `spec` at `root` (which must not exist).
pub fn build(spec: &TreeSpec, root: &Path) -> io::Result<Built> {
    let mut st = BuildState::default();
    create_dir(&spec.root, root, &mut st)?;
    add_links(&spec.links, &mut st)?;
    // Metadata last and bottom-up: nothing written afterwards moves a directory's mtime.
    apply_dir_meta(&spec.root, root)?;
    Ok(st.built)
}

#[derive(Default)]
struct BuildState {
    built: Built,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

fn child(dir: &Path, name: &Name) -> PathBuf {
    dir.join(OsStr::from_bytes(&name.0))
}

fn create_dir(spec: &DirSpec, path: &Path, st: &mut BuildState) -> io::Result<()> {
    fs::create_dir(path)?;
    st.dirs.push(path.to_path_buf());
    st.built.dirs += 1;
    for (name, node) in &spec.entries {
        let p = child(path, name);
        match node {
            Node::File(f) => {
                write_file(f, &p, st)?;
                st.files.push(p);
                st.built.files += 1;
            }
            Node::Dir(d) => create_dir(d, &p, st)?,
            Node::Symlink { target, .. } => {
                let bytes = match target {
                    Target::Raw(t) => t.clone(),
                    Target::Sibling(i) => {
                        let others: Vec<&Name> =
                            spec.entries.keys().filter(|n| *n != name).collect();
                        if others.is_empty() {
                            b".".to_vec()
                        } else {
                            others[i.index(others.len())].0.clone()
                        }
                    }
                };
                std::os::unix::fs::symlink(OsStr::from_bytes(&bytes), &p)?;
            }
            Node::Fifo(_) => fsx::make_fifo(&p)?,
        }
    }
    Ok(())
}

fn write_file(spec: &FileSpec, path: &Path, st: &mut BuildState) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let over_budget = st.built.bytes >= MAX_TREE_BYTES;
    match &spec.layout {
        Layout::Dense => {
            let size = if over_budget {
                spec.size.min(4096)
            } else {
                spec.size
            };
            let len = usize::try_from(size).expect("generated sizes fit in memory");
            f.write_all(&gen::content(spec.kind, spec.seed, len))?;
            st.built.bytes += size;
        }
        Layout::Sparse(segments) => {
            for (i, len) in segments
                .iter()
                .take(if over_budget { 0 } else { usize::MAX })
            {
                let offset =
                    i.index(usize::try_from(spec.size).expect("sizes fit in usize")) as u64;
                let len = (*len).min(spec.size - offset);
                let data = gen::content(
                    spec.kind,
                    spec.seed ^ offset,
                    usize::try_from(len).expect("fits"),
                );
                fsx::write_at(&mut f, offset, &data)?;
                st.built.bytes += len;
            }
            f.set_len(spec.size)?;
        }
    }
    Ok(())
}

fn add_links(links: &[(Index, Index)], st: &mut BuildState) -> io::Result<()> {
    let mut extra: BTreeMap<usize, usize> = BTreeMap::new();
    for (n, (file, dir)) in links.iter().enumerate() {
        if st.files.is_empty() {
            break;
        }
        let fi = file.index(st.files.len());
        let count = extra.entry(fi).or_default();
        if *count == 2 {
            continue;
        }
        let link = st.dirs[dir.index(st.dirs.len())].join(format!("hardlink-{n}"));
        if fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        fs::hard_link(&st.files[fi], &link)?;
        *count += 1;
    }
    Ok(())
}

fn apply_dir_meta(spec: &DirSpec, path: &Path) -> io::Result<()> {
    for (name, node) in &spec.entries {
        let p = child(path, name);
        match node {
            Node::File(f) => fsx::apply_meta(&p, &f.meta, false)?,
            Node::Dir(d) => apply_dir_meta(d, &p)?,
            Node::Symlink { meta, .. } => fsx::apply_meta(&p, meta, true)?,
            Node::Fifo(meta) => fsx::apply_meta(&p, meta, false)?,
        }
    }
    fsx::apply_meta(path, &spec.meta, false)
}

/// A plain file for the bulk tests (dedup, crash, concurrency): `count` files of `sizes` bytes
/// spread over subdirectories of 100, each random or text (with probability `random_share`
/// random), all distinct. Returns (path, size) in creation order.
pub fn bulk_files(
    root: &Path,
    count: usize,
    sizes: std::ops::Range<u64>,
    random_share: f64,
    seed: u64,
) -> Vec<(PathBuf, u64)> {
    let mut rng = gen::Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let dir = root.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        let size = sizes.start + rng.below(sizes.end - sizes.start);
        let path = dir.join(format!("f{i:05}.dat"));
        let data = gen::mixed(
            rng.next_u64(),
            usize::try_from(size).expect("fits"),
            random_share,
        );
        fs::write(&path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        out.push((path, size));
    }
    out
}
