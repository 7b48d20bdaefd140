//! The job history: every backup, restore, verify and replication the service ran or was
//! asked to run, with status, times and figures. Persisted (whole file, write-fsync-rename)
//! at every state change, so a crash or kill leaves the last state on disk; a job found
//! `running` or `queued` at start was cut short and is recorded as failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Backup,
    Restore,
    Verify,
    Replicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Success,
    Warnings,
    Failed,
    Skipped,
}

impl Status {
    pub fn finished(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

macro_rules! name_of {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
    };
}
name_of!(Operation { Backup => "backup", Restore => "restore", Verify => "verify", Replicate => "replicate" });
name_of!(Status { Queued => "queued", Running => "running", Success => "success", Warnings => "warnings", Failed => "failed", Skipped => "skipped" });

/// At most this many warnings are kept per job (the snapshot lists every skipped item).
pub const MAX_WARNINGS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: u64,
    pub operation: Operation,
    /// The backup job's name, empty for ad-hoc operations.
    pub job: String,
    /// What started it: `schedule`, or the caller (`tv-admin (uid 1001)`).
    pub trigger: String,
    pub status: Status,
    /// What it works on: paths backed up, `snapshot:path -> target` for a restore.
    pub target: Vec<String>,
    pub queued_ns: i64,
    pub started_ns: i64,
    pub ended_ns: i64,
    pub bytes_read: u64,
    pub bytes_stored: u64,
    pub files: u64,
    pub skipped_items: u64,
    pub excluded: u64,
    pub compression_ratio: f64,
    pub dedup_ratio: f64,
    pub snapshot: String,
    pub message: String,
    pub warnings: Vec<String>,
}

impl Run {
    pub fn new(
        id: u64,
        operation: Operation,
        job: &str,
        trigger: &str,
        target: Vec<String>,
        now_ns: i64,
    ) -> Run {
        Run {
            id,
            operation,
            job: job.to_string(),
            trigger: trigger.to_string(),
            status: Status::Queued,
            target,
            queued_ns: now_ns,
            started_ns: 0,
            ended_ns: 0,
            bytes_read: 0,
            bytes_stored: 0,
            files: 0,
            skipped_items: 0,
            excluded: 0,
            compression_ratio: 0.0,
            dedup_ratio: 0.0,
            snapshot: String::new(),
            message: String::new(),
            warnings: Vec::new(),
        }
    }

    pub fn duration_ns(&self, now_ns: i64) -> i64 {
        match (self.started_ns, self.ended_ns) {
            (0, _) => 0,
            (s, 0) => now_ns - s,
            (s, e) => e - s,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    version: u32,
    next_id: u64,
    runs: Vec<Run>,
}

const FORMAT: &str = "tiervault-job-history";

pub struct History {
    path: PathBuf,
    limit: usize,
    next_id: u64,
    runs: BTreeMap<u64, Run>,
}

/// What opening found: jobs cut short by the previous process's end.
pub struct Opened {
    pub history: History,
    pub interrupted: Vec<Run>,
    /// A damaged history file was set aside here.
    pub set_aside: Option<PathBuf>,
}

impl History {
    pub fn open(path: &Path, limit: usize, now_ns: i64) -> std::io::Result<Opened> {
        let mut set_aside = None;
        let file: Option<File> = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) if f.format == FORMAT && f.version == 1 => Some(f),
                _ => {
                    let mut aside = path.as_os_str().to_owned();
                    aside.push(format!(".corrupt-{}", now_ns / 1_000_000_000));
                    std::fs::rename(path, &aside)?;
                    set_aside = Some(PathBuf::from(aside));
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut h = History {
            path: path.to_path_buf(),
            limit,
            // After a damaged file, start ids far from any it held so job paths never repeat.
            next_id: if set_aside.is_some() {
                (now_ns / 1_000_000_000) as u64
            } else {
                1
            },
            runs: BTreeMap::new(),
        };
        if let Some(f) = file {
            h.next_id = f.next_id;
            h.runs = f.runs.into_iter().map(|r| (r.id, r)).collect();
        }
        let mut interrupted = Vec::new();
        for r in h.runs.values_mut().filter(|r| !r.status.finished()) {
            let was = r.status;
            r.status = Status::Failed;
            r.ended_ns = now_ns;
            r.message = format!(
                "interrupted: the service stopped while the job was {} (crash, kill or power loss); nothing it wrote was committed",
                was.as_str()
            );
            interrupted.push(r.clone());
        }
        if !interrupted.is_empty() || set_aside.is_some() {
            h.save()?;
        }
        Ok(Opened {
            history: h,
            interrupted,
            set_aside,
        })
    }

    /// Adds a run (its id is assigned here) and saves.
    pub fn add(&mut self, mut run: Run) -> std::io::Result<Run> {
        run.id = self.next_id;
        self.next_id += 1;
        self.runs.insert(run.id, run.clone());
        self.trim();
        self.save()?;
        Ok(run)
    }

    /// Changes a run and saves; false when the id is unknown.
    pub fn update(&mut self, id: u64, f: impl FnOnce(&mut Run)) -> std::io::Result<bool> {
        let Some(r) = self.runs.get_mut(&id) else {
            return Ok(false);
        };
        f(r);
        self.trim();
        self.save()?;
        Ok(true)
    }

    pub fn get(&self, id: u64) -> Option<&Run> {
        self.runs.get(&id)
    }

    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.values()
    }

    /// The latest run of a backup job.
    pub fn last_of(&self, job: &str) -> Option<&Run> {
        self.runs
            .values()
            .rev()
            .find(|r| r.job == job && r.operation == Operation::Backup)
    }

    /// Drops the oldest finished runs beyond the limit; unfinished ones always stay.
    fn trim(&mut self) {
        let finished: Vec<u64> = self
            .runs
            .values()
            .filter(|r| r.status.finished())
            .map(|r| r.id)
            .collect();
        let excess = finished.len().saturating_sub(self.limit);
        for id in &finished[..excess] {
            self.runs.remove(id);
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let file = File {
            format: FORMAT.into(),
            version: 1,
            next_id: self.next_id,
            runs: self.runs.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        tiervault_sys::durable::write_atomic(&self.path, &bytes, 0o640)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Operation, job: &str) -> Run {
        Run::new(0, op, job, "schedule", vec!["/data".into()], 1)
    }

    #[test]
    fn runs_survive_reopen_and_unfinished_ones_become_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.json");
        let mut h = History::open(&path, 10, 1).expect("open").history;
        let a = h.add(run(Operation::Backup, "nas")).expect("add");
        let b = h.add(run(Operation::Verify, "")).expect("add");
        assert_eq!((a.id, b.id), (1, 2));
        h.update(a.id, |r| {
            r.status = Status::Running;
            r.started_ns = 5;
        })
        .expect("update");
        h.update(b.id, |r| r.status = Status::Success)
            .expect("update");
        drop(h);
        let opened = History::open(&path, 10, 99).expect("reopen");
        assert_eq!(opened.interrupted.len(), 1);
        let r = opened.history.get(a.id).expect("kept");
        assert_eq!(r.status, Status::Failed);
        assert_eq!(r.ended_ns, 99);
        assert!(r.message.contains("interrupted"), "{}", r.message);
        assert_eq!(
            opened.history.get(b.id).map(|r| r.status),
            Some(Status::Success)
        );
        // Saved at open: a second open finds nothing new to fail.
        let mut again = History::open(&path, 10, 100).expect("reopen");
        assert!(again.interrupted.is_empty());
        assert_eq!(
            again
                .history
                .add(run(Operation::Backup, "nas"))
                .expect("add")
                .id,
            3
        );
        assert_eq!(again.history.last_of("nas").map(|r| r.id), Some(3));
    }

    #[test]
    fn history_is_bounded_but_keeps_unfinished_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.json");
        let mut h = History::open(&path, 3, 1).expect("open").history;
        let first = h.add(run(Operation::Backup, "long")).expect("add");
        for _ in 0..10 {
            let r = h.add(run(Operation::Backup, "nas")).expect("add");
            h.update(r.id, |r| r.status = Status::Success)
                .expect("update");
        }
        let ids: Vec<u64> = h.runs().map(|r| r.id).collect();
        assert_eq!(ids, vec![first.id, 9, 10, 11]);
    }

    #[test]
    fn a_damaged_file_is_set_aside_and_ids_do_not_repeat() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.json");
        std::fs::write(&path, b"{\"format\": \"tiervault-job-hist").expect("write");
        let mut opened = History::open(&path, 3, 1_800_000_000_000_000_000).expect("open");
        let aside = opened.set_aside.clone().expect("set aside");
        assert!(aside.exists());
        let r = opened
            .history
            .add(run(Operation::Backup, "nas"))
            .expect("add");
        assert!(r.id >= 1_800_000_000, "{}", r.id);
    }
}
