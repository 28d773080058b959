//! HTTP/3 with aioquic, an independent QUIC and HTTP/3 implementation in Python
//! (`interop/h3client.py`, pinned in `interop/requirements.txt`, installed into
//! `interop/.venv` by `scripts/test`): every request of a test goes at once, as concurrent
//! streams on one connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use virga::server::TlsIdentity;
use virga::{DeploymentConfig, Limits, Runtime};

use crate::cache_harness::{Serving, serve};

struct Host {
    h3: SocketAddr,
    ca: PathBuf,
    _server: Serving,
}

/// A host serving `guests` (artifact path, route), each with `limits`, over TLS and HTTP/3.
async fn start(guests: &[(&str, &str)], limits: Limits) -> Host {
    let runtime = Runtime::builder().build().unwrap();
    for (i, (path, route)) in guests.iter().enumerate() {
        let component = runtime.compile(&std::fs::read(path).unwrap()).unwrap();
        runtime
            .deploy(
                DeploymentConfig::new(format!("g{i}"), component)
                    .route(route.parse().unwrap())
                    .limits(limits.clone()),
            )
            .unwrap();
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("virga-spec-h3-{}-{n}", std::process::id()));
    let (identity, ca) = TlsIdentity::self_signed(&dir).unwrap();
    let server = serve(runtime, Some(identity)).await;
    Host {
        h3: server.h3.expect("HTTP/3 is served"),
        ca,
        _server: server,
    }
}

/// Sends `requests` (method, path, request body length) over one aioquic connection.
async fn aioquic(host: &Host, requests: &[(&str, String, usize)]) -> Vec<Value> {
    let input: Vec<Value> = requests
        .iter()
        .map(|(method, path, len)| serde_json::json!({"method": method, "path": path, "body_len": len}))
        .collect();
    let input = serde_json::to_vec(&input).unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop");
    let python = dir.join(".venv/bin/python");
    let args = [
        dir.join("h3client.py").display().to_string(),
        host.h3.ip().to_string(),
        host.h3.port().to_string(),
        host.ca.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(&python)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{} (scripts/test installs aioquic): {e}", python.display())
            });
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "aioquic client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the tests' pattern body of `len` bytes hashes to (byte i is i * 7 % 256).
fn pattern_sha256(len: usize) -> String {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_gets_hello_and_a_hundred_concurrent_streams() {
    let host = start(&[(virga_test_artifacts::HELLO, "*/*")], Limits::default()).await;
    let requests: Vec<_> = (0..100).map(|i| ("GET", format!("/r{i}"), 0)).collect();
    let replies = aioquic(&host, &requests).await;
    assert_eq!(replies.len(), 100);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["status"], 200, "{reply}");
        assert_eq!(reply["text"], format!("hello from virga\nGET /r{i}\n"));
        assert!(reply["headers"].get("alt-svc").is_none(), "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_posts_and_gets_bodies_of_0_b_1_kib_and_8_mib() {
    // Host calls that return without waiting are the guest's CPU time, and a debug host
    // lifts the bytes of each write from guest memory one by one: generating 8 MiB takes
    // far longer than the default 50 ms there (a release host streams ~400 MiB in 50 ms).
    let limits = Limits::default().cpu_time(std::time::Duration::from_secs(5));
    let host = start(&[(virga_test_artifacts::ECHO, "*/*")], limits).await;
    let mut requests = Vec::new();
    for len in [0, 1024, 8 << 20] {
        requests.push(("POST", "/echo".to_owned(), len));
        requests.push(("GET", format!("/generate?bytes={len}"), 0));
        requests.push(("PUT", "/sum".to_owned(), len));
    }
    let replies = aioquic(&host, &requests).await;
    for (reply, (method, path, len)) in replies.iter().zip(&requests) {
        assert_eq!(reply["status"], 200, "{method} {path} {len}: {reply}");
        match *method {
            "POST" => {
                assert_eq!(reply["len"], *len);
                assert_eq!(reply["sha256"], pattern_sha256(*len), "echo of {len} bytes");
            }
            "GET" => {
                let len: usize = path.rsplit('=').next().unwrap().parse().unwrap();
                assert_eq!(reply["len"], len, "generated length");
            }
            _ => assert!(
                reply["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{len} ")),
                "{reply}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_sees_a_looping_request_cut_while_its_neighbours_complete() {
    let host = start(
        &[
            (virga_test_artifacts::LOOPING, "*/loop"),
            (virga_test_artifacts::HELLO, "*/*"),
        ],
        Limits::default().cpu_time(std::time::Duration::from_millis(100)),
    )
    .await;
    let mut requests = vec![("GET", "/loop".to_owned(), 0)];
    requests.extend((0..20).map(|i| ("GET", format!("/n{i}"), 0)));
    let replies = aioquic(&host, &requests).await;
    assert_eq!(replies[0]["status"], 503, "{}", replies[0]);
    assert!(
        replies[0]["text"]
            .as_str()
            .unwrap()
            .contains("cpu-time limit"),
        "{}",
        replies[0]
    );
    for reply in &replies[1..] {
        assert_eq!(reply["status"], 200, "{reply}");
    }
}
