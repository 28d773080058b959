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
use crate::dispatch::ConnectionInfo;
use crate::runtime::Runtime;

/// The connection builder shared by both listeners.
pub(crate) fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new());
    builder
}

/// What a listener serves.
#[derive(Clone, Debug)]
pub(crate) enum Role {
    /// Requests for deployments.
    Public,
    /// The admin API.
    Admin(AdminOptions),
}

/// Accepts connections until `stop` flips, serving each with the runtime.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    role: Role,
    runtime: Runtime,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
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
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let role = role.clone();
        tokio::spawn(async move {
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
                Role::Public => match runtime.handle(request).await {
                    Ok(response) => response,
                    Err(error) => error.into_response(),
                },
                Role::Admin(options) => admin::handle(runtime, options, request).await,
            })
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
