//! An OTLP/gRPC receiver that counts what it gets, for `bench/telemetry.sh`: the same
//! receiver the integration tests use (`tests/all/otlp.rs`).
//!
//!   cargo run --release -p virga --example otlp_sink -- 127.0.0.1:4317
//!
//! Prints `spans N logs N metrics N` once a second.

#![allow(missing_docs, unreachable_pub, dead_code)]

#[path = "../tests/all/otlp.rs"]
mod otlp;

#[tokio::main]
async fn main() {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into())
        .parse()
        .expect("an address like 127.0.0.1:4317");
    let running = otlp::Receiver::grpc_on(addr).await;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let received = running.receiver.received.lock().unwrap();
        println!(
            "spans {} logs {} metrics {}",
            received.spans.len(),
            received.logs.len(),
            received.metrics.len()
        );
    }
}
