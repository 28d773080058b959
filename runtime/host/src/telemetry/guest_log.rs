//! Guests' stdout and stderr, line by line, as log records tagged with the deployment and
//! the request's trace and span ids. Bounded per request: past the line budget lines are
//! dropped and counted, and a line is cut at its byte bound, so a chatty guest cannot
//! flood the host (its writes never fail: output is a side channel, not a reason to trap).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::SpanContext;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::RequestTelemetry;

/// How much a guest may write before `check-write` asks it to wait: it never has to.
const WRITE_PERMIT: usize = 64 * 1024;

/// A request's two output streams; build one and hand [`stdout`](Self::stdout) and
/// [`stderr`](Self::stderr) to its WASI context.
#[derive(Clone)]
pub(crate) struct GuestLog {
    state: Arc<Mutex<LogState>>,
    stream: Stream,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

struct LogState {
    telemetry: RequestTelemetry,
    span: Option<SpanContext>,
    lines_left: u32,
    line_bytes: usize,
    dropped: u64,
    /// The unfinished line of each stream, and whether it was cut.
    pending: [(Vec<u8>, bool); 2],
}

impl GuestLog {
    /// The stdout of a request whose telemetry is `telemetry`; [`stderr`](Self::stderr)
    /// shares its bound.
    pub(crate) fn new(telemetry: RequestTelemetry) -> Self {
        let shared = &telemetry.telemetry.inner;
        let state = LogState {
            span: telemetry.span_context(),
            lines_left: shared.guest_log_lines,
            line_bytes: shared.guest_log_line_bytes,
            dropped: 0,
            pending: Default::default(),
            telemetry,
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            stream: Stream::Stdout,
        }
    }

    pub(crate) fn stderr(&self) -> Self {
        Self {
            state: self.state.clone(),
            stream: Stream::Stderr,
        }
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let index = self.stream as usize;
        while !bytes.is_empty() {
            let (piece, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (&bytes[..at], true),
                None => (bytes, false),
            };
            bytes = &bytes[piece.len() + usize::from(ended)..];
            let limit = state.line_bytes;
            let (line, cut) = &mut state.pending[index];
            let room = limit.saturating_sub(line.len());
            if piece.len() > room {
                *cut = true;
            }
            line.extend_from_slice(&piece[..piece.len().min(room)]);
            if ended {
                state.emit(self.stream);
            }
        }
    }
}

impl LogState {
    fn emit(&mut self, stream: Stream) {
        let (line, cut) = std::mem::take(&mut self.pending[stream as usize]);
        if self.lines_left == 0 {
            self.dropped += 1;
            return;
        }
        self.lines_left -= 1;
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if text.ends_with('\r') {
            text.pop();
        }
        if cut {
            text.push_str(" [cut]");
        }
        let stream_name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let deployment = &self.telemetry.deployment;
        match &self.telemetry.telemetry.inner.logger {
            Some(logger) => {
                let mut record = logger.create_log_record();
                record.set_timestamp(std::time::SystemTime::now());
                let (number, name) = match stream {
                    Stream::Stdout => (Severity::Info, "INFO"),
                    Stream::Stderr => (Severity::Error, "ERROR"),
                };
                record.set_severity_number(number);
                record.set_severity_text(name);
                record.set_body(AnyValue::from(text));
                let name = match &deployment.value {
                    opentelemetry::Value::String(name) => AnyValue::String(name.clone()),
                    other => AnyValue::from(other.to_string()),
                };
                record.add_attribute(deployment.key.clone(), name);
                // Semantic conventions, general log attributes: `log.iostream`.
                record.add_attribute("log.iostream", stream_name);
                if let Some(span) = &self.span {
                    record.set_trace_context(
                        span.trace_id(),
                        span.span_id(),
                        Some(span.trace_flags()),
                    );
                }
                logger.emit(record);
            }
            None => tracing::info!(
                target: "virga::guest",
                deployment = %deployment.value,
                stream = stream_name,
                "{text}"
            ),
        }
    }
}

impl Drop for LogState {
    fn drop(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !self.pending[stream as usize].0.is_empty() {
                self.emit(stream);
            }
        }
        if self.dropped > 0 {
            let deployment: KeyValue = self.telemetry.deployment.clone();
            self.telemetry
                .telemetry
                .inner
                .instruments
                .guest_log_dropped
                .add(self.dropped, &[deployment]);
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
