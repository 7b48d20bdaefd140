//! Garbage collection while backups run: many rounds of (backup ∥ forget + gc) over content
//! that keeps coming back (so backups dedup against blobs a collection is deleting); then every
//! kept snapshot must verify and restore to the exact tree it was taken of.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli::json_of;
use common::{assert_same_tree, gen, Vault};

const ROUNDS: usize = 10;

fn write_state(src: &Path, round: usize) {
    // Five recurring variants of each file: round r uses variant (r + i) % 5 for file i, so
    // every round's content was already stored (and maybe forgotten) a few rounds earlier.
    for i in 0..60 {
        let variant = ((round + i) % 5) as u64;
        let size = 2_000 + (i * 997) % 30_000;
        let data = gen::mixed(i as u64 * 100 + variant, size, 0.5);
        fs::write(src.join(format!("f{i:02}")), data).expect("write");
    }
    // Large enough that the collector starts while the backup is still running.
    let big = gen::mixed(500 + (round % 5) as u64, 40 << 20, 0.8);
    fs::write(src.join("big"), big).expect("write");
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success());
}

#[test]
fn gc_and_backups_run_together_and_every_kept_snapshot_restores() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    fs::create_dir_all(&src).expect("mkdir");
    let mut states: HashMap<String, PathBuf> = HashMap::new();
    let mut deleted = 0u64;
    let mut waited = 0u64;
    let mut rescued = 0u64;
    for round in 0..ROUNDS {
        write_state(&src, round);
        let state = vault.scratch(&format!("state{round}"));
        copy_tree(&src, &state);
        let backup = vault
            .command(["--json".as_ref(), "backup".as_ref(), src.as_os_str()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn backup");
        // Start the collector at a different moment of each backup.
        std::thread::sleep(Duration::from_millis((round as u64 * 37) % 150));
        let gc = vault.run(["--json", "gc", "--max-unused", "0.1"]);
        let out = backup.wait_with_output().expect("backup");
        let forget = vault.run(["forget", "--keep-last", "3"]);
        assert!(
            forget.status.success(),
            "forget: {}",
            String::from_utf8_lossy(&forget.stderr)
        );
        assert!(
            out.status.success(),
            "backup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let snap = json_of(&out, "backup --json");
        states.insert(snap["id"].as_str().expect("id").to_string(), state);
        let r = json_of(&gc, "gc --json");
        assert!(gc.status.success(), "gc: {r}");
        deleted += r["packs_deleted"].as_u64().unwrap_or(0);
        waited += r["sessions_waited"].as_u64().unwrap_or(0);
        rescued += r["blobs_rescued"].as_u64().unwrap_or(0);
        eprintln!("round {round}: gc {r}");
    }
    eprintln!("{ROUNDS} rounds: {deleted} packs deleted, {waited} sessions waited for, {rescued} blobs rescued");
    assert!(deleted > 0, "the collections never deleted anything");
    assert!(
        waited > 0,
        "no collection ever overlapped a backup: the test proves nothing"
    );
    let final_gc = vault.json(0, ["gc"]);
    eprintln!("final gc: {final_gc}");
    vault.expect(0, ["verify"]);
    let kept = vault.snapshots();
    assert_eq!(kept.len(), 3, "forget --keep-last 3");
    for s in kept {
        let id = s["id"].as_str().expect("id");
        let state = states
            .get(id)
            .unwrap_or_else(|| panic!("snapshot {id} was not made by this test"));
        let target = vault.scratch(&format!("restore-{id}"));
        vault.restore(id, &target);
        let restored_src = target.join("src");
        let want = state;
        // The state copy is named stateN; compare contents.
        assert_same_tree(want, &restored_src);
    }
}
