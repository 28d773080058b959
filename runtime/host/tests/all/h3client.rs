//! An HTTP/3 client on quiche's client API (an independent peer of the host's server side:
//! quiche's client state machine, not the host's code), for the tests: many requests on
//! one connection, bodies of any size sent as flow control allows, and raw QUIC access for
//! abuse tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use quiche::h3::{self, NameValue};
use tokio::net::UdpSocket;

use crate::support::Reply;

/// One request's progress on the connection.
struct Exchange {
    body: Bytes,
    sent: usize,
    fin_sent: bool,
    status: Option<http::StatusCode>,
    headers: http::HeaderMap,
    trailers: Option<http::HeaderMap>,
    received: Vec<u8>,
    outcome: Option<Result<(), String>>,
}

/// An established HTTP/3 connection.
pub struct H3Client {
    socket: UdpSocket,
    pub conn: quiche::Connection,
    pub h3: Option<h3::Connection>,
    peer: SocketAddr,
    local: SocketAddr,
    buf: Vec<u8>,
    out: Vec<u8>,
}

/// A client config trusting `cert_pem`, with room for `max_header` header bytes.
pub fn client_config(cert_pem: &[u8]) -> Result<quiche::Config> {
    let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION)?;
    let ca = crate::support::tempdir().join("ca.pem");
    std::fs::write(&ca, cert_pem)?;
    config.load_verify_locations_from_file(ca.to_str().unwrap())?;
    config.verify_peer(true);
    config.set_application_protos(h3::APPLICATION_PROTOCOL)?;
    config.set_max_idle_timeout(30_000);
    config.set_max_recv_udp_payload_size(65_527);
    config.set_max_send_udp_payload_size(1350);
    config.set_initial_max_data(16 << 20);
    config.set_initial_max_stream_data_bidi_local(4 << 20);
    config.set_initial_max_stream_data_bidi_remote(4 << 20);
    config.set_initial_max_stream_data_uni(1 << 20);
    config.set_initial_max_streams_bidi(100);
    config.set_initial_max_streams_uni(100);
    Ok(config)
}

impl H3Client {
    /// Connects to `peer` (handshake done, HTTP/3 set up), trusting `cert_pem`.
    pub async fn connect(peer: SocketAddr, cert_pem: &[u8]) -> Result<Self> {
        let mut config = client_config(cert_pem)?;
        let mut client = Self::handshake(peer, &mut config).await?;
        let h3_config = h3::Config::new()?;
        client.h3 = Some(h3::Connection::with_transport(
            &mut client.conn,
            &h3_config,
        )?);
        Ok(client)
    }

    /// A QUIC connection (no HTTP/3 yet) with `config`, handshake done.
    pub async fn handshake(peer: SocketAddr, config: &mut quiche::Config) -> Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let local = socket.local_addr()?;
        let mut scid = [0; quiche::MAX_CONN_ID_LEN];
        for (i, b) in scid.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) ^ (local.port() as u8);
        }
        let scid = quiche::ConnectionId::from_ref(&scid);
        let conn = quiche::connect(Some("localhost"), &scid, local, peer, config)?;
        let mut client = Self {
            socket,
            conn,
            h3: None,
            peer,
            local,
            buf: vec![0; 65_536],
            out: vec![0; 1350],
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !client.conn.is_established() {
            if client.conn.is_closed() {
                bail!(
                    "handshake failed: {:?} / {:?}",
                    client.conn.peer_error(),
                    client.conn.local_error()
                );
            }
            client.flush().await?;
            client.wait(deadline).await?;
        }
        Ok(client)
    }

    /// Sends everything quiche has queued.
    pub async fn flush(&mut self) -> Result<()> {
        loop {
            match self.conn.send(&mut self.out) {
                Ok((len, info)) => {
                    self.socket.send_to(&self.out[..len], info.to).await?;
                }
                Err(quiche::Error::Done) => return Ok(()),
                Err(e) => bail!("QUIC send failed: {e}"),
            }
        }
    }

    /// Waits for one datagram (or quiche's timer) and feeds it in.
    pub async fn wait(&mut self, deadline: tokio::time::Instant) -> Result<()> {
        let timeout = self.conn.timeout().unwrap_or(Duration::from_secs(1));
        tokio::select! {
            received = self.socket.recv_from(&mut self.buf) => {
                let (len, from) = received?;
                let info = quiche::RecvInfo { from, to: self.local };
                let _ = self.conn.recv(&mut self.buf[..len], info);
                // Take whatever else is waiting without blocking.
                while let Ok((len, from)) = self.socket.try_recv_from(&mut self.buf) {
                    let info = quiche::RecvInfo { from, to: self.local };
                    let _ = self.conn.recv(&mut self.buf[..len], info);
                }
            }
            () = tokio::time::sleep(timeout) => self.conn.on_timeout(),
            () = tokio::time::sleep_until(deadline) => bail!("timed out"),
        }
        Ok(())
    }

    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, request: http::Request<Bytes>) -> Result<Reply> {
        self.send_all(vec![request])
            .await?
            .pop()
            .context("no reply")?
    }

    /// Sends all `requests` at once on this connection (as many concurrent streams as the
    /// server allows; the rest as streams free up) and returns their replies in order.
    pub async fn send_all(
        &mut self,
        requests: Vec<http::Request<Bytes>>,
    ) -> Result<Vec<Result<Reply>>> {
        let raw = requests
            .into_iter()
            .map(|request| {
                let (parts, body) = request.into_parts();
                (request_fields(&parts, body.len(), self.peer), body)
            })
            .collect();
        self.send_raw(raw).await
    }

    /// Sends requests given as raw field sections (no checks: malformed ones too).
    pub async fn send_raw(
        &mut self,
        requests: Vec<(Vec<h3::Header>, Bytes)>,
    ) -> Result<Vec<Result<Reply>>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut queue: std::collections::VecDeque<(usize, (Vec<h3::Header>, Bytes))> =
            requests.into_iter().enumerate().collect();
        let total = queue.len();
        let mut exchanges: HashMap<u64, (usize, Exchange)> = HashMap::new();
        let mut results: Vec<Option<Result<Reply>>> = (0..total).map(|_| None).collect();
        loop {
            let h3 = self.h3.as_mut().context("no HTTP/3")?;
            // Open streams while the server's stream limit allows.
            while let Some((index, (fields, body))) = queue.pop_front() {
                let fin = body.is_empty();
                match h3.send_request(&mut self.conn, &fields, fin) {
                    Ok(id) => {
                        exchanges.insert(
                            id,
                            (
                                index,
                                Exchange {
                                    body,
                                    sent: 0,
                                    fin_sent: fin,
                                    status: None,
                                    headers: http::HeaderMap::new(),
                                    trailers: None,
                                    received: Vec::new(),
                                    outcome: None,
                                },
                            ),
                        );
                    }
                    Err(
                        h3::Error::StreamBlocked
                        | h3::Error::TransportError(quiche::Error::StreamLimit),
                    ) => {
                        queue.push_front((index, (fields, body)));
                        break;
                    }
                    Err(e) => bail!("send_request failed: {e}"),
                }
            }
            // Send request bodies as flow control allows.
            for (id, (_, exchange)) in exchanges.iter_mut() {
                if exchange.fin_sent {
                    continue;
                }
                match h3.send_body(&mut self.conn, *id, &exchange.body[exchange.sent..], true) {
                    Ok(written) => {
                        exchange.sent += written;
                        exchange.fin_sent = exchange.sent == exchange.body.len();
                    }
                    Err(h3::Error::Done) => {}
                    // The server may answer before taking the whole body (an error, or a
                    // handler that does not read it) and stop reading: keep its response.
                    Err(_) => exchange.fin_sent = true,
                }
            }
            self.flush().await?;
            // Collect finished exchanges.
            let done: Vec<u64> = exchanges
                .iter()
                .filter(|(_, (_, e))| e.outcome.is_some())
                .map(|(id, _)| *id)
                .collect();
            for id in done {
                let (index, exchange) = exchanges.remove(&id).unwrap();
                results[index] = Some(match exchange.outcome.unwrap() {
                    Ok(()) => Ok(Reply {
                        status: exchange.status.context("no status")?,
                        headers: exchange.headers,
                        body: exchange.received.into(),
                        trailers: exchange.trailers,
                        version: http::Version::HTTP_3,
                    }),
                    Err(e) => Err(anyhow::anyhow!(e)),
                });
            }
            if queue.is_empty() && exchanges.is_empty() {
                return Ok(results.into_iter().map(Option::unwrap).collect());
            }
            if self.conn.is_closed() {
                let reason = format!(
                    "connection closed: peer {:?}, local {:?}",
                    self.conn.peer_error(),
                    self.conn.local_error()
                );
                for (_, (index, _)) in exchanges.drain() {
                    results[index] = Some(Err(anyhow::anyhow!(reason.clone())));
                }
                for (index, _) in queue.drain(..) {
                    results[index] = Some(Err(anyhow::anyhow!(reason.clone())));
                }
                return Ok(results.into_iter().map(Option::unwrap).collect());
            }
            self.wait(deadline).await?;
            let h3 = self.h3.as_mut().unwrap();
            loop {
                match h3.poll(&mut self.conn) {
                    Ok((id, h3::Event::Headers { list, .. })) => {
                        let Some((_, exchange)) = exchanges.get_mut(&id) else {
                            continue;
                        };
                        // A second field section is the trailers (RFC 9114 §4.1).
                        if exchange.status.is_some() {
                            let mut trailers = http::HeaderMap::new();
                            for field in &list {
                                trailers.append(
                                    http::HeaderName::from_bytes(field.name())?,
                                    http::HeaderValue::from_bytes(field.value())?,
                                );
                            }
                            exchange.trailers = Some(trailers);
                            continue;
                        }
                        for field in &list {
                            if field.name() == b":status" {
                                let status = std::str::from_utf8(field.value())?.parse::<u16>()?;
                                exchange.status = Some(http::StatusCode::from_u16(status)?);
                            } else if !field.name().starts_with(b":") {
                                exchange.headers.append(
                                    http::HeaderName::from_bytes(field.name())?,
                                    http::HeaderValue::from_bytes(field.value())?,
                                );
                            }
                        }
                    }
                    Ok((id, h3::Event::Data)) => {
                        let mut chunk = vec![0; 65_536];
                        while let Ok(len) = h3.recv_body(&mut self.conn, id, &mut chunk) {
                            if let Some((_, exchange)) = exchanges.get_mut(&id) {
                                exchange.received.extend_from_slice(&chunk[..len]);
                            }
                        }
                    }
                    Ok((id, h3::Event::Finished)) => {
                        if let Some((_, exchange)) = exchanges.get_mut(&id) {
                            exchange.outcome = Some(Ok(()));
                        }
                    }
                    Ok((id, h3::Event::Reset(code))) => {
                        if let Some((_, exchange)) = exchanges.get_mut(&id) {
                            exchange.outcome =
                                Some(Err(format!("the server reset the stream ({code:#x})")));
                        }
                    }
                    Ok(_) => {}
                    Err(h3::Error::Done) => break,
                    Err(e) => bail!("HTTP/3 error: {e}"),
                }
            }
        }
    }
}

/// The HEADERS of a request: pseudo-header fields first (RFC 9114 §4.3.1).
pub fn request_fields(
    parts: &http::request::Parts,
    body_len: usize,
    peer: SocketAddr,
) -> Vec<h3::Header> {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| format!("localhost:{}", peer.port()));
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.to_string());
    let mut fields = vec![
        h3::Header::new(b":method", parts.method.as_str().as_bytes()),
        h3::Header::new(b":scheme", b"https"),
        h3::Header::new(b":authority", authority.as_bytes()),
        h3::Header::new(b":path", path.as_bytes()),
    ];
    if !parts.headers.contains_key("content-length") && body_len > 0 {
        fields.push(h3::Header::new(
            b"content-length",
            body_len.to_string().as_bytes(),
        ));
    }
    for (name, value) in &parts.headers {
        fields.push(h3::Header::new(name.as_str().as_bytes(), value.as_bytes()));
    }
    fields
}
