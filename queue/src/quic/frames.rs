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
}

pub async fn read(recv: &mut RecvStream) -> Result<Message, StreamError> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await?;
    let mut body = vec![0u8; wire::frame_len(prefix)?];
    recv.read_exact(&mut body).await?;
    Ok(wire::decode(&body)?)
}

/// Hands the encoded frame to quinn as it is (`write_all` would copy it into a buffer of its own).
pub async fn write(send: &mut SendStream, message: &Message) -> Result<(), StreamError> {
    send.write_chunk(wire::encode(message).into()).await?;
    Ok(())
}
