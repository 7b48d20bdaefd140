//! The ingest service's core, free of D-Bus: the queue of operations, the one worker that
//! runs them against the vault, the scheduler, the job history and the alerts they raise.
//! The D-Bus layer (`dbus`) only submits requests and reads state.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tiervault_alerts::{NewAlert, Severity};
use tiervault_bus::{AlertBoard, Audit, BusError};
use tiervault_daemon::shutdown::Shutdown;
use tiervault_store::{backup, gc, restore, retention, verify, Snapshot, Vault};
use time::{OffsetDateTime, UtcOffset};

use crate::config::{Config, Job};
use crate::history::{History, Operation, Run, Status, MAX_WARNINGS};

/// What a caller or the scheduler asks for.
#[derive(Debug, Clone)]
pub enum Request {
    /// Run a configured backup job now.
    Job(String),
    /// Back up these paths once (they must lie under a backup root).
    Backup(Vec<PathBuf>),
    Restore {
        snapshot: String,
        path: String,
        target: PathBuf,
    },
    Verify {
        read_data: bool,
    },
    Replicate,
}

/// Live counters of the running operation, read for progress reports.
#[derive(Clone)]
pub enum Live {
    Backup(Arc<backup::Progress>),
    Restore(Arc<restore::Progress>),
    Verify(Arc<verify::Progress>),
    Opaque,
}

impl Live {
    /// (done, total) bytes where known.
    pub fn bytes(&self) -> (u64, u64) {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        match self {
            Live::Backup(p) => {
                let total = if l(&p.walk_done) != 0 {
                    l(&p.bytes_seen)
                } else {
                    0
                };
                (l(&p.bytes_done) + l(&p.bytes_reused), total)
            }
            Live::Restore(p) => (l(&p.bytes_done), l(&p.bytes_total)),
            Live::Verify(p) => (l(&p.packs_done), l(&p.packs_total)),
            Live::Opaque => (0, 0),
        }
    }

    pub fn files(&self) -> u64 {
        match self {
            Live::Backup(p) => p.files.load(Ordering::Relaxed),
            Live::Restore(p) => p.files.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Fraction done, 0..1; 0 while the total is unknown.
    pub fn fraction(&self) -> f64 {
        let (done, total) = self.bytes();
        if total == 0 {
            0.0
        } else {
            (done as f64 / total as f64).min(1.0)
        }
    }
}

struct Active {
    id: u64,
    live: Live,
    cancel: Arc<AtomicBool>,
}

struct State {
    history: History,
    queue: VecDeque<(u64, Request)>,
    active: Option<Active>,
    /// Next scheduled run per job (unix ns).
    next_due: BTreeMap<String, i64>,
    snapshots: Vec<Snapshot>,
    /// Bumped whenever the snapshot list changes, so the bus layer knows to re-publish.
    snapshots_gen: u64,
    /// Runs the worker ended, to be recorded by [`Service::settle`].
    finished: Vec<(u64, Outcome)>,
    /// Snapshot (hex) → the backup job that made it, known before the run is recorded.
    snapshot_jobs: BTreeMap<String, String>,
}

/// What a service is made from (opened by `main`).
pub struct Setup {
    pub cfg: Config,
    pub jobs: Vec<Job>,
    pub offset: UtcOffset,
    pub vault: Vault,
    pub history: History,
    pub alerts: AlertBoard,
    pub audit: Arc<Audit>,
    pub shutdown: Shutdown,
}

pub struct Service {
    pub cfg: Config,
    pub jobs: Vec<Job>,
    pub offset: UtcOffset,
    pub alerts: AlertBoard,
    pub audit: Arc<Audit>,
    pub shutdown: Shutdown,
    vault: Vault,
    state: Mutex<State>,
    work: Condvar,
    threads: usize,
}

pub fn now_ns() -> i64 {
    tiervault_alerts::now_ns()
}

/// The key of the alerts about a run: the job's name, or the operation for ad-hoc work.
fn alert_key(run: &Run) -> String {
    if run.job.is_empty() {
        format!("ad-hoc {}", run.operation.as_str())
    } else {
        run.job.clone()
    }
}

impl Service {
    pub fn new(setup: Setup) -> Service {
        let Setup {
            cfg,
            jobs,
            offset,
            vault,
            history,
            alerts,
            audit,
            shutdown,
        } = setup;
        let threads = cfg
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let now = OffsetDateTime::now_utc();
        let next_due = jobs
            .iter()
            .filter_map(|j| {
                let next = j.schedule.next_after(now, offset)?;
                Some((j.cfg.name.clone(), next.unix_timestamp_nanos() as i64))
            })
            .collect();
        let svc = Service {
            cfg,
            jobs,
            offset,
            alerts,
            audit,
            shutdown,
            vault,
            state: Mutex::new(State {
                history,
                queue: VecDeque::new(),
                active: None,
                next_due,
                snapshots: Vec::new(),
                snapshots_gen: 0,
                finished: Vec::new(),
                snapshot_jobs: BTreeMap::new(),
            }),
            work: Condvar::new(),
            threads,
        };
        svc.refresh_snapshots();
        svc
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn vault_path(&self) -> &Path {
        &self.cfg.vault
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.cfg.name == name)
    }

    /// Raises an alert, logging (not failing) when the store cannot be written: the
    /// operation's own result matters more than its alert.
    pub fn alert(&self, class: &str, key: &str, severity: u8, summary: String, detail: String) {
        let severity = match Severity::try_from(severity) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("alert {class}: {e}");
                return;
            }
        };
        if let Err(e) = self.alerts.raise(NewAlert {
            class: class.into(),
            key: key.into(),
            severity,
            summary,
            detail,
        }) {
            tracing::error!("raising alert {class} {key}: {e}");
        }
    }

    fn clear_alert(&self, class: &str, key: &str) {
        if let Err(e) = self.alerts.clear(class, key) {
            tracing::error!("clearing alert {class} {key}: {e}");
        }
    }

    /// Alerts for jobs cut short by the previous process's end (kill, crash, power loss).
    pub fn report_interrupted(&self, runs: &[Run]) {
        for r in runs {
            self.alert(
                "job.failed",
                &alert_key(r),
                7,
                format!(
                    "{} job {} failed: the service stopped while it ran",
                    r.operation.as_str(),
                    alert_key(r)
                ),
                r.message.clone(),
            );
        }
    }

    /// Checks a request and queues it; returns the run as recorded.
    pub fn submit(&self, req: Request, trigger: &str) -> Result<Run, BusError> {
        let (op, job, target) = self.check(&req)?;
        let mut st = self.state();
        if !job.is_empty() {
            let busy = st
                .history
                .runs()
                .any(|r| r.job == job && !r.status.finished());
            if busy {
                return Err(BusError::Busy(format!(
                    "backup job {job} is already queued or running"
                )));
            }
        }
        let run = Run::new(0, op, &job, trigger, target, now_ns());
        let run = st
            .history
            .add(run)
            .map_err(|e| BusError::Failed(format!("recording the job: {e}")))?;
        st.queue.push_back((run.id, req));
        drop(st);
        self.work.notify_all();
        tracing::info!(
            id = run.id,
            "queued {} {} ({trigger})",
            op.as_str(),
            run.target.join(" ")
        );
        Ok(run)
    }

    /// Validates a request: the job exists, paths lie under the allowed roots, the snapshot
    /// resolves. Returns (operation, job name, target description).
    fn check(&self, req: &Request) -> Result<(Operation, String, Vec<String>), BusError> {
        let show = |p: &Path| p.display().to_string();
        match req {
            Request::Job(name) => {
                let job = self
                    .job(name)
                    .ok_or_else(|| BusError::NotFound(format!("no backup job named \"{name}\"")))?;
                Ok((
                    Operation::Backup,
                    name.clone(),
                    job.cfg.paths.iter().map(|p| show(p)).collect(),
                ))
            }
            Request::Backup(paths) => {
                if paths.is_empty() {
                    return Err(BusError::InvalidArgument("no paths to back up".into()));
                }
                for p in paths {
                    within_roots(p, &self.cfg.backup_roots, "backup-roots", false)?;
                }
                Ok((
                    Operation::Backup,
                    String::new(),
                    paths.iter().map(|p| show(p)).collect(),
                ))
            }
            Request::Restore {
                snapshot,
                path,
                target,
            } => {
                within_roots(target, &self.cfg.restore_roots, "restore-roots", true)?;
                let snap = self.vault.resolve(snapshot, None).map_err(|e| match e {
                    tiervault_store::Error::UnknownSnapshot(_) => BusError::NotFound(e.to_string()),
                    tiervault_store::Error::AmbiguousSnapshot { .. } => {
                        BusError::InvalidArgument(e.to_string())
                    }
                    e => BusError::Failed(e.to_string()),
                })?;
                Ok((
                    Operation::Restore,
                    String::new(),
                    vec![format!("{}:{path} -> {}", snap.id.hex(), show(target))],
                ))
            }
            Request::Verify { read_data } => Ok((
                Operation::Verify,
                String::new(),
                vec![if *read_data { "read-data" } else { "quick" }.into()],
            )),
            Request::Replicate => {
                let status = tiervault_replicate::status::RunStatus::path(&self.cfg.vault);
                if !status.exists() {
                    return Err(BusError::NotConfigured(format!(
                        "vault-replicad has not run for this vault ({} is missing): configure and start it",
                        status.display()
                    )));
                }
                Ok((
                    Operation::Replicate,
                    String::new(),
                    vec!["vault-replicad".into()],
                ))
            }
        }
    }

    /// Cancels a queued job, or asks a running backup to stop.
    pub fn cancel(&self, id: u64, by: &str) -> Result<(), BusError> {
        let mut st = self.state();
        if let Some(pos) = st.queue.iter().position(|(q, _)| *q == id) {
            st.queue.remove(pos);
            let msg = format!("cancelled by {by} before it started");
            st.history
                .update(id, |r| {
                    r.status = Status::Failed;
                    r.ended_ns = now_ns();
                    r.message = msg;
                })
                .map_err(|e| BusError::Failed(e.to_string()))?;
            return Ok(());
        }
        match &st.active {
            Some(a) if a.id == id => match a.live {
                Live::Backup(_) | Live::Opaque => {
                    a.cancel.store(true, Ordering::Release);
                    Ok(())
                }
                _ => Err(BusError::Busy(format!(
                    "job {id} cannot be cancelled once running (only backups and replications can)"
                ))),
            },
            _ => match st.history.get(id) {
                Some(r) => Err(BusError::Busy(format!(
                    "job {id} already {}",
                    r.status.as_str()
                ))),
                None => Err(BusError::NotFound(format!("no job {id}"))),
            },
        }
    }

    /// The run with live figures merged in while it runs.
    pub fn run(&self, id: u64) -> Option<(Run, Option<Live>)> {
        let st = self.state();
        let run = st.history.get(id)?.clone();
        let live = st
            .active
            .as_ref()
            .filter(|a| a.id == id)
            .map(|a| a.live.clone());
        Some((run, live))
    }

    pub fn runs(&self) -> Vec<(Run, Option<Live>)> {
        let st = self.state();
        let active = st.active.as_ref().map(|a| (a.id, a.live.clone()));
        st.history
            .runs()
            .map(|r| {
                let live = active
                    .as_ref()
                    .filter(|(id, _)| *id == r.id)
                    .map(|(_, l)| l.clone());
                (r.clone(), live)
            })
            .collect()
    }

    pub fn last_run_of(&self, job: &str) -> Option<Run> {
        self.state().history.last_of(job).cloned()
    }

    pub fn next_due(&self, job: &str) -> Option<i64> {
        self.state().next_due.get(job).copied()
    }

    pub fn snapshots(&self) -> (Vec<Snapshot>, u64) {
        let st = self.state();
        (st.snapshots.clone(), st.snapshots_gen)
    }

    /// The backup job that made a snapshot, from the history.
    pub fn job_of_snapshot(&self, hex: &str) -> String {
        let st = self.state();
        if let Some(job) = st.snapshot_jobs.get(hex) {
            return job.clone();
        }
        let job = st
            .history
            .runs()
            .find(|r| r.snapshot == hex)
            .map_or(String::new(), |r| r.job.clone());
        job
    }

    fn refresh_snapshots(&self) {
        match self.vault.snapshots() {
            Ok((list, unreadable)) => {
                for u in unreadable.iter() {
                    tracing::warn!("unreadable snapshot: {u:?}");
                }
                let mut st = self.state();
                st.snapshots = list;
                st.snapshots_gen += 1;
            }
            Err(e) => tracing::error!("listing snapshots: {e}"),
        }
    }

    /// Queues the jobs that are due; a job still queued or running from its last turn is
    /// recorded as skipped (and alerts), as the seed's backup software does.
    pub fn tick(&self, now: OffsetDateTime) {
        let now_ns = now.unix_timestamp_nanos() as i64;
        let due: Vec<&Job> = {
            let st = self.state();
            self.jobs
                .iter()
                .filter(|j| st.next_due.get(&j.cfg.name).is_some_and(|t| *t <= now_ns))
                .collect()
        };
        for job in due {
            let name = &job.cfg.name;
            if let Some(next) = job.schedule.next_after(now, self.offset) {
                self.state()
                    .next_due
                    .insert(name.clone(), next.unix_timestamp_nanos() as i64);
            } else {
                self.state().next_due.remove(name);
            }
            match self.submit(Request::Job(name.clone()), "schedule") {
                Ok(_) => {}
                Err(BusError::Busy(why)) => self.record_skipped(job, &why),
                Err(e) => tracing::error!("job {name}: {e}"),
            }
        }
    }

    fn record_skipped(&self, job: &Job, why: &str) {
        let name = &job.cfg.name;
        let mut run = Run::new(
            0,
            Operation::Backup,
            name,
            "schedule",
            job.cfg
                .paths
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            now_ns(),
        );
        run.status = Status::Skipped;
        run.ended_ns = run.queued_ns;
        run.message = format!("skipped: {why}");
        if let Err(e) = self.state().history.add(run) {
            tracing::error!("recording skipped job {name}: {e}");
        }
        self.alert(
            "job.skipped",
            name,
            7,
            format!("backup job {name} skipped its scheduled run"),
            why.to_string(),
        );
    }

    /// Alerts once per run that has been running longer than the configured limit.
    pub fn check_long_running(&self, now_ns: i64) {
        let limit = self.cfg.long_running_ns();
        let long: Vec<Run> = {
            let st = self.state();
            st.history
                .runs()
                .filter(|r| r.status == Status::Running && now_ns - r.started_ns > limit)
                .cloned()
                .collect()
        };
        for r in long {
            let key = format!("{} #{}", alert_key(&r), r.id);
            let hours = (now_ns - r.started_ns) / 3_600_000_000_000;
            self.alert(
                "job.long_running",
                &key,
                7,
                format!(
                    "{} job {} has been running for {hours} h",
                    r.operation.as_str(),
                    alert_key(&r)
                ),
                format!(
                    "started by {}; limit {}",
                    r.trigger, self.cfg.long_running_alert
                ),
            );
        }
    }

    /// The worker: runs queued operations one at a time until shutdown.
    pub fn worker(&self) {
        loop {
            let (id, req, cancel, live) = {
                let mut st = self.state();
                loop {
                    if self.shutdown.is_requested() {
                        return;
                    }
                    if let Some(next) = st.queue.pop_front() {
                        break self.start(&mut st, next);
                    }
                    st = self
                        .work
                        .wait_timeout(st, std::time::Duration::from_millis(500))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            };
            let outcome = self.execute(&req, &cancel, &live);
            self.finish_vault(&req, &outcome);
            let mut st = self.state();
            st.active = None;
            st.finished.push((id, outcome));
        }
    }

    fn start(
        &self,
        st: &mut State,
        (id, req): (u64, Request),
    ) -> (u64, Request, Arc<AtomicBool>, Live) {
        let live = match req {
            Request::Job(_) | Request::Backup(_) => Live::Backup(Arc::default()),
            Request::Restore { .. } => Live::Restore(Arc::default()),
            Request::Verify { .. } => Live::Verify(Arc::default()),
            Request::Replicate => Live::Opaque,
        };
        let cancel = Arc::new(AtomicBool::new(false));
        st.active = Some(Active {
            id,
            live: live.clone(),
            cancel: cancel.clone(),
        });
        if let Err(e) = st.history.update(id, |r| {
            r.status = Status::Running;
            r.started_ns = now_ns();
        }) {
            tracing::error!("recording job {id} as running: {e}");
        }
        (id, req, cancel, live)
    }

    /// Tells the worker to stop: a running backup is abandoned (nothing half-committed: its
    /// snapshot is never written), queued jobs are recorded as failed.
    pub fn stop(&self) {
        self.shutdown.request();
        let mut st = self.state();
        if let Some(a) = &st.active {
            a.cancel.store(true, Ordering::Release);
        }
        let queued: Vec<u64> = st.queue.drain(..).map(|(id, _)| id).collect();
        for id in queued {
            let _ = st.history.update(id, |r| {
                r.status = Status::Failed;
                r.ended_ns = now_ns();
                r.message = "not started: the service was stopping".into();
            });
        }
        drop(st);
        self.work.notify_all();
    }

    fn execute(&self, req: &Request, cancel: &Arc<AtomicBool>, live: &Live) -> Outcome {
        match (req, live) {
            (Request::Job(name), Live::Backup(p)) => match self.job(name) {
                Some(job) => self.backup(
                    &job.cfg.paths,
                    &job.cfg.include,
                    &job.cfg.exclude,
                    cancel,
                    p,
                ),
                None => Outcome::failed(format!("backup job {name} vanished from the config")),
            },
            (Request::Backup(paths), Live::Backup(p)) => self.backup(paths, &[], &[], cancel, p),
            (
                Request::Restore {
                    snapshot,
                    path,
                    target,
                },
                Live::Restore(p),
            ) => self.restore(snapshot, path, target, p),
            (Request::Verify { read_data }, Live::Verify(p)) => self.verify(*read_data, p),
            (Request::Replicate, _) => self.replicate(cancel),
            _ => Outcome::failed("internal: request and progress kinds differ".into()),
        }
    }

    fn backup(
        &self,
        paths: &[PathBuf],
        include: &[String],
        exclude: &[String],
        cancel: &Arc<AtomicBool>,
        progress: &backup::Progress,
    ) -> Outcome {
        // An unmounted NAS share is a missing path: that is a failed job, not a snapshot of
        // nothing with a warning.
        if let Some(p) = paths.iter().find(|p| !p.exists()) {
            return Outcome::failed(format!(
                "{} does not exist (is the share mounted?)",
                p.display()
            ));
        }
        let filter = match backup::Filter::new(include, exclude) {
            Ok(f) => f,
            Err(e) => return Outcome::failed(e.to_string()),
        };
        let opts = backup::Options {
            threads: self.threads,
            filter,
            cancel: Some(cancel.clone()),
            ..backup::Options::default()
        };
        match backup::backup(&self.vault, backup::Source::Paths(paths.to_vec()), &opts, progress) {
            Ok(snap) => {
                let s = &snap.body.summary;
                let new_plain = progress.new_plain_bytes.load(Ordering::Relaxed);
                let mut o = Outcome {
                    status: if snap.body.skipped.is_empty() { Status::Success } else { Status::Warnings },
                    message: format!(
                        "snapshot {}: {} files, {} bytes, {} stored",
                        snap.short_id(),
                        s.files,
                        s.bytes,
                        s.stored_bytes
                    ),
                    snapshot: snap.id.hex(),
                    bytes_read: s.bytes,
                    bytes_stored: s.stored_bytes,
                    files: s.files,
                    skipped_items: s.skipped,
                    excluded: progress.excluded.load(Ordering::Relaxed),
                    dedup_ratio: ratio(s.bytes, new_plain),
                    compression_ratio: ratio(new_plain, s.stored_bytes),
                    warnings: snap
                        .body
                        .skipped
                        .iter()
                        .take(MAX_WARNINGS)
                        .map(|k| format!("{}: {}", String::from_utf8_lossy(&k.path), k.error))
                        .collect(),
                    snapshot_made: true,
                };
                if o.skipped_items > o.warnings.len() as u64 {
                    o.warnings.push(format!(
                        "… and {} more (vaultctl snapshots --json lists every skipped item)",
                        o.skipped_items - o.warnings.len() as u64
                    ));
                }
                o
            }
            Err(tiervault_store::Error::Cancelled) => Outcome::failed(
                "abandoned: cancelled or the service was stopping; no snapshot was written, the vault is unchanged but for unreferenced data the next gc removes".into(),
            ),
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    fn restore(
        &self,
        snapshot: &str,
        path: &str,
        target: &Path,
        progress: &restore::Progress,
    ) -> Outcome {
        let snap = match self.vault.resolve(snapshot, None) {
            Ok(s) => s,
            Err(e) => return Outcome::failed(e.to_string()),
        };
        if let Err(e) = std::fs::create_dir_all(target) {
            return Outcome::failed(format!("creating {}: {e}", target.display()));
        }
        let sub = (!path.is_empty() && path != "/").then_some(path.as_bytes());
        let opts = restore::Options {
            overwrite: false,
            threads: self.threads,
        };
        match restore::restore(
            &self.vault,
            &snap,
            sub,
            &restore::Target::Dir(target.to_path_buf()),
            &opts,
            progress,
        ) {
            Ok(r) => Outcome {
                message: format!(
                    "restored {} files, {} bytes to {}",
                    r.files,
                    r.bytes,
                    target.display()
                ),
                files: r.files,
                bytes_read: r.bytes,
                ..Outcome::status(Status::Success)
            },
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    fn verify(&self, read_data: bool, progress: &verify::Progress) -> Outcome {
        let opts = verify::Options {
            quick: !read_data,
            threads: self.threads,
        };
        match verify::verify(&self.vault, &opts, progress) {
            Ok(r) if r.damage.is_empty() => Outcome {
                message: format!(
                    "{} packs, {} blobs, {} snapshots: no damage",
                    r.packs, r.blobs, r.snapshots
                ),
                bytes_read: r.bytes,
                ..Outcome::status(Status::Success)
            },
            Ok(r) => {
                let mut o = Outcome::failed(format!("{} damaged items", r.damage.len()));
                o.warnings = r
                    .damage
                    .iter()
                    .take(MAX_WARNINGS)
                    .map(|d| {
                        format!(
                            "{} {}: {}",
                            d.pack.as_deref().unwrap_or("-"),
                            d.blob.as_deref().unwrap_or("-"),
                            d.error
                        )
                    })
                    .collect();
                self.alert(
                    "vault.damaged",
                    &self.cfg.vault.display().to_string(),
                    9,
                    format!("verify found {} damaged items in the vault", r.damage.len()),
                    o.warnings.join("\n"),
                );
                o
            }
            Err(e) => Outcome::failed(e.to_string()),
        }
    }

    /// Asks vault-replicad for a run now and waits for its result: the replication client
    /// lives in that service (with the network access this one has not).
    fn replicate(&self, cancel: &AtomicBool) -> Outcome {
        use tiervault_replicate::status::RunStatus;
        let vault = &self.cfg.vault;
        let asked = match tiervault_replicate::service::request_now(vault) {
            Ok(t) => t,
            Err(e) => return Outcome::failed(format!("asking vault-replicad: {e}")),
        };
        let deadline = asked + self.cfg.replicate_timeout_ns();
        loop {
            if let Some(st) = RunStatus::load(vault).filter(|s| s.last_attempt_ns >= asked) {
                return match (&st.last_error, st.last_success_ns) {
                    (None, Some(ok)) if ok >= st.last_attempt_ns => Outcome {
                        message: format!(
                            "replicated to {}: it holds {} snapshots",
                            st.target,
                            st.on_target.len()
                        ),
                        ..Outcome::status(Status::Success)
                    },
                    (err, _) => Outcome::failed(format!(
                        "replication to {} failed: {}",
                        st.target,
                        err.as_deref().unwrap_or("no success recorded")
                    )),
                };
            }
            if cancel.load(Ordering::Acquire) {
                return Outcome::failed(
                    "abandoned: no longer waiting (vault-replicad carries on with the run)".into(),
                );
            }
            if now_ns() > deadline {
                return Outcome::failed(format!(
                    "vault-replicad did not answer within {} (is it running?)",
                    self.cfg.replicate_timeout
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    /// Ends a run in one step (the worker splits it across the loop, see [`Service::settle`]).
    #[cfg(test)]
    fn finish(&self, id: u64, req: &Request, o: Outcome) {
        self.finish_vault(req, &o);
        self.record(id, o);
    }

    /// Retention and the snapshot list after a run that made a snapshot. Runs before the
    /// run is recorded as ended, so a client that sees it ended also finds its snapshot.
    fn finish_vault(&self, req: &Request, o: &Outcome) {
        if o.snapshot_made {
            if let Request::Job(name) = req {
                self.state()
                    .snapshot_jobs
                    .insert(o.snapshot.clone(), name.clone());
                if o.status != Status::Failed {
                    self.apply_retention(name);
                }
            }
            self.refresh_snapshots();
        }
    }

    /// Records the end of runs the worker finished (see [`Service::worker`]); called by the
    /// service's loop right after it published the new snapshot list.
    pub fn settle(&self) {
        let done = std::mem::take(&mut self.state().finished);
        for (id, o) in done {
            self.record(id, o);
        }
    }

    fn record(&self, id: u64, o: Outcome) {
        let recorded = {
            let mut st = self.state();
            if st.active.as_ref().is_some_and(|a| a.id == id) {
                st.active = None;
            }
            let result = st.history.update(id, |r| {
                r.status = o.status;
                r.ended_ns = now_ns();
                r.message = o.message.clone();
                r.snapshot = o.snapshot.clone();
                r.bytes_read = o.bytes_read;
                r.bytes_stored = o.bytes_stored;
                r.files = o.files;
                r.skipped_items = o.skipped_items;
                r.excluded = o.excluded;
                r.compression_ratio = o.compression_ratio;
                r.dedup_ratio = o.dedup_ratio;
                r.warnings = o.warnings.clone();
            });
            if let Err(e) = &result {
                tracing::error!("recording the end of job {id}: {e}");
            }
            st.history.get(id).cloned()
        };
        let Some(run) = recorded else { return };
        tracing::info!(id, status = run.status.as_str(), "{}", run.message);
        let key = alert_key(&run);
        let what = format!("{} job {key}", run.operation.as_str());
        match run.status {
            Status::Failed => self.alert(
                "job.failed",
                &key,
                7,
                format!("{what} failed"),
                run.message.clone(),
            ),
            Status::Warnings => self.alert(
                "job.warnings",
                &key,
                7,
                format!("{what} finished with {} skipped items", run.skipped_items),
                run.warnings.join("\n"),
            ),
            _ => {
                self.clear_alert("job.failed", &key);
                self.clear_alert("job.warnings", &key);
            }
        }
        self.clear_alert("job.long_running", &format!("{key} #{id}"));
    }

    /// After a successful run of a job with `keep`, forgets the job's snapshots the policy
    /// does not keep (the data goes at the next gc).
    fn apply_retention(&self, name: &str) {
        let Some(job) = self.job(name) else { return };
        let Some(policy) = &job.cfg.keep else { return };
        let (all, _) = match self.vault.snapshots() {
            Ok(v) => v,
            Err(e) => return tracing::error!("retention for {name}: {e}"),
        };
        let mut paths: Vec<Vec<u8>> = job
            .cfg
            .paths
            .iter()
            .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
            .collect();
        paths.sort();
        let host = backup::Options::default().hostname;
        let mine: Vec<Snapshot> = all
            .into_iter()
            .filter(|s| {
                let mut p: Vec<Vec<u8>> = s.body.paths.iter().map(|b| b.to_vec()).collect();
                p.sort();
                p == paths && s.body.hostname == host
            })
            .collect();
        match retention::expired(&mine, policy) {
            Ok(drop) if !drop.is_empty() => {
                let ids: Vec<_> = drop.iter().map(|s| s.id).collect();
                match gc::forget(self.vault.repo(), &ids) {
                    Ok(()) => {
                        tracing::info!("job {name}: retention removed {} snapshots", ids.len())
                    }
                    Err(e) => tracing::error!("job {name}: retention: {e}"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!("job {name}: retention: {e}"),
        }
    }
}

/// How an operation ended.
struct Outcome {
    status: Status,
    message: String,
    snapshot: String,
    snapshot_made: bool,
    bytes_read: u64,
    bytes_stored: u64,
    files: u64,
    skipped_items: u64,
    excluded: u64,
    compression_ratio: f64,
    dedup_ratio: f64,
    warnings: Vec<String>,
}

impl Outcome {
    fn status(status: Status) -> Outcome {
        Outcome {
            status,
            message: String::new(),
            snapshot: String::new(),
            snapshot_made: false,
            bytes_read: 0,
            bytes_stored: 0,
            files: 0,
            skipped_items: 0,
            excluded: 0,
            compression_ratio: 0.0,
            dedup_ratio: 0.0,
            warnings: Vec::new(),
        }
    }

    fn failed(message: String) -> Outcome {
        Outcome {
            message,
            ..Outcome::status(Status::Failed)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// `path` must lie under one of `roots` (after resolving symlinks and `..` in the part that
/// exists), so a caller cannot reach outside them with `/mnt/../etc` or a planted symlink.
/// A restore target may not exist yet (`may_be_new`): its nearest existing ancestor is checked.
pub fn within_roots(
    path: &Path,
    roots: &[PathBuf],
    field: &str,
    may_be_new: bool,
) -> Result<(), BusError> {
    if roots.is_empty() {
        return Err(BusError::NotConfigured(format!(
            "{field} is empty in the ingest service's config, so no path is allowed"
        )));
    }
    if !path.is_absolute() {
        return Err(BusError::InvalidArgument(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(BusError::PathNotAllowed(format!(
            "{} contains \"..\"",
            path.display()
        )));
    }
    let mut existing = path.to_path_buf();
    while may_be_new && !existing.exists() {
        if !existing.pop() {
            break;
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|e| BusError::InvalidArgument(format!("{}: {e}", path.display())))?;
    let allowed = roots
        .iter()
        .any(|r| r.canonicalize().is_ok_and(|root| real.starts_with(&root)));
    if allowed {
        Ok(())
    } else {
        Err(BusError::PathNotAllowed(format!(
            "{} is outside {field} ({})",
            path.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiervault_alerts::AlertStore;

    /// A service over a fresh vault in `dir`, with the jobs of `jobs_toml`; no worker runs,
    /// so submitted jobs stay queued.
    fn service(dir: &Path, jobs_toml: &str) -> Service {
        let key = dir.join("key");
        std::fs::write(&key, [7u8; 32]).expect("key");
        let vault_dir = dir.join("vault");
        let secret = tiervault_store::Secret::KeyFile(vec![7u8; 32]);
        let vault = Vault::init(
            &vault_dir,
            &secret,
            &tiervault_store::InitOptions::default(),
            tiervault_store::io::default_io(),
        )
        .expect("init");
        let text = format!(
            "vault = \"{}\"\nkey-file = \"{}\"\nstate-dir = \"{}\"\n{jobs_toml}",
            vault_dir.display(),
            key.display(),
            dir.join("state").display()
        );
        let cfg: Config = toml::from_str(&text).expect("config");
        let (cfg, jobs) = cfg.validate(&dir.join("ingestd.toml")).expect("valid");
        std::fs::create_dir_all(&cfg.state_dir).expect("state");
        let history = History::open(&cfg.state_dir.join("history.json"), 100, now_ns())
            .expect("history")
            .history;
        let (store, _) =
            AlertStore::open(&cfg.state_dir.join("alerts.json"), "ingestd", 10).expect("alerts");
        let audit = Arc::new(Audit::open(&cfg.state_dir.join("audit.log")).expect("audit"));
        let alerts = AlertBoard::new(store, audit.clone(), "/org/tiervault/Ingest1");
        Service::new(Setup {
            cfg,
            jobs,
            offset: UtcOffset::UTC,
            vault,
            history,
            alerts,
            audit,
            shutdown: Shutdown::new(),
        })
    }

    fn active(svc: &Service, class: &str) -> Vec<tiervault_alerts::Alert> {
        svc.alerts
            .snapshot()
            .into_iter()
            .filter(|a| a.class == class && a.is_active())
            .collect()
    }

    #[test]
    fn a_due_job_still_queued_from_its_last_turn_is_recorded_skipped_with_an_alert() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data");
        let svc = service(
            dir.path(),
            &format!(
                "[[job]]\nname = \"nas\"\npaths = [\"{}\"]\nschedule = \"hourly\"\n",
                dir.path().join("data").display()
            ),
        );
        let first_due = svc.next_due("nas").expect("scheduled");
        let at = |ns: i64| OffsetDateTime::from_unix_timestamp_nanos(ns as i128).expect("time");
        // Not due yet: nothing happens.
        svc.tick(at(first_due - 1));
        assert!(svc.runs().is_empty());
        // Due: queued, by the schedule.
        svc.tick(at(first_due));
        let runs = svc.runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].0.status, runs[0].0.trigger.as_str()),
            (Status::Queued, "schedule")
        );
        let second_due = svc.next_due("nas").expect("rescheduled");
        assert_eq!(second_due - first_due, 3_600_000_000_000);
        // An hour later it has not run (no worker here): that turn is skipped, with an alert.
        svc.tick(at(second_due));
        let runs = svc.runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1].0.status, Status::Skipped);
        assert!(
            runs[1].0.message.contains("already queued or running"),
            "{}",
            runs[1].0.message
        );
        let skipped = active(&svc, "job.skipped");
        assert_eq!(skipped.len(), 1);
        assert_eq!(
            (skipped[0].key.as_str(), skipped[0].severity.get()),
            ("nas", 7)
        );
        // A manual start meanwhile is refused as busy, not recorded.
        let e = svc
            .submit(Request::Job("nas".into()), "tv-admin")
            .expect_err("busy");
        assert!(matches!(e, BusError::Busy(_)), "{e:?}");
        assert_eq!(svc.runs().len(), 2);
    }

    #[test]
    fn a_job_running_past_the_limit_raises_one_alert_that_its_end_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data");
        let svc = service(
            dir.path(),
            &format!(
                "long-running-alert = \"24h\"\n[[job]]\nname = \"nas\"\npaths = [\"{}\"]\n",
                dir.path().join("data").display()
            ),
        );
        let run = svc
            .submit(Request::Job("nas".into()), "schedule")
            .expect("queued");
        let (id, req, _, live) = {
            let mut st = svc.state();
            let next = st.queue.pop_front().expect("queued");
            svc.start(&mut st, next)
        };
        assert_eq!(id, run.id);
        let started = svc.run(id).expect("run").0.started_ns;
        svc.check_long_running(started + 23 * 3_600_000_000_000);
        assert!(active(&svc, "job.long_running").is_empty());
        svc.check_long_running(started + 25 * 3_600_000_000_000);
        svc.check_long_running(started + 26 * 3_600_000_000_000);
        let long = active(&svc, "job.long_running");
        assert_eq!(long.len(), 1, "one alert, refreshed, not one per check");
        assert_eq!((long[0].severity.get(), long[0].count), (7, 2));
        assert!(long[0].summary.contains("26 h"), "{}", long[0].summary);
        // The job ends (here: it really runs, on an empty directory).
        let cancel = Arc::new(AtomicBool::new(false));
        let outcome = svc.execute(&req, &cancel, &live);
        svc.finish(id, &req, outcome);
        assert!(active(&svc, "job.long_running").is_empty());
        assert_eq!(svc.run(id).expect("run").0.status, Status::Success);
        assert_eq!(svc.snapshots().0.len(), 1);
    }

    #[test]
    fn a_failed_job_alerts_and_the_next_success_clears_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let svc = service(
            dir.path(),
            &format!(
                "[[job]]\nname = \"nas\"\npaths = [\"{}\"]\n",
                data.display()
            ),
        );
        let run_once = || {
            let run = svc
                .submit(Request::Job("nas".into()), "tv-admin")
                .expect("queued");
            let (id, req, cancel, live) = {
                let mut st = svc.state();
                let next = st.queue.pop_front().expect("queued");
                svc.start(&mut st, next)
            };
            let o = svc.execute(&req, &cancel, &live);
            svc.finish(id, &req, o);
            svc.run(run.id).expect("run").0
        };
        // The share is not mounted: failed, with a message that says so.
        let r = run_once();
        assert_eq!(r.status, Status::Failed);
        assert!(r.message.contains("is the share mounted"), "{}", r.message);
        assert_eq!(active(&svc, "job.failed").len(), 1);
        std::fs::create_dir_all(&data).expect("mount");
        std::fs::write(data.join("f"), b"x").expect("file");
        let r = run_once();
        assert_eq!(r.status, Status::Success, "{}", r.message);
        assert_eq!(r.files, 1);
        assert!(active(&svc, "job.failed").is_empty());
    }

    #[test]
    fn roots_admit_only_what_lies_beneath_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("nas");
        let other = dir.path().join("etc");
        std::fs::create_dir_all(root.join("share")).expect("mkdir");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::os::unix::fs::symlink(&other, root.join("escape")).expect("symlink");
        let roots = vec![root.clone()];
        assert!(within_roots(&root.join("share"), &roots, "backup-roots", false).is_ok());
        for (p, want) in [
            (other.clone(), "PathNotAllowed"),
            (root.join("escape"), "PathNotAllowed"),
            (root.join("share/../../etc"), "PathNotAllowed"),
            (PathBuf::from("share"), "InvalidArgument"),
            (root.join("absent"), "InvalidArgument"),
        ] {
            let e = within_roots(&p, &roots, "backup-roots", false).expect_err("refused");
            assert!(format!("{e:?}").starts_with(want), "{}: {e:?}", p.display());
        }
        // A restore target may be new, but its existing part must be inside.
        assert!(within_roots(&root.join("new/dir"), &roots, "restore-roots", true).is_ok());
        assert!(within_roots(&root.join("escape/new"), &roots, "restore-roots", true).is_err());
        let e = within_roots(&root, &[], "restore-roots", true).expect_err("none");
        assert!(matches!(e, BusError::NotConfigured(_)), "{e:?}");
    }
}
