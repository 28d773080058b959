//! The response body type of the library, and the wrapper that ties a guest's streaming body to
//! the task producing it.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::task::JoinHandle;

/// An error while streaming a body: the guest failed or was stopped mid-body.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response from [`Runtime::handle`](crate::Runtime::handle): streamed from the
/// guest as it writes, or a small host-made body for errors.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A body holding a complete byte string.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body that ends at once without declaring a length, so that a server does not add
/// `Content-Length: 0` (for the answer to HEAD, which keeps the handler's headers).
pub(crate) fn ended() -> Body {
    http_body_util::StreamBody::new(futures::stream::empty::<
        Result<http_body::Frame<Bytes>, BodyError>,
    >())
    .boxed_unsync()
}

/// The body length a message declares with `Content-Length`, if any.
pub(crate) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether a response has no body whatever its handler wrote or its `Content-Length` says:
/// an answer to HEAD, and 1xx, 204 and 304 answers (RFC 9110 §6.4.1).
pub(crate) fn bodiless(status: http::StatusCode, to_head: bool) -> bool {
    to_head
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
}

/// The body length a response declares, if a body follows at all (see [`bodiless`]).
pub(crate) fn declared_response_length(
    headers: &http::HeaderMap,
    status: http::StatusCode,
    to_head: bool,
) -> Option<u64> {
    if bodiless(status, to_head) {
        None
    } else {
        declared_length(headers)
    }
}

/// A guest's response body. While the body is being read, the guest task runs on; if the
/// reader drops the body before its end (the client went away), the guest is cancelled. Once
/// the body has ended, the guest may finish its remaining work until its wall-clock limit.
pub(crate) struct GuestBody {
    inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    task: Option<JoinHandle<()>>,
    /// Set by the guest task when it fails, before its store is dropped.
    failure: Arc<OnceLock<String>>,
    /// Set here when the body goes over its limit, before the guest task is stopped (the
    /// request's telemetry counts the limit).
    cut: Arc<OnceLock<crate::Limit>>,
    ended: bool,
    /// [`Limits::response_body`](crate::Limits::response_body), and the bytes sent so far.
    max: u64,
    sent: u64,
    /// The length the response declared, if any: once that much is sent the body is
    /// complete even if the server stops polling before seeing its end.
    declared: Option<u64>,
}

impl GuestBody {
    pub(crate) fn new(
        inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
        task: Option<JoinHandle<()>>,
        failure: Arc<OnceLock<String>>,
        cut: Arc<OnceLock<crate::Limit>>,
        max: u64,
        declared: Option<u64>,
    ) -> Self {
        Self {
            inner,
            task,
            failure,
            cut,
            ended: false,
            max,
            sent: 0,
            declared,
        }
    }

    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                // wasi-http ends the body cleanly when the guest's store is dropped mid-body;
                // if that drop came from a failure, the body is broken, not complete.
                if let Some(failure) = self.failure.get() {
                    return Poll::Ready(Some(Err(format!(
                        "the response body was cut short: {failure}"
                    )
                    .into())));
                }
                // Complete: let the guest finish in the background.
                self.task = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(format!(
                "the handler's response body failed: {e}"
            )
            .into()))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent = self.sent.saturating_add(data.len() as u64);
                    if self.sent > self.max {
                        // Stop the guest: nothing more of this body will be sent.
                        let _ = self.cut.set(crate::Limit::ResponseBody);
                        if let Some(task) = self.task.take() {
                            task.abort();
                        }
                        self.ended = true;
                        let message = format!(
                            "the response body was cut short: {}",
                            crate::host::fetch::body::too_large(
                                crate::Limit::ResponseBody,
                                "the handler's response body",
                                self.max
                            )
                        );
                        tracing::warn!("{message}");
                        return Poll::Ready(Some(Err(message.into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl http_body::Body for GuestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let polled = self.poll_inner(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        // Dropped before its end: the client went away, so the guest is stopped. A body
        // that delivered all it declared is complete (the server need not poll for its end):
        // the guest finishes its post-response work.
        let complete = self.declared.is_some_and(|len| self.sent >= len);
        if let Some(task) = self.task.take()
            && !complete
        {
            task.abort();
        }
    }
}
