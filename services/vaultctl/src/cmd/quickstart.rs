//! `vaultctl quickstart`: the README's first command. Creates (or reuses) a vault, backs up a
//! sample tree, lists, restores, compares, verifies and prints the stats.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::bench::dataset::{digest_path, generate_tree, TreeSpec};
use crate::cli::{
    BackupArgs, Global, QuickstartArgs, RemoteTls, RestoreArgs, SnapshotsArgs, VerifyArgs,
};
use crate::open::vault_dir;
use crate::Outcome;

pub fn run(g: &Global, a: &QuickstartArgs) -> Result<Outcome> {
    let mut g = g.clone();
    let dir = vault_dir(&g);
    let no_secret = g.key_file.is_none()
        && g.passphrase_file.is_none()
        && std::env::var_os("VAULT_PASSPHRASE").is_none();
    if no_secret {
        // No interaction in the README's first command: a key file beside the vault.
        let key = PathBuf::from(format!("{}.key", dir.display()));
        say(
            &g,
            &format!(
                "using key file {} (keep it: it opens the vault)",
                key.display()
            ),
        );
        g.key_file = Some(key);
    }
    g.vault = Some(dir.clone());

    let source = match &a.source {
        Some(s) => s.clone(),
        None => {
            let s = PathBuf::from("quickstart-data/src");
            if !s.exists() {
                say(
                    &g,
                    &format!("generating a sample source tree in {}", s.display()),
                );
                let st =
                    generate_tree(&s, &TreeSpec::small()).context("generating the sample tree")?;
                say(
                    &g,
                    &format!("  {} files, {} dirs, {} bytes", st.files, st.dirs, st.bytes),
                );
            }
            s
        }
    };
    if !dir.join("config").exists() {
        step(&g, &format!("init {}", dir.display()));
        super::init::run(&g, &default_init())?;
    }
    step(&g, &format!("backup {}", source.display()));
    let outcome = super::backup::run(
        &g,
        &BackupArgs {
            paths: vec![source.clone()],
            stdin: false,
            name: None,
            stdin_size: None,
            image: None,
            force_reread: false,
            exclude: Vec::new(),
            include: Vec::new(),
            exclude_from: Vec::new(),
        },
    )?;
    step(&g, "snapshots");
    super::browse::snapshots(&g, &SnapshotsArgs { path: None })?;
    let target = PathBuf::from("quickstart-restore");
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("clearing {}", target.display()))?;
    }
    step(&g, &format!("restore latest --target {}", target.display()));
    super::restore::run(
        &g,
        &RestoreArgs {
            snapshot: "latest".into(),
            target: Some(target.clone()),
            in_place: false,
            path: None,
            overwrite: false,
        },
    )?;
    let name = source
        .canonicalize()?
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    compare(&source, &target.join(name))?;
    say(&g, "restored tree is identical to the source");
    step(&g, "verify");
    let v = super::verify::run(
        &g,
        &VerifyArgs {
            quick: false,
            heal_from: None,
            tls: RemoteTls {
                ca: None,
                cert: None,
                key: None,
            },
        },
    )?;
    if matches!(v, Outcome::Damage) {
        bail!("verify found damage");
    }
    step(&g, "stats");
    super::browse::stats(&g)?;
    Ok(outcome)
}

fn default_init() -> crate::cli::InitArgs {
    crate::cli::InitArgs {
        chunk_min: 32 * 1024,
        chunk_avg: 128 * 1024,
        chunk_max: 512 * 1024,
        image_chunk: 256 * 1024,
        compression: 3,
        kdf_time_ms: 500,
        data_dirs: Vec::new(),
    }
}

fn compare(a: &Path, b: &Path) -> Result<()> {
    let (da, db) = (digest_path(a)?, digest_path(b)?);
    if da != db {
        bail!(
            "restored tree {} differs from {} ({da:?} vs {db:?})",
            b.display(),
            a.display()
        );
    }
    Ok(())
}

fn say(g: &Global, msg: &str) {
    if !g.quiet && !g.json {
        outln!("{msg}");
    }
}

fn step(g: &Global, msg: &str) {
    say(g, &format!("\n== vaultctl {msg}"));
}
