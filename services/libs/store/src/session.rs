//! Sessions: every process that opens a vault registers one, so a garbage collection can
//! tell when everyone who might still use a blob it condemned has finished
//! (docs/format.md section 10).
//!
//! A session is a file `sessions/<hex>` that its owner holds under an exclusive `flock` for as
//! long as the vault is open. The kernel drops the lock when the process dies, so a session
//! file nobody holds is stale and is removed by whoever notices.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::id::PackId;

pub(crate) const DIR: &str = "sessions";

/// This process's registration; removed on drop.
pub(crate) struct Session {
    path: PathBuf,
    name: String,
    _file: File,
}

impl Session {
    /// Register in `root/sessions/`. Lock files are not data: they bypass the `Io` seam
    /// (nothing about them needs to survive a power cut).
    pub(crate) fn register(root: &Path) -> std::io::Result<Session> {
        let dir = root.join(DIR);
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
        }
        let name = PackId::random().hex();
        let path = dir.join(&name);
        let file = File::create(&path)?;
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)?;
        Ok(Session {
            path,
            name,
            _file: file,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Names of the sessions whose owners are alive; stale files are removed on the way.
pub(crate) fn live(root: &Path) -> std::io::Result<Vec<String>> {
    let dir = root.join(DIR);
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if is_alive(&dir.join(&name)) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// True while the session's owner holds its lock. A vanished file is a finished session.
pub(crate) fn alive(root: &Path, name: &str) -> bool {
    is_alive(&root.join(DIR).join(name))
}

fn is_alive(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        // We got the lock: its owner is gone.
        Ok(()) => {
            let _ = std::fs::remove_file(path);
            false
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_alive_while_held_and_gone_after_drop() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = Session::register(tmp.path()).expect("register");
        let name = s.name().to_string();
        assert!(alive(tmp.path(), &name));
        assert_eq!(live(tmp.path()).expect("list"), vec![name.clone()]);
        drop(s);
        assert!(!alive(tmp.path(), &name));
        assert!(live(tmp.path()).expect("list").is_empty());
    }

    #[test]
    fn a_file_nobody_holds_is_stale_and_removed() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(tmp.path().join(DIR)).expect("mkdir");
        let stale = tmp.path().join(DIR).join("00ff");
        std::fs::write(&stale, b"").expect("write");
        assert!(live(tmp.path()).expect("list").is_empty());
        assert!(!stale.exists());
    }
}
