//! The messages, their typed fields and the protocol constants (docs/wire.md section 3).

/// Protocol version carried in `Hello` and `Welcome`.
pub const PROTOCOL_VERSION: u16 = 1;
/// Length of a blob id and of a snapshot id.
pub const ID_LEN: usize = 32;
/// Length of a stored blob's digest (first 16 bytes of BLAKE3 of the stored bytes).
pub const DIGEST_LEN: usize = 16;
/// Length of the stored-blob header (format.md 4.1): no stored blob is shorter.
pub const BLOB_HEADER_LEN: usize = 28;
/// Longest client, tenant or key-file name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest `Error` message, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 4096;
/// Most ids in one `Have`, `HaveReply` or `GetBlobs`, and most blobs in one
/// `PutBlobs` or `Blobs`.
pub const MAX_BATCH: u32 = 65536;
/// Most key files in one `VaultMeta` or `PutVaultMeta`.
pub const MAX_KEYS: u16 = 64;

/// One protocol message. The request id travels in the frame, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client → server, first message on a connection.
    Hello {
        proto: u16,
        client: String,
        vault_id: [u8; ID_LEN],
    },
    /// Reply to `Hello`.
    Welcome {
        proto: u16,
        tenant: String,
        /// `false`: the tenant holds no vault yet; `true`: it holds the vault named in `Hello`.
        has_vault: bool,
    },
    /// Reply to any request that failed.
    Error { code: ErrorCode, message: String },
    /// Reply to `PutSnapshot`, `Forget` and `PutVaultMeta`.
    Ok,
    /// Which of these blobs does the server hold?
    Have { ids: Vec<[u8; ID_LEN]> },
    /// Reply to `Have`: `held[i]` answers for `ids[i]`.
    HaveReply { held: Vec<bool> },
    /// Blobs to store.
    PutBlobs { blobs: Vec<WireBlob> },
    /// Reply to `PutBlobs`.
    PutOk { stored: u32, present: u32 },
    /// A whole snapshot file (format.md 7) to store under `id`.
    PutSnapshot { id: [u8; ID_LEN], file: Vec<u8> },
    /// List the snapshots held.
    ListSnapshots,
    /// Reply to `ListSnapshots`.
    SnapshotList { snapshots: Vec<SnapshotEntry> },
    /// Fetch one snapshot file.
    GetSnapshot { id: [u8; ID_LEN] },
    /// Reply to `GetSnapshot`.
    SnapshotData { id: [u8; ID_LEN], file: Vec<u8> },
    /// Fetch blobs.
    GetBlobs { ids: Vec<[u8; ID_LEN]> },
    /// Reply to `GetBlobs`: the blobs held, in request order; missing ones are omitted.
    Blobs { blobs: Vec<WireBlob> },
    /// Forget one snapshot.
    Forget { id: [u8; ID_LEN] },
    /// Fetch the vault's `config` and key files.
    GetVaultMeta,
    /// Reply to `GetVaultMeta`.
    VaultMeta {
        config: Vec<u8>,
        keys: Vec<WireKeyFile>,
    },
    /// Store the vault's `config` and key files.
    PutVaultMeta {
        config: Vec<u8>,
        keys: Vec<WireKeyFile>,
    },
}

/// A blob in its stored form (format.md 4.1) with the facts a keyless holder checks it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireBlob {
    pub id: [u8; ID_LEN],
    pub kind: BlobKind,
    /// First 16 bytes of BLAKE3 of `stored`; checked by the receiver, not by this crate.
    pub digest: [u8; DIGEST_LEN],
    /// The 28-byte header and the payload.
    pub stored: Vec<u8>,
}

/// One line of a `SnapshotList`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub id: [u8; ID_LEN],
    /// Nanoseconds since the Unix epoch (the snapshot's `time` field).
    pub time: i64,
    /// Size of the snapshot file in bytes.
    pub size: u32,
    /// Nanoseconds since the Unix epoch until which `Forget` is refused; 0 = not locked.
    pub locked_until: i64,
}

/// One file of the vault's `keys/` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireKeyFile {
    pub name: String,
    pub file: Vec<u8>,
}

/// Blob kinds, with the codes of format.md 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Data,
    Meta,
    Refs,
}

impl BlobKind {
    pub fn code(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::Meta => 1,
            Self::Refs => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Data),
            1 => Some(Self::Meta),
            2 => Some(Self::Refs),
            _ => None,
        }
    }
}

/// The `code` of an `Error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    RetentionLocked,
    QuotaExceeded,
    DigestMismatch,
    DifferentVault,
    MissingBlobs,
    Internal,
    Unauthorized,
    Busy,
    /// A code this version does not know; kept so that it can be logged and passed on.
    Other(u16),
}

impl ErrorCode {
    pub fn to_u16(self) -> u16 {
        match self {
            Self::BadRequest => 1,
            Self::NotFound => 2,
            Self::RetentionLocked => 3,
            Self::QuotaExceeded => 4,
            Self::DigestMismatch => 5,
            Self::DifferentVault => 6,
            Self::MissingBlobs => 7,
            Self::Internal => 8,
            Self::Unauthorized => 9,
            Self::Busy => 10,
            Self::Other(code) => code,
        }
    }

    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => Self::BadRequest,
            2 => Self::NotFound,
            3 => Self::RetentionLocked,
            4 => Self::QuotaExceeded,
            5 => Self::DigestMismatch,
            6 => Self::DifferentVault,
            7 => Self::MissingBlobs,
            8 => Self::Internal,
            9 => Self::Unauthorized,
            10 => Self::Busy,
            other => Self::Other(other),
        }
    }

    /// Whether the same request may succeed later unchanged, so replication retries it
    /// with backoff instead of reporting a failure.
    pub fn is_temporary(self) -> bool {
        matches!(self, Self::Busy | Self::Internal)
    }
}

/// Name of a message type code, for error messages; `None` for an unknown code.
pub(crate) fn type_name_of(code: u8) -> Option<&'static str> {
    Some(match code {
        0x01 => "Hello",
        0x02 => "Welcome",
        0x03 => "Error",
        0x04 => "Ok",
        0x10 => "Have",
        0x11 => "HaveReply",
        0x12 => "PutBlobs",
        0x13 => "PutOk",
        0x14 => "PutSnapshot",
        0x15 => "ListSnapshots",
        0x16 => "SnapshotList",
        0x17 => "GetSnapshot",
        0x18 => "SnapshotData",
        0x19 => "GetBlobs",
        0x1A => "Blobs",
        0x1B => "Forget",
        0x1C => "GetVaultMeta",
        0x1D => "VaultMeta",
        0x1E => "PutVaultMeta",
        _ => return None,
    })
}

impl Message {
    /// The type byte of this message on the wire.
    pub fn code(&self) -> u8 {
        match self {
            Self::Hello { .. } => 0x01,
            Self::Welcome { .. } => 0x02,
            Self::Error { .. } => 0x03,
            Self::Ok => 0x04,
            Self::Have { .. } => 0x10,
            Self::HaveReply { .. } => 0x11,
            Self::PutBlobs { .. } => 0x12,
            Self::PutOk { .. } => 0x13,
            Self::PutSnapshot { .. } => 0x14,
            Self::ListSnapshots => 0x15,
            Self::SnapshotList { .. } => 0x16,
            Self::GetSnapshot { .. } => 0x17,
            Self::SnapshotData { .. } => 0x18,
            Self::GetBlobs { .. } => 0x19,
            Self::Blobs { .. } => 0x1A,
            Self::Forget { .. } => 0x1B,
            Self::GetVaultMeta => 0x1C,
            Self::VaultMeta { .. } => 0x1D,
            Self::PutVaultMeta { .. } => 0x1E,
        }
    }

    /// The message type's name, as used in docs/wire.md and in errors.
    pub fn type_name(&self) -> &'static str {
        // Every variant's code is in the table; the fallback is never taken.
        type_name_of(self.code()).unwrap_or("?")
    }

    /// Whether the server sends this message (as the answer to a request).
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Self::Welcome { .. }
                | Self::Error { .. }
                | Self::Ok
                | Self::HaveReply { .. }
                | Self::PutOk { .. }
                | Self::SnapshotList { .. }
                | Self::SnapshotData { .. }
                | Self::Blobs { .. }
                | Self::VaultMeta { .. }
        )
    }
}
