//! The metric instruments: names and units follow the OpenTelemetry semantic conventions
//! where one exists (`http.server.request.duration`, `http.client.request.duration`), the
//! rest are Virga's own (`virga.*`).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

/// Seconds: the buckets the HTTP semantic conventions recommend.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Instantiation takes microseconds: finer buckets, in seconds.
const INSTANTIATION_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1,
];

/// Every instrument the runtime records into.
pub(crate) struct Instruments {
    /// Requests handled, with their duration (its count is the request count), by
    /// `virga.deployment` and `http.response.status_class`.
    pub(crate) request_duration: Histogram<f64>,
    /// Time to instantiate a sandbox, by `virga.deployment`.
    pub(crate) instantiation: Histogram<f64>,
    /// Host cache lookups by `virga.deployment` and `virga.cache.result`
    /// (`hit`, `miss`, `stale`).
    pub(crate) cache_lookups: Counter<u64>,
    /// Subrequests, with their time to response head, by `virga.deployment` and
    /// `http.response.status_class` (`error` when none came).
    pub(crate) fetch_duration: Histogram<f64>,
    /// Limits tripped, by `virga.deployment` and `virga.limit`.
    pub(crate) limit_trips: Counter<u64>,
    /// Guest log lines dropped over the per-request bound, by `virga.deployment`.
    pub(crate) guest_log_dropped: Counter<u64>,
}

impl Instruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP requests handled by a deployment")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            instantiation: meter
                .f64_histogram("virga.instance.instantiation.duration")
                .with_unit("s")
                .with_description("Time to instantiate a request's sandbox")
                .with_boundaries(INSTANTIATION_BUCKETS.to_vec())
                .build(),
            cache_lookups: meter
                .u64_counter("virga.cache.lookups")
                .with_description("Host cache lookups by result (hit, miss, stale)")
                .build(),
            fetch_duration: meter
                .f64_histogram("http.client.request.duration")
                .with_unit("s")
                .with_description("Subrequests made by guests: time to the response head")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            limit_trips: meter
                .u64_counter("virga.limit.trips")
                .with_description("Requests stopped by a limit, by limit")
                .build(),
            guest_log_dropped: meter
                .u64_counter("virga.guest.log.dropped")
                .with_description("Guest stdout/stderr lines dropped over the per-request bound")
                .build(),
        }
    }
}

/// `1xx` .. `5xx`: the status class attribute (bounded cardinality, unlike the code).
pub(crate) fn status_class(status: u16) -> KeyValue {
    KeyValue::new(
        "http.response.status_class",
        match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    )
}
