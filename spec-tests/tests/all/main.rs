//! Conformance against independent clients and public suites: curl speaks HTTP/1.1, h2c
//! (prior knowledge) and HTTP/2 over TLS to a host serving the hello sample; Wycheproof vectors
//! run through a guest's `virga:edge/crypto` calls.

#![allow(missing_docs)]

mod curl;
mod wycheproof;
