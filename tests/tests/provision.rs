//! `vaultctl provision` and `vaultctl hw dump` as black boxes: recorded hardware descriptions
//! for each tier and for near misses (services/libs/model/testdata/hardware/), the appliance
//! config written atomically, and this machine's own sysfs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::cli::bare_command;
use common::{check_exit, error_line, json_of, vaultctl};
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn profiles() -> PathBuf {
    workspace().join("hardware-profiles")
}

fn fixture(name: &str) -> PathBuf {
    workspace()
        .join("services/libs/model/testdata/hardware")
        .join(format!("{name}.toml"))
}

fn cmd(args: &[&str]) -> Command {
    let mut c = bare_command(vaultctl());
    c.args(args).env("VAULT_PROFILES", profiles());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run vaultctl")
}

fn provision_json(hw: &Path, tier: &str) -> Value {
    let out = run(cmd(&["provision", "--dry-run", "--json", "--tier", tier])
        .arg("--hardware")
        .arg(hw));
    check_exit(&out, 0, &format!("provision {tier} on {}", hw.display()));
    json_of(&out, "provision --json")
}

#[test]
fn each_tier_fixture_provisions_as_its_tier() {
    for (tier, tib, arrays) in [
        ("tier-5", 5, 2),
        ("tier-10", 12, 2),
        ("tier-15", 18, 2),
        ("tier-20", 23, 2),
        ("tier-30", 36, 2),
        ("tier-50", 58, 3),
        ("tier-100", 114, 4),
    ] {
        let v = provision_json(&fixture(tier), "auto");
        assert_eq!(v["tier"], tier, "auto on the {tier} fixture: {v}");
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["written"], false);
        assert_eq!(v["plan"]["usable-tib"], tib, "{tier}");
        assert_eq!(
            v["plan"]["array"].as_array().expect("arrays").len(),
            arrays,
            "{tier}"
        );
        assert_eq!(
            v["plan"]["spare"].as_array().expect("spares").len(),
            2,
            "{tier}"
        );
        assert!(v["plan"]["index-memory-bytes"].as_u64().expect("index") > 0);
        assert!(v["plan"]["dedup-cache-bytes"].as_u64().expect("cache") >= 8 << 30);
        let same = provision_json(&fixture(tier), tier);
        assert_eq!(same["plan"], v["plan"], "--tier {tier} plans as auto does");
    }
}

#[test]
fn human_plan_names_disks_by_serial_and_device() {
    let out = run(cmd(&["provision", "--dry-run", "--tier", "tier-5"])
        .arg("--hardware")
        .arg(fixture("tier-5")));
    check_exit(&out, 0, "provision tier-5");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("tier-5: usable 5 TiB (6 TB); index memory 256 MiB; dedup cache 8 GiB\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  array  os0    raid10  4 disks: sda [TIER-5-OS00, bay 0], sdb [TIER-5-OS01, bay 1]"
        ),
        "{text}"
    );
    assert!(
        text.contains("  array  data0  raid5   4 disks: sdf [TIER-5-D05, bay 5]"),
        "{text}"
    );
    assert!(
        text.contains("  spare  data   sdj [TIER-5-D09, bay 9]  (hot spare for data0)"),
        "{text}"
    );
    assert!(text.contains("  unused sdk\n"), "{text}");
    assert!(
        text.contains("dry run: /etc/tiervault/appliance.toml not written"),
        "{text}"
    );
}

fn mismatch(fixture_name: &str, tier: &str, dry_run: bool) -> String {
    let mut c = cmd(&["provision", "--tier", tier]);
    c.arg("--hardware").arg(fixture(fixture_name));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("etc/appliance.toml");
    c.arg("--config").arg(&config);
    if dry_run {
        c.arg("--dry-run");
    }
    let out = run(&mut c);
    let what = format!("{tier} on {fixture_name} (dry run: {dry_run})");
    check_exit(&out, 1, &what);
    assert!(out.stdout.is_empty(), "{what}: no plan printed");
    assert!(!config.exists(), "{what}: nothing written");
    error_line(&out, &what)
}

#[test]
fn near_misses_fail_with_one_precise_line() {
    for dry_run in [true, false] {
        assert_eq!(
            mismatch("tier-20-missing-bay9", "tier-20", dry_run),
            "error: tier-20 needs 15 data disks (7.2K) ≥ 2 TB, found 14: missing bay 9?"
        );
        assert_eq!(
            mismatch("tier-20-small-disk", "tier-20", dry_run),
            "error: tier-20 needs 15 data disks (7.2K) ≥ 2 TB, found 14: sdj (bay 9) is 1 TB, too small?"
        );
        assert_eq!(
            mismatch("tier-30-low-ram", "tier-30", dry_run),
            "error: tier-30 needs 64 GiB RAM (MemTotal ≥ 60 GiB), found 31.2 GiB"
        );
        assert_eq!(
            mismatch("tier-5-no-serial", "tier-5", dry_run),
            "error: tier-5 needs 5 data disks (7.2K) ≥ 2 TB, found 4: sdh (bay 7) has no serial number"
        );
    }
    assert_eq!(
        mismatch("tier-5", "tier-150", true),
        "error: tier-150 is a composition of several servers (tier-100 + tier-50): provision each server with its own tier"
    );
    assert!(mismatch("tier-5", "tier-7", true).starts_with("error: unknown tier \"tier-7\""));
}

#[test]
fn auto_settles_for_the_largest_tier_that_fits() {
    let v = provision_json(&fixture("tier-30-low-ram"), "auto");
    assert_eq!(v["tier"], "tier-15");
    let v = provision_json(&fixture("tier-20-missing-bay9"), "auto");
    assert_eq!(v["tier"], "tier-15");
}

#[test]
fn provision_writes_the_appliance_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("etc/tiervault/appliance.toml");
    let out = run(cmd(&["provision", "--json"])
        .arg("--hardware")
        .arg(fixture("tier-50"))
        .arg("--config")
        .arg(&config));
    check_exit(&out, 0, "provision tier-50");
    let v = json_of(&out, "provision");
    assert_eq!(v["written"], true);
    let text = std::fs::read_to_string(&config).expect("config written");
    assert!(text.starts_with("version = 1\n"), "{text}");
    assert!(text.contains("tier = \"tier-50\""), "{text}");
    assert!(text.contains("serial = \"TIER-50-D06\""), "{text}");
    assert!(
        text.contains("\n[plan]\n") && text.contains("\n[[plan.array]]\n"),
        "{text}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(config.parent().expect("dir"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("appliance.toml")],
        "no temp file left"
    );
    // Provisioning again replaces it.
    let out = run(cmd(&["provision", "--tier", "tier-30"])
        .arg("--hardware")
        .arg(fixture("tier-30"))
        .arg("--config")
        .arg(&config));
    check_exit(&out, 0, "provision tier-30");
    let text = std::fs::read_to_string(&config).expect("config rewritten");
    assert!(text.contains("tier = \"tier-30\""), "{text}");
}

#[test]
fn bad_profiles_and_descriptions_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("hw.toml");
    std::fs::write(
        &bad,
        "schema = 1\n[cpu]\nsockets = 1\ncores = 1\nthreads = 1\ncolour = \"red\"\n",
    )
    .expect("write");
    let out = run(cmd(&["provision", "--dry-run", "--hardware"]).arg(&bad));
    check_exit(&out, 1, "bad description");
    let line = error_line(&out, "bad description");
    assert!(
        line.contains(&format!(
            "{}: line 6: unknown field `colour`",
            bad.display()
        )),
        "{line}"
    );

    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).expect("mkdir");
    let t5 = std::fs::read_to_string(self::profiles().join("tier-5.toml")).expect("tier-5");
    std::fs::write(
        profiles.join("tier-5.toml"),
        t5.replace("spares = 1", "spares = 9"),
    )
    .expect("write");
    let out = run(bare_command(vaultctl())
        .args(["provision", "--dry-run", "--profiles"])
        .arg(&profiles)
        .arg("--hardware")
        .arg(fixture("tier-5")));
    check_exit(&out, 1, "bad profile");
    let line = error_line(&out, "bad profile");
    assert!(
        line.ends_with(
            "tier-5.toml: disk-group[0].spares: 9 hot spare(s) but the group has only 5 disk(s)"
        ),
        "{line}"
    );
}

/// This machine: `hw dump` of its own sysfs, then `provision --hardware` on the dump. The VM
/// has one virtio disk, so expect the mismatch line; on a real appliance, a plan.
#[test]
fn this_machine_dump_then_provision() {
    if !Path::new("/sys/block").is_dir() || !Path::new("/proc/meminfo").is_file() {
        common::skip("no /sys/block or /proc/meminfo on this machine");
        return;
    }
    let out = run(bare_command(vaultctl()).args(["hw", "dump"]));
    check_exit(&out, 0, "hw dump");
    let dump = String::from_utf8(out.stdout).expect("utf-8");
    assert!(dump.contains("schema = 1"), "{dump}");
    assert!(
        dump.contains("[memory]") && dump.contains("[cpu]"),
        "{dump}"
    );
    assert!(
        !dump.contains("name = \"loop"),
        "loop devices are skipped: {dump}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("this-machine.toml");
    std::fs::write(&file, &dump).expect("write dump");

    let json = run(bare_command(vaultctl()).args(["hw", "dump", "--json"]));
    check_exit(&json, 0, "hw dump --json");
    let v = json_of(&json, "hw dump --json");
    assert!(v["memory"]["total-bytes"].as_u64().expect("memory") > 0);

    let out = run(cmd(&["provision", "--dry-run"])
        .arg("--hardware")
        .arg(&file));
    match out.status.code() {
        Some(0) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.starts_with("tier-") && text.contains("  array  os0"),
                "{text}"
            );
        }
        Some(1) => {
            let line = error_line(&out, "provision on this machine");
            let rest = line
                .strip_prefix("error: no tier fits this hardware; the smallest: tier-5 needs ")
                .unwrap_or_else(|| panic!("mismatch shape: {line}"));
            // "<N> <what> (<class>) ≥ <size>, found <M>[: hint]" or a RAM/CPU line.
            let disks =
                rest.contains(" disks (") && rest.contains(") ≥ ") && rest.contains(", found ");
            let other = rest.contains("RAM (MemTotal ≥ ") || rest.contains("CPU cores, found ");
            assert!(disks || other, "mismatch shape: {line}");
        }
        _ => panic!("provision on this machine: {}", common::describe(&out)),
    }
    // The same without --hardware (read live) gives the same answer.
    let live = run(&mut cmd(&["provision", "--dry-run"]));
    assert_eq!(
        live.status.code(),
        out.status.code(),
        "{}",
        common::describe(&live)
    );
    assert_eq!(live.stderr, out.stderr);
}
