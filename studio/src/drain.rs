//! Request bodies that the server stops reading are read to their end, so
//! that a client still sending gets the answer (a 413, a 403) instead of a
//! connection reset: hyper closes a connection whose unread body is dropped,
//! and a client cut off mid-body often never reads what was answered.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt};

/// Read and dropped at most this much after the server stops listening...
const DRAIN_BYTES: usize = 256 * 1024 * 1024;
/// ...for at most this long; past either, the connection closes.
const DRAIN_TIME: Duration = Duration::from_secs(60);
/// A body with no byte for this long fails (the body read timeout; the
/// same as a connection's idle timeout, `conns::IDLE_TIMEOUT`).
pub const BODY_TIMEOUT: Duration = crate::conns::IDLE_TIMEOUT;
/// What a body that timed out says, in its error.
pub const BODY_TIMED_OUT: &str = "the request body stalled: no byte for 10 s";

/// Middleware: every request body is handed on in a [`Drained`] wrapper.
pub async fn drain_unread_bodies(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    // A client that waits for "100 Continue" sends nothing until the body is
    // first read: one refused before that need not be read at all.
    let waits = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body = Body::from_stream(Drained {
        body: Some(body.into_data_stream()),
        drain: !waits,
        stall: Box::pin(tokio::time::sleep(BODY_TIMEOUT)),
    });
    next.run(Request::from_parts(parts, body)).await
}

/// A body handed on as it arrives; dropped before its end, the rest is read
/// and thrown away in the background (bounded: [`DRAIN_BYTES`], [`DRAIN_TIME`]).
struct Drained {
    /// None once the body ended or failed.
    body: Option<BodyDataStream>,
    /// Whether the client sends the body anyway (no `Expect: 100-continue`,
    /// or the body was read).
    drain: bool,
    /// When the body counts as stalled: [`BODY_TIMEOUT`] after the last chunk.
    stall: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for Drained {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.drain {
            // The first read: a client that waited for "100 Continue"
            // starts sending now.
            this.drain = true;
            this.stall
                .as_mut()
                .reset(tokio::time::Instant::now() + BODY_TIMEOUT);
        }
        let next = match body.poll_next_unpin(cx) {
            Poll::Ready(next) => next,
            Poll::Pending => {
                ready!(this.stall.as_mut().poll(cx));
                this.body = None;
                return Poll::Ready(Some(Err(axum::Error::new(BODY_TIMED_OUT))));
            }
        };
        if matches!(next, Some(Ok(_))) {
            this.stall
                .as_mut()
                .reset(tokio::time::Instant::now() + BODY_TIMEOUT);
        } else {
            this.body = None;
        }
        Poll::Ready(next)
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        if !self.drain {
            return;
        }
        if let Some(body) = self.body.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(read_to_end(body));
        }
    }
}

async fn read_to_end(mut body: BodyDataStream) {
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    })
    .await;
}
