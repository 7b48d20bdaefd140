//! Error policy: every malformed frame is a protocol violation by the peer, so each variant
//! names the message type and field at fault (the peer's log line is the only debugging aid
//! across a TLS link). The encoder reports the same variants for a message the decoder would
//! reject, so nothing is sent that the other end must refuse. Only [`WireError::Io`] may be
//! temporary; every other variant means the peer is broken or hostile and the connection
//! should be dropped.

/// Why a frame could not be encoded, read or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix announces more than [`MAX_FRAME`](crate::MAX_FRAME) bytes.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: usize },

    /// The length prefix is too small to hold the type byte and request id.
    #[error("frame length {len} is below the minimum of 9 bytes (type and request id)")]
    FrameTooShort { len: u32 },

    /// The type byte is not one of the message codes.
    #[error("unknown message type 0x{code:02x}")]
    UnknownType { code: u8 },

    /// The bytes ended inside a field: `needed` more were required, `available` were left.
    /// `message` is `"frame"` when the frame itself ended early on a stream.
    #[error("{message}: truncated in {field}: needed {needed} bytes, {available} available")]
    Truncated {
        message: &'static str,
        field: &'static str,
        needed: usize,
        available: usize,
    },

    /// The body was fully decoded but bytes remain before the end of the frame.
    #[error("{message}: {len} trailing bytes after the body")]
    TrailingBytes { message: &'static str, len: usize },

    /// A count field is above the protocol's limit for it.
    #[error("{message}: {field} {count} exceeds the limit of {max}")]
    CountTooLarge {
        message: &'static str,
        field: &'static str,
        count: u64,
        max: u64,
    },

    /// A count field promises more items than the rest of the frame could hold, even at
    /// the smallest item size. Checked before anything is allocated for the items.
    #[error(
        "{message}: {field} {count} needs at least {min_bytes} bytes but only {available} remain"
    )]
    CountExceedsBody {
        message: &'static str,
        field: &'static str,
        count: u64,
        min_bytes: u64,
        available: usize,
    },

    /// A string field is longer than its limit.
    #[error("{message}: {field} is {len} bytes long, above the limit of {max}")]
    StringTooLong {
        message: &'static str,
        field: &'static str,
        len: usize,
        max: usize,
    },

    /// A string field is not valid UTF-8.
    #[error("{message}: {field} is not valid UTF-8")]
    BadUtf8 {
        message: &'static str,
        field: &'static str,
    },

    /// A byte-string field is longer than a frame can be.
    #[error("{message}: {field} is {len} bytes long, above the frame limit of {max}")]
    BytesTooLong {
        message: &'static str,
        field: &'static str,
        len: usize,
        max: usize,
    },

    /// A blob's kind byte is not 0 (data), 1 (meta) or 2 (refs).
    #[error("{message}: blob {index} has unknown kind {kind}")]
    BadBlobKind {
        message: &'static str,
        index: usize,
        kind: u8,
    },

    /// A blob's stored form is shorter than the 28-byte stored-blob header.
    #[error("{message}: blob {index} stored length {len} is below the 28-byte blob header")]
    StoredTooShort {
        message: &'static str,
        index: usize,
        len: usize,
    },

    /// A boolean byte is neither 0 nor 1.
    #[error("{message}: {field} is {value}, expected 0 or 1")]
    BadFlag {
        message: &'static str,
        field: &'static str,
        value: u8,
    },

    /// A `HaveReply` bitmap has a bit set past the last id.
    #[error("HaveReply: bitmap padding bits after id {count} are not zero")]
    BitmapPadding { count: u32 },

    /// Reading or writing the underlying stream failed.
    #[error("reading or writing a frame")]
    Io(#[from] std::io::Error),
}
