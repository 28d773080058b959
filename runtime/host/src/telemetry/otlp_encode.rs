//! Spans straight to OTLP protobuf bytes (`ExportTraceServiceRequest` of
//! `opentelemetry/proto/collector/trace/v1/trace_service.proto`), on the export thread.
//!
//! Converting to the `opentelemetry-proto` message structs first, as the SDK's exporter
//! does, allocates a `String` per attribute key and value and then walks the structs twice
//! more to size and encode them; writing the wire format from the spans as they are costs a
//! fraction of that, and the export thread shares the cores with the requests.

use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::request::Attribute;
use super::server_span::ServerSpan;

/// A span waiting for export: one the SDK recorded (a host call's), or a request's server
/// span recorded without the SDK.
pub(crate) enum ExportSpan {
    Sdk(Box<SpanData>),
    Server(Box<ServerSpan>),
}

impl std::fmt::Debug for ExportSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportSpan::Sdk(data) => f.debug_tuple("Sdk").field(&data.name).finish(),
            ExportSpan::Server(span) => f.debug_tuple("Server").field(&span.name()).finish(),
        }
    }
}

/// Encodes batches of spans for one resource, reusing its buffer.
pub(crate) struct SpanEncoder {
    /// The `Resource` message (its attributes), encoded once.
    resource: Vec<u8>,
    resource_schema: String,
    /// The scope server spans are recorded under.
    scope: InstrumentationScope,
    buffer: Vec<u8>,
}

impl SpanEncoder {
    pub(crate) fn new(resource: &Resource, scope: InstrumentationScope) -> Self {
        let mut encoded = Vec::new();
        for (key, value) in resource.iter() {
            message(&mut encoded, 1, |buf| key_value(buf, key.as_str(), value));
        }
        Self {
            resource: encoded,
            resource_schema: resource.schema_url().unwrap_or_default().to_owned(),
            scope,
            buffer: Vec::new(),
        }
    }

    /// `spans` as requests of at most `max` bytes each (a single span over it goes alone),
    /// each handed to `send`: a batch of spans with long attributes (URL paths, say) must
    /// not exceed what a collector accepts in one message (4 MiB by default for gRPC) and
    /// be refused whole. Every part is sent even when one fails; the first failure is
    /// returned.
    pub(crate) fn encode_in_parts(
        &mut self,
        spans: &[ExportSpan],
        max: usize,
        send: &mut impl FnMut(&[u8]) -> OTelSdkResult,
    ) -> OTelSdkResult {
        if self.encode(spans).len() > max && spans.len() > 1 {
            let (first, second) = spans.split_at(spans.len() / 2);
            let first = self.encode_in_parts(first, max, send);
            let second = self.encode_in_parts(second, max, send);
            return first.and(second);
        }
        send(&self.buffer)
    }

    /// `spans` as one `ExportTraceServiceRequest`, grouped by instrumentation scope (in
    /// the order scopes first appear). The bytes are valid until the next call.
    pub(crate) fn encode(&mut self, spans: &[ExportSpan]) -> &[u8] {
        let buf = &mut self.buffer;
        buf.clear();
        let own = &self.scope;
        let scope_of = |span| scope_of(span, own);
        // Scopes in first-appearance order; nearly always just one.
        let mut scopes: Vec<&InstrumentationScope> = Vec::new();
        for span in spans {
            let scope = scope_of(span);
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        // ExportTraceServiceRequest.resource_spans = 1
        message(buf, 1, |buf| {
            // ResourceSpans.resource = 1
            message(buf, 1, |buf| buf.extend_from_slice(&self.resource));
            for scope in &scopes {
                // ResourceSpans.scope_spans = 2
                message(buf, 2, |buf| {
                    message(buf, 1, |buf| instrumentation_scope(buf, scope));
                    for span in spans.iter().filter(|span| scope_of(span) == *scope) {
                        // ScopeSpans.spans = 2
                        message(buf, 2, |buf| match span {
                            ExportSpan::Sdk(data) => sdk_span(buf, data),
                            ExportSpan::Server(span) => span.encode(buf),
                        });
                    }
                    string(buf, 3, scope.schema_url().unwrap_or_default());
                });
            }
            string(buf, 3, &self.resource_schema);
        });
        &self.buffer
    }
}

/// The scope a span was recorded under (server spans: `own`).
fn scope_of<'a>(span: &'a ExportSpan, own: &'a InstrumentationScope) -> &'a InstrumentationScope {
    match span {
        ExportSpan::Sdk(data) => &data.instrumentation_scope,
        ExportSpan::Server(_) => own,
    }
}

fn instrumentation_scope(buf: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(buf, 1, scope.name());
    string(buf, 2, scope.version().unwrap_or_default());
    for attribute in scope.attributes() {
        message(buf, 3, |buf| {
            key_value(buf, attribute.key.as_str(), &attribute.value)
        });
    }
}

fn sdk_span(buf: &mut Vec<u8>, span: &SpanData) {
    let parent = (span.parent_span_id != SpanId::INVALID).then_some(span.parent_span_id);
    span_head(buf, &span.span_context, parent, span.parent_span_is_remote);
    string(buf, 5, &span.name);
    kind_and_times(buf, &span.span_kind, span.start_time, span.end_time);
    attributes(buf, 9, &span.attributes);
    uint32(buf, 10, span.dropped_attributes_count);
    for event in span.events.iter() {
        // Span.events = 11
        message(buf, 11, |buf| {
            fixed64(buf, 1, nanos(event.timestamp));
            string(buf, 2, &event.name);
            attributes(buf, 3, &event.attributes);
            uint32(buf, 4, event.dropped_attributes_count);
        });
    }
    uint32(buf, 12, span.events.dropped_count);
    for link in span.links.iter() {
        // Span.links = 13
        message(buf, 13, |buf| {
            let context = &link.span_context;
            bytes(buf, 1, &context.trace_id().to_bytes());
            bytes(buf, 2, &context.span_id().to_bytes());
            string(buf, 3, &context.trace_state().header());
            attributes(buf, 4, &link.attributes);
            uint32(buf, 5, link.dropped_attributes_count);
            fixed32(buf, 6, flags(context, context.is_remote()));
        });
    }
    uint32(buf, 14, span.links.dropped_count);
    status(buf, &span.status);
}

/// A span's ids, trace state, parent and flags (fields 1–4 and 16).
pub(super) fn span_head(
    buf: &mut Vec<u8>,
    context: &SpanContext,
    parent: Option<SpanId>,
    parent_is_remote: bool,
) {
    bytes(buf, 1, &context.trace_id().to_bytes());
    bytes(buf, 2, &context.span_id().to_bytes());
    string(buf, 3, &context.trace_state().header());
    if let Some(parent) = parent {
        bytes(buf, 4, &parent.to_bytes());
    }
    fixed32(buf, 16, flags(context, parent_is_remote));
}

/// Span.flags: the W3C trace flags, and whether the parent is remote (bits 8 and 9, as
/// `SpanFlags` in trace.proto defines them).
fn flags(context: &SpanContext, remote: bool) -> u32 {
    u32::from(context.trace_flags().to_u8()) | 0x100 | if remote { 0x200 } else { 0 }
}

/// A span's kind and times (fields 6–8).
pub(super) fn kind_and_times(
    buf: &mut Vec<u8>,
    kind: &SpanKind,
    start: SystemTime,
    end: SystemTime,
) {
    let kind = match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    uint32(buf, 6, kind);
    fixed64(buf, 7, nanos(start));
    fixed64(buf, 8, nanos(end));
}

/// Span.status = 15 (always present, as the SDK's exporter sends it).
pub(super) fn status(buf: &mut Vec<u8>, status: &Status) {
    message(buf, 15, |buf| match status {
        Status::Unset => {}
        Status::Ok => uint32(buf, 3, 1),
        Status::Error { description } => {
            string(buf, 2, description);
            uint32(buf, 3, 2);
        }
    });
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attributes(buf: &mut Vec<u8>, field: u32, attributes: &[KeyValue]) {
    for attribute in attributes {
        message(buf, field, |buf| {
            key_value(buf, attribute.key.as_str(), &attribute.value);
        });
    }
}

/// A `KeyValue` message's fields.
pub(super) fn key_value(buf: &mut Vec<u8>, key: &str, value: &Value) {
    string(buf, 1, key);
    message(buf, 2, |buf| any_value(buf, value));
}

/// An `AnyValue` message's fields.
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => string_always(buf, 1, s.as_str()),
        Value::Bool(b) => bool_always(buf, 2, *b),
        Value::I64(i) => int64_always(buf, 3, *i),
        Value::F64(f) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&f.to_le_bytes());
        }
        Value::Array(array) => message(buf, 5, |buf| match array {
            Array::Bool(values) => array_of(buf, values, |v| Value::Bool(*v)),
            Array::I64(values) => array_of(buf, values, |v| Value::I64(*v)),
            Array::F64(values) => array_of(buf, values, |v| Value::F64(*v)),
            Array::String(values) => {
                for v in values {
                    message(buf, 1, |buf| string_always(buf, 1, v.as_str()));
                }
            }
            // A kind of array this version does not know: sent empty.
            _ => {}
        }),
        // A kind of value this version does not know: an empty AnyValue.
        _ => {}
    }
}

fn array_of<T>(buf: &mut Vec<u8>, values: &[T], value: impl Fn(&T) -> Value) {
    for v in values {
        message(buf, 1, |buf| any_value(buf, &value(v)));
    }
}

/// A length-delimited field whose contents `body` writes. The length is written in the one
/// byte reserved for it when it fits, else the body moves up to make room.
pub(super) fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    encode_key(field, WireType::LengthDelimited, buf);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        let mut prefix = [0u8; 10];
        let size = encoded_len_varint(len as u64);
        encode_varint(len as u64, &mut &mut prefix[..]);
        buf.splice(at..=at, prefix[..size].iter().copied());
    }
}

/// A string field, left out when empty (proto3 default).
pub(super) fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    if !value.is_empty() {
        string_always(buf, field, value);
    }
}

/// A string field even when empty (a oneof member: its presence is the point).
fn string_always(buf: &mut Vec<u8>, field: u32, value: &str) {
    bytes_always(buf, field, value.as_bytes());
}

fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        bytes_always(buf, field, value);
    }
}

fn bytes_always(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value);
}

fn uint32(buf: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        encode_key(field, WireType::Varint, buf);
        encode_varint(u64::from(value), buf);
    }
}

fn bool_always(buf: &mut Vec<u8>, field: u32, value: bool) {
    encode_key(field, WireType::Varint, buf);
    encode_varint(u64::from(value), buf);
}

fn int64_always(buf: &mut Vec<u8>, field: u32, value: i64) {
    encode_key(field, WireType::Varint, buf);
    encode_varint(value as u64, buf);
}

fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        encode_key(field, WireType::ThirtyTwoBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        encode_key(field, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

/// A `KeyValue` message's fields for an attribute Virga records itself.
pub(super) fn attribute(buf: &mut Vec<u8>, key: &str, value: Attribute<'_>) {
    string(buf, 1, key);
    message(buf, 2, |buf| match value {
        Attribute::Static(s) | Attribute::Str(s) => string_always(buf, 1, s),
        Attribute::Int(i) => int64_always(buf, 3, i),
        Attribute::Bool(b) => bool_always(buf, 2, b),
        Attribute::Value(value) => any_value(buf, value),
    });
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, SystemTime};

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Proto;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::{ExportSpan, SpanEncoder};

    fn context(trace: u128, span: u64, sampled: bool, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            remote,
            "vendor=value,other=x".parse::<TraceState>().unwrap(),
        )
    }

    /// Every kind of value, with long strings so that some lengths take two bytes.
    fn attributes(tag: &str) -> Vec<KeyValue> {
        vec![
            KeyValue::new(format!("{tag}.string"), "a".repeat(200)),
            KeyValue::new(format!("{tag}.empty"), ""),
            KeyValue::new(format!("{tag}.bool"), false),
            KeyValue::new(format!("{tag}.int"), -42_i64),
            KeyValue::new(format!("{tag}.zero"), 0_i64),
            KeyValue::new(format!("{tag}.float"), 2.5_f64),
            KeyValue::new(
                format!("{tag}.bools"),
                Value::Array(Array::Bool(vec![true, false])),
            ),
            KeyValue::new(
                format!("{tag}.ints"),
                Value::Array(Array::I64(vec![1, -1, i64::MAX])),
            ),
            KeyValue::new(
                format!("{tag}.floats"),
                Value::Array(Array::F64(vec![0.5, -0.0])),
            ),
            KeyValue::new(
                format!("{tag}.strings"),
                Value::Array(Array::String(vec![
                    StringValue::from("x"),
                    StringValue::from(""),
                ])),
            ),
        ]
    }

    fn span(name: &'static str, scope: &InstrumentationScope, parent: Option<u64>) -> SpanData {
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let mut events = SpanEvents::default();
        events.events = vec![Event::new("retry", start, attributes("event"), 1)];
        events.dropped_count = 2;
        let mut links = SpanLinks::default();
        links.links = vec![Link::new(
            context(9, 0x33, false, true),
            attributes("link"),
            4,
        )];
        links.dropped_count = 5;
        SpanData {
            span_context: context(7, 0x1122, true, false),
            parent_span_id: parent.map_or(SpanId::INVALID, SpanId::from),
            parent_span_is_remote: parent.is_some(),
            span_kind: SpanKind::Client,
            name: Cow::Borrowed(name),
            start_time: start,
            end_time: start + Duration::from_micros(1500),
            attributes: attributes("span"),
            dropped_attributes_count: 3,
            events,
            links,
            status: Status::error("upstream said no"),
            instrumentation_scope: scope.clone(),
        }
    }

    /// `spans` as the export queue holds them.
    fn queued(spans: &[SpanData]) -> Vec<ExportSpan> {
        spans
            .iter()
            .cloned()
            .map(|s| ExportSpan::Sdk(Box::new(s)))
            .collect()
    }

    /// What the SDK's own OTLP exporter sends for the same spans, through the
    /// `opentelemetry-proto` message structs.
    fn reference(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    #[test]
    fn sdk_spans_encode_as_the_proto_structs_do() {
        let resource = Resource::builder_empty()
            .with_schema_url([KeyValue::new("service.name", "edge")], "https://schema/1")
            .build();
        let virga = InstrumentationScope::builder("virga")
            .with_version("1.0")
            .build();
        let other = InstrumentationScope::builder("other")
            .with_schema_url("https://schema/2")
            .with_attributes([KeyValue::new("scope.attr", 1_i64)])
            .build();
        let spans = vec![
            span("fetch", &virga, Some(0x99)),
            span("other", &other, None),
            span("cache", &virga, None),
        ];
        let mut encoder = SpanEncoder::new(&resource, virga.clone());
        let decoded = ExportTraceServiceRequest::decode(encoder.encode(&queued(&spans))).unwrap();
        assert_eq!(decoded, reference(spans, &resource));
        // Two scopes, in the order they first appear.
        let scopes = &decoded.resource_spans[0].scope_spans;
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[0].spans.len(), 2);
        // The buffer is reused: a second batch is encoded from scratch.
        let single = vec![span("again", &virga, None)];
        let decoded = ExportTraceServiceRequest::decode(encoder.encode(&queued(&single))).unwrap();
        assert_eq!(decoded, reference(single, &resource));
    }

    #[test]
    fn a_batch_too_big_for_one_request_is_sent_in_parts() {
        let resource = Resource::builder_empty().build();
        let scope = InstrumentationScope::builder("virga").build();
        let mut encoder = SpanEncoder::new(&resource, scope.clone());
        // 40 spans of ~100 KB (a long URL path each): ~4 MB in all.
        let spans: Vec<ExportSpan> = (0..40)
            .map(|i| {
                let mut data = span("GET", &scope, None);
                data.attributes = vec![KeyValue::new(
                    "url.path",
                    format!("/{i}/{}", "p".repeat(100_000)),
                )];
                ExportSpan::Sdk(Box::new(data))
            })
            .collect();
        let max = 1 << 20;
        let mut parts = Vec::new();
        encoder
            .encode_in_parts(&spans, max, &mut |bytes| {
                parts.push(ExportTraceServiceRequest::decode(bytes).unwrap());
                assert!(bytes.len() <= max, "{} bytes", bytes.len());
                Ok(())
            })
            .unwrap();
        assert!(parts.len() >= 4, "{} parts", parts.len());
        // Every span once, in order: the number in each path.
        let numbers: Vec<String> = parts
            .iter()
            .flat_map(|part| &part.resource_spans[0].scope_spans[0].spans)
            .map(|span| {
                match span.attributes[0]
                    .value
                    .as_ref()
                    .and_then(|v| v.value.as_ref())
                {
                    Some(Proto::StringValue(path)) => path.split('/').nth(1).unwrap().to_owned(),
                    other => panic!("url.path is {other:?}"),
                }
            })
            .collect();
        let expected: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        assert_eq!(numbers, expected);
        // A failing part does not stop the others, and its error is returned.
        let mut sent = 0;
        let result = encoder.encode_in_parts(&spans, max, &mut |_| {
            sent += 1;
            if sent == 1 {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    "refused".into(),
                ))
            } else {
                Ok(())
            }
        });
        assert!(result.is_err());
        assert_eq!(sent, parts.len());
        // A lone span over the bound still goes (the collector decides).
        let mut one = 0;
        encoder
            .encode_in_parts(&spans[..1], 1000, &mut |_| {
                one += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(one, 1);
    }

    #[test]
    fn an_empty_batch_is_one_resource_without_spans() {
        let resource = Resource::builder_empty().build();
        let mut encoder = SpanEncoder::new(&resource, InstrumentationScope::builder("v").build());
        let decoded = ExportTraceServiceRequest::decode(encoder.encode(&[])).unwrap();
        assert_eq!(decoded.resource_spans.len(), 1);
        assert!(decoded.resource_spans[0].scope_spans.is_empty());
    }
}
