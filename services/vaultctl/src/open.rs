//! Finding the vault and the secret that opens it.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tiervault_store::{io, load_key_file, Repo, Secret, Vault};

use crate::cli::{Global, NewKeyArgs};

pub fn vault_dir(g: &Global) -> PathBuf {
    g.vault.clone().unwrap_or_else(|| PathBuf::from("vault"))
}

/// The secret, from (in order) --key-file, --passphrase-file, $VAULT_PASSPHRASE, a prompt.
pub fn secret(g: &Global, creating: bool) -> Result<Secret> {
    if let Some(k) = &g.key_file {
        return load_key_file(k, creating).with_context(|| format!("key file {}", k.display()));
    }
    if let Some(f) = &g.passphrase_file {
        return passphrase_file(f);
    }
    if let Some(p) = std::env::var_os("VAULT_PASSPHRASE") {
        use std::os::unix::ffi::OsStrExt;
        if p.is_empty() {
            bail!("VAULT_PASSPHRASE is set but empty");
        }
        return Ok(Secret::Passphrase(p.as_bytes().to_vec()));
    }
    if std::io::stdin().is_terminal() {
        let p =
            rpassword::prompt_password("vault passphrase: ").context("reading the passphrase")?;
        if p.is_empty() {
            bail!("empty passphrase");
        }
        if creating {
            let again = rpassword::prompt_password("repeat passphrase: ")
                .context("reading the passphrase")?;
            if again != p {
                bail!("the two passphrases differ");
            }
        }
        return Ok(Secret::Passphrase(p.into_bytes()));
    }
    bail!("no passphrase or key: set VAULT_PASSPHRASE, or pass --passphrase-file FILE or --key-file FILE")
}

/// The first line of a passphrase file.
fn passphrase_file(f: &std::path::Path) -> Result<Secret> {
    let text =
        std::fs::read(f).with_context(|| format!("reading passphrase file {}", f.display()))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        bail!("passphrase file {} is empty", f.display());
    }
    Ok(Secret::Passphrase(line.to_vec()))
}

/// A new secret for `key add|passwd`: --new-key-file, --new-passphrase-file,
/// $VAULT_NEW_PASSPHRASE or a prompt (twice).
pub fn new_secret(a: &NewKeyArgs) -> Result<Secret> {
    if let Some(k) = &a.new_key_file {
        return load_key_file(k, true).with_context(|| format!("new key file {}", k.display()));
    }
    if let Some(f) = &a.new_passphrase_file {
        return passphrase_file(f);
    }
    if let Some(p) = std::env::var_os("VAULT_NEW_PASSPHRASE") {
        use std::os::unix::ffi::OsStrExt;
        if p.is_empty() {
            bail!("VAULT_NEW_PASSPHRASE is set but empty");
        }
        return Ok(Secret::Passphrase(p.as_bytes().to_vec()));
    }
    if std::io::stdin().is_terminal() {
        let p =
            rpassword::prompt_password("new passphrase: ").context("reading the new passphrase")?;
        if p.is_empty() {
            bail!("empty passphrase");
        }
        let again = rpassword::prompt_password("repeat new passphrase: ")
            .context("reading the new passphrase")?;
        if again != p {
            bail!("the two passphrases differ");
        }
        return Ok(Secret::Passphrase(p.into_bytes()));
    }
    bail!(
        "no new passphrase or key: set VAULT_NEW_PASSPHRASE, or pass --new-passphrase-file \
         FILE or --new-key-file FILE"
    )
}

pub fn open(g: &Global) -> Result<Vault> {
    let dir = vault_dir(g);
    if !dir.join("config").exists() {
        // Say so before asking for a passphrase that cannot help.
        return Err(tiervault_store::Error::NotAVault(dir).into());
    }
    let s = secret(g, false)?;
    Ok(Vault::open(&dir, &s, io::default_io())?)
}

/// Open without the key: for commands that never read contents (replicate, gc).
pub fn open_repo(g: &Global) -> Result<Repo> {
    let dir = vault_dir(g);
    Ok(Repo::open(&dir, io::default_io())?)
}

pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
