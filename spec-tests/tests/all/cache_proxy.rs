//! The cache-proxy sample as an RFC 9111 shared cache, over real sockets: Virga's server with
//! the sample in front of a loopback origin the test scripts (response fields per path) and
//! counts (requests that reach it), asked with a plain HTTP/1.1 client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use virga::server::Server;
use virga::{DeploymentConfig, Runtime};

/// What the origin answers for a path: status, fields, body, and a delay before answering.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
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
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Origin {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    fn set(&self, path: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(path.to_owned(), answer);
    }

    fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    fn last(&self, path: &str) -> Seen {
        let seen = self.seen.lock().unwrap();
        seen.iter().rev().find(|s| s.path == path).unwrap().clone()
    }

    async fn start(&self) -> SocketAddr {
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
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let _ = body;
        self.seen.lock().unwrap().push(Seen {
            method,
            path: path.clone(),
            headers,
        });
        let answer = self
            .answers
            .lock()
            .unwrap()
            .get(&path)
            .cloned()
            .unwrap_or_else(|| answer(404, &[], "no such path"));
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
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }
}

/// Sends one request (its own connection) and reads the whole response.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: proxy.test\r\nconnection: close\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(out.as_bytes()).await.unwrap();
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

async fn get(addr: SocketAddr, path: &str) -> Got {
    send(addr, "GET", path, &[], "").await
}

/// Virga serving the cache-proxy sample in front of `origin`; its address.
async fn proxy(origin: SocketAddr) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let runtime = Runtime::builder().build().unwrap();
    let component = runtime
        .compile(&std::fs::read(virga_test_artifacts::CACHE_PROXY).unwrap())
        .unwrap();
    let origin = format!("http://{origin}");
    runtime
        .deploy(
            DeploymentConfig::new("proxy", component)
                .route("*/*".parse().unwrap())
                .var("origin", origin.clone())
                .var("collapse_ms", "5000")
                .allow(origin.parse().unwrap()),
        )
        .unwrap();
    let server = Server::builder(runtime)
        .http("127.0.0.1:0".parse().unwrap())
        .bind()
        .await
        .unwrap();
    let addr = server.http_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn setup() -> (Origin, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let origin = Origin::default();
    let origin_addr = origin.start().await;
    let (addr, stop) = proxy(origin_addr).await;
    (origin, addr, stop)
}

/// RFC 9111 §3, §4.2, §4.2.3, §5.1: a response with max-age is stored; the next request is
/// a hit with an Age, and does not reach the origin.
#[tokio::test]
async fn a_fresh_response_is_served_from_the_cache_with_age() {
    let (origin, addr, _stop) = setup().await;
    origin.set(
        "/page",
        answer(200, &[("cache-control", "max-age=60")], "page"),
    );
    let first = get(addr, "/page").await;
    assert_eq!((first.status, first.body.as_str()), (200, "page"));
    assert!(
        first.cache_status().contains("fwd=miss") && first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = get(addr, "/page").await;
    assert_eq!((second.status, second.body.as_str()), (200, "page"));
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    let age: u64 = second.header("age").unwrap().parse().unwrap();
    assert!(age >= 1, "age {age}");
    assert_eq!(origin.count("/page"), 1);
}

/// RFC 9111 §3: no-store and private are not stored by a shared cache; §3 + CPDoS: error
/// statuses are not stored by default.
#[tokio::test]
async fn no_store_private_and_errors_are_not_stored() {
    let (origin, addr, _stop) = setup().await;
    origin.set(
        "/nostore",
        answer(200, &[("cache-control", "max-age=60, no-store")], "x"),
    );
    origin.set(
        "/private",
        answer(200, &[("cache-control", "max-age=60, private")], "x"),
    );
    origin.set(
        "/error",
        answer(500, &[("cache-control", "max-age=60")], "boom"),
    );
    origin.set(
        "/notfound",
        answer(404, &[("cache-control", "max-age=60")], "gone"),
    );
    for path in ["/nostore", "/private", "/error", "/notfound"] {
        get(addr, path).await;
        let again = get(addr, path).await;
        assert!(
            !again.cache_status().contains("hit"),
            "{path}: {}",
            again.cache_status()
        );
        assert_eq!(origin.count(path), 2, "{path}");
    }
}

/// RFC 9111 §4.3: a stale entry is revalidated with If-None-Match; a 304 freshens it and the
/// stored body is served.
#[tokio::test]
async fn a_stale_entry_is_revalidated_and_freshened_by_304() {
    let (origin, addr, _stop) = setup().await;
    origin.set(
        "/v",
        answer(
            200,
            &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
            "body v1",
        ),
    );
    get(addr, "/v").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set(
        "/v",
        answer(
            304,
            &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
            "",
        ),
    );
    let revalidated = get(addr, "/v").await;
    assert_eq!(
        (revalidated.status, revalidated.body.as_str()),
        (200, "body v1")
    );
    assert!(
        revalidated.cache_status().contains("fwd-status=304"),
        "{}",
        revalidated.cache_status()
    );
    let seen = origin.last("/v");
    assert!(
        seen.headers
            .iter()
            .any(|(n, v)| n == "if-none-match" && v == "\"v1\""),
        "{seen:?}"
    );
    // Freshened with max-age=60: a hit now.
    let hit = get(addr, "/v").await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert_eq!(origin.count("/v"), 2);
}

/// RFC 9111 §4.4: a successful unsafe request invalidates the stored response; the method
/// override header is not forwarded.
#[tokio::test]
async fn an_unsafe_method_invalidates_and_overrides_are_stripped() {
    let (origin, addr, _stop) = setup().await;
    origin.set(
        "/doc",
        answer(200, &[("cache-control", "max-age=60")], "doc"),
    );
    get(addr, "/doc").await;
    assert!(get(addr, "/doc").await.cache_status().contains("hit"));
    let put = send(
        addr,
        "PUT",
        "/doc",
        &[
            ("content-type", "application/json"),
            ("x-http-method-override", "GET"),
        ],
        "{\"a\":1}",
    )
    .await;
    assert_eq!(put.status, 200);
    let seen = origin.last("/doc");
    assert_eq!(seen.method, "PUT");
    assert!(
        !seen
            .headers
            .iter()
            .any(|(n, _)| n == "x-http-method-override")
    );
    let after = get(addr, "/doc").await;
    assert!(
        after.cache_status().contains("fwd=miss"),
        "{}",
        after.cache_status()
    );
    assert_eq!(origin.count("/doc"), 3);
}

/// RFC 9111 §4.1: Vary keeps one response per value of the named request field.
#[tokio::test]
async fn vary_keeps_a_response_per_request_field_value() {
    let (origin, addr, _stop) = setup().await;
    origin.set(
        "/lang",
        answer(
            200,
            &[("cache-control", "max-age=60"), ("vary", "accept-language")],
            "text",
        ),
    );
    for _ in 0..2 {
        send(addr, "GET", "/lang", &[("accept-language", "en")], "").await;
        send(addr, "GET", "/lang", &[("accept-language", "fr")], "").await;
    }
    assert_eq!(origin.count("/lang"), 2);
    let fr = send(addr, "GET", "/lang", &[("accept-language", "fr")], "").await;
    assert!(fr.cache_status().contains("hit"));
}

/// Collapsing: 100 concurrent misses on one key reach the origin once.
#[tokio::test]
async fn concurrent_misses_reach_the_origin_once() {
    let (origin, addr, _stop) = setup().await;
    let mut slow = answer(200, &[("cache-control", "max-age=60")], "slow");
    slow.delay = Duration::from_millis(500);
    origin.set("/slow", slow);
    let all: Vec<_> = (0..100).map(|_| tokio::spawn(get(addr, "/slow"))).collect();
    for task in all {
        let got = task.await.unwrap();
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, "slow"),
            "{}",
            got.cache_status()
        );
    }
    assert_eq!(origin.count("/slow"), 1);
}

/// The key drops utm_* parameters and sorts the rest.
#[tokio::test]
async fn the_cache_key_is_normalized() {
    let (origin, addr, _stop) = setup().await;
    for path in ["/q?b=2&a=1", "/q?a=1&b=2&utm_source=x"] {
        origin.set(path, answer(200, &[("cache-control", "max-age=60")], "q"));
    }
    get(addr, "/q?b=2&a=1").await;
    let second = get(addr, "/q?a=1&b=2&utm_source=x").await;
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
}
