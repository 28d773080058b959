//! The Privacy Pass samples (RFC 9577, RFC 9578 token type 0x0002) over real sockets: the RFC
//! 9578 Appendix A.2 vector through the origin, Cloudflare's `@cloudflare/privacypass-ts`
//! (node, `spec-tests/interop`) as the client of our issuer and origin and as an issuer whose
//! tokens our origin accepts, and bad input at both.

use std::net::SocketAddr;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use virga::{DeploymentConfig, Runtime, StaticKeys};

use crate::cache_harness::{Got, Serving, send, send_bytes, serve};
use crate::rfc9474::{NEW_KEY, python};

const ALG: &str = "rsabssa-sha384-pss-deterministic";

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).unwrap()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The origin's settings: issuer name, origin info, redemption context, token key (SPKI).
struct OriginSettings {
    issuer_name: String,
    origin_info: String,
    context: Vec<u8>,
    token_key: Vec<u8>,
}

/// Virga with the issuer sample (host key `issuer`, fresh RSA-2048) on the issuer's two paths
/// and, if given, the origin sample on every other path.
struct Host {
    addr: SocketAddr,
    runtime: Runtime,
    _server: Serving,
}

async fn start(origin: Option<&OriginSettings>) -> Host {
    let mut keys = StaticKeys::new();
    keys.add("issuer", "issuer", ALG, &unhex(&python(NEW_KEY, &[])))
        .unwrap();
    let runtime = Runtime::builder()
        .key_store(std::sync::Arc::new(keys))
        .build()
        .unwrap();
    let issuer = runtime
        .compile(&std::fs::read(virga_test_artifacts::PRIVACY_PASS_ISSUER).unwrap())
        .unwrap();
    runtime
        .deploy(
            DeploymentConfig::new("issuer", issuer)
                .route(
                    "*/.well-known/private-token-issuer-directory"
                        .parse()
                        .unwrap(),
                )
                .route("*/token-request".parse().unwrap())
                .limits(test_limits()),
        )
        .unwrap();
    if let Some(settings) = origin {
        deploy_origin(&runtime, "origin", "*/*", settings);
    }
    let server = serve(runtime.clone(), None).await;
    Host {
        addr: server.http,
        runtime,
        _server: server,
    }
}

/// Host crypto time counts as guest CPU time, measured on the clock: on a test machine
/// running many tests at once an RSA operation can take longer than the 50 ms default.
fn test_limits() -> virga::Limits {
    virga::Limits::default().cpu_time(std::time::Duration::from_secs(2))
}

fn deploy_origin(runtime: &Runtime, name: &str, route: &str, s: &OriginSettings) {
    let origin = runtime
        .compile(&std::fs::read(virga_test_artifacts::PRIVACY_PASS_ORIGIN).unwrap())
        .unwrap();
    let mut config = DeploymentConfig::new(name, origin)
        .route(route.parse().unwrap())
        .limits(test_limits())
        .var("issuer_name", s.issuer_name.clone())
        .var("origin_info", s.origin_info.clone())
        .var("token_key", URL_SAFE_NO_PAD.encode(&s.token_key));
    if !s.context.is_empty() {
        config = config.var("redemption_context", URL_SAFE_NO_PAD.encode(&s.context));
    }
    runtime.deploy(config).unwrap();
}

/// The RFC 9578 A.2 vector and the origin settings its challenge implies.
fn vector() -> (OriginSettings, Vec<u8>) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/rfc9578-a2-token-type2-vector1.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let challenge = b64(v["challenge"].as_str().unwrap());
    // TokenChallenge: type(2) | issuer_name<2> | redemption_context<1> | origin_info<2>.
    let name_len = usize::from(u16::from_be_bytes([challenge[2], challenge[3]]));
    let issuer_name = &challenge[4..4 + name_len];
    let at = 4 + name_len;
    let context_len = usize::from(challenge[at]);
    let context = &challenge[at + 1..at + 1 + context_len];
    let at = at + 1 + context_len;
    let origin_info = &challenge[at + 2..];
    let settings = OriginSettings {
        issuer_name: String::from_utf8(issuer_name.to_vec()).unwrap(),
        origin_info: String::from_utf8(origin_info.to_vec()).unwrap(),
        context: context.to_vec(),
        token_key: b64(v["token_key"].as_str().unwrap()),
    };
    (settings, b64(v["token"].as_str().unwrap()))
}

/// The issuer key our issuer's directory publishes (checking the directory's media type).
async fn published_key(addr: SocketAddr) -> Vec<u8> {
    let path = "/.well-known/private-token-issuer-directory";
    let directory = send(addr, "GET", path, &[], "").await;
    assert_eq!(directory.status, 200);
    assert_eq!(
        directory.header("content-type"),
        Some("application/private-token-issuer-directory")
    );
    let parsed: serde_json::Value = serde_json::from_str(&directory.body).unwrap();
    b64(parsed["token-keys"][0]["token-key"].as_str().unwrap())
}

fn authorization(token: &[u8]) -> String {
    format!("PrivateToken token=\"{}\"", URL_SAFE_NO_PAD.encode(token))
}

async fn redeem(addr: SocketAddr, value: &str) -> Got {
    send(addr, "GET", "/protected", &[("authorization", value)], "").await
}

/// Runs the interop script (spec-tests/interop, `npm ci` by scripts/test and .ci/run).
fn node(args: &[&str]) -> serde_json::Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/interop");
    let out = Command::new("node")
        .current_dir(dir)
        .arg("privacypass.mjs")
        .args(args)
        .output()
        .expect("node runs (scripts/setup installs nodejs)");
    assert!(
        out.status.success(),
        "node {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_rfc9578_vector_token_is_accepted_once() {
    let (settings, token) = vector();
    let host = start(Some(&settings)).await;
    let challenged = send(host.addr, "GET", "/protected", &[], "").await;
    assert_eq!(challenged.status, 401);
    let www = challenged.header("www-authenticate").unwrap();
    assert!(www.starts_with("PrivateToken challenge=\""), "{www}");
    let first = redeem(host.addr, &authorization(&token)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = redeem(host.addr, &authorization(&token)).await;
    assert_eq!(again.status, 401);
    assert!(again.body.contains("already redeemed"), "{}", again.body);
}

#[tokio::test]
async fn cloudflare_client_gets_a_token_from_our_issuer_and_redeems_it_once() {
    // The origin trusts the key the issuer publishes.
    let host = start(None).await;
    let token_key = published_key(host.addr).await;
    let settings = OriginSettings {
        issuer_name: "issuer.test".into(),
        origin_info: "origin.test".into(),
        context: Vec::new(),
        token_key,
    };
    deploy_origin(&host.runtime, "origin", "*/*", &settings);
    let base = format!("http://{}", host.addr);
    // Off the test's thread: the server runs on it meanwhile.
    let origin_url = format!("{base}/protected");
    let result = tokio::task::spawn_blocking(move || node(&["redeem", &base, &origin_url]))
        .await
        .unwrap();
    assert_eq!(result["first"], 200, "{result}");
    assert_eq!(result["second"], 401, "{result}");
}

#[tokio::test]
async fn tokens_minted_by_cloudflare_issuer_are_accepted_by_our_origin() {
    let minted = node(&["mint", "issuer.example", "origin.example"]);
    let settings = OriginSettings {
        issuer_name: "issuer.example".into(),
        origin_info: "origin.example".into(),
        context: Vec::new(),
        token_key: b64(minted["token_key"].as_str().unwrap()),
    };
    let host = start(Some(&settings)).await;
    let header = minted["authorization"].as_str().unwrap();
    assert_eq!(redeem(host.addr, header).await.status, 200);
    assert_eq!(redeem(host.addr, header).await.status, 401);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let (settings, token) = vector();
    let host = start(Some(&settings)).await;
    let other = OriginSettings {
        origin_info: "elsewhere.example".into(),
        ..vector().0
    };
    deploy_origin(&host.runtime, "other", "*/other/*", &other);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut t = token.clone();
        f(&mut t);
        authorization(&t)
    };
    let huge = format!("PrivateToken token=\"{}\"", "A".repeat(6000));
    let cases: Vec<(String, u16, &str)> = vec![
        ("Bearer abc".into(), 400, "not PrivateToken"),
        ("PrivateToken".into(), 400, "no token parameter"),
        ("PrivateToken token=\"!!!\"".into(), 400, "not base64url"),
        (huge, 400, "over 4096 bytes"),
        (with(&|t| t[1] = 1), 401, "token type 0x0001"),
        (with(&|t| t.truncate(200)), 401, "is 354 bytes, not 200"),
        (with(&|t| t[70] ^= 1), 401, "token_key_id"),
        (with(&|t| t[40] ^= 1), 401, "another challenge"),
        (with(&|t| t[300] ^= 1), 401, "does not verify"),
    ];
    for (value, status, reason) in &cases {
        let got = redeem(host.addr, value).await;
        assert_eq!(got.status, *status, "{value:.60}: {}", got.body);
        assert!(got.body.contains(reason), "{value:.60}: {}", got.body);
    }
    // Padded base64url is accepted too; the token of another origin's challenge is not.
    let padded = format!(
        "PrivateToken token=\"{}\"",
        base64::engine::general_purpose::URL_SAFE.encode(&token)
    );
    let elsewhere = send(
        host.addr,
        "GET",
        "/other/x",
        &[("authorization", &padded)],
        "",
    )
    .await;
    assert_eq!(elsewhere.status, 401);
    assert!(
        elsewhere.body.contains("another challenge"),
        "{}",
        elsewhere.body
    );
    assert_eq!(redeem(host.addr, &padded).await.status, 200);
}

/// A token request, its fields, and the status and reason expected.
type BadRequest<'a> = (Vec<u8>, &'a [(&'a str, &'a str)], u16, &'a str);

#[tokio::test]
async fn malformed_token_requests_are_refused_by_the_issuer() {
    let host = start(None).await;
    let spki = published_key(host.addr).await;
    let key_id_last = {
        let digest = python(
            "import sys, hashlib; print(hashlib.sha256(bytes.fromhex(sys.argv[1])).hexdigest())",
            &[&spki.iter().map(|b| format!("{b:02x}")).collect::<String>()],
        );
        unhex(&digest)[31]
    };
    let request = |kind: u16, id: u8, blinded: &[u8]| {
        let mut r = kind.to_be_bytes().to_vec();
        r.push(id);
        r.extend_from_slice(blinded);
        r
    };
    let ok_type = [("content-type", "application/private-token-request")];
    let cases: Vec<BadRequest<'_>> = vec![
        (
            request(2, key_id_last, &[1; 256]),
            &[("content-type", "text/plain")],
            415,
            "application/private-token-request",
        ),
        (
            request(2, key_id_last, &[1; 100]),
            &ok_type,
            400,
            "259 bytes, not 103",
        ),
        (
            request(1, key_id_last, &[1; 256]),
            &ok_type,
            400,
            "token type 0x0001",
        ),
        (
            request(2, key_id_last.wrapping_add(1), &[1; 256]),
            &ok_type,
            400,
            "truncated_token_key_id",
        ),
        (
            request(2, key_id_last, &[0xff; 256]),
            &ok_type,
            400,
            "not smaller than the modulus",
        ),
        (vec![0; 10_000], &ok_type, 413, "larger than 4096 bytes"),
    ];
    for (body, headers, status, reason) in &cases {
        let got = send_bytes(host.addr, "POST", "/token-request", headers, body).await;
        assert_eq!(got.status, *status, "{reason}: {}", got.body);
        assert!(got.body.contains(reason), "{reason}: {}", got.body);
    }
    let get = send(host.addr, "GET", "/token-request", &[], "").await;
    assert_eq!(get.status, 405);
    let valid = send_bytes(
        host.addr,
        "POST",
        "/token-request",
        &ok_type,
        &request(2, key_id_last, &[1; 256]),
    )
    .await;
    assert_eq!(valid.status, 200);
    assert_eq!(
        valid.header("content-type"),
        Some("application/private-token-response")
    );
    assert!(!valid.body.is_empty());
}
