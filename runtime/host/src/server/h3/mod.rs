//! HTTP/3 over QUIC with quiche, on the UDP port of the TLS listener and with its
//! certificate (the `http3` cargo feature, on by default: it builds BoringSSL). An endpoint
//! task reads datagrams and routes them by connection ID; each connection has a driver
//! task; each request a handler task running the same path as HTTP/1.1 and HTTP/2
//! (routing, limits, body rate, streaming both ways).
//!
//! New connections are address-validated with a stateless Retry (RFC 9000 §8.1.2) by
//! default: the token is an HMAC over the client's address, the original and the Retry
//! connection IDs and the time, valid for 30 s.

#[cfg(feature = "http3")]
mod body;
#[cfg(feature = "http3")]
mod connection;
#[cfg(feature = "http3")]
mod endpoint;
#[cfg(feature = "http3")]
mod headers;

#[cfg(feature = "http3")]
pub(crate) use endpoint::Listener;

use std::time::Duration;

/// HTTP/3 settings, with their defaults. Connections count against the server's
/// connection cap ([`ServerBuilder::max_connections`](super::ServerBuilder::max_connections))
/// like TCP connections do.
#[derive(Clone, Debug)]
pub struct Http3 {
    idle_timeout: Duration,
    max_concurrent_streams: u64,
    address_validation: bool,
}

impl Default for Http3 {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            max_concurrent_streams: 100,
            address_validation: true,
        }
    }
}

impl Http3 {
    /// Closes a connection that has been silent this long (QUIC's max_idle_timeout).
    /// Default is 30 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Request streams a client may have open at once on one connection; opening more is a
    /// protocol error that closes the connection (RFC 9000 §4.6). Default is 100.
    pub fn max_concurrent_streams(mut self, streams: u64) -> Self {
        self.max_concurrent_streams = streams.max(1);
        self
    }

    /// Whether new connections must first prove their address with a stateless Retry
    /// (one more round trip per connection; no state kept for spoofed sources).
    /// Default is on.
    pub fn address_validation(mut self, on: bool) -> Self {
        self.address_validation = on;
        self
    }
}
