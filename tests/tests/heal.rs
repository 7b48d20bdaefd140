//! Self-heal from a replica: damaged and missing local blobs are replaced by good copies,
//! the damaged pack goes to quarantine/, and a later verify is clean.

mod common;

use std::fs;

use common::cli::snap_id;
use common::{assert_same_tree, fsx, pack, tree, Vault};

const BLOB_HEADER_LEN: u64 = 28;

fn data_packs(vault: &Vault) -> Vec<pack::Pack> {
    pack::all(&vault.dir)
        .into_iter()
        .filter(|p| p.entries.iter().any(|e| e.kind == 0))
        .collect()
}

#[test]
fn a_corrupt_pack_is_healed_from_a_replica() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 300, 1000..60_000, 0.5, 3);
    let snap = vault.backup(&[&src]);
    let rep = vault.scratch("replica");
    vault.expect(0, ["replicate".as_ref(), "--to".as_ref(), rep.as_os_str()]);

    let packs = data_packs(&vault);
    let p = &packs[0];
    let e = p.entries.iter().find(|e| e.kind == 0).expect("a data blob");
    fsx::flip_byte(&p.path, e.offset + BLOB_HEADER_LEN + 3);
    vault.expect(4, ["verify"]);

    let healed = vault.json(
        0,
        ["verify".as_ref(), "--heal-from".as_ref(), rep.as_os_str()],
    );
    eprintln!("heal: {healed}");
    assert_eq!(healed["ok"], true, "{healed}");
    let ids: Vec<&str> = healed["healed"]
        .as_array()
        .expect("healed list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(ids.contains(&hex::encode(e.id).as_str()), "{healed}");
    assert!(
        vault.dir.join("quarantine").join(&p.id).exists(),
        "the damaged pack is kept in quarantine/"
    );
    vault.expect(0, ["verify"]);
    let target = vault.scratch("restored");
    vault.restore(&snap_id(&snap), &target);
    assert_same_tree(&src, &target.join("src"));
}

#[test]
fn a_lost_pack_is_healed_and_unhealable_damage_stays_reported() {
    let vault = Vault::new();
    let src = vault.scratch("src");
    tree::bulk_files(&src, 200, 1000..60_000, 0.5, 4);
    let snap = vault.backup(&[&src]);
    let rep = vault.scratch("replica");
    vault.expect(0, ["replicate".as_ref(), "--to".as_ref(), rep.as_os_str()]);
    let lost = &data_packs(&vault)[0];
    fs::remove_file(&lost.path).expect("remove pack");
    vault.expect(4, ["verify"]);

    // A replica that does not have the blobs cannot heal: the damage stays, exit 4.
    let empty = vault.scratch("empty-replica");
    vault.expect(
        4,
        ["verify".as_ref(), "--heal-from".as_ref(), empty.as_os_str()],
    );

    let healed = vault.json(
        0,
        ["verify".as_ref(), "--heal-from".as_ref(), rep.as_os_str()],
    );
    assert!(
        healed["healed"]
            .as_array()
            .is_some_and(|a| a.len() >= lost.entries.len()),
        "{healed}"
    );
    vault.expect(0, ["verify"]);
    let target = vault.scratch("restored");
    vault.restore(&snap_id(&snap), &target);
    assert_same_tree(&src, &target.join("src"));
}
