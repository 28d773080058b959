//! The minimum rate of a request body: a client that sends its body slower than the host's
//! minimum is cut off (the slow-POST variant of slowloris), as Apache's `mod_reqtimeout`
//! (`body=…,MinRate=…`) does.
//!
//! The client is charged only for time the host spends waiting to read from it: a handler
//! that reads the body late, or slowly, costs the client nothing. A body may keep the host
//! waiting for `grace` plus one second per `min_rate` bytes it has delivered.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// The minimum body rate of a listener: `min_rate` bytes per second after `grace`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyRate {
    pub(crate) grace: Duration,
    /// Bytes per second; 0 turns the check off.
    pub(crate) min_rate: u64,
}

impl Default for BodyRate {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            min_rate: 500,
        }
    }
}

/// Set when a body was cut for being too slow: the message the client's 408 carries.
pub(crate) type Tripped = Arc<OnceLock<String>>;

pin_project! {
    /// A request body held to a [`BodyRate`].
    pub(crate) struct MinRate<B> {
        #[pin]
        inner: B,
        rate: BodyRate,
        seen: u64,
        waited: Duration,
        waiting_since: Option<Instant>,
        timer: Option<Pin<Box<Sleep>>>,
        tripped: Tripped,
    }
}

impl<B> MinRate<B> {
    /// Guards `inner`; `tripped` is set if it is cut. The rate must not be 0 (the check
    /// turned off): such bodies are not wrapped at all.
    pub(crate) fn new(inner: B, rate: BodyRate, tripped: Tripped) -> Self {
        Self {
            inner,
            rate,
            seen: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
            tripped,
        }
    }
}

/// How long the host may have waited, all told, for a body that delivered `seen` bytes.
fn allowance(rate: &BodyRate, seen: u64) -> Duration {
    rate.grace + Duration::from_secs_f64(seen as f64 / rate.min_rate as f64)
}

impl<B> Body for MinRate<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<crate::BoxError>,
{
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::BoxError>>> {
        let this = self.project();
        if this.tripped.get().is_some() {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    *this.waited += since.elapsed();
                }
                // The timer is kept: the next wait resets it to its new deadline.
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    *this.seen += data.map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let left = allowance(this.rate, *this.seen).saturating_sub(*this.waited);
                let deadline = since + left;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        let message = format!(
                            "the request body arrived slower than the minimum of {} bytes/s \
                             ({} bytes in {} ms of waiting)",
                            this.rate.min_rate,
                            this.seen,
                            (*this.waited + now.duration_since(since)).as_millis()
                        );
                        let _ = this.tripped.set(message.clone());
                        Poll::Ready(Some(Err(message.into())))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tripped.get().is_some() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
