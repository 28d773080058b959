//! A small fluent helper: deploy guests on a host with real listeners, then talk to it over
//! HTTP/1.1, h2c, or HTTP/2 over TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use virga::server::{Http3, Server, TlsIdentity};
use virga::{DeploymentConfig, Limits, Runtime};

/// How a test reaches the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2c,
    H2Tls,
    /// HTTP/3 over QUIC, with quiche's client.
    H3,
}

pub struct TestHostBuilder {
    runtime: Runtime,
    deployments: Vec<DeploymentConfig>,
    header_timeout: Option<Duration>,
    max_connections: Option<usize>,
    body_rate: Option<(u64, Duration)>,
    http3: Http3,
}

impl TestHostBuilder {
    /// Sets the server's HTTP/3 options.
    pub fn http3(mut self, options: Http3) -> Self {
        self.http3 = options;
        self
    }

    /// Deploys the guest at `path` as `name`, serving `route`, with default limits.
    pub fn guest(mut self, name: &str, path: &str, route: &str) -> Self {
        let bytes = std::fs::read(path).expect("guest built by virga-test-artifacts");
        let component = self.runtime.compile(&bytes).expect("guest compiles");
        self.deployments.push(
            DeploymentConfig::new(name, component).route(route.parse().expect("valid route")),
        );
        self
    }

    /// Lets the guest added last fetch from `origin`.
    pub fn allow(mut self, origin: &str) -> Self {
        let last = self.deployments.pop().expect("a guest first");
        self.deployments
            .push(last.allow(origin.parse().expect("valid origin")));
        self
    }

    /// Sets the limits of the guest added last.
    pub fn limits(mut self, limits: Limits) -> Self {
        let last = self.deployments.pop().expect("a guest first");
        self.deployments.push(last.limits(limits));
        self
    }

    /// Sets the server's header read timeout.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = Some(timeout);
        self
    }

    /// Sets the server's minimum request-body rate.
    pub fn min_body_rate(mut self, bytes_per_second: u64, grace: Duration) -> Self {
        self.body_rate = Some((bytes_per_second, grace));
        self
    }

    /// Sets the server's connection cap.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    pub async fn start(self) -> TestHost {
        for config in self.deployments {
            self.runtime.deploy(config).expect("deploys");
        }
        let dir = tempdir();
        let (identity, cert_path) = TlsIdentity::self_signed(&dir).expect("self-signed cert");
        let mut server = Server::builder(self.runtime.clone());
        if let Some(timeout) = self.header_timeout {
            server = server.header_read_timeout(timeout);
        }
        if let Some(connections) = self.max_connections {
            server = server.max_connections(connections);
        }
        if let Some((rate, grace)) = self.body_rate {
            server = server.min_body_rate(rate, grace);
        }
        let server = server
            .http("127.0.0.1:0".parse().unwrap())
            .https("127.0.0.1:0".parse().unwrap(), identity)
            .http3(self.http3.clone())
            .drain_timeout(Duration::from_secs(10))
            .bind()
            .await
            .expect("binds");
        let http = server.http_addr().unwrap();
        let https = server.https_addr().unwrap();
        let h3 = server.h3_addr().unwrap();
        assert_eq!(
            h3.port(),
            https.port(),
            "HTTP/3 shares the TLS listener's port"
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestHost {
            runtime: self.runtime,
            http,
            https,
            h3,
            cert_pem: std::fs::read(cert_path).unwrap(),
            stop: Some(stop),
            task: Some(task),
        }
    }
}

pub struct TestHost {
    #[allow(dead_code)]
    pub runtime: Runtime,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub h3: SocketAddr,
    pub cert_pem: Vec<u8>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub trailers: Option<http::HeaderMap>,
    pub version: http::Version,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub type ReqBody = BoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A request body sent in `chunk`-sized frames, as a client streaming an upload would.
pub fn chunked(data: Bytes, chunk: usize) -> ReqBody {
    let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = data
        .chunks(chunk)
        .map(|c| Ok(http_body::Frame::data(data.slice_ref(c))))
        .collect();
    http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed()
}

/// Reads a response whole, trailers included.
async fn read_reply(response: http::Response<hyper::body::Incoming>) -> Result<Reply> {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.context("reading the response body")?;
    let trailers = collected.trailers().cloned();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
        version: parts.version,
    })
}

impl TestHost {
    pub fn builder() -> TestHostBuilder {
        Self::builder_with(Runtime::builder().build().expect("runtime"))
    }

    pub fn builder_with(runtime: Runtime) -> TestHostBuilder {
        TestHostBuilder {
            runtime,
            deployments: Vec::new(),
            header_timeout: None,
            max_connections: None,
            body_rate: None,
            http3: Http3::default(),
        }
    }

    pub async fn get(&self, proto: Proto, path: &str) -> Result<Reply> {
        self.send(proto, http::Method::GET, path, full(Bytes::new()))
            .await
    }

    /// Sends one request on a new connection and reads the whole response.
    pub async fn send(
        &self,
        proto: Proto,
        method: http::Method,
        path: &str,
        body: ReqBody,
    ) -> Result<Reply> {
        let request = http::Request::builder()
            .method(method)
            .uri(self.uri(proto, path))
            .body(body)?;
        self.request(proto, request).await
    }

    /// Sends `request` (an absolute URI naming the host's port) on a new connection and
    /// reads the whole response.
    pub async fn request(
        &self,
        proto: Proto,
        mut request: http::Request<ReqBody>,
    ) -> Result<Reply> {
        let addr = match proto {
            Proto::H2Tls => self.https,
            Proto::H3 => return self.h3_request(request).await,
            _ => self.http,
        };
        if proto == Proto::H1 && !request.headers().contains_key("host") {
            let host = format!("localhost:{}", addr.port());
            request.headers_mut().insert("host", host.parse()?);
        }
        let response = if proto == Proto::H1 {
            let tcp = TcpStream::connect(addr).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        } else {
            self.h2_sender(proto).await?.send_request(request).await?
        };
        read_reply(response).await
    }

    /// A new HTTP/2 connection (`H2c`: prior knowledge; `H2Tls`: h2 by ALPN, checked).
    async fn h2_sender(
        &self,
        proto: Proto,
    ) -> Result<hyper::client::conn::http2::SendRequest<ReqBody>> {
        let executor = TokioExecutor::new();
        let sender = match proto {
            Proto::H2c => {
                let tcp = TcpStream::connect(self.http).await?;
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(executor, TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender
            }
            Proto::H2Tls => {
                let tcp = TcpStream::connect(self.https).await?;
                let tls = self.tls_connect(tcp, None).await?;
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                if alpn.as_deref() != Some(b"h2") {
                    bail!("ALPN negotiated {alpn:?}, not h2");
                }
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(executor, TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                sender
            }
            other => bail!("{other:?} is not HTTP/2"),
        };
        Ok(sender)
    }

    /// Sends all `requests` at once over one connection (HTTP/2, HTTP/3: concurrent
    /// streams) or one connection each (HTTP/1.1), and returns the replies in order.
    pub async fn send_many(
        &self,
        proto: Proto,
        requests: Vec<http::Request<Bytes>>,
    ) -> Result<Vec<Result<Reply>>> {
        match proto {
            Proto::H3 => self.h3_client().await?.send_all(requests).await,
            Proto::H1 => Ok(
                futures::future::join_all(requests.into_iter().map(|request| {
                    let (parts, body) = request.into_parts();
                    self.request(proto, http::Request::from_parts(parts, full(body)))
                }))
                .await,
            ),
            Proto::H2c | Proto::H2Tls => {
                let mut sender = self.h2_sender(proto).await?;
                sender.ready().await?;
                let exchanges = requests.into_iter().map(|request| {
                    let mut sender = sender.clone();
                    let (parts, body) = request.into_parts();
                    async move {
                        let response = sender
                            .send_request(http::Request::from_parts(parts, full(body)))
                            .await?;
                        read_reply(response).await
                    }
                });
                Ok(futures::future::join_all(exchanges).await)
            }
        }
    }

    /// An absolute URI for `path` on the listener `proto` uses.
    pub fn uri(&self, proto: Proto, path: &str) -> String {
        match proto {
            Proto::H2Tls | Proto::H3 => format!("https://localhost:{}{path}", self.https.port()),
            _ => format!("http://localhost:{}{path}", self.http.port()),
        }
    }

    /// Sends `request` over HTTP/3 on a new QUIC connection (quiche's client).
    pub async fn h3_request(&self, request: http::Request<ReqBody>) -> Result<Reply> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let mut client = self.h3_client().await?;
        client.send(http::Request::from_parts(parts, body)).await
    }

    /// A new HTTP/3 connection to the host.
    pub async fn h3_client(&self) -> Result<crate::h3client::H3Client> {
        crate::h3client::H3Client::connect(self.h3, &self.cert_pem).await
    }

    /// A TLS client connection trusting the host's self-signed certificate, offering h2 and
    /// http/1.1, optionally restricted to some key-exchange groups.
    pub async fn tls_connect(
        &self,
        tcp: TcpStream,
        groups: Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>>,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&self.cert_pem) {
            roots.add(cert?)?;
        }
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(groups) = groups {
            provider.kx_groups = groups;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        Ok(connector.connect(name, tcp).await?)
    }

    /// Stops accepting, drains, and waits for the server to return.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

use rustls::pki_types::pem::PemObject;

/// A fresh directory under the system temp dir.
pub fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "virga-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Held by tests that allocate a lot (large bodies) and by the test that measures the
/// process's RSS, so that one does not inflate the other's measurement.
pub static MEMORY_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Deterministic test data.
pub fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 % 256) as u8)
        .collect::<Vec<u8>>()
        .into()
}
