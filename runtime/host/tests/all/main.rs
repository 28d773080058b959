//! The host's integration tests: real sockets on loopback, real guests built by
//! `virga-test-artifacts`.

#![allow(missing_docs, unreachable_pub)]

mod abuse;
mod crypto;
mod embedding;
mod fetch;
mod fleet;
mod h3;
mod h3client;
mod hostile;
mod limits;
mod otlp;
mod protocols;
mod store;
mod support;
mod swap;
mod telemetry;
mod tls;
mod upstream;
