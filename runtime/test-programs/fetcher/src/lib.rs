//! Subrequests on demand, for the host's fetch tests. The target is `?url=U`; the last path
//! segment picks the action.
//! - `/proxy?url=U`: fetches U with the request's method and body (spliced), and answers the
//!   upstream's status, `content-type` and body (spliced back); a failed fetch gets 502 and the
//!   error's message.
//! - `/count?url=U&n=N`: N fetches one after another; `ok N`, or 502 `failed at K: message`.
//! - `/concurrent?url=U&n=N`: N fetches in flight at once; `ok N` or 502 with the first error.
//! - `/traced?url=U`: logs a line on stdout and one on stderr, answers from the host cache
//!   when U is stored there, else fetches U and stores the response for 60 s (the telemetry
//!   tests follow its spans, metrics and log records).
use std::time::Duration;

use virga_sdk::cache::{self, Lookup, PutOptions, Stored};
use virga_sdk::{Body, Request, Response, Result, fetch, http, join_all};

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn decode(text: &str) -> String {
    // Enough percent-decoding for URLs in tests.
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bad_gateway(message: String) -> Result<Response> {
    Ok(http::Response::builder()
        .status(502)
        .body(format!("{message}\n").into())?)
}

fn get(url: &str) -> http::Request<Body> {
    http::Request::get(url)
        .body(Body::empty())
        .expect("valid request")
}

#[virga_sdk::handler]
async fn handle(request: Request) -> Result<Response> {
    let query = request.uri().query().unwrap_or("").to_owned();
    let url = decode(param(&query, "url").unwrap_or(""));
    let n: usize = param(&query, "n").and_then(|n| n.parse().ok()).unwrap_or(1);
    // The last path segment picks the action, wherever the guest is routed.
    let action = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_owned();
    match action.as_str() {
        "proxy" => {
            let method = request.method().clone();
            let mut upstream = http::Request::builder().method(method).uri(&url);
            if let Some(ct) = request.headers().get("content-type") {
                upstream = upstream.header("content-type", ct);
            }
            if let Some(tp) = request.headers().get("x-send-traceparent") {
                upstream = upstream.header("traceparent", tp);
            }
            let upstream = upstream.body(Body::from(request.into_body()))?;
            match fetch(upstream).await {
                Ok(response) => {
                    let mut reply = http::Response::builder().status(response.status());
                    if let Some(ct) = response.headers().get("content-type") {
                        reply = reply.header("content-type", ct);
                    }
                    Ok(reply.body(Body::from(response.into_body()))?)
                }
                Err(e) => bad_gateway(e.to_string()),
            }
        }
        "count" => {
            for k in 1..=n {
                match fetch(get(&url)).await {
                    Ok(response) => {
                        response.into_body().bytes()?;
                    }
                    Err(e) => return bad_gateway(format!("failed at {k}: {e}")),
                }
            }
            Ok(Response::new(format!("ok {n}\n").into()))
        }
        "concurrent" => {
            let results = join_all((0..n).map(|_| fetch(get(&url)))).await;
            for result in results {
                match result {
                    Ok(response) => {
                        response.into_body().bytes()?;
                    }
                    Err(e) => return bad_gateway(e.to_string()),
                }
            }
            Ok(Response::new(format!("ok {n}\n").into()))
        }
        "traced" => {
            println!("traced request for {url}");
            eprintln!("traced stderr line");
            if let Ok(Lookup::Fresh(entry)) = cache::lookup_key(&request, &url) {
                return Ok(entry.into_response());
            }
            let response = match fetch(get(&url)).await {
                Ok(response) => response,
                Err(e) => return bad_gateway(e.to_string()),
            };
            let (parts, body) = response.into_parts();
            let response = http::Response::from_parts(parts, Body::from(body));
            let options = PutOptions::default().ttl(Duration::from_secs(60));
            match cache::put_key(&request, &url, response, &options).await {
                Stored::Yes(entry) => Ok(entry.into_response()),
                Stored::No(response, _) => Ok(response),
                Stored::Failed(e) => bad_gateway(e.to_string()),
            }
        }
        _ => Ok(http::Response::builder()
            .status(404)
            .body("try /proxy, /count, /concurrent or /traced\n".into())?),
    }
}
