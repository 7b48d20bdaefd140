//! A replica directory as a target: a vault directory written without the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tiervault_store::{io::Io, Id, Ingest, Repo};

use crate::error::{Error, Result};
use crate::target::{OutBlob, RemoteSnapshot, Target, VaultMeta};

pub struct DirTarget {
    path: PathBuf,
    io: Arc<dyn Io>,
    repo: Option<(Repo, Ingest)>,
    sent: u64,
}

impl DirTarget {
    /// A replica at `path`: an existing vault, or (absent or empty) one to be created.
    pub fn open(path: &Path, io: Arc<dyn Io>) -> Result<DirTarget> {
        let repo = if path.join("config").exists() {
            let r = Repo::open(path, io.clone())?;
            let ing = Ingest::new(&r);
            Some((r, ing))
        } else {
            None
        };
        Ok(DirTarget {
            path: path.to_path_buf(),
            io,
            repo,
            sent: 0,
        })
    }

    fn target_err(&self, reason: String) -> Error {
        Error::Target {
            target: self.describe(),
            reason,
        }
    }

    fn parts(&mut self) -> Result<(&Repo, &mut Ingest)> {
        match &mut self.repo {
            Some((r, i)) => Ok((r, i)),
            None => Err(Error::Target {
                target: self.path.display().to_string(),
                reason: "holds no vault yet".into(),
            }),
        }
    }
}

impl Target for DirTarget {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn vault_id(&mut self) -> Result<Option<[u8; 32]>> {
        Ok(self.repo.as_ref().map(|(r, _)| r.vault_id()))
    }

    fn create_vault(&mut self, meta: &VaultMeta) -> Result<()> {
        if self.repo.is_some() {
            return Err(self.target_err("already holds a vault".into()));
        }
        let r = Repo::create_replica(&self.path, &meta.config, meta.keys.clone(), self.io.clone())?;
        let ing = Ingest::new(&r);
        self.repo = Some((r, ing));
        Ok(())
    }

    fn have(&mut self, ids: &[Id]) -> Result<Vec<bool>> {
        let (r, ing) = self.parts()?;
        Ok(ids
            .iter()
            .map(|id| ing.has(r, id))
            .collect::<Result<_, _>>()?)
    }

    fn put_blobs(&mut self, blobs: Vec<OutBlob>) -> Result<()> {
        let mut n = 0u64;
        {
            let (r, ing) = self.parts()?;
            for b in &blobs {
                ing.put(r, &b.id, b.kind, &b.digest, &b.stored)?;
                n += b.stored.len() as u64;
            }
        }
        self.sent += n;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let (r, ing) = self.parts()?;
        ing.flush(r)?;
        Ok(())
    }

    fn snapshots(&mut self) -> Result<Vec<RemoteSnapshot>> {
        let Some((r, _)) = &self.repo else {
            return Ok(Vec::new());
        };
        let (files, _) = r.snapshot_files()?;
        Ok(files
            .into_iter()
            .map(|f| RemoteSnapshot {
                id: f.id,
                time_ns: f.header.time_ns,
                locked_until_ns: 0,
            })
            .collect())
    }

    fn put_snapshot(&mut self, id: &Id, file: &[u8]) -> Result<()> {
        let target = self.describe();
        let (r, ing) = self.parts()?;
        match ing.put_snapshot(r, id, file) {
            Ok(()) => Ok(()),
            Err(e @ tiervault_store::Error::MissingBlobs { .. }) => Err(Error::Missing {
                target,
                reason: e.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn bytes_sent(&self) -> u64 {
        self.sent
    }
}

impl tiervault_store::heal::BlobSource for DirTarget {
    fn fetch(
        &mut self,
        ids: &[Id],
    ) -> std::result::Result<Vec<(Id, tiervault_store::Kind, Vec<u8>)>, String> {
        let Some((r, _)) = &self.repo else {
            return Ok(Vec::new());
        };
        Ok(ids
            .iter()
            .filter_map(|id| {
                r.read_stored_checked(id)
                    .ok()
                    .map(|(l, b)| (*id, l.kind, b))
            })
            .collect())
    }
}
