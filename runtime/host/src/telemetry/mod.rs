//! OpenTelemetry for every request: a server span with child spans for host calls, metrics
//! (also served as Prometheus text), and guests' stdout/stderr as log records.
//!
//! A [`Telemetry`] is built once and handed to [`RuntimeBuilder::telemetry`]
//! (crate::RuntimeBuilder::telemetry). Nothing is global: two runtimes in one process keep
//! separate telemetry. Without an exporter (the default) spans and log records are not made
//! at all and nothing leaves the host; metrics are still kept for [`Telemetry::prometheus`].
//! Export never blocks a request: spans and log records go through bounded queues (what
//! does not fit is dropped and counted) drained by export threads, metrics are read
//! periodically. Server spans of Virga's own OTLP export skip the SDK's span machinery and
//! every span is written straight to protobuf (see `server_span` and `otlp_encode`).

mod guest_log;
mod metrics;
mod otlp;
mod otlp_encode;
mod prometheus;
mod queue;
mod request;
mod server_span;
mod trace_export;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub(crate) use guest_log::GuestLog;
pub(crate) use metrics::Instruments;
pub use otlp::{OtlpExport, OtlpProtocol};
use queue::QueueOptions;
pub(crate) use request::{GuestStats, HostCallSpan, RequestRecord, RequestTelemetry, method_name};

use crate::error::Error;

/// The largest export queue (its slots are allocated up front).
pub const MAX_EXPORT_QUEUE: usize = 1 << 20;
/// The longest guest log line that can be configured, bytes.
pub const MAX_GUEST_LOG_LINE: usize = 1 << 20;

/// The instrumentation scope of everything Virga records.
const SCOPE: &str = "virga";

/// Configures and builds a [`Telemetry`]. Every setter documents its default.
#[derive(Debug)]
pub struct TelemetryBuilder {
    otlp: Option<OtlpExport>,
    tracer_provider: Option<SdkTracerProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    resource: Option<Resource>,
    guest_log_lines: u32,
    guest_log_line_bytes: usize,
    metric_interval: Duration,
    export_queue: usize,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        Self {
            otlp: None,
            tracer_provider: None,
            logger_provider: None,
            resource: None,
            guest_log_lines: 100,
            guest_log_line_bytes: 4096,
            metric_interval: Duration::from_secs(10),
            export_queue: 4096,
        }
    }
}

impl TelemetryBuilder {
    /// Exports traces, metrics and logs over OTLP (see [`OtlpExport`]). Default is none:
    /// nothing leaves the host.
    pub fn otlp(mut self, export: OtlpExport) -> Self {
        self.otlp = Some(export);
        self
    }

    /// Records spans with the embedder's own provider (its processors and exporters) instead
    /// of the OTLP one. Default is none.
    pub fn tracer_provider(mut self, provider: SdkTracerProvider) -> Self {
        self.tracer_provider = Some(provider);
        self
    }

    /// Emits guest log records with the embedder's own provider instead of the OTLP one.
    /// Default is none.
    pub fn logger_provider(mut self, provider: SdkLoggerProvider) -> Self {
        self.logger_provider = Some(provider);
        self
    }

    /// The resource that describes this host (`service.name` and so on). Default: the SDK's
    /// (from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`), with service name `virga`
    /// when neither names one.
    pub fn resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// How many lines of stdout and stderr one request may log; later lines are dropped
    /// and counted (`virga.guest.log.dropped`). Default is 100.
    pub fn guest_log_lines(mut self, lines: u32) -> Self {
        self.guest_log_lines = lines;
        self
    }

    /// The longest guest log line kept, in bytes (at most [`MAX_GUEST_LOG_LINE`]); longer
    /// lines are cut there. Default 4096.
    pub fn guest_log_line_bytes(mut self, bytes: usize) -> Self {
        self.guest_log_line_bytes = bytes.clamp(1, MAX_GUEST_LOG_LINE);
        self
    }

    /// How often metrics are exported over OTLP. Default is 10 s.
    pub fn metric_interval(mut self, interval: Duration) -> Self {
        self.metric_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How many spans (and, separately, log records) may wait for OTLP export (at most
    /// [`MAX_EXPORT_QUEUE`]); when the
    /// collector falls behind, newer ones are dropped and counted
    /// (`virga.telemetry.dropped`) rather than slowing requests. Default 4096.
    pub fn export_queue(mut self, capacity: usize) -> Self {
        self.export_queue = capacity.clamp(1, MAX_EXPORT_QUEUE);
        self
    }

    /// Builds the providers and instruments. OTLP exporters are created here (the gRPC one
    /// needs to be called inside a Tokio runtime); a bad endpoint is an
    /// [`Error::Config`] naming it.
    pub fn build(self) -> Result<Telemetry, Error> {
        let resource = self.resource.unwrap_or_else(default_resource);
        let mut tracer_provider = self.tracer_provider;
        let mut logger_provider = self.logger_provider;
        let prometheus = Arc::new(ManualReader::builder().build());
        let mut meters =
            SdkMeterProvider::builder().with_reader(prometheus::SharedReader(prometheus.clone()));
        let mut exports_metrics = false;
        let dropped_spans = Arc::new(AtomicU64::new(0));
        let dropped_logs = Arc::new(AtomicU64::new(0));
        let scope = InstrumentationScope::builder(SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let mut server_spans = None;
        if let Some(otlp) = &self.otlp {
            if tracer_provider.is_none() && otlp.traces {
                let queue = QueueOptions {
                    capacity: self.export_queue,
                    dropped: dropped_spans.clone(),
                };
                let (provider, server) =
                    otlp.tracer_provider(resource.clone(), scope.clone(), queue)?;
                tracer_provider = Some(provider);
                server_spans = Some(server);
            }
            if logger_provider.is_none() && otlp.logs {
                let queue = QueueOptions {
                    capacity: self.export_queue,
                    dropped: dropped_logs.clone(),
                };
                logger_provider = Some(otlp.logger_provider(resource.clone(), queue)?);
            }
            if otlp.metrics {
                meters = meters.with_reader(otlp.metric_reader(self.metric_interval)?);
                exports_metrics = true;
            }
        }
        let meter_provider = meters.with_resource(resource).build();
        let meter = meter_provider.meter_with_scope(scope.clone());
        let dropped = meter
            .u64_observable_counter("virga.telemetry.dropped")
            .with_description("Spans and log records dropped because the export queue was full")
            .with_callback(move |observer| {
                for (signal, count) in [("spans", &dropped_spans), ("logs", &dropped_logs)] {
                    observer.observe(
                        count.load(Ordering::Relaxed),
                        &[opentelemetry::KeyValue::new("virga.signal", signal)],
                    );
                }
            })
            .build();
        Ok(Telemetry {
            inner: Arc::new(Shared {
                tracer: tracer_provider
                    .as_ref()
                    .map(|p| p.tracer_with_scope(scope.clone())),
                logger: logger_provider.as_ref().map(|p| p.logger_with_scope(scope)),
                server_spans,
                instruments: Instruments::new(&meter),
                meter,
                instances: std::sync::OnceLock::new(),
                _dropped: dropped,
                guest_log_lines: self.guest_log_lines,
                guest_log_line_bytes: self.guest_log_line_bytes,
                prometheus,
                tracer_provider,
                logger_provider,
                meter_provider: Some(meter_provider),
                exports_metrics,
            }),
        })
    }
}

fn default_resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder().with_service_name("virga").build()
    }
}

/// A runtime's telemetry: its tracer, logger and metric instruments. Cheap to clone.
///
/// ```no_run
/// # fn f() -> Result<(), virga::Error> {
/// use virga::telemetry::{OtlpExport, OtlpProtocol, Telemetry};
///
/// let telemetry = Telemetry::builder()
///     .otlp(OtlpExport::new(OtlpProtocol::Grpc).endpoint("http://127.0.0.1:4317"))
///     .build()?;
/// let runtime = virga::Runtime::builder().telemetry(telemetry).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Telemetry {
    pub(crate) inner: Arc<Shared>,
}

pub(crate) struct Shared {
    /// The tracer of host calls' spans (and of server spans, for an embedder's provider).
    pub(crate) tracer: Option<SdkTracer>,
    /// Server spans recorded for Virga's own OTLP export.
    pub(crate) server_spans: Option<server_span::ServerSpans>,
    pub(crate) logger: Option<SdkLogger>,
    pub(crate) instruments: Instruments,
    pub(crate) guest_log_lines: u32,
    pub(crate) guest_log_line_bytes: usize,
    meter: opentelemetry::metrics::Meter,
    /// The observable gauges read off the runtime (instances, store health).
    instances: std::sync::OnceLock<Vec<opentelemetry::metrics::ObservableGauge<i64>>>,
    _dropped: opentelemetry::metrics::ObservableCounter<u64>,
    prometheus: Arc<ManualReader>,
    tracer_provider: Option<SdkTracerProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    /// Whether a metric reader exports over OTLP (its shutdown may wait on the network).
    exports_metrics: bool,
}

impl Drop for Shared {
    /// The providers shut down when dropped, exporting what is left and waiting for the
    /// exporters (seconds, against a slow collector): on a thread of their own, not on the
    /// async thread that happened to drop the last runtime.
    fn drop(&mut self) {
        let providers = (
            self.tracer.take(),
            self.logger.take(),
            self.tracer_provider.take(),
            self.logger_provider.take(),
            self.meter_provider.take(),
        );
        if providers.2.is_none() && providers.3.is_none() && !self.exports_metrics {
            // Nothing is exported: nothing to wait for.
            return;
        }
        let _ = std::thread::Builder::new()
            .name("virga-telemetry-shutdown".into())
            .spawn(move || drop(providers));
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("traces", &self.inner.tracer.is_some())
            .field("logs", &self.inner.logger.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    /// No export: metrics kept for [`Telemetry::prometheus`] only, no spans, no log records.
    fn default() -> Self {
        match TelemetryBuilder::default().build() {
            Ok(telemetry) => telemetry,
            // Without exporters nothing in `build` can fail.
            Err(e) => unreachable!("telemetry without export failed to build: {e}"),
        }
    }
}

impl Telemetry {
    /// A builder with every default.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// Whether spans are recorded (a tracer provider or OTLP trace export is configured).
    pub fn traces_enabled(&self) -> bool {
        self.inner.tracer.is_some()
    }

    /// Reports `virga.instances.live` (sandboxes running now, by deployment) from the
    /// runtime's registry, for as long as the runtime lives. Once per telemetry: a
    /// telemetry shared by several runtimes reports the first.
    pub(crate) fn observe_instances(&self, runtime: std::sync::Weak<crate::runtime::Inner>) {
        self.inner.instances.get_or_init(|| {
            let meter = &self.inner.meter;
            let instances = runtime.clone();
            let degraded = runtime.clone();
            vec![
                meter
                    .i64_observable_gauge("virga.instances.live")
                    .with_description("Sandboxes running now")
                    .with_callback(move |observer| {
                        if let Some(runtime) = instances.upgrade() {
                            for (deployment, count) in runtime.registry.live_instances() {
                                observer.observe(count, &[deployment]);
                            }
                        }
                    })
                    .build(),
                meter
                    .i64_observable_gauge("virga.store.degraded")
                    .with_description(
                        "1 while the deployment store cannot be reached or followed \
                         (the host serves its last state), else 0",
                    )
                    .with_callback(move |observer| {
                        if let Some(inner) = degraded.upgrade() {
                            let health = crate::Runtime { inner }.store_health();
                            observer.observe(i64::from(health.degraded.is_some()), &[]);
                        }
                    })
                    .build(),
                meter
                    .i64_observable_gauge("virga.store.revision")
                    .with_description("The store revision this host's deployments are at")
                    .with_callback(move |observer| {
                        if let Some(runtime) = runtime.upgrade() {
                            let revision = runtime.registry.revision();
                            observer.observe(i64::try_from(revision).unwrap_or(i64::MAX), &[]);
                        }
                    })
                    .build(),
            ]
        });
    }

    /// The logger provider guest logs go to, if any: hand it to a `tracing` bridge
    /// (`opentelemetry-appender-tracing`) to export the host's own logs too.
    pub fn logger_provider(&self) -> Option<&SdkLoggerProvider> {
        self.inner.logger_provider.as_ref()
    }

    /// The current metrics in the Prometheus text exposition format (version 0.0.4), as the
    /// admin listener serves them at `GET /metrics`.
    pub fn prometheus(&self) -> String {
        prometheus::render(&self.inner.prometheus)
    }

    /// Exports whatever is still queued (spans, log records, metrics), waiting for the
    /// exporters (on a blocking thread: the exporters may need this runtime meanwhile).
    /// Call it before the process exits. Errors name the signal that failed.
    pub async fn flush(&self) -> Result<(), Error> {
        let telemetry = self.clone();
        tokio::task::spawn_blocking(move || telemetry.flush_blocking())
            .await
            .map_err(|e| Error::Telemetry(format!("the flush was cancelled: {e}")))?
    }

    fn flush_blocking(&self) -> Result<(), Error> {
        let failed = |signal: &str, e: opentelemetry_sdk::error::OTelSdkError| {
            Error::Telemetry(format!("cannot flush {signal}: {e}"))
        };
        if let Some(p) = &self.inner.tracer_provider {
            p.force_flush().map_err(|e| failed("spans", e))?;
        }
        if let Some(p) = &self.inner.logger_provider {
            p.force_flush().map_err(|e| failed("log records", e))?;
        }
        match &self.inner.meter_provider {
            Some(p) => p.force_flush().map_err(|e| failed("metrics", e)),
            None => Ok(()),
        }
    }
}
