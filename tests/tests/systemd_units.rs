//! Tier 2: the units in systemd/ pass `systemd-analyze verify` (with ExecStart pointing at the
//! binaries just built). Skipped, and said so, where systemd-analyze is missing.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::cli::workspace_bin;

#[test]
fn units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root");
    let bins = [
        (
            "vault-replicad",
            workspace_bin("VAULT_REPLICAD_BIN", "tiervault-replicad", "vault-replicad"),
        ),
        (
            "vault-remoted",
            workspace_bin("VAULT_REMOTED_BIN", "tiervault-remoted", "vault-remoted"),
        ),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let mut units = Vec::new();
    for entry in fs::read_dir(repo.join("systemd")).expect("systemd/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let mut text = fs::read_to_string(&path).expect("unit");
        for (name, bin) in &bins {
            text = text.replace(&format!("/usr/bin/{name}"), &bin.display().to_string());
        }
        let dest = tmp.path().join(path.file_name().expect("name"));
        fs::write(&dest, text).expect("write");
        units.push(dest);
    }
    assert!(units.len() >= 2, "no units found in systemd/");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&units)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
}
