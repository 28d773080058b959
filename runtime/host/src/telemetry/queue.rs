//! Bounded export queues for spans and log records: a request hands its span or record
//! over without waiting (`try_send`); when the queue is full it is dropped and counted
//! (`virga.telemetry.dropped`). One thread per queue batches and exports.
//!
//! The SDK's own batch processors bound and drop too, but keep their count to themselves;
//! these expose it, so an operator can see that export falls behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::otlp_encode::{ExportSpan, SpanEncoder};
use super::trace_export::TraceClient;

/// At most this many go in one export (fewer when the queue is smaller).
const BATCH: usize = 512;
/// A partial batch leaves after this long.
const DELAY: Duration = Duration::from_secs(1);
/// The largest span export request: well under the 4 MiB a gRPC collector takes by default.
const MAX_REQUEST_BYTES: usize = 2 << 20;
/// A flush gives up after this long (a stalled collector must not hold up a shutdown).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the export thread is asked to do besides exporting queued items.
enum Control {
    /// A batch is ready.
    Wake,
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

/// The sending side of a queue. Items and control messages travel apart, so that the
/// export thread (parked on the control channel) is woken once per batch, not per item.
#[derive(Debug)]
struct Queue<T> {
    items: SyncSender<T>,
    control: SyncSender<Control>,
    pending: Arc<AtomicUsize>,
    batch: usize,
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
        let (items, queued) = std::sync::mpsc::sync_channel(capacity);
        let (control, controls) = std::sync::mpsc::sync_channel(4);
        let pending = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            queued,
            controls,
            pending: pending.clone(),
            batch,
            failing: false,
        };
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || worker.run(&mut export, close));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the telemetry export thread; nothing will be exported");
        }
        Self {
            items,
            control,
            pending,
            batch,
            closed: AtomicBool::new(false),
            dropped: options.dropped,
        }
    }

    /// Hands `item` over, or drops and counts it when the queue is full (never waits, takes
    /// no lock).
    fn push(&self, item: T) {
        // Counted before it is visible to the export thread, which subtracts what it takes:
        // the count never goes below zero.
        let before = self.pending.fetch_add(1, Ordering::Relaxed);
        match self.items.try_send(item) {
            Ok(()) => {
                if before.wrapping_add(1) == self.batch {
                    // A full control channel already means a wake-up is on its way.
                    let _ = self.control.try_send(Control::Wake);
                }
            }
            Err(TrySendError::Full(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // Shut down: what ends after that is not exported.
            Err(TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends a control message and waits up to `timeout` for its answer.
    fn control(
        &self,
        message: impl FnOnce(SyncSender<OTelSdkResult>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        if self.closed.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        // Never block longer than asked, even behind an exporter stuck on a slow collector.
        let deadline = Instant::now() + timeout;
        let mut message = message(reply);
        loop {
            match self.control.try_send(message) {
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
        self.control(Control::Flush, FLUSH_TIMEOUT)
    }

    fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.control(Control::Shutdown, timeout);
        self.closed.store(true, Ordering::Release);
        result
    }
}

/// The export thread's side of a queue.
struct Worker<T> {
    queued: Receiver<T>,
    controls: Receiver<Control>,
    pending: Arc<AtomicUsize>,
    batch: usize,
    /// Said once when exports start failing and once when they work again, not per batch.
    failing: bool,
}

impl<T> Worker<T> {
    /// Waits for a full batch (or [`DELAY`], or a flush), exports everything queued, and
    /// ends at shutdown or when the processor is gone.
    fn run(
        mut self,
        export: &mut impl FnMut(Vec<T>) -> OTelSdkResult,
        close: impl FnOnce() -> OTelSdkResult,
    ) {
        loop {
            let control = self.controls.recv_timeout(DELAY);
            let drained = self.drain(export);
            match control {
                Ok(Control::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Control::Flush(reply)) => {
                    let _ = reply.send(drained);
                }
                Ok(Control::Shutdown(reply)) => {
                    let _ = reply.send(drained.and(close()));
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = close();
                    return;
                }
            }
        }
    }

    /// Exports what is queued now, a batch at a time.
    fn drain(&mut self, export: &mut impl FnMut(Vec<T>) -> OTelSdkResult) -> OTelSdkResult {
        let mut result = Ok(());
        loop {
            let batch: Vec<T> = self.queued.try_iter().take(self.batch).collect();
            if batch.is_empty() {
                return result;
            }
            let full = batch.len() == self.batch;
            self.pending.fetch_sub(batch.len(), Ordering::Relaxed);
            let exported = export(batch);
            match (&exported, self.failing) {
                (Err(e), false) => {
                    tracing::warn!(target: "virga::telemetry", error = %e, "OTLP export is failing");
                    self.failing = true;
                }
                (Ok(()), true) => {
                    tracing::info!(target: "virga::telemetry", "OTLP export works again");
                    self.failing = false;
                }
                _ => {}
            }
            result = result.and(exported);
            if !full {
                return result;
            }
        }
    }
}

/// The span export queue: its thread encodes each batch as OTLP protobuf and sends it.
/// Shared by the SDK's spans ([`QueuedSpans`]) and Virga's own server spans.
#[derive(Clone, Debug)]
pub(crate) struct SpanQueue(Arc<Queue<ExportSpan>>);

impl SpanQueue {
    pub(super) fn start(
        client: TraceClient,
        mut encoder: SpanEncoder,
        options: QueueOptions,
    ) -> Self {
        Self(Arc::new(Queue::start(
            "virga-otlp-spans",
            options,
            move |batch: Vec<ExportSpan>| {
                encoder.encode_in_parts(&batch, MAX_REQUEST_BYTES, &mut |bytes| client.send(bytes))
            },
            || Ok(()),
        )))
    }

    /// Queues `span` without waiting (dropped and counted when the queue is full).
    pub(super) fn push(&self, span: ExportSpan) {
        self.0.push(span);
    }
}

/// A span processor that queues the SDK's ended, sampled spans.
#[derive(Debug)]
pub(super) struct QueuedSpans(SpanQueue);

impl QueuedSpans {
    pub(super) fn new(queue: SpanQueue) -> Self {
        Self(queue)
    }
}

impl SpanProcessor for QueuedSpans {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.push(ExportSpan::Sdk(Box::new(span)));
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.0.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.0.shutdown(timeout)
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
