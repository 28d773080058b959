//! A body wrapper that enforces a size limit and, optionally, a between-bytes timeout: used
//! for subrequest bodies both ways and for incoming request bodies.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::BoxError;
use crate::limits::{Limit, human_bytes};

/// The message for a body over its limit: `outbound-body: the response body from
/// http://a:80 is larger than 1 MiB`.
pub(crate) fn too_large(limit: Limit, what: &str, bytes: u64) -> String {
    format!("{limit}: {what} is larger than {}", human_bytes(bytes))
}

pin_project_lite::pin_project! {
    /// Passes `inner` through, failing once more than `max` bytes went by, or when `idle`
    /// passes without a frame.
    pub(crate) struct Guarded<B> {
        #[pin]
        inner: B,
        limit: Limit,
        max: u64,
        seen: u64,
        what: &'static str,
        origin: Option<String>,
        idle: Option<Duration>,
        timer: Option<Pin<Box<Sleep>>>,
        done: bool,
    }
}

impl<B> Guarded<B> {
    /// Guards `inner`: `what` describes the body in errors ("the request body"), followed by
    /// `origin` when given ("... from https://a:443").
    pub(crate) fn new(
        inner: B,
        limit: Limit,
        max: u64,
        what: &'static str,
        origin: Option<String>,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            inner,
            limit,
            max,
            seen: 0,
            what,
            origin,
            idle,
            timer: None,
            done: false,
        }
    }
}

fn describe(what: &str, origin: &Option<String>) -> String {
    match origin {
        Some(origin) => format!("{what} {origin}"),
        None => what.to_owned(),
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.timer = None;
                if let Some(data) = frame.data_ref() {
                    *this.seen = this.seen.saturating_add(data.len() as u64);
                    if *this.seen > *this.max {
                        *this.done = true;
                        let what = describe(this.what, this.origin);
                        return Poll::Ready(Some(Err(
                            too_large(*this.limit, &what, *this.max).into()
                        )));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.timer = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                *this.timer = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(idle) = *this.idle else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        *this.done = true;
                        Poll::Ready(Some(Err(format!(
                            "{}: {} stalled for {} ms",
                            Limit::BetweenBytesTimeout,
                            describe(this.what, this.origin),
                            idle.as_millis()
                        )
                        .into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
