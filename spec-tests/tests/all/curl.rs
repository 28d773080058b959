//! curl, as users meet it: `curl http://...`, `curl --http2-prior-knowledge`,
//! `curl --http2 -k https://...`.

use std::net::SocketAddr;
use std::process::Command;

use virga::server::TlsIdentity;

use crate::cache_harness::{Serving, serve};
use virga::{DeploymentConfig, Runtime};

struct Host {
    http: SocketAddr,
    https: SocketAddr,
    _server: Serving,
}

async fn start_hello() -> Host {
    let runtime = Runtime::builder().build().unwrap();
    let component = runtime
        .compile(&std::fs::read(virga_test_artifacts::HELLO).unwrap())
        .unwrap();
    runtime
        .deploy(DeploymentConfig::new("hello", component).route("*/*".parse().unwrap()))
        .unwrap();
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("virga-spec-curl-{}-{n}", std::process::id()));
    let (identity, _) = TlsIdentity::self_signed(&dir).unwrap();
    let server = serve(runtime, Some(identity)).await;
    Host {
        http: server.http,
        https: server.https.unwrap(),
        _server: server,
    }
}

/// Runs curl (off the async threads) and returns (body, "http_version status").
async fn curl(args: Vec<String>) -> (String, String) {
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-w",
                "\n%{http_version} %{response_code}",
            ])
            .args(&args)
            .output()
            .expect("curl is installed (.ci/run installs it)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "curl {shown}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, meta) = text.rsplit_once('\n').unwrap();
    (format!("{body}\n"), meta.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http1() {
    let host = start_hello().await;
    let (body, meta) = curl(vec![format!("http://{}/x", host.http)]).await;
    assert_eq!(body, "hello from virga\nGET /x\n\n");
    assert_eq!(meta, "1.1 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_h2c_prior_knowledge() {
    let host = start_hello().await;
    let (body, meta) = curl(vec![
        "--http2-prior-knowledge".into(),
        "-X".into(),
        "POST".into(),
        format!("http://{}/submit", host.http),
    ])
    .await;
    assert_eq!(body, "hello from virga\nPOST /submit\n\n");
    assert_eq!(meta, "2 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_h2_over_tls() {
    let host = start_hello().await;
    let (body, meta) = curl(vec![
        "--http2".into(),
        "-k".into(),
        format!("https://{}/", host.https),
    ])
    .await;
    assert_eq!(body, "hello from virga\nGET /\n\n");
    assert_eq!(meta, "2 200");
}
