//! A request's server span recorded without the SDK's span machinery, for Virga's own OTLP
//! export: its ids come from the SDK's id generator and its sampling from the SDK's
//! sampler (`OTEL_TRACES_SAMPLER`), but its attributes stay typed fields until the export
//! thread writes them as protobuf. An embedder's own tracer provider gets SDK spans instead.

use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SamplingDecision, ShouldSample};

use super::otlp_encode::{self, ExportSpan};
use super::queue::SpanQueue;
use super::request::{Attribute, RequestFacts, RequestOutcome};

/// What the server spans of Virga's own export share: the sampler, the id generator, and
/// the export queue.
#[derive(Debug)]
pub(crate) struct ServerSpans {
    pub(super) sampler: Box<dyn ShouldSample>,
    pub(super) ids: RandomIdGenerator,
    pub(super) queue: SpanQueue,
}

impl ServerSpans {
    /// Starts the server span named `name` of a request whose caller's span is `parent`
    /// (W3C Trace Context), the way the SDK's tracer starts one: the parent's trace, or a
    /// new one; the sampler decides whether it is recorded. Unrecorded, it is only a
    /// context to propagate.
    pub(super) fn start(
        &self,
        name: &'static str,
        parent: Option<SpanContext>,
    ) -> Result<ServerSpan, SpanContext> {
        let span_id = self.ids.new_span_id();
        let trace_id = parent
            .as_ref()
            .map_or_else(|| self.ids.new_trace_id(), SpanContext::trace_id);
        let parent_context = parent.as_ref().map_or_else(Context::new, |cx| {
            Context::new().with_remote_span_context(cx.clone())
        });
        let sampling = self.sampler.should_sample(
            Some(&parent_context),
            trace_id,
            name,
            &SpanKind::Server,
            &[],
            &[],
        );
        let flags = parent
            .as_ref()
            .map_or(TraceFlags::default(), SpanContext::trace_flags);
        let (flags, recorded) = match sampling.decision {
            SamplingDecision::RecordAndSample => (flags.with_sampled(true), true),
            // Recorded but not sampled: nothing to export.
            SamplingDecision::RecordOnly => (flags.with_sampled(false), false),
            SamplingDecision::Drop => (TraceFlags::default(), false),
        };
        let context = SpanContext::new(trace_id, span_id, flags, false, sampling.trace_state);
        if !recorded {
            return Err(context);
        }
        Ok(ServerSpan {
            context,
            parent: parent.map(|cx| cx.span_id()),
            name,
            start: SystemTime::now(),
            end: SystemTime::UNIX_EPOCH,
            extra: sampling.attributes,
            facts: None,
            outcome: None,
        })
    }
}

/// A recorded server span, until it ends and goes to the export queue.
pub(crate) struct ServerSpan {
    context: SpanContext,
    /// The caller's span (always remote).
    parent: Option<SpanId>,
    name: &'static str,
    start: SystemTime,
    end: SystemTime,
    /// Attributes the sampler added.
    extra: Vec<KeyValue>,
    facts: Option<RequestFacts>,
    outcome: Option<RequestOutcome>,
}

impl ServerSpan {
    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    pub(super) fn context(&self) -> &SpanContext {
        &self.context
    }

    pub(super) fn set_facts(&mut self, facts: RequestFacts) {
        self.facts = Some(facts);
    }

    /// Ends the span with `outcome` and queues it for export.
    pub(super) fn end(mut self, outcome: RequestOutcome, queue: &SpanQueue) {
        self.end = SystemTime::now();
        self.outcome = Some(outcome);
        queue.push(ExportSpan::Server(Box::new(self)));
    }

    /// The `Span` message's fields.
    pub(super) fn encode(&self, buf: &mut Vec<u8>) {
        otlp_encode::span_head(buf, &self.context, self.parent, self.parent.is_some());
        otlp_encode::string(buf, 5, self.name);
        otlp_encode::kind_and_times(buf, &SpanKind::Server, self.start, self.end);
        let mut attribute = |key: &str, value: Attribute<'_>| {
            // Span.attributes = 9
            otlp_encode::message(buf, 9, |buf| otlp_encode::attribute(buf, key, value));
        };
        if let Some(facts) = &self.facts {
            facts.visit(&mut attribute);
        }
        if let Some(outcome) = &self.outcome {
            outcome.visit(&mut attribute);
        }
        for extra in &self.extra {
            otlp_encode::message(buf, 9, |buf| {
                otlp_encode::key_value(buf, extra.key.as_str(), &extra.value);
            });
        }
        let status = self
            .outcome
            .as_ref()
            .map_or(Status::Unset, RequestOutcome::status);
        otlp_encode::status(buf, &status);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Proto;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{RandomIdGenerator, Sampler};
    use prost::Message as _;

    use super::ServerSpans;
    use crate::limits::Limit;
    use crate::telemetry::otlp::{OtlpExport, OtlpProtocol};
    use crate::telemetry::otlp_encode::SpanEncoder;
    use crate::telemetry::queue::{QueueOptions, SpanQueue};
    use crate::telemetry::request::{GuestStats, RequestFacts, RequestOutcome};
    use crate::telemetry::trace_export::TraceClient;

    /// Server spans sampled by `sampler`, queued for a collector nobody listens at (the
    /// tests here never end a span).
    fn spans(sampler: Sampler) -> ServerSpans {
        let export = OtlpExport::new(OtlpProtocol::Grpc).endpoint("http://127.0.0.1:9");
        let client = TraceClient::new(&export, |_| None).unwrap();
        let encoder = SpanEncoder::new(&Resource::builder_empty().build(), scope());
        let options = QueueOptions {
            capacity: 4,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        ServerSpans {
            sampler: Box::new(sampler),
            ids: RandomIdGenerator::default(),
            queue: SpanQueue::start(client, encoder, options),
        }
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("virga").build()
    }

    fn caller(sampled: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state = "vendor=abc".parse::<TraceState>().unwrap();
        SpanContext::new(
            TraceId::from(0xabc),
            SpanId::from(0xdef),
            flags,
            true,
            state,
        )
    }

    #[tokio::test]
    async fn a_server_span_is_written_with_its_facts_and_outcome() {
        let spans = spans(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let mut span = spans.start("GET", Some(caller(true))).unwrap();
        let request = http::Request::get("http://example.test/a/b?q=1")
            .body(())
            .unwrap();
        span.set_facts(RequestFacts::new(&request, "example.test", None));
        span.end = span.start + Duration::from_millis(3);
        span.outcome = Some(RequestOutcome {
            status: 503,
            stats: Some(GuestStats {
                instantiation: Some(Duration::from_micros(50)),
                cpu: Duration::from_micros(120),
                peak_memory: 65536,
            }),
            limit: Some(Limit::CpuTime),
            cancelled: true,
            error: Some(("cpu_time".into(), "the guest ran out of CPU time".into())),
        });
        let mut buf = Vec::new();
        span.encode(&mut buf);
        let decoded = Span::decode(buf.as_slice()).unwrap();
        assert_eq!(decoded.trace_id, TraceId::from(0xabc).to_bytes());
        assert_eq!(decoded.parent_span_id, SpanId::from(0xdef).to_bytes());
        assert_eq!(decoded.span_id, span.context().span_id().to_bytes());
        // Sampled, parent remote (OTLP SpanFlags bits 8 and 9).
        assert_eq!(decoded.flags, 0x301);
        assert_eq!(decoded.trace_state, "vendor=abc");
        assert_eq!((decoded.name.as_str(), decoded.kind), ("GET", 2));
        assert_eq!(
            decoded.end_time_unix_nano - decoded.start_time_unix_nano,
            3_000_000
        );
        let attributes: HashMap<&str, &Proto> = decoded
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.as_str(),
                    kv.value.as_ref().unwrap().value.as_ref().unwrap(),
                )
            })
            .collect();
        let text = |s: &str| Proto::StringValue(s.into());
        for (key, value) in [
            ("http.request.method", text("GET")),
            ("url.path", text("/a/b")),
            ("url.scheme", text("http")),
            ("server.address", text("example.test")),
            ("network.protocol.version", text("1.1")),
            ("http.response.status_code", Proto::IntValue(503)),
            ("virga.instantiation_us", Proto::IntValue(50)),
            ("virga.guest.cpu_us", Proto::IntValue(120)),
            ("virga.guest.peak_memory_bytes", Proto::IntValue(65536)),
            ("virga.limit", text("cpu-time")),
            ("virga.cancelled", Proto::BoolValue(true)),
            ("error.type", text("cpu_time")),
        ] {
            assert_eq!(attributes.get(key), Some(&&value), "{key}");
        }
        assert_eq!(attributes.len(), 12, "{attributes:?}");
        let status = decoded.status.unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (2, "the guest ran out of CPU time")
        );
    }

    #[tokio::test]
    async fn the_sampler_decides_and_an_unsampled_span_still_carries_the_trace() {
        // No caller: a new trace, recorded.
        let always = spans(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let root = always.start("GET", None).unwrap();
        assert!(root.context().is_valid() && root.context().is_sampled());
        assert!(root.parent.is_none());
        // A caller that did not sample: not recorded, same trace, not sampled.
        let Err(unsampled) = always.start("GET", Some(caller(false))) else {
            panic!("an unsampled caller's span was recorded")
        };
        assert_eq!(unsampled.trace_id(), TraceId::from(0xabc));
        assert!(!unsampled.is_sampled() && unsampled.is_valid());
        // OTEL_TRACES_SAMPLER=always_off: nothing recorded, the trace still propagates.
        let off = spans(Sampler::AlwaysOff);
        let Err(dropped) = off.start("GET", Some(caller(true))) else {
            panic!("always_off recorded a span")
        };
        assert_eq!(dropped.trace_id(), TraceId::from(0xabc));
        assert!(!dropped.is_sampled());
    }
}
