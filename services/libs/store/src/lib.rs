//! Tiervault's storage engine: a vault of encrypted, deduplicated, compressed snapshots.
//!
//! The on-disk format is specified in `docs/format.md`; this crate is its reference
//! implementation. It needs no root, no daemon, no async runtime and no D-Bus: the services and
//! `vaultctl` build on it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tiervault_store::{backup, io, InitOptions, Secret, Vault};
//!
//! let secret = Secret::Passphrase(b"correct horse battery staple".to_vec());
//! let vault = Vault::init("vault".as_ref(), &secret, &InitOptions::default(), io::default_io())?;
//! let snap = backup::backup(
//!     &vault,
//!     backup::Source::Paths(vec!["/etc".into()]),
//!     &backup::Options::default(),
//!     &backup::Progress::default(),
//! )?;
//! println!("saved {}", snap.short_id());
//! # Ok::<(), tiervault_store::Error>(())
//! ```
//!
//! Architecture invariant: everything written goes through [`io::Io`]; a snapshot file is
//! written only after every pack it references is durable and indexed.

mod blob;
mod codec;
mod config;
mod crypto;
mod error;
mod fsmeta;
mod id;
mod index;
mod ingest;
mod keyfile;
mod pack;
mod refs;
mod repo;
mod session;
mod snapshot;
mod tree;
mod vault;
mod writer;

pub mod backup;
pub mod browse;
pub mod datadir;
pub mod gc;
pub mod heal;
pub mod io;
pub mod restore;
pub mod retention;
pub mod stats;
pub mod verify;

pub use blob::Kind;
pub use codec::{Decoder, Encoder};
pub use config::{ChunkerSizes, Config, InitOptions};
pub use crypto::Keys;
pub use error::{Error, Result};
pub use id::{Id, PackId};
pub use index::{
    budget as index_budget, set_budget as set_index_budget, CacheStatus, Index, Location, PackRef,
    RefreshReport, DEFAULT_BUDGET as DEFAULT_INDEX_BUDGET, MIN_BUDGET as MIN_INDEX_BUDGET,
};
pub use ingest::Ingest;
pub use keyfile::{list_keys, load_key_file, KeyFile, Secret};
pub use pack::{
    digest16, read_trailer, PackEntry, ENTRY_LEN as PACK_ENTRY_LEN, FOOTER_LEN as PACK_FOOTER_LEN,
};
pub use refs::parse as parse_refs;
pub use repo::{Repo, SnapshotFile, Unreadable};
pub use snapshot::{
    decode_header as decode_snapshot_header, Body, Header, Skipped, Snapshot, Summary,
};
pub use tree::{ChunkRef, Content, Entry, NodeType, Tree};
pub use vault::Vault;
