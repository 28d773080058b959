//! A Privacy Pass issuer (RFC 9578) for token type 0x0002, Blind RSA: the issuer directory
//! (§4) and the token request endpoint (§6), blind-signing with a host key that the guest uses
//! but never reads (`virga:edge/crypto`, RFC 9474 RSABSSA-SHA384-PSS-Deterministic).
//!
//! Variables: `key` (the host key's name, default `issuer`), `request_path` (default
//! `/token-request`).
//!
//! The key: `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out issuer.pem`,
//! configured as `keys.issuer = { algorithm = "rsabssa-sha384-pss-deterministic", file =
//! "issuer.pem" }`. The directory publishes it with the RSASSA-PSS SPKI encoding RFC 9578 §6.5
//! requires (built here from the public key).

#[path = "../../privacy-pass-origin/src/protocol.rs"]
#[allow(dead_code)]
mod protocol;

use virga_sdk::crypto::{Hash, Key, KeyFormat, digest};
use virga_sdk::http::{HeaderValue, Method, StatusCode, header};
use virga_sdk::{Env, Request, Response, Result};

use protocol::{NK, REQUEST_LEN, TOKEN_TYPE, b64_encode, pss_spki};

const DIRECTORY: &str = "/.well-known/private-token-issuer-directory";

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, message: &str) -> Response {
    reply(
        status,
        "text/plain; charset=utf-8",
        format!("{message}\n").into_bytes(),
    )
}

/// Blind-signs a TokenRequest (RFC 9578 §6.1–6.3) with `key`, whose published key ID is
/// `key_id`.
fn issue(key: &Key, key_id: &[u8], body: &[u8]) -> Response {
    if body.len() != REQUEST_LEN {
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "a token request for type 0x0002 is {REQUEST_LEN} bytes, not {}",
                body.len()
            ),
        );
    }
    let kind = u16::from_be_bytes([body[0], body[1]]);
    if kind != TOKEN_TYPE {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("token type {kind:#06x} is not issued here"),
        );
    }
    if body[2] != key_id[key_id.len() - 1] {
        return text(
            StatusCode::BAD_REQUEST,
            "truncated_token_key_id does not match the issuer key",
        );
    }
    match key.blind_sign(&body[3..3 + NK]) {
        Ok(blind_sig) => reply(
            StatusCode::OK,
            "application/private-token-response",
            blind_sig,
        ),
        Err(e) => text(
            StatusCode::BAD_REQUEST,
            &format!("cannot sign the blinded message: {e}"),
        ),
    }
}

#[virga_sdk::handler]
async fn handle(request: Request, env: Env) -> Result<Response> {
    let name = env.var("key").unwrap_or_else(|| "issuer".into());
    let request_path = env
        .var("request_path")
        .unwrap_or_else(|| "/token-request".into());
    let key = match Key::open(&name) {
        Ok(key) => key,
        Err(e) => {
            return Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("issuer key '{name}': {e}"),
            ));
        }
    };
    let spki = pss_spki(&key.public_key(KeyFormat::Raw)?);
    let path = request.uri().path().to_owned();
    if path == DIRECTORY {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Ok(text(
                StatusCode::METHOD_NOT_ALLOWED,
                "the directory is read with GET",
            ));
        }
        let directory = format!(
            "{{\"issuer-request-uri\":\"{request_path}\",\"token-keys\":[{{\"token-type\":2,\"token-key\":\"{}\"}}]}}",
            b64_encode(&spki)
        );
        let mut response = reply(
            StatusCode::OK,
            "application/private-token-issuer-directory",
            directory.into_bytes(),
        );
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=3600"),
        );
        return Ok(response);
    }
    if path != request_path {
        return Ok(text(StatusCode::NOT_FOUND, "not found"));
    }
    if request.method() != Method::POST {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "token requests are POSTed",
        ));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some("application/private-token-request") {
        return Ok(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a token request is application/private-token-request",
        ));
    }
    let body = match request.into_body().bytes_limited(4096) {
        Ok(body) => body,
        Err(e) => return Ok(text(e.status(), e.message())),
    };
    Ok(issue(&key, &digest(Hash::Sha256, &spki), &body))
}
