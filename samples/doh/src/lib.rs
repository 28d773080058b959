//! DNS-over-HTTPS (RFC 8484) as a Virga handler: the kind of endpoint a public resolver runs
//! at the edge. It answers `GET ?dns=` (base64url, padded or not) and `POST`
//! `application/dns-message`, and the JSON form (`?name=&type=`, `Accept:
//! application/dns-json`). Queries go to the upstream DoH resolver in the `upstream` variable
//! (POST), then to `fallback` if that fails. Answers are cached in the host cache under (name,
//! type, class, DO, CD) for their smallest TTL (negative answers: the SOA minimum, RFC 2308),
//! served from the cache with the client's ID and TTLs less the entry's age, and always with
//! `Cache-Control: max-age` no larger than the smallest TTL left (RFC 8484 §5.1).
//!
//! Errors: 400 for an undecodable or malformed message, 415 for a wrong content type, 413 for
//! a body over 64 KiB, 405 for other methods, 502/504 when the upstream fails or times out,
//! each with a short text body. Variables: `upstream` (required), `fallback`, `path` (default
//! `/dns-query`).

mod dns;

use hickory_proto::op::Message;
use virga_sdk::cache::{self, Lookup, PutOptions};
use virga_sdk::http::{self, HeaderValue, Method, StatusCode, header};
use virga_sdk::{Body, Env, FetchError, Request, Response, Result, fetch};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const DNS_MESSAGE: &str = "application/dns-message";
const DNS_JSON: &str = "application/dns-json";
/// Largest DNS message taken (RFC 8484 §6: at most 65535 bytes).
const MAX_MESSAGE: usize = 65_535;

fn text(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(format!("{message}\n").into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The query in the request, as wire bytes, and whether the answer should be JSON.
fn query_of(request: Request) -> std::result::Result<(Vec<u8>, bool), Response> {
    let bad = |m: &str| text(StatusCode::BAD_REQUEST, m);
    match *request.method() {
        Method::GET | Method::HEAD => {
            let query = request.uri().query().unwrap_or("");
            if let Some(dns) = param(query, "dns") {
                let wire = URL_SAFE_NO_PAD
                    .decode(dns.trim_end_matches("%3D").trim_end_matches('='))
                    .map_err(|_| bad("the dns parameter is not base64url"))?;
                return Ok((wire, false));
            }
            let Some(name) = param(query, "name") else {
                return Err(bad("a GET needs a dns parameter (or name, for JSON)"));
            };
            let flag = |n| param(query, n).is_some_and(|v| v == "1" || v == "true");
            let wire = dns::query_from_params(
                name,
                param(query, "type").unwrap_or("A"),
                flag("do"),
                flag("cd"),
            )
            .map_err(|e| bad(&e))?;
            Ok((wire, true))
        }
        Method::POST => {
            let content_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if content_type != DNS_MESSAGE {
                return Err(text(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a POSTed query is application/dns-message",
                ));
            }
            let body = request
                .into_body()
                .bytes_limited(MAX_MESSAGE)
                .map_err(|e| text(e.status(), "the query is larger than 65535 bytes"))?;
            Ok((body.to_vec(), false))
        }
        _ => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "DoH takes GET and POST");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            Err(response)
        }
    }
}

/// Asks one upstream; the response if it is a DNS answer to `query`.
async fn ask(url: &str, query: &[u8]) -> std::result::Result<Message, Response> {
    let request = http::Request::post(url)
        .header(header::CONTENT_TYPE, DNS_MESSAGE)
        .header(header::ACCEPT, DNS_MESSAGE)
        .body(Body::from(query.to_vec()))
        .map_err(|e| text(StatusCode::BAD_GATEWAY, &format!("bad upstream URL: {e}")))?;
    let response = fetch(request).await.map_err(|e: FetchError| {
        let status = if e.is_timeout() {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        text(status, &format!("the upstream resolver failed: {e}"))
    })?;
    let garbage = |why: &str| {
        text(
            StatusCode::BAD_GATEWAY,
            &format!("the upstream answered {why}"),
        )
    };
    if response.status() != StatusCode::OK {
        return Err(garbage(&format!("HTTP {}", response.status().as_u16())));
    }
    let body = response
        .into_body()
        .bytes_limited(MAX_MESSAGE)
        .map_err(|_| garbage("more than 65535 bytes"))?;
    let answer = Message::from_vec(&body).map_err(|_| garbage("something that is not DNS"))?;
    if answer.queries()
        != Message::from_vec(query)
            .map(|q| q.queries().to_vec())
            .unwrap_or_default()
    {
        return Err(garbage("for another question"));
    }
    Ok(answer)
}

fn respond(answer: &Message, json: bool, cache_status: &str) -> Response {
    let (body, content_type) = if json {
        (dns::to_json(answer).into_bytes(), DNS_JSON)
    } else {
        match answer.to_vec() {
            Ok(wire) => (wire, DNS_MESSAGE),
            Err(e) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!("cannot encode the answer: {e}"),
                );
            }
        }
    };
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={}", dns::min_ttl(answer))) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(cache_status) {
        headers.insert("cache-status", v);
    }
    response
}

#[virga_sdk::handler]
async fn handle(request: Request, env: Env) -> Result<Response> {
    let path = env.var("path").unwrap_or_else(|| "/dns-query".into());
    if request.uri().path() != path {
        return Ok(text(
            StatusCode::NOT_FOUND,
            &format!("DoH is served at {path}"),
        ));
    }
    let Some(upstream) = env.var("upstream") else {
        return Ok(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "doh: set the variable 'upstream'",
        ));
    };
    let (wire, json) = match query_of(request) {
        Ok(query) => query,
        Err(response) => return Ok(response),
    };
    let question = match dns::parse_query(&wire) {
        Ok(question) => question,
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &e)),
    };
    let marker = http::Request::new(());
    if let Ok(Lookup::Fresh(entry)) = cache::lookup_key(&marker, &question.key) {
        let age = u32::try_from(entry.age()).unwrap_or(u32::MAX);
        if let Ok(stored) = entry.body().bytes_limited(MAX_MESSAGE)
            && let Ok(stored) = Message::from_vec(&stored)
        {
            let answer = dns::answer_for(stored, &question.message, age);
            return Ok(respond(&answer, json, "virga-doh; hit"));
        }
    }
    let mut answer = ask(&upstream, &wire).await;
    if answer.is_err()
        && let Some(fallback) = env.var("fallback")
    {
        answer = ask(&fallback, &wire).await;
    }
    let answer = match answer {
        Ok(answer) => answer,
        Err(response) => return Ok(response),
    };
    if let Some(ttl) = dns::cache_ttl(&answer).filter(|ttl| *ttl > 0)
        && let Ok(wire) = answer.to_vec()
    {
        let mut stored = Response::new(wire.into());
        stored
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
        let options = PutOptions::default().ttl(std::time::Duration::from_secs(u64::from(ttl)));
        // Not storable (the cache full): served all the same.
        let _ = cache::put_key(&marker, &question.key, stored, &options).await;
    }
    let answer = dns::answer_for(answer, &question.message, 0);
    Ok(respond(&answer, json, "virga-doh; fwd=miss"))
}
