//! The typed errors of BMC access. Each names what the operator needs to act on: the
//! transport that did not answer, the tool that is missing, or the command and the line of
//! output that could not be read.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No session with the BMC: nothing listens at the address, the credentials are refused,
    /// or the kernel driver's device is absent.
    #[error("BMC at {transport} is not reachable: {detail}")]
    Unreachable { transport: String, detail: String },

    /// The command-line tool this backend drives is not installed.
    #[error("{tool} is not installed or not executable (looked for {path})")]
    ToolMissing { tool: String, path: String },

    /// The tool did not finish in time; it was killed.
    #[error("`{command}` against {transport} did not finish within {after:?}; it was killed")]
    Timeout {
        command: String,
        transport: String,
        after: Duration,
    },

    /// The tool's output is not what the parser knows: a truncated run, another tool
    /// version, or a BMC answering nonsense.
    #[error("`{command}` printed output that cannot be read ({reason}): {line:?}")]
    Garbage {
        command: String,
        line: String,
        reason: String,
    },

    /// The tool ran and failed for a reason other than reachability.
    #[error("`{command}` failed (exit status {status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },

    /// The settings cannot work (no password source, an empty host, ...).
    #[error("invalid BMC settings: {0}")]
    Config(String),

    /// Starting or waiting for the tool failed at the OS level.
    #[error("running {command}: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}
