//! The body of every answer: a short text, optionally holding the request body it refuses to read.
//!
//! An answer given before the request body is read (401, 403, 404, 413, 503) keeps that body
//! alive until the answer is fully written. Over HTTP/2, dropping the request body first resets
//! the stream (`RST_STREAM CANCEL`) before the answer goes out, and clients such as curl then
//! report a broken stream (curl error 92) instead of the status. Dropped after the answer, the
//! stream ends cleanly and the client reads the status and the reason.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

pub struct Answer {
    text: Full<Bytes>,
    /// Dropped with the answer, after its last frame was handed to the connection.
    _request: Option<Incoming>,
}

impl Answer {
    pub fn text(text: String) -> Answer {
        Answer { text: Full::new(Bytes::from(text)), _request: None }
    }

    /// This answer, keeping `request` unread until it has been sent.
    pub fn holding(self, request: Incoming) -> Answer {
        Answer { text: self.text, _request: Some(request) }
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().text).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.text.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.text.size_hint()
    }
}
