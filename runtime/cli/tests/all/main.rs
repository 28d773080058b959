//! The `virga` binary, run as a user would.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) fn virga() -> Command {
    Command::new(env!("CARGO_BIN_EXE_virga"))
}

pub(crate) fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("virga-cli-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_command_has_help() {
    for args in [&["--help"][..], &["dev", "--help"]] {
        let out = virga().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: virga"), "{args:?}: {text}");
    }
}

#[test]
fn dev_refuses_a_corrupt_wasm_with_a_clear_error() {
    let dir = tempdir("corrupt");
    let file = dir.join("broken.wasm");
    std::fs::write(&file, b"\0asm\x0d\0\x01\0this is not a component").unwrap();
    let out = virga()
        .args(["dev", "--no-watch", "--no-tls", "--http", "127.0.0.1:0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loading"), "{stderr}");
    assert!(stderr.contains("broken.wasm"), "{stderr}");
    assert!(stderr.contains("invalid component"), "{stderr}");
}

#[test]
fn dev_refuses_missing_paths_and_non_crates() {
    let out = virga()
        .args(["dev", "/nonexistent/thing.wasm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/thing.wasm does not exist")
    );
    let dir = tempdir("empty");
    let out = virga().arg("dev").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a Cargo.toml"));
}

pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `virga dev` on free ports and returns the child and the plaintext URL it printed.
fn start_dev(path: &std::path::Path) -> (Running, String) {
    start_dev_with(path, &[])
}

fn start_dev_with(path: &std::path::Path, extra: &[&str]) -> (Running, String) {
    let state = tempdir("state");
    let mut child = virga()
        .args([
            "dev",
            "--no-watch",
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(&state)
        .args(extra)
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    let tls_line = lines.next().unwrap().unwrap();
    assert!(tls_line.contains("https://127.0.0.1:"), "{tls_line}");
    assert!(tls_line.contains("self-signed.pem"), "{tls_line}");
    std::thread::spawn(move || for _ in lines {});
    (Running(child), url)
}

pub(crate) fn get(url: &str, path: &str) -> String {
    get_with(url, path, "")
}

/// GET `path` with extra header lines (each ending in CRLF); the whole response as text.
pub(crate) fn get_with(url: &str, path: &str, headers: &str) -> String {
    send(url, "GET", path, headers)
}

/// `method path` with extra header lines (each ending in CRLF), no body; the whole
/// response as text.
pub(crate) fn send(url: &str, method: &str, path: &str, headers: &str) -> String {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Length: 0\r\n{headers}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn dev_serves_a_component_on_every_route_and_stops_on_sigterm() {
    let (mut running, url) = start_dev(std::path::Path::new(virga_test_artifacts::HELLO));
    let response = get(&url, "/x");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with("hello from virga\nGET /x\n"),
        "{response}"
    );
    let response = get(&url, "/any/other/path");
    assert!(response.ends_with("GET /any/other/path\n"), "{response}");

    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = running.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn dev_lets_a_handler_fetch_from_allowed_origins_only() {
    use virga_test_artifacts::{FETCHER, HELLO};
    // One `virga dev` serves hello; another serves the fetcher, allowed to reach the first.
    let (_upstream, upstream) = start_dev(std::path::Path::new(HELLO));
    let origin = upstream.trim_end_matches('/').to_owned();
    let encoded = |url: &str| url.replace(':', "%3A").replace('/', "%2F");
    let (_fetcher, url) = start_dev_with(
        std::path::Path::new(FETCHER),
        &["--allow", &origin, "--limit", "subrequests=1"],
    );
    let response = get(
        &url,
        &format!("/proxy?url={}", encoded(&format!("{origin}/via"))),
    );
    assert!(
        response.contains("hello from virga\nGET /via\n"),
        "{response}"
    );
    let response = get(
        &url,
        &format!("/count?n=2&url={}", encoded(&format!("{origin}/x"))),
    );
    assert!(response.contains("failed at 2: subrequests"), "{response}");
    // Without --allow, the same fetch is refused by name.
    let (_closed, url) = start_dev(std::path::Path::new(FETCHER));
    let response = get(
        &url,
        &format!("/proxy?url={}", encoded(&format!("{origin}/x"))),
    );
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");
    assert!(response.contains("HTTP-request-denied"), "{response}");
    // A bad flag stops the start with the reason.
    let out = virga()
        .args(["dev", "--no-watch", "--allow", "ftp://x", FETCHER])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid origin 'ftp://x'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dev_builds_a_guest_crate() {
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/hello");
    let (_running, url) = start_dev(&hello);
    let response = get(&url, "/built");
    assert!(
        response.ends_with("hello from virga\nGET /built\n"),
        "{response}"
    );
}

mod fleet;
#[path = "../../../host/tests/all/otlp.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod otlp;
mod serve;

#[test]
fn dev_swaps_in_a_changed_component() {
    let dir = tempdir("dev-reload");
    let wasm = dir.join("app.wasm");
    std::fs::copy(virga_test_artifacts::HELLO, &wasm).unwrap();
    let state = tempdir("dev-reload-state");
    let mut child = virga()
        .args(["dev", "--no-tls", "--http", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .arg(&wasm)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let _running = Running(child);
    assert!(get(&url, "/a").ends_with("hello from virga\nGET /a\n"));

    // A broken component: the old version keeps serving.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&wasm, b"not a component").unwrap();
    let failed = errors
        .find(|l| l.as_ref().is_ok_and(|l| l.contains("reload failed")))
        .unwrap()
        .unwrap();
    assert!(
        failed.starts_with("reload failed, still serving the previous version: invalid component"),
        "{failed}"
    );
    assert!(get(&url, "/b").ends_with("hello from virga\nGET /b\n"));

    // A good new component is swapped in.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::copy(virga_test_artifacts::COUNTER, &wasm).unwrap();
    let reloaded = lines.next().unwrap().unwrap();
    assert_eq!(reloaded, "reloaded: version 2 is live");
    assert!(
        get(&url, "/c").ends_with("\r\n\r\n1\n"),
        "{}",
        get(&url, "/c")
    );
}
