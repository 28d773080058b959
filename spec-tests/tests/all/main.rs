//! Conformance against independent clients: curl speaks HTTP/1.1, h2c (prior knowledge) and
//! HTTP/2 over TLS to a host serving the hello sample.

#![allow(missing_docs)]

mod curl;
