//! Key files that wrap the master key (docs/format.md section 3).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::error::{Error, IoContext, Result};

/// How the operator proves they may open the vault.
#[derive(Clone)]
pub enum Secret {
    Passphrase(Vec<u8>),
    /// The contents of a key file.
    KeyFile(Vec<u8>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Passphrase(_) => "Secret::Passphrase(..)",
            Secret::KeyFile(_) => "Secret::KeyFile(..)",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub kind: String,
    pub kdf: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m_kib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<u32>,
    pub salt: String,
    pub nonce: String,
    pub wrapped: String,
    pub created: String,
}

const KEYFILE_CONTEXT: &str = "tiervault v1 keyfile kek";
const M_KIB: u32 = 32 * 1024;
const MIN_KEYFILE: usize = 32;

fn argon2(pass: &[u8], salt: &[u8], m_kib: u32, t: u32, p: u32) -> Result<[u8; 32]> {
    let params = argon2::Params::new(m_kib, t, p, Some(32))
        .map_err(|e| Error::Invalid(format!("argon2 parameters m={m_kib} t={t} p={p}: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(pass, salt, &mut out)
        .map_err(|e| Error::Invalid(format!("argon2: {e}")))?;
    Ok(out)
}

/// Choose Argon2id passes (and, for very short targets, memory) so one derivation takes
/// about `target` on this machine.
///
/// A derivation pays for its memory once (allocating and first touching it: on the VMs we
/// measure on, where the host backs memory lazily, as much as two passes) and then per pass.
/// Both are measured, from derivations of one and of three passes (the faster of two tries
/// each); timing one pass alone had taken the allocation for a per-pass cost and gave
/// derivations of 0.2 s for a 0.5 s target.
pub fn calibrate(target: Duration) -> (u32, u32) {
    let time = |m: u32, t: u32| {
        (0..2)
            .map(|_| {
                let start = Instant::now();
                // A fixed test input; the result is discarded.
                let _ = argon2(b"calibration", b"tiervault-salt-0", m, t, 1);
                start.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let mut m = M_KIB;
    loop {
        let one = time(m, 1);
        if one <= target || m <= 8 * 1024 {
            let three = time(m, 3);
            let per_pass = (three.saturating_sub(one) / 2).max(Duration::from_micros(100));
            let fixed = one.saturating_sub(per_pass);
            let t = (target.saturating_sub(fixed).as_secs_f64() / per_pass.as_secs_f64())
                .round()
                .max(1.0) as u32;
            return (m, t.min(1000));
        }
        m /= 2;
    }
}

fn keyfile_kek(salt: &[u8], contents: &[u8]) -> Result<[u8; 32]> {
    let trimmed = contents.trim_ascii();
    if trimmed.len() < MIN_KEYFILE {
        return Err(Error::NoKey(format!(
            "key file holds {} bytes; at least {MIN_KEYFILE} are required",
            trimmed.len()
        )));
    }
    let mut h = blake3::Hasher::new_derive_key(KEYFILE_CONTEXT);
    h.update(salt);
    h.update(trimmed);
    Ok(*h.finalize().as_bytes())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl KeyFile {
    /// Wrap `master` under `secret`.
    pub fn create(
        secret: &Secret,
        master: &[u8; 32],
        vault_id: &[u8; 32],
        kdf_time: Duration,
    ) -> Result<KeyFile> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        crypto::fill_random(&mut salt);
        crypto::fill_random(&mut nonce);
        let (kind, kdf, params, kek) = match secret {
            Secret::Passphrase(p) => {
                let (m, t) = calibrate(kdf_time);
                let kek = argon2(p, &salt, m, t, 1)?;
                ("passphrase", "argon2id", Some((m, t, 1)), kek)
            }
            Secret::KeyFile(c) => ("keyfile", "blake3-derive", None, keyfile_kek(&salt, c)?),
        };
        let wrapped = crypto::wrap(&kek, nonce, vault_id, master);
        Ok(KeyFile {
            kind: kind.into(),
            kdf: kdf.into(),
            m_kib: params.map(|p| p.0),
            t: params.map(|p| p.1),
            p: params.map(|p| p.2),
            salt: hex::encode(salt),
            nonce: hex::encode(nonce),
            wrapped: hex::encode(wrapped),
            created: now_rfc3339(),
        })
    }

    /// Try to unwrap the master key. `Ok(None)`: this file does not open with this secret.
    pub fn open(
        &self,
        path: &Path,
        secret: &Secret,
        vault_id: &[u8; 32],
    ) -> Result<Option<[u8; 32]>> {
        let bad = |reason: &str| Error::BadKeyFile {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let salt = hex::decode(&self.salt).map_err(|_| bad("salt is not hex"))?;
        let mut nonce = [0u8; 12];
        hex::decode_to_slice(&self.nonce, &mut nonce)
            .map_err(|_| bad("nonce is not 24 hex digits"))?;
        let wrapped = hex::decode(&self.wrapped).map_err(|_| bad("wrapped key is not hex"))?;
        let kek = match (secret, self.kind.as_str()) {
            (Secret::Passphrase(p), "passphrase") => {
                if self.kdf != "argon2id" {
                    return Err(bad("unknown kdf"));
                }
                let (Some(m), Some(t), Some(par)) = (self.m_kib, self.t, self.p) else {
                    return Err(bad("argon2id parameters missing"));
                };
                if m > 4 * 1024 * 1024 || t > 10_000 || par > 64 {
                    return Err(bad("argon2id parameters out of range"));
                }
                argon2(p, &salt, m, t, par)?
            }
            (Secret::KeyFile(c), "keyfile") => keyfile_kek(&salt, c)?,
            (_, "passphrase" | "keyfile") => return Ok(None),
            _ => return Err(bad("unknown kind")),
        };
        Ok(crypto::unwrap(&kek, nonce, vault_id, &wrapped))
    }
}

/// The vault's key files (`<root>/keys/<name>`), by name. Needs no secret: a key file holds
/// only the wrapped master key and its KDF parameters.
pub fn list_keys(root: &Path) -> Result<Vec<(String, KeyFile)>> {
    let dir = root.join("keys");
    let mut out = Vec::new();
    for name in crate::repo::list_dir(&dir)? {
        let path = dir.join(&name);
        let raw = std::fs::read(&path).ctx("reading key file", &path)?;
        let kf: KeyFile = serde_json::from_slice(&raw).map_err(|e| Error::BadKeyFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        out.push((name, kf));
    }
    Ok(out)
}

/// Read a key file given with `--key-file`, creating a new random one when `create` is set and
/// the file does not exist.
pub fn load_key_file(path: &Path, create: bool) -> Result<Secret> {
    if create && !path.exists() {
        let mut k = [0u8; 32];
        crypto::fill_random(&mut k);
        let text = format!("{}\n", hex::encode(k));
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .ctx("creating key file", path)?;
        f.write_all(text.as_bytes()).ctx("writing key file", path)?;
        f.sync_all().ctx("syncing key file", path)?;
    }
    let c = std::fs::read(path).ctx("reading key file", path)?;
    let n = c.trim_ascii().len();
    if n < MIN_KEYFILE {
        return Err(Error::BadKeyFile {
            path: path.to_path_buf(),
            reason: format!("holds {n} bytes; at least {MIN_KEYFILE} are required"),
        });
    }
    Ok(Secret::KeyFile(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_and_keyfile_wrap_and_refuse_wrong_secret() {
        let master = [5u8; 32];
        let vid = [6u8; 32];
        let p = Secret::Passphrase(b"correct horse".to_vec());
        let kf = KeyFile::create(&p, &master, &vid, Duration::from_millis(5)).expect("create");
        let path = Path::new("keys/x");
        assert_eq!(kf.open(path, &p, &vid).expect("open"), Some(master));
        let wrong = Secret::Passphrase(b"wrong".to_vec());
        assert_eq!(kf.open(path, &wrong, &vid).expect("open"), None);
        assert_eq!(kf.open(path, &p, &[0u8; 32]).expect("open"), None);

        let key = Secret::KeyFile(b"0123456789abcdef0123456789abcdef\n".to_vec());
        let kf2 = KeyFile::create(&key, &master, &vid, Duration::ZERO).expect("create");
        assert_eq!(kf2.open(path, &key, &vid).expect("open"), Some(master));
        assert_eq!(kf2.open(path, &p, &vid).expect("open"), None);
        let short = Secret::KeyFile(b"short".to_vec());
        assert!(KeyFile::create(&short, &master, &vid, Duration::ZERO).is_err());
    }
}
