//! Protocol abuse on the public listeners: oversized and too many headers (431), slowloris
//! (cut at the header timeout), connection floods past the cap, HTTP/2 rapid reset
//! (CVE-2023-44487) and CONTINUATION floods, request bodies slower than the minimum rate (408).
//! Each time the host survives and other clients are served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use virga_test_artifacts::HELLO;

use crate::support::{Proto, TestHost};

/// Sends `head` on a new connection and returns what came back (until close or 5 s).
async fn raw(host: &TestHost, head: &[u8]) -> String {
    let mut stream = TcpStream::connect(host.http).await.unwrap();
    let _ = stream.write_all(head).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn still_served(host: &TestHost) {
    let reply = host.get(Proto::H1, "/x").await.unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    let big = format!(
        "GET /x HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    assert!(raw(&host, big.as_bytes()).await.starts_with("HTTP/1.1 431"));
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nhost: a\r\n\r\n",
        "p".repeat(100 * 1024)
    );
    assert!(
        raw(&host, long_line.as_bytes())
            .await
            .starts_with("HTTP/1.1 431")
    );
    let mut many = String::from("GET /x HTTP/1.1\r\nhost: a\r\n");
    for i in 0..150 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(
        raw(&host, many.as_bytes())
            .await
            .starts_with("HTTP/1.1 431")
    );
    still_served(&host).await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_at_the_header_timeout() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .header_timeout(Duration::from_millis(500))
        .start()
        .await;
    let mut stream = TcpStream::connect(host.http).await.unwrap();
    stream
        .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    // One header byte every 100 ms, for up to 5 s.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            // The server answered (408) or closed (0): either way the connection ends.
            let _ = n;
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "the trickling connection was never cut");
    println!("slowloris connection cut after {took:?} (header timeout 500 ms)");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
    still_served(&host).await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_the_rest_served() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .max_connections(3)
        .start()
        .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(host.http).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The fourth is accepted by the kernel and closed by the server at once.
    let got = raw(&host, b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(got, "", "a connection past the cap gets nothing");
    drop(idle);
    // Once the idle ones are gone, clients are served again.
    let mut served = false;
    for _ in 0..50 {
        if let Ok(reply) = host.get(Proto::H1, "/x").await
            && reply.status == 200
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served);
}

#[tokio::test]
async fn http2_rapid_reset_does_not_hurt_other_clients() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    let tcp = TcpStream::connect(host.http).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut sent = 0;
    for _ in 0..5000 {
        let request = http::Request::get("http://a/x").body(()).unwrap();
        let Ok((_, mut stream)) = client.send_request(request, true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
        if sent % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Other clients are served during and after the attack.
    still_served(&host).await;
    let outcome = tokio::time::timeout(Duration::from_secs(5), driver).await;
    println!("rapid reset: {sent} streams opened and reset; connection: {outcome:?}");
    assert!(
        matches!(&outcome, Ok(Ok(Err(e))) if e.is_go_away()),
        "the abusive connection was not sent away: {outcome:?}"
    );
    still_served(&host).await;
}

#[tokio::test]
async fn a_continuation_flood_is_cut_off() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    let mut stream = TcpStream::connect(host.http).await.unwrap();
    // Client preface and an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let frame = |kind: u8, flags: u8, payload: &[u8]| {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block: each
    // a literal header field of 16 000 bytes.
    let mut field = vec![0x00, 0x05];
    field.extend_from_slice(b"x-big");
    field.extend_from_slice(&[0x7f, 0x81, 0xfc, 0x00]); // length 16000 (7-bit prefix 127 + 15873)
    field.extend(std::iter::repeat_n(b'a', 16_000));
    let mut written = 0usize;
    let mut cut = false;
    if stream.write_all(&frame(0x1, 0, &field)).await.is_err() {
        cut = true;
    }
    while !cut && written < 64 << 20 {
        match stream.write_all(&frame(0x9, 0, &field)).await {
            Ok(()) => written += field.len(),
            Err(_) => cut = true,
        }
    }
    println!(
        "CONTINUATION flood: the server stopped reading after {} KiB",
        written >> 10
    );
    assert!(cut, "64 MiB of CONTINUATION frames were all taken");
    still_served(&host).await;
}

#[tokio::test]
async fn a_body_trickled_slower_than_the_wall_limit_allows_is_cut() {
    let host = TestHost::builder()
        .guest("echo", virga_test_artifacts::ECHO, "*/*")
        .limits(virga::Limits::default().wall_time(Duration::from_secs(1)))
        .start()
        .await;
    let mut stream = TcpStream::connect(host.http).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut closed = false;
    // A byte every 100 ms: the whole body would take a day. The echo guest answers at once and
    // streams; at its wall-time limit the response is cut and the connection closed.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stream.write_all(b"x").await;
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    println!("slow body: connection closed after {took:?}");
    assert!(closed, "the trickling request was never cut: {answer}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
    assert!(
        !answer.ends_with("\r\n0\r\n\r\n"),
        "the cut response must not look complete"
    );
    still_served_by(&host, "/echo").await;
}

/// Sends a `content-length` POST to `/sum` in `pieces` of `size` bytes `every` apart; returns
/// the answer (read until the connection closes, `until` shows up, or 10 s pass) and when it
/// came.
async fn post_in_pieces(
    host: &TestHost,
    pieces: usize,
    size: usize,
    every: Duration,
    until: &str,
) -> (String, Duration) {
    let mut stream = TcpStream::connect(host.http).await.unwrap();
    let head = format!(
        "POST /sum HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
        pieces * size
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        for _ in 0..pieces {
            tokio::time::sleep(every).await;
            if writer.write_all(&vec![b'x'; size]).await.is_err() {
                return;
            }
        }
        // Keep the write half open: a closed one would end the body early.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = started + Duration::from_secs(10);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline.into(), reader.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&answer).contains(until) {
            break;
        }
    }
    sender.abort();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_gets_408() {
    let host = TestHost::builder()
        .guest("echo", virga_test_artifacts::ECHO, "*/*")
        .min_body_rate(1000, Duration::from_millis(500))
        .start()
        .await;
    // 10 bytes every 200 ms (50 bytes/s): cut once the host has waited 0.5 s plus 1 s per
    // 1000 bytes received.
    let (answer, took) =
        post_in_pieces(&host, 100, 10, Duration::from_millis(200), "bytes/s").await;
    println!("slow POST answered after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("the request body arrived slower than the minimum of 1000 bytes/s"),
        "{answer}"
    );
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
    // 1000 bytes every 200 ms (5000 bytes/s), in pieces: served whole.
    let (answer, _) = post_in_pieces(&host, 10, 1000, Duration::from_millis(200), "10000 ").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("10000 "), "{answer}");
    still_served_by(&host, "/echo").await;
}

async fn still_served_by(host: &TestHost, path: &str) {
    let reply = host.get(Proto::H1, path).await.unwrap();
    assert!(reply.status.is_success(), "{}", reply.status);
}

#[tokio::test]
async fn hostile_guests_end_within_their_limits_while_hello_is_served() {
    // The wall limit leaves room for 64 MiB of stdout through a debug build on a busy
    // machine (about 1 s); so does the CPU limit, since CPU time is the time a guest is
    // polled, which a loaded 2-core machine (the test binaries run side by side) stretches.
    let limits = virga::Limits::default()
        .wall_time(Duration::from_secs(3))
        .cpu_time(Duration::from_secs(1))
        .response_body(8 << 20);
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/hello")
        .guest("hostile", virga_test_artifacts::HOSTILE, "*/*")
        .limits(limits)
        .start()
        .await;
    // The stack overflow traps (500), megabytes of stdout are discarded (200) unless writing
    // them spends the CPU limit first (503: the host's work for each write is the guest's
    // CPU time, and a debug build is slow at it), a pollable that never fires meets the wall
    // limit (504), 10 000 response fields are refused (500), an
    // endless body is cut (the client sees a broken body, never a complete one).
    for (path, expected) in [
        ("/recurse", Some(&[500][..])),
        ("/stdout", Some(&[200, 503][..])),
        ("/wait", Some(&[504])),
        ("/headers", Some(&[500])),
        ("/stream", None),
    ] {
        let started = Instant::now();
        let reply = tokio::time::timeout(Duration::from_secs(10), host.get(Proto::H1, path))
            .await
            .expect("every hostile request ends");
        let status = reply.as_ref().map(|r| r.status.as_u16()).ok();
        println!("hostile {path}: {status:?} after {:?}", started.elapsed());
        match expected {
            Some(codes) => assert!(
                status.is_some_and(|s| codes.contains(&s)),
                "{path}: {status:?}, not one of {codes:?}"
            ),
            None => assert!(reply.is_err(), "{path}: the endless body must be cut"),
        }
        let hello = host.get(Proto::H1, "/hello").await.unwrap();
        assert_eq!(hello.status, 200, "hello after {path}");
    }
}
