//! Replication errors. `is_temporary()` tells the service whether retrying later can help
//! (a cut link, a busy peer) or an operator must act (a different vault, local damage).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] tiervault_store::Error),
    #[error("{target} holds another vault (id {theirs}, ours is {ours})")]
    DifferentVault {
        target: String,
        ours: String,
        theirs: String,
    },
    #[error("{target}: {reason}")]
    Target { target: String, reason: String },
    #[error("{target}: connection lost: {reason}")]
    Link { target: String, reason: String },
    #[error("{target} lacks blobs the snapshot references: {reason}")]
    Missing { target: String, reason: String },
    #[error("{target} refused: {reason}")]
    Refused { target: String, reason: String },
    #[error("local blob {id} (pack {pack}) is damaged: {reason}; run verify")]
    LocalDamage {
        id: String,
        pack: String,
        reason: String,
    },
    #[error(transparent)]
    Appliance(#[from] tiervault_model::ApplianceError),
    #[error("{path}: {op}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when trying again later may succeed without anyone changing anything.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Link { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
