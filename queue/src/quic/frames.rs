//! Frames on QUIC streams.

use quinn::{RecvStream, SendStream};

use crate::wire::{self, Message, WireError};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("a request frame of {0} bytes is over the {MAX_REQUEST}-byte limit of requests")]
    RequestTooLarge(usize),
}

/// Largest frame a client may send the service: no request needs more (`Open` with 16,000
/// table names is under it), and the service never holds more for one stream.
pub const MAX_REQUEST: usize = 1 << 20;
/// Buffer reserved before a frame's bytes arrive; the rest grows as they do.
const UPFRONT: usize = 64 << 10;

pub async fn read(recv: &mut RecvStream) -> Result<Message, StreamError> {
    read_into(recv, &mut Vec::new()).await
}

/// [`read`] of a client's request on the service's side: refused past [`MAX_REQUEST`].
pub async fn read_request(recv: &mut RecvStream) -> Result<Message, StreamError> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await?;
    let len = wire::frame_len(prefix)?;
    if len > MAX_REQUEST {
        return Err(StreamError::RequestTooLarge(len));
    }
    // Reserved as the bytes arrive: a length alone costs the service little.
    let mut body = Vec::with_capacity(len.min(UPFRONT));
    read_body(recv, &mut body, len).await?;
    Ok(wire::decode(&body)?)
}

/// [`read`] through a buffer the caller keeps: a window's chunks (up to 8 MiB each) then reuse
/// one allocation instead of each taking fresh, zeroed pages from the allocator. A `Rows` frame
/// takes the buffer with it (its rows stay where they arrived); [`RowBatch::into_buffer`] gives
/// it back.
///
/// [`RowBatch::into_buffer`]: crate::RowBatch::into_buffer
pub async fn read_into(recv: &mut RecvStream, body: &mut Vec<u8>) -> Result<Message, StreamError> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await?;
    let len = wire::frame_len(prefix)?;
    body.clear();
    // The service's frames, whose size the client trusts: one allocation for the whole chunk.
    body.reserve(len);
    read_body(recv, body, len).await?;
    Ok(wire::decode_owned(body)?)
}

/// Reads the `len` bytes of a frame's body into `body`.
async fn read_body(recv: &mut RecvStream, body: &mut Vec<u8>, len: usize) -> Result<(), StreamError> {
    while body.len() < len {
        let chunk = recv.read_chunk(len - body.len(), true).await.map_err(quinn::ReadExactError::ReadError)?;
        let chunk = chunk.ok_or(quinn::ReadExactError::FinishedEarly(body.len()))?;
        body.extend_from_slice(&chunk.bytes);
    }
    Ok(())
}

/// Hands the encoded frame to quinn as it is (`write_all` would copy it into a buffer of its own).
pub async fn write(send: &mut SendStream, message: &Message) -> Result<(), StreamError> {
    send.write_chunk(wire::encode(message).into()).await?;
    Ok(())
}

/// [`write`] of a message given up: a `Rows` frame's keys and rows go to quinn in the buffer the
/// journal read them into, not copied behind the rest of the frame.
pub async fn write_owned(send: &mut SendStream, message: Message) -> Result<(), StreamError> {
    match wire::encode_owned(message) {
        (head, Some(bytes)) => send.write_all_chunks(&mut [head.into(), bytes.into()]).await?,
        (head, None) => send.write_chunk(head.into()).await?,
    }
    Ok(())
}
