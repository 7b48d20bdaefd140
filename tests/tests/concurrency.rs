//! Two backups of different trees into one vault at the same time both commit (docs/format.md
//! section 9: every command takes a shared lock; concurrent writers may store a chunk twice).

mod common;

use std::fs;
use std::process::Stdio;

use common::cli::snap_id;
use common::{assert_same_tree, check_exit, gen, tree, Vault};

#[test]
fn concurrent_backups_both_commit_and_restore() {
    let vault = Vault::new();
    let (a, b) = (vault.scratch("alpha"), vault.scratch("beta"));
    for (root, seed) in [(&a, 1u64), (&b, 2)] {
        tree::build(&tree::sample(seed), root).expect("building a sample tree");
        // Enough data that the two runs overlap, and one identical file in both trees so that
        // both writers race to store the same chunks.
        tree::bulk_files(&root.join("bulk"), 40, 100_000..600_000, 0.5, seed * 100);
        fs::write(
            root.join("shared.bin"),
            gen::content(gen::Kind::Random, 77, 3 << 20),
        )
        .expect("write");
    }
    let spawn = |root: &std::path::Path| {
        vault
            .command(["backup".as_ref(), root.as_os_str(), "--json".as_ref()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning vaultctl backup")
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    let (oa, ob) = (
        ca.wait_with_output().expect("backup alpha"),
        cb.wait_with_output().expect("backup beta"),
    );
    check_exit(&oa, 0, "concurrent backup of alpha");
    check_exit(&ob, 0, "concurrent backup of beta");
    let ids = [
        common::json_of(&oa, "backup alpha"),
        common::json_of(&ob, "backup beta"),
    ]
    .map(|s| snap_id(&s));

    let listed: Vec<String> = vault.snapshots().iter().map(snap_id).collect();
    for id in &ids {
        assert!(
            listed.contains(id),
            "snapshot {id} of a concurrent backup is not listed: {listed:?}"
        );
    }
    assert_eq!(
        listed.len(),
        2,
        "expected exactly the two snapshots: {listed:?}"
    );
    for (id, root, name) in [(&ids[0], &a, "alpha"), (&ids[1], &b, "beta")] {
        let target = vault.scratch(&format!("restored-{name}"));
        fs::create_dir(&target).expect("creating the restore target");
        vault.restore(id, &target);
        assert_same_tree(root, &target.join(name));
    }
    vault.expect(0, ["verify"]);
}
