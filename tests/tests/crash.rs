//! Crash consistency: `vaultctl backup` killed with SIGKILL at random moments never damages the
//! vault. Every kill starts from the same committed state (a copy of the vault), so the kill
//! moments sample the whole timeline of a full backup, not a backup shortened by the chunks an
//! earlier killed run already stored (or skipped by change detection once one run committed).
//! After each kill `verify` must pass; at the end the earlier snapshots restore identically and
//! an uninterrupted backup still commits.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cli::snap_id;
use common::gen::Rng;
use common::{assert_same_tree, check_exit, describe, fsx, gen, tree, Vault};

/// At least this many SIGKILLs must land on a running backup.
const KILLS: usize = 20;
/// Draws of a kill moment at most (some land after a fast run has finished).
const MAX_ATTEMPTS: usize = 40;

/// Size of the big tree, MiB (`$TIERVAULT_E2E_CRASH_MB` overrides): several 32 MiB packs.
fn big_tree_mib() -> u64 {
    std::env::var("TIERVAULT_E2E_CRASH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240)
}

/// Copies a vault: packs (immutable once renamed into place, docs/format.md §5 and §9) are
/// hard-linked to save time and space; every other file is copied, so that nothing a vault
/// process might rewrite is shared between copies.
fn copy_vault(src: &Path, dst: &Path) {
    fs::create_dir(dst).unwrap_or_else(|e| panic!("creating {}: {e}", dst.display()));
    fsx::walk(src, &mut |path, md| {
        let rel = path.strip_prefix(src).expect("under the vault");
        let to = dst.join(rel);
        let is_pack = rel.starts_with("data")
            && rel.components().count() == 3
            && !rel.starts_with("data/tmp");
        let res = if md.is_dir() {
            fs::create_dir(&to)
        } else if is_pack {
            fs::hard_link(path, &to)
        } else {
            fs::copy(path, &to).map(|_| ())
        };
        res.unwrap_or_else(|e| panic!("copying {} to {}: {e}", path.display(), to.display()));
    });
}

/// True when a file exists under `<vault>/data/tmp/`: a pack is being written.
fn pack_in_progress(vault: &Path) -> bool {
    fs::read_dir(vault.join("data/tmp"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// Snapshot ids the vault lists.
fn snapshot_ids(vault: &Vault) -> Vec<String> {
    vault.snapshots().iter().map(snap_id).collect()
}

/// Modifies the small tree between the earlier snapshots: rewrite, add, remove, chmod, touch.
fn edit_tree(root: &Path, round: u64) {
    let mut files = fsx::files_under(root);
    files.retain(|p| {
        fs::symlink_metadata(p)
            .map(|m| m.nlink() == 1)
            .unwrap_or(false)
    });
    let mut rng = Rng::new(round);
    for (i, p) in files.iter().enumerate() {
        match rng.below(6) {
            0 => fs::write(p, gen::mixed(round * 1000 + i as u64, 10_000 + i * 7, 0.5))
                .expect("rewrite"),
            1 if i % 2 == 0 => fs::remove_file(p).expect("remove"),
            2 => fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o640))
                .expect("chmod"),
            3 => fsx::set_mtime(p, 1_650_000_000 + round as i64, 42).expect("touch"),
            _ => {}
        }
    }
    let added = root.join(format!("added-in-round-{round}"));
    fs::write(&added, gen::mixed(round, 70_000, 0.3)).expect("adding a file");
}

/// What the kill attempts came to.
#[derive(Debug, Default)]
struct Tally {
    /// SIGKILLs that landed on a running backup.
    kills: usize,
    /// Of those, kills while a file existed under `<vault>/data/tmp/`.
    mid_pack: usize,
    /// Runs that finished before their kill moment.
    finished: usize,
}

/// Starts `backup BIG` in vault `v`, SIGKILLs it after `delay` unless it has finished, and
/// checks that the vault is undamaged: `verify` exits 0 and the `earlier` snapshots are listed.
fn kill_and_check(
    v: &Vault,
    big: &Path,
    delay: Duration,
    earlier: &[(String, PathBuf)],
    tally: &mut Tally,
) {
    let mut child = v
        .command(["backup".as_ref(), big.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning vaultctl backup");
    std::thread::sleep(delay);
    if child.try_wait().expect("polling the backup").is_some() {
        let out = child.wait_with_output().expect("collecting the backup");
        check_exit(&out, 0, "an uninterrupted backup of the big tree");
        tally.finished += 1;
    } else {
        // Checked right before the kill: is a pack being written at that moment?
        let writing = pack_in_progress(&v.dir);
        child.kill().expect("sending SIGKILL");
        let out = child.wait_with_output().expect("reaping the killed backup");
        match out.status.code() {
            None => {
                tally.kills += 1;
                tally.mid_pack += usize::from(writing);
            }
            // It finished between the poll and the kill.
            Some(0) => tally.finished += 1,
            Some(_) => panic!(
                "the backup to be killed failed on its own; {}",
                describe(&out)
            ),
        }
    }
    // A killed backup is not damage.
    let verify = v.run(["verify"]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "verify of {} after a backup killed at {delay:?}: {}",
        v.dir.display(),
        describe(&verify)
    );
    let ids = snapshot_ids(v);
    for (id, _) in earlier {
        assert!(
            ids.contains(id),
            "snapshot {id} missing after a kill at {delay:?}: {ids:?}"
        );
    }
}

#[test]
fn sigkilled_backups_never_damage_the_vault() {
    let base = Vault::new();

    // 1. Earlier snapshots of a small tree and its edited versions, with reference copies.
    let small = base.scratch("small");
    tree::build(&tree::sample(7), &small).expect("building the small tree");
    tree::bulk_files(&small.join("bulk"), 60, 1000..200_000, 0.5, 7);
    let mut earlier: Vec<(String, PathBuf)> = Vec::new();
    for round in 0..3u64 {
        if round > 0 {
            edit_tree(&small, round);
        }
        let id = snap_id(&base.backup(&[&small]));
        let reference = base.scratch(&format!("reference-{round}"));
        fsx::copy_tree(&small, &reference).expect("keeping a copy of the tree");
        earlier.push((id, reference));
    }

    // 2. The big tree of the killed backups: 1–4 MiB files, 60 % incompressible.
    let big = base.scratch("big");
    let mut total = 0u64;
    let mut seed = 1000;
    while total < big_tree_mib() << 20 {
        let files = tree::bulk_files(
            &big.join(format!("part{seed}")),
            10,
            1 << 20..4 << 20,
            0.6,
            seed,
        );
        total += files.iter().map(|(_, s)| s).sum::<u64>();
        seed += 1;
    }

    // 3. The duration of an uninterrupted backup of the big tree from the same state.
    let probe = base.at(base.scratch("probe-vault"));
    copy_vault(&base.dir, &probe.dir);
    let started = Instant::now();
    probe.expect(0, ["backup".as_ref(), big.as_os_str()]);
    let full = started.elapsed();
    fs::remove_dir_all(&probe.dir).expect("removing the probe vault");
    eprintln!("big tree: {total} bytes; uninterrupted backup took {full:?}");

    // 4. Kill backups at uniform random moments in [0, full], each on a fresh copy of the
    // base vault.
    let mut rng = Rng::new(2024);
    let mut tally = Tally::default();
    let mut last: Option<Vault> = None;
    for attempt in 0..MAX_ATTEMPTS {
        if tally.kills >= KILLS {
            break;
        }
        if let Some(prev) = last.take() {
            fs::remove_dir_all(&prev.dir).expect("removing a used vault copy");
        }
        let v = base.at(base.scratch(&format!("killed-{attempt}")));
        copy_vault(&base.dir, &v.dir);
        kill_and_check(&v, &big, full.mul_f64(rng.unit()), &earlier, &mut tally);
        last = Some(v);
    }
    eprintln!("{tally:?} (mid_pack: kills while a file was in data/tmp/)");
    assert!(
        tally.kills >= KILLS,
        "only {} of {MAX_ATTEMPTS} kill moments landed on a running backup",
        tally.kills
    );
    assert!(
        tally.mid_pack >= 1,
        "no kill landed while a pack was being written"
    );
    let v = last.expect("at least one vault copy was used");

    // 5. On the last killed copy (after its own crash and the open that cleaned up after it):
    // an uninterrupted backup commits and verifies, and every snapshot restores identically.
    let snap = v.backup(&[&big]);
    v.expect(0, ["verify"]);
    for (i, (id, reference)) in earlier.iter().enumerate() {
        let target = v.scratch(&format!("restored-{i}"));
        fs::create_dir(&target).expect("creating a restore target");
        v.restore(id, &target);
        assert_same_tree(reference, &target.join("small"));
    }
    let target = v.scratch("restored-big");
    fs::create_dir(&target).expect("creating a restore target");
    v.restore(&snap_id(&snap), &target);
    assert_same_tree(&big, &target.join("big"));
    // The copies shared the base's packs: it must still be intact.
    base.expect(0, ["verify"]);
}
