//! The HTTP/3 endpoint: the UDP socket, connection IDs, Retry tokens, and the routing of
//! datagrams to connection drivers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::super::body_rate::BodyRate;
use super::super::tls::TlsIdentity;
use super::{Http3, connection};
use crate::error::Error;
use crate::runtime::Runtime;

/// Largest UDP payload the host sends: fits the common 1500-byte MTU with room for
/// tunnels (quiche's own default).
pub(super) const MAX_SEND_PAYLOAD: usize = 1350;
/// How long a Retry token stays valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(30);
/// Datagrams queued for one connection before more are dropped (QUIC recovers them).
const DATAGRAM_QUEUE: usize = 256;

/// A request stream's ID.
pub(super) type StreamId = u64;

/// QUIC settings from `options`, with `identity` as the TLS certificate.
fn quic_config(options: &Http3, identity: &TlsIdentity) -> Result<quiche::Config, Error> {
    let tls = |what: &str, e: &dyn std::fmt::Display| Error::Tls(format!("HTTP/3 {what}: {e}"));
    let ctx = identity
        .boring_context()
        .map_err(|e| tls("certificate", &e))?;
    let mut config = quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, ctx)
        .map_err(|e| tls("TLS setup", &e))?;
    config
        .set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
        .map_err(|e| tls("ALPN", &e))?;
    config.set_max_idle_timeout(options.idle_timeout.as_millis() as u64);
    config.set_max_send_udp_payload_size(MAX_SEND_PAYLOAD);
    // Flow control: what a client may have in flight towards the host, per stream and
    // per connection (quiche grows the windows up to the maxima as data is consumed).
    config.set_initial_max_data(4 * 1024 * 1024);
    config.set_initial_max_stream_data_bidi_remote(1024 * 1024);
    config.set_initial_max_stream_data_bidi_local(1024 * 1024);
    config.set_initial_max_stream_data_uni(1024 * 1024);
    config.set_max_connection_window(8 * 1024 * 1024);
    config.set_max_stream_window(2 * 1024 * 1024);
    config.set_initial_max_streams_bidi(options.max_concurrent_streams);
    // Control and QPACK streams, with room for extensions.
    config.set_initial_max_streams_uni(8);
    config.set_disable_active_migration(true);
    Ok(config)
}

/// A datagram for one connection.
pub(super) struct Datagram {
    pub(super) bytes: Vec<u8>,
    pub(super) from: SocketAddr,
}

/// What a handler task sends its connection's driver.
pub(super) enum Command {
    /// The response head, with the first body bytes if they were ready (`fin`: nothing
    /// follows them).
    Head {
        stream: StreamId,
        head: Vec<quiche::h3::Header>,
        data: Bytes,
        fin: bool,
    },
    Data {
        stream: StreamId,
        data: Bytes,
        fin: bool,
    },
    Trailers {
        stream: StreamId,
        trailers: http::HeaderMap,
    },
    /// The response failed midway: reset the stream.
    Abort { stream: StreamId },
}

/// What every connection of an endpoint shares.
pub(super) struct Endpoint {
    pub(super) socket: UdpSocket,
    pub(super) local: SocketAddr,
    pub(super) runtime: Runtime,
    pub(super) body_rate: BodyRate,
    pub(super) h3_config: quiche::h3::Config,
}

/// A bound HTTP/3 endpoint, ready to serve.
pub(crate) struct Listener {
    endpoint: Arc<Endpoint>,
    config: quiche::Config,
    address_validation: bool,
}

impl Listener {
    /// Binds UDP `addr` and prepares QUIC with `identity`.
    pub(crate) async fn bind(
        addr: SocketAddr,
        identity: &TlsIdentity,
        options: &Http3,
        runtime: Runtime,
        body_rate: BodyRate,
    ) -> Result<Self, Error> {
        let config = quic_config(options, identity)?;
        let mut h3_config =
            quiche::h3::Config::new().map_err(|e| Error::Engine(format!("HTTP/3 setup: {e}")))?;
        // The same bound on a request's field section as HTTP/1.1 and HTTP/2 have; a larger
        // one closes the connection with H3_EXCESSIVE_LOAD.
        h3_config.set_max_field_section_size(super::super::h1h2::MAX_HEAD_BYTES as u64);
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| Error::io(format!("binding UDP {addr} for HTTP/3"), e))?;
        let local = socket
            .local_addr()
            .map_err(|e| Error::io("reading the HTTP/3 address".to_owned(), e))?;
        Ok(Self {
            endpoint: Arc::new(Endpoint {
                socket,
                local,
                runtime,
                body_rate,
                h3_config,
            }),
            config,
            address_validation: options.address_validation,
        })
    }

    /// The bound UDP address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.endpoint.local
    }

    /// Serves until `stop` flips, then lets every connection finish its requests (GOAWAY)
    /// and returns when all have closed.
    pub(crate) async fn run(self, connections: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
        let Self {
            endpoint,
            mut config,
            address_validation,
        } = self;
        let tokens = Tokens::new();
        let mut buf = vec![0; 65_536].into_boxed_slice();
        let mut out = vec![0; MAX_SEND_PAYLOAD].into_boxed_slice();
        let mut routes: HashMap<Box<[u8]>, mpsc::Sender<Datagram>> = HashMap::new();
        let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<Vec<Box<[u8]>>>();
        let mut drivers = JoinSet::new();
        let mut stopping = *stop.borrow();
        loop {
            if stopping && drivers.is_empty() {
                return;
            }
            tokio::select! {
                received = endpoint.socket.recv_from(&mut buf) => {
                    let (len, from) = match received {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::debug!(error = %e, "UDP receive failed");
                            continue;
                        }
                    };
                    let packet = &mut buf[..len];
                    let Ok(header) = quiche::Header::from_slice(packet, quiche::MAX_CONN_ID_LEN)
                    else {
                        tracing::trace!(%from, "not a QUIC packet; dropped");
                        continue;
                    };
                    if let Some(route) = routes.get(&header.dcid[..]) {
                        // A full queue drops the datagram: the client retransmits.
                        let _ = route.try_send(Datagram { bytes: packet.to_vec(), from });
                        continue;
                    }
                    // RFC 9000 §14.1: a client's first datagram is at least 1200 bytes;
                    // smaller ones get nothing back (no amplification).
                    // Only long-header packets may start a connection or get Version
                    // Negotiation (RFC 9000 §6.1).
                    if stopping || len < 1200 || header.ty == quiche::Type::Short {
                        continue;
                    }
                    if !quiche::version_is_supported(header.version) {
                        if let Ok(len) = quiche::negotiate_version(&header.scid, &header.dcid, &mut out) {
                            let _ = endpoint.socket.send_to(&out[..len], from).await;
                        }
                        continue;
                    }
                    if header.ty != quiche::Type::Initial {
                        continue;
                    }
                    let token = header.token.as_deref().unwrap_or_default();
                    let (scid, odcid) = if address_validation {
                        if token.is_empty() {
                            let retry_cid = new_connection_id();
                            let token = tokens.mint(from, &header.dcid, &retry_cid);
                            let retry_cid = quiche::ConnectionId::from_ref(&retry_cid);
                            if let Ok(len) = quiche::retry(&header.scid, &header.dcid, &retry_cid, &token, header.version, &mut out) {
                                let _ = endpoint.socket.send_to(&out[..len], from).await;
                            }
                            continue;
                        }
                        let Some(odcid) = tokens.validate(token, from, &header.dcid) else {
                            tracing::debug!(%from, "invalid or expired Retry token; dropped");
                            continue;
                        };
                        (header.dcid.to_vec(), Some(odcid))
                    } else {
                        (new_connection_id().to_vec(), None)
                    };
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        tracing::debug!(%from, "connection cap reached; HTTP/3 Initial dropped");
                        continue;
                    };
                    let odcid = odcid.map(quiche::ConnectionId::from_vec);
                    let conn = match quiche::accept(
                        &quiche::ConnectionId::from_ref(&scid),
                        odcid.as_ref(),
                        endpoint.local,
                        from,
                        &mut config,
                    ) {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::debug!(%from, error = %e, "QUIC accept failed");
                            continue;
                        }
                    };
                    let (route, datagrams) = mpsc::channel(DATAGRAM_QUEUE);
                    let _ = route.try_send(Datagram { bytes: packet.to_vec(), from });
                    let mut keys = vec![scid.into_boxed_slice()];
                    if !address_validation {
                        // Until the client learns our ID, it keeps using its own.
                        keys.push(header.dcid.to_vec().into_boxed_slice());
                    }
                    for key in &keys {
                        routes.insert(key.clone(), route.clone());
                    }
                    let endpoint = endpoint.clone();
                    let closed = closed_tx.clone();
                    let stop = stop.clone();
                    drivers.spawn(async move {
                        let _permit = permit;
                        connection::drive(conn, from, datagrams, endpoint, stop).await;
                        let _ = closed.send(keys);
                    });
                }
                Some(keys) = closed_rx.recv() => {
                    for key in keys {
                        routes.remove(&key);
                    }
                    while drivers.try_join_next().is_some() {}
                }
                _ = stop.changed(), if !stopping => stopping = true,
                Some(_) = drivers.join_next(), if stopping => {}
            }
        }
    }
}

fn new_connection_id() -> [u8; quiche::MAX_CONN_ID_LEN] {
    let mut id = [0; quiche::MAX_CONN_ID_LEN];
    // Connection IDs need not be secret, only unpredictable enough not to collide.
    if aws_lc_rs::rand::fill(&mut id).is_err() {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        id[..8].copy_from_slice(&n.to_be_bytes());
    }
    id
}

/// Stateless Retry tokens: `issued (8) | odcid length (1) | odcid | tag (32)`, the tag an
/// HMAC-SHA256 under a per-process key over those bytes, the Retry connection ID and the
/// client's address (RFC 9000 §8.1.2-8.1.4).
struct Tokens {
    key: hmac::Key,
}

impl Tokens {
    fn new() -> Self {
        let mut secret = [0; 32];
        let _ = aws_lc_rs::rand::fill(&mut secret);
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    fn mint(&self, peer: SocketAddr, odcid: &[u8], retry_cid: &[u8]) -> Vec<u8> {
        let mut token = Vec::with_capacity(8 + 1 + odcid.len() + 32);
        token.extend_from_slice(&unix_seconds().to_be_bytes());
        token.push(odcid.len() as u8);
        token.extend_from_slice(odcid);
        let tag = hmac::sign(&self.key, &signed_bytes(&token, retry_cid, peer));
        token.extend_from_slice(tag.as_ref());
        token
    }

    /// The original destination connection ID if `token` was minted by us for `peer` with
    /// `retry_cid`, and has not expired.
    fn validate(&self, token: &[u8], peer: SocketAddr, retry_cid: &[u8]) -> Option<Vec<u8>> {
        let (body, tag) = token.split_at_checked(token.len().checked_sub(32)?)?;
        let issued = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
        let odcid_len = usize::from(*body.get(8)?);
        let odcid = body.get(9..)?;
        if odcid.len() != odcid_len || odcid_len > quiche::MAX_CONN_ID_LEN {
            return None;
        }
        hmac::verify(&self.key, &signed_bytes(body, retry_cid, peer), tag).ok()?;
        let age = unix_seconds().checked_sub(issued)?;
        (Duration::from_secs(age) <= TOKEN_LIFETIME).then(|| odcid.to_vec())
    }
}

/// The bytes a token's tag covers.
fn signed_bytes(body: &[u8], retry_cid: &[u8], peer: SocketAddr) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + retry_cid.len() + 18);
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(retry_cid);
    match peer.ip() {
        std::net::IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
        std::net::IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
    }
    bytes.extend_from_slice(&peer.port().to_be_bytes());
    bytes
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
