//! A real upstream for fetch tests: a hyper server on loopback, plaintext (HTTP/1.1 and h2c)
//! or TLS with a certificate from a test CA (ALPN h2 and http/1.1).
//!
//! - `/bytes?n=N` streams N bytes (with `Content-Length`); `/stream?n=N` the same without it
//! - `/echo` streams the request body back; `/sum` reads it all, then answers `LEN SUM`
//! - `/hang` never answers; `/stall` sends its head and 1 KiB, then nothing
//! - `/headers` answers the request's headers, one `name: value` per line
//! - `/slow?ms=M` answers after M ms, counting how many are in flight at once
//! - `/version` answers the HTTP version the request came in on

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

type Reply = http::Response<BoxBody<Bytes, Infallible>>;

#[derive(Default)]
pub struct Counters {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub requests: AtomicUsize,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA and a certificate it issued for `localhost` and 127.0.0.1.
pub struct TestCa {
    pub ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
    /// The CA certificate, the leaf certificate and its key, as PEM (for servers and
    /// clients configured with files).
    pem: [String; 3],
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "virga test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        Self {
            ca: ca.der().clone(),
            chain: vec![leaf.der().clone()],
            key: leaf_key.serialize_der(),
            pem: [ca.pem(), leaf.pem(), leaf_key.serialize_pem()],
        }
    }

    /// Writes the CA, the leaf certificate and its key as PEM files into `dir`:
    /// (ca, cert, key).
    pub fn write_pem(&self, dir: &std::path::Path) -> [std::path::PathBuf; 3] {
        let paths = [
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        ];
        for (path, pem) in paths.iter().zip(&self.pem) {
            std::fs::write(path, pem).unwrap();
        }
        paths
    }
}

impl Upstream {
    /// HTTP/1.1 and h2c.
    pub async fn plain() -> Self {
        Self::start(None).await
    }

    /// TLS (ALPN h2, http/1.1) with a certificate from `ca`.
    pub async fn tls(ca: &TestCa) -> Self {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.key.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(ca.chain.clone(), key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let counters = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<Incoming>| {
                        let counters = counters.clone();
                        async move { Ok::<_, Infallible>(route(request, counters).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            counters,
            task,
        }
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }
}

fn number(request: &http::Request<Incoming>, name: &str) -> u64 {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn pattern(n: u64) -> BoxBody<Bytes, Infallible> {
    let piece: Bytes = (0..65536u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let chunks = (0..n.div_ceil(65536)).map(move |i| {
        let take = (n - i * 65536).min(65536) as usize;
        Ok::<_, Infallible>(Frame::data(piece.slice(..take)))
    });
    BodyExt::boxed(StreamBody::new(futures::stream::iter(chunks)))
}

fn text(body: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    http_body_util::Full::new(body.into()).boxed()
}

async fn route(request: http::Request<Incoming>, counters: Arc<Counters>) -> Reply {
    counters.requests.fetch_add(1, Ordering::SeqCst);
    let ok = http::Response::builder().status(200);
    match request.uri().path() {
        "/bytes" => {
            let n = number(&request, "n");
            ok.header("content-length", n).body(pattern(n)).unwrap()
        }
        "/stream" => ok.body(pattern(number(&request, "n"))).unwrap(),
        "/echo" => {
            // Ends the echo at the first read error (a client that aborts its body).
            let stream = http_body_util::BodyStream::new(request.into_body())
                .take_while(|r| futures::future::ready(r.is_ok()))
                .filter_map(|r| async move {
                    r.ok()
                        .and_then(|f| f.into_data().ok())
                        .map(|d| Ok::<_, Infallible>(Frame::data(d)))
                });
            ok.body(BodyExt::boxed(StreamBody::new(stream))).unwrap()
        }
        "/sum" => {
            let mut body = request.into_body();
            let (mut len, mut sum) = (0u64, 0u64);
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    for b in data.iter() {
                        len += 1;
                        sum = sum.wrapping_mul(31).wrapping_add(u64::from(*b));
                    }
                }
            }
            ok.body(text(format!("{len} {sum}"))).unwrap()
        }
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            ok.body(text("late")).unwrap()
        }
        "/stall" => {
            let first = futures::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 1024])))
            });
            let never = futures::stream::pending();
            ok.body(BodyExt::boxed(StreamBody::new(first.chain(never))))
                .unwrap()
        }
        "/headers" => {
            let mut lines = String::new();
            for (name, value) in request.headers() {
                lines.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
            }
            ok.body(text(lines)).unwrap()
        }
        "/slow" => {
            let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(number(&request, "ms"))).await;
            counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            ok.body(text("slow")).unwrap()
        }
        "/version" => ok.body(text(format!("{:?}", request.version()))).unwrap(),
        _ => http::Response::builder()
            .status(404)
            .body(text("no such path"))
            .unwrap(),
    }
}
