//! `vaultctl key`: the key files that wrap the vault's master key — list, add, remove, and
//! replace the one a command is opened with.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tiervault_store::{list_keys, KeyFile, Secret};

use crate::cli::{Global, KeyCmd, NewKeyArgs};
use crate::open::{existing_vault_dir, new_secret, open};
use crate::output::print_json;
use crate::Outcome;

pub fn run(g: &Global, cmd: &KeyCmd) -> Result<Outcome> {
    match cmd {
        KeyCmd::List => list(g),
        KeyCmd::Add(a) => {
            let vault = open(g)?;
            let name = add(&vault, a)?;
            report(g, &json!({"added": name, "kind": kind(a)}), || {
                format!("added {} key {name}", kind(a))
            });
            Ok(Outcome::Ok)
        }
        KeyCmd::Remove { name } => {
            let vault = open(g)?;
            vault
                .remove_key(name)
                .with_context(|| format!("removing key {name}"))?;
            report(g, &json!({"removed": name}), || {
                format!("removed key {name}")
            });
            Ok(Outcome::Ok)
        }
        KeyCmd::Passwd(a) => {
            let vault = open(g)?;
            let secret = new_secret(a)?;
            let (new, old) = vault
                .replace_key(&secret, Duration::from_millis(a.kdf_time_ms))
                .with_context(|| format!("replacing key {}", vault.key_name()))?;
            report(
                g,
                &json!({"added": new, "removed": old, "kind": kind(a)}),
                || format!("key {old} replaced by {} key {new}", kind(a)),
            );
            Ok(Outcome::Ok)
        }
    }
}

fn kind(a: &NewKeyArgs) -> &'static str {
    if a.new_key_file.is_some() {
        "keyfile"
    } else {
        "passphrase"
    }
}

fn add(vault: &tiervault_store::Vault, a: &NewKeyArgs) -> Result<String> {
    let secret: Secret = new_secret(a)?;
    vault
        .add_key(&secret, Duration::from_millis(a.kdf_time_ms))
        .context("adding a key")
}

fn report(g: &Global, doc: &serde_json::Value, line: impl FnOnce() -> String) {
    if g.json {
        print_json(doc);
    } else if !g.quiet {
        outln!("{}", line());
    }
}

fn kdf(kf: &KeyFile) -> String {
    match (kf.m_kib, kf.t, kf.p) {
        (Some(m), Some(t), Some(p)) => format!("{} m={m} KiB t={t} p={p}", kf.kdf),
        _ => kf.kdf.clone(),
    }
}

fn list(g: &Global) -> Result<Outcome> {
    let dir = existing_vault_dir(g)?;
    let keys = list_keys(&dir).with_context(|| format!("listing the keys of {}", dir.display()))?;
    if g.json {
        print_json(&json!(keys
            .iter()
            .map(|(name, kf)| json!({
                "name": name,
                "kind": kf.kind,
                "kdf": kf.kdf,
                "m_kib": kf.m_kib,
                "t": kf.t,
                "p": kf.p,
                "created": kf.created,
            }))
            .collect::<Vec<_>>()));
        return Ok(Outcome::Ok);
    }
    outln!("{:<32}  {:<10}  {:<36}  created", "name", "kind", "kdf");
    for (name, kf) in &keys {
        outln!(
            "{name:<32}  {:<10}  {:<36}  {}",
            kf.kind,
            kdf(kf),
            kf.created
        );
    }
    Ok(Outcome::Ok)
}
