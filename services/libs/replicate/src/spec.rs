//! Naming a replication target on a command line or in a config file, and opening it.

use std::path::PathBuf;

use tiervault_store::heal::BlobSource;

use crate::dir::DirTarget;
use crate::error::{Error, Result};
use crate::remote::{RemoteOptions, RemoteTarget};
use crate::target::Target;

/// A target that can also serve blobs back (self-heal, restore from the remote).
pub trait Peer: Target + BlobSource {}
impl<T: Target + BlobSource> Peer for T {}

/// `tiervault://HOST[:PORT]` with its TLS files, or a replica directory.
#[derive(Clone)]
pub struct TargetSpec {
    pub to: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Unacknowledged bytes in flight to a remote (None: the default, 64 MiB).
    pub window_bytes: Option<u64>,
    /// Bandwidth limit for a remote.
    pub limiter: Option<std::sync::Arc<crate::throttle::Limiter>>,
}

impl TargetSpec {
    pub fn is_remote(&self) -> bool {
        self.to.starts_with("tiervault://")
    }

    /// Connect (remote) or open (directory) for the vault `vault_id`.
    pub fn open(&self, vault_id: [u8; 32]) -> Result<Box<dyn Peer>> {
        if !self.is_remote() {
            return Ok(Box::new(DirTarget::open(
                std::path::Path::new(&self.to),
                tiervault_store::io::default_io(),
            )?));
        }
        let need = |f: &Option<PathBuf>, flag: &str| {
            f.clone().ok_or_else(|| Error::Target {
                target: self.to.clone(),
                reason: format!("a remote vault needs {flag} FILE"),
            })
        };
        let mut opts = RemoteOptions::new(
            &self.to,
            need(&self.ca, "--ca")?,
            need(&self.cert, "--cert")?,
            need(&self.key, "--key")?,
        );
        if let Some(w) = self.window_bytes {
            opts.window_bytes = w;
        }
        opts.limiter = self.limiter.clone();
        Ok(Box::new(RemoteTarget::connect(&opts, vault_id)?))
    }

    /// The name of this target's cache of known ids.
    pub fn cache_key(&self) -> String {
        if self.is_remote() {
            self.to.clone()
        } else {
            let p = PathBuf::from(&self.to);
            format!("dir:{}", p.canonicalize().unwrap_or(p).display())
        }
    }
}
