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

mod operations;
mod roots;

use crate::history::{History, Operation, Run, Status};
use operations::Outcome;
pub use roots::within_roots;

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
                    tiervault_store::Error::UnknownSnapshot(_)
                    | tiervault_store::Error::NoSnapshotHolds { .. } => {
                        BusError::NotFound(e.to_string())
                    }
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

#[cfg(test)]
mod tests;
