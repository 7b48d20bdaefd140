//! `org.tiervault.Ingest1.Job`: one operation (backup, restore, verify, replicate), from
//! queued through running (with progress) to its place in the history — in the spirit of
//! UDisks2's Job objects. Long operations return its path at once.

use std::sync::Arc;

use tiervault_bus::{prop, usec, BusError, Caller, Props};
use zbus::object_server::SignalEmitter;
use zbus::{interface, OwnedObjectPath};

use crate::history::Run;
use crate::service::{Live, Service};

pub const INTERFACE: &str = "org.tiervault.Ingest1.Job";

/// A job's properties, computed once from the history and the live counters.
pub struct JobView {
    pub operation: String,
    pub backup_job: String,
    pub trigger: String,
    pub status: String,
    pub target: Vec<String>,
    pub queued: u64,
    pub started: u64,
    pub ended: u64,
    pub duration: u64,
    pub progress: f64,
    pub bytes_done: u64,
    pub bytes_total: u64,
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

impl JobView {
    pub fn of(r: &Run, live: Option<&Live>, now_ns: i64) -> JobView {
        let (bytes_done, bytes_total) = live.map_or((0, 0), Live::bytes);
        let finished = r.status.finished();
        JobView {
            operation: r.operation.as_str().into(),
            backup_job: r.job.clone(),
            trigger: r.trigger.clone(),
            status: r.status.as_str().into(),
            target: r.target.clone(),
            queued: usec(r.queued_ns),
            started: usec(r.started_ns),
            ended: usec(r.ended_ns),
            duration: (r.duration_ns(now_ns).max(0) / 1000) as u64,
            progress: if finished {
                1.0
            } else {
                live.map_or(0.0, Live::fraction)
            },
            bytes_done,
            bytes_total,
            bytes_read: r.bytes_read,
            bytes_stored: r.bytes_stored,
            files: if finished {
                r.files
            } else {
                live.map_or(0, Live::files)
            },
            skipped_items: r.skipped_items,
            excluded: r.excluded,
            compression_ratio: r.compression_ratio,
            dedup_ratio: r.dedup_ratio,
            snapshot: r.snapshot.clone(),
            message: r.message.clone(),
            warnings: r.warnings.clone(),
        }
    }

    /// What changes over a job's life; `Duration` is left out so a running job does not
    /// signal every tick for the clock alone.
    pub fn props(&self) -> Props {
        Props::from([
            ("Status", prop(self.status.clone())),
            ("Started", prop(self.started)),
            ("Ended", prop(self.ended)),
            ("Progress", prop(self.progress)),
            ("BytesDone", prop(self.bytes_done)),
            ("BytesTotal", prop(self.bytes_total)),
            ("BytesRead", prop(self.bytes_read)),
            ("BytesStored", prop(self.bytes_stored)),
            ("Files", prop(self.files)),
            ("SkippedItems", prop(self.skipped_items)),
            ("Excluded", prop(self.excluded)),
            ("CompressionRatio", prop(self.compression_ratio)),
            ("DedupRatio", prop(self.dedup_ratio)),
            ("Snapshot", prop(self.snapshot.clone())),
            ("Message", prop(self.message.clone())),
            ("Warnings", prop(self.warnings.clone())),
        ])
    }
}

pub struct JobObject {
    svc: Arc<Service>,
    id: u64,
}

impl JobObject {
    pub fn new(svc: Arc<Service>, id: u64) -> JobObject {
        JobObject { svc, id }
    }

    fn view(&self) -> zbus::fdo::Result<JobView> {
        let (run, live) = self
            .svc
            .run(self.id)
            .ok_or_else(|| zbus::fdo::Error::UnknownObject(format!("job {} is gone", self.id)))?;
        Ok(JobView::of(&run, live.as_ref(), crate::service::now_ns()))
    }
}

/// A backup, restore, verify or replication. Status is one of queued, running, success,
/// warnings, failed, skipped. Times are microseconds since the epoch (0 = not yet);
/// Progress runs from 0 to 1 (0 while the total is still being counted); BytesDone and
/// BytesTotal are live while it runs (packs for a verify). The figures of a finished backup:
/// BytesRead (the bytes its paths hold), BytesStored (new bytes written to the vault),
/// CompressionRatio and DedupRatio (0 when not applicable).
#[interface(name = "org.tiervault.Ingest1.Job")]
impl JobObject {
    /// Cancels a queued job, or asks a running backup to stop (it is recorded as failed,
    /// with no snapshot written); a running replication stops being waited for
    /// (vault-replicad finishes its run). Restores and verifies cannot be cancelled once
    /// running.
    async fn cancel(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), BusError> {
        let caller = Caller::identify(conn, &header).await;
        let result = self.svc.cancel(self.id, &caller.label());
        let object = super::job_path(self.id);
        let call = super::Call {
            caller: &caller,
            object: &object,
            interface: INTERFACE,
            member: "Cancel",
            args: serde_json::json!({}),
        };
        super::audit(&self.svc, call, &result, |()| "cancel requested".into());
        result
    }

    /// Sent once when the job ends: success is true for status success or warnings.
    #[zbus(signal)]
    pub async fn completed(
        emitter: &SignalEmitter<'_>,
        success: bool,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn id(&self) -> u64 {
        self.id
    }
    #[zbus(property)]
    fn operation(&self) -> zbus::fdo::Result<String> {
        Ok(self.view()?.operation)
    }
    /// The backup job's name; empty for an ad-hoc operation.
    #[zbus(property)]
    fn backup_job(&self) -> zbus::fdo::Result<String> {
        Ok(self.view()?.backup_job)
    }
    /// `schedule`, or the user who started it.
    #[zbus(property)]
    fn trigger(&self) -> zbus::fdo::Result<String> {
        Ok(self.view()?.trigger)
    }
    #[zbus(property)]
    fn status(&self) -> zbus::fdo::Result<String> {
        Ok(self.view()?.status)
    }
    /// The paths backed up, or what is restored where.
    #[zbus(property)]
    fn target(&self) -> zbus::fdo::Result<Vec<String>> {
        Ok(self.view()?.target)
    }
    #[zbus(property)]
    fn queued(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.queued)
    }
    #[zbus(property)]
    fn started(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.started)
    }
    #[zbus(property)]
    fn ended(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.ended)
    }
    /// Microseconds, so far for a running job.
    #[zbus(property(emits_changed_signal = "false"))]
    fn duration(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.duration)
    }
    #[zbus(property)]
    fn progress(&self) -> zbus::fdo::Result<f64> {
        Ok(self.view()?.progress)
    }
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.bytes_done)
    }
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.bytes_total)
    }
    #[zbus(property)]
    fn bytes_read(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.bytes_read)
    }
    #[zbus(property)]
    fn bytes_stored(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.bytes_stored)
    }
    #[zbus(property)]
    fn files(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.files)
    }
    /// Entries a backup could not read (listed in the snapshot and in Warnings).
    #[zbus(property)]
    fn skipped_items(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.skipped_items)
    }
    /// Entries left out by the job's exclude/include filters.
    #[zbus(property)]
    fn excluded(&self) -> zbus::fdo::Result<u64> {
        Ok(self.view()?.excluded)
    }
    #[zbus(property)]
    fn compression_ratio(&self) -> zbus::fdo::Result<f64> {
        Ok(self.view()?.compression_ratio)
    }
    #[zbus(property)]
    fn dedup_ratio(&self) -> zbus::fdo::Result<f64> {
        Ok(self.view()?.dedup_ratio)
    }
    /// The snapshot a backup made (full id), else empty.
    #[zbus(property)]
    fn snapshot(&self) -> zbus::fdo::Result<String> {
        Ok(self.view()?.snapshot)
    }
    #[zbus(property)]
    fn message(&self) -> zbus::fdo::Result<String> {
        Ok(self.view()?.message)
    }
    #[zbus(property)]
    fn warnings(&self) -> zbus::fdo::Result<Vec<String>> {
        Ok(self.view()?.warnings)
    }
}

/// The path of a job as a D-Bus object path.
pub fn object_path(id: u64) -> OwnedObjectPath {
    OwnedObjectPath::try_from(super::job_path(id)).unwrap_or_else(|_| OwnedObjectPath::default())
}
