//! OpenTelemetry end to end: a handler that logs, looks up the cache, fetches and stores,
//! behind a real OTLP receiver (gRPC and HTTP/protobuf) and a real upstream on loopback.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use virga::telemetry::{OtlpExport, OtlpProtocol, Telemetry};
use virga::{GuestOutput, Limits, Runtime};
use virga_test_artifacts::{FETCHER, HELLO};

use crate::otlp::{Received, Receiver, Running, attribute, hex, text};
use crate::support::{Proto, TestHost, full};
use crate::upstream::Upstream;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn encode(url: &str) -> String {
    form_urlencoded::byte_serialize(url.as_bytes()).collect()
}

/// A runtime exporting to `receiver` over `protocol` every 100 ms, guests' output as log
/// records (at most 3 lines of 64 bytes per request).
fn exporting_runtime(receiver: &Running, protocol: OtlpProtocol) -> (Runtime, Telemetry) {
    let telemetry = Telemetry::builder()
        .otlp(OtlpExport::new(protocol).endpoint(format!("http://{}", receiver.addr)))
        .metric_interval(Duration::from_millis(100))
        .guest_log_lines(3)
        .guest_log_line_bytes(64)
        .build()
        .unwrap();
    let runtime = Runtime::builder()
        .telemetry(telemetry.clone())
        .guest_output(GuestOutput::Log)
        .build()
        .unwrap();
    (runtime, telemetry)
}

/// The fetcher at `/f/*` allowed to reach `upstream`, hello elsewhere.
async fn traced_host(
    receiver: &Running,
    protocol: OtlpProtocol,
    upstream: &Upstream,
) -> (TestHost, Telemetry) {
    let (runtime, telemetry) = exporting_runtime(receiver, protocol);
    (fetching_host(runtime, upstream).await, telemetry)
}

/// `runtime` serving the fetcher at `/f/*` (allowed to reach `upstream`), hello elsewhere.
async fn fetching_host(runtime: Runtime, upstream: &Upstream) -> TestHost {
    TestHost::builder_with(runtime)
        .guest("traced", FETCHER, "*/f/*")
        .allow(&upstream.url("http", ""))
        .limits(Limits::default().cpu_time(Duration::from_secs(5)))
        .guest("hello", HELLO, "*/*")
        .start()
        .await
}

async fn traced_request(host: &TestHost, upstream: &Upstream, traceparent: Option<&str>) -> String {
    let path = format!(
        "/f/traced?url={}",
        encode(&upstream.url("http", "/headers"))
    );
    let mut request = http::Request::get(host.uri(Proto::H1, &path));
    if let Some(traceparent) = traceparent {
        request = request
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=opaque");
    }
    let reply = host
        .request(Proto::H1, request.body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

fn span<'a>(received: &'a Received, name: &str, trace: &str) -> Vec<&'a Span> {
    received
        .spans
        .iter()
        .filter(|s| s.name == name && hex(&s.trace_id) == trace)
        .collect()
}

/// The latest data point sum of a histogram, or value of a counter, for the attributes.
fn latest(received: &Received, name: &str, attrs: &[(&str, &str)]) -> Option<f64> {
    let matches = |a: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
        attrs
            .iter()
            .all(|(k, v)| attribute(a, k).as_deref() == Some(*v))
    };
    received
        .metrics
        .iter()
        .rev()
        .filter(|m| m.name == name)
        .find_map(|m| match m.data.as_ref()? {
            Data::Histogram(h) => h
                .data_points
                .iter()
                .find(|p| matches(&p.attributes))
                .map(|p| p.count as f64),
            Data::Sum(s) => s
                .data_points
                .iter()
                .find(|p| matches(&p.attributes))
                .map(|p| match p.value {
                    Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i),
                    ) => i as f64,
                    Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                            d,
                        ),
                    ) => d,
                    None => f64::NAN,
                }),
            Data::Gauge(g) => g
                .data_points
                .iter()
                .find(|p| matches(&p.attributes))
                .map(|_| 1.0),
            _ => None,
        })
}

async fn spans_metrics_and_logs_reach_the_collector(protocol: OtlpProtocol, receiver: &Running) {
    let upstream = Upstream::plain().await;
    let (host, telemetry) = traced_host(receiver, protocol, &upstream).await;
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");

    // First request: a miss, a fetch, a put. The upstream answers the headers it got.
    let seen_upstream = traced_request(&host, &upstream, Some(&incoming)).await;
    // Second: served from the cache, no fetch.
    let second = traced_request(
        &host,
        &upstream,
        Some(&format!("00-{}-{PARENT_ID}-01", "ab".repeat(16))),
    )
    .await;
    assert_eq!(
        second, seen_upstream,
        "the second answer comes from the cache"
    );
    telemetry.flush().await.unwrap();

    receiver
        .wait_for("the server span and its children", |r| {
            span(r, "GET", TRACE_ID).len() == 1 && span(r, "fetch", TRACE_ID).len() == 1
        })
        .await;
    {
        let received = receiver.receiver.received.lock().unwrap();
        // The server span continues the incoming trace, as a child of the caller's span.
        let server = span(&received, "GET", TRACE_ID)[0];
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(hex(&server.parent_span_id), PARENT_ID);
        assert_eq!(server.trace_state, "vendor=opaque");
        let attr = |name| attribute(&server.attributes, name);
        assert_eq!(attr("http.request.method").as_deref(), Some("GET"));
        assert_eq!(attr("url.path").as_deref(), Some("/f/traced"));
        assert_eq!(attr("http.response.status_code").as_deref(), Some("200"));
        assert_eq!(attr("network.protocol.version").as_deref(), Some("1.1"));
        assert_eq!(attr("virga.deployment").as_deref(), Some("traced"));
        assert_eq!(attr("virga.version").as_deref(), Some("1"));
        let number = |name| attr(name).and_then(|v| v.parse::<i64>().ok()).unwrap_or(-1);
        assert!(number("virga.instantiation_us") >= 0, "{server:?}");
        assert!(number("virga.guest.cpu_us") > 0, "{server:?}");
        assert!(
            number("virga.guest.peak_memory_bytes") >= 65536,
            "{server:?}"
        );
        assert!(attr("virga.limit").is_none());

        // Host calls are its children: a cache miss, the fetch, the put.
        let children: Vec<&Span> = received
            .spans
            .iter()
            .filter(|s| s.parent_span_id == server.span_id)
            .collect();
        let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        for name in ["cache.lookup", "fetch", "cache.put"] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let lookup = children.iter().find(|s| s.name == "cache.lookup").unwrap();
        assert_eq!(
            attribute(&lookup.attributes, "virga.cache.result").as_deref(),
            Some("miss")
        );
        let fetch = children.iter().find(|s| s.name == "fetch").unwrap();
        assert_eq!(fetch.kind, SpanKind::Client as i32);
        assert_eq!(
            attribute(&fetch.attributes, "http.response.status_code").as_deref(),
            Some("200")
        );
        // The upstream got the trace, with the fetch span as its parent.
        let expected = format!("traceparent: 00-{TRACE_ID}-{}-01", hex(&fetch.span_id));
        assert!(
            seen_upstream.lines().any(|l| l == expected),
            "{expected} not in {seen_upstream}"
        );
        assert!(
            seen_upstream.contains("tracestate: vendor=opaque"),
            "{seen_upstream}"
        );

        // The second request's lookup was a hit, and it made no subrequest.
        let second_trace = "ab".repeat(16);
        let hit = span(&received, "cache.lookup", &second_trace);
        assert_eq!(hit.len(), 1);
        assert_eq!(
            attribute(&hit[0].attributes, "virga.cache.result").as_deref(),
            Some("hit")
        );
        assert!(span(&received, "fetch", &second_trace).is_empty());
    }

    // The guest's lines are log records in the request's trace, under its server span.
    receiver
        .wait_for("the guest's log records", |r| r.logs.len() >= 4)
        .await;
    {
        let received = receiver.receiver.received.lock().unwrap();
        let server_id = span(&received, "GET", TRACE_ID)[0].span_id.clone();
        let stdout = received
            .logs
            .iter()
            .find(|l| {
                hex(&l.trace_id) == TRACE_ID
                    && l.body
                        .as_ref()
                        .and_then(text)
                        .is_some_and(|b| b.starts_with("traced request for http://127.0.0.1"))
            })
            .expect("the stdout line as a log record of the trace");
        assert_eq!(stdout.span_id, server_id);
        assert_eq!(stdout.severity_text, "INFO");
        assert_eq!(
            attribute(&stdout.attributes, "virga.deployment").as_deref(),
            Some("traced")
        );
        assert_eq!(
            attribute(&stdout.attributes, "log.iostream").as_deref(),
            Some("stdout")
        );
        let stderr = received
            .logs
            .iter()
            .find(|l| {
                hex(&l.trace_id) == TRACE_ID
                    && l.body.as_ref().and_then(text).as_deref() == Some("traced stderr line")
            })
            .expect("the stderr line");
        assert_eq!(stderr.severity_text, "ERROR");
    }

    // Metrics: requests by deployment and status class, instantiations, cache results,
    // fetches, live instances.
    receiver
        .wait_for("the request metrics", |r| {
            latest(
                r,
                "http.server.request.duration",
                &[
                    ("virga.deployment", "traced"),
                    ("http.response.status_class", "2xx"),
                ],
            ) == Some(2.0)
        })
        .await;
    {
        let received = receiver.receiver.received.lock().unwrap();
        let traced = ("virga.deployment", "traced");
        assert_eq!(
            latest(
                &received,
                "virga.instance.instantiation.duration",
                &[traced]
            ),
            Some(2.0)
        );
        assert_eq!(
            latest(
                &received,
                "virga.cache.lookups",
                &[traced, ("virga.cache.result", "miss")]
            ),
            Some(1.0)
        );
        assert_eq!(
            latest(
                &received,
                "virga.cache.lookups",
                &[traced, ("virga.cache.result", "hit")]
            ),
            Some(1.0)
        );
        assert_eq!(
            latest(
                &received,
                "http.client.request.duration",
                &[traced, ("http.response.status_class", "2xx")]
            ),
            Some(1.0)
        );
        assert!(latest(&received, "virga.instances.live", &[traced]).is_some());
    }

    // The same metrics as Prometheus text.
    let text = telemetry.prometheus();
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("virga_deployment=\"traced\"")
                && l.contains("http_response_status_class=\"2xx\"")
                && l.ends_with(" 2")
        ),
        "{text}"
    );
    assert!(
        text.contains("# TYPE virga_cache_lookups_total counter"),
        "{text}"
    );
}

#[tokio::test]
async fn otlp_grpc_gets_spans_metrics_and_logs() {
    spans_metrics_and_logs_reach_the_collector(OtlpProtocol::Grpc, &Receiver::grpc().await).await;
}

#[tokio::test]
async fn otlp_http_protobuf_gets_spans_metrics_and_logs() {
    let receiver = Receiver::http().await;
    spans_metrics_and_logs_reach_the_collector(OtlpProtocol::HttpProtobuf, &receiver).await;
    let paths = receiver
        .receiver
        .received
        .lock()
        .unwrap()
        .http_paths
        .clone();
    for path in ["/v1/traces", "/v1/logs", "/v1/metrics"] {
        assert!(paths.iter().any(|p| p == path), "{path} not in {paths:?}");
    }
}

/// The deployment `name` serving `guest` everywhere, exporting over gRPC.
async fn logging_host(
    receiver: &Running,
    name: &str,
    guest: &str,
    limits: Limits,
) -> (TestHost, Telemetry) {
    let (runtime, telemetry) = exporting_runtime(receiver, OtlpProtocol::Grpc);
    let host = TestHost::builder_with(runtime)
        .guest(name, guest, "*/*")
        .limits(limits)
        .start()
        .await;
    (host, telemetry)
}

async fn get_traced(host: &TestHost, path: &str, traceparent: &str) -> crate::support::Reply {
    let request = http::Request::get(host.uri(Proto::H1, path))
        .header("traceparent", traceparent)
        .body(full(Bytes::new()))
        .unwrap();
    host.request(Proto::H1, request).await.unwrap()
}

#[tokio::test]
async fn a_chatty_guest_logs_within_its_bounds() {
    let receiver = Receiver::grpc().await;
    let limits = Limits::default()
        .cpu_time(Duration::from_secs(5))
        .wall_time(Duration::from_secs(10));
    let (host, telemetry) =
        logging_host(&receiver, "chatty", virga_test_artifacts::HOSTILE, limits).await;
    let trace = "11".repeat(16);
    let reply = get_traced(&host, "/lines", &format!("00-{trace}-{PARENT_ID}-01")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // 64 MiB without a newline: one line, cut.
    let flood = "22".repeat(16);
    let reply = get_traced(&host, "/stdout", &format!("00-{flood}-{PARENT_ID}-01")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    telemetry.flush().await.unwrap();

    receiver
        .wait_for("the chatty guest's records and dropped count", |r| {
            r.logs.iter().filter(|l| hex(&l.trace_id) == flood).count() == 1
                && latest(
                    r,
                    "virga.guest.log.dropped",
                    &[("virga.deployment", "chatty")],
                ) == Some(998.0)
        })
        .await;
    let received = receiver.receiver.received.lock().unwrap();
    let bodies: Vec<String> = received
        .logs
        .iter()
        .filter(|l| hex(&l.trace_id) == trace)
        .filter_map(|l| l.body.as_ref().and_then(text))
        .collect();
    assert_eq!(
        bodies,
        [
            format!("{} [cut]", "y".repeat(64)),
            "line 0".into(),
            "line 1".into()
        ]
    );
    let flood_line = received
        .logs
        .iter()
        .find(|l| hex(&l.trace_id) == flood)
        .and_then(|l| l.body.as_ref().and_then(text))
        .unwrap();
    assert_eq!(flood_line, format!("{} [cut]", "x".repeat(64)));
}

/// Waits for the server span of `trace` and the count of `limit` tripped by `deployment`;
/// checks that the span names the limit, has `status` and an error status.
async fn tripped_span(
    receiver: &Running,
    trace: &str,
    deployment: &str,
    limit: &str,
    status: &str,
) -> Span {
    let counted = [("virga.deployment", deployment), ("virga.limit", limit)];
    receiver
        .wait_for("the span and the limit count", |r| {
            span(r, "GET", trace).len() == 1
                && latest(r, "virga.limit.trips", &counted) == Some(1.0)
        })
        .await;
    let received = receiver.receiver.received.lock().unwrap();
    let server = span(&received, "GET", trace)[0].clone();
    let attr = |name| attribute(&server.attributes, name);
    assert_eq!(attr("virga.limit").as_deref(), Some(limit));
    assert_eq!(attr("http.response.status_code").as_deref(), Some(status));
    assert_eq!(
        server.status.as_ref().map(|s| s.code),
        Some(2),
        "STATUS_CODE_ERROR"
    );
    server
}

#[tokio::test]
async fn a_tripped_limit_is_on_the_span_and_counted() {
    let receiver = Receiver::grpc().await;
    let limits = Limits::default().cpu_time(Duration::from_millis(50));
    let (host, telemetry) =
        logging_host(&receiver, "spinner", virga_test_artifacts::LOOPING, limits).await;
    let trace = "33".repeat(16);
    let reply = get_traced(&host, "/", &format!("00-{trace}-{PARENT_ID}-01")).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    telemetry.flush().await.unwrap();
    let server = tripped_span(&receiver, &trace, "spinner", "cpu-time", "503").await;
    let status = server.status.as_ref().expect("an error status");
    assert!(status.message.contains("cpu-time"), "{}", status.message);
    // At least the 50 ms it was allowed.
    let cpu: i64 = attribute(&server.attributes, "virga.guest.cpu_us")
        .unwrap()
        .parse()
        .unwrap();
    assert!(cpu >= 50_000, "cpu {cpu} us");
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace() {
    let receiver = Receiver::grpc().await;
    let (host, telemetry) = logging_host(&receiver, "hello", HELLO, Limits::default()).await;
    // W3C Trace Context §3.2.2: an all-zero trace id, upper-case hex, a short id, version ff.
    let bad = [
        format!("00-{}-{PARENT_ID}-01", "0".repeat(32)),
        format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase()),
        format!("00-{}-{PARENT_ID}-01", &TRACE_ID[..30]),
        format!("ff-{TRACE_ID}-{PARENT_ID}-01"),
        "garbage".to_owned(),
    ];
    for traceparent in &bad {
        let reply = get_traced(&host, "/", traceparent).await;
        assert_eq!(reply.status, 200, "{traceparent}: {}", reply.text());
    }
    telemetry.flush().await.unwrap();
    receiver
        .wait_for("five server spans", |r| {
            r.spans.iter().filter(|s| s.name == "GET").count() == 5
        })
        .await;
    let received = receiver.receiver.received.lock().unwrap();
    for server in received.spans.iter().filter(|s| s.name == "GET") {
        assert!(server.parent_span_id.is_empty(), "{server:?} has a parent");
        let trace = hex(&server.trace_id);
        assert_ne!(trace, TRACE_ID);
        assert_ne!(trace, "0".repeat(32));
    }
}

#[tokio::test]
async fn without_export_no_spans_are_made_and_prometheus_still_counts() {
    let runtime = Runtime::builder()
        .guest_output(GuestOutput::Log)
        .build()
        .unwrap();
    // The default telemetry has no tracer and no logger: nothing to export, nothing made.
    assert!(!runtime.telemetry().traces_enabled());
    assert!(runtime.telemetry().logger_provider().is_none());
    let host = TestHost::builder_with(runtime.clone())
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    for _ in 0..3 {
        let reply = host.get(Proto::H1, "/").await.unwrap();
        assert_eq!(reply.status, 200);
    }
    runtime.telemetry().flush().await.unwrap();
    let text = runtime.telemetry().prometheus();
    let line = |prefix: &str, suffix: &str| {
        text.lines().any(|l| {
            l.starts_with(prefix) && l.contains("virga_deployment=\"hello\"") && l.ends_with(suffix)
        })
    };
    assert!(
        line("http_server_request_duration_seconds_count{", " 3"),
        "{text}"
    );
    // A histogram: cumulative buckets, +Inf equal to the count, sum and count.
    assert!(
        line(
            "virga_instance_instantiation_duration_seconds_bucket{",
            "le=\"+Inf\"} 3"
        ),
        "{text}"
    );
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("virga_instance_instantiation_duration_seconds_bucket{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(text.contains("# TYPE virga_instance_instantiation_duration_seconds histogram"));
    assert!(
        line("virga_instance_instantiation_duration_seconds_sum{", ""),
        "{text}"
    );
}

#[tokio::test]
async fn a_body_cut_at_its_limit_is_counted_as_that_limit() {
    let receiver = Receiver::grpc().await;
    let limits = Limits::default()
        .cpu_time(Duration::from_secs(5))
        .response_body(64 << 10);
    let (host, telemetry) =
        logging_host(&receiver, "endless", virga_test_artifacts::HOSTILE, limits).await;
    // The head (200) is out before the body is cut: the client sees a broken body.
    let trace = "44".repeat(16);
    let _ = host
        .request(
            Proto::H1,
            http::Request::get(host.uri(Proto::H1, "/stream"))
                .header("traceparent", format!("00-{trace}-{PARENT_ID}-01"))
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await;
    telemetry.flush().await.unwrap();
    tripped_span(&receiver, &trace, "endless", "response-body", "200").await;
    {
        let received = receiver.receiver.received.lock().unwrap();
        assert!(
            latest(
                &received,
                "http.server.request.duration",
                &[("virga.deployment", "endless")]
            )
            .is_some()
        );
    }
}

#[tokio::test]
async fn a_stalled_collector_costs_dropped_spans_not_slow_requests() {
    // A collector that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stalled = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let telemetry = Telemetry::builder()
        .otlp(
            OtlpExport::new(OtlpProtocol::Grpc)
                .endpoint(format!("http://{addr}"))
                .timeout(Duration::from_secs(60)),
        )
        .export_queue(8)
        .build()
        .unwrap();
    let host = hello_host(&telemetry).await;
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let reply = host.get(Proto::H1, "/").await.unwrap();
        assert_eq!(reply.status, 200);
    }
    // The export waits up to its 60 s timeout; the requests did not wait for it.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // 8 went out in the first batch (stuck), 8 wait in the queue: the rest are counted.
    let text = telemetry.prometheus();
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("virga_telemetry_dropped_total{virga_signal=\"spans\"} "))
        .unwrap_or_else(|| panic!("no dropped count in {text}"))
        .parse()
        .unwrap();
    assert!((30..=42).contains(&dropped), "dropped {dropped}");
    stalled.abort();
}

/// The hello sample served with `telemetry`.
async fn hello_host(telemetry: &Telemetry) -> TestHost {
    let runtime = Runtime::builder()
        .telemetry(telemetry.clone())
        .build()
        .unwrap();
    TestHost::builder_with(runtime)
        .guest("hello", HELLO, "*/*")
        .start()
        .await
}

/// A collector that refuses every export: gRPC status 7 (trailers-only) over HTTP/2, or
/// 400 over HTTP/1.1.
async fn refusing_collector(grpc: bool) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| async move {
                    let answer = if grpc {
                        http::Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "7")
                            .header("grpc-message", "tenant over quota")
                    } else {
                        http::Response::builder().status(400)
                    };
                    Ok::<_, std::convert::Infallible>(answer.body(full("")).unwrap())
                });
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = if grpc {
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                };
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_refused_export_is_an_error_that_names_the_collectors_answer() {
    for (protocol, grpc, named) in [
        (OtlpProtocol::Grpc, true, "gRPC status 7: tenant over quota"),
        (OtlpProtocol::HttpProtobuf, false, "400"),
    ] {
        let (addr, collector) = refusing_collector(grpc).await;
        let mut export = OtlpExport::new(protocol).endpoint(format!("http://{addr}"));
        export.metrics = false;
        export.logs = false;
        let telemetry = Telemetry::builder().otlp(export).build().unwrap();
        let host = hello_host(&telemetry).await;
        // The request itself is unaffected.
        assert_eq!(host.get(Proto::H1, "/").await.unwrap().status, 200);
        let error = telemetry.flush().await.unwrap_err().to_string();
        assert!(
            error.contains("spans") && error.contains(named),
            "{protocol:?}: {error}"
        );
        collector.abort();
    }
}

/// Collects the spans an embedder's provider ends.
#[derive(Debug, Default, Clone)]
struct Collected(std::sync::Arc<std::sync::Mutex<Vec<SpanData>>>);

impl SpanProcessor for Collected {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap().push(span);
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

#[tokio::test]
async fn an_embedders_tracer_provider_gets_sdk_spans() {
    let collected = Collected::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(collected.clone())
        .build();
    let telemetry = Telemetry::builder()
        .tracer_provider(provider)
        .build()
        .unwrap();
    let runtime = Runtime::builder().telemetry(telemetry).build().unwrap();
    let upstream = Upstream::plain().await;
    let host = fetching_host(runtime, &upstream).await;
    let seen_upstream = traced_request(
        &host,
        &upstream,
        Some(&format!("00-{TRACE_ID}-{PARENT_ID}-01")),
    )
    .await;
    // The server span ends once the response body is out: give it a moment.
    let ended = |c: &Collected| {
        let spans = c.0.lock().unwrap();
        spans
            .iter()
            .any(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
    };
    for _ in 0..100 {
        if ended(&collected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spans = collected.0.lock().unwrap().clone();
    let server = spans
        .iter()
        .find(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .unwrap_or_else(|| panic!("no server span in {spans:?}"));
    assert_eq!(server.name, "GET");
    assert_eq!(server.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(server.parent_span_id.to_string(), PARENT_ID);
    let value = |key: &str| {
        server
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(value("url.path").as_deref(), Some("/f/traced"));
    assert_eq!(value("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(value("virga.deployment").as_deref(), Some("traced"));
    let fetch = spans
        .iter()
        .find(|s| s.name == "fetch")
        .unwrap_or_else(|| panic!("no fetch span in {spans:?}"));
    assert_eq!(fetch.parent_span_id, server.span_context.span_id());
    // The upstream saw the fetch span as its parent.
    let fetch_id = fetch.span_context.span_id().to_string();
    assert!(seen_upstream.contains(&fetch_id), "{seen_upstream}");
}
