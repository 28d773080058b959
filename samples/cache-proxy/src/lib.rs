//! A caching reverse proxy as user code. Every request is forwarded to the origin in the
//! deployment's `origin` variable (`http://host:port`), any method, path, query, headers and
//! body; GET responses are cached in the host cache, which applies RFC 9111's rules. The proxy
//! revalidates stale entries with their validators, serves stale on error where allowed,
//! invalidates after unsafe methods, collapses concurrent misses, and says what it did in a
//! `Cache-Status` field (RFC 9211).
//!
//! Tags: an origin response's `Cache-Tag` field (comma-separated, not passed on) tags the entry.
//! Purging: `PURGE /path` removes that URL's entry, `PURGE` with `Cache-Tag: t` every entry
//! tagged `t`; both need `Authorization: Bearer <purge_token>` and are refused when the
//! `purge_token` variable is not set.
//!
//! Variables: `origin` (required); `ignore_params`, query parameters left out of the cache key,
//! comma-separated, `*` as a suffix for prefixes (default `utm_*`); `collapse_ms`, how long a
//! request waits for another's fetch of the same key (default 5000); `purge_token`.

use std::time::Duration;

use virga_sdk::cache::{self, Collapsed, Entry, Lookup, PutOptions, Stale, Stored};
use virga_sdk::http::{self, HeaderMap, HeaderValue, Method, header};
use virga_sdk::{Body, Env, Request, Response, Result, fetch, wait_until};

/// Headers that smuggle another method past caches; never forwarded.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Connection-specific fields (RFC 9110 §7.6.1), not forwarded either way.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

fn text(status: u16, message: &str) -> Response {
    let mut response = Response::new(format!("{message}\n").into());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn with_status(mut response: Response, cache_status: String) -> Response {
    if let Ok(value) = HeaderValue::from_str(&cache_status) {
        response.headers_mut().append("cache-status", value);
    }
    response
}

/// The cache key: the origin, the path, and the query with ignored parameters dropped and
/// the rest sorted, so equivalent URLs share an entry.
fn cache_key(origin: &str, uri: &http::Uri, ignored: &[String]) -> String {
    let mut params: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            !ignored.iter().any(|i| match i.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == i,
            })
        })
        .collect();
    params.sort_unstable();
    let mut key = format!("{origin}{}", uri.path());
    if !params.is_empty() {
        key.push('?');
        key.push_str(&params.join("&"));
    }
    key
}

/// The headers to send upstream: the client's, minus connection-specific fields and method
/// overrides.
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    let listed: Vec<String> = out
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for name in listed
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP)
        .chain(METHOD_OVERRIDES)
    {
        out.remove(name);
    }
    out.remove(header::HOST);
    out
}

/// Sends the request upstream; `extra` adds conditional fields for a revalidation.
async fn forward(
    method: &Method,
    url: &str,
    headers: &HeaderMap,
    body: Body,
    extra: &HeaderMap,
) -> std::result::Result<Response, Response> {
    let mut builder = http::Request::builder().method(method.clone()).uri(url);
    if let Some(h) = builder.headers_mut() {
        *h = forwarded_headers(headers);
        for (name, value) in extra {
            h.insert(name, value.clone());
        }
    }
    let request = builder
        .body(body)
        .map_err(|e| text(502, &format!("bad upstream request: {e}")))?;
    match fetch(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            parts.headers = forwarded_headers(&parts.headers);
            Ok(Response::from_parts(parts, body.into()))
        }
        Err(e) => Err(text(502, &format!("the origin did not answer: {e}"))),
    }
}

/// Serves a stored response (without body for HEAD).
fn serve(entry: Entry, head: bool, cache_status: String) -> Response {
    let mut response = entry.into_response();
    if head {
        *response.body_mut() = Body::empty();
    }
    with_status(response, cache_status)
}

/// The entry's tags, from the origin's `Cache-Tag` field, which is not passed on.
fn take_tags(response: &mut Response) -> PutOptions {
    let mut options = PutOptions::default();
    for value in response.headers().get_all("cache-tag") {
        for tag in value.to_str().unwrap_or("").split(',') {
            if !tag.trim().is_empty() {
                options = options.tag(tag.trim());
            }
        }
    }
    response.headers_mut().remove("cache-tag");
    options
}

/// Stores an origin response if RFC 9111 allows, and serves it.
async fn store_and_serve<B>(
    request: &http::Request<B>,
    key: &str,
    url: &str,
    mut response: Response,
    forward_status: &str,
) -> Response {
    let status = response.status().as_u16();
    let options = take_tags(&mut response);
    match cache::put_key(request, key, response, &options).await {
        Stored::Yes(entry) => serve(
            entry,
            false,
            format!("virga; fwd={forward_status}; fwd-status={status}; stored"),
        ),
        Stored::No(response, _) => with_status(
            response,
            format!("virga; fwd={forward_status}; fwd-status={status}"),
        ),
        // Too large for the cache, and its body went into it: ask again, without storing.
        Stored::Failed(_) => match forward(
            &Method::GET,
            url,
            request.headers(),
            Body::empty(),
            &HeaderMap::new(),
        )
        .await
        {
            Ok(response) => with_status(
                response,
                format!("virga; fwd={forward_status}; detail=too-large"),
            ),
            Err(error) => error,
        },
    }
}

/// A stale entry: revalidate it with its validators (RFC 9111 §4.3), or serve it if the
/// origin fails and `stale-if-error` allows (RFC 5861 §4). With `stale-while-revalidate`
/// (RFC 5861 §3) it is served at once and revalidated after the response is sent.
async fn revalidate<B>(request: &http::Request<B>, key: &str, url: &str, stale: Stale) -> Response {
    let head = request.method() == Method::HEAD;
    if stale.serve_while_revalidating {
        let mut background = http::Request::new(());
        *background.uri_mut() = request.uri().clone();
        *background.headers_mut() = request.headers().clone();
        let (key, url, conditional) = (key.to_owned(), url.to_owned(), stale.conditional_headers);
        wait_until(async move {
            let upstream = forward(
                &Method::GET,
                &url,
                background.headers(),
                Body::empty(),
                &conditional,
            )
            .await;
            match upstream {
                Ok(response) if response.status() == http::StatusCode::NOT_MODIFIED => {
                    let _ = cache::freshen(&background, &key, response.headers());
                }
                Ok(response) if !response.status().is_server_error() => {
                    store_and_serve(&background, &key, &url, response, "stale").await;
                }
                _ => {}
            }
        });
        return serve(
            stale.entry,
            head,
            "virga; hit; fwd=stale; detail=stale-while-revalidate".into(),
        );
    }
    let upstream = forward(
        &Method::GET,
        url,
        request.headers(),
        Body::empty(),
        &stale.conditional_headers,
    )
    .await;
    match upstream {
        Ok(response) if response.status() == http::StatusCode::NOT_MODIFIED => {
            match cache::freshen(request, key, response.headers()) {
                Ok(Some(entry)) => serve(entry, head, "virga; fwd=stale; fwd-status=304".into()),
                _ => serve(stale.entry, head, "virga; fwd=stale; fwd-status=304".into()),
            }
        }
        Ok(response) if response.status().is_server_error() && stale.serve_on_error => serve(
            stale.entry,
            head,
            format!(
                "virga; hit; fwd=stale; fwd-status={}; detail=stale-if-error",
                response.status().as_u16()
            ),
        ),
        Ok(response) => store_and_serve(request, key, url, response, "stale").await,
        Err(_) if stale.serve_on_error => serve(
            stale.entry,
            head,
            "virga; hit; fwd=stale; detail=stale-if-error".into(),
        ),
        Err(error) => error,
    }
}

/// `PURGE`: removes the URL's entry, or with `Cache-Tag` every entry with that tag.
fn purge(request: &Request, key: &str, token: Option<String>) -> Response {
    let Some(token) = token else {
        return text(
            405,
            "PURGE is off: set the deployment variable 'purge_token'",
        );
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !virga_sdk::crypto::constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return text(403, "PURGE needs Authorization: Bearer <purge_token>");
    }
    match request
        .headers()
        .get("cache-tag")
        .and_then(|v| v.to_str().ok())
    {
        Some(tag) => text(
            200,
            &format!("purged {} (tag {tag})", cache::purge_tag(tag.trim())),
        ),
        None => text(200, &format!("purged {}", u32::from(cache::delete(key)))),
    }
}

#[virga_sdk::handler]
async fn handle(request: Request, env: Env) -> Result<Response> {
    let Some(origin) = env.var("origin") else {
        return Ok(text(
            500,
            "cache-proxy: set the deployment variable 'origin'",
        ));
    };
    let origin = origin.trim_end_matches('/').to_owned();
    let ignored: Vec<String> = env
        .var("ignore_params")
        .unwrap_or_else(|| "utm_*".into())
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let collapse = Duration::from_millis(
        env.var("collapse_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(5000),
    );
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let url = format!("{origin}{path}");
    let key = cache_key(&origin, request.uri(), &ignored);
    let method = request.method().clone();

    if method.as_str() == "PURGE" {
        return Ok(purge(&request, &key, env.var("purge_token")));
    }
    if method != Method::GET && method != Method::HEAD {
        // Not cached; an unsafe method's success invalidates what the cache holds for the
        // target URI and the same-origin Location / Content-Location (RFC 9111 §4.4).
        let (parts, body) = request.into_parts();
        let response = match forward(
            &method,
            &url,
            &parts.headers,
            body.into(),
            &HeaderMap::new(),
        )
        .await
        {
            Ok(response) => response,
            Err(error) => return Ok(error),
        };
        let safe = matches!(method, Method::OPTIONS | Method::TRACE);
        if !safe && (response.status().is_success() || response.status().is_redirection()) {
            cache::delete(&key);
            for name in [header::LOCATION, header::CONTENT_LOCATION] {
                let target = response.headers().get(&name).and_then(|v| v.to_str().ok());
                if let Some(target) = target {
                    let target = if target.starts_with('/') {
                        format!("{origin}{target}")
                    } else {
                        target.to_owned()
                    };
                    if target.starts_with(&format!("{origin}/"))
                        && let Ok(uri) = target[origin.len()..].parse::<http::Uri>()
                    {
                        cache::delete(&cache_key(&origin, &uri, &ignored));
                    }
                }
            }
        }
        return Ok(with_status(response, "virga; fwd=request".into()));
    }

    let head = method == Method::HEAD;
    // A request the cache cannot key (an over-long URL) bypasses it.
    let Ok(lookup) = cache::lookup_or_fill(&request, &key, collapse) else {
        return Ok(
            match forward(
                &method,
                &url,
                request.headers(),
                Body::empty(),
                &HeaderMap::new(),
            )
            .await
            {
                Ok(response) => with_status(response, "virga; fwd=bypass".into()),
                Err(error) => error,
            },
        );
    };
    let _fill = match lookup {
        Collapsed::Found(Lookup::Fresh(entry)) => {
            let ttl = entry.ttl();
            return Ok(serve(entry, head, format!("virga; hit; ttl={ttl}")));
        }
        Collapsed::Found(Lookup::Stale(stale)) => {
            return Ok(revalidate(&request, &key, &url, stale).await);
        }
        Collapsed::Found(Lookup::Miss) | Collapsed::Miss => None,
        Collapsed::Fill(fill) => Some(fill),
    };
    if request
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("only-if-cached")))
    {
        // RFC 9111 §5.2.1.7.
        return Ok(text(504, "not in the cache (only-if-cached)"));
    }
    let response = match forward(
        &method,
        &url,
        request.headers(),
        Body::empty(),
        &HeaderMap::new(),
    )
    .await
    {
        Ok(response) => response,
        Err(error) => return Ok(error),
    };
    if head {
        return Ok(with_status(response, "virga; fwd=miss".into()));
    }
    Ok(store_and_serve(&request, &key, &url, response, "miss").await)
}
