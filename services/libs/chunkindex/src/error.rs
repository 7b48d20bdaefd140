//! The crate's one error type.
//!
//! Policy: every variant that comes from a file names that file; data read from disk is
//! checked (checksums, lengths, counts) before it is used, and a failed check is
//! [`Error::Corrupt`], never a wrong answer. [`Error::is_damage`] tells damaged stored bytes
//! (rebuild the index from the packs) from everything else.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes fail a check (magic, version, length, checksum, order).
    #[error("{path}: corrupt chunk index file: {what}")]
    Corrupt { path: PathBuf, what: String },
    /// The budget given to `open` cannot hold the in-memory tables of the index as it is on
    /// disk (mostly the filter: `bits_per_entry` per entry).
    #[error(
        "memory budget of {budget} bytes is too small for {entries} entries: the filter, page \
         tables and minimum buffers need {needed} bytes"
    )]
    BudgetTooSmall {
        budget: u64,
        needed: u64,
        entries: u64,
    },
    /// The index grew until its filter leaves no room for an insert buffer within the budget.
    #[error(
        "memory budget of {budget} bytes is exhausted at {entries} entries: commit and reopen \
         with a larger budget (or fewer bits per entry)"
    )]
    BudgetExhausted { budget: u64, entries: u64 },
    /// Another process (or handle) holds the directory's lock.
    #[error("{path}: chunk index is in use by another handle")]
    Locked { path: PathBuf },
    /// A change was asked of a handle opened with `open_reader`.
    #[error("{path}: chunk index opened read-only (another process maintains it)")]
    ReadOnly { path: PathBuf },
    /// An invalid argument (an option out of range, a watermark too long).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// An earlier flush or merge failed half-way: the in-memory state no longer matches the
    /// files. Reopen the directory; it comes back at its last commit.
    #[error("chunk index handle is unusable after an earlier failed write; reopen it")]
    Poisoned,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            what: what.into(),
        }
    }

    /// True when stored bytes are damaged (as opposed to an I/O failure or a bad request).
    pub fn is_damage(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
