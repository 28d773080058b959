//! HTTP/3 specifics: address validation, and bad input on the UDP port — garbage and
//! truncated datagrams, unknown versions, forged tokens, streams that never finish their
//! headers, oversized field sections, more streams than allowed, malformed requests
//! (uppercase field names are covered by the unit tests: quiche's encoder lowercases them),
//! GOAWAY at shutdown. Whatever one client does, the host answers or drops it cleanly and
//! keeps serving everyone else.

use std::time::Duration;

use bytes::Bytes;
use quiche::h3;
use tokio::net::UdpSocket;
use virga::server::Http3;
use virga_test_artifacts::{ECHO, HELLO};

use crate::h3client::{H3Client, client_config, request_fields};
use crate::support::{Proto, TestHost};

async fn hello_host() -> TestHost {
    TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .start()
        .await
}

/// The host still serves a fresh HTTP/3 client.
async fn still_serves(host: &TestHost) {
    let reply = tokio::time::timeout(Duration::from_secs(10), host.get(Proto::H3, "/ok"))
        .await
        .expect("answers in time")
        .expect("answers");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from virga\nGET /ok\n");
}

/// The next datagram the host sends `socket`, if one comes within `wait`.
async fn answer(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0; 65_536];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((len, _))) => Some(buf[..len].to_vec()),
        _ => None,
    }
}

/// A client's first Initial datagram, as quiche's client builds it.
fn first_initial(host: &TestHost, local: std::net::SocketAddr) -> Vec<u8> {
    initial_to(&host.cert_pem, host.h3, local)
}

fn initial_to(cert_pem: &[u8], peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Vec<u8> {
    let mut config = client_config(cert_pem).unwrap();
    let scid = quiche::ConnectionId::from_ref(&[7; 16]);
    let mut conn = quiche::connect(Some("localhost"), &scid, local, peer, &mut config).unwrap();
    let mut out = vec![0; 1350];
    let (len, _) = conn.send(&mut out).unwrap();
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_are_sent_a_retry_first() {
    let host = hello_host().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let initial = first_initial(&host, socket.local_addr().unwrap());
    socket.send_to(&initial, host.h3).await.unwrap();
    let retry = answer(&socket, Duration::from_secs(5))
        .await
        .expect("an answer");
    // RFC 9000 §17.2.5: a long header (0x80) of type Retry (0x30).
    assert_eq!(retry[0] & 0xb0, 0xb0, "a Retry packet: {:#x}", retry[0]);
    assert!(retry.len() < initial.len(), "no amplification");
    still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_address_validation_connections_start_at_once() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .http3(Http3::default().address_validation(false))
        .start()
        .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let initial = first_initial(&host, socket.local_addr().unwrap());
    socket.send_to(&initial, host.h3).await.unwrap();
    let first = answer(&socket, Duration::from_secs(5))
        .await
        .expect("an answer");
    // An Initial (type 0x00) carrying the server's handshake, not a Retry.
    assert_eq!(first[0] & 0xb0, 0x80, "an Initial packet: {:#x}", first[0]);
    still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_datagrams_are_dropped() {
    let host = hello_host().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let initial = first_initial(&host, socket.local_addr().unwrap());
    let mut datagrams: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 3],
        (0..1200).map(|i| (i * 31 % 256) as u8).collect(),
        // A short-header packet for a connection that does not exist.
        [&[0x40][..], &[9; 20], &[0; 100]].concat(),
    ];
    // The real Initial cut short at several points, and with its payload corrupted.
    for cut in [1, 5, 6, 30, 60, 600, initial.len() - 1] {
        datagrams.push(initial[..cut].to_vec());
    }
    let mut corrupted = initial.clone();
    for b in corrupted.iter_mut().skip(60).step_by(7) {
        *b ^= 0x5a;
    }
    datagrams.push(corrupted);
    for datagram in &datagrams {
        socket.send_to(datagram, host.h3).await.unwrap();
    }
    // None of them is worth an answer except the corrupted Initial, whose header still
    // parses: it gets a Retry (stateless), which costs the host nothing.
    let mut answers = 0;
    while let Some(packet) = answer(&socket, Duration::from_millis(500)).await {
        assert_eq!(packet[0] & 0xb0, 0xb0, "only Retry packets come back");
        answers += 1;
    }
    assert!(answers <= 1, "{answers} answers to garbage");
    still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_version_gets_version_negotiation() {
    let host = hello_host().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // RFC 9000 §17.2: long header, version 0x1a2a3a4a (reserved, RFC 9000 §15), DCID, SCID.
    let mut packet = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8];
    packet.extend_from_slice(&[1; 8]);
    packet.push(8);
    packet.extend_from_slice(&[2; 8]);
    packet.resize(1200, 0);
    socket.send_to(&packet, host.h3).await.unwrap();
    let negotiation = answer(&socket, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(
        &negotiation[1..5],
        &[0, 0, 0, 0],
        "version 0: Version Negotiation"
    );
    let versions: Vec<&[u8]> = negotiation[1 + 4 + 1 + 8 + 1 + 8..].chunks(4).collect();
    assert!(versions.contains(&&[0, 0, 0, 1][..]), "offers QUIC v1");
    still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_retry_token_is_ignored() {
    let host = hello_host().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut config = client_config(&host.cert_pem).unwrap();
    let scid = quiche::ConnectionId::from_ref(&[7; 16]);
    let local = socket.local_addr().unwrap();
    let mut conn = quiche::connect(Some("localhost"), &scid, local, host.h3, &mut config).unwrap();
    // Feed the client a Retry the host never sent, with a made-up token: its next
    // Initial carries that token, which the host must refuse.
    let mut retry = vec![0; 1350];
    let header = {
        let mut out = vec![0; 1350];
        let (len, _) = conn.send(&mut out).unwrap();
        out.truncate(len);
        out
    };
    let dcid_len = usize::from(header[5]);
    let dcid = header[6..6 + dcid_len].to_vec();
    let len = quiche::retry(
        &scid,
        &quiche::ConnectionId::from_vec(dcid),
        &quiche::ConnectionId::from_ref(&[3; 20]),
        &[0xaa; 57],
        quiche::PROTOCOL_VERSION,
        &mut retry,
    )
    .unwrap();
    let info = quiche::RecvInfo {
        from: host.h3,
        to: local,
    };
    conn.recv(&mut retry[..len], info).unwrap();
    let mut out = vec![0; 1350];
    let (len, _) = conn.send(&mut out).unwrap();
    socket.send_to(&out[..len], host.h3).await.unwrap();
    assert!(
        answer(&socket, Duration::from_millis(700)).await.is_none(),
        "an Initial with a forged token is dropped"
    );
    still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_finish_their_headers_do_not_block_others() {
    let host = hello_host().await;
    let mut idle = H3Client::connect(host.h3, &host.cert_pem).await.unwrap();
    // Open every stream the host allows, each with one byte of a HEADERS frame.
    let mut opened = 0;
    for n in 0..100u64 {
        match idle.conn.stream_send(n * 4, &[0x01], false) {
            Ok(_) => opened += 1,
            Err(e) => panic!("stream {n}: {e}"),
        }
    }
    assert_eq!(opened, 100);
    idle.flush().await.unwrap();
    still_serves(&host).await;
    // The stalled connection itself is still alive: it is closed only by its idle timeout.
    assert!(!idle.conn.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_field_section_closes_that_connection_only() {
    let host = hello_host().await;
    let mut client = H3Client::connect(host.h3, &host.cert_pem).await.unwrap();
    // A HEADERS frame (type 0x01) declaring 100 000 bytes (a 4-byte varint), raw on a
    // request stream: quiche's client would not send it, a hostile one does. The host's
    // limit is 64 KiB (RFC 9114 §4.2.2, SETTINGS_MAX_FIELD_SECTION_SIZE).
    let frame = [&[0x01, 0x80, 0x01, 0x86, 0xa0][..], &[0x41; 1000]].concat();
    client.conn.stream_send(0, &frame, false).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.conn.peer_error().is_none() {
        client.flush().await.unwrap();
        client
            .wait(deadline)
            .await
            .expect("the host closes the connection");
    }
    let peer_error = client.conn.peer_error().unwrap();
    assert_eq!(peer_error.error_code, 0x107, "H3_EXCESSIVE_LOAD");
    still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_requests_than_streams_allowed_complete_as_streams_free_up() {
    let host = hello_host().await;
    let mut client = H3Client::connect(host.h3, &host.cert_pem).await.unwrap();
    let requests = (0..250)
        .map(|i| {
            http::Request::get(host.uri(Proto::H3, &format!("/s{i}")))
                .body(Bytes::new())
                .unwrap()
        })
        .collect();
    let replies = client.send_all(requests).await.unwrap();
    for (i, reply) in replies.into_iter().enumerate() {
        let reply = reply.unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!(reply.text(), format!("hello from virga\nGET /s{i}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_naming_the_problem() {
    let host = hello_host().await;
    let mut client = H3Client::connect(host.h3, &host.cert_pem).await.unwrap();
    let field = |n: &str, v: &str| h3::Header::new(n.as_bytes(), v.as_bytes());
    let authority = format!("localhost:{}", host.h3.port());
    let cases: Vec<(Vec<h3::Header>, &str)> = vec![
        (
            vec![
                field(":method", "GET"),
                field(":scheme", "https"),
                field(":authority", &authority),
            ],
            "no :path",
        ),
        (
            vec![
                field(":method", "GET"),
                field(":scheme", "https"),
                field(":authority", &authority),
                field(":path", "/"),
                field("transfer-encoding", "chunked"),
            ],
            "connection-specific",
        ),
        (
            vec![
                field(":method", "POST"),
                field(":scheme", "https"),
                field(":authority", &authority),
                field(":path", "/"),
                field("content-length", "ten"),
            ],
            "bad content-length",
        ),
    ];
    let (requests, expected): (Vec<_>, Vec<_>) = cases
        .into_iter()
        .map(|(fields, expected)| ((fields, Bytes::new()), expected))
        .unzip();
    let replies = client.send_raw(requests).await.unwrap();
    for (reply, expected) in replies.into_iter().zip(expected) {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 400, "{expected}");
        assert!(
            reply.text().contains(expected),
            "{expected}: {}",
            reply.text()
        );
    }
    // A body longer than its content-length is refused too (RFC 9114 §4.1.2).
    let host = TestHost::builder().guest("echo", ECHO, "*/*").start().await;
    let mut client = H3Client::connect(host.h3, &host.cert_pem).await.unwrap();
    let fields = request_fields(
        &http::Request::post(host.uri(Proto::H3, "/echo"))
            .header("content-length", "3")
            .body(())
            .unwrap()
            .into_parts()
            .0,
        0,
        host.h3,
    );
    let replies = client
        .send_raw(vec![(fields, Bytes::from_static(b"too long"))])
        .await
        .unwrap();
    let reply = replies.into_iter().next().unwrap();
    match reply {
        Ok(reply) => assert_ne!(reply.status, 200, "{}", reply.text()),
        Err(e) => assert!(e.to_string().contains("reset"), "{e}"),
    }
    let reply = host.get(Proto::H3, "/echo").await.unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_goaway_and_lets_in_flight_requests_finish() {
    let mut host = TestHost::builder().guest("echo", ECHO, "*/*").start().await;
    let (h3_addr, cert_pem) = (host.h3, host.cert_pem.clone());
    let mut client = H3Client::connect(h3_addr, &cert_pem).await.unwrap();
    let fields = request_fields(
        &http::Request::post(host.uri(Proto::H3, "/echo"))
            .body(())
            .unwrap()
            .into_parts()
            .0,
        0,
        h3_addr,
    );
    // Start a request and send half its body.
    let h3 = client.h3.as_mut().unwrap();
    let stream = h3.send_request(&mut client.conn, &fields, false).unwrap();
    h3.send_body(&mut client.conn, stream, b"first ", false)
        .unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stop = host.shutdown();
    tokio::pin!(stop);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The host announces GOAWAY while the request is in flight.
    let mut goaway = false;
    let mut body = Vec::new();
    let mut finished = false;
    while !goaway {
        tokio::select! {
            _ = &mut stop => panic!("shutdown returned with a request in flight"),
            waited = client.wait(deadline) => waited.unwrap(),
        }
        let events = take_events(&mut client, stream, &mut body);
        goaway |= events.0;
        finished |= events.1;
        client.flush().await.unwrap();
    }
    // A new connection is not accepted any more.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let initial = initial_to(&cert_pem, h3_addr, socket.local_addr().unwrap());
    socket.send_to(&initial, h3_addr).await.unwrap();
    assert!(answer(&socket, Duration::from_millis(300)).await.is_none());

    // The in-flight request completes.
    let h3 = client.h3.as_mut().unwrap();
    h3.send_body(&mut client.conn, stream, b"second", true)
        .unwrap();
    let mut stopped = false;
    while !finished {
        client.flush().await.unwrap();
        tokio::select! {
            _ = &mut stop, if !stopped => stopped = true,
            waited = client.wait(deadline) => waited.unwrap(),
        }
        finished |= take_events(&mut client, stream, &mut body).1;
    }
    assert_eq!(body, b"first second");
    if !stopped {
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("shutdown completes once the request is done");
    }
}

/// Takes the client's pending HTTP/3 events: whether GOAWAY came and whether `stream`
/// finished, appending its body data to `body`.
fn take_events(client: &mut H3Client, stream: u64, body: &mut Vec<u8>) -> (bool, bool) {
    let (mut goaway, mut finished) = (false, false);
    let h3 = client.h3.as_mut().unwrap();
    loop {
        match h3.poll(&mut client.conn) {
            Ok((id, h3::Event::Data)) if id == stream => {
                let mut buf = [0; 1024];
                while let Ok(len) = h3.recv_body(&mut client.conn, id, &mut buf) {
                    body.extend_from_slice(&buf[..len]);
                }
            }
            Ok((id, h3::Event::Finished)) if id == stream => finished = true,
            Ok((_, h3::Event::GoAway)) => goaway = true,
            Ok(_) => {}
            Err(_) => return (goaway, finished),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancelling_requests_as_fast_as_it_opens_them_is_closed() {
    let host = TestHost::builder()
        .guest("loop", virga_test_artifacts::LOOPING, "*/loop")
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    let mut client = H3Client::connect(host.h3, &host.cert_pem).await.unwrap();
    let fields = request_fields(
        &http::Request::get(host.uri(Proto::H3, "/loop"))
            .body(())
            .unwrap()
            .into_parts()
            .0,
        0,
        host.h3,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut cancelled = 0;
    // Rapid reset: requests to a busy guest, each cancelled (RESET_STREAM + STOP_SENDING)
    // once the host has started it, batch after batch.
    while client.conn.peer_error().is_none() && cancelled < 1000 {
        let h3 = client.h3.as_mut().unwrap();
        let mut batch = Vec::new();
        while batch.len() < 40 {
            match h3.send_request(&mut client.conn, &fields, false) {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for id in &batch {
            let _ = client
                .conn
                .stream_shutdown(*id, quiche::Shutdown::Write, 0x10c);
            let _ = client
                .conn
                .stream_shutdown(*id, quiche::Shutdown::Read, 0x10c);
        }
        cancelled += batch.len();
        client.flush().await.unwrap();
        if client.wait(deadline).await.is_err() {
            break;
        }
        let h3 = client.h3.as_mut().unwrap();
        while h3.poll(&mut client.conn).is_ok() {}
    }
    while client.conn.peer_error().is_none() && client.wait(deadline).await.is_ok() {
        client.flush().await.unwrap();
    }
    let error = client
        .conn
        .peer_error()
        .expect("the host closes the connection");
    assert_eq!(
        error.error_code, 0x107,
        "H3_EXCESSIVE_LOAD after {cancelled} cancelled requests"
    );
    assert!(
        cancelled <= 400,
        "closed only after {cancelled} cancelled requests"
    );
    still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_at_the_idle_timeout() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .http3(Http3::default().idle_timeout(Duration::from_millis(300)))
        .start()
        .await;
    let mut client = H3Client::connect(host.h3, &host.cert_pem).await.unwrap();
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(10);
    // The client asked for 30 s; the host's 300 ms is the smaller, so it is the one in force.
    while !client.conn.is_closed() {
        client.flush().await.unwrap();
        client
            .wait(deadline)
            .await
            .expect("closed before the deadline");
    }
    assert!(client.conn.is_timed_out(), "closed by the idle timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    still_serves(&host).await;
}
