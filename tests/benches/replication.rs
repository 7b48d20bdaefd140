//! Replication benchmark: `vaultctl replicate --to tiervault://…` against a real
//! `vault-remoted` on loopback, release binaries, medians of several runs.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-bench cargo bench -p tiervault-e2e --bench replication
//! REPL_BENCH_QUICK=1 REPL_BENCH_RUNS=1 cargo bench -p tiervault-e2e --bench replication
//! ```
//!
//! Environment:
//! - `REPL_BENCH_RUNS` (default 3): repetitions of the measured steps; medians are reported;
//! - `REPL_BENCH_DIR` (default `$TMPDIR/tiervault-repl-bench`): generated trees are cached under
//!   `D/data/`, everything else (vaults, server, certificates) lives in `D/work/`, which is
//!   emptied at the start and removed at the end (kept with `REPL_BENCH_KEEP=1`);
//! - `REPL_BENCH_QUICK=1`: a ~20x smaller smoke run (~50 MB tree, ~15 MB limited subset);
//! - `REPL_BENCH_TREE=DIR`: back up this tree instead. Default: the tree `vaultctl bench`
//!   caches (`/tmp/bench-data/data/{standard,quick}/tree`, or `bench-data/data/…/tree` of the
//!   workspace), else a tree generated here with the test helpers' `tree::bulk_files`
//!   (60,000 files of 0.5-33 KB, ~1 GB, 40 % random / 60 % text; quick: 3,000 files, ~50 MB),
//!   cached under `D/data/generated-{standard,quick}/tree`;
//! - `REPL_BENCH_LIMITED_MB` (default 1000, i.e. the whole standard tree; quick 15): logical
//!   size of the subset replicated with `--limit 50MB/s` (about 10 s of transfer at the
//!   limit, so the fixed round trips of a command weigh as they would in a real
//!   replication, not as in a 3-second one);
//! - `REPL_BENCH_JSON` (default `D/replication-results.json`): the raw figures;
//! - `VAULTCTL_BIN`, `VAULT_REMOTED_BIN`: binaries to use instead of building them (the
//!   bench, compiled in the bench profile, otherwise builds both with `cargo build --release`).
//!
//! Setup (once): a PKI and one server with four fresh tenants per run; a vault (key file) with
//! two snapshots: v1 = a copy of the tree (hard links), v2 = the same copy with every 33rd file
//! (sorted paths) replaced by new content of the same size (~3 %); a second vault with a subset
//! of the tree (every k-th file, ~`REPL_BENCH_LIMITED_MB` MB). The source tree is never
//! written.
//!
//! Each run, each step a separate `vaultctl replicate --json` to a tenant that starts empty:
//! 1. first full replication of v1 (`--snapshot V1`) through a counting proxy (no delay);
//! 2. the same straight to the server (no proxy: what the proxy's copying costs);
//! 3. incremental: plain `replicate` to the tenant of step 1, which sends v2's new blobs;
//! 4. the subset with `--limit 50MB/s` through the proxy without delay;
//! 5. the same through a proxy adding 125 ms each way (250 ms round trip).
//!
//! Figures: wall time around the child process (start, vault open, TLS handshake included);
//! logical MB/s = bytes of the source tree(s) the step's snapshots cover ÷ wall time; stored
//! MB/s = stored (compressed, encrypted) bytes the replicator sent (`bytes_sent`) ÷ wall time;
//! wire = bytes the proxy delivered both ways (TLS and framing included); steady = wire bytes
//! up ÷ time between 10 % and 90 % of them (sampled every 5 ms), i.e. without the start and
//! the final round trips, which the whole-command figures include (4 sequential round trips
//! to a new tenant: TCP, TLS, Hello with the snapshot list and the pipelined vault meta, and
//! PutSnapshot after the last blobs; an existing tenant adds one for Have). CPU: user + system
//! seconds of vaultctl, vault-remoted and this process (the proxy) during each step, from
//! /proc. MB = 10^6 bytes.

// Each bench or test binary uses only part of the shared helpers.
#![allow(dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cli::{check_exit, json_of, snap_id, Vault};
use common::remote::{remoted, ClientCert, Pki, RemoteServer, TenantConf};
use common::{fsx, gen, tree};
use serde_json::{json, Value};
use tiervault_e2e::proxy::{Proxy, ProxyOptions};

const MB: f64 = 1e6;
const LIMIT: &str = "50MB/s";
const DELAY_EACH_WAY: Duration = Duration::from_millis(125);
const TARGET_LOOPBACK_MBPS: f64 = 500.0;
const TARGET_DELAYED_RATIO: f64 = 0.8;
/// The v2 edit rewrites the files whose index in sorted order is a multiple of this.
const EDIT_EVERY: usize = 33;
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// A steady rate is reported only when 10 % to 90 % of the bytes took at least this long.
const STEADY_MIN_S: f64 = 0.25;

// ---------------------------------------------------------------------------------------------
// Configuration

struct Config {
    runs: usize,
    quick: bool,
    dir: PathBuf,
    json_out: PathBuf,
    limited_bytes: u64,
    keep: bool,
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

impl Config {
    fn from_env() -> Config {
        let runs = std::env::var("REPL_BENCH_RUNS")
            .ok()
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| panic!("REPL_BENCH_RUNS={v}: expected a positive integer"))
            })
            .unwrap_or(3);
        let quick = env_flag("REPL_BENCH_QUICK");
        let dir = std::env::var_os("REPL_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("tiervault-repl-bench"));
        let dir = absolute(&dir);
        let json_out = std::env::var_os("REPL_BENCH_JSON")
            .map(|p| absolute(Path::new(&p)))
            .unwrap_or_else(|| dir.join("replication-results.json"));
        let limited_mb = std::env::var("REPL_BENCH_LIMITED_MB")
            .ok()
            .map(|v| {
                v.parse::<u64>().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                    panic!("REPL_BENCH_LIMITED_MB={v}: expected a positive integer")
                })
            })
            .unwrap_or(if quick { 15 } else { 1000 });
        Config {
            runs,
            quick,
            dir,
            json_out,
            limited_bytes: limited_mb * 1_000_000,
            keep: env_flag("REPL_BENCH_KEEP"),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .expect("the current directory")
            .join(p)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// The source tree

/// The generated tree's shape (`tree::bulk_files`).
struct GenSpec {
    files: usize,
    sizes: std::ops::Range<u64>,
    random_share: f64,
    seed: u64,
}

impl GenSpec {
    fn new(quick: bool) -> GenSpec {
        GenSpec {
            files: if quick { 3_000 } else { 60_000 },
            // Mean 16.75 KB: 1.0 GB for 60,000 files, 50 MB for 3,000.
            sizes: 500..33_000,
            random_share: 0.4,
            seed: 0x7265_706c_6265_6e63,
        }
    }

    fn marker(&self) -> String {
        format!(
            "tiervault-e2e tree::bulk_files v1: files={} sizes={}..{} random_share={} seed={:#x}\n",
            self.files, self.sizes.start, self.sizes.end, self.random_share, self.seed
        )
    }
}

/// The tree to back up and where it comes from.
fn resolve_tree(cfg: &Config) -> (PathBuf, String) {
    if let Some(t) = std::env::var_os("REPL_BENCH_TREE") {
        let t = absolute(Path::new(&t));
        assert!(
            t.is_dir(),
            "REPL_BENCH_TREE={}: not a directory",
            t.display()
        );
        return (t, "REPL_BENCH_TREE".to_owned());
    }
    let size = if cfg.quick { "quick" } else { "standard" };
    for base in [
        PathBuf::from("/tmp/bench-data"),
        workspace_root().join("bench-data"),
    ] {
        let t = base.join("data").join(size).join("tree");
        if t.is_dir() && base.join("data").join(size).join("tree.json").is_file() {
            return (
                t,
                format!("`vaultctl bench` {size} tree (TreeSpec::{size}), cached"),
            );
        }
    }
    let spec = GenSpec::new(cfg.quick);
    let root = cfg.dir.join("data").join(format!("generated-{size}"));
    let tree_dir = root.join("tree");
    let marker = root.join("tree.spec");
    let what = format!(
        "generated with tests/tests/common tree::bulk_files ({} files of {}-{} B, {:.0} % random)",
        spec.files,
        spec.sizes.start,
        spec.sizes.end,
        spec.random_share * 100.0
    );
    if fs::read_to_string(&marker).ok().as_deref() == Some(spec.marker().as_str())
        && tree_dir.is_dir()
    {
        return (tree_dir, format!("{what}, cached"));
    }
    eprintln!(
        "[setup] generating the {size} tree in {} …",
        tree_dir.display()
    );
    let _ = fs::remove_file(&marker);
    if tree_dir.exists() {
        fs::remove_dir_all(&tree_dir)
            .unwrap_or_else(|e| panic!("removing {}: {e}", tree_dir.display()));
    }
    fs::create_dir_all(&tree_dir).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
    tree::bulk_files(
        &tree_dir,
        spec.files,
        spec.sizes.clone(),
        spec.random_share,
        spec.seed,
    );
    fs::write(&marker, spec.marker()).expect("writing the generated tree's marker");
    (tree_dir, what)
}

#[derive(Clone, Copy, Default)]
struct TreeStats {
    files: u64,
    bytes: u64,
}

fn tree_stats(root: &Path) -> TreeStats {
    let mut st = TreeStats::default();
    fsx::walk(root, &mut |_, md| {
        if md.is_file() {
            st.files += 1;
            st.bytes += md.len();
        }
    });
    st
}

/// Hard-links (or copies, across file systems) `file` to `dst`.
fn link_or_copy(file: &Path, dst: &Path) {
    if fs::hard_link(file, dst).is_err() {
        fs::copy(file, dst)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", file.display(), dst.display()));
    }
}

/// A copy of the tree `from` at `to` made of hard links (copies across file systems):
/// directories and symlinks are made anew, regular files linked. The source is never written:
/// [`edit_v2`] replaces files by renaming new ones over them.
fn link_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    fsx::walk(from, &mut |path, md| {
        let dst = to.join(path.strip_prefix(from).expect("below the tree"));
        if md.is_dir() {
            fs::create_dir(&dst).unwrap_or_else(|e| panic!("creating {}: {e}", dst.display()));
        } else if md.is_file() {
            link_or_copy(path, &dst);
        } else if md.is_symlink() {
            let target = fs::read_link(path).expect("reading a symlink");
            std::os::unix::fs::symlink(target, &dst)
                .unwrap_or_else(|e| panic!("creating the symlink {}: {e}", dst.display()));
        }
    });
}

/// Hard-links (or copies, across file systems) every `stride`-th regular file of `from` into
/// `to`, same relative paths.
fn link_subset(from: &Path, to: &Path, stride: usize) -> TreeStats {
    let mut st = TreeStats::default();
    for (i, f) in fsx::files_under(from).iter().enumerate() {
        if i % stride != 0 {
            continue;
        }
        let rel = f.strip_prefix(from).expect("below the tree");
        let dst = to.join(rel);
        fs::create_dir_all(dst.parent().expect("a parent"))
            .unwrap_or_else(|e| panic!("creating the parent of {}: {e}", dst.display()));
        link_or_copy(f, &dst);
        st.files += 1;
        st.bytes += fs::metadata(&dst).expect("stat of a subset file").len();
    }
    st
}

/// The v2 edit: rewrites every [`EDIT_EVERY`]-th file (sorted paths) with new content of the
/// same size, written to a new file renamed over the old one (whose inode may be shared with
/// the pristine tree). Returns (files, bytes) rewritten.
fn edit_v2(root: &Path) -> TreeStats {
    let mut st = TreeStats::default();
    for (i, path) in fsx::files_under(root).iter().enumerate() {
        if i % EDIT_EVERY != 0 {
            continue;
        }
        let size = fs::metadata(path).expect("stat of a file to edit").len();
        let data = gen::mixed(
            0x7632_0000_0000 + i as u64,
            usize::try_from(size).expect("fits"),
            0.4,
        );
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".v2-edit");
        fs::write(&tmp, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        fs::rename(&tmp, path).unwrap_or_else(|e| panic!("replacing {}: {e}", path.display()));
        st.files += 1;
        st.bytes += size;
    }
    st
}

// ---------------------------------------------------------------------------------------------
// One measured replication

/// What a step replicates, to where.
struct Step<'a> {
    vault: &'a Vault,
    port: u16,
    ca: &'a Path,
    cert: &'a ClientCert,
    extra: Vec<OsString>,
    /// The counting proxy the connection goes through (`None`: straight to the server).
    proxy: Option<&'a Proxy>,
    /// How long the proxy may still hold our last bytes after the child exits.
    settle: Duration,
    /// Remote tenant directory, to measure its growth.
    tenant_dir: PathBuf,
    /// Logical bytes of the source the replicated snapshots cover.
    logical_bytes: u64,
    /// Stored bytes the step has to send (the snapshots' own `stored_bytes`).
    reference_stored: u64,
}

#[derive(Clone, Debug, Default)]
struct Measured {
    wall_s: f64,
    logical_bytes: u64,
    reference_stored: u64,
    /// The replicator's own counts (`replicate --json`).
    bytes_sent: u64,
    blobs_sent: u64,
    snapshots_sent: u64,
    client_wire_bytes: u64,
    /// Delivered by the proxy (`None` without one).
    wire_up: Option<u64>,
    wire_down: Option<u64>,
    steady_up_mbps: Option<f64>,
    remote_added: u64,
    /// CPU seconds (user + system) of the vaultctl child, of the server and of this process
    /// (the proxy's threads; the 5 ms sampler is negligible) during the step.
    client_cpu_s: f64,
    server_cpu_s: Option<f64>,
    proxy_cpu_s: f64,
}

impl Measured {
    fn logical_mbps(&self) -> f64 {
        self.logical_bytes as f64 / MB / self.wall_s
    }

    fn stored_mbps(&self) -> f64 {
        self.bytes_sent as f64 / MB / self.wall_s
    }

    fn wire(&self) -> Option<u64> {
        Some(self.wire_up? + self.wire_down?)
    }

    fn wire_ratio(&self) -> Option<f64> {
        self.wire()
            .map(|w| w as f64 / self.reference_stored.max(1) as f64)
    }

    fn to_json(&self) -> Value {
        json!({
            "wall_s": self.wall_s,
            "logical_bytes": self.logical_bytes,
            "logical_mbps": self.logical_mbps(),
            "reference_stored_bytes": self.reference_stored,
            "bytes_sent": self.bytes_sent,
            "stored_mbps": self.stored_mbps(),
            "blobs_sent": self.blobs_sent,
            "snapshots_sent": self.snapshots_sent,
            "client_wire_bytes": self.client_wire_bytes,
            "wire_up": self.wire_up,
            "wire_down": self.wire_down,
            "wire_bytes": self.wire(),
            "wire_over_reference_stored": self.wire_ratio(),
            "steady_wire_up_mbps": self.steady_up_mbps,
            "remote_bytes_added": self.remote_added,
            "client_cpu_s": self.client_cpu_s,
            "server_cpu_s": self.server_cpu_s,
            "proxy_cpu_s": self.proxy_cpu_s,
        })
    }
}

fn field(v: &Value, f: &str) -> u64 {
    v[f].as_u64()
        .unwrap_or_else(|| panic!("{f} is not an unsigned integer in {v}"))
}

/// Wire bytes up ÷ the time between 10 % and 90 % of them.
fn steady_rate(samples: &[(f64, u64)], total: u64) -> Option<f64> {
    if total < 1_000_000 {
        return None;
    }
    let at = |share: f64| {
        let want = (total as f64 * share) as u64;
        samples.iter().find(|(_, b)| *b >= want).map(|(t, _)| *t)
    };
    let (t10, t90) = (at(0.1)?, at(0.9)?);
    // Shorter transfers are a few bursts: no steady state to speak of.
    (t90 - t10 >= STEADY_MIN_S).then(|| total as f64 * 0.8 / MB / (t90 - t10))
}

fn replicate(step: &Step<'_>) -> Measured {
    let url = format!("tiervault://127.0.0.1:{}", step.port);
    let mut args: Vec<OsString> = vec![
        "replicate".into(),
        "--to".into(),
        url.into(),
        "--ca".into(),
        step.ca.into(),
        "--cert".into(),
        step.cert.cert.clone().into(),
        "--key".into(),
        step.cert.key.clone().into(),
    ];
    args.extend(step.extra.iter().cloned());
    args.push("--json".into());
    let what = format!(
        "vaultctl {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );

    let remote_before = dir_bytes(&step.tenant_dir);
    // No write-back of an earlier step overlaps this one.
    rustix::fs::sync();
    if let Some(p) = step.proxy {
        p.reset_counts();
    }
    let cpu_before = self_cpu();
    let server_before = server_cpu();
    let mut cmd = step.vault.command(&args);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (out, wall, samples) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut v = Vec::new();
            if let Some(p) = step.proxy {
                while !stop.load(Ordering::Relaxed) {
                    v.push((start.elapsed().as_secs_f64(), p.bytes_up()));
                    std::thread::sleep(SAMPLE_EVERY);
                }
            }
            v
        });
        let out = cmd.output();
        let wall = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        (out, wall, sampler.join().expect("the sampler thread"))
    });
    let cpu_after = self_cpu();
    let server_after = server_cpu();
    let out = out.unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    check_exit(&out, 0, &what);
    let report = json_of(&out, &what);
    // Our TLS close may still be in the proxy's delay queue.
    std::thread::sleep(step.settle);
    let (wire_up, wire_down) = match step.proxy {
        Some(p) => (Some(p.bytes_up()), Some(p.bytes_down())),
        None => (None, None),
    };
    Measured {
        wall_s: wall.as_secs_f64(),
        logical_bytes: step.logical_bytes,
        reference_stored: step.reference_stored,
        bytes_sent: field(&report, "bytes_sent"),
        blobs_sent: field(&report, "blobs_sent"),
        snapshots_sent: field(&report, "snapshots_sent"),
        client_wire_bytes: field(&report, "wire_bytes"),
        wire_up,
        wire_down,
        steady_up_mbps: wire_up.and_then(|up| steady_rate(&samples, up)),
        remote_added: dir_bytes(&step.tenant_dir).saturating_sub(remote_before),
        client_cpu_s: cpu_after.children - cpu_before.children,
        server_cpu_s: server_before.zip(server_after).map(|(b, a)| a - b),
        proxy_cpu_s: cpu_after.own - cpu_before.own,
    }
}

/// `/proc` reports CPU times in USER_HZ ticks, 100 per second on Linux whatever the kernel's HZ.
const USER_HZ: f64 = 100.0;

/// The fields of `/proc/PID/stat` after the command name (field 3, the state, is index 0).
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn ticks(fields: &[String], index: usize) -> f64 {
    fields
        .get(index)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0.0, |t| t as f64 / USER_HZ)
}

#[derive(Clone, Copy)]
struct SelfCpu {
    /// utime + stime of this process (every thread).
    own: f64,
    /// cutime + cstime: children waited for.
    children: f64,
}

fn self_cpu() -> SelfCpu {
    let f = stat_fields("self").unwrap_or_default();
    SelfCpu {
        own: ticks(&f, 11) + ticks(&f, 12),
        children: ticks(&f, 13) + ticks(&f, 14),
    }
}

/// utime + stime of our `vault-remoted` child (found by parent pid and name).
fn server_cpu() -> Option<f64> {
    let me = std::process::id().to_string();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "vault-remoted" {
            continue;
        }
        if let Some(f) = stat_fields(pid) {
            if f.get(1) == Some(&me) {
                return Some(ticks(&f, 11) + ticks(&f, 12));
            }
        }
    }
    None
}

fn dir_bytes(p: &Path) -> u64 {
    if p.is_dir() {
        fsx::file_bytes(p)
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting

#[derive(Clone, Default)]
struct Run {
    full: Measured,
    direct: Measured,
    incremental: Measured,
    limited_loopback: Measured,
    limited_delayed: Measured,
}

impl Run {
    fn delayed_ratio(&self) -> f64 {
        self.limited_delayed.stored_mbps() / self.limited_loopback.stored_mbps()
    }

    fn steady_ratio(&self) -> Option<f64> {
        Some(self.limited_delayed.steady_up_mbps? / self.limited_loopback.steady_up_mbps?)
    }

    fn steps(&self) -> [(&'static str, &'static str, &Measured); 5] {
        [
            ("full", "first full (v1), proxy", &self.full),
            ("full_direct", "first full (v1), no proxy", &self.direct),
            ("incremental", "incremental (v2), proxy", &self.incremental),
            (
                "limited_loopback",
                "subset, --limit 50MB/s, proxy",
                &self.limited_loopback,
            ),
            (
                "limited_rtt250",
                "subset, --limit 50MB/s, 250 ms RTT",
                &self.limited_delayed,
            ),
        ]
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.into_iter().collect::<Option<_>>()?;
    Some(median(v))
}

/// The medians of one step's figures over the runs (each figure separately).
struct Medians {
    wall_s: f64,
    logical_mbps: f64,
    stored_mbps: f64,
    reference_stored: f64,
    bytes_sent: f64,
    wire: Option<f64>,
    wire_ratio: Option<f64>,
    steady: Option<f64>,
    client_cpu_s: f64,
    server_cpu_s: Option<f64>,
    proxy_cpu_s: f64,
}

impl Medians {
    fn of(ms: &[&Measured]) -> Medians {
        let m = |f: &dyn Fn(&Measured) -> f64| median(ms.iter().map(|x| f(x)).collect());
        let mo =
            |f: &dyn Fn(&Measured) -> Option<f64>| median_opt(ms.iter().map(|x| f(x)).collect());
        Medians {
            wall_s: m(&|x| x.wall_s),
            logical_mbps: m(&|x| x.logical_mbps()),
            stored_mbps: m(&|x| x.stored_mbps()),
            reference_stored: m(&|x| x.reference_stored as f64),
            bytes_sent: m(&|x| x.bytes_sent as f64),
            wire: mo(&|x| x.wire().map(|w| w as f64)),
            wire_ratio: mo(&|x| x.wire_ratio()),
            steady: mo(&|x| x.steady_up_mbps),
            client_cpu_s: m(&|x| x.client_cpu_s),
            server_cpu_s: mo(&|x| x.server_cpu_s),
            proxy_cpu_s: m(&|x| x.proxy_cpu_s),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "wall_s": self.wall_s,
            "logical_mbps": self.logical_mbps,
            "stored_mbps": self.stored_mbps,
            "reference_stored_bytes": self.reference_stored,
            "bytes_sent": self.bytes_sent,
            "wire_bytes": self.wire,
            "wire_over_reference_stored": self.wire_ratio,
            "steady_wire_up_mbps": self.steady,
            "client_cpu_s": self.client_cpu_s,
            "server_cpu_s": self.server_cpu_s,
            "proxy_cpu_s": self.proxy_cpu_s,
        })
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

const HEADER: &str = "| step | wall s | logical MB/s | stored MB/s | stored MB to send | sent MB | wire MB (up+down) | wire ÷ stored | steady wire-up MB/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";

#[allow(clippy::too_many_arguments)]
fn row(
    out: &mut String,
    label: &str,
    wall: f64,
    logical: f64,
    stored: f64,
    reference: f64,
    sent: f64,
    wire: Option<f64>,
    ratio: Option<f64>,
    steady: Option<f64>,
) {
    let _ = writeln!(
        out,
        "| {label} | {wall:.2} | {logical:.1} | {stored:.1} | {:.1} | {:.1} | {} | {} | {} |",
        reference / MB,
        sent / MB,
        opt(wire, |w| format!("{:.1}", w / MB)),
        opt(ratio, |r| format!("{r:.3}")),
        opt(steady, |s| format!("{s:.1}")),
    );
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

// ---------------------------------------------------------------------------------------------
// Machine and commit

fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let os = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default();
    json!({
        "cpu_model": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "ram_gib": ram_kib.map(|k| k as f64 / (1024.0 * 1024.0)),
        "kernel": kernel,
        "os": os,
    })
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(workspace_root())
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `git rev-parse --short HEAD`, with `+dirty` when tracked files differ from it.
fn commit() -> String {
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if !s.is_empty() => format!("{head}+dirty"),
        _ => head,
    }
}

fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The bench

fn backup_timed(vault: &Vault, path: &Path) -> (Value, f64) {
    rustix::fs::sync();
    let start = Instant::now();
    let snap = vault.backup(&[path]);
    (snap, start.elapsed().as_secs_f64())
}

fn stored_of(snap: &Value) -> u64 {
    snap["summary"]["stored_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("backup summary without stored_bytes: {snap}"))
}

struct Tenants {
    full: ClientCert,
    direct: ClientCert,
    limited_loopback: ClientCert,
    limited_delayed: ClientCert,
}

fn tenant_names(run: usize) -> [String; 4] {
    [
        format!("full-{run}"),
        format!("direct-{run}"),
        format!("limit-loop-{run}"),
        format!("limit-rtt-{run}"),
    ]
}

fn bench(cfg: &Config) -> Value {
    let started = Instant::now();
    // Build (or locate) both binaries before anything is timed.
    let vaultctl_bin = common::vaultctl().to_path_buf();
    let remoted_bin = remoted().to_path_buf();
    for (name, bin) in [("vaultctl", &vaultctl_bin), ("vault-remoted", &remoted_bin)] {
        eprintln!("[setup] {name}: {}", bin.display());
        if !bin.components().any(|c| c.as_os_str() == "release") {
            eprintln!("[setup] WARNING: {name} does not look like a release build");
        }
    }
    let build_s = started.elapsed().as_secs_f64();
    let setup_start = Instant::now();
    let (tree_dir, tree_source) = resolve_tree(cfg);
    let v1_tree = tree_stats(&tree_dir);
    eprintln!(
        "[setup] tree {} ({}): {} files, {:.1} MB",
        tree_dir.display(),
        tree_source,
        v1_tree.files,
        v1_tree.bytes as f64 / MB
    );

    // The main vault: v1 = a copy of the tree, v2 = the copy edited.
    let vault = Vault::new();
    let src = vault.scratch("src");
    eprintln!("[setup] linking the tree to {} …", src.display());
    link_tree(&tree_dir, &src);
    eprintln!("[setup] backing up v1 …");
    let (v1, v1_backup_s) = backup_timed(&vault, &src);
    let v1_id = snap_id(&v1);
    let v1_stored = stored_of(&v1);

    // The subset for the bandwidth-limited steps, from the pristine tree.
    let subset = Vault::new();
    let subset_src = subset.scratch("src");
    let stride = ((v1_tree.bytes as f64 / cfg.limited_bytes as f64).round() as usize).max(1);
    let subset_tree = link_subset(&tree_dir, &subset_src, stride);
    eprintln!(
        "[setup] backing up the subset (1 file in {stride}: {} files, {:.1} MB) …",
        subset_tree.files,
        subset_tree.bytes as f64 / MB
    );
    let (subset_snap, _) = backup_timed(&subset, &subset_src);
    let subset_stored = stored_of(&subset_snap);

    eprintln!("[setup] v2 edit and backup …");
    let edited = edit_v2(&src);
    let v2_tree = tree_stats(&src);
    let (v2, v2_backup_s) = backup_timed(&vault, &src);
    let v2_stored = stored_of(&v2);
    let vault_bytes = fsx::file_bytes(&vault.dir);

    // Server, certificates, proxies.
    eprintln!("[setup] PKI, server, proxies …");
    let pki = Pki::new();
    let mut confs = Vec::new();
    for run in 1..=cfg.runs {
        confs.extend(tenant_names(run).iter().map(|n| TenantConf::new(n)));
    }
    let server = RemoteServer::start(&pki, &confs);
    let tenants: Vec<Tenants> = (1..=cfg.runs)
        .map(|run| {
            let [a, b, c, d] = tenant_names(run);
            Tenants {
                full: pki.client(&a),
                direct: pki.client(&b),
                limited_loopback: pki.client(&c),
                limited_delayed: pki.client(&d),
            }
        })
        .collect();
    let loopback = Proxy::start(server.addr(), ProxyOptions::default()).expect("starting a proxy");
    let delayed = Proxy::start(
        server.addr(),
        ProxyOptions {
            delay_each_way: DELAY_EACH_WAY,
        },
    )
    .expect("starting a delaying proxy");
    let ca = pki.ca_pem();
    let setup_s = setup_start.elapsed().as_secs_f64();
    let runs_start = Instant::now();

    let limit_args: Vec<OsString> = vec!["--limit".into(), LIMIT.into()];
    let mut runs = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        let run = i + 1;
        let [full_t, direct_t, limloop_t, limrtt_t] = tenant_names(run);
        let only_v1: Vec<OsString> = vec!["--snapshot".into(), v1_id.clone().into()];
        eprintln!("[run {run}/{}] first full replication …", cfg.runs);
        let full = replicate(&Step {
            vault: &vault,
            port: loopback.addr().port(),
            ca: &ca,
            cert: &t.full,
            extra: only_v1.clone(),
            proxy: Some(&loopback),
            settle: Duration::ZERO,
            tenant_dir: server.tenant_dir(&full_t),
            logical_bytes: v1_tree.bytes,
            reference_stored: v1_stored,
        });
        assert_eq!(full.snapshots_sent, 1, "first full replication: {full:?}");
        eprintln!(
            "[run {run}/{}] first full replication, no proxy …",
            cfg.runs
        );
        let direct = replicate(&Step {
            vault: &vault,
            port: server.addr().port(),
            ca: &ca,
            cert: &t.direct,
            extra: only_v1,
            proxy: None,
            settle: Duration::ZERO,
            tenant_dir: server.tenant_dir(&direct_t),
            logical_bytes: v1_tree.bytes,
            reference_stored: v1_stored,
        });
        eprintln!("[run {run}/{}] incremental replication …", cfg.runs);
        let incremental = replicate(&Step {
            vault: &vault,
            port: loopback.addr().port(),
            ca: &ca,
            cert: &t.full,
            extra: Vec::new(),
            proxy: Some(&loopback),
            settle: Duration::ZERO,
            tenant_dir: server.tenant_dir(&full_t),
            logical_bytes: v2_tree.bytes,
            reference_stored: v2_stored,
        });
        assert_eq!(
            incremental.snapshots_sent, 1,
            "incremental replication: {incremental:?}"
        );
        eprintln!("[run {run}/{}] limited, loopback …", cfg.runs);
        let limited_loopback = replicate(&Step {
            vault: &subset,
            port: loopback.addr().port(),
            ca: &ca,
            cert: &t.limited_loopback,
            extra: limit_args.clone(),
            proxy: Some(&loopback),
            settle: Duration::ZERO,
            tenant_dir: server.tenant_dir(&limloop_t),
            logical_bytes: subset_tree.bytes,
            reference_stored: subset_stored,
        });
        eprintln!("[run {run}/{}] limited, 250 ms RTT …", cfg.runs);
        let limited_delayed = replicate(&Step {
            vault: &subset,
            port: delayed.addr().port(),
            ca: &ca,
            cert: &t.limited_delayed,
            extra: limit_args.clone(),
            proxy: Some(&delayed),
            settle: DELAY_EACH_WAY * 2 + Duration::from_millis(20),
            tenant_dir: server.tenant_dir(&limrtt_t),
            logical_bytes: subset_tree.bytes,
            reference_stored: subset_stored,
        });
        runs.push(Run {
            full,
            direct,
            incremental,
            limited_loopback,
            limited_delayed,
        });
    }
    let runs_s = runs_start.elapsed().as_secs_f64();
    let total_s = started.elapsed().as_secs_f64();

    // Report.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Replication benchmark{} — {} run(s), commit {}\n",
        if cfg.quick { " (QUICK smoke run)" } else { "" },
        cfg.runs,
        commit()
    );
    let _ = writeln!(
        out,
        "tree: {} ({tree_source}): {} files, {:.1} MB; v1 stored {:.1} MB (backup {v1_backup_s:.2} s)",
        tree_dir.display(),
        v1_tree.files,
        v1_tree.bytes as f64 / MB,
        v1_stored as f64 / MB
    );
    let _ = writeln!(
        out,
        "v2: {} files rewritten (1 in {EDIT_EVERY}, same sizes, {:.1} MB), new stored {:.1} MB (backup {v2_backup_s:.2} s); vault {:.1} MB on disk",
        edited.files,
        edited.bytes as f64 / MB,
        v2_stored as f64 / MB,
        vault_bytes as f64 / MB
    );
    let _ = writeln!(
        out,
        "limited steps replicate a subset (1 file in {stride}): {} files, {:.1} MB logical, {:.1} MB stored; limit {LIMIT}, delay {} ms each way",
        subset_tree.files,
        subset_tree.bytes as f64 / MB,
        subset_stored as f64 / MB,
        DELAY_EACH_WAY.as_millis()
    );
    let _ = writeln!(
        out,
        "logical MB/s = source bytes ÷ wall; stored MB/s = stored bytes sent (replicator's bytes_sent) ÷ wall; wire = proxy-delivered bytes both ways; \"stored MB to send\" = the snapshots' stored_bytes; steady = wire-up bytes between 10 % and 90 % ÷ their time\n"
    );
    let _ = writeln!(out, "### Medians of {} run(s)\n", cfg.runs);
    out.push_str(HEADER);
    let labels = Run::default().steps().map(|(key, label, _)| (key, label));
    let mut median_json = serde_json::Map::new();
    let mut cpu = String::from(
        "\n### CPU seconds during each step (medians; user + system)\n\n| step | wall s | vaultctl | vault-remoted | proxy | cores busy |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (k, (key, label)) in labels.iter().enumerate() {
        let ms: Vec<&Measured> = runs.iter().map(|r| r.steps()[k].2).collect();
        let m = Medians::of(&ms);
        row(
            &mut out,
            label,
            m.wall_s,
            m.logical_mbps,
            m.stored_mbps,
            m.reference_stored,
            m.bytes_sent,
            m.wire,
            m.wire_ratio,
            m.steady,
        );
        median_json.insert((*key).to_owned(), m.to_json());
        let busy = (m.client_cpu_s + m.server_cpu_s.unwrap_or(0.0) + m.proxy_cpu_s) / m.wall_s;
        let _ = writeln!(
            cpu,
            "| {label} | {:.2} | {:.2} | {} | {:.2} | {busy:.2} |",
            m.wall_s,
            m.client_cpu_s,
            opt(m.server_cpu_s, |c| format!("{c:.2}")),
            m.proxy_cpu_s,
        );
    }
    out.push_str(&cpu);
    let ratio = median(runs.iter().map(Run::delayed_ratio).collect());
    let steady_ratio = median_opt(runs.iter().map(Run::steady_ratio).collect());
    let full_m = Medians::of(&runs.iter().map(|r| &r.full).collect::<Vec<_>>());
    let direct_m = Medians::of(&runs.iter().map(|r| &r.direct).collect::<Vec<_>>());
    let incr_m = Medians::of(&runs.iter().map(|r| &r.incremental).collect::<Vec<_>>());

    let _ = writeln!(out, "\n### Every run\n");
    out.push_str(HEADER);
    for (i, r) in runs.iter().enumerate() {
        for (_, label, m) in r.steps() {
            row(
                &mut out,
                &format!("run {}: {label}", i + 1),
                m.wall_s,
                m.logical_mbps(),
                m.stored_mbps(),
                m.reference_stored as f64,
                m.bytes_sent as f64,
                m.wire().map(|w| w as f64),
                m.wire_ratio(),
                m.steady_up_mbps,
            );
        }
        let _ = writeln!(
            out,
            "| run {}: 250 ms RTT ÷ loopback at {LIMIT} | {:.3} (steady {}) | | | | | | | |",
            i + 1,
            r.delayed_ratio(),
            opt(r.steady_ratio(), |s| format!("{s:.3}")),
        );
    }

    // A quick run is too small to judge: start-up and round trips dominate.
    let verdict = |ok: bool| {
        if cfg.quick {
            "not judged (quick run)"
        } else {
            met(ok)
        }
    };
    let _ = writeln!(out, "\n### Targets\n");
    let _ = writeln!(
        out,
        "- loopback ≥ {TARGET_LOOPBACK_MBPS:.0} MB/s, first full: stored {:.1} MB/s ({}), logical {:.1} MB/s ({}); without the proxy: stored {:.1}, logical {:.1} MB/s",
        full_m.stored_mbps,
        verdict(full_m.stored_mbps >= TARGET_LOOPBACK_MBPS),
        full_m.logical_mbps,
        verdict(full_m.logical_mbps >= TARGET_LOOPBACK_MBPS),
        direct_m.stored_mbps,
        direct_m.logical_mbps,
    );
    let _ = writeln!(
        out,
        "- wire ÷ stored: first full {}, incremental {} (wire bytes ÷ the v2 snapshot's new stored bytes; tests/tests/replicate_remote.rs bounds it at 1.1)",
        opt(full_m.wire_ratio, |r| format!("{r:.3}")),
        opt(incr_m.wire_ratio, |r| format!("{r:.3}")),
    );
    let _ = writeln!(
        out,
        "- 250 ms RTT ≥ {:.0} % of loopback at {LIMIT}: whole command {:.1} % ({}), steady state {} ({})",
        TARGET_DELAYED_RATIO * 100.0,
        ratio * 100.0,
        verdict(ratio >= TARGET_DELAYED_RATIO),
        opt(steady_ratio, |r| format!("{:.1} %", r * 100.0)),
        steady_ratio.map_or("-", |r| verdict(r >= TARGET_DELAYED_RATIO)),
    );
    if cfg.quick {
        let _ = writeln!(
            out,
            "- QUICK run: the datasets are ~20x smaller, so start-up and round trips dominate; the figures only show that the bench works"
        );
    }
    let _ = writeln!(
        out,
        "\nbinaries {build_s:.1} s, setup {setup_s:.1} s, measured runs {runs_s:.1} s, total {total_s:.1} s; raw figures: {}",
        cfg.json_out.display()
    );
    println!("{out}");

    json!({
        "schema": "tiervault-replication-bench/1",
        "commit": commit(),
        "machine": machine(),
        "vaultctl": { "path": vaultctl_bin, "version": version(&vaultctl_bin) },
        "vault_remoted": { "path": remoted_bin, "version": version(&remoted_bin) },
        "config": {
            "runs": cfg.runs,
            "quick": cfg.quick,
            "limit": LIMIT,
            "delay_each_way_ms": DELAY_EACH_WAY.as_millis() as u64,
            "edit_every": EDIT_EVERY,
        },
        "notes": [
            "wall_s: around the vaultctl replicate child process (start, vault open, TLS handshake included)",
            "logical_mbps: logical_bytes (source tree bytes the replicated snapshots cover) / wall_s, MB = 1e6 bytes",
            "stored_mbps: bytes_sent (stored bytes of the blobs the replicator sent, its own count) / wall_s",
            "wire_*: bytes delivered by the counting proxy (TLS and framing included); null without a proxy",
            "wire_over_reference_stored: wire bytes / reference_stored_bytes (the replicated snapshots' summary.stored_bytes)",
            "steady_wire_up_mbps: wire bytes up between 10 % and 90 % of the total / the time between them (5 ms sampling)",
            "medians: each figure's median over the runs, separately",
            "*_cpu_s: user + system CPU seconds during the step, from /proc (10 ms resolution): the vaultctl child, the vault-remoted server, this process (the proxy's threads)",
        ],
        "dataset": {
            "tree": tree_dir,
            "source": tree_source,
            "v1": { "files": v1_tree.files, "bytes": v1_tree.bytes, "stored_bytes": v1_stored, "backup_s": v1_backup_s, "snapshot": v1_id },
            "v2": { "files": v2_tree.files, "bytes": v2_tree.bytes, "rewritten_files": edited.files, "rewritten_bytes": edited.bytes, "stored_bytes": v2_stored, "backup_s": v2_backup_s, "snapshot": snap_id(&v2) },
            "vault_bytes": vault_bytes,
            "subset": { "stride": stride, "files": subset_tree.files, "bytes": subset_tree.bytes, "stored_bytes": subset_stored },
        },
        "runs": runs.iter().map(|r| {
            let mut m = serde_json::Map::new();
            for (key, _, s) in r.steps() {
                m.insert(key.to_owned(), s.to_json());
            }
            m.insert("limited_rtt250_over_loopback".to_owned(), json!(r.delayed_ratio()));
            m.insert("limited_rtt250_over_loopback_steady".to_owned(), json!(r.steady_ratio()));
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "medians": {
            "steps": median_json,
            "limited_rtt250_over_loopback": ratio,
            "limited_rtt250_over_loopback_steady": steady_ratio,
        },
        "targets": {
            "judged": !cfg.quick,
            "loopback_full_stored_mbps_ge_500": full_m.stored_mbps >= TARGET_LOOPBACK_MBPS,
            "loopback_full_logical_mbps_ge_500": full_m.logical_mbps >= TARGET_LOOPBACK_MBPS,
            "rtt250_ratio_ge_0_8": ratio >= TARGET_DELAYED_RATIO,
            "rtt250_steady_ratio_ge_0_8": steady_ratio.map(|r| r >= TARGET_DELAYED_RATIO),
        },
        "build_s": build_s,
        "setup_s": setup_s,
        "runs_s": runs_s,
        "total_s": total_s,
    })
}

fn main() {
    let cfg = Config::from_env();
    let work = cfg.dir.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).unwrap_or_else(|e| panic!("emptying {}: {e}", work.display()));
    }
    let tmp = work.join("tmp");
    fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("creating {}: {e}", tmp.display()));
    // Every vault, certificate and the server's data directory go below D/work (the helpers
    // make temporary directories). Set before any thread starts.
    std::env::set_var("TMPDIR", &tmp);

    let doc = bench(&cfg);
    if let Some(parent) = cfg.json_out.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    let text = serde_json::to_string_pretty(&doc).expect("serialising the results");
    fs::write(&cfg.json_out, text + "\n")
        .unwrap_or_else(|e| panic!("writing {}: {e}", cfg.json_out.display()));
    if !cfg.keep {
        let _ = fs::remove_dir_all(&work);
    }
}
