//! In-process cost of one request: fresh store + instantiate + handle + read the body, for the
//! hello sample, through `Runtime::handle` (no sockets). Prints median, p99 and mean in µs.
//!
//! `cargo bench -p virga --bench dispatch` (set `BENCH_REQUESTS` to change the count).

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use virga::{DeploymentConfig, Runtime};

fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Run the loop on the worker thread, as a connection task would, so that the guest task
    // it spawns is not handed across threads.
    runtime.block_on(async { tokio::spawn(bench(requests)).await.unwrap() });
}

async fn bench(requests: usize) {
    // BENCH_GUEST=path measures another component (its body is not checked).
    let custom_guest = std::env::var_os("BENCH_GUEST");
    let guest = custom_guest.clone().map_or_else(
        || virga_test_artifacts::HELLO.into(),
        std::path::PathBuf::from,
    );
    {
        let modes: &[bool] = if std::env::var_os("BENCH_POOLING_ONLY").is_some() {
            &[true]
        } else {
            &[true, false]
        };
        for &pooling in modes {
            let mut builder = Runtime::builder();
            builder.pooling(pooling);
            if std::env::var_os("BENCH_INHERIT_STDIO").is_some() {
                builder.guest_output(virga::GuestOutput::Inherit);
            }
            let virga = builder.build().unwrap();
            let component = virga.compile(&std::fs::read(&guest).unwrap()).unwrap();
            virga
                .deploy(DeploymentConfig::new("hello", component).route("*/*".parse().unwrap()))
                .unwrap();
            let mut times = Vec::with_capacity(requests);
            let mut measured_from = Instant::now();
            for i in 0..requests + 1000 {
                if i == 1000 {
                    measured_from = Instant::now();
                }
                let request = http::Request::get("http://bench.example/x")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let started = Instant::now();
                let response = virga.handle(request).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let elapsed = started.elapsed();
                if custom_guest.is_none() {
                    assert_eq!(&body[..], b"hello from virga\nGET /x\n");
                }
                if i >= 1000 {
                    times.push(elapsed);
                }
            }
            // Wall-clock time per request over the whole run: includes the work a request
            // leaves behind after its body is read (finishing the guest, dropping its store).
            let wall = measured_from.elapsed() / requests as u32;
            times.sort();
            let mean = times.iter().sum::<Duration>() / times.len() as u32;
            println!(
                "instantiate+handle (pooling={pooling}, RUST_BACKTRACE={}): median {:.1} µs, p99 {:.1} µs, mean {:.1} µs; wall-clock {:.1} µs per request over {requests} requests",
                std::env::var("RUST_BACKTRACE").unwrap_or_default(),
                micros(times[times.len() / 2]),
                micros(times[times.len() * 99 / 100]),
                micros(mean),
                micros(wall),
            );
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
