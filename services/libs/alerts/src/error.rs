//! Everything that can go wrong with an alert or its store.

use std::path::PathBuf;

/// Why an alert could not be raised, cleared, acknowledged, or its store opened.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A severity outside 1..=10.
    #[error("severity {0} is out of range: severities run from 1 (record only) to 10 (P1)")]
    Severity(u8),
    /// A field of an alert, acknowledgement or store that breaks its rules.
    #[error("alert {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No alert with this id is in the store (never raised, or dropped from history).
    #[error("no alert with id {0}")]
    NotFound(u64),
    /// The hard cap on active alerts is reached; the new alert was not raised.
    #[error(
        "{}: {limit} alerts are already active, not raising another ({class} {key:?})",
        path.display()
    )]
    TooManyActive {
        path: PathBuf,
        limit: usize,
        class: String,
        key: String,
    },
    /// Every id has been handed out; only reachable with a hand-edited store.
    #[error("{}: alert ids are exhausted", path.display())]
    IdsExhausted { path: PathBuf },
    /// The store file exists but could not be read (permissions, I/O error): unlike a file
    /// that reads but does not parse, this is not set aside, since nothing is known about it.
    #[error("{}: cannot read the alert store", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store (or, when a corrupt one is set aside, its copy) could not be written; the
    /// store in memory is as it was before the call.
    #[error("{}: cannot write the alert store", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store could not be encoded as JSON.
    #[error("{}: cannot encode the alert store", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The store file belongs to another service: two services configured with one file.
    #[error(
        "{}: the alert store belongs to service {found:?}, not to {expected:?}",
        path.display()
    )]
    WrongSource {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// Another service's store file read by [`crate::read_store`] does not parse; it is left
    /// as it is (its owner sets it aside when it next opens it).
    #[error("{}: the alert store is damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
}
