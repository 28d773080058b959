//! A Privacy Pass origin (RFC 9577) for token type 0x0002, Blind RSA (RFC 9578 §6). A request
//! without a token gets `401` and a `WWW-Authenticate: PrivateToken` challenge; a request with
//! `Authorization: PrivateToken token=...` is let through if the token is for this origin's
//! challenge and the issuer's key, its authenticator verifies (through `virga:edge/crypto`),
//! and its nonce was never redeemed before.
//!
//! Double spending: a redeemed nonce is recorded in the host cache (`virga:edge/cache`) for
//! `nonce_ttl_secs`, through a collapsing lookup so that two concurrent redemptions of one
//! token cannot both pass. The cache is the host's in-memory, per-deployment store: this
//! deployment's share is its own (no other tenant can evict it), but the record does not
//! survive a restart, and filling the share evicts older records; if a redemption cannot be
//! recorded the token is refused (503), never accepted unrecorded.
//!
//! Variables: `token_key` (the issuer key, base64url SPKI as the issuer directory publishes it;
//! required), `issuer_name` (required), `origin_info` (default empty), `redemption_context`
//! (base64url of 32 bytes, default empty), `nonce_ttl_secs` (default 86400).

#[allow(dead_code)] // shared with the issuer, which uses the rest
mod protocol;

use std::time::Duration;

use virga_sdk::cache::{self, Collapsed, PutOptions, Stored};
use virga_sdk::crypto::{Algorithm, Hash, Key, KeyFormat, constant_time_eq, digest};
use virga_sdk::http::{self, HeaderValue, StatusCode, header};
use virga_sdk::{Body, Env, Request, Response, Result};

use protocol::{b64_decode, challenge, parse_token, token_from_authorization, www_authenticate};

struct Config {
    token_key: Vec<u8>,
    challenge: Vec<u8>,
    nonce_ttl: Duration,
}

fn text(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(format!("{message}\n").into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn config(env: &Env) -> std::result::Result<Config, String> {
    let var = |name: &str| env.var(name).unwrap_or_default();
    let token_key = b64_decode(&var("token_key"))
        .filter(|k| !k.is_empty())
        .ok_or("set the variable 'token_key' (base64url SPKI of the issuer key)")?;
    let context = match env.var("redemption_context") {
        Some(c) => b64_decode(&c).ok_or("'redemption_context' is not base64url")?,
        None => Vec::new(),
    };
    let nonce_ttl = env
        .var("nonce_ttl_secs")
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| "'nonce_ttl_secs' is not a number")
        })
        .transpose()?
        .unwrap_or(86_400);
    Ok(Config {
        token_key,
        challenge: challenge(&var("issuer_name"), &context, &var("origin_info"))?,
        nonce_ttl: Duration::from_secs(nonce_ttl),
    })
}

/// `401` with a fresh challenge and why.
fn challenge_response(config: &Config, why: &str) -> Response {
    let mut response = text(StatusCode::UNAUTHORIZED, why);
    if let Ok(value) =
        HeaderValue::from_str(&www_authenticate(&config.challenge, &config.token_key))
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Why a well-formed token is refused, if it is (RFC 9577 §2.2, RFC 9578 §6.5).
fn check(config: &Config, bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let token = parse_token(bytes)?;
    let key_id = digest(Hash::Sha256, &config.token_key);
    if !constant_time_eq(token.token_key_id, &key_id) {
        return Err("the token's token_key_id is not this issuer key's".into());
    }
    let expected = digest(Hash::Sha256, &config.challenge);
    if !constant_time_eq(token.challenge_digest, &expected) {
        return Err("the token answers another challenge (another origin or context)".into());
    }
    let key = Key::import_public(
        Algorithm::RsabssaSha384PssDeterministic,
        KeyFormat::Spki,
        &config.token_key,
    )
    .map_err(|e| format!("the configured token_key is unusable: {e}"))?;
    match key.verify(token.input, token.authenticator) {
        Ok(true) => {}
        Ok(false) => return Err("the token's authenticator does not verify".into()),
        Err(e) => return Err(format!("the token's authenticator does not verify: {e}")),
    }
    Ok(token.nonce.to_vec())
}

/// Records the redemption of `nonce`; false if it was redeemed before.
async fn redeem(config: &Config, nonce: &[u8]) -> std::result::Result<bool, Response> {
    let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("privacy-pass:/spent/{hex}");
    let marker = http::Request::new(());
    let unavailable = |why: String| text(StatusCode::SERVICE_UNAVAILABLE, &why);
    let _fill = match cache::lookup_or_fill(&marker, &key, Duration::from_secs(5)) {
        Ok(Collapsed::Found(cache::Lookup::Fresh(_) | cache::Lookup::Stale(_))) => {
            return Ok(false);
        }
        Ok(Collapsed::Fill(fill)) => Some(fill),
        Ok(Collapsed::Found(cache::Lookup::Miss) | Collapsed::Miss) => None,
        Err(e) => return Err(unavailable(format!("cannot check the token's nonce: {e}"))),
    };
    let mut record = Response::new(Body::empty());
    *record.status_mut() = StatusCode::NO_CONTENT;
    let options = PutOptions::default().ttl(config.nonce_ttl);
    match cache::put_key(&marker, &key, record, &options).await {
        Stored::Yes(_) => Ok(true),
        Stored::No(_, e) | Stored::Failed(e) => Err(unavailable(format!(
            "cannot record the token's redemption, so it is not accepted: {e}"
        ))),
    }
}

#[virga_sdk::handler]
async fn handle(request: Request, env: Env) -> Result<Response> {
    let config = match config(&env) {
        Ok(config) => config,
        Err(e) => {
            return Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("privacy-pass-origin: {e}"),
            ));
        }
    };
    let Some(authorization) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(challenge_response(
            &config,
            "this resource needs a Privacy Pass token",
        ));
    };
    let token = match authorization
        .to_str()
        .map_err(|_| "the Authorization field is not text".to_owned())
        .and_then(token_from_authorization)
    {
        Ok(token) => token,
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &e)),
    };
    let nonce = match check(&config, &token) {
        Ok(nonce) => nonce,
        Err(e) => return Ok(challenge_response(&config, &e)),
    };
    match redeem(&config, &nonce).await {
        Ok(true) => Ok(text(StatusCode::OK, "token accepted: welcome")),
        Ok(false) => Ok(challenge_response(
            &config,
            "this token was already redeemed",
        )),
        Err(response) => Ok(response),
    }
}
