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
    admin: Option<(SocketAddr, AdminOptions)>,
    drain_timeout: Duration,
    limits: h1h2::ConnectionLimits,
}

impl ServerBuilder {
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
        let https = match self.https {
            Some((addr, identity)) => {
                let config = identity.server_config(&[b"h2", b"http/1.1"])?;
                Some((bind(addr).await?, TlsAcceptor::from(config)))
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
    admin: Option<(TcpListener, AdminOptions)>,
    http_addr: Option<SocketAddr>,
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

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests
    /// finish (up to the drain timeout) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let graceful = Arc::new(GracefulShutdown::new());
        let builder = Arc::new(h1h2::connection_builder(&self.limits));
        let connections = Arc::new(tokio::sync::Semaphore::new(self.limits.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let public = h1h2::Role::Public(self.limits.body_rate);
        let listeners = [
            self.http.map(|l| (l, None, public.clone())),
            self.https
                .map(|(l, acceptor)| (l, Some(acceptor), public.clone())),
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
        if tokio::time::timeout(self.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout reached; closing the remaining connections");
        }
    }
}
