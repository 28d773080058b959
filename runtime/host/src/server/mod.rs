//! Virga's own listeners: HTTP/1.1 + h2c on a plaintext address, HTTP/1.1 + HTTP/2 over TLS
//! on another, with graceful shutdown.
//!
//! ```no_run
//! # async fn f(runtime: virga::Runtime) -> Result<(), virga::Error> {
//! use virga::server::{Server, TlsIdentity};
//! let (identity, _cert_path) = TlsIdentity::self_signed(".virga/tls".as_ref())?;
//! let server = Server::builder(runtime)
//!     .http("127.0.0.1:8080".parse().unwrap())
//!     .https("127.0.0.1:8443".parse().unwrap(), identity)
//!     .bind()
//!     .await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod admin;
mod body_rate;
mod h1h2;
mod h3;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use admin::{AdminOptions, handle as handle_admin, load_or_create_token};
pub(crate) use h1h2::ConnectionLimits;
pub use h3::Http3;
pub use tls::TlsIdentity;
pub(crate) use tls::write_atomically;

use crate::error::Error;
use crate::runtime::Runtime;

/// Configures the listeners of a [`Server`].
#[derive(Debug)]
pub struct ServerBuilder {
    runtime: Runtime,
    http: Option<SocketAddr>,
    https: Option<(SocketAddr, TlsIdentity)>,
    http3: Option<Http3>,
    admin: Option<(SocketAddr, AdminOptions)>,
    drain_timeout: Duration,
    limits: h1h2::ConnectionLimits,
}

impl ServerBuilder {
    /// Also serves HTTP/3 (QUIC) on the UDP port of the [`https`](Self::https) listener,
    /// with the same certificate, and advertises it in the TLS listener's responses
    /// (`Alt-Svc: h3=":PORT"`). Needs `https`. Default is off.
    pub fn http3(mut self, options: Http3) -> Self {
        self.http3 = Some(options);
        self
    }

    /// How long a client may take to send a request's head (request line and headers) on
    /// HTTP/1.1 before the connection is closed: slowloris clients trickling headers forever
    /// are cut here. Default is 30 s.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// Connections open at once over all listeners; a connection past the cap is closed as
    /// soon as it is accepted. Default is 10 000.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.limits.max_connections = connections.max(1);
        self
    }

    /// The slowest a request body may arrive: a client that keeps the host waiting longer
    /// than `grace` plus one second per `bytes_per_second` bytes it has sent is cut off, and
    /// a handler that failed on it is answered 408 (slow-POST attacks). Only time the host
    /// spends waiting for the client counts. Default is 500 bytes/s after 10 s; 0 turns the
    /// check off.
    pub fn min_body_rate(mut self, bytes_per_second: u64, grace: Duration) -> Self {
        self.limits.body_rate = body_rate::BodyRate {
            grace,
            min_rate: bytes_per_second,
        };
        self
    }

    /// Serves the admin API (plaintext HTTP/1.1; keep it on loopback or a private network)
    /// on `addr`. Default is none.
    pub fn admin(mut self, addr: SocketAddr, options: AdminOptions) -> Self {
        self.admin = Some((addr, options));
        self
    }

    /// Serves plaintext HTTP/1.1 and h2c (prior knowledge) on `addr`. Default is none.
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// Serves HTTP/1.1 and HTTP/2 over TLS on `addr` with `identity`. Default is none.
    pub fn https(mut self, addr: SocketAddr, identity: TlsIdentity) -> Self {
        self.https = Some((addr, identity));
        self
    }

    /// How long shutdown waits for in-flight requests before closing connections.
    /// Default is 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Binds the listeners (port 0 picks a free port: see [`Server::http_addr`]).
    pub async fn bind(self) -> Result<Server, Error> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| Error::io(format!("binding {addr}"), e))
        };
        let http = match self.http {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        #[cfg(feature = "http3")]
        let mut h3 = None;
        let https = match self.https {
            Some((addr, identity)) => {
                let config = identity.server_config(&[b"h2", b"http/1.1"])?;
                let listener = bind(addr).await?;
                #[cfg(feature = "http3")]
                if let Some(options) = &self.http3 {
                    // The same port number as the TLS listener (port 0 has been resolved).
                    let port = listener
                        .local_addr()
                        .map_err(|e| Error::io(format!("reading {addr}"), e))?
                        .port();
                    let udp = SocketAddr::new(addr.ip(), port);
                    h3 = Some(
                        h3::Listener::bind(
                            udp,
                            &identity,
                            options,
                            self.runtime.clone(),
                            self.limits.body_rate,
                        )
                        .await?,
                    );
                }
                #[cfg(not(feature = "http3"))]
                if self.http3.is_some() {
                    return Err(Error::Config(
                        "HTTP/3 was asked for, but this build of virga has no `http3` feature"
                            .into(),
                    ));
                }
                Some((listener, TlsAcceptor::from(config)))
            }
            None if self.http3.is_some() => {
                return Err(Error::Config(
                    "HTTP/3 needs the TLS listener: it serves on its port with its certificate"
                        .into(),
                ));
            }
            None => None,
        };
        let admin = match self.admin {
            Some((addr, options)) => Some((bind(addr).await?, options)),
            None => None,
        };
        let local = |l: &TcpListener| l.local_addr().ok();
        Ok(Server {
            http_addr: http.as_ref().and_then(local),
            https_addr: https.as_ref().and_then(|(l, _)| local(l)),
            #[cfg(feature = "http3")]
            h3_addr: h3.as_ref().map(h3::Listener::local_addr),
            #[cfg(not(feature = "http3"))]
            h3_addr: None,
            #[cfg(feature = "http3")]
            h3,
            admin_addr: admin.as_ref().and_then(|(l, _)| local(l)),
            admin,
            runtime: self.runtime,
            http,
            https,
            drain_timeout: self.drain_timeout,
            limits: self.limits,
        })
    }
}

/// Bound listeners, ready to [`run`](Server::run).
pub struct Server {
    runtime: Runtime,
    http: Option<TcpListener>,
    https: Option<(TcpListener, TlsAcceptor)>,
    #[cfg(feature = "http3")]
    h3: Option<h3::Listener>,
    admin: Option<(TcpListener, AdminOptions)>,
    http_addr: Option<SocketAddr>,
    h3_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    drain_timeout: Duration,
    limits: h1h2::ConnectionLimits,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("http_addr", &self.http_addr)
            .field("https_addr", &self.https_addr)
            .field("h3_addr", &self.h3_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder serving `runtime`, with no listeners yet.
    pub fn builder(runtime: Runtime) -> ServerBuilder {
        ServerBuilder {
            runtime,
            http: None,
            https: None,
            http3: None,
            admin: None,
            drain_timeout: Duration::from_secs(30),
            limits: h1h2::ConnectionLimits::default(),
        }
    }

    /// The bound plaintext address, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound admin address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The bound TLS address, if any.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The bound HTTP/3 (UDP) address, if any: the TLS listener's port.
    pub fn h3_addr(&self) -> Option<SocketAddr> {
        self.h3_addr
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests
    /// finish (up to the drain timeout) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let graceful = Arc::new(GracefulShutdown::new());
        let builder = Arc::new(h1h2::connection_builder(&self.limits));
        let connections = Arc::new(tokio::sync::Semaphore::new(self.limits.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let public = |alt_svc| h1h2::Role::Public {
            rate: self.limits.body_rate,
            alt_svc,
        };
        // RFC 7838: advertised on the TLS listener only; `http://` origins are not served
        // over HTTP/3 (RFC 9114 §3.1).
        let alt_svc = self.h3_addr.and_then(|addr| {
            http::HeaderValue::try_from(format!("h3=\":{}\"; ma=86400", addr.port())).ok()
        });
        #[cfg(feature = "http3")]
        let mut h3 = self
            .h3
            .map(|listener| tokio::spawn(listener.run(connections.clone(), stop_rx.clone())));
        #[cfg(not(feature = "http3"))]
        let mut h3: Option<tokio::task::JoinHandle<()>> = None;
        let listeners = [
            self.http.map(|l| (l, None, public(None))),
            self.https
                .map(|(l, acceptor)| (l, Some(acceptor), public(alt_svc))),
            self.admin
                .map(|(l, options)| (l, None, h1h2::Role::Admin(options))),
        ];
        let loops: Vec<_> = listeners
            .into_iter()
            .flatten()
            .map(|(listener, tls, role)| {
                tokio::spawn(h1h2::accept_loop(
                    listener,
                    tls,
                    role,
                    h1h2::Shared {
                        runtime: self.runtime.clone(),
                        builder: builder.clone(),
                        connections: connections.clone(),
                        graceful: graceful.clone(),
                    },
                    stop_rx.clone(),
                ))
            })
            .collect();
        shutdown.await;
        let _ = stop_tx.send(true);
        for accept in loops {
            let _ = accept.await;
        }
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            return;
        };
        let h3_drained = async {
            if let Some(h3) = h3.as_mut() {
                let _ = h3.await;
            }
        };
        let drained = futures::future::join(graceful.shutdown(), h3_drained);
        if tokio::time::timeout(self.drain_timeout, drained)
            .await
            .is_err()
        {
            tracing::warn!("drain timeout reached; closing the remaining connections");
        }
        // Dropping the endpoint's task closes its remaining QUIC connections.
        if let Some(h3) = h3 {
            h3.abort();
        }
    }
}
