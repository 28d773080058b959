//! A minimal OTLP/gRPC endpoint for `bench/telemetry.sh`: it answers every export with
//! success and counts requests and bytes, without decoding them, so that on a shared
//! machine it takes as little CPU as possible from the host being measured (a real
//! collector runs elsewhere). The integration tests use a decoding receiver instead.
//!
//!   cargo run --release -p virga --example otlp_sink -- 127.0.0.1:4317
//!
//! Prints `exports N bytes N` (by path) once a second.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Counts = Arc<Mutex<BTreeMap<String, (u64, u64)>>>;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    let counts = Counts::default();
    let printed = counts.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let line: Vec<String> = printed
                .lock()
                .unwrap()
                .iter()
                .map(|(path, (n, bytes))| format!("{path}: exports {n} bytes {bytes}"))
                .collect();
            println!("{}", line.join("; "));
        }
    });
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let counts = counts.clone();
                async move { Ok::<_, Infallible>(answer(request, counts).await) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Reads the export and answers an empty gRPC message with `grpc-status: 0`.
async fn answer(
    request: http::Request<hyper::body::Incoming>,
    counts: Counts,
) -> http::Response<BoxBody<Bytes, Infallible>> {
    let path = request.uri().path().to_owned();
    let mut body = request.into_body();
    let mut bytes = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
        }
    }
    {
        let mut counts = counts.lock().unwrap();
        let entry = counts.entry(path).or_default();
        entry.0 += 1;
        entry.1 += bytes;
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let empty_message = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
        .map_err(|never| match never {})
        .with_trailers(async move { Some(Ok(trailers)) });
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(BoxBody::new(empty_message))
        .unwrap()
}
