//! The same behaviour over HTTP/1.1, h2c (prior knowledge) and HTTP/2 over TLS: bodies of
//! 0 B, 1 KiB and 8 MiB streamed both ways.

use bytes::Bytes;
use http::Method;
use virga_test_artifacts::{ECHO, HELLO, RAW_BINDGEN};

use crate::support::{ALL_PROTOS, Proto, TestHost, chunked, full, pattern};

#[tokio::test]
async fn hello_answers_method_and_path_on_every_protocol() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    for proto in ALL_PROTOS {
        let reply = host.get(proto, "/x").await.unwrap();
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(reply.text(), "hello from virga\nGET /x\n", "{proto:?}");
        let expected = match proto {
            Proto::H1 => http::Version::HTTP_11,
            _ => http::Version::HTTP_2,
        };
        assert_eq!(reply.version, expected, "{proto:?}");
    }
}

#[tokio::test]
async fn bodies_stream_both_ways_on_every_protocol() {
    let _heavy = crate::support::MEMORY_HEAVY.lock().await;
    let host = TestHost::builder().guest("echo", ECHO, "*/*").start().await;
    for proto in ALL_PROTOS {
        for len in [0, 1024, 8 << 20] {
            let data = pattern(len);
            // Request body in 16 KiB frames, echoed back by splicing in the host.
            let reply = host
                .send(
                    proto,
                    Method::POST,
                    "/echo",
                    chunked(data.clone(), 16 << 10),
                )
                .await
                .unwrap_or_else(|e| panic!("{proto:?} {len}: {e:#}"));
            assert_eq!(reply.status, 200, "{proto:?} {len}");
            assert_eq!(reply.headers["x-echo-method"], "POST");
            assert_eq!(reply.body.len(), len, "{proto:?} echo length");
            assert!(reply.body == data, "{proto:?} echo of {len} bytes differs");

            // Guest-generated body written in pieces.
            let reply = host
                .get(proto, &format!("/generate?bytes={len}"))
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body.len(), len, "{proto:?} generated length");
            assert!(
                reply
                    .body
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == ((i % 65536) % 251) as u8),
                "{proto:?} generated content"
            );

            // Guest reads the request body chunk by chunk.
            let reply = host
                .send(proto, Method::PUT, "/sum", full(data.clone()))
                .await
                .unwrap();
            let sum = data
                .iter()
                .fold(0u64, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
            assert_eq!(reply.text(), format!("{len} {sum}\n"), "{proto:?}");
        }
    }
}

#[tokio::test]
async fn a_guest_built_with_wit_bindgen_alone_runs() {
    let host = TestHost::builder()
        .guest("raw", RAW_BINDGEN, "*/*")
        .start()
        .await;
    let reply = host.get(Proto::H1, "/raw?q=1").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        "raw wit-bindgen handler\nMethod::Get /raw?q=1\n"
    );
}

#[tokio::test]
async fn unmatched_routes_get_404_naming_host_and_path() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "example.com/*")
        .start()
        .await;
    let reply = host.get(Proto::H1, "/nothing").await.unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), "no deployment serves localhost/nothing\n");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_connections() {
    use http_body_util::BodyExt;

    let mut host = TestHost::builder().guest("echo", ECHO, "*/*").start().await;
    let http_addr = host.http;
    // A request whose body arrives slowly: it is in flight when shutdown begins.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(4);
    let mut rx = rx;
    let body =
        http_body_util::StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let in_flight = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(http_addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let request = http::Request::post("/echo")
            .header("host", "localhost")
            .body(body)
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    });
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"first "))))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let stop = host.shutdown();
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut stop => panic!("shutdown returned with a request in flight"),
        _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {}
    }
    let refused = tokio::net::TcpStream::connect(http_addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted during shutdown"
    );

    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    drop(tx);
    let echoed = in_flight.await.unwrap();
    assert_eq!(&echoed[..], b"first second");
    tokio::time::timeout(std::time::Duration::from_secs(5), stop)
        .await
        .expect("shutdown completes once the request is done");
}
