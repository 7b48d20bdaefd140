//! `org.tiervault.Ingest1.Manager`: what operators and remote support ask the ingest service
//! to do. Every method that changes state is written to the audit log, refused or not.

use std::path::PathBuf;
use std::sync::Arc;

use tiervault_bus::{BusError, Caller};
use zbus::{interface, OwnedObjectPath};

use crate::service::{Request, Service};

pub const INTERFACE: &str = "org.tiervault.Ingest1.Manager";

pub struct Manager {
    svc: Arc<Service>,
}

impl Manager {
    pub fn new(svc: Arc<Service>) -> Manager {
        Manager { svc }
    }

    /// Queues `req` for the caller (see [`super::submit`]) and audits the call.
    async fn submit(
        &self,
        req: Request,
        member: &str,
        args: serde_json::Value,
        header: &zbus::message::Header<'_>,
        conn: &zbus::Connection,
        server: &zbus::ObjectServer,
    ) -> Result<OwnedObjectPath, BusError> {
        let caller = Caller::identify(conn, header).await;
        let result = super::submit(&self.svc, server, req, &caller).await;
        let call = super::Call {
            caller: &caller,
            object: super::ROOT,
            interface: INTERFACE,
            member,
            args,
        };
        super::audit(&self.svc, call, &result, |p| p.to_string());
        result
    }
}

/// The ingest service. Methods that start work return the path of a Job object at once;
/// watch its PropertiesChanged (Status, Progress, ...) and its Completed signal.
/// Errors are named `org.tiervault.Error.*` (NotFound, InvalidArgument, PathNotAllowed, Busy,
/// NotConfigured, Failed).
#[interface(name = "org.tiervault.Ingest1.Manager")]
impl Manager {
    /// Runs the configured backup job `name` now.
    async fn start_backup_job(
        &self,
        name: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<OwnedObjectPath, BusError> {
        let args = serde_json::json!({ "name": name });
        self.submit(
            Request::Job(name),
            "StartBackupJob",
            args,
            &header,
            conn,
            server,
        )
        .await
    }

    /// Backs up `paths` once (absolute, each under one of BackupRoots).
    async fn backup(
        &self,
        paths: Vec<String>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<OwnedObjectPath, BusError> {
        let args = serde_json::json!({ "paths": paths });
        let req = Request::Backup(paths.into_iter().map(PathBuf::from).collect());
        self.submit(req, "Backup", args, &header, conn, server)
            .await
    }

    /// Restores `path` of `snapshot` (an id, a unique prefix of one, or `latest`; path `/`
    /// or empty for all of it) into the directory `target`, which must lie under one of
    /// RestoreRoots. Existing files are never overwritten.
    async fn restore(
        &self,
        snapshot: String,
        path: String,
        target: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<OwnedObjectPath, BusError> {
        let args = serde_json::json!({ "snapshot": snapshot, "path": path, "target": target });
        let req = Request::Restore {
            snapshot,
            path,
            target: PathBuf::from(target),
        };
        self.submit(req, "Restore", args, &header, conn, server)
            .await
    }

    /// Checks the vault: every pack's structure and index, and with `read_data` every
    /// blob's contents. Damage raises a severity-9 alert.
    async fn verify(
        &self,
        read_data: bool,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<OwnedObjectPath, BusError> {
        let args = serde_json::json!({ "read_data": read_data });
        self.submit(
            Request::Verify { read_data },
            "Verify",
            args,
            &header,
            conn,
            server,
        )
        .await
    }

    /// Replicates the vault to its remote vault now: asks vault-replicad for a run and
    /// reports its result.
    async fn replicate(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<OwnedObjectPath, BusError> {
        self.submit(
            Request::Replicate,
            "Replicate",
            serde_json::json!({}),
            &header,
            conn,
            server,
        )
        .await
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn vault(&self) -> String {
        self.svc.vault_path().display().to_string()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn backup_roots(&self) -> Vec<String> {
        self.svc
            .cfg
            .backup_roots
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn restore_roots(&self) -> Vec<String> {
        self.svc
            .cfg
            .restore_roots
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }
}
