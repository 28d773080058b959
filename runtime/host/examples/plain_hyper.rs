//! The baseline for the HTTP benchmark: a plain hyper server (the same hyper-util connection
//! builder as Virga's listener) answering what the hello sample answers, computed per request.
//!
//! `cargo run --release -p virga --example plain_hyper -- 127.0.0.1:8091`

#![allow(missing_docs)]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8091".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("plain hyper on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                let body = format!(
                    "hello from virga\n{} {}\n",
                    request.method(),
                    request.uri().path()
                );
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .header("content-type", "text/plain; charset=utf-8")
                        .header("content-length", body.len())
                        .body(Full::new(Bytes::from(body)))
                        .unwrap(),
                )
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
