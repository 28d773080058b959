//! `virga:edge/cache`: a shared HTTP cache (RFC 9111) held by the host, one namespace per
//! deployment. The rules live in [`rfc9111`]; the bytes in a [`CacheBackend`] (default
//! [`MokaCache`]); bodies stream in and out through `wasi:io` streams without being copied
//! into guest memory.

pub(crate) mod backend;
pub(crate) mod collapse;
pub(crate) mod rfc9111;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

pub use backend::{CacheBackend, CacheFull, CachedResponses, MokaCache};
pub(crate) use collapse::Collapser;
pub use collapse::FillToken;

use crate::bindings::virga::edge::cache::{
    CacheError, CacheRequest, CollapsedLookup, Finished, HeaderList, Host, HostEntry,
    HostFillToken, HostWriter, LookupResult, PutOptions, StaleEntry,
};
use crate::deployment::SharedDeployment;
use crate::state::RequestState;
use crate::telemetry::HostCallSpan;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use rfc9111::{Directives, Stored, Usable};

/// What the cache interface needs of a request: where entries live and whose they are.
pub(crate) struct CacheCtx {
    pub(crate) backend: Arc<dyn CacheBackend>,
    pub(crate) collapser: Arc<Collapser>,
    pub(crate) deployment: SharedDeployment,
}

/// A stored response handed to the guest.
pub struct CacheEntry(Arc<Stored>);

impl std::fmt::Debug for CacheEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheEntry")
            .field("status", &self.0.status)
            .finish_non_exhaustive()
    }
}

/// A response being stored: its head, checked storable, and the body written so far.
pub struct CacheWriter {
    key: String,
    request: HeaderMap,
    status: u16,
    headers: HeaderMap,
    ttl: Option<Duration>,
    tags: Vec<String>,
    request_time: SystemTime,
    body: MemoryOutputPipe,
    capacity: usize,
    stream_taken: bool,
}

impl std::fmt::Debug for CacheWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWriter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

type Result<T> = wasmtime::Result<std::result::Result<T, CacheError>>;

/// Longest cache key (URL) taken.
const MAX_KEY: usize = 8 * 1024;

fn bad(message: impl Into<String>) -> CacheError {
    CacheError::BadInput(message.into())
}

/// Header fields from the guest, checked.
fn header_map(list: &HeaderList) -> std::result::Result<HeaderMap, CacheError> {
    let mut map = HeaderMap::with_capacity(list.len());
    for (name, value) in list {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("invalid header name '{name}'")))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| bad(format!("invalid value for header '{name}'")))?;
        map.append(name, value);
    }
    Ok(map)
}

fn header_list(map: &HeaderMap) -> HeaderList {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// The request's method, key and fields.
fn parse_request(
    request: &CacheRequest,
) -> std::result::Result<(http::Method, String, HeaderMap), CacheError> {
    let method = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| bad(format!("invalid method '{}'", request.method)))?;
    if request.url.is_empty() || request.url.len() > MAX_KEY {
        return Err(bad(format!(
            "the cache key (url) must be 1 to {MAX_KEY} bytes, not {}",
            request.url.len()
        )));
    }
    Ok((method, request.url.clone(), header_map(&request.headers)?))
}

impl RequestState {
    fn namespace(&self) -> (&str, u64) {
        let deployment = &self.cache.deployment;
        (&deployment.name, deployment.limits.cache)
    }

    /// The stored response that may answer `request` (RFC 9111 §4), if any. Only GET
    /// responses are stored; HEAD uses them too (RFC 9110 §9.3.2).
    fn find(
        &self,
        method: &http::Method,
        key: &str,
        request: &HeaderMap,
    ) -> Option<(Arc<Stored>, Usable)> {
        if method != http::Method::GET && method != http::Method::HEAD {
            return None;
        }
        let (namespace, _) = self.namespace();
        let stored = self.cache.backend.get(namespace, key)?;
        // Newest first: §4.1 uses the most recent of several matching responses.
        let found = stored
            .0
            .iter()
            .find(|s| rfc9111::vary_matches(&s.vary, request))?
            .clone();
        let usable = found.usable(&Directives::parse(request), SystemTime::now());
        Some((found, usable))
    }

    fn lookup_span(&self, key: &str) -> HostCallSpan {
        self.telemetry.span("cache.lookup", SpanKind::Internal, || {
            vec![KeyValue::new("virga.cache.key", key.to_owned())]
        })
    }

    /// Counts a lookup's result (`hit`, `stale` or `miss`) and notes it on its span.
    fn count_lookup(&self, span: &mut HostCallSpan, found: Option<&(Arc<Stored>, Usable)>) {
        let result = match found {
            Some((_, Usable::Fresh)) => "hit",
            Some((_, Usable::Stale { .. })) => "stale",
            None => "miss",
        };
        self.telemetry.cache_lookup(result);
        span.set(|| KeyValue::new("virga.cache.result", result));
    }

    fn lookup_result(&mut self, found: Option<(Arc<Stored>, Usable)>) -> Result<LookupResult> {
        let Some((stored, usable)) = found else {
            return Ok(Ok(LookupResult::Miss));
        };
        let conditional = stored.conditional_headers();
        let entry = self.table_mut().push(CacheEntry(stored))?;
        Ok(Ok(match usable {
            Usable::Fresh => LookupResult::Fresh(entry),
            Usable::Stale {
                while_revalidating,
                on_error,
            } => LookupResult::Stale(StaleEntry {
                entry,
                conditional_headers: conditional
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect(),
                serve_while_revalidating: while_revalidating,
                serve_on_error: on_error,
            }),
        }))
    }

    /// Stores `stored` as the newest response for `key`, replacing one with the same
    /// secondary key (RFC 9111 §4.1).
    fn store(&self, key: &str, stored: Arc<Stored>) -> std::result::Result<(), CacheError> {
        let (namespace, quota) = self.namespace();
        let mut variants = vec![stored.clone()];
        if let Some(existing) = self.cache.backend.get(namespace, key) {
            variants.extend(existing.0.iter().filter(|s| s.vary != stored.vary).cloned());
        }
        self.cache
            .backend
            .insert(namespace, quota, key, CachedResponses(variants.into()))
            .map_err(|e| CacheError::TooLarge(e.to_string()))
    }
}

impl Host for RequestState {
    async fn lookup(&mut self, request: CacheRequest) -> Result<LookupResult> {
        let (method, key, headers) = match parse_request(&request) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(e)),
        };
        let mut span = self.lookup_span(&key);
        let found = self.find(&method, &key, &headers);
        self.count_lookup(&mut span, found.as_ref());
        self.lookup_result(found)
    }

    async fn lookup_or_fill(
        &mut self,
        request: CacheRequest,
        timeout_ms: u32,
    ) -> Result<CollapsedLookup> {
        let (method, key, headers) = match parse_request(&request) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(e)),
        };
        let mut span = self.lookup_span(&key);
        let found = self.find(&method, &key, &headers);
        if found.is_some() || (method != http::Method::GET && method != http::Method::HEAD) {
            self.count_lookup(&mut span, found.as_ref());
            return Ok(self.lookup_result(found)?.map(|found| match found {
                LookupResult::Miss => CollapsedLookup::Miss,
                found => CollapsedLookup::Found(found),
            }));
        }
        let namespace = self.namespace().0.to_owned();
        let wait = match self.cache.collapser.join(&namespace, &key) {
            Ok(token) => {
                self.count_lookup(&mut span, None);
                span.set(|| KeyValue::new("virga.cache.fill", true));
                let token = self.table_mut().push(token)?;
                return Ok(Ok(CollapsedLookup::Fill(token)));
            }
            Err(wait) => wait,
        };
        // Another request fills this key: wait for it (the guest's wall-time limit still
        // applies), then use what it stored, if anything.
        span.set(|| KeyValue::new("virga.cache.collapsed", true));
        collapse::wait(wait, Duration::from_millis(u64::from(timeout_ms))).await;
        let found = self.find(&method, &key, &headers);
        self.count_lookup(&mut span, found.as_ref());
        match found {
            Some(found) => Ok(self.lookup_result(Some(found))?.map(CollapsedLookup::Found)),
            None => Ok(Ok(CollapsedLookup::Miss)),
        }
    }

    async fn put(
        &mut self,
        request: CacheRequest,
        status: u16,
        headers: HeaderList,
        options: PutOptions,
    ) -> Result<Resource<CacheWriter>> {
        let (method, key, request_headers) = match parse_request(&request) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(e)),
        };
        let mut headers = match header_map(&headers) {
            Ok(headers) => headers,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(rule) = rfc9111::storable(
            &method,
            status,
            &request_headers,
            &headers,
            options.ttl_seconds.is_some(),
            options.store_errors,
        ) {
            return Ok(Err(CacheError::NotStorable(rule)));
        }
        // Age is kept for the age computation, then dropped with the unstored fields.
        let age = headers.get(http::header::AGE).cloned();
        rfc9111::strip_unstored(&mut headers);
        if let Some(age) = age {
            headers.insert(http::header::AGE, age);
        }
        let capacity = usize::try_from(self.namespace().1 / 2).unwrap_or(usize::MAX);
        // A body declared too large is refused now, while the handler still has it.
        let declared = crate::body::declared_length(&headers);
        if declared.is_some_and(|len| len >= capacity as u64) {
            return Ok(Err(CacheError::TooLarge(format!(
                "a {}-byte body is more than this deployment's cache takes in one entry \
                 ({capacity} bytes)",
                declared.unwrap_or_default()
            ))));
        }
        let writer = CacheWriter {
            key,
            request: request_headers,
            status,
            headers,
            ttl: options
                .ttl_seconds
                .map(|s| Duration::from_secs(u64::from(s))),
            tags: options.tags,
            request_time: SystemTime::now(),
            body: MemoryOutputPipe::new(capacity),
            capacity,
            stream_taken: false,
        };
        Ok(Ok(self.table_mut().push(writer)?))
    }

    async fn freshen(
        &mut self,
        request: CacheRequest,
        not_modified_headers: HeaderList,
    ) -> Result<Option<Resource<CacheEntry>>> {
        let (method, key, request_headers) = match parse_request(&request) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(e)),
        };
        let update = match header_map(&not_modified_headers) {
            Ok(update) => update,
            Err(e) => return Ok(Err(e)),
        };
        let (namespace, quota) = self.namespace();
        let Some(existing) = (method == http::Method::GET || method == http::Method::HEAD)
            .then(|| self.cache.backend.get(namespace, &key))
            .flatten()
        else {
            return Ok(Ok(None));
        };
        let now = SystemTime::now();
        let mut matched = None;
        let variants: Vec<Arc<Stored>> = existing
            .0
            .iter()
            .map(|stored| {
                if !stored.selected_by(&update) {
                    return stored.clone();
                }
                let fresh = Arc::new(stored.freshened(&update, now));
                if matched.is_none() && rfc9111::vary_matches(&fresh.vary, &request_headers) {
                    matched = Some(fresh.clone());
                }
                fresh
            })
            .collect();
        if let Err(e) =
            self.cache
                .backend
                .insert(namespace, quota, &key, CachedResponses(variants.into()))
        {
            return Ok(Err(CacheError::TooLarge(e.to_string())));
        }
        match matched {
            Some(stored) => Ok(Ok(Some(self.table_mut().push(CacheEntry(stored))?))),
            None => Ok(Ok(None)),
        }
    }

    async fn delete(&mut self, url: String) -> wasmtime::Result<bool> {
        let (namespace, _) = self.namespace();
        Ok(self.cache.backend.remove(namespace, &url))
    }

    async fn purge_tag(&mut self, tag: String) -> wasmtime::Result<u32> {
        let (namespace, _) = self.namespace();
        let purged = self.cache.backend.purge_tag(namespace, &tag);
        Ok(u32::try_from(purged).unwrap_or(u32::MAX))
    }
}

impl HostEntry for RequestState {
    async fn status(&mut self, entry: Resource<CacheEntry>) -> wasmtime::Result<u16> {
        Ok(self.table_ref().get(&entry)?.0.status)
    }

    async fn headers(&mut self, entry: Resource<CacheEntry>) -> wasmtime::Result<HeaderList> {
        let stored = &self.table_ref().get(&entry)?.0;
        let mut list = header_list(&stored.headers);
        let age = stored.age(SystemTime::now()).as_secs();
        list.push(("age".to_owned(), age.to_string().into_bytes()));
        Ok(list)
    }

    async fn age(&mut self, entry: Resource<CacheEntry>) -> wasmtime::Result<u64> {
        Ok(self
            .table_ref()
            .get(&entry)?
            .0
            .age(SystemTime::now())
            .as_secs())
    }

    async fn ttl(&mut self, entry: Resource<CacheEntry>) -> wasmtime::Result<u64> {
        Ok(self
            .table_ref()
            .get(&entry)?
            .0
            .ttl(SystemTime::now())
            .as_secs())
    }

    async fn body_length(&mut self, entry: Resource<CacheEntry>) -> wasmtime::Result<u64> {
        Ok(self.table_ref().get(&entry)?.0.body.len() as u64)
    }

    async fn body(
        &mut self,
        entry: Resource<CacheEntry>,
    ) -> wasmtime::Result<Resource<DynInputStream>> {
        let body = self.table_ref().get(&entry)?.0.body.clone();
        let stream: DynInputStream = Box::new(MemoryInputPipe::new(body));
        Ok(self.table_mut().push(stream)?)
    }

    async fn drop(&mut self, entry: Resource<CacheEntry>) -> wasmtime::Result<()> {
        self.table_mut().delete(entry)?;
        Ok(())
    }
}

impl HostWriter for RequestState {
    async fn body(&mut self, writer: Resource<CacheWriter>) -> Result<Resource<DynOutputStream>> {
        let writer = self.table_mut().get_mut(&writer)?;
        if writer.stream_taken {
            return Ok(Err(bad("the body stream was already taken")));
        }
        writer.stream_taken = true;
        let stream: DynOutputStream = Box::new(writer.body.clone());
        Ok(Ok(self.table_mut().push(stream)?))
    }

    async fn finish(&mut self, writer: Resource<CacheWriter>) -> wasmtime::Result<Finished> {
        let writer = self.table_mut().delete(writer)?;
        let body = writer.body.contents();
        if body.len() >= writer.capacity {
            return Ok(Finished {
                entry: None,
                error: Some(CacheError::TooLarge(format!(
                    "the body reached the largest entry this deployment's cache takes \
                     ({} bytes) and was cut",
                    writer.capacity
                ))),
            });
        }
        let now = SystemTime::now();
        let directives = Directives::parse(&writer.headers);
        let lifetime = writer.ttl.unwrap_or_else(|| {
            rfc9111::freshness_lifetime(writer.status, &writer.headers, &directives, now)
        });
        let initial_age = rfc9111::initial_age(&writer.headers, writer.request_time, now);
        let mut headers = writer.headers;
        headers.remove(http::header::AGE);
        let vary = rfc9111::vary_key(&writer.request, &headers).unwrap_or_default();
        let stored = Arc::new(Stored {
            status: writer.status,
            headers,
            body,
            vary,
            directives,
            response_time: now,
            initial_age,
            lifetime,
            tags: writer.tags,
        });
        let mut span = self.telemetry.span("cache.put", SpanKind::Internal, || {
            vec![
                KeyValue::new("virga.cache.key", writer.key.clone()),
                KeyValue::new("http.response.status_code", i64::from(stored.status)),
                KeyValue::new(
                    "virga.cache.ttl_s",
                    i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
                ),
            ]
        });
        let error = self.store(&writer.key, stored.clone()).err();
        if let Some(e) = &error {
            span.fail(|| format!("{e:?}"));
        }
        Ok(Finished {
            entry: Some(self.table_mut().push(CacheEntry(stored))?),
            error,
        })
    }

    async fn drop(&mut self, writer: Resource<CacheWriter>) -> wasmtime::Result<()> {
        self.table_mut().delete(writer)?;
        Ok(())
    }
}

impl HostFillToken for RequestState {
    async fn drop(&mut self, token: Resource<FillToken>) -> wasmtime::Result<()> {
        // Dropping the token wakes the requests waiting for this fill.
        self.table_mut().delete(token)?;
        Ok(())
    }
}
