//! HTTP/1.1 and HTTP/2 with hyper: plaintext (HTTP/1.1, and h2c with prior knowledge) and
//! TLS (ALPN h2 and http/1.1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::admin::{self, AdminOptions};
use super::body_rate::{BodyRate, MinRate, Tripped};
use crate::dispatch::ConnectionInfo;
use crate::runtime::Runtime;

/// What one connection may ask of the host: the bounds against protocol abuse.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// Time to receive a request head on HTTP/1.1 (slowloris).
    pub(crate) header_read_timeout: std::time::Duration,
    /// Connections open at once over all listeners.
    pub(crate) max_connections: usize,
    /// The slowest a request body may arrive (slow POST).
    pub(crate) body_rate: BodyRate,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: std::time::Duration::from_secs(30),
            max_connections: 10_000,
            body_rate: BodyRate::default(),
        }
    }
}

/// Largest request head (request line and header fields) taken: more gets 431.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one request: more gets 431.
const MAX_HEADERS: usize = 100;

/// The connection builder shared by every listener.
pub(crate) fn connection_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Header blocks (HEADERS + CONTINUATION) are bounded, streams at once are bounded,
        // and a client that resets streams as fast as it opens them (CVE-2023-44487, rapid
        // reset) or makes the server reset too many gets GOAWAY.
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(256);
    builder
}

/// What a listener serves.
#[derive(Clone, Debug)]
pub(crate) enum Role {
    /// Requests for deployments, their bodies held to a minimum rate; responses advertise
    /// HTTP/3 with `alt_svc` when set.
    Public {
        rate: BodyRate,
        alt_svc: Option<http::HeaderValue>,
    },
    /// The admin API.
    Admin(AdminOptions),
}

/// What every listener of a server shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) runtime: Runtime,
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    /// The connection cap, as permits.
    pub(crate) connections: Arc<tokio::sync::Semaphore>,
    pub(crate) graceful: Arc<GracefulShutdown>,
}

/// Accepts connections until `stop` flips, serving each with the runtime.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    role: Role,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let Shared {
        runtime,
        builder,
        connections,
        graceful,
    } = shared;
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // Past the connection cap, the connection is closed at once: the host's memory stays
        // bounded and the connections it has keep being served.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "connection cap reached; closing the new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let role = role.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve(stream, false, remote, runtime, role, &builder, watcher).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve(stream, true, remote, runtime, role, &builder, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve<S>(
    stream: S,
    tls: bool,
    remote: SocketAddr,
    runtime: Runtime,
    role: Role,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = ConnectionInfo::new(tls, Some(remote));
    let service = service_fn(move |mut request: http::Request<Incoming>| {
        let runtime = runtime.clone();
        let role = role.clone();
        request.extensions_mut().insert(info);
        async move {
            Ok::<_, Infallible>(match role {
                Role::Public { rate, alt_svc } => {
                    let mut response = public(&runtime, rate, request).await;
                    // RFC 7838 §3: the same origin is served over HTTP/3 on this UDP port.
                    // A handler's own Alt-Svc wins.
                    if let Some(alt_svc) = alt_svc {
                        response
                            .headers_mut()
                            .entry(http::header::ALT_SVC)
                            .or_insert(alt_svc);
                    }
                    response
                }
                Role::Admin(options) => admin::handle(runtime, options, request).await,
            })
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// Runs a public request (any protocol). A handler that failed because the body arrived
/// too slowly is answered 408 naming the rate (RFC 9110 §15.5.9), and an HTTP/1.1
/// connection is closed.
pub(crate) async fn public<B>(
    runtime: &Runtime,
    rate: BodyRate,
    request: http::Request<B>,
) -> http::Response<crate::Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    // A response to HEAD has no body (RFC 9110 §9.3.2), whatever the handler wrote: hyper
    // drops it on HTTP/1.1 but would send it as DATA on HTTP/2. Dropping it also ends the
    // guest's writing. (HTTP/3 ends such responses at their head itself.)
    let head = request.method() == http::Method::HEAD && request.version() == http::Version::HTTP_2;
    let answer = |result: Result<_, crate::Error>| {
        let response = result.unwrap_or_else(|e: crate::Error| e.into_response());
        if head {
            response.map(|_| crate::body::ended())
        } else {
            response
        }
    };
    // A request without a body (most of them) has nothing to guard: no allocation for it.
    if rate.min_rate == 0 || request.body().is_end_stream() {
        return answer(runtime.handle(request).await);
    }
    let version = request.version();
    let tripped = Tripped::default();
    let request = request.map(|body| MinRate::new(body, rate, tripped.clone()));
    let response = answer(runtime.handle(request).await);
    match tripped.get() {
        Some(message) if response.status().is_server_error() => {
            let mut response = http::Response::new(crate::body::full(format!("{message}\n")));
            *response.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
            if version <= http::Version::HTTP_11 {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            response
        }
        _ => response,
    }
}
