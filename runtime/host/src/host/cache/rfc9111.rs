//! The rules of a shared HTTP cache (RFC 9111, with RFC 5861's stale extensions): what may be
//! stored, how fresh it is, how old, which stored response a request may use, and how a
//! `304 Not Modified` freshens one. Pure functions over `http` types; `cache.rs` applies them.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Directives of `Cache-Control` (RFC 9111 §5.2) a shared cache acts on, from a request or a
/// response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    pub(crate) only_if_cached: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) min_fresh: Option<u64>,
    /// `max-stale` (request): `Some(None)` accepts any staleness.
    pub(crate) max_stale: Option<Option<u64>>,
    pub(crate) stale_while_revalidate: Option<u64>,
    pub(crate) stale_if_error: Option<u64>,
}

/// Delta-seconds (RFC 9111 §1.2.2): values too large for the cache are 2^31; a value that
/// does not parse makes the response stale (0), as §4.2.1 allows for invalid freshness.
fn delta_seconds(value: Option<&str>) -> u64 {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<u64>().unwrap_or(1 << 31).min(1 << 31)
        }
        _ => 0,
    }
}

/// Splits a list field on commas outside quoted strings.
fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

impl Directives {
    /// Parses every `Cache-Control` line of `headers` (RFC 9111 §5.2). Directive names are
    /// case-insensitive; of a repeated directive the first counts (§4.2.1); unknown ones are
    /// ignored (§5.2.3). `Pragma: no-cache` counts as `no-cache` when there is no
    /// `Cache-Control` (§5.4).
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        let mut any = false;
        for line in headers.get_all(header::CACHE_CONTROL) {
            let Ok(line) = line.to_str() else { continue };
            for item in split_list(line) {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                any = true;
                let (name, value) = match item.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (item, None),
                };
                let seconds = |slot: &mut Option<u64>| {
                    slot.get_or_insert(delta_seconds(value));
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    // A qualified no-cache ("no-cache=field") is treated as unqualified: the
                    // stricter reading §5.2.2.4 allows.
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "only-if-cached" => d.only_if_cached = true,
                    "max-age" => seconds(&mut d.max_age),
                    "s-maxage" => seconds(&mut d.s_maxage),
                    "min-fresh" => seconds(&mut d.min_fresh),
                    "stale-while-revalidate" => seconds(&mut d.stale_while_revalidate),
                    "stale-if-error" => seconds(&mut d.stale_if_error),
                    "max-stale" => {
                        d.max_stale
                            .get_or_insert(value.map(|v| delta_seconds(Some(v))));
                    }
                    _ => {}
                }
            }
        }
        if !any
            && headers.get_all(header::PRAGMA).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().contains("no-cache"))
            })
        {
            d.no_cache = true;
        }
        d
    }
}

/// Status codes a cache may store and give heuristic freshness without explicit freshness
/// (RFC 9110 §15.1).
fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn date(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value).ok()
}

/// Whether a response to `method` with `status` may be stored (RFC 9111 §3, §3.5); the error
/// names the rule that forbids it. `store_errors` lets a handler store 4xx/5xx, which is
/// otherwise refused against cache-poisoning denial of service.
pub(crate) fn storable(
    method: &http::Method,
    status: u16,
    request: &HeaderMap,
    response: &HeaderMap,
    ttl_override: bool,
    store_errors: bool,
) -> Result<(), String> {
    let req = Directives::parse(request);
    let res = Directives::parse(response);
    if method != http::Method::GET {
        return Err(format!(
            "only responses to GET are stored, not to {method} (RFC 9111 §3)"
        ));
    }
    if !(200..600).contains(&status) || status == 304 || status == 206 {
        return Err(format!(
            "status {status} is not stored (a final, complete response is; 304 freshens, \
             RFC 9111 §3, §4.3.4)"
        ));
    }
    if status >= 400 && !store_errors {
        return Err(format!(
            "status {status} is an error, not stored unless the handler asks (store-errors)"
        ));
    }
    if req.no_store || res.no_store {
        return Err("no-store (RFC 9111 §3, §5.2.1.5, §5.2.2.5)".into());
    }
    if res.private {
        return Err("private: a shared cache does not store it (RFC 9111 §5.2.2.7)".into());
    }
    if request.contains_key(header::AUTHORIZATION)
        && !(res.public || res.must_revalidate || res.s_maxage.is_some())
    {
        return Err(
            "a request with Authorization: only stored with public, must-revalidate or \
             s-maxage (RFC 9111 §3.5)"
                .into(),
        );
    }
    if vary_names(response).is_none() {
        return Err("Vary: * never matches a later request (RFC 9111 §4.1)".into());
    }
    let explicit = res.public
        || res.max_age.is_some()
        || res.s_maxage.is_some()
        || response.contains_key(header::EXPIRES);
    if !(explicit || ttl_override || heuristically_cacheable(status)) {
        return Err(format!(
            "status {status} without explicit freshness (max-age, s-maxage, Expires, public) \
             is not stored (RFC 9111 §3)"
        ));
    }
    Ok(())
}

/// The freshness lifetime (RFC 9111 §4.2.1): `s-maxage`, else `max-age`, else `Expires` minus
/// `Date`, else heuristic (§4.2.2): 10% of the time since `Last-Modified`, at most a day, for
/// heuristically cacheable statuses.
pub(crate) fn freshness_lifetime(
    status: u16,
    headers: &HeaderMap,
    directives: &Directives,
    response_time: SystemTime,
) -> Duration {
    if let Some(s) = directives.s_maxage.or(directives.max_age) {
        return Duration::from_secs(s);
    }
    let date_value = date(headers, header::DATE).unwrap_or(response_time);
    if headers.contains_key(header::EXPIRES) {
        // An invalid Expires (or "0") means already expired (§5.3).
        return date(headers, header::EXPIRES)
            .and_then(|expires| expires.duration_since(date_value).ok())
            .unwrap_or_default();
    }
    if (heuristically_cacheable(status) || directives.public)
        && let Some(modified) = date(headers, header::LAST_MODIFIED)
    {
        let since = date_value.duration_since(modified).unwrap_or_default();
        return (since / 10).min(Duration::from_secs(86_400));
    }
    Duration::ZERO
}

/// The age a response arrives with (RFC 9111 §4.2.3): `corrected_initial_age`, from its `Age`
/// and `Date` and when it was requested and received.
pub(crate) fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let age_value = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .map_or(0, |v| delta_seconds(Some(v)));
    let apparent_age = date(headers, header::DATE)
        .and_then(|d| response_time.duration_since(d).ok())
        .unwrap_or_default();
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    apparent_age.max(Duration::from_secs(age_value) + response_delay)
}

/// The field names `Vary` lists, lower case; `None` for `Vary: *`.
fn vary_names(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for line in response.get_all(header::VARY) {
        for name in line.to_str().unwrap_or("").split(',') {
            let name = name.trim();
            if name == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes())
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    Some(names)
}

/// A request field's value as `Vary` compares it (RFC 9111 §4.1): all lines joined, list
/// members trimmed; `None` when absent.
fn normalized(request: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = request.get_all(name).iter().peekable();
    values.peek()?;
    let joined: Vec<String> = values
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    Some(joined.join(", "))
}

/// The secondary key of a response: each field `Vary` names, with the request's value.
pub(crate) type VaryKey = Vec<(HeaderName, Option<String>)>;

/// The secondary key of storing `response` for `request`; `None` for `Vary: *`.
pub(crate) fn vary_key(request: &HeaderMap, response: &HeaderMap) -> Option<VaryKey> {
    Some(
        vary_names(response)?
            .into_iter()
            .map(|name| {
                let value = normalized(request, &name);
                (name, value)
            })
            .collect(),
    )
}

/// Whether a stored response with secondary key `key` may answer `request` (RFC 9111 §4.1).
pub(crate) fn vary_matches(key: &VaryKey, request: &HeaderMap) -> bool {
    key.iter()
        .all(|(name, value)| normalized(request, name) == *value)
}

/// Fields never stored: connection-specific ones (RFC 9110 §7.6.1; RFC 9111 §3.1) and `Age`,
/// which the cache computes.
pub(crate) fn strip_unstored(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::AGE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// A stored response.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) vary: VaryKey,
    pub(crate) directives: Directives,
    pub(crate) response_time: SystemTime,
    pub(crate) initial_age: Duration,
    pub(crate) lifetime: Duration,
    pub(crate) tags: Vec<String>,
}

/// How a stored response may be used for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Usable {
    Fresh,
    Stale {
        while_revalidating: bool,
        on_error: bool,
    },
}

impl Stored {
    /// `current_age` (RFC 9111 §4.2.3).
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.response_time).unwrap_or_default()
    }

    /// Freshness left at `now`.
    pub(crate) fn ttl(&self, now: SystemTime) -> Duration {
        self.lifetime.saturating_sub(self.age(now))
    }

    /// How long the entry is worth keeping: while fresh, while its stale extensions last, and
    /// (with validators) a while longer for revalidation.
    pub(crate) fn keep_for(&self) -> Duration {
        let extension = self
            .directives
            .stale_while_revalidate
            .unwrap_or(0)
            .max(self.directives.stale_if_error.unwrap_or(0));
        let validators = self.headers.contains_key(header::ETAG)
            || self.headers.contains_key(header::LAST_MODIFIED);
        let grace = if validators { 3600 } else { 0 };
        (self.lifetime + Duration::from_secs(extension.max(grace)))
            .saturating_sub(self.initial_age)
            .max(Duration::from_secs(1))
    }

    /// Whether it may answer a request with `request` directives at `now` (RFC 9111 §4.2,
    /// §4.2.4, §5.2.1; RFC 5861).
    pub(crate) fn usable(&self, request: &Directives, now: SystemTime) -> Usable {
        let secs = Duration::from_secs;
        let age = self.age(now);
        let lifetime = self.lifetime;
        let res = &self.directives;
        // must-revalidate, proxy-revalidate and s-maxage (§5.2.2.10) forbid serving stale.
        let strict = res.must_revalidate || res.proxy_revalidate || res.s_maxage.is_some();
        let mut fresh = age < lifetime && !res.no_cache && !request.no_cache;
        // §5.2.1.1: no older than max-age (so max-age=0 always validates).
        if let Some(max_age) = request.max_age {
            fresh &= age <= secs(max_age);
        }
        if let Some(min_fresh) = request.min_fresh {
            fresh &= lifetime.saturating_sub(age) >= secs(min_fresh);
        }
        if fresh {
            return Usable::Fresh;
        }
        let staleness = age.saturating_sub(lifetime);
        // §4.2.4: a client's max-stale lets a stale response be used, unless forbidden.
        if let Some(max_stale) = request.max_stale
            && !strict
            && !res.no_cache
            && !request.no_cache
            && request.max_age.is_none_or(|m| age <= secs(m))
            && max_stale.is_none_or(|m| staleness <= secs(m))
        {
            return Usable::Fresh;
        }
        let may_serve_stale = !strict && !res.no_cache && !request.no_cache;
        let within = |window: Option<u64>| window.is_some_and(|w| staleness <= secs(w));
        Usable::Stale {
            while_revalidating: may_serve_stale && within(res.stale_while_revalidate),
            on_error: may_serve_stale
                && (within(res.stale_if_error) || within(request.stale_if_error)),
        }
    }

    /// Fields that make a revalidation request conditional (RFC 9111 §4.3.1).
    pub(crate) fn conditional_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Some(etag) = self.headers.get(header::ETAG) {
            out.push((header::IF_NONE_MATCH, etag.clone()));
        }
        if let Some(modified) = self.headers.get(header::LAST_MODIFIED) {
            out.push((header::IF_MODIFIED_SINCE, modified.clone()));
        }
        out
    }

    /// Whether a `304` with `headers` selects this stored response (RFC 9111 §4.3.4): its
    /// strong `ETag` matches; else, without an ETag, its `Last-Modified` matches; else, with
    /// neither, the stored response has no validator either.
    pub(crate) fn selected_by(&self, not_modified: &HeaderMap) -> bool {
        let strong = |v: &HeaderValue| !v.as_bytes().starts_with(b"W/");
        if let Some(etag) = not_modified.get(header::ETAG) {
            return strong(etag) && self.headers.get(header::ETAG) == Some(etag);
        }
        if let Some(modified) = not_modified.get(header::LAST_MODIFIED) {
            return self.headers.get(header::LAST_MODIFIED) == Some(modified);
        }
        !self.headers.contains_key(header::ETAG)
            && !self.headers.contains_key(header::LAST_MODIFIED)
    }

    /// This response freshened by a `304` received at `now` (RFC 9111 §4.3.4, §3.2): its fields
    /// replaced by the 304's, except `Content-Length` and connection-specific ones; its age
    /// and freshness computed anew.
    pub(crate) fn freshened(&self, not_modified: &HeaderMap, now: SystemTime) -> Self {
        let mut update = not_modified.clone();
        strip_unstored(&mut update);
        update.remove(header::CONTENT_LENGTH);
        let mut headers = self.headers.clone();
        for name in update.keys() {
            headers.remove(name);
        }
        for (name, value) in &update {
            headers.append(name, value.clone());
        }
        let directives = Directives::parse(&headers);
        Self {
            status: self.status,
            lifetime: freshness_lifetime(self.status, &headers, &directives, now),
            initial_age: initial_age(not_modified, now, now),
            directives,
            headers,
            body: self.body.clone(),
            vary: self.vary.clone(),
            response_time: now,
            tags: self.tags.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn stored(response: &[(&str, &str)], lifetime: u64, age: u64) -> Stored {
        let headers = headers(response);
        Stored {
            status: 200,
            directives: Directives::parse(&headers),
            headers,
            body: Bytes::new(),
            vary: Vec::new(),
            response_time: SystemTime::now(),
            initial_age: Duration::from_secs(age),
            lifetime: Duration::from_secs(lifetime),
            tags: Vec::new(),
        }
    }

    /// §5.2: names are case-insensitive, quoted commas do not split, the first of a repeated
    /// directive counts; §5.4: Pragma only without Cache-Control.
    #[test]
    fn directives_parse_robustly() {
        let d = Directives::parse(&headers(&[
            ("cache-control", "Max-Age=10, foo=\"a,b\", max-age=99"),
            ("cache-control", "S-MAXAGE=5, must-revalidate"),
        ]));
        assert_eq!((d.max_age, d.s_maxage), (Some(10), Some(5)));
        assert!(d.must_revalidate && !d.no_cache);
        assert!(Directives::parse(&headers(&[("pragma", "no-cache")])).no_cache);
        let both = headers(&[("pragma", "no-cache"), ("cache-control", "max-age=5")]);
        assert!(!Directives::parse(&both).no_cache);
        let d = Directives::parse(&headers(&[("cache-control", "max-stale, min-fresh=3")]));
        assert_eq!((d.max_stale, d.min_fresh), (Some(None), Some(3)));
    }

    /// §3: what a shared cache may store.
    #[test]
    fn storable_follows_section_3() {
        let get = http::Method::GET;
        let none = HeaderMap::new();
        let ok = headers(&[("cache-control", "max-age=60")]);
        assert!(storable(&get, 200, &none, &ok, false, false).is_ok());
        assert!(storable(&http::Method::POST, 200, &none, &ok, false, false).is_err());
        assert!(storable(&get, 206, &none, &ok, false, false).is_err());
        assert!(storable(&get, 500, &none, &ok, false, false).is_err());
        assert!(storable(&get, 500, &none, &ok, false, true).is_ok());
        let no_store = headers(&[("cache-control", "no-store")]);
        assert!(storable(&get, 200, &no_store, &ok, false, false).is_err());
        let auth = headers(&[("authorization", "Basic x")]);
        assert!(storable(&get, 200, &auth, &ok, false, false).is_err());
        let shared = headers(&[("cache-control", "s-maxage=60")]);
        assert!(storable(&get, 200, &auth, &shared, false, false).is_ok());
        // 302 has no heuristic freshness: stored only with explicit freshness or a TTL.
        assert!(storable(&get, 302, &none, &none, false, false).is_err());
        assert!(storable(&get, 302, &none, &none, true, false).is_ok());
        assert!(storable(&get, 200, &none, &none, false, false).is_ok());
    }

    /// §4.2.1 and §4.2.2.
    #[test]
    fn freshness_lifetime_order() {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(100));
        let modified = httpdate::fmt_http_date(now - Duration::from_secs(1000));
        let life = |pairs: &[(&str, &str)]| {
            let h = headers(pairs);
            freshness_lifetime(200, &h, &Directives::parse(&h), now).as_secs()
        };
        assert_eq!(life(&[("cache-control", "max-age=5, s-maxage=7")]), 7);
        assert_eq!(
            life(&[("cache-control", "max-age=5"), ("expires", &later)]),
            5
        );
        assert_eq!(life(&[("date", &date), ("expires", &later)]), 100);
        assert_eq!(life(&[("date", &date), ("expires", "garbage")]), 0);
        assert_eq!(life(&[("date", &date), ("last-modified", &modified)]), 100);
        assert_eq!(life(&[]), 0);
    }

    /// §4.2.3: corrected initial age.
    #[test]
    fn initial_age_takes_the_larger_estimate() {
        let now = SystemTime::now();
        let sent = now - Duration::from_secs(2);
        let old_date = httpdate::fmt_http_date(now - Duration::from_secs(50));
        let age = |pairs: &[(&str, &str)]| initial_age(&headers(pairs), sent, now).as_secs();
        assert_eq!(age(&[("age", "10")]), 12, "Age plus the response delay");
        assert_eq!(
            age(&[("age", "10"), ("date", &old_date)]),
            50,
            "apparent age"
        );
        assert_eq!(age(&[("age", "junk")]), 2);
    }

    /// §4.1: Vary compares normalized values; absent matches absent only.
    #[test]
    fn vary_normalizes_values() {
        let response = headers(&[("vary", "Accept-Encoding, accept-language")]);
        let request = headers(&[("accept-encoding", "gzip,  br"), ("accept-language", "en")]);
        let key = vary_key(&request, &response).unwrap();
        let same = headers(&[
            ("accept-encoding", "gzip"),
            ("accept-encoding", "br"),
            ("accept-language", "en"),
        ]);
        assert!(vary_matches(&key, &same));
        assert!(!vary_matches(
            &key,
            &headers(&[("accept-encoding", "gzip, br")])
        ));
        assert!(vary_key(&request, &headers(&[("vary", "a, *")])).is_none());
    }

    /// §4.2.4, §5.2.1: request directives and the strictness of s-maxage.
    #[test]
    fn usable_honours_request_directives() {
        let now = SystemTime::now();
        let fresh = stored(&[("cache-control", "max-age=60")], 60, 10);
        let none = Directives::default();
        assert_eq!(fresh.usable(&none, now), Usable::Fresh);
        let min_fresh = Directives::parse(&headers(&[("cache-control", "min-fresh=55")]));
        assert!(matches!(
            fresh.usable(&min_fresh, now),
            Usable::Stale { .. }
        ));
        let stale = stored(&[("cache-control", "max-age=5")], 5, 10);
        let max_stale = Directives::parse(&headers(&[("cache-control", "max-stale=10")]));
        assert_eq!(stale.usable(&max_stale, now), Usable::Fresh);
        let strict = stored(&[("cache-control", "s-maxage=5, stale-if-error=60")], 5, 10);
        assert_eq!(
            strict.usable(&max_stale, now),
            Usable::Stale {
                while_revalidating: false,
                on_error: false
            }
        );
    }

    /// §4.3.4: which stored response a 304 selects, and what freshening keeps.
    #[test]
    fn a_304_selects_by_strong_validator_and_keeps_content_length() {
        let entry = stored(
            &[("etag", "\"a\""), ("content-length", "5"), ("x-old", "1")],
            0,
            0,
        );
        assert!(entry.selected_by(&headers(&[("etag", "\"a\"")])));
        assert!(!entry.selected_by(&headers(&[("etag", "W/\"a\"")])));
        assert!(!entry.selected_by(&headers(&[("etag", "\"b\"")])));
        let update = headers(&[
            ("etag", "\"a\""),
            ("cache-control", "max-age=30"),
            ("content-length", "0"),
            ("x-old", "2"),
        ]);
        let fresh = entry.freshened(&update, SystemTime::now());
        assert_eq!(fresh.headers["content-length"], "5");
        assert_eq!(fresh.headers["x-old"], "2");
        assert_eq!(fresh.lifetime, Duration::from_secs(30));
    }
}
