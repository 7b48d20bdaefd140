//! An on-disk chunk index for a backup vault: billions of 32-byte chunk ids (keyed BLAKE3,
//! so uniformly distributed) mapped to 16-byte location records, within a fixed memory
//! budget. The format and design are in `docs/chunkindex.md`.
//!
//! ```
//! use tiervault_chunkindex::{ChunkIndex, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let mut index = ChunkIndex::open(dir.path(), Options::with_budget(64 << 20))?;
//! let id = *blake3::hash(b"a chunk").as_bytes();
//! assert_eq!(index.insert(&id, [7; 16])?, None);
//! index.commit(b"packs up to #17")?;
//! drop(index);
//!
//! let index = ChunkIndex::open(dir.path(), Options::with_budget(64 << 20))?;
//! assert_eq!(index.get(&id)?, Some([7; 16]));
//! assert_eq!(index.watermark(), b"packs up to #17");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Architecture invariants:
//! - **Durable state changes only by the manifest's write, fsync, rename, fsync directory.**
//!   Run files are immutable and fsynced before a manifest names them; an open removes run
//!   files the manifest does not name.
//! - **"Present" is only answered from the full 32-byte key** read back from a checked page
//!   (or the insert buffer); the filters only ever skip reads.
//! - **`memory_used()` never exceeds the budget**: it counts the filters, fence and radix
//!   tables, the insert buffer with the tables of the run it will flush into, the page cache
//!   and a fixed I/O reserve.

mod cache;
mod error;
mod filter;
mod index;
mod le;
mod manifest;
mod memtable;
mod run;

pub use error::{Error, Result};
pub use index::{ChunkIndex, Iter, Options, Stats, IO_RESERVE};
pub use manifest::MAX_WATERMARK;
