//! The DoH sample (RFC 8484) with real DNS clients and a real resolver: unbound on loopback
//! serves a test zone over plain DNS and over DoH (with a test certificate); Virga runs the
//! sample in front of unbound's DoH endpoint; `kdig +https` (POST), `kdig +https-get`,
//! `dig +https` and `curl --doh-url` ask through Virga, and the answers must match asking
//! unbound directly. unbound's own counters show what reached it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use virga::server::TlsIdentity;
use virga::{DeploymentConfig, Limits, Runtime};

use crate::cache_harness::{Got, Serving, send, send_bytes, serve};

const ZONE: &str = r#"
    local-zone: "." refuse
    local-zone: "test." static
    local-data: "test. 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60"
    local-data: "www.test. 300 IN A 192.0.2.1"
    local-data: "www.test. 300 IN AAAA 2001:db8::1"
    local-data: "txt.test. 300 IN TXT \"hello doh\""
    local-data: "short.test. 2 IN A 192.0.2.2"
    local-data: "web.test. 300 IN A 127.0.0.1"
"#;

fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free loopback ports: every listener is held until all are picked, so no two
/// are the same.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// unbound on loopback: plain DNS on `dns`, DoH on `doh`, remote control on `control`.
struct Unbound {
    child: Child,
    dns: u16,
    doh: u16,
    dir: PathBuf,
    cert_der: Vec<u8>,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Unbound {
    fn start() -> Unbound {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("virga-unbound-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        let [dns, doh, control] = free_ports();
        let config = format!(
            r#"server:
    interface: 127.0.0.1@{dns}
    interface: 127.0.0.1@{doh}
    https-port: {doh}
    http-endpoint: "/dns-query"
    tls-service-key: "{dir}/key.pem"
    tls-service-pem: "{dir}/cert.pem"
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    num-threads: 1
    do-ip6: no
    {ZONE}
remote-control:
    control-enable: yes
    control-interface: 127.0.0.1
    control-port: {control}
    control-use-cert: no
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("unbound.conf"), config).unwrap();
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(dir.join("unbound.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("unbound.log")).unwrap())
            .spawn()
            .expect("unbound runs (scripts/test installs it)");
        let unbound = Unbound {
            child,
            dns,
            doh,
            dir,
            cert_der: cert.cert.der().to_vec(),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", doh)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", dns)).is_ok()
            {
                return unbound;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "unbound did not start: {}",
            std::fs::read_to_string(unbound.dir.join("unbound.log")).unwrap_or_default()
        );
    }

    /// Queries unbound has answered so far (all transports).
    fn queries(&self) -> u64 {
        let out = Command::new("unbound-control")
            .arg("-c")
            .arg(self.dir.join("unbound.conf"))
            .arg("stats_noreset")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("total.num.queries="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no stats: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Virga with the DoH sample at `/dns-query` in front of `upstream` (and hello elsewhere),
/// over plain HTTP and HTTP/2 with TLS.
struct Virga {
    http: SocketAddr,
    https: SocketAddr,
    _server: Serving,
}

async fn start_virga(unbound: &Unbound, vars: &[(&str, &str)], allow: &[String]) -> Virga {
    let runtime = Runtime::builder()
        .extra_root_certificates([unbound.cert_der.clone().into()])
        .build()
        .unwrap();
    let doh = runtime
        .compile(&std::fs::read(virga_test_artifacts::DOH).unwrap())
        .unwrap();
    let hello = runtime
        .compile(&std::fs::read(virga_test_artifacts::HELLO).unwrap())
        .unwrap();
    let upstream = format!("https://127.0.0.1:{}/dns-query", unbound.doh);
    let mut config = DeploymentConfig::new("doh", doh)
        .route("*/dns-query".parse().unwrap())
        .var("upstream", upstream)
        .allow(
            format!("https://127.0.0.1:{}", unbound.doh)
                .parse()
                .unwrap(),
        )
        .limits(Limits::default().first_byte_timeout(Duration::from_secs(1)));
    for (name, value) in vars {
        config = config.var(*name, *value);
    }
    for origin in allow {
        config = config.allow(origin.parse().unwrap());
    }
    runtime.deploy(config).unwrap();
    runtime
        .deploy(DeploymentConfig::new("hello", hello).route("*/*".parse().unwrap()))
        .unwrap();
    let (identity, _) = TlsIdentity::self_signed(&unbound.dir.join("virga")).unwrap();
    let server = serve(runtime, Some(identity)).await;
    Virga {
        http: server.http,
        https: server.https.unwrap(),
        _server: server,
    }
}

/// Runs a client off the test's thread (the server runs on it) and returns its stdout.
async fn run(program: &'static str, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(program).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// The answer section's data, sorted: what must match between resolvers.
fn answers(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(|l| l.split_whitespace().last().unwrap_or("").to_owned())
        .collect();
    lines.sort();
    lines
}

fn kdig_args(server: &str, port: u16, extra: &[&str], name: &str, kind: &str) -> Vec<String> {
    let mut args = vec![format!("@{server}"), "-p".into(), port.to_string()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.extend(["+short".into(), name.into(), kind.into()]);
    args
}

/// A DNS query in wire form: `id`, one question (`name`, `kind`), RD set.
fn wire_query(id: u16, name: &str, kind: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&kind.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

async fn get_query(addr: SocketAddr, query: &[u8]) -> Got {
    let path = format!("/dns-query?dns={}", URL_SAFE_NO_PAD.encode(query));
    send(
        addr,
        "GET",
        &path,
        &[("accept", "application/dns-message")],
        "",
    )
    .await
}

#[tokio::test]
async fn real_clients_get_the_answers_unbound_gives() {
    let unbound = Unbound::start();
    let virga = start_virga(&unbound, &[], &[]).await;
    let port = virga.https.port();
    for (name, kind) in [
        ("www.test", "A"),
        ("www.test", "AAAA"),
        ("txt.test", "TXT"),
        ("nope.test", "A"),
    ] {
        let direct = run("kdig", kdig_args("127.0.0.1", unbound.dns, &[], name, kind)).await;
        for (client, extra) in [
            ("kdig", &["+https=/dns-query"][..]),
            ("kdig", &["+https-get=/dns-query"][..]),
            ("dig", &["+https"][..]),
        ] {
            let through = run(client, kdig_args("127.0.0.1", port, extra, name, kind)).await;
            assert_eq!(
                answers(&through),
                answers(&direct),
                "{client} {extra:?} {name} {kind}"
            );
        }
        if name == "www.test" {
            assert!(
                !answers(&direct).is_empty(),
                "the zone answers {name} {kind}"
            );
        }
    }
    let status = run(
        "kdig",
        vec![
            "@127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "+https".into(),
            "nope.test".into(),
        ],
    )
    .await;
    assert!(status.contains("NXDOMAIN"), "{status}");
}

#[tokio::test]
async fn curl_resolves_a_name_through_doh() {
    let unbound = Unbound::start();
    let virga = start_virga(&unbound, &[], &[]).await;
    let body = run(
        "curl",
        vec![
            "-sS".into(),
            "--doh-insecure".into(),
            "--doh-url".into(),
            format!("https://127.0.0.1:{}/dns-query", virga.https.port()),
            format!("http://web.test:{}/x", virga.http.port()),
        ],
    )
    .await;
    assert!(body.starts_with("hello from virga"), "{body}");
}

#[tokio::test]
async fn answers_are_cached_with_ttls_that_count_down() {
    let unbound = Unbound::start();
    let virga = start_virga(&unbound, &[], &[]).await;
    let before = unbound.queries();
    let first = get_query(virga.http, &wire_query(1, "www.test", 1)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.header("content-type"),
        Some("application/dns-message")
    );
    assert_eq!(first.header("cache-control"), Some("max-age=300"));
    assert_eq!(unbound.queries(), before + 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = get_query(virga.http, &wire_query(2, "WWW.test", 1)).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        &second.body.as_bytes()[..2],
        &[0, 2],
        "the client's message ID"
    );
    assert_eq!(
        unbound.queries(),
        before + 1,
        "the second query did not reach unbound"
    );
    let max_age: u32 = second
        .header("cache-control")
        .and_then(|v| v.strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((290..=298).contains(&max_age), "max-age {max_age}");
    // The client's ID comes back, and the TTL in the message counted down too.
    let ttls = run(
        "kdig",
        vec![
            "@127.0.0.1".into(),
            "-p".into(),
            virga.https.port().to_string(),
            "+https".into(),
            "+noall".into(),
            "+answer".into(),
            "www.test".into(),
            "A".into(),
        ],
    )
    .await;
    let ttl: u32 = ttls.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(ttl < 300, "{ttls}");
    assert_eq!(unbound.queries(), before + 1);
    // A negative answer is cached for the SOA minimum (RFC 2308 §5: min(60, 3600)).
    let n = unbound.queries();
    let nx = get_query(virga.http, &wire_query(5, "nope.test", 1)).await;
    assert_eq!(nx.header("cache-control"), Some("max-age=60"));
    get_query(virga.http, &wire_query(6, "nope.test", 1)).await;
    assert_eq!(
        unbound.queries(),
        n + 1,
        "the NXDOMAIN was served from the cache"
    );
    // An entry past its TTL is fetched again.
    get_query(virga.http, &wire_query(3, "short.test", 1)).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let n = unbound.queries();
    get_query(virga.http, &wire_query(4, "short.test", 1)).await;
    assert_eq!(unbound.queries(), n + 1, "an expired answer is refetched");
}

#[tokio::test]
async fn the_json_form_answers_json() {
    let unbound = Unbound::start();
    let virga = start_virga(&unbound, &[], &[]).await;
    let got = send(
        virga.http,
        "GET",
        "/dns-query?name=www.test&type=A",
        &[("accept", "application/dns-json")],
        "",
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("content-type"), Some("application/dns-json"));
    let json: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(json["Status"], 0);
    assert_eq!(json["Answer"][0]["data"], "192.0.2.1");
    assert_eq!(json["Answer"][0]["type"], 1);
}

/// An upstream that accepts connections and never answers.
async fn hanging_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// An upstream that answers 200 with bytes that are not DNS.
async fn garbage_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 70_000];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/dns-message\r\ncontent-length: 7\r\nconnection: close\r\n\r\nnot dns")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn bad_input_gets_a_clear_status() {
    let unbound = Unbound::start();
    let virga = start_virga(&unbound, &[], &[]).await;
    let addr = virga.http;
    let query = wire_query(7, "www.test", 1);
    let mut response_bit = query.clone();
    response_bit[2] |= 0x80;
    let mut no_question = query.clone();
    no_question[5] = 0;
    no_question.truncate(12);
    let dm = [("content-type", "application/dns-message")];
    let cases: Vec<(Got, u16, &str)> = vec![
        (
            send(addr, "GET", "/dns-query?dns=!!!", &[], "").await,
            400,
            "not base64url",
        ),
        (
            get_query(addr, &query[..15]).await,
            400,
            "malformed DNS message",
        ),
        (
            get_query(addr, &response_bit).await,
            400,
            "a response, not a query",
        ),
        (get_query(addr, &no_question).await, 400, "no question"),
        (
            send_bytes(addr, "POST", "/dns-query", &dm, &vec![0u8; 70_000]).await,
            413,
            "larger than 65535",
        ),
        (
            send_bytes(
                addr,
                "POST",
                "/dns-query",
                &[("content-type", "text/plain")],
                &query,
            )
            .await,
            415,
            "application/dns-message",
        ),
        (
            send(addr, "PUT", "/dns-query", &[], "").await,
            405,
            "GET and POST",
        ),
        (
            send(addr, "GET", "/dns-query", &[], "").await,
            400,
            "needs a dns parameter",
        ),
    ];
    for (got, status, reason) in &cases {
        assert_eq!(got.status, *status, "{reason}: {}", got.body);
        assert!(got.body.contains(reason), "{reason}: {}", got.body);
    }
    let ok = send_bytes(addr, "POST", "/dns-query", &dm, &query).await;
    assert_eq!(ok.status, 200, "the host is unharmed: {}", ok.body);
}

#[tokio::test]
async fn upstream_failures_are_502_or_504() {
    let unbound = Unbound::start();
    let closed = free_port();
    let hanging = hanging_upstream().await;
    let garbage = garbage_upstream().await;
    let query = wire_query(9, "www.test", 1);
    for (upstream, status, reason) in [
        (
            format!("http://127.0.0.1:{closed}/dns-query"),
            502,
            "failed",
        ),
        (format!("http://{hanging}/dns-query"), 504, "timeout"),
        (format!("http://{garbage}/dns-query"), 502, "not DNS"),
    ] {
        let origin = upstream.trim_end_matches("/dns-query").to_owned();
        let virga = start_virga(&unbound, &[("upstream", &upstream)], &[origin]).await;
        let got = get_query(virga.http, &query).await;
        assert_eq!(got.status, status, "{upstream}: {}", got.body);
        assert!(got.body.contains(reason), "{upstream}: {}", got.body);
    }
    // With a fallback, the failed upstream is skipped.
    let virga = start_virga(
        &unbound,
        &[
            ("upstream", &format!("http://127.0.0.1:{closed}/dns-query")),
            (
                "fallback",
                &format!("https://127.0.0.1:{}/dns-query", unbound.doh),
            ),
        ],
        &[format!("http://127.0.0.1:{closed}")],
    )
    .await;
    assert_eq!(get_query(virga.http, &query).await.status, 200);
}
