//! Bounded export queues for spans and log records: a request hands its span or record
//! over without waiting (`try_send`); when the queue is full it is dropped and counted
//! (`virga.telemetry.dropped`). One thread per queue batches and exports.
//!
//! The SDK's own batch processors bound and drop too, but keep their count to themselves;
//! these expose it, so an operator can see that export falls behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// At most this many go in one export (fewer when the queue is smaller).
const BATCH: usize = 512;
/// A partial batch leaves after this long.
const DELAY: Duration = Duration::from_secs(1);

enum Message<T> {
    Item(T),
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(SyncSender<OTelSdkResult>),
}

/// Where a queue's drops are counted, and how many items it holds.
#[derive(Clone, Debug)]
pub(super) struct QueueOptions {
    /// Items waiting at most; beyond, new ones are dropped.
    pub(super) capacity: usize,
    pub(super) dropped: Arc<AtomicU64>,
}

/// The sending side of a queue, and its drop count.
#[derive(Debug)]
struct Queue<T> {
    sender: SyncSender<Message<T>>,
    closed: AtomicBool,
    dropped: Arc<AtomicU64>,
}

impl<T: Send + 'static> Queue<T> {
    /// Starts the export thread `name`: `export` sends a batch, `close` shuts the exporter.
    fn start(
        name: &str,
        options: QueueOptions,
        mut export: impl FnMut(Vec<T>) -> OTelSdkResult + Send + 'static,
        close: impl FnOnce() -> OTelSdkResult + Send + 'static,
    ) -> Self {
        let capacity = options.capacity.max(1);
        let batch = capacity.min(BATCH);
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity);
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&receiver, batch, &mut export, close));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the telemetry export thread; nothing will be exported");
        }
        Self {
            sender,
            closed: AtomicBool::new(false),
            dropped: options.dropped,
        }
    }

    /// Hands `item` over, or drops and counts it when the queue is full (never waits, takes
    /// no lock).
    fn push(&self, item: T) {
        match self.sender.try_send(Message::Item(item)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // Shut down: what ends after that is not exported.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Sends a control message and waits up to `timeout` for its answer.
    fn control(
        &self,
        message: impl FnOnce(SyncSender<OTelSdkResult>) -> Message<T>,
        timeout: Duration,
    ) -> OTelSdkResult {
        if self.closed.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        // A full queue (the exporter stuck on a slow collector) makes room within the
        // timeout, or the call gives up: never block longer than asked.
        let deadline = Instant::now() + timeout;
        let mut message = message(reply);
        loop {
            match self.sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(timeout)),
                Err(TrySendError::Disconnected(_)) => {
                    return Err(OTelSdkError::InternalFailure(
                        "the export thread is gone".into(),
                    ));
                }
            }
        }
        answer
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(timeout))?
    }

    fn flush(&self) -> OTelSdkResult {
        self.control(Message::Flush, Duration::from_secs(30))
    }

    fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.control(Message::Shutdown, timeout);
        self.closed.store(true, Ordering::Release);
        result
    }
}

/// The export thread: batches of up to `size`, sent when full, after [`DELAY`], or when
/// asked to flush; ends at shutdown or when every sender is gone.
fn run<T>(
    receiver: &Receiver<Message<T>>,
    size: usize,
    export: &mut impl FnMut(Vec<T>) -> OTelSdkResult,
    close: impl FnOnce() -> OTelSdkResult,
) {
    let mut batch = Vec::with_capacity(size);
    let mut deadline = Instant::now() + DELAY;
    // Said once when exports start failing and once when they work again, not per batch.
    let mut failing = false;
    let mut send = |batch: &mut Vec<T>| -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let result = export(std::mem::replace(batch, Vec::with_capacity(size)));
        match (&result, failing) {
            (Err(e), false) => {
                tracing::warn!(target: "virga::telemetry", error = %e, "OTLP export is failing");
                failing = true;
            }
            (Ok(()), true) => {
                tracing::info!(target: "virga::telemetry", "OTLP export works again");
                failing = false;
            }
            _ => {}
        }
        result
    };
    loop {
        match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Message::Item(item)) => {
                batch.push(item);
                if batch.len() >= size {
                    let _ = send(&mut batch);
                    deadline = Instant::now() + DELAY;
                }
            }
            Ok(Message::Flush(reply)) => {
                let _ = reply.send(send(&mut batch));
            }
            Ok(Message::Shutdown(reply)) => {
                let flushed = send(&mut batch);
                let _ = reply.send(flushed.and(close()));
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = send(&mut batch);
                deadline = Instant::now() + DELAY;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = send(&mut batch);
                let _ = close();
                return;
            }
        }
    }
}

/// A span processor that queues ended spans for `exporter`.
#[derive(Debug)]
pub(super) struct QueuedSpans(Queue<SpanData>);

impl QueuedSpans {
    /// `exporter` must already have its resource.
    pub(super) fn new<E: SpanExporter + 'static>(exporter: E, options: QueueOptions) -> Self {
        let exporter = Arc::new(exporter);
        let closing = exporter.clone();
        Self(Queue::start(
            "virga-otlp-spans",
            options,
            move |batch| futures::executor::block_on(exporter.export(batch)),
            move || closing.shutdown(),
        ))
    }
}

impl SpanProcessor for QueuedSpans {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.push(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown(timeout)
    }
}

/// A log processor that queues records for `exporter`.
#[derive(Debug)]
pub(super) struct QueuedLogs(Queue<(SdkLogRecord, InstrumentationScope)>);

impl QueuedLogs {
    /// `exporter` must already have its resource.
    pub(super) fn new<E: LogExporter + 'static>(exporter: E, options: QueueOptions) -> Self {
        let exporter = Arc::new(exporter);
        let closing = exporter.clone();
        Self(Queue::start(
            "virga-otlp-logs",
            options,
            move |batch: Vec<(SdkLogRecord, InstrumentationScope)>| {
                let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> = batch
                    .iter()
                    .map(|(record, scope)| (record, scope))
                    .collect();
                futures::executor::block_on(exporter.export(LogBatch::new(&refs)))
            },
            move || closing.shutdown(),
        ))
    }
}

impl LogProcessor for QueuedLogs {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        self.0.push((record.clone(), scope.clone()));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown(timeout)
    }
}
