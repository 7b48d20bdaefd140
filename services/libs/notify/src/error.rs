//! What can go wrong on the appliance's side of notifying: spools, configuration, secrets, the
//! metrics listener. A failed delivery is not here but in [`DeliveryError`](crate::DeliveryError):
//! it is an expected state of a remote system, not a fault of this one.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a spool, a dispatcher, a target or the metrics server could not be set up or used.
///
/// Messages name the file, target or address at fault and never contain a secret: token and
/// password files are named by path only.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A spool directory (or its set-aside directory) could not be created or listed.
    #[error("{}: cannot create or list the spool directory", path.display())]
    SpoolDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A spool entry or the sequence file could not be read.
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A spool entry, its removal, a set-aside move or the sequence file could not be written.
    #[error("{}: cannot write", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A notification could not be encoded as JSON.
    #[error("cannot encode notification {event_id}")]
    Encode {
        event_id: String,
        #[source]
        source: serde_json::Error,
    },
    /// The alert was raised by another service than the one this dispatcher numbers events
    /// for: its event ids would no longer be unique.
    #[error(
        "alert {alert_id} comes from service {found:?}, but this dispatcher sends for {expected:?}"
    )]
    WrongSource {
        alert_id: u64,
        expected: String,
        found: String,
    },
    /// Every event sequence number has been handed out; only reachable with a hand-edited
    /// sequence file.
    #[error("{}: notification sequence numbers are exhausted", path.display())]
    SequenceExhausted { path: PathBuf },
    /// A configuration value breaks its rules. `context` names the target or section.
    #[error("{context}: {field} is invalid: {reason}")]
    Config {
        context: String,
        field: &'static str,
        reason: String,
    },
    /// A token or password file could not be read or is unusable.
    #[error("{context}: secret file {}: {reason}", path.display())]
    Secret {
        context: String,
        path: PathBuf,
        reason: String,
    },
    /// A CA file given for a target could not be read or holds no usable certificate.
    #[error("{context}: CA file {}: {reason}", path.display())]
    CaFile {
        context: String,
        path: PathBuf,
        reason: String,
    },
    /// The metrics server could not listen on its address.
    #[error("cannot listen for metrics on {addr}")]
    MetricsBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn config_error(
    context: impl Into<String>,
    field: &'static str,
    reason: impl Into<String>,
) -> NotifyError {
    NotifyError::Config {
        context: context.into(),
        field,
        reason: reason.into(),
    }
}
