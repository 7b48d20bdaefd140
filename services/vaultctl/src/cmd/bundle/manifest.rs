//! MANIFEST.json: what the bundle holds, from where, and why anything is not in it.

use serde::Serialize;

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In the bundle (`path`), perhaps truncated or produced by a failing command.
    Collected,
    /// The file, directory or command does not exist here.
    Missing,
    /// It exists but could not be read (permission, I/O error).
    Unreadable,
    /// The command ran and failed without output.
    Failed,
    /// Left out on purpose: `reason` is "secret" (a key, token or password file).
    Omitted,
    /// Not applicable here (no local BMC; a symbolic link; too large).
    Skipped,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Collected,
        Status::Missing,
        Status::Unreadable,
        Status::Failed,
        Status::Omitted,
        Status::Skipped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Collected => "collected",
            Status::Missing => "missing",
            Status::Unreadable => "unreadable",
            Status::Failed => "failed",
            Status::Omitted => "omitted",
            Status::Skipped => "skipped",
        }
    }
}

/// One entry of the manifest. Every key is always present (null when it does not apply).
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// versions, config, state, logs or hardware.
    pub section: &'static str,
    /// The file read (as on the appliance, without --root) or the command line run.
    pub source: String,
    /// Where it is in the bundle, relative to its top directory.
    pub path: Option<String>,
    pub status: Status,
    /// Size in the bundle.
    pub bytes: Option<u64>,
    /// Size of the source (file size, or all the output of the command).
    pub source_bytes: Option<u64>,
    /// Only the head (state files) or tail (logs) is in the bundle.
    pub truncated: bool,
    /// Values replaced by `<redacted>`.
    pub redactions: usize,
    /// A command's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why it is not (fully) here: "no such file", "permission denied", "exit code 2",
    /// "secret", ...
    pub reason: Option<String>,
    /// More: why a file is taken for a secret, a command's last line on stderr.
    pub detail: Option<String>,
}

impl Item {
    pub fn new(section: &'static str, source: impl Into<String>, status: Status) -> Item {
        Item {
            section,
            source: source.into(),
            path: None,
            status,
            bytes: None,
            source_bytes: None,
            truncated: false,
            redactions: 0,
            exit_code: None,
            reason: None,
            detail: None,
        }
    }

    pub fn reason(mut self, r: impl Into<String>) -> Item {
        self.reason = Some(r.into());
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Item {
        self.detail = Some(d.into());
        self
    }
}

/// A known secret value found (and redacted) outside the file that holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The member it was found in.
    pub path: String,
    /// Where the value comes from (a file, a config key, an environment variable).
    pub value_from: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unsearched {
    pub value_from: String,
    pub why: String,
}

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub format: &'static str,
    pub name: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub hostname: String,
    pub vaultctl: Version,
    /// The directory every read path was taken below ("/" normally).
    pub root: String,
    /// How far back the journal goes, as given to --since.
    pub since: String,
    /// Items by status.
    pub summary: serde_json::Map<String, serde_json::Value>,
    pub items: Vec<Item>,
    /// Known secret values found outside their files and redacted there: each is a leak to
    /// report.
    pub known_values_found: Vec<Found>,
    /// Known values the bundle was not searched for (too short, unreadable file).
    pub not_searched: Vec<Unsearched>,
}

#[derive(Debug, Serialize)]
pub struct Version {
    pub version: &'static str,
    /// The git commit the binary was built from, when the build recorded it
    /// ($TIERVAULT_GIT_COMMIT at build time).
    pub commit: Option<&'static str>,
}

pub fn version() -> Version {
    Version {
        version: env!("CARGO_PKG_VERSION"),
        commit: option_env!("TIERVAULT_GIT_COMMIT").filter(|c| !c.is_empty()),
    }
}

pub fn summary(items: &[Item]) -> serde_json::Map<String, serde_json::Value> {
    Status::ALL
        .iter()
        .map(|s| {
            let n = items.iter().filter(|i| i.status == *s).count();
            (s.name().to_owned(), n.into())
        })
        .collect()
}
