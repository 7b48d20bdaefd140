//! Replication: copy a vault's snapshots to another holder — a replica directory or the
//! remote vault — sending only the blobs it lacks (docs/format.md section 11).
//!
//! The driver ([`replicate`]) works on the keyless [`Repo`](tiervault_store::Repo): it reads
//! each snapshot's reference list, asks the target which blobs it holds (in large batches,
//! after consulting a local cache of ids the target is known to hold), sends the rest, waits
//! until they are durable on the target, and only then sends the snapshot file, which the
//! target commits atomically after checking that it holds every blob the snapshot references.

pub mod alerts;
mod cache;
mod dir;
mod driver;
mod error;
mod pull;
mod remote;
pub mod service;
mod spec;
pub mod status;
mod target;
pub mod throttle;
pub mod transfer;

pub use cache::{budget as cache_budget, BudgetSource, KnownCache};
pub use dir::DirTarget;
pub use driver::{replicate, Options, Progress, Report};
pub use error::{Error, Result};
pub use pull::{pull, PullReport};
pub use remote::{kind_of, wire_kind, RemoteOptions, RemoteTarget};
pub use spec::{Peer, TargetSpec};
pub use target::{OutBlob, RemoteSnapshot, Target, VaultMeta};
