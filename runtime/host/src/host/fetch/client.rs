//! The default [`FetchBackend`]: pooled hyper clients (HTTP/1.1, and HTTP/2 where TLS
//! negotiates it), rustls with the webpki roots plus any extra CA certificates, and an address
//! check on every connection so that a wildcard origin never reaches a private address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::policy::non_public;
use super::{FetchBackend, FetchBody, FetchError, SendOptions};

/// The default fetch backend. Connections are pooled per origin and reused across requests
/// and deployments; a connection made for an origin allowed exactly (which may be private)
/// is never handed to a request that matched only a wildcard.
pub struct HyperFetch {
    tls: Arc<rustls::ClientConfig>,
    clients: Mutex<HashMap<(bool, Duration), Client<Connector, FetchBody>>>,
}

impl std::fmt::Debug for HyperFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperFetch").finish_non_exhaustive()
    }
}

/// Clients kept for distinct (private allowed, connect timeout) pairs; past this, requests
/// asking for an unusual connect timeout share a client with a shorter one.
const MAX_CLIENTS: usize = 32;

impl HyperFetch {
    /// A backend trusting the webpki roots and `extra_roots` (PEM-decoded CA certificates).
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Result<Self, FetchError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| FetchError::Tls(format!("an extra CA certificate is invalid: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            tls: Arc::new(tls),
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, options: &SendOptions) -> Client<Connector, FetchBody> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        // 100 ms steps, rounded down (never longer than asked, at least one step).
        let steps = (options.connect_timeout.as_millis() / 100).max(1);
        let mut key = (
            options.allow_private,
            Duration::from_millis(u64::try_from(steps * 100).unwrap_or(u64::MAX)),
        );
        if !clients.contains_key(&key) && clients.len() >= MAX_CLIENTS {
            // Full: share the client with the longest timeout not above the one asked.
            let fallback = clients
                .keys()
                .filter(|(private, timeout)| *private == key.0 && *timeout <= key.1)
                .max_by_key(|(_, timeout)| *timeout)
                .copied();
            key = fallback.unwrap_or((key.0, Duration::from_millis(100)));
        }
        clients
            .entry(key)
            .or_insert_with(|| {
                let connector = Connector {
                    tls: TlsConnector::from(self.tls.clone()),
                    allow_private: key.0,
                    timeout: key.1,
                };
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(32)
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .build(connector)
            })
            .clone()
    }
}

impl FetchBackend for HyperFetch {
    fn send(
        &self,
        request: http::Request<FetchBody>,
        options: SendOptions,
    ) -> BoxFuture<'static, Result<http::Response<FetchBody>, FetchError>> {
        let client = self.client(&options);
        Box::pin(async move {
            let response = client.request(request).await.map_err(|e| {
                // The connector's own error, if that is where it failed.
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(err) = source {
                    if let Some(fetch) = err.downcast_ref::<FetchError>() {
                        return fetch.clone();
                    }
                    source = err.source();
                }
                FetchError::Protocol(error_chain(&e))
            })?;
            Ok(response.map(|body| {
                use http_body_util::BodyExt;
                body.map_err(|e| -> super::BoxError {
                    Box::new(FetchError::Protocol(e.to_string()))
                })
                .boxed_unsync()
            }))
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// Resolves, checks every address, connects (within the timeout) and does TLS for `https`.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: TlsConnector,
    allow_private: bool,
    timeout: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = FetchError;
    type Future = BoxFuture<'static, Result<Self::Response, FetchError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FetchError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let timeout = this.timeout;
            tokio::time::timeout(timeout, this.connect(uri))
                .await
                .unwrap_or(Err(FetchError::ConnectTimeout { authority, timeout }))
        })
    }
}

impl Connector {
    async fn connect(self, uri: Uri) -> Result<TokioIo<Stream>, FetchError> {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| FetchError::Dns {
                host: host.clone(),
                message: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(FetchError::Dns {
                host,
                message: "the name has no addresses".into(),
            });
        }
        if !self.allow_private {
            // Every address, not only the one connected to: a name that resolves to a
            // private address among public ones is refused (DNS rebinding).
            for addr in &addrs {
                if let Some(range) = non_public(addr.ip()) {
                    tracing::debug!(%host, addr = %addr.ip(), range, "subrequest refused");
                    return Err(FetchError::Prohibited {
                        host,
                        addr: addr.ip(),
                        range,
                    });
                }
            }
        }
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let authority = format!("{host}:{port}");
        let tcp = tcp.ok_or_else(|| FetchError::Connect {
            authority: authority.clone(),
            message: last.map(|e| e.to_string()).unwrap_or_default(),
        })?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(TokioIo::new(Stream::Plain(tcp)));
        }
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(host.clone()).map_err(|e| {
                FetchError::Tls(format!("{host} is not a valid TLS server name: {e}"))
            })?,
        };
        let tls = self.tls.connect(name, tcp).await.map_err(|e| {
            FetchError::Tls(format!("TLS with {authority} failed: {}", error_chain(&e)))
        })?;
        Ok(TokioIo::new(Stream::Tls(Box::new(tls))))
    }
}

/// A connection to an upstream: plain TCP or TLS over TCP.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(_) => Connected::new(),
            Stream::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            Stream::Tls(_) => Connected::new(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
