//! Conformance against independent clients and public suites: curl speaks HTTP/1.1, h2c
//! (prior knowledge) and HTTP/2 over TLS to a host serving the hello sample; Wycheproof and
//! RFC 9474 vectors run through a guest's `virga:edge/crypto` calls, and Python's
//! `cryptography` (OpenSSL) checks the blind signatures the guest makes.

#![allow(missing_docs)]

mod aioquic;
mod cache_harness;
mod cache_proxy;
mod curl;
mod doh;
mod privacy_pass;
mod probe;
mod rfc9474;
mod wycheproof;
