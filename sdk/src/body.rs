//! Request and response bodies over `wasi:io` streams.

use std::fmt;

use bytes::Bytes;
use wasip2::http::types::{IncomingBody as WasiIncomingBody, IncomingRequest, IncomingResponse};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::{Error, reactor};

/// Largest read asked of the host at once.
const READ_CHUNK: u64 = 64 * 1024;

/// The body of an incoming request or of a fetched response, read from the host as the
/// handler asks for it. Nothing is asked of the host until the first read: a handler that
/// ignores the body pays nothing.
pub struct IncomingBody {
    // Field order matters: the stream is a child of the body and must be dropped first.
    stream: Option<InputStream>,
    body: Option<WasiIncomingBody>,
    source: Option<Source>,
}

enum Source {
    Request(IncomingRequest),
    Response(IncomingResponse),
    /// A stream of its own (a cached body).
    Stream(InputStream),
}

impl IncomingBody {
    pub(crate) fn new(request: IncomingRequest) -> Self {
        Self {
            stream: None,
            body: None,
            source: Some(Source::Request(request)),
        }
    }

    pub(crate) fn from_response(response: IncomingResponse) -> Self {
        Self {
            stream: None,
            body: None,
            source: Some(Source::Response(response)),
        }
    }

    pub(crate) fn from_stream(stream: InputStream) -> Self {
        Self {
            stream: None,
            body: None,
            source: Some(Source::Stream(stream)),
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            stream: None,
            body: None,
            source: None,
        }
    }

    /// Takes the body and its stream from the request or response, on first use.
    fn open(&mut self) {
        let body = match self.source.take() {
            Some(Source::Request(request)) => request.consume().ok(),
            Some(Source::Response(response)) => response.consume().ok(),
            Some(Source::Stream(stream)) => {
                self.stream = Some(stream);
                return;
            }
            None => return,
        };
        self.body = body;
        self.stream = self.body.as_ref().and_then(|b| b.stream().ok());
    }

    /// The next chunk of the body, `None` at its end.
    pub fn chunk(&mut self) -> Option<Result<Bytes, Error>> {
        self.open();
        let stream = self.stream.as_ref()?;
        let read = if reactor::may_block() {
            stream.blocking_read(READ_CHUNK)
        } else {
            loop {
                match stream.read(READ_CHUNK) {
                    Ok(bytes) if bytes.is_empty() => reactor::block_until(&stream.subscribe()),
                    other => break other,
                }
            }
        };
        match read {
            Ok(bytes) => Some(Ok(Bytes::from(bytes))),
            Err(StreamError::Closed) => {
                self.close();
                None
            }
            Err(StreamError::LastOperationFailed(e)) => {
                self.close();
                Some(Err(Error::msg(format!(
                    "reading the body failed: {}",
                    e.to_debug_string()
                ))))
            }
        }
    }

    /// The whole body, read into memory; an error if it is larger than `limit` bytes.
    pub fn bytes_limited(mut self, limit: usize) -> Result<Bytes, Error> {
        let mut all = Vec::new();
        while let Some(chunk) = self.chunk() {
            all.extend_from_slice(&chunk?);
            if all.len() > limit {
                return Err(Error::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {limit} bytes"),
                ));
            }
        }
        Ok(all.into())
    }

    /// The whole body, read into memory (bounded by the deployment's memory limit).
    pub fn bytes(self) -> Result<Bytes, Error> {
        self.bytes_limited(usize::MAX)
    }

    fn close(&mut self) {
        self.stream = None;
        self.body = None;
    }

    /// The body's stream, and the body it is a child of (none for a stream of its own).
    pub(crate) fn take_stream(&mut self) -> Option<(InputStream, Option<WasiIncomingBody>)> {
        self.open();
        Some((self.stream.take()?, self.body.take()))
    }
}

impl fmt::Debug for IncomingBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingBody")
            .field("open", &self.stream.is_some())
            .field("unread", &self.source.is_some())
            .finish()
    }
}

/// The body of a response.
pub struct Body {
    pub(crate) kind: BodyKind,
}

/// Writes a streamed body.
pub(crate) type BodyWriterFn = dyn FnOnce(&mut BodyWriter) -> Result<(), Error>;

pub(crate) enum BodyKind {
    Empty,
    Bytes(Bytes),
    Incoming(IncomingBody),
    Stream(Box<BodyWriterFn>),
}

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Self {
            kind: BodyKind::Empty,
        }
    }

    /// A body written by `writer` after the response head has been sent: for output that is
    /// large or produced over time. An error ends the body abruptly (the client sees a
    /// truncated response, not a complete one).
    pub fn stream(writer: impl FnOnce(&mut BodyWriter) -> Result<(), Error> + 'static) -> Self {
        Self {
            kind: BodyKind::Stream(Box::new(writer)),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            BodyKind::Empty => "empty",
            BodyKind::Bytes(_) => "bytes",
            BodyKind::Incoming(_) => "incoming",
            BodyKind::Stream(_) => "stream",
        };
        f.debug_tuple("Body").field(&kind).finish()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: BodyKind::Bytes(bytes),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

/// Echoes a request body: the host splices it to the response without copying it through
/// guest memory.
impl From<IncomingBody> for Body {
    fn from(body: IncomingBody) -> Self {
        Self {
            kind: BodyKind::Incoming(body),
        }
    }
}

/// Writes a streamed response body.
pub struct BodyWriter {
    pub(crate) stream: OutputStream,
}

impl BodyWriter {
    /// Writes all of `data`, waiting for the host to take it.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        write_all(&self.stream, data)
    }
}

impl fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyWriter")
    }
}

fn stream_error(e: StreamError) -> Error {
    match e {
        StreamError::Closed => Error::msg("the response stream was closed"),
        StreamError::LastOperationFailed(e) => Error::msg(format!(
            "writing the response failed: {}",
            e.to_debug_string()
        )),
    }
}

/// Writes `data` and flushes it. A small body goes in one host call.
pub(crate) fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), Error> {
    if data.len() <= 4096 {
        return stream.blocking_write_and_flush(data).map_err(stream_error);
    }
    while !data.is_empty() {
        let mut permit = stream.check_write().map_err(stream_error)?;
        if permit == 0 {
            stream.subscribe().block();
            permit = stream.check_write().map_err(stream_error)?;
        }
        let n = usize::try_from(permit)
            .unwrap_or(usize::MAX)
            .min(data.len());
        if n == 0 {
            continue;
        }
        stream.write(&data[..n]).map_err(stream_error)?;
        data = &data[n..];
    }
    stream.blocking_flush().map_err(stream_error)
}

/// Writes `body` to `stream` and drops the stream (a child of its body: the body can be
/// finished afterwards). Waits on the host through the reactor, so the handler's other
/// futures (a request body going up while its response comes down) progress meanwhile.
pub(crate) async fn write_body(stream: OutputStream, body: crate::Body) -> Result<(), Error> {
    match body.kind {
        BodyKind::Empty => Ok(()),
        BodyKind::Bytes(bytes) => write_all_async(&stream, &bytes).await,
        BodyKind::Incoming(mut incoming) => match incoming.take_stream() {
            Some((input, incoming_body)) => {
                let result = splice_async(&stream, &input).await;
                // The stream is a child resource of the body: drop it first.
                drop(input);
                drop(incoming_body);
                result
            }
            None => Ok(()),
        },
        BodyKind::Stream(writer) => writer(&mut BodyWriter { stream }),
    }
}

/// Writes `data` and flushes it. A small body goes in one host call (the host's body buffer
/// always takes it); a larger one waits for room through the reactor.
async fn write_all_async(stream: &OutputStream, mut data: &[u8]) -> Result<(), Error> {
    if data.len() <= 4096 {
        return stream.blocking_write_and_flush(data).map_err(stream_error);
    }
    if reactor::may_block() {
        return write_all(stream, data);
    }
    while !data.is_empty() {
        let permit = stream.check_write().map_err(stream_error)?;
        if permit == 0 {
            reactor::ready(stream.subscribe()).await;
            continue;
        }
        let n = usize::try_from(permit)
            .unwrap_or(usize::MAX)
            .min(data.len());
        stream.write(&data[..n]).map_err(stream_error)?;
        data = &data[n..];
    }
    flush_async(stream).await
}

/// Moves everything from `input` to `output` inside the host (never through guest memory),
/// waiting through the reactor for input to arrive or output to drain.
async fn splice_async(output: &OutputStream, input: &InputStream) -> Result<(), Error> {
    if reactor::may_block() {
        return splice_blocking(output, input);
    }
    loop {
        let permit = output.check_write().map_err(stream_error)?;
        if permit == 0 {
            reactor::ready(output.subscribe()).await;
            continue;
        }
        match output.splice(input, permit.min(READ_CHUNK)) {
            Ok(0) => reactor::ready(input.subscribe()).await,
            Ok(_) => {}
            Err(StreamError::Closed) => return flush_async(output).await,
            Err(e) => return Err(stream_error(e)),
        }
    }
}

fn splice_blocking(output: &OutputStream, input: &InputStream) -> Result<(), Error> {
    loop {
        match output.blocking_splice(input, READ_CHUNK) {
            Ok(_) => {}
            Err(StreamError::Closed) => return output.blocking_flush().map_err(stream_error),
            Err(e) => return Err(stream_error(e)),
        }
    }
}

async fn flush_async(stream: &OutputStream) -> Result<(), Error> {
    stream.flush().map_err(stream_error)?;
    reactor::ready(stream.subscribe()).await;
    stream.check_write().map(drop).map_err(stream_error)
}
