//! The ingest service on D-Bus: name `org.tiervault.Ingest1`, objects under
//! `/org/tiervault/Ingest1` (an ObjectManager lists them all):
//!
//! | path | interface | what |
//! |---|---|---|
//! | `/org/tiervault/Ingest1` | `org.tiervault.Ingest1.Manager` | start backups, restores, verifies, replications |
//! | `…/backup_jobs/<name>` | `org.tiervault.Ingest1.BackupJob` | a configured backup job: paths, schedule, last result |
//! | `…/jobs/<id>` | `org.tiervault.Ingest1.Job` | one operation, queued, running or in the history, with progress |
//! | `…/snapshots/<id>` | `org.tiervault.Ingest1.Snapshot` | a snapshot in the vault |
//! | `…/alerts/<id>` | `org.tiervault.Alert1` | an alert, with `Acknowledge` |
//!
//! The interface objects read the service's state when asked; the [`Publisher`], run by the
//! service's loop, announces what changed (objects added and removed, PropertiesChanged,
//! the `Completed` signal of a job).

mod backup_job;
mod job;
mod manager;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tiervault_bus::{path_element, BusError, Caller, Mirror};
use zbus::object_server::SignalEmitter;
use zbus::OwnedObjectPath;

pub use manager::Manager;

use crate::service::{Request, Service};

pub const NAME: &str = "org.tiervault.Ingest1";
pub const ROOT: &str = "/org/tiervault/Ingest1";

pub fn job_path(id: u64) -> String {
    format!("{ROOT}/jobs/{id}")
}

pub fn backup_job_path(name: &str) -> String {
    format!("{ROOT}/backup_jobs/{}", path_element(name))
}

pub fn snapshot_path(hex: &str) -> String {
    format!("{ROOT}/snapshots/{}", &hex[..hex.len().min(16)])
}

/// One state-changing call, as the audit log records it.
pub struct Call<'a> {
    pub caller: &'a Caller,
    pub object: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    pub args: serde_json::Value,
}

/// Writes `call` and its result to the audit log; a log that cannot be written is reported,
/// not a reason to fail the call (the work was done or refused either way).
pub fn audit<T>(
    svc: &Service,
    call: Call<'_>,
    result: &Result<T, BusError>,
    ok: impl Fn(&T) -> String,
) {
    let shown = result.as_ref().map(ok).map_err(|e| format!("{e:?}"));
    if let Err(e) = svc.audit.record(
        call.caller,
        call.object,
        call.interface,
        call.member,
        call.args,
        &shown,
    ) {
        tracing::error!("{e}");
    }
}

/// Queues `req` for `caller` and registers its Job object before answering, so the caller
/// can read the object as soon as it has the path.
pub async fn submit(
    svc: &Arc<Service>,
    server: &zbus::ObjectServer,
    req: Request,
    caller: &Caller,
) -> Result<OwnedObjectPath, BusError> {
    let run = svc.submit(req, &caller.label())?;
    let path = job::object_path(run.id);
    server
        .at(path.as_str(), job::JobObject::new(svc.clone(), run.id))
        .await
        .map_err(BusError::ZBus)?;
    Ok(path)
}

/// Announces changes of the service's state on the bus; owned by the service's loop.
pub struct Publisher {
    svc: Arc<Service>,
    jobs: Mirror<u64>,
    backup_jobs: Mirror<String>,
    snapshots: Mirror<String>,
    snapshots_gen: Option<u64>,
    /// Jobs whose `Completed` signal is sent (or that finished before this process).
    completed: BTreeSet<u64>,
}

impl Publisher {
    pub fn new(svc: Arc<Service>) -> Publisher {
        let completed = svc
            .runs()
            .iter()
            .filter(|(r, _)| r.status.finished())
            .map(|(r, _)| r.id)
            .collect();
        Publisher {
            svc,
            jobs: Mirror::new(job::INTERFACE),
            backup_jobs: Mirror::new(backup_job::INTERFACE),
            snapshots: Mirror::new(snapshot::INTERFACE),
            snapshots_gen: None,
            completed,
        }
    }

    pub async fn publish(&mut self, conn: &zbus::Connection) -> zbus::Result<()> {
        let svc = self.svc.clone();
        // Snapshots first, then the runs that made them are recorded as ended: a client that
        // sees a job end finds its snapshot.
        let (snaps, generation) = self.svc.snapshots();
        if self.snapshots_gen != Some(generation) {
            let current = snaps
                .iter()
                .map(|s| {
                    let hex = s.id.hex();
                    (hex.clone(), (snapshot_path(&hex), snapshot::props(s)))
                })
                .collect();
            self.snapshots
                .sync(conn, current, |hex| {
                    snapshot::SnapshotObject::new(svc.clone(), hex)
                })
                .await?;
            self.snapshots_gen = Some(generation);
        }
        self.svc.settle();
        let now = crate::service::now_ns();
        let runs = self.svc.runs();
        let current = runs
            .iter()
            .map(|(r, live)| {
                (
                    r.id,
                    (
                        job_path(r.id),
                        job::JobView::of(r, live.as_ref(), now).props(),
                    ),
                )
            })
            .collect();
        self.jobs
            .sync(conn, current, |id| job::JobObject::new(svc.clone(), *id))
            .await?;
        for (r, _) in runs.iter().filter(|(r, _)| r.status.finished()) {
            if self.completed.insert(r.id) {
                let emitter = SignalEmitter::new(conn, job_path(r.id))?;
                job::JobObject::completed(
                    &emitter,
                    matches!(
                        r.status,
                        crate::history::Status::Success | crate::history::Status::Warnings
                    ),
                    &r.message,
                )
                .await?;
            }
        }

        let defs: BTreeMap<String, _> = self
            .svc
            .jobs
            .iter()
            .map(|j| {
                let name = j.cfg.name.clone();
                let view = backup_job::BackupJobView::of(&self.svc, &name);
                (name.clone(), (backup_job_path(&name), view.props()))
            })
            .collect();
        self.backup_jobs
            .sync(conn, defs, |name| {
                backup_job::BackupJobObject::new(svc.clone(), name)
            })
            .await?;

        if self.svc.alerts.take_dirty() {
            self.svc.alerts.publish(conn).await?;
        }
        Ok(())
    }
}
