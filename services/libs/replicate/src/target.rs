//! What replication needs from the other side. A replica directory and the remote vault
//! implement it; the driver does not know which one it talks to.

use tiervault_store::{Id, Kind};

use crate::error::Result;

/// The non-secret files that make a vault openable: its config and wrapped key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultMeta {
    pub config: Vec<u8>,
    pub keys: Vec<(String, Vec<u8>)>,
}

/// A snapshot the target holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSnapshot {
    pub id: Id,
    pub time_ns: i64,
    /// The target refuses to forget it before this time (ns; 0 = not locked).
    pub locked_until_ns: i64,
}

/// A stored blob on its way to the target.
#[derive(Debug, Clone)]
pub struct OutBlob {
    pub id: Id,
    pub kind: Kind,
    /// First 16 bytes of BLAKE3 of `stored` (format.md 5): the target checks it on receipt.
    pub digest: [u8; 16],
    pub stored: Vec<u8>,
}

pub trait Target {
    /// How to name the target in messages (a path or URL; never a secret).
    fn describe(&self) -> String;
    /// The vault the target holds (None: it holds none yet).
    fn vault_id(&mut self) -> Result<Option<[u8; 32]>>;
    /// Make the target hold a vault with this config and these key files. A pipelined
    /// target may return before it is confirmed; a refusal then fails the next call.
    /// The new vault holds no blobs, so the driver sends the first snapshot's blobs
    /// without asking which are missing.
    fn create_vault(&mut self, meta: &VaultMeta) -> Result<()>;
    /// For each id: does the target hold it?
    fn have(&mut self, ids: &[Id]) -> Result<Vec<bool>>;
    /// Queue blobs for storing. A pipelined target may return before they are durable.
    fn put_blobs(&mut self, blobs: Vec<OutBlob>) -> Result<()>;
    /// Wait until every queued blob is durable on the target.
    fn flush(&mut self) -> Result<()>;
    fn snapshots(&mut self) -> Result<Vec<RemoteSnapshot>>;
    /// Commit a snapshot file, after making every queued blob durable; fails when the target
    /// lacks a blob it references.
    fn put_snapshot(&mut self, id: &Id, file: &[u8]) -> Result<()>;
    /// Bytes handed to the transport so far (for the report; the tests count on the wire).
    fn bytes_sent(&self) -> u64;
}
