//! A request's server span recorded without the SDK's span machinery, for Virga's own OTLP
//! export: its ids come from the SDK's id generator and its sampling from the SDK's
//! sampler (`OTEL_TRACES_SAMPLER`), but its attributes stay typed fields until the export
//! thread writes them as protobuf. An embedder's own tracer provider gets SDK spans instead.

use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SamplingDecision, ShouldSample};

use super::otlp_encode::{self, ExportSpan, SpanFields};
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
        SpanFields {
            kind: SpanKind::Server,
            start: self.start,
            end: self.end,
        }
        .encode(buf);
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
