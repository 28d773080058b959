//! One request's telemetry: its server span (continuing the caller's W3C trace), the
//! context host calls make child spans in, and the metrics recorded when it ends.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Span;

use super::Telemetry;
use super::metrics::status_class;
use super::server_span::ServerSpan;
use crate::deployment::Deployment;
use crate::error::Error;
use crate::limits::Limit;

/// What the sandbox of a request cost, measured as it ran.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GuestStats {
    /// Time to instantiate the component (none if it never got that far).
    pub(crate) instantiation: Option<Duration>,
    /// Time the guest's code ran after instantiation (host calls it made included, waits
    /// for I/O not).
    pub(crate) cpu: Duration,
    /// Linear memory at its largest, bytes.
    pub(crate) peak_memory: u64,
}

/// The caller's span from a valid `traceparent` (W3C Trace Context §3.2, strictly: lower-case
/// hex, ids not all zero, version not `ff`) with its `tracestate` (§3.3, dropped when
/// malformed). A request without a valid one starts a new trace.
fn remote_parent(headers: &http::HeaderMap) -> Option<SpanContext> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let (trace_id, parent_id, flags) = crate::trace::parse_parent(value)?;
    // §3.3.1.1: several tracestate headers are one list, joined with commas.
    let mut joined = String::new();
    for value in headers.get_all("tracestate") {
        let Ok(value) = value.to_str() else {
            joined.clear();
            break;
        };
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value);
    }
    let state = joined.parse::<TraceState>().unwrap_or_default();
    Some(SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(parent_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 1),
        true,
        state,
    ))
}

/// A server span attribute's value, borrowed: written straight to protobuf for Virga's own
/// export, or made a [`KeyValue`] for an SDK span.
#[derive(Clone, Copy)]
pub(crate) enum Attribute<'a> {
    Static(&'static str),
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Value(&'a opentelemetry::Value),
}

impl Attribute<'_> {
    fn key_value(self, key: &'static str) -> KeyValue {
        match self {
            Attribute::Static(s) => KeyValue::new(key, s),
            Attribute::Str(s) => KeyValue::new(key, s.to_owned()),
            Attribute::Int(i) => KeyValue::new(key, i),
            Attribute::Bool(b) => KeyValue::new(key, b),
            Attribute::Value(v) => KeyValue::new(key, v.clone()),
        }
    }
}

/// What the server span says of the request as it arrives (semantic conventions, HTTP
/// server spans, and the deployment serving it).
pub(crate) struct RequestFacts {
    method: &'static str,
    /// The method as sent, when it is not one of the standard ones.
    method_original: Option<String>,
    path: String,
    scheme: &'static str,
    host: String,
    protocol: &'static str,
    /// The deployment's name and version.
    deployment: Option<(opentelemetry::Value, i64)>,
}

impl RequestFacts {
    pub(super) fn new<B>(
        request: &http::Request<B>,
        host: &str,
        deployment: Option<&Deployment>,
    ) -> Self {
        let method = method_name(request.method());
        let scheme = match (
            request.extensions().get::<crate::ConnectionInfo>(),
            request.uri().scheme_str(),
        ) {
            (Some(info), _) if info.tls => "https",
            (_, Some("https")) => "https",
            _ => "http",
        };
        let protocol = match request.version() {
            http::Version::HTTP_09 => "0.9",
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            http::Version::HTTP_3 => "3",
            _ => "1.1",
        };
        Self {
            method,
            method_original: (method == "_OTHER").then(|| request.method().as_str().to_owned()),
            path: request.uri().path().to_owned(),
            scheme,
            host: host.to_owned(),
            protocol,
            deployment: deployment.map(|d| {
                (
                    d.metric_name.value.clone(),
                    i64::try_from(d.version).unwrap_or(i64::MAX),
                )
            }),
        }
    }

    pub(super) fn visit(&self, attribute: &mut impl FnMut(&'static str, Attribute<'_>)) {
        attribute("http.request.method", Attribute::Static(self.method));
        attribute("url.path", Attribute::Str(&self.path));
        attribute("url.scheme", Attribute::Static(self.scheme));
        attribute("server.address", Attribute::Str(&self.host));
        attribute("network.protocol.version", Attribute::Static(self.protocol));
        if let Some(original) = &self.method_original {
            attribute("http.request.method_original", Attribute::Str(original));
        }
        if let Some((name, version)) = &self.deployment {
            attribute("virga.deployment", Attribute::Value(name));
            attribute("virga.version", Attribute::Int(*version));
        }
    }
}

/// What the server span says of the request as it ends.
pub(crate) struct RequestOutcome {
    pub(super) status: u16,
    pub(super) stats: Option<GuestStats>,
    pub(super) limit: Option<Limit>,
    pub(super) cancelled: bool,
    /// `error.type` and the status message, when the span is an error.
    pub(super) error: Option<(String, String)>,
}

impl RequestOutcome {
    pub(super) fn visit(&self, attribute: &mut impl FnMut(&'static str, Attribute<'_>)) {
        attribute(
            "http.response.status_code",
            Attribute::Int(i64::from(self.status)),
        );
        if let Some(stats) = &self.stats {
            if let Some(instantiation) = stats.instantiation {
                attribute(
                    "virga.instantiation_us",
                    Attribute::Int(micros(instantiation)),
                );
            }
            attribute("virga.guest.cpu_us", Attribute::Int(micros(stats.cpu)));
            attribute(
                "virga.guest.peak_memory_bytes",
                Attribute::Int(i64::try_from(stats.peak_memory).unwrap_or(i64::MAX)),
            );
        }
        if let Some(limit) = self.limit {
            attribute("virga.limit", Attribute::Static(limit.name()));
        }
        if self.cancelled {
            attribute("virga.cancelled", Attribute::Bool(true));
        }
        if let Some((kind, _)) = &self.error {
            attribute("error.type", Attribute::Str(kind));
        }
    }

    pub(super) fn status(&self) -> Status {
        self.error
            .as_ref()
            .map_or(Status::Unset, |(_, message)| Status::error(message.clone()))
    }
}

/// A request's server span, when it is recorded.
enum RecordedSpan {
    /// Through the SDK's tracer (an embedder's tracer provider).
    Sdk(Span),
    /// Virga's own export.
    Own(ServerSpan),
}

/// A request from its arrival to its end: records the server span and the request metrics
/// once, when [`finish`](Self::finish)ed or dropped (a request its client abandoned).
pub(crate) struct RequestRecord {
    /// What host calls share (see [`context`](Self::context)); the record uses it too.
    context: RequestTelemetry,
    /// Whether a deployment serves the request (else its metrics carry no deployment).
    routed: bool,
    start: Instant,
    span: Option<RecordedSpan>,
    /// Set once the response head is out (see [`answered`](Self::answered)).
    status: Option<u16>,
    cut: Option<Arc<OnceLock<Limit>>>,
    finished: bool,
}

impl RequestRecord {
    /// Starts the record of `request`, served by `deployment` (none: no route, or no
    /// host): its server span continues the trace of a valid incoming
    /// `traceparent`/`tracestate` (W3C Trace Context §3), or starts a new one.
    pub(crate) fn start<B>(
        telemetry: &Telemetry,
        request: &http::Request<B>,
        host: &str,
        deployment: Option<&Deployment>,
    ) -> Self {
        let shared = &telemetry.inner;
        let (span, parent) = match (&shared.server_spans, &shared.tracer) {
            (Some(server), _) => {
                match server.start(
                    span_name(request.method()),
                    remote_parent(request.headers()),
                ) {
                    Ok(mut span) => {
                        span.set_facts(RequestFacts::new(request, host, deployment));
                        let context = span.context().clone();
                        (Some(RecordedSpan::Own(span)), Some(context))
                    }
                    Err(unrecorded) => (None, Some(unrecorded)),
                }
            }
            (None, Some(tracer)) => {
                let parent = remote_parent(request.headers()).map_or_else(Context::new, |cx| {
                    Context::new().with_remote_span_context(cx)
                });
                let facts = RequestFacts::new(request, host, deployment);
                // Room for the attributes added as the request goes on (no regrowth).
                let mut attributes = Vec::with_capacity(14);
                facts.visit(&mut |key, value| attributes.push(value.key_value(key)));
                let span = tracer
                    .span_builder(span_name(request.method()))
                    .with_kind(SpanKind::Server)
                    .with_attributes(attributes)
                    .start_with_context(tracer, &parent);
                let context = span.span_context().clone();
                (Some(RecordedSpan::Sdk(span)), Some(context))
            }
            (None, None) => (None, None),
        };
        let context = RequestContext {
            telemetry: telemetry.clone(),
            deployment: deployment.map_or_else(
                || KeyValue::new("virga.deployment", opentelemetry::Value::from("")),
                |d| d.metric_name.clone(),
            ),
            parent,
        };
        Self {
            context: RequestTelemetry(Arc::new(context)),
            routed: deployment.is_some(),
            start: Instant::now(),
            span,
            status: None,
            cut: None,
            finished: false,
        }
    }

    /// What host calls of this request record into: its span as their parent. One per
    /// request, shared: its clones touch no runtime-wide reference count (those would
    /// bounce between cores).
    pub(crate) fn context(&self) -> RequestTelemetry {
        self.context.clone()
    }

    /// Records the request's end by `error` (nothing ran, or nothing could be answered),
    /// and gives the error back.
    pub(crate) fn fail(self, error: Error) -> Error {
        self.finish(error.status().as_u16(), Some(&error), None);
        error
    }

    /// The response head is out with `status`; the guest runs on (streaming its body) and
    /// may be cut by the limit noted in `cut`. If this record is then dropped unfinished
    /// (the client went away, or the body went over its limit), that is what it records.
    pub(crate) fn answered(&mut self, status: u16, cut: Arc<OnceLock<Limit>>) {
        self.status = Some(status);
        self.cut = Some(cut);
    }

    /// Records the request's end: its status, the error that decided it (if any), and what
    /// its sandbox cost (if one ran).
    pub(crate) fn finish(mut self, status: u16, error: Option<&Error>, stats: Option<&GuestStats>) {
        let limit = error.and_then(Error::limit);
        self.end(status, limit, error.map(ToString::to_string), stats, false);
    }

    fn end(
        &mut self,
        status: u16,
        limit: Option<Limit>,
        failure: Option<String>,
        stats: Option<&GuestStats>,
        cancelled: bool,
    ) {
        self.finished = true;
        let elapsed = self.start.elapsed().as_secs_f64();
        let telemetry = &self.context.telemetry;
        let deployment = self.routed.then_some(&self.context.deployment);
        let instruments = &telemetry.inner.instruments;
        let class = status_class(status);
        match deployment {
            Some(deployment) => {
                instruments
                    .request_duration
                    .record(elapsed, &[deployment.clone(), class]);
                if let Some(instantiation) = stats.and_then(|s| s.instantiation) {
                    instruments.instantiation.record(
                        instantiation.as_secs_f64(),
                        std::slice::from_ref(deployment),
                    );
                }
                if let Some(limit) = limit {
                    instruments
                        .limit_trips
                        .add(1, &[deployment.clone(), limit_name(limit)]);
                }
            }
            None => instruments.request_duration.record(elapsed, &[class]),
        }
        let Some(span) = self.span.take() else {
            return;
        };
        // Server spans are errors for 5xx (semantic conventions, HTTP spans, status), and
        // when the guest failed after its response head left (a broken body).
        let broken = failure.is_some() && status < 400;
        let error = (status >= 500 || broken).then(|| {
            let kind = match (limit, broken) {
                (Some(limit), _) => limit.name().to_owned(),
                (None, true) => "guest_failure".to_owned(),
                (None, false) => status.to_string(),
            };
            (kind, failure.unwrap_or_else(|| format!("status {status}")))
        });
        let outcome = RequestOutcome {
            status,
            stats: stats.copied(),
            limit,
            cancelled,
            error,
        };
        match span {
            RecordedSpan::Own(span) => {
                if let Some(server) = &telemetry.inner.server_spans {
                    span.end(outcome, &server.queue);
                }
            }
            RecordedSpan::Sdk(mut span) => {
                outcome.visit(&mut |key, value| span.set_attribute(value.key_value(key)));
                if outcome.error.is_some() {
                    span.set_status(outcome.status());
                }
                span.end();
            }
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let cut = self.cut.as_ref().and_then(|cut| cut.get().copied());
        match (self.status, cut) {
            // The response body went over its limit: the host cut it.
            (Some(status), Some(limit)) => {
                let failure = format!("the response body was cut short: {limit} limit");
                self.end(status, Some(limit), Some(failure), None, false);
            }
            // The client went away mid-body.
            (Some(status), None) => self.end(status, None, None, None, true),
            // The client went away before the answer (499, as proxies log it).
            (None, _) => self.end(499, None, None, None, true),
        }
    }
}

/// A server span's name (semantic conventions, HTTP server spans): `{method}`, or `HTTP`
/// for a method outside the standard set.
fn span_name(method: &http::Method) -> &'static str {
    match method_name(method) {
        "_OTHER" => "HTTP",
        method => method,
    }
}

/// The method as the span name and attribute: the standard ones without allocating.
pub(crate) fn method_name(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        // Semantic conventions: an unknown method is `_OTHER`.
        _ => "_OTHER",
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn limit_name(limit: Limit) -> KeyValue {
    KeyValue::new("virga.limit", limit.name())
}

/// What a request's host calls record into: the instruments, its deployment, and the
/// server span to parent child spans on (when traces are on). Cheap to clone.
#[derive(Clone)]
pub(crate) struct RequestTelemetry(Arc<RequestContext>);

pub(crate) struct RequestContext {
    pub(crate) telemetry: Telemetry,
    pub(crate) deployment: KeyValue,
    /// The server span (a context is made of it only when a child span is).
    parent: Option<SpanContext>,
}

impl std::ops::Deref for RequestTelemetry {
    type Target = RequestContext;

    fn deref(&self) -> &RequestContext {
        &self.0
    }
}

impl RequestTelemetry {
    /// A child span of the request's span for a host call, if traces are on.
    pub(crate) fn span(
        &self,
        name: &'static str,
        kind: SpanKind,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> HostCallSpan {
        let span = match (&self.telemetry.inner.tracer, &self.parent) {
            (Some(tracer), Some(parent)) => Some(
                tracer
                    .span_builder(name)
                    .with_kind(kind)
                    .with_attributes(attributes())
                    .start_with_context(
                        tracer,
                        &Context::new().with_remote_span_context(parent.clone()),
                    ),
            ),
            _ => None,
        };
        HostCallSpan { span }
    }

    /// The server span's context, if traces are on.
    pub(crate) fn span_context(&self) -> Option<SpanContext> {
        self.parent.clone()
    }

    /// Counts a cache lookup's result (`hit`, `miss` or `stale`).
    pub(crate) fn cache_lookup(&self, result: &'static str) {
        self.telemetry.inner.instruments.cache_lookups.add(
            1,
            &[
                self.deployment.clone(),
                KeyValue::new("virga.cache.result", result),
            ],
        );
    }

    /// Records a subrequest's time to its response head (`status` none: it failed).
    pub(crate) fn fetched(&self, elapsed: Duration, status: Option<u16>) {
        let class = status.map_or_else(
            || KeyValue::new("http.response.status_class", "error"),
            status_class,
        );
        self.telemetry
            .inner
            .instruments
            .fetch_duration
            .record(elapsed.as_secs_f64(), &[self.deployment.clone(), class]);
    }
}

/// A host call's span (nothing when traces are off); ends when dropped.
pub(crate) struct HostCallSpan {
    span: Option<Span>,
}

impl HostCallSpan {
    /// Adds an attribute (computed only when the span is recorded).
    pub(crate) fn set(&mut self, attribute: impl FnOnce() -> KeyValue) {
        if let Some(span) = &mut self.span {
            span.set_attribute(attribute());
        }
    }

    /// Marks the call failed with `message`.
    pub(crate) fn fail(&mut self, message: impl FnOnce() -> String) {
        if let Some(span) = &mut self.span {
            span.set_status(Status::error(message()));
        }
    }

    /// This span's context, when it is recorded and valid: the parent a subrequest names.
    pub(crate) fn context(&self) -> Option<&SpanContext> {
        self.span
            .as_ref()
            .map(|span| span.span_context())
            .filter(|cx| cx.is_valid())
    }
}
