//! Reading and writing frames on a tokio stream (the TLS connection).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{decode, encode, frame_len, LEN_PREFIX};
use crate::message::type_name_of;
use crate::{Message, WireError};

/// The buffer grows by at most this much beyond what has arrived, so a peer that announces
/// a 128 MiB frame and sends a few bytes makes the receiver allocate about 1 MiB, not 128.
const GROW_STEP: usize = 1 << 20;

/// Reads one frame from `r` and decodes it.
///
/// `buf` is scratch space reused across calls (it keeps its capacity); on return it holds
/// the frame after the length prefix. Returns `Ok(None)` when the stream ends cleanly between
/// frames; an end inside a frame is [`WireError::Truncated`].
///
/// Not cancel-safe: dropping the future part-way loses the bytes already read, and with
/// them the framing, so the connection must then be closed.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<(u64, Message)>, WireError> {
    buf.clear();
    let mut prefix = [0u8; LEN_PREFIX];
    let mut got = 0;
    while got < LEN_PREFIX {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(WireError::Truncated {
                message: "frame",
                field: "len",
                needed: LEN_PREFIX,
                available: got,
            });
        }
        got += n;
    }
    let len = frame_len(prefix)?;

    // `take` keeps a read from running into the next frame when `buf` has spare capacity
    // left over from an earlier, larger frame.
    let mut body = (&mut *r).take(len as u64);
    while buf.len() < len {
        if buf.len() == buf.capacity() {
            // Doubling keeps the copying linear for big frames; the step bounds what a
            // peer can make us allocate beyond what it actually sent.
            let target = len.min((buf.len() + GROW_STEP).max(buf.len() * 2));
            buf.reserve_exact(target - buf.len());
        }
        if body.read_buf(buf).await? == 0 {
            return Err(WireError::Truncated {
                message: buf
                    .first()
                    .and_then(|&code| type_name_of(code))
                    .unwrap_or("frame"),
                field: "frame",
                needed: len,
                available: buf.len(),
            });
        }
    }
    decode(buf).map(Some)
}

/// Encodes `msg` with request id `req`, writes it to `w` and flushes, so that a request is
/// never left sitting in a TLS buffer while the caller waits for its reply.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    req: u64,
    msg: &Message,
) -> Result<(), WireError> {
    let frame = encode(req, msg)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}
