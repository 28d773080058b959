//! For the cache tests: a loopback origin the test scripts (response per path) and counts
//! (requests that reach it), a plain HTTP/1.1 client, and Virga's server running the
//! cache-proxy sample in front of the origin.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use virga::server::{Server, TlsIdentity};
use virga::{DeploymentConfig, Limits, MokaCache, Runtime};

/// What the origin answers for a path: status, fields, body, and a delay before answering.
#[derive(Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    pub(crate) delay: Duration,
}

pub(crate) fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    Answer {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

/// The request head the origin saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub(crate) struct Origin {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answers like a fragile framework: 400 to a header over 4 KiB, 405 to a method
    /// override, both marked cacheable (the origins of the CPDoS attacks).
    strict: Arc<std::sync::atomic::AtomicBool>,
}

impl Origin {
    pub(crate) fn set(&self, path: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(path.to_owned(), answer);
    }

    /// Makes the origin answer oversized headers and method overrides with cacheable errors.
    pub(crate) fn be_strict(&self) {
        self.strict
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The names of every header the origin has seen.
    pub(crate) fn seen_headers(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .flat_map(|s| s.headers.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    pub(crate) fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    pub(crate) fn last(&self, path: &str) -> Seen {
        let seen = self.seen.lock().unwrap();
        seen.iter().rev().find(|s| s.path == path).unwrap().clone()
    }

    pub(crate) async fn start(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(origin.clone().serve(stream));
            }
        });
        addr
    }

    /// One request per connection, answered with `Connection: close`.
    async fn serve(self, mut stream: TcpStream) {
        let (head, body) = read_message(&mut stream).await;
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or("").split(' ');
        let (method, path) = (
            first.next().unwrap_or("").to_owned(),
            first.next().unwrap_or("").to_owned(),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let _ = body;
        let strict_error = if !self.strict.load(std::sync::atomic::Ordering::Relaxed) {
            None
        } else if headers.iter().any(|(_, v)| v.len() > 4096) {
            Some(answer(
                400,
                &[("cache-control", "max-age=600")],
                "header too large",
            ))
        } else if headers.iter().any(|(n, _)| n.starts_with("x-http-method")) {
            Some(answer(
                405,
                &[("cache-control", "max-age=600")],
                "method not allowed",
            ))
        } else {
            None
        };
        self.seen.lock().unwrap().push(Seen {
            method,
            path: path.clone(),
            headers,
        });
        let answer = strict_error.unwrap_or_else(|| {
            self.answers
                .lock()
                .unwrap()
                .get(&path)
                .cloned()
                .unwrap_or_else(|| answer(404, &[], "no such path"))
        });
        tokio::time::sleep(answer.delay).await;
        let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", answer.status);
        for (n, v) in &answer.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if answer.status != 304 {
            out.push_str(&format!("content-length: {}\r\n", answer.body.len()));
        }
        out.push_str("\r\n");
        if answer.status != 304 {
            out.push_str(&answer.body);
        }
        let _ = stream.write_all(out.as_bytes()).await;
    }
}

/// Reads one HTTP/1.1 message (head and a `Content-Length` body).
async fn read_message(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return (String::from_utf8_lossy(&buf).into_owned(), Vec::new());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

/// A response as the client saw it.
pub(crate) struct Got {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Got {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }
}

/// Sends one request (its own connection) and reads the whole response.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    send_bytes(addr, method, path, headers, body.as_bytes()).await
}

/// [`send`] with a body of any bytes.
pub(crate) async fn send_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Got {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let host = headers
        .iter()
        .find(|(n, _)| *n == "host")
        .map_or("proxy.test", |(_, v)| *v);
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (n, v) in headers.iter().filter(|(n, _)| *n != "host") {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await.unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Got {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> Got {
    send(addr, "GET", path, &[], "").await
}

/// Virga serving cache-proxy deployments in front of one origin.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    pub(crate) cache: Arc<MokaCache>,
    _server: Serving,
}

/// A cache-proxy deployment: its name, route, and cache share (bytes).
pub(crate) struct Site<'a> {
    pub(crate) name: &'a str,
    pub(crate) route: &'a str,
    pub(crate) quota: u64,
}

/// Starts Virga with a cache of `capacity` bytes and one cache-proxy deployment per site, all
/// in front of `origin`, with `vars` set on each.
pub(crate) async fn start_proxy(
    origin: SocketAddr,
    capacity: u64,
    sites: &[Site<'_>],
    vars: &[(&str, &str)],
) -> Proxy {
    let cache = Arc::new(MokaCache::new(capacity));
    let runtime = Runtime::builder()
        .cache_backend(cache.clone())
        .build()
        .unwrap();
    let component = runtime
        .compile(&std::fs::read(virga_test_artifacts::CACHE_PROXY).unwrap())
        .unwrap();
    let origin = format!("http://{origin}");
    for site in sites {
        let mut config = DeploymentConfig::new(site.name, component.clone())
            .route(site.route.parse().unwrap())
            .var("origin", origin.clone())
            .allow(origin.parse().unwrap())
            .limits(Limits::default().cache(site.quota));
        for (name, value) in vars {
            config = config.var(*name, *value);
        }
        runtime.deploy(config).unwrap();
    }
    let server = serve(runtime, None).await;
    Proxy {
        addr: server.http,
        cache,
        _server: server,
    }
}

/// Virga's server running on loopback until dropped.
pub(crate) struct Serving {
    pub(crate) http: SocketAddr,
    /// The HTTP/1.1 and HTTP/2 over TLS address, when served.
    pub(crate) https: Option<SocketAddr>,
    /// The HTTP/3 (UDP) address: the TLS port, when TLS is served.
    pub(crate) h3: Option<SocketAddr>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `runtime` on loopback: plain HTTP, and TLS with `tls` when given.
pub(crate) async fn serve(runtime: Runtime, tls: Option<TlsIdentity>) -> Serving {
    let mut builder = Server::builder(runtime).http("127.0.0.1:0".parse().unwrap());
    if let Some(identity) = tls {
        builder = builder
            .https("127.0.0.1:0".parse().unwrap(), identity)
            .http3(virga::server::Http3::default());
    }
    let server = builder.bind().await.unwrap();
    let (http, https) = (server.http_addr().unwrap(), server.https_addr());
    let h3 = server.h3_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Serving {
        http,
        https,
        h3,
        _stop: stop,
    }
}

/// An origin and one cache-proxy deployment (`purge_token` "secret") in front of it.
pub(crate) async fn setup() -> (Origin, Proxy) {
    let origin = Origin::default();
    let origin_addr = origin.start().await;
    let site = Site {
        name: "proxy",
        route: "*/*",
        quota: 64 << 20,
    };
    let proxy = start_proxy(
        origin_addr,
        256 << 20,
        &[site],
        &[("purge_token", "secret")],
    )
    .await;
    (origin, proxy)
}
