//! The host's shared HTTP cache (`virga:edge/cache`), in the spirit of the Workers Cache API.
//! The host applies RFC 9111 (what may be stored, freshness, `Age`, `Vary`, validation); the
//! handler chooses the key and talks to the origin. Bodies stream between the origin, the cache
//! and the client inside the host.
//!
//! ```ignore
//! use virga_sdk::cache::{self, Lookup, PutOptions, Stored};
//!
//! match cache::lookup(&req)? {
//!     Lookup::Fresh(entry) => return Ok(entry.into_response()),
//!     Lookup::Stale(_) | Lookup::Miss => {}
//! }
//! let origin = virga_sdk::fetch(forwarded).await?;
//! match cache::put(&req, origin.map(Into::into), &PutOptions::default()).await {
//!     Stored::Yes(entry) => Ok(entry.into_response()),
//!     Stored::No(response, _why) => Ok(response),
//!     Stored::Failed(e) => Err(e.into()),
//! }
//! ```

use std::fmt;
use std::time::Duration;

use crate::bindings::virga::edge::cache as host;
use crate::body::{IncomingBody, write_body};
use crate::{Body, Response};

/// Why a cache call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheError {
    /// A malformed method, key or header.
    BadInput(String),
    /// The response may not be stored; the message names the RFC 9111 rule.
    NotStorable(String),
    /// The body does not fit in this deployment's share of the cache.
    TooLarge(String),
}

impl From<host::CacheError> for CacheError {
    fn from(e: host::CacheError) -> Self {
        match e {
            host::CacheError::BadInput(m) => Self::BadInput(m),
            host::CacheError::NotStorable(m) => Self::NotStorable(m),
            host::CacheError::TooLarge(m) => Self::TooLarge(m),
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, message) = match self {
            Self::BadInput(m) => ("bad input", m),
            Self::NotStorable(m) => ("not storable", m),
            Self::TooLarge(m) => ("too large", m),
        };
        write!(f, "cache: {kind}: {message}")
    }
}

impl std::error::Error for CacheError {}

/// How to store a response.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PutOptions {
    /// Freshness lifetime to use instead of what the response's headers say.
    pub ttl: Option<Duration>,
    /// Tags for [`purge_tag`].
    pub tags: Vec<String>,
    /// Store even a 4xx/5xx response (refused by default: cached error pages are a
    /// cache-poisoning denial of service).
    pub store_errors: bool,
}

impl PutOptions {
    /// Sets the freshness lifetime.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Allows storing an error status.
    pub fn store_errors(mut self, store: bool) -> Self {
        self.store_errors = store;
        self
    }
}

/// A stored response.
pub struct Entry(host::Entry);

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Entry").field(&self.0.status()).finish()
    }
}

fn header_map(list: Vec<(String, Vec<u8>)>) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(list.len());
    for (name, value) in list {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(&value),
        ) {
            map.append(name, value);
        }
    }
    map
}

fn header_list(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

impl Entry {
    /// The status code.
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.0.status()).unwrap_or(http::StatusCode::OK)
    }

    /// The stored header fields, with `Age`.
    pub fn headers(&self) -> http::HeaderMap {
        header_map(self.0.headers())
    }

    /// Current age, seconds.
    pub fn age(&self) -> u64 {
        self.0.age()
    }

    /// Freshness left, seconds (0 when stale).
    pub fn ttl(&self) -> u64 {
        self.0.ttl()
    }

    /// Body length, bytes.
    pub fn body_len(&self) -> u64 {
        self.0.body_length()
    }

    /// The body, streamed from the host.
    pub fn body(&self) -> IncomingBody {
        IncomingBody::from_stream(self.0.body())
    }

    /// The stored response, ready to send: its body streams from the cache without entering
    /// guest memory.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body()));
        *response.status_mut() = self.status();
        *response.headers_mut() = self.headers();
        response
    }
}

/// A stored response that needs validation before use.
#[derive(Debug)]
#[non_exhaustive]
pub struct Stale {
    /// The response.
    pub entry: Entry,
    /// Fields that make the revalidation request conditional (`If-None-Match`,
    /// `If-Modified-Since`).
    pub conditional_headers: http::HeaderMap,
    /// May be served while revalidating (`stale-while-revalidate`).
    pub serve_while_revalidating: bool,
    /// May be served when revalidation fails (`stale-if-error`).
    pub serve_on_error: bool,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Nothing usable is stored.
    Miss,
    /// A fresh response.
    Fresh(Entry),
    /// A response to revalidate first.
    Stale(Stale),
}

impl From<host::LookupResult> for Lookup {
    fn from(result: host::LookupResult) -> Self {
        match result {
            host::LookupResult::Miss => Self::Miss,
            host::LookupResult::Fresh(entry) => Self::Fresh(Entry(entry)),
            host::LookupResult::Stale(stale) => Self::Stale(Stale {
                entry: Entry(stale.entry),
                conditional_headers: header_map(stale.conditional_headers),
                serve_while_revalidating: stale.serve_while_revalidating,
                serve_on_error: stale.serve_on_error,
            }),
        }
    }
}

/// The right to fill a key others are waiting for; drop it after [`put`] (or on giving up)
/// to let them go on.
#[derive(Debug)]
pub struct Fill(#[allow(dead_code)] host::FillToken);

/// What a collapsing lookup found.
#[derive(Debug)]
pub enum Collapsed {
    /// A stored response, found at once or after another request's fill.
    Found(Lookup),
    /// Nothing stored: this request fetches and stores while the others wait.
    Fill(Fill),
    /// Nothing stored, and the fill others did stored nothing: fetch without waiting more.
    Miss,
}

/// The cache request for `request` under `key`.
fn cache_request<B>(request: &http::Request<B>, key: &str) -> host::CacheRequest {
    host::CacheRequest {
        method: request.method().as_str().to_owned(),
        url: key.to_owned(),
        headers: header_list(request.headers()),
    }
}

/// The cache key of a request: its URL as received.
pub fn key_of<B>(request: &http::Request<B>) -> String {
    request.uri().to_string()
}

/// Finds a stored response for `request`, keyed by its URL.
pub fn lookup<B>(request: &http::Request<B>) -> Result<Lookup, CacheError> {
    lookup_key(request, &key_of(request))
}

/// Finds a stored response for `request` under `key` (a normalized URL).
pub fn lookup_key<B>(request: &http::Request<B>, key: &str) -> Result<Lookup, CacheError> {
    Ok(host::lookup(&cache_request(request, key))?.into())
}

/// Like [`lookup_key`], but when many requests miss `key` at once only one gets
/// [`Collapsed::Fill`]; the others wait up to `timeout` for its result.
pub fn lookup_or_fill<B>(
    request: &http::Request<B>,
    key: &str,
    timeout: Duration,
) -> Result<Collapsed, CacheError> {
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    Ok(
        match host::lookup_or_fill(&cache_request(request, key), ms)? {
            host::CollapsedLookup::Found(result) => Collapsed::Found(result.into()),
            host::CollapsedLookup::Fill(token) => Collapsed::Fill(Fill(token)),
            host::CollapsedLookup::Miss => Collapsed::Miss,
        },
    )
}

/// What [`put`] did.
#[derive(Debug)]
pub enum Stored {
    /// Stored: serve the entry (its body streams from the cache).
    Yes(Entry),
    /// Not stored (the reason names the rule, or the cache had no room); the response is
    /// whole: serve it.
    No(Response, CacheError),
    /// The body turned out larger than the cache takes and was cut; the response is lost
    /// (send the request again, without caching).
    Failed(CacheError),
}

/// Stores `response` for `request` under its URL; see [`put_key`].
pub async fn put<B>(
    request: &http::Request<B>,
    response: Response,
    options: &PutOptions,
) -> Stored {
    put_key(request, &key_of(request), response, options).await
}

/// Stores `response` for `request` under `key`. The host checks first that it may be stored
/// (RFC 9111 §3), then the body streams into the cache inside the host.
pub async fn put_key<B>(
    request: &http::Request<B>,
    key: &str,
    response: Response,
    options: &PutOptions,
) -> Stored {
    let (parts, body) = response.into_parts();
    let host_options = host::PutOptions {
        ttl_seconds: options
            .ttl
            .map(|t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX)),
        tags: options.tags.clone(),
        store_errors: options.store_errors,
    };
    let writer = match host::put(
        &cache_request(request, key),
        parts.status.as_u16(),
        &header_list(&parts.headers),
        &host_options,
    ) {
        Ok(writer) => writer,
        Err(e) => return Stored::No(Response::from_parts(parts, body), e.into()),
    };
    let written = match writer.body() {
        Ok(stream) => write_body(stream, body).await,
        Err(e) => return Stored::Failed(e.into()),
    };
    if let Err(e) = written {
        // A body that broke (or did not fit) is never stored: drop the writer unfinished.
        drop(writer);
        return Stored::Failed(CacheError::TooLarge(format!(
            "the body was not stored: {}",
            e.message()
        )));
    }
    let finished = host::Writer::finish(writer);
    match (finished.entry, finished.error) {
        (Some(entry), None) => Stored::Yes(Entry(entry)),
        (Some(entry), Some(e)) => Stored::No(Entry(entry).into_response(), e.into()),
        (None, e) => Stored::Failed(e.map_or_else(
            || CacheError::TooLarge("the body was cut".into()),
            Into::into,
        )),
    }
}

/// Updates stored responses that a `304 Not Modified` with `headers` validates, and returns
/// the one for `request` under `key`, if any (RFC 9111 §4.3.4).
pub fn freshen<B>(
    request: &http::Request<B>,
    key: &str,
    headers: &http::HeaderMap,
) -> Result<Option<Entry>, CacheError> {
    Ok(host::freshen(&cache_request(request, key), &header_list(headers))?.map(Entry))
}

/// Removes every stored response for `key`; whether there was one.
pub fn delete(key: &str) -> bool {
    host::delete(key)
}

/// Removes every stored response tagged `tag`; how many.
pub fn purge_tag(tag: &str) -> u32 {
    host::purge_tag(tag)
}
