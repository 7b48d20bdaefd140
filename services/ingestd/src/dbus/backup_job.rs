//! `org.tiervault.Ingest1.BackupJob`: a backup job from the config, its schedule and how
//! its last run went.

use std::sync::Arc;

use tiervault_bus::{prop, usec, BusError, Caller, Props};
use zbus::{interface, OwnedObjectPath};

use super::job::object_path;
use crate::service::{Request, Service};

pub const INTERFACE: &str = "org.tiervault.Ingest1.BackupJob";

/// What changes about a job definition: its next run and its last result.
pub struct BackupJobView {
    pub next_run: u64,
    pub last_job: OwnedObjectPath,
    pub last_status: String,
    pub last_ended: u64,
}

impl BackupJobView {
    pub fn of(svc: &Service, name: &str) -> BackupJobView {
        let last = svc.last_run_of(name);
        BackupJobView {
            next_run: svc.next_due(name).map_or(0, usec),
            last_job: last.as_ref().map_or_else(
                || OwnedObjectPath::try_from("/").unwrap_or_default(),
                |r| object_path(r.id),
            ),
            last_status: last
                .as_ref()
                .map_or(String::new(), |r| r.status.as_str().into()),
            last_ended: last.as_ref().map_or(0, |r| usec(r.ended_ns)),
        }
    }

    pub fn props(&self) -> Props {
        Props::from([
            ("NextRun", prop(self.next_run)),
            ("LastJob", prop(self.last_job.clone())),
            ("LastStatus", prop(self.last_status.clone())),
            ("LastEnded", prop(self.last_ended)),
        ])
    }
}

pub struct BackupJobObject {
    svc: Arc<Service>,
    name: String,
}

impl BackupJobObject {
    pub fn new(svc: Arc<Service>, name: &str) -> BackupJobObject {
        BackupJobObject {
            svc,
            name: name.to_string(),
        }
    }

    fn cfg(&self) -> zbus::fdo::Result<&crate::config::Job> {
        self.svc
            .job(&self.name)
            .ok_or_else(|| zbus::fdo::Error::UnknownObject(format!("no backup job {}", self.name)))
    }
}

/// A backup job: what it backs up (Paths, Include, Exclude), when (Schedule; NextRun in
/// microseconds since the epoch, 0 for a manual job), what it keeps (Retention) and how its
/// last run went (LastJob, LastStatus, LastEnded).
#[interface(name = "org.tiervault.Ingest1.BackupJob")]
impl BackupJobObject {
    /// Runs the job now; returns the new Job object.
    async fn start(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<OwnedObjectPath, BusError> {
        let caller = Caller::identify(conn, &header).await;
        let req = Request::Job(self.name.clone());
        let result = super::submit(&self.svc, server, req, &caller).await;
        let object = super::backup_job_path(&self.name);
        let call = super::Call {
            caller: &caller,
            object: &object,
            interface: INTERFACE,
            member: "Start",
            args: serde_json::json!({}),
        };
        super::audit(&self.svc, call, &result, |p| p.to_string());
        result
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn paths(&self) -> zbus::fdo::Result<Vec<String>> {
        Ok(self
            .cfg()?
            .cfg
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect())
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn schedule(&self) -> zbus::fdo::Result<String> {
        Ok(self.cfg()?.schedule.to_string())
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn include(&self) -> zbus::fdo::Result<Vec<String>> {
        Ok(self.cfg()?.cfg.include.clone())
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn exclude(&self) -> zbus::fdo::Result<Vec<String>> {
        Ok(self.cfg()?.cfg.exclude.clone())
    }
    /// The keep policy as `last=N daily=N …` (empty: every snapshot is kept).
    #[zbus(property(emits_changed_signal = "const"))]
    fn retention(&self) -> zbus::fdo::Result<String> {
        let Some(k) = &self.cfg()?.cfg.keep else {
            return Ok(String::new());
        };
        let mut parts: Vec<String> = [
            ("last", k.last),
            ("hourly", k.hourly),
            ("daily", k.daily),
            ("weekly", k.weekly),
            ("monthly", k.monthly),
            ("yearly", k.yearly),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(w, n)| format!("{w}={n}"))
        .collect();
        if let Some(ns) = k.within_ns {
            if let Ok(d) = tiervault_store::retention::format_duration(ns) {
                parts.push(format!("within={d}"));
            }
        }
        Ok(parts.join(" "))
    }
    #[zbus(property)]
    fn next_run(&self) -> u64 {
        BackupJobView::of(&self.svc, &self.name).next_run
    }
    #[zbus(property)]
    fn last_job(&self) -> OwnedObjectPath {
        BackupJobView::of(&self.svc, &self.name).last_job
    }
    #[zbus(property)]
    fn last_status(&self) -> String {
        BackupJobView::of(&self.svc, &self.name).last_status
    }
    #[zbus(property)]
    fn last_ended(&self) -> u64 {
        BackupJobView::of(&self.svc, &self.name).last_ended
    }
}
