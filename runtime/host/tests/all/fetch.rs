//! Outbound fetch against real upstreams on loopback: streaming both ways over HTTP/1.1 and
//! HTTP/2 (TLS with a test CA), concurrency, the allow-list and SSRF rules, and every limit
//! tripping while other deployments carry on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use virga::{Limits, Runtime};
use virga_test_artifacts::{ECHO, FETCHER, HELLO};

use crate::support::{Proto, TestHost, chunked, full};
use crate::upstream::{TestCa, Upstream};

fn pattern(n: usize) -> Bytes {
    (0..n)
        .map(|i| ((i % 65536) % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

fn checksum(data: &[u8]) -> String {
    let sum = data
        .iter()
        .fold(0u64, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
    format!("{} {sum}", data.len())
}

fn encode(url: &str) -> String {
    form_urlencoded::byte_serialize(url.as_bytes()).collect()
}

/// The fetcher at `/f/...` allowed to reach `origins`, with `limits`; hello everywhere else.
/// The CPU limit is raised: the test build of the host is unoptimised, and wasmtime's work
/// on the guest's behalf (lifting and lowering values) counts as the guest's CPU time.
async fn host_with(runtime: Runtime, origins: &[String], limits: Limits) -> Arc<TestHost> {
    let limits = limits.cpu_time(Duration::from_secs(5));
    let mut builder = TestHost::builder_with(runtime)
        .guest("fetcher", FETCHER, "*/f/*")
        .limits(limits);
    for origin in origins {
        builder = builder.allow(origin);
    }
    Arc::new(builder.guest("hello", HELLO, "*/*").start().await)
}

/// The fetcher allowed to reach the plaintext `upstream` (exactly), with `limits`.
async fn plain_host(upstream: &Upstream, limits: Limits) -> Arc<TestHost> {
    let runtime = Runtime::builder().build().unwrap();
    host_with(runtime, &[upstream.url("http", "")], limits).await
}

/// Hello, another deployment, answers while something else trips a limit.
async fn others_are_served(host: &TestHost) {
    let reply = host.get(Proto::H1, "/still-there").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().starts_with("hello from virga"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_fetches_stream_bodies_over_http1_and_http2() {
    let ca = TestCa::new();
    let plain = Upstream::plain().await;
    let tls = Upstream::tls(&ca).await;
    let runtime = Runtime::builder()
        .extra_root_certificates([ca.ca.clone()])
        .build()
        .unwrap();
    let origins = [plain.url("http", ""), tls.url("https", "")];
    let host = host_with(runtime, &origins, Limits::default()).await;

    for (upstream, scheme, version) in [(&plain, "http", "HTTP/1.1"), (&tls, "https", "HTTP/2.0")] {
        let url = encode(&upstream.url(scheme, "/version"));
        let reply = host
            .get(Proto::H1, &format!("/f/proxy?url={url}"))
            .await
            .unwrap();
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (200, version)
        );
        for size in [0, 1 << 20, 16 << 20] {
            let url = encode(&upstream.url(scheme, &format!("/bytes?n={size}")));
            let reply = host
                .get(Proto::H1, &format!("/f/proxy?url={url}"))
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{scheme} GET {size}: {}", reply.text());
            assert!(
                reply.body == pattern(size),
                "{scheme} GET {size}: body differs"
            );

            // The request body streams up (the upstream reads it all before answering).
            let url = encode(&upstream.url(scheme, "/sum"));
            let sent = pattern(size);
            let reply = host
                .send(
                    Proto::H1,
                    http::Method::POST,
                    &format!("/f/proxy?url={url}"),
                    chunked(sent.clone(), 256 << 10),
                )
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{scheme} POST {size}: {}", reply.text());
            assert_eq!(reply.text(), checksum(&sent), "{scheme} POST {size}");

            // Full duplex: the upstream echoes while it is still reading.
            let url = encode(&upstream.url(scheme, "/echo"));
            let reply = host
                .send(
                    Proto::H1,
                    http::Method::POST,
                    &format!("/f/proxy?url={url}"),
                    chunked(sent.clone(), 256 << 10),
                )
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{scheme} echo {size}: {}", reply.text());
            assert_eq!(reply.body.len(), size, "{scheme} echo {size}");
            assert!(reply.body == sent, "{scheme} echo {size}: body differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_subrequests_from_one_handler_are_in_flight_together() {
    let upstream = Upstream::plain().await;
    let host = plain_host(&upstream, Limits::default()).await;
    let url = encode(&upstream.url("http", "/slow?ms=400"));
    let reply = host
        .get(Proto::H1, &format!("/f/concurrent?url={url}&n=3"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "ok 3\n");
    assert_eq!(upstream.counters.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subrequests_past_the_in_flight_limit_wait_for_a_slot() {
    let upstream = Upstream::plain().await;
    let url = encode(&upstream.url("http", "/slow?ms=300"));
    // Default: 6 in flight at once; the other 4 of 10 wait for slots and are then sent.
    let host = plain_host(&upstream, Limits::default()).await;
    let started = Instant::now();
    let reply = host
        .get(Proto::H1, &format!("/f/concurrent?url={url}&n=10"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "ok 10\n");
    assert_eq!(upstream.counters.max_in_flight.load(Ordering::SeqCst), 6);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "two rounds of the slow upstream: {:?}",
        started.elapsed()
    );

    let upstream = Upstream::plain().await;
    let url = encode(&upstream.url("http", "/slow?ms=200"));
    let host = plain_host(&upstream, Limits::default().concurrent_subrequests(2)).await;
    let reply = host
        .get(Proto::H1, &format!("/f/concurrent?url={url}&n=5"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "ok 5\n");
    assert_eq!(upstream.counters.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_origins_loopback_names_and_private_addresses_are_refused_by_name() {
    let upstream = Upstream::plain().await;
    let port = upstream.addr.port();
    let origins = [
        "http://*".to_owned(),
        format!("http://*:{port}"),
        "https://api.example.com".to_owned(),
    ];
    let host = host_with(
        Runtime::builder().build().unwrap(),
        &origins,
        Limits::default(),
    )
    .await;
    for (url, expected) in [
        // Not on the list at all: refused before any lookup.
        (
            "https://evil.example.org/x".to_owned(),
            vec![
                "HTTP-request-denied",
                "https://evil.example.org:443",
                "'fetcher'",
            ],
        ),
        // On the list through a wildcard, but the name resolves to loopback.
        (
            format!("http://localhost:{port}/bytes?n=1"),
            vec![
                "destination-IP-prohibited",
                "localhost resolves to",
                "loopback",
            ],
        ),
        // Private and metadata addresses, written directly.
        (
            "http://10.1.2.3/".to_owned(),
            vec![
                "destination-IP-prohibited",
                "10.1.2.3",
                "private (RFC 1918)",
            ],
        ),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            vec!["169.254.169.254", "cloud metadata"],
        ),
        (
            format!("http://[::1]:{port}/"),
            vec!["destination-IP-prohibited", "::1", "loopback"],
        ),
        (
            format!("http://user:secret@127.0.0.1:{port}/"),
            vec!["HTTP-request-denied", "user information"],
        ),
    ] {
        let reply = host
            .get(Proto::H1, &format!("/f/proxy?url={}", encode(&url)))
            .await
            .unwrap();
        assert_eq!(reply.status, 502, "{url}: {}", reply.text());
        for part in expected {
            assert!(
                reply.text().contains(part),
                "{url}: {part:?} not in {}",
                reply.text()
            );
        }
    }
    assert_eq!(
        upstream.counters.requests.load(Ordering::SeqCst),
        0,
        "nothing got through"
    );
    // Allowed exactly, the same loopback address is reachable.
    let exact = host_with(
        Runtime::builder().build().unwrap(),
        &[format!("http://localhost:{port}")],
        Limits::default(),
    )
    .await;
    let url = encode(&format!("http://localhost:{port}/bytes?n=5"));
    let reply = exact
        .get(Proto::H1, &format!("/f/proxy?url={url}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_51st_subrequest_fails_naming_the_limit() {
    let upstream = Upstream::plain().await;
    let host = plain_host(&upstream, Limits::default()).await;
    let url = encode(&upstream.url("http", "/bytes?n=10"));
    let reply = host
        .get(Proto::H1, &format!("/f/count?url={url}&n=50"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "ok 50\n");
    let reply = host
        .get(Proto::H1, &format!("/f/count?url={url}&n=51"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.text(),
        "failed at 51: subrequests: this request may make at most 50 subrequests \
         (deployment 'fetcher')\n"
    );
    others_are_served(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeouts_trip_while_others_are_served() {
    let upstream = Upstream::plain().await;
    let limits = Limits::default()
        .first_byte_timeout(Duration::from_millis(300))
        .between_bytes_timeout(Duration::from_millis(300));
    let host = plain_host(&upstream, limits).await;

    let hang = encode(&upstream.url("http", "/hang"));
    let started = Instant::now();
    let path = format!("/f/proxy?url={hang}");
    let (reply, ()) = tokio::join!(host.get(Proto::H1, &path), others_are_served(&host));
    let reply = reply.unwrap();
    assert_eq!(reply.status, 502);
    assert!(
        reply
            .text()
            .contains("first-byte-timeout: no response from http://127.0.0.1:"),
        "{}",
        reply.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Head and 1 KiB, then silence: the guest's read fails naming the limit.
    let stall = encode(&upstream.url("http", "/stall"));
    let path = format!("/f/count?url={stall}&n=1");
    let (reply, ()) = tokio::join!(host.get(Proto::H1, &path), others_are_served(&host));
    let reply = reply.unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("between-bytes-timeout"),
        "{}",
        reply.text()
    );
    assert!(
        reply.text().contains("stalled for 300 ms"),
        "{}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_body_trips_the_outbound_limit() {
    let upstream = Upstream::plain().await;
    let limits = Limits::default().outbound_body(1 << 20);
    let host = plain_host(&upstream, limits).await;
    // Declared too large: refused at the head.
    let url = encode(&upstream.url("http", "/bytes?n=2097152"));
    let reply = host
        .get(Proto::H1, &format!("/f/proxy?url={url}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert!(
        reply
            .text()
            .contains("outbound-body: the response body from http://127.0.0.1:")
            && reply.text().contains("is larger than 1 MiB"),
        "{}",
        reply.text()
    );
    // A HEAD answer declares the length but has no body: not refused.
    let reply = host
        .send(
            Proto::H1,
            http::Method::HEAD,
            &format!("/f/proxy?url={url}"),
            full(Bytes::new()),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    // Undeclared: the read fails once past the limit.
    let url = encode(&upstream.url("http", "/stream?n=2097152"));
    let reply = host
        .get(Proto::H1, &format!("/f/count?url={url}&n=1"))
        .await
        .unwrap();
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("outbound-body"), "{}", reply.text());
    // Exactly the limit passes.
    let url = encode(&upstream.url("http", "/stream?n=1048576"));
    let reply = host
        .get(Proto::H1, &format!("/f/count?url={url}&n=1"))
        .await
        .unwrap();
    assert_eq!(reply.text(), "ok 1\n");
    // A request body over the limit never reaches the upstream whole.
    let echo = encode(&upstream.url("http", "/echo"));
    let reply = host
        .send(
            Proto::H1,
            http::Method::POST,
            &format!("/f/proxy?url={echo}"),
            chunked(pattern(2 << 20), 64 << 10),
        )
        .await;
    if let Ok(reply) = reply {
        assert!(
            reply.status != 200 || reply.body.len() <= 1 << 20,
            "{} bytes echoed",
            reply.body.len()
        );
    }
    others_are_served(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_body_limits_name_themselves() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/still-there")
        .guest("echo", ECHO, "*/*")
        .limits(
            Limits::default()
                .request_body(1 << 20)
                .response_body(1 << 20),
        )
        .start()
        .await;
    // Declared too large: 413 before the guest runs.
    let reply = host
        .send(
            Proto::H1,
            http::Method::POST,
            "/echo",
            full(pattern(2 << 20)),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.text(),
        "deployment 'echo' failed: the handler exceeded its request-body limit of 1 MiB\n"
    );
    // Undeclared (chunked): the guest's read fails naming the limit.
    let reply = host
        .send(
            Proto::H1,
            http::Method::POST,
            "/sum",
            chunked(pattern((1 << 20) + 4096), 64 << 10),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("request-body"), "{}", reply.text());
    // Within the limit, fine.
    let reply = host
        .send(
            Proto::H1,
            http::Method::POST,
            "/echo",
            full(pattern(1 << 20)),
        )
        .await
        .unwrap();
    assert_eq!(reply.body.len(), 1 << 20);
    // A response body past the limit is cut: the client sees a broken body, not a short one.
    let cut = host.get(Proto::H1, "/generate?bytes=2097152").await;
    let error = format!("{:#}", cut.expect_err("a cut response is not complete"));
    assert!(error.contains("reading the response body"), "{error}");
    let reply = host
        .get(Proto::H1, "/generate?bytes=1048576")
        .await
        .unwrap();
    assert_eq!(reply.body.len(), 1 << 20);
    others_are_served(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_concurrent_requests_wait_then_get_503_while_others_are_served() {
    let upstream = Upstream::plain().await;
    let limits = Limits::default()
        .concurrency(2)
        .queue_time(Duration::from_millis(200));
    let host = plain_host(&upstream, limits).await;
    let url = encode(&upstream.url("http", "/slow?ms=1500"));
    let mut calls = Vec::new();
    for _ in 0..3 {
        let host = host.clone();
        let path = format!("/f/proxy?url={url}");
        calls.push(tokio::spawn(async move {
            host.get(Proto::H1, &path).await.unwrap()
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    others_are_served(&host).await;
    let mut statuses = Vec::new();
    for call in calls {
        let reply = call.await.unwrap();
        if reply.status == 503 {
            assert_eq!(reply.headers["retry-after"], "1");
            assert!(
                reply
                    .text()
                    .contains("concurrency limit of 2 requests at once"),
                "{}",
                reply.text()
            );
        }
        statuses.push(reply.status.as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503]);
    // The slots come back.
    let url = encode(&upstream.url("http", "/bytes?n=3"));
    let reply = host
        .get(Proto::H1, &format!("/f/proxy?url={url}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_continued_on_subrequests() {
    let upstream = Upstream::plain().await;
    let host = plain_host(&upstream, Limits::default()).await;
    let url = encode(&upstream.url("http", "/headers"));
    let path = format!("/f/proxy?url={url}");
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = http::Request::get(format!("http://localhost:{}{path}", host.http.port()))
        .header("traceparent", incoming)
        .header("tracestate", "congo=t61rcWkgMzE")
        .body(full(Bytes::new()))
        .unwrap();
    let reply = host.request(Proto::H1, request).await.unwrap();
    let seen = reply.text();
    let line = seen
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("no traceparent upstream: {seen}"));
    assert!(
        line.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{line}"
    );
    assert!(
        line.ends_with("-01") && !line.contains("00f067aa0ba902b7"),
        "{line}"
    );
    assert!(seen.contains("tracestate: congo=t61rcWkgMzE"), "{seen}");

    // Without one, a new trace starts.
    let reply = host.get(Proto::H1, &path).await.unwrap();
    let line = reply
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: ").map(str::to_owned))
        .expect("a traceparent");
    assert_eq!(line.len(), 55, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_accepts_trips_the_connect_timeout() {
    // A listener that never accepts, its accept queue filled: the kernel drops further SYNs,
    // so a connection attempt hangs — on loopback, without any outside address.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut filled = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => filled.push(stream),
            _ => break,
        }
    }
    let limits = Limits::default().connect_timeout(Duration::from_millis(300));
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let host = host_with(
        Runtime::builder().build().unwrap(),
        std::slice::from_ref(&origin),
        limits,
    )
    .await;
    let started = Instant::now();
    let path = format!("/f/proxy?url={}", encode(&format!("{origin}/x")));
    let (reply, ()) = tokio::join!(host.get(Proto::H1, &path), others_are_served(&host));
    let reply = reply.unwrap();
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(
        reply.text(),
        format!(
            "connect-timeout: no connection to 127.0.0.1:{} within 300 ms\n",
            addr.port()
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop((listener, filled));
}
