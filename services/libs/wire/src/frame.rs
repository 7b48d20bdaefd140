//! Framing: `len:u32 type:u8 req:u64 body`, with `len` counting everything after itself.

use crate::{Message, WireError};

/// Largest value of a frame's length prefix (128 MiB): large enough for a batch of blobs or
/// a big snapshot file, small enough that a receiver can hold one frame in memory.
pub const MAX_FRAME: usize = 128 << 20;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Smallest frame after the length prefix: the type byte and the request id.
pub const FRAME_HEADER: usize = 1 + 8;

/// Encodes `msg` as a whole frame, length prefix included.
///
/// Fails when the message breaks a limit the decoder enforces (a string, count or frame too
/// long, a stored blob shorter than its header), so that nothing the peer must reject is sent.
pub fn encode(req: u64, msg: &Message) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    encode_into(req, msg, &mut out)?;
    Ok(out)
}

/// Appends the frame of `msg` to `out`. On error `out` is left as it was.
pub fn encode_into(req: u64, msg: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    out.push(msg.code());
    out.extend_from_slice(&req.to_le_bytes());
    if let Err(e) = msg.encode_body(out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - LEN_PREFIX;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(WireError::FrameTooLarge {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    // len ≤ MAX_FRAME < u32::MAX.
    out[start..start + LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Reads a length prefix: the number of bytes that follow it in this frame.
///
/// Checked before the frame is read, so that a forged length never causes an allocation.
pub fn frame_len(prefix: [u8; LEN_PREFIX]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix);
    if (len as usize) < FRAME_HEADER {
        return Err(WireError::FrameTooShort { len });
    }
    if len as usize > MAX_FRAME {
        return Err(WireError::FrameTooLarge {
            len: u64::from(len),
            max: MAX_FRAME,
        });
    }
    Ok(len as usize)
}

/// Decodes one frame given without its length prefix: exactly the `len` bytes that follow it.
pub fn decode(frame: &[u8]) -> Result<(u64, Message), WireError> {
    if frame.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge {
            len: frame.len() as u64,
            max: MAX_FRAME,
        });
    }
    let Some((&code, rest)) = frame.split_first() else {
        return Err(WireError::Truncated {
            message: "frame",
            field: "type",
            needed: 1,
            available: 0,
        });
    };
    let Some((req, body)) = rest.split_first_chunk::<8>() else {
        return Err(WireError::Truncated {
            message: "frame",
            field: "req",
            needed: 8,
            available: rest.len(),
        });
    };
    let msg = Message::decode_body(code, body)?;
    Ok((u64::from_le_bytes(*req), msg))
}

/// Decodes the first frame of `buf`, which may end inside a frame (bytes as they arrive).
///
/// Returns `Ok(None)` while the frame is incomplete, else the request id, the message and
/// how many bytes of `buf` the frame took. A bad length prefix is reported as soon as its
/// four bytes are there, without waiting for the announced bytes.
pub fn decode_stream(buf: &[u8]) -> Result<Option<(u64, Message, usize)>, WireError> {
    let Some((prefix, rest)) = buf.split_first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = frame_len(*prefix)?;
    let Some(frame) = rest.get(..len) else {
        return Ok(None);
    };
    let (req, msg) = decode(frame)?;
    Ok(Some((req, msg, LEN_PREFIX + len)))
}
