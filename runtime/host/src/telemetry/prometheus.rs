//! Metrics in the Prometheus text exposition format (0.0.4), read on demand from a manual
//! reader on the same meter provider that feeds OTLP.
//!
//! Names follow the OpenTelemetry-to-Prometheus rules: dots become underscores, the unit
//! is a suffix (`_seconds`), counters end in `_total`, histograms are `_bucket{le=..}`,
//! `_sum` and `_count`.

use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

/// The manual reader, shared between the meter provider and [`render`].
#[derive(Debug)]
pub(super) struct SharedReader(pub(super) Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The current metrics as Prometheus text.
pub(super) fn render(reader: &ManualReader) -> String {
    let mut metrics = ResourceMetrics::default();
    let mut out = String::new();
    if let Err(e) = reader.collect(&mut metrics) {
        let _ = writeln!(out, "# metrics could not be collected: {e}");
        return out;
    }
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let name = metric_name(metric.name(), metric.unit());
            let help = metric
                .description()
                .replace('\\', "\\\\")
                .replace('\n', "\\n");
            match metric.data() {
                AggregatedMetrics::F64(data) => write_data(&mut out, &name, &help, data),
                AggregatedMetrics::U64(data) => write_data(&mut out, &name, &help, data),
                AggregatedMetrics::I64(data) => write_data(&mut out, &name, &help, data),
            }
        }
    }
    out
}

fn write_data<T: Copy + std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    data: &MetricData<T>,
) {
    match data {
        MetricData::Sum(sum) => {
            let (name, kind) = if sum.is_monotonic() {
                (format!("{name}_total"), "counter")
            } else {
                (name.to_owned(), "gauge")
            };
            header(out, &name, help, kind);
            for point in sum.data_points() {
                sample(out, &name, point.attributes(), None, point.value());
            }
        }
        MetricData::Gauge(gauge) => {
            header(out, name, help, "gauge");
            for point in gauge.data_points() {
                sample(out, name, point.attributes(), None, point.value());
            }
        }
        MetricData::Histogram(histogram) => {
            header(out, name, help, "histogram");
            let bucket = format!("{name}_bucket");
            for point in histogram.data_points() {
                let mut cumulative = 0u64;
                for (bound, count) in point.bounds().zip(point.bucket_counts()) {
                    cumulative += count;
                    let le = bound.to_string();
                    sample(out, &bucket, point.attributes(), Some(&le), cumulative);
                }
                sample(
                    out,
                    &bucket,
                    point.attributes(),
                    Some("+Inf"),
                    point.count(),
                );
                sample(
                    out,
                    &format!("{name}_sum"),
                    point.attributes(),
                    None,
                    point.sum(),
                );
                sample(
                    out,
                    &format!("{name}_count"),
                    point.attributes(),
                    None,
                    point.count(),
                );
            }
        }
        // Not produced by Virga's instruments (no exponential aggregation is configured).
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample<'a>(
    out: &mut String,
    name: &str,
    attributes: impl Iterator<Item = &'a KeyValue>,
    le: Option<&str>,
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    let mut first = true;
    let mut label = |out: &mut String, key: &str, value: &str| {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(&sanitize(key));
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    };
    for kv in attributes {
        label(out, kv.key.as_str(), &kv.value.as_str());
    }
    if let Some(le) = le {
        label(out, "le", le);
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// `http.server.request.duration` with unit `s` → `http_server_request_duration_seconds`.
fn metric_name(name: &str, unit: &str) -> String {
    let mut name = sanitize(name);
    let suffix = match unit {
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        _ => "",
    };
    if !suffix.is_empty() && !name.ends_with(suffix) {
        name.push('_');
        name.push_str(suffix);
    }
    name
}

/// Prometheus names and labels: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_rules() {
        assert_eq!(
            metric_name("http.server.request.duration", "s"),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("virga.cache.lookups", ""),
            "virga_cache_lookups"
        );
        assert_eq!(sanitize("9lives-x"), "_9lives_x");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        let kv = [KeyValue::new("a.b", "q\"u\\o\nte")];
        sample(&mut out, "m", kv.iter(), Some("0.5"), 3u64);
        assert_eq!(out, "m{a_b=\"q\\\"u\\\\o\\nte\",le=\"0.5\"} 3\n");
    }
}
