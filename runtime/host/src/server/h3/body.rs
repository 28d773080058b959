//! Bodies across the task boundary: request bodies flow from a connection's driver to a
//! handler through a small bounded channel (the driver stops reading a stream while the
//! channel is full, so QUIC flow control pushes back on the client), and response bodies
//! flow from the handler to the driver against a per-stream byte credit.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::{Notify, Semaphore, mpsc};

use super::endpoint::{Command, StreamId};
use super::headers::response_head;

/// Request-body chunks buffered per stream before the driver stops reading it.
pub(super) const REQUEST_CHUNKS: usize = 8;
/// Response bytes a handler may have in flight per stream before it waits for the client.
pub(super) const RESPONSE_CREDIT: usize = 256 * 1024;
/// Largest response chunk handed to the driver at once.
const RESPONSE_CHUNK: usize = 64 * 1024;

/// What the driver sends down a request body.
#[derive(Debug)]
pub(super) enum Piece {
    Data(Bytes),
    Trailers(http::HeaderMap),
    /// The client finished the body (stream FIN).
    End,
}

/// A request body read from an HTTP/3 stream. It ends cleanly only when the client sent
/// FIN; a stream reset or lost connection ends it with an error, so that a cut upload is
/// never taken for a whole one. A declared `content-length` must match what arrives
/// (RFC 9114 §4.1.2).
#[derive(Debug)]
pub(super) struct RequestBody {
    /// `None` for a request without a body.
    pieces: Option<mpsc::Receiver<Piece>>,
    /// Wakes the driver when room frees up, so that it resumes reading a paused stream.
    room: Arc<Notify>,
    declared: Option<u64>,
    received: u64,
    ended: bool,
}

impl RequestBody {
    pub(super) fn new(
        pieces: Option<mpsc::Receiver<Piece>>,
        room: Arc<Notify>,
        declared: Option<u64>,
    ) -> Self {
        Self {
            ended: pieces.is_none(),
            pieces,
            room,
            declared,
            received: 0,
        }
    }
}

fn body_error(message: &str) -> crate::body::BodyError {
    message.to_owned().into()
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // The driver may have paused the stream for lack of room: let it see that nobody
        // reads any more, so that it stops the stream instead of leaving data in quiche.
        self.room.notify_one();
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let piece = match &mut self.pieces {
            Some(pieces) => std::task::ready!(pieces.poll_recv(cx)),
            None => return Poll::Ready(None),
        };
        self.room.notify_one();
        Poll::Ready(match piece {
            Some(Piece::Data(data)) => {
                self.received += data.len() as u64;
                if self
                    .declared
                    .is_some_and(|declared| self.received > declared)
                {
                    self.ended = true;
                    Some(Err(body_error(
                        "the request body is longer than its content-length",
                    )))
                } else {
                    Some(Ok(Frame::data(data)))
                }
            }
            Some(Piece::Trailers(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Some(Piece::End) => {
                self.ended = true;
                match self.declared {
                    Some(declared) if declared != self.received => Some(Err(body_error(
                        "the request body is shorter than its content-length",
                    ))),
                    _ => None,
                }
            }
            None => {
                self.ended = true;
                Some(Err(body_error(
                    "the client reset the stream or closed the connection mid-body",
                )))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// Hands a response to the driver: the head at once, then the body chunk by chunk as the
/// stream's credit allows, then trailers if the handler sent some. Returns when the
/// response is sent or the stream is gone (the client reset it or the connection closed),
/// dropping the body so that the handler stops producing it. Responses that have no body
/// (to HEAD, and 1xx, 204, 304: RFC 9110 §6.4.1) end with their head, whatever the handler
/// wrote.
pub(super) async fn send_response(
    stream: StreamId,
    response: http::Response<crate::Body>,
    head_request: bool,
    commands: &mpsc::UnboundedSender<Command>,
    credit: Arc<Semaphore>,
) {
    let (parts, mut body) = response.into_parts();
    let head = response_head(&parts);
    if crate::body::bodiless(parts.status, head_request) || body.is_end_stream() {
        let _ = commands.send(Command::Head {
            stream,
            head,
            data: Bytes::new(),
            fin: true,
        });
        return;
    }
    // The head waits for the body's first bytes, if the handler has them ready at once (or
    // after one turn of the executor), so that a small response leaves in one packet; a
    // handler that takes longer gets its head sent alone.
    let mut head = Some(head);
    let mut next = poll_now(&mut body);
    if next.is_none() {
        tokio::task::yield_now().await;
        next = poll_now(&mut body);
    }
    loop {
        let frame = match next.take() {
            Some(frame) => frame,
            None => {
                if !send_head_alone(stream, &mut head, commands) {
                    return;
                }
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let mut data = match frame {
            None => {
                let _ = commands.send(match head.take() {
                    Some(head) => Command::Head {
                        stream,
                        head,
                        data: Bytes::new(),
                        fin: true,
                    },
                    None => Command::Data {
                        stream,
                        data: Bytes::new(),
                        fin: true,
                    },
                });
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(stream, error = %e, "response body failed; resetting the stream");
                send_head_alone(stream, &mut head, commands);
                let _ = commands.send(Command::Abort { stream });
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        send_head_alone(stream, &mut head, commands);
                        let _ = commands.send(Command::Trailers { stream, trailers });
                        return;
                    }
                    continue;
                }
            },
        };
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(RESPONSE_CHUNK));
            // The stream's credit is closed when the stream goes away.
            let Ok(permits) = credit.acquire_many(piece.len() as u32).await else {
                return;
            };
            permits.forget();
            // A body that ends right after this piece ends with it: one frame, not two.
            let fin = data.is_empty() && {
                next = poll_now(&mut body);
                matches!(next, Some(None))
            };
            let command = match head.take() {
                Some(head) => Command::Head {
                    stream,
                    head,
                    data: piece,
                    fin,
                },
                None => Command::Data {
                    stream,
                    data: piece,
                    fin,
                },
            };
            if commands.send(command).is_err() || fin {
                return;
            }
        }
    }
}

/// Sends the head if it has not left yet, without body bytes and without FIN. False when
/// the connection is gone.
fn send_head_alone(
    stream: StreamId,
    head: &mut Option<Vec<quiche::h3::Header>>,
    commands: &mpsc::UnboundedSender<Command>,
) -> bool {
    match head.take() {
        Some(head) => commands
            .send(Command::Head {
                stream,
                head,
                data: Bytes::new(),
                fin: false,
            })
            .is_ok(),
        None => true,
    }
}

type Polled = Option<Result<Frame<Bytes>, crate::body::BodyError>>;

/// The body's next frame if it is ready now (`Some(None)`: the body has ended).
fn poll_now(body: &mut crate::Body) -> Option<Polled> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => None,
    }
}
