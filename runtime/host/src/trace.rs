//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): an incoming `traceparent` is
//! continued, and every subrequest carries a `traceparent` of the same trace.

use http::HeaderValue;
use http::header::HeaderMap;
use opentelemetry::trace::SpanContext;

/// The trace a request belongs to: taken from its `traceparent` when valid (§3.2), else a new
/// one started at the first subrequest.
#[derive(Clone, Debug, Default)]
pub(crate) struct TraceContext {
    incoming: Option<HeaderValue>,
    state: Option<HeaderValue>,
    /// Trace id (hex) and flags (hex), settled at first use.
    trace: Option<(String, String)>,
}

impl TraceContext {
    /// Keeps the request's `traceparent` and `tracestate` headers (cheap clones) for later.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            incoming: headers.get("traceparent").cloned(),
            state: headers.get("tracestate").cloned(),
            trace: None,
        }
    }

    /// Sets `traceparent` and `tracestate` on a subrequest. With the subrequest's recorded
    /// `span`: its trace id, its span id as the parent, its trace state. Without: the
    /// request's trace id with a new parent id for this hop, and the incoming `tracestate`.
    pub(crate) fn inject(&mut self, headers: &mut HeaderMap, span: Option<&SpanContext>) {
        if let Some(span) = span {
            let value = format!(
                "00-{}-{}-{:02x}",
                span.trace_id(),
                span.span_id(),
                span.trace_flags().to_u8()
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert("traceparent", value);
            }
            match HeaderValue::from_str(&span.trace_state().header()) {
                Ok(state) if !state.is_empty() => {
                    headers.insert("tracestate", state);
                }
                _ => {
                    headers.remove("tracestate");
                }
            }
            return;
        }
        let (trace_id, flags) = self.trace.get_or_insert_with(|| {
            self.incoming
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(parse)
                .unwrap_or_else(|| (random_hex(16), "00".to_owned()))
        });
        let value = format!("00-{trace_id}-{}-{flags}", random_hex(8));
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert("traceparent", value);
        }
        if let Some(state) = &self.state
            && self.incoming.is_some()
        {
            headers.insert("tracestate", state.clone());
        }
    }
}

/// Trace id and flags of a valid `traceparent` (see [`parse_parent`]).
pub(crate) fn parse(value: &str) -> Option<(String, String)> {
    parse_parent(value).map(|(trace_id, _, flags)| (trace_id.to_owned(), flags.to_owned()))
}

/// Trace id, parent id and flags of a valid `traceparent` (§3.2.2):
/// `version-traceid-parentid-flags`, lower-case hex, ids not all zero, version not `ff`; a
/// future version may carry more fields.
pub(crate) fn parse_parent(value: &str) -> Option<(&str, &str, &str)> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some((trace_id, parent_id, flags))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = [0u8; 16];
    let buf = &mut buf[..bytes];
    loop {
        if aws_lc_rs::rand::fill(buf).is_err() {
            // Fall back to the clock: a trace id needs uniqueness, not secrecy.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(1);
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (nanos >> ((i % 16) * 8)) as u8 | 1;
            }
        }
        if buf.iter().any(|&b| b != 0) {
            return crate::store::hex(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_traceparents_are_continued_and_bad_ones_are_not() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse(good),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736".into(), "01".into()))
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        // A later version may append fields.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }

    #[test]
    fn subrequests_share_the_trace_with_a_new_parent_each() {
        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        incoming.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
        let mut trace = TraceContext::from_headers(&incoming);
        let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
        trace.inject(&mut a, None);
        trace.inject(&mut b, None);
        let (pa, pb) = (
            a["traceparent"].to_str().unwrap(),
            b["traceparent"].to_str().unwrap(),
        );
        assert!(pa.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && pa.ends_with("-01"));
        assert_ne!(pa, pb, "each hop gets its own parent id");
        assert_ne!(&pa[36..52], "00f067aa0ba902b7");
        assert_eq!(a["tracestate"], "congo=t61rcWkgMzE");

        let mut fresh = TraceContext::default();
        let mut c = HeaderMap::new();
        fresh.inject(&mut c, None);
        let started = c["traceparent"].to_str().unwrap();
        assert!(parse(started).is_some(), "{started}");
        assert!(!c.contains_key("tracestate"));
    }
}
