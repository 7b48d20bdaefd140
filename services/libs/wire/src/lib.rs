//! The replication wire protocol between an appliance (client) and the remote vault server.
//!
//! Frames carry typed [`Message`]s; every request carries an id chosen by the client and the
//! reply carries the same id. The byte layout is specified in `docs/wire.md`; this crate is
//! its reference implementation. It only encodes and decodes: it runs inside a TLS 1.3
//! connection with mutual authentication set up elsewhere, and it does not check blob
//! digests or snapshot contents, which the receiver does.
//!
//! ```
//! use tiervault_wire::{decode_stream, encode, Message};
//!
//! let frame = encode(7, &Message::Have { ids: vec![[0xab; 32]] })?;
//! // Bytes arrive in pieces: a partial frame decodes to nothing yet.
//! assert!(decode_stream(&frame[..10])?.is_none());
//! let (req, msg, used) = decode_stream(&frame)?.expect("a whole frame");
//! assert_eq!((req, used), (7, frame.len()));
//! assert_eq!(msg, Message::Have { ids: vec![[0xab; 32]] });
//! # Ok::<(), tiervault_wire::WireError>(())
//! ```
//!
//! With the `tokio` feature (on by default), `read_frame` and `write_frame` move frames
//! over any `AsyncRead`/`AsyncWrite`.
//!
//! Architecture invariant: a length prefix or count is checked against [`MAX_FRAME`] and the
//! bytes actually present before anything is allocated for it.

#[cfg(feature = "tokio")]
mod async_io;
mod body;
mod codec;
mod error;
mod frame;
mod message;

#[cfg(test)]
mod tests;

#[cfg(feature = "tokio")]
pub use async_io::{read_frame, write_frame};
pub use error::WireError;
pub use frame::{
    decode, decode_stream, encode, encode_into, frame_len, FRAME_HEADER, LEN_PREFIX, MAX_FRAME,
};
pub use message::{
    BlobKind, ErrorCode, Message, SnapshotEntry, WireBlob, WireKeyFile, BLOB_HEADER_LEN,
    DIGEST_LEN, ID_LEN, MAX_BATCH, MAX_ERROR_MESSAGE_LEN, MAX_KEYS, MAX_NAME_LEN, PROTOCOL_VERSION,
};
