//! The audit log: every method call that changes state, with who, what, when and the result,
//! one JSON object per line so `jq` and a support bundle can read it. Each line is on disk
//! (fdatasync) before the reply goes out: an operator's action must not vanish in a power cut.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::Caller;

/// When the log passes this size it is renamed to `<name>.1` (the previous `.1` is dropped),
/// which bounds it to twice this on disk.
const ROTATE_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
}

impl Audit {
    pub fn open(path: &Path) -> Result<Audit, AuditError> {
        let file = open_append(path)?;
        Ok(Audit {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record. `args` are the call's arguments as the service understood them;
    /// `result` is `Ok(what happened)` or `Err(the error returned)`.
    pub fn record(
        &self,
        caller: &Caller,
        object: &str,
        interface: &str,
        member: &str,
        args: serde_json::Value,
        result: &Result<String, String>,
    ) -> Result<(), AuditError> {
        let (ok, detail) = match result {
            Ok(d) => (true, d.as_str()),
            Err(e) => (false, e.as_str()),
        };
        let line = serde_json::json!({
            "time_ns": now_ns(),
            "user": caller.user,
            "uid": caller.uid,
            "pid": caller.pid,
            "sender": caller.sender,
            "object": object,
            "interface": interface,
            "member": member,
            "args": args,
            "ok": ok,
            "result": detail,
        });
        let mut text = line.to_string();
        text.push('\n');
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.metadata().map_err(io)?.len() >= ROTATE_BYTES {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old).map_err(io)?;
            *file = open_append(&self.path)?;
        }
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines_naming_caller_call_and_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path).expect("open");
        let caller = Caller {
            sender: ":1.9".into(),
            uid: Some(1001),
            pid: Some(77),
            user: "tv-admin".into(),
        };
        let args = serde_json::json!({"job": "nas"});
        audit
            .record(
                &caller,
                "/o",
                "i.F",
                "StartJob",
                args.clone(),
                &Ok("/o/jobs/1".into()),
            )
            .expect("record");
        audit
            .record(
                &caller,
                "/o",
                "i.F",
                "StartJob",
                args,
                &Err("NotFound: x".into()),
            )
            .expect("record");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["user"], "tv-admin");
        assert_eq!(lines[0]["uid"], 1001);
        assert_eq!(lines[0]["member"], "StartJob");
        assert_eq!(lines[0]["args"]["job"], "nas");
        assert_eq!(lines[0]["ok"], true);
        assert_eq!(lines[1]["ok"], false);
        assert_eq!(lines[1]["result"], "NotFound: x");
    }
}
