//! The chunk index cache as an operator sees it: `vaultctl index status|rebuild`, repair of a
//! damaged cache, `verify` over it, and peak memory that stays within `--index-mib` whatever
//! the number of entries (the vault's index parts are written here from docs/format.md
//! section 6, as a second writer would).

mod common;

use std::path::Path;

use common::cli::Vault;
use serde_json::Value;

/// Writes index parts naming `n` entries (random ids) in parts of `per_part`, all in one
/// made-up pack: enough for the index; nothing here is ever read back from a pack.
fn write_parts(vault_dir: &Path, n: u64, per_part: u64) {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).expect("random");
    let mut made = 0u64;
    while made < n {
        let count = per_part.min(n - made);
        let mut b = Vec::with_capacity(24 + 32 + count as usize * 48);
        b.extend_from_slice(b"TVINDEX1");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&(count as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        let mut pack = [0u8; 16];
        pack[..8].copy_from_slice(&made.to_le_bytes());
        b.extend_from_slice(&pack);
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(32u64 << 20).to_le_bytes());
        b.extend_from_slice(&(count as u32).to_le_bytes());
        for i in 0..count {
            let k = made + i;
            let id = blake3::keyed_hash(&seed, &k.to_le_bytes());
            b.extend_from_slice(id.as_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&((i * 100) as u32).to_le_bytes());
            b.extend_from_slice(&100u32.to_le_bytes());
            b.push(0);
            b.extend_from_slice(&[0; 3]);
        }
        let name = blake3::hash(&b).to_hex().to_string();
        std::fs::write(vault_dir.join("index").join(name), b).expect("write part");
        made += count;
    }
}

fn status(vault: &Vault, extra: &[&str]) -> Value {
    let mut args = extra.to_vec();
    args.extend(["index", "status"]);
    vault.json(0, args)
}

fn small_tree(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    for i in 0..40u32 {
        let body: Vec<u8> = (0..20_000u32).map(|j| ((i * 31 + j) % 251) as u8).collect();
        std::fs::write(src.join("sub").join(format!("f{i}")), body).expect("write");
    }
    src
}

#[test]
fn status_rebuild_and_a_damaged_cache_repaired_on_open() {
    let vault = Vault::new();
    let src = small_tree(vault.tmp.path());
    vault.backup(&[&src]);
    let blobs = vault.json(0, ["stats"])["blobs"].as_u64().expect("blobs");

    let st = status(&vault, &[]);
    assert_eq!(
        st["usable"], true,
        "a backup leaves the cache up to date: {st}"
    );
    assert_eq!(st["up_to_date"], true, "{st}");
    assert_eq!(st["entries"].as_u64(), Some(blobs), "{st}");
    assert_eq!(st["budget_from"], "default", "{st}");
    assert!(
        st["memory_used_bytes"].as_u64().expect("memory")
            <= st["budget_bytes"].as_u64().expect("budget")
    );

    // Damage a run file of the cache: the next open rebuilds it and restores still work.
    let primary = vault.dir.join("index.cache").join("primary");
    let run = std::fs::read_dir(&primary)
        .expect("list cache")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "tvr"))
        .expect("a run file");
    let mut bytes = std::fs::read(&run).expect("read run");
    bytes[100] ^= 0x55;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&run, bytes).expect("write run");
    let target = vault.scratch("restored");
    vault.restore("latest", &target);
    assert_eq!(status(&vault, &[])["entries"].as_u64(), Some(blobs));

    // An explicit rebuild reports what it absorbed; verify finds nothing wrong.
    let r = vault.json(0, ["index", "rebuild"]);
    assert_eq!(r["rebuilt"], true, "{r}");
    assert_eq!(r["entries_absorbed"].as_u64(), Some(blobs), "{r}");
    assert_eq!(r["parts_absorbed"].as_u64(), Some(1), "{r}");
    let v = vault.json(0, ["verify"]);
    assert_eq!(v["ok"], true, "{v}");

    // A cache that was removed altogether is made again.
    std::fs::remove_dir_all(vault.dir.join("index.cache")).expect("remove cache");
    vault.restore("latest", &vault.scratch("again"));
    assert_eq!(status(&vault, &[])["up_to_date"], true);

    // The budget comes from --index-mib, then the appliance config.
    let st = status(&vault, &["--index-mib", "64"]);
    assert_eq!(
        (st["budget_bytes"].as_u64(), st["budget_from"].as_str()),
        (Some(64 << 20), Some("--index-mib"))
    );
    let out = vault.run(["--index-mib", "8", "index", "status"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a budget below 16 MiB is refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--index-mib"));

    // A provisioned appliance: the tier's index budget (tier-5: 256 MiB).
    let appliance = vault.scratch("etc").join("appliance.toml");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let hw = root.join("services/libs/model/testdata/hardware/tier-5.toml");
    let profiles = root.join("hardware-profiles");
    let conf = appliance.to_str().expect("utf-8 path");
    let hw = hw.to_str().expect("utf-8 path");
    let profiles = profiles.to_str().expect("utf-8 path");
    vault.expect(
        0,
        [
            "provision",
            "--tier",
            "tier-5",
            "--hardware",
            hw,
            "--profiles",
            profiles,
            "--config",
            conf,
        ],
    );
    let st = status(&vault, &["--appliance-config", conf]);
    assert_eq!(
        (st["budget_bytes"].as_u64(), st["budget_from"].as_str()),
        (Some(256 << 20), Some(conf)),
        "{st}"
    );
    // A broken appliance config is named, and nothing runs on a guessed budget.
    std::fs::write(&appliance, "version = 1\n[plan]\ntier = 5\n").expect("write");
    let out = vault.run(["--appliance-config", conf, "index", "status"]);
    assert_eq!(out.status.code(), Some(1), "broken appliance config");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(conf),
        "the error names the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn peak_memory_stays_within_the_budget_whatever_the_entries() {
    const BUDGET_MIB: u64 = 16;
    let budget = ["--index-mib", "16"];
    let mut peaks = Vec::new();
    for n in [0u64, 300_000, 1_500_000] {
        let vault = Vault::new();
        write_parts(&vault.dir, n, 100_000);
        let mut args = budget.to_vec();
        args.extend(["index", "rebuild"]);
        let r = vault.json(0, &args);
        assert_eq!(r["entries_absorbed"].as_u64(), Some(n), "{r}");
        let st = status(&vault, &budget);
        assert_eq!(st["entries"].as_u64(), Some(n), "{st}");
        assert!(
            st["memory_used_bytes"].as_u64().expect("memory") <= BUDGET_MIB << 20,
            "{st}"
        );
        let peak = |v: &Value| {
            v["peak_rss_bytes"]
                .as_u64()
                .expect("peak rss (Linux /proc)")
        };
        eprintln!(
            "{n} entries: rebuild peak RSS {:.1} MiB, status peak RSS {:.1} MiB, cache on disk {:.1} MiB",
            peak(&r) as f64 / 1048576.0,
            peak(&st) as f64 / 1048576.0,
            st["disk_bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0
        );
        peaks.push((n, peak(&r).max(peak(&st))));
    }
    // An in-memory map would take ~80 B per entry (120 MB at 1.5 M); the cache may grow the
    // process by its budget over the empty vault's, plus 2 MiB of allocator slack.
    let base = peaks[0].1;
    for (n, p) in &peaks[1..] {
        assert!(
            *p <= base + (BUDGET_MIB << 20) + (2 << 20),
            "{n} entries: peak RSS {p} B over an empty vault's {base} B exceeds the {BUDGET_MIB} MiB budget"
        );
    }
}

#[test]
fn garbage_collection_memory_stays_bounded_whatever_the_entries() {
    // A real snapshot to keep, beside index parts naming 0 / 1.5 M entries of packs no
    // snapshot references (so the collection condemns them, streams every part to plan, and
    // rewrites the index): its peak memory must not grow with the entries.
    let mut peaks = Vec::new();
    for n in [0u64, 1_500_000] {
        let vault = Vault::new();
        let src = small_tree(vault.tmp.path());
        vault.backup(&[&src]);
        write_parts(&vault.dir, n, 100_000);
        let r = vault.json(0, ["--index-mib", "16", "gc"]);
        assert_eq!(r["missing_blobs"].as_u64(), Some(0), "{r}");
        assert!(
            r["packs_deleted"].as_u64().expect("deleted") >= n / 100_000,
            "{r}"
        );
        let peak = r["peak_rss_bytes"]
            .as_u64()
            .expect("peak rss (Linux /proc)");
        eprintln!(
            "{n} extra entries: gc peak RSS {:.1} MiB, {} packs deleted",
            peak as f64 / 1048576.0,
            r["packs_deleted"]
        );
        // What the collection left must be whole.
        vault.expect(0, ["verify"]);
        vault.restore("latest", &vault.scratch("restored"));
        peaks.push(peak);
    }
    // The collector holds the index and the live set (one budget each) and streams the
    // parts; an in-memory view of 1.5 M entries alone would be ~200 MB.
    assert!(
        peaks[1] <= peaks[0] + (32 << 20) + (4 << 20),
        "peak RSS {} B with 1.5 M entries vs {} B without",
        peaks[1],
        peaks[0]
    );
}
