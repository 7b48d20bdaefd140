//! One appliance connection: the request processor. It runs on a blocking thread (the store
//! does file I/O and fsyncs), fed by the connection's reader task and answering through its
//! writer task, so the client can keep many requests in flight.
//!
//! Blobs are acknowledged only once durable: `PutBlobs` requests are answered together when
//! their pack is flushed — when no further request is waiting, when 16 MiB are pending, or
//! before any other request is handled (replies stay in request order).

use std::path::PathBuf;

use tiervault_replicate::{kind_of, wire_kind};
use tiervault_store::{gc, Error as StoreError, Id, Ingest, Repo};
use tiervault_wire::{ErrorCode, Message, SnapshotEntry, WireBlob, WireKeyFile};
use tokio::sync::mpsc::{error::TryRecvError, Receiver, Sender};

use crate::config::TenantPolicy;

/// Flush pending blobs once this many bytes wait.
const FLUSH_BYTES: u64 = 16 << 20;
/// Replies to `GetBlobs` stay below the frame limit with room for framing.
const MAX_REPLY_BYTES: usize = 96 << 20;

pub struct Conn {
    pub tenant: String,
    pub policy: TenantPolicy,
    pub dir: PathBuf,
    pub peer: String,
    repo: Option<(Repo, Ingest)>,
    /// The vault id of the accepted `Hello`: `PutVaultMeta` must send that vault's config.
    greeted: Option<[u8; 32]>,
    /// End the connection once the current reply is sent (unsupported protocol version).
    closing: bool,
    /// `PutBlobs` requests stored but not yet durable: (req, newly stored, already present).
    pending: Vec<(u64, u32, u32)>,
    /// Stored bytes of the tenant's vault, for the quota.
    used: u64,
}

type Reply = (u64, Message);

fn err(code: ErrorCode, message: impl Into<String>) -> Message {
    let mut message: String = message.into();
    message.truncate(tiervault_wire::MAX_ERROR_MESSAGE_LEN);
    Message::Error { code, message }
}

fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

impl Conn {
    pub fn new(tenant: String, policy: TenantPolicy, dir: PathBuf, peer: String) -> Conn {
        Conn {
            tenant,
            policy,
            dir,
            peer,
            repo: None,
            greeted: None,
            closing: false,
            pending: Vec::new(),
            used: 0,
        }
    }

    /// Serve requests until the reader closes or the writer is gone.
    pub fn run(mut self, mut rx: Receiver<Reply>, tx: Sender<Reply>) {
        loop {
            let (req, msg) = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    // Nothing else queued: make pending blobs durable and say so.
                    if !self.flush_acks(&tx) {
                        return;
                    }
                    match rx.blocking_recv() {
                        Some(m) => m,
                        None => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            if !matches!(msg, Message::PutBlobs { .. }) && !self.flush_acks(&tx) {
                return;
            }
            let reply = self.handle(req, msg);
            if let Some(r) = reply {
                if tx.blocking_send((req, r)).is_err() {
                    return;
                }
            }
            if self.closing {
                break;
            }
            if self
                .repo
                .as_ref()
                .is_some_and(|(_, i)| i.pending_bytes() >= FLUSH_BYTES)
                && !self.flush_acks(&tx)
            {
                return;
            }
        }
        // The client went away: keep what is durable; the rest was never acknowledged.
        self.flush_acks(&tx);
    }

    /// Make pending blobs durable and acknowledge them. False when the writer is gone.
    fn flush_acks(&mut self, tx: &Sender<Reply>) -> bool {
        // Blobs stored ahead of a refused one in the same batch have no ack waiting, but `Have`
        // already reports them held, so they must become durable all the same.
        let unflushed = self
            .repo
            .as_ref()
            .is_some_and(|(_, i)| i.pending_bytes() > 0);
        if self.pending.is_empty() && !unflushed {
            return true;
        }
        let result = match &mut self.repo {
            Some((r, i)) => i.flush(r).map(|_| ()),
            None => Ok(()),
        };
        let replies: Vec<Reply> = match result {
            Ok(()) => self
                .pending
                .drain(..)
                .map(|(req, stored, present)| (req, Message::PutOk { stored, present }))
                .collect(),
            Err(e) => {
                tracing::error!(tenant = %self.tenant, "storing blobs failed: {e}");
                self.pending
                    .drain(..)
                    .map(|(req, ..)| {
                        (
                            req,
                            err(ErrorCode::Internal, format!("storing failed: {e}")),
                        )
                    })
                    .collect()
            }
        };
        replies.into_iter().all(|r| tx.blocking_send(r).is_ok())
    }

    fn open_repo(&mut self) -> Result<(), Message> {
        if self.repo.is_some() || !self.dir.join("config").exists() {
            return Ok(());
        }
        let repo = Repo::open(&self.dir, tiervault_store::io::default_io()).map_err(|e| {
            tracing::error!(tenant = %self.tenant, "opening the tenant's vault: {e}");
            err(ErrorCode::Internal, "the tenant's vault cannot be opened")
        })?;
        self.used = repo.index().live_packs().map(|p| p.len).sum();
        let ing = Ingest::new(&repo).with_pack_target(FLUSH_BYTES);
        self.repo = Some((repo, ing));
        Ok(())
    }

    fn handle(&mut self, req: u64, msg: Message) -> Option<Message> {
        if self.greeted.is_none() {
            return Some(match msg {
                Message::Hello {
                    proto,
                    vault_id,
                    client,
                } => self.hello(proto, vault_id, &client),
                other => err(
                    ErrorCode::Unauthorized,
                    format!("expected Hello first, got {}", other.type_name()),
                ),
            });
        }
        let writes = matches!(
            msg,
            Message::PutVaultMeta { .. }
                | Message::PutBlobs { .. }
                | Message::PutSnapshot { .. }
                | Message::Forget { .. }
        );
        if writes && self.greeted == Some([0u8; 32]) {
            return Some(err(
                ErrorCode::Unauthorized,
                format!(
                    "{} refused: a session without a vault id (restore) is read-only",
                    msg.type_name()
                ),
            ));
        }
        Some(match msg {
            Message::PutVaultMeta { config, keys } => self.put_meta(config, keys),
            Message::GetVaultMeta => match &self.repo {
                Some((r, _)) => match (r.config_bytes(), r.key_file_bytes()) {
                    (Ok(config), Ok(keys)) => Message::VaultMeta {
                        config,
                        keys: keys
                            .into_iter()
                            .map(|(name, file)| WireKeyFile { name, file })
                            .collect(),
                    },
                    _ => err(ErrorCode::Internal, "reading the vault's config"),
                },
                None => err(ErrorCode::NotFound, "this tenant holds no vault yet"),
            },
            Message::Have { ids } => match &self.repo {
                Some((r, i)) => match ids.iter().map(|id| i.has(r, &Id(*id))).collect() {
                    Ok(held) => Message::HaveReply { held },
                    Err(e) => {
                        tracing::error!(tenant = %self.tenant, "index lookup: {e}");
                        err(ErrorCode::Internal, "the tenant's index cannot be read")
                    }
                },
                None => Message::HaveReply {
                    held: vec![false; ids.len()],
                },
            },
            Message::PutBlobs { blobs } => return self.put_blobs(req, blobs),
            Message::PutSnapshot { id, file } => self.put_snapshot(Id(id), &file),
            Message::ListSnapshots => self.list(),
            Message::GetSnapshot { id } => match &self.repo {
                Some((r, _)) => match r.read_snapshot_file(&Id(id)) {
                    Ok(file) => Message::SnapshotData { id, file },
                    Err(e) => err(ErrorCode::NotFound, e.to_string()),
                },
                None => err(ErrorCode::NotFound, "this tenant holds no vault yet"),
            },
            Message::GetBlobs { ids } => self.get_blobs(&ids),
            Message::Forget { id } => self.forget(Id(id)),
            Message::Hello { .. } => err(ErrorCode::BadRequest, "Hello sent twice"),
            other if other.is_reply() => err(
                ErrorCode::BadRequest,
                format!("{} is a reply, not a request", other.type_name()),
            ),
            other => err(
                ErrorCode::BadRequest,
                format!("unexpected {}", other.type_name()),
            ),
        })
    }

    fn hello(&mut self, proto: u16, vault_id: [u8; 32], client: &str) -> Message {
        if proto != tiervault_wire::PROTOCOL_VERSION {
            self.closing = true;
            return err(
                ErrorCode::BadRequest,
                format!("protocol version {proto} is not supported (this server speaks 1)"),
            );
        }
        if let Err(m) = self.open_repo() {
            return m;
        }
        // An all-zero vault id: an appliance that lost its vault and wants it back. It may
        // read the tenant's vault but not change it.
        let reader = vault_id == [0u8; 32];
        if let Some((r, _)) = &self.repo {
            if r.vault_id() != vault_id && !reader {
                tracing::warn!(tenant = %self.tenant, peer = %self.peer, "refused: another vault than the tenant's");
                return err(
                    ErrorCode::DifferentVault,
                    format!(
                        "tenant {} holds vault {}, not {}",
                        self.tenant,
                        hex::encode(r.vault_id()),
                        hex::encode(vault_id)
                    ),
                );
            }
        }
        tracing::info!(tenant = %self.tenant, peer = %self.peer, client, "session started");
        self.greeted = Some(vault_id);
        Message::Welcome {
            proto: tiervault_wire::PROTOCOL_VERSION,
            tenant: self.tenant.clone(),
            has_vault: self.repo.is_some(),
        }
    }

    fn put_meta(&mut self, config: Vec<u8>, keys: Vec<WireKeyFile>) -> Message {
        if let Some((r, _)) = &self.repo {
            let same =
                tiervault_store::Config::vault_id_of(&config).is_ok_and(|id| id == r.vault_id());
            return if same {
                Message::Ok
            } else {
                err(ErrorCode::DifferentVault, "this tenant holds another vault")
            };
        }
        match tiervault_store::Config::vault_id_of(&config) {
            Ok(id) if Some(id) == self.greeted => {}
            Ok(id) => {
                return err(
                    ErrorCode::DifferentVault,
                    format!(
                        "the config is of vault {}, not of the vault named in Hello",
                        hex::encode(id)
                    ),
                )
            }
            Err(e) => return err(ErrorCode::BadRequest, format!("not a vault config: {e}")),
        }
        // Checked before anything is created: a refusal half-way would leave a directory that
        // is neither empty nor a vault. (The store also refuses names starting with '.'.)
        if let Some(k) = keys
            .iter()
            .find(|k| k.name.is_empty() || k.name.starts_with('.') || k.name.contains(['/', '\0']))
        {
            return err(
                ErrorCode::BadRequest,
                format!("key file name {:?} is not a plain file name", k.name),
            );
        }
        let keys = keys.into_iter().map(|k| (k.name, k.file)).collect();
        match Repo::create_replica(&self.dir, &config, keys, tiervault_store::io::default_io()) {
            Ok(repo) => {
                let ing = Ingest::new(&repo).with_pack_target(FLUSH_BYTES);
                self.repo = Some((repo, ing));
                tracing::info!(tenant = %self.tenant, "vault created");
                Message::Ok
            }
            Err(e) => err(
                ErrorCode::BadRequest,
                format!("cannot create the vault: {e}"),
            ),
        }
    }

    fn put_blobs(&mut self, req: u64, blobs: Vec<WireBlob>) -> Option<Message> {
        let Some((r, ing)) = &mut self.repo else {
            return Some(err(ErrorCode::BadRequest, "send PutVaultMeta first"));
        };
        let incoming: u64 = blobs.iter().map(|b| b.stored.len() as u64).sum();
        if self.policy.quota_bytes > 0 && self.used + incoming > self.policy.quota_bytes {
            return Some(err(
                ErrorCode::QuotaExceeded,
                format!(
                    "tenant {} would exceed its quota of {} bytes",
                    self.tenant, self.policy.quota_bytes
                ),
            ));
        }
        let (mut stored, mut present) = (0u32, 0u32);
        for b in &blobs {
            match ing.put(r, &Id(b.id), kind_of(b.kind), &b.digest, &b.stored) {
                Ok(true) => {
                    stored += 1;
                    self.used += b.stored.len() as u64;
                }
                Ok(false) => present += 1,
                Err(StoreError::BadBlob { id, reason }) => {
                    tracing::warn!(tenant = %self.tenant, peer = %self.peer, "rejected blob {id}: {reason}");
                    return Some(err(
                        ErrorCode::DigestMismatch,
                        format!("blob {id}: {reason}"),
                    ));
                }
                Err(e) => {
                    tracing::error!(tenant = %self.tenant, "storing blob: {e}");
                    return Some(err(ErrorCode::Internal, format!("storing failed: {e}")));
                }
            }
        }
        self.pending.push((req, stored, present));
        None
    }

    fn put_snapshot(&mut self, id: Id, file: &[u8]) -> Message {
        let Some((r, ing)) = &mut self.repo else {
            return err(ErrorCode::BadRequest, "send PutVaultMeta first");
        };
        match ing.put_snapshot(r, &id, file) {
            Ok(()) => {
                tracing::info!(tenant = %self.tenant, snapshot = %id.short(), "snapshot committed");
                Message::Ok
            }
            Err(e @ StoreError::MissingBlobs { .. }) => err(ErrorCode::MissingBlobs, e.to_string()),
            Err(e @ StoreError::CorruptSnapshot { .. }) => {
                err(ErrorCode::DigestMismatch, e.to_string())
            }
            Err(e) => {
                tracing::error!(tenant = %self.tenant, "committing snapshot {id}: {e}");
                err(ErrorCode::Internal, format!("committing failed: {e}"))
            }
        }
    }

    fn list(&self) -> Message {
        let Some((r, _)) = &self.repo else {
            return Message::SnapshotList {
                snapshots: Vec::new(),
            };
        };
        match r.snapshot_files() {
            Ok((files, _)) => Message::SnapshotList {
                snapshots: files
                    .iter()
                    .map(|f| SnapshotEntry {
                        id: f.id.0,
                        time: f.header.time_ns,
                        size: f.len.min(u32::MAX as u64) as u32,
                        locked_until: self.locked_until(f.header.time_ns),
                    })
                    .collect(),
            },
            Err(e) => err(ErrorCode::Internal, format!("listing snapshots: {e}")),
        }
    }

    fn locked_until(&self, time_ns: i64) -> i64 {
        if self.policy.retention_ns == 0 {
            0
        } else {
            time_ns.saturating_add(self.policy.retention_ns)
        }
    }

    fn get_blobs(&self, ids: &[[u8; 32]]) -> Message {
        let Some((r, _)) = &self.repo else {
            return Message::Blobs { blobs: Vec::new() };
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        for id in ids {
            let Ok((loc, stored)) = r.read_stored_checked(&Id(*id)) else {
                continue;
            };
            if total + stored.len() > MAX_REPLY_BYTES {
                break;
            }
            total += stored.len();
            out.push(WireBlob {
                id: *id,
                kind: wire_kind(loc.kind),
                digest: tiervault_store::digest16(&stored),
                stored,
            });
        }
        Message::Blobs { blobs: out }
    }

    fn forget(&mut self, id: Id) -> Message {
        let Some((r, _)) = &self.repo else {
            return err(ErrorCode::NotFound, "this tenant holds no vault yet");
        };
        let files = match r.snapshot_files() {
            Ok((f, _)) => f,
            Err(e) => return err(ErrorCode::Internal, e.to_string()),
        };
        let Some(f) = files.iter().find(|f| f.id == id) else {
            return err(ErrorCode::NotFound, format!("no snapshot {id}"));
        };
        let until = self.locked_until(f.header.time_ns);
        if until > now_ns() {
            tracing::warn!(tenant = %self.tenant, peer = %self.peer, snapshot = %id.short(), "refused to forget a retention-locked snapshot");
            return err(
                ErrorCode::RetentionLocked,
                format!(
                    "snapshot {} is locked by the tenant's retention until {}",
                    id.short(),
                    rfc3339(until)
                ),
            );
        }
        match gc::forget(r, &[id]) {
            Ok(()) => Message::Ok,
            Err(e @ StoreError::GcPending(_)) => err(ErrorCode::Busy, e.to_string()),
            Err(e) => err(ErrorCode::Internal, e.to_string()),
        }
    }
}

pub fn rfc3339(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ns.to_string())
}
