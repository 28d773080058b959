//! Atomic swap under load: while 32 connections keep the host busy, 50 deploys and rollbacks
//! between two versions that answer differently. No request fails, and every response is one
//! version's answer in full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use virga::DeploymentConfig;
use virga_test_artifacts::{COUNTER, HELLO};

use crate::support::TestHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_and_rollbacks_under_load_fail_no_request() {
    let host = TestHost::builder().guest("app", HELLO, "*/*").start().await;
    let runtime = host.runtime.clone();
    let hello = runtime.compile(&std::fs::read(HELLO).unwrap()).unwrap();
    let counter = runtime.compile(&std::fs::read(COUNTER).unwrap()).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (stop, ok, bad, addr) = (stop.clone(), ok.clone(), bad.clone(), host.http);
        clients.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get("/v")
                    .header("host", "localhost")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let outcome = async {
                    let response = sender.send_request(request).await.ok()?;
                    let status = response.status();
                    let body = response.into_body().collect().await.ok()?.to_bytes();
                    Some((status, body))
                }
                .await;
                match outcome {
                    Some((status, body))
                        if status == 200
                            && (&body[..] == b"hello from virga\nGET /v\n"
                                || &body[..] == b"1\n") =>
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if seen.last() != Some(&body) {
                            seen.push(body);
                        }
                    }
                    other => {
                        bad.fetch_add(1, Ordering::Relaxed);
                        eprintln!("bad response: {other:?}");
                    }
                }
            }
        }));
    }
    let deploys = tokio::spawn(async move {
        for i in 0..50u32 {
            tokio::time::sleep(Duration::from_millis(190)).await;
            let component = if i % 2 == 0 {
                counter.clone()
            } else {
                hello.clone()
            };
            if i % 5 == 4 {
                runtime.rollback("app", None).unwrap();
            } else {
                runtime
                    .deploy(DeploymentConfig::new("app", component).route("*/*".parse().unwrap()))
                    .unwrap();
            }
        }
    });
    deploys.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    eprintln!("{ok} good responses, {bad} bad, during 50 deploys and rollbacks");
    assert_eq!(bad, 0);
    assert!(
        ok > 1000,
        "the load was too light to mean anything: {ok} requests"
    );
}
