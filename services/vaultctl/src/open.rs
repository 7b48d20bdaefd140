//! Finding the vault and the secret that opens it.

use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tiervault_store::{io, load_key_file, Repo, Secret, Vault};

use crate::cli::{Global, NewKeyArgs};

pub fn vault_dir(g: &Global) -> PathBuf {
    g.vault.clone().unwrap_or_else(|| PathBuf::from("vault"))
}

/// Where one secret can come from, in order: a key file, a passphrase file, an environment
/// variable, a prompt on a TTY.
struct Sources<'a> {
    key_file: Option<&'a Path>,
    passphrase_file: Option<&'a Path>,
    /// The environment variable, and the flags naming the files (for messages).
    env: &'static str,
    key_flag: &'static str,
    passphrase_flag: &'static str,
    /// "passphrase" or "new passphrase", for the messages and the second prompt.
    what: &'static str,
    /// The first prompt.
    prompt: &'static str,
    /// Ask twice on a TTY (a secret that will wrap the key, not one that opens it).
    confirm: bool,
    /// A key file may be created when absent.
    create_key_file: bool,
}

impl Sources<'_> {
    fn secret(&self) -> Result<Secret> {
        if let Some(k) = self.key_file {
            return load_key_file(k, self.create_key_file)
                .with_context(|| format!("key file {}", k.display()));
        }
        if let Some(f) = self.passphrase_file {
            return passphrase_file(f);
        }
        if let Some(p) = std::env::var_os(self.env) {
            if p.is_empty() {
                bail!("{} is set but empty", self.env);
            }
            return Ok(Secret::Passphrase(p.as_bytes().to_vec()));
        }
        if std::io::stdin().is_terminal() {
            let read = |prompt: &str| {
                rpassword::prompt_password(prompt)
                    .with_context(|| format!("reading the {}", self.what))
            };
            let p = read(&format!("{}: ", self.prompt))?;
            if p.is_empty() {
                bail!("empty passphrase");
            }
            if self.confirm && read(&format!("repeat {}: ", self.what))? != p {
                bail!("the two passphrases differ");
            }
            return Ok(Secret::Passphrase(p.into_bytes()));
        }
        bail!(
            "no {} or key: set {}, or pass {} FILE or {} FILE",
            self.what,
            self.env,
            self.passphrase_flag,
            self.key_flag
        )
    }
}

/// The secret, from (in order) --key-file, --passphrase-file, $VAULT_PASSPHRASE, a prompt.
pub fn secret(g: &Global, creating: bool) -> Result<Secret> {
    Sources {
        key_file: g.key_file.as_deref(),
        passphrase_file: g.passphrase_file.as_deref(),
        env: "VAULT_PASSPHRASE",
        key_flag: "--key-file",
        passphrase_flag: "--passphrase-file",
        what: "passphrase",
        prompt: "vault passphrase",
        confirm: creating,
        create_key_file: creating,
    }
    .secret()
}

/// A new secret for `key add|passwd`: --new-key-file, --new-passphrase-file,
/// $VAULT_NEW_PASSPHRASE or a prompt (twice).
pub fn new_secret(a: &NewKeyArgs) -> Result<Secret> {
    Sources {
        key_file: a.new_key_file.as_deref(),
        passphrase_file: a.new_passphrase_file.as_deref(),
        env: "VAULT_NEW_PASSPHRASE",
        key_flag: "--new-key-file",
        passphrase_flag: "--new-passphrase-file",
        what: "new passphrase",
        prompt: "new passphrase",
        confirm: true,
        create_key_file: true,
    }
    .secret()
}

/// The first line of a passphrase file.
fn passphrase_file(f: &Path) -> Result<Secret> {
    let text =
        std::fs::read(f).with_context(|| format!("reading passphrase file {}", f.display()))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        bail!("passphrase file {} is empty", f.display());
    }
    Ok(Secret::Passphrase(line.to_vec()))
}

/// The vault directory, refused before any secret is asked for when it holds no vault
/// (a passphrase cannot help there).
pub fn existing_vault_dir(g: &Global) -> Result<PathBuf> {
    let dir = vault_dir(g);
    if !dir.join("config").exists() {
        return Err(tiervault_store::Error::NotAVault(dir).into());
    }
    Ok(dir)
}

pub fn open(g: &Global) -> Result<Vault> {
    let dir = existing_vault_dir(g)?;
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
