//! The cache-proxy sample as an RFC 9111 shared cache, rule by rule, over real sockets: Virga's
//! server with the sample in front of a loopback origin that the test scripts and counts. Each
//! test names the section it checks.

use std::time::{Duration, SystemTime};

use crate::cache_harness::{Origin, Site, answer, get, send, setup, start_proxy};

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// RFC 9111 §3, §4.2, §4.2.3, §5.1: a response with max-age is stored; the next request is
/// a hit with an Age, and does not reach the origin.
#[tokio::test]
async fn a_fresh_response_is_served_from_the_cache_with_age() {
    let (origin, proxy) = setup().await;
    let addr = proxy.addr;
    origin.set(
        "/page",
        answer(200, &[("cache-control", "max-age=60")], "page"),
    );
    let first = get(addr, "/page").await;
    assert_eq!((first.status, first.body.as_str()), (200, "page"));
    assert!(
        first.cache_status().contains("fwd=miss") && first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = get(addr, "/page").await;
    assert_eq!((second.status, second.body.as_str()), (200, "page"));
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    let age: u64 = second.header("age").unwrap().parse().unwrap();
    assert!(age >= 1, "age {age}");
    assert_eq!(origin.count("/page"), 1);
}

/// RFC 9111 §3: no-store and private are not stored by a shared cache; §3 + CPDoS: error
/// statuses are not stored by default.
#[tokio::test]
async fn no_store_private_and_errors_are_not_stored() {
    let (origin, proxy) = setup().await;
    let addr = proxy.addr;
    origin.set(
        "/nostore",
        answer(200, &[("cache-control", "max-age=60, no-store")], "x"),
    );
    origin.set(
        "/private",
        answer(200, &[("cache-control", "max-age=60, private")], "x"),
    );
    origin.set(
        "/error",
        answer(500, &[("cache-control", "max-age=60")], "boom"),
    );
    origin.set(
        "/notfound",
        answer(404, &[("cache-control", "max-age=60")], "gone"),
    );
    for path in ["/nostore", "/private", "/error", "/notfound"] {
        get(addr, path).await;
        let again = get(addr, path).await;
        assert!(
            !again.cache_status().contains("hit"),
            "{path}: {}",
            again.cache_status()
        );
        assert_eq!(origin.count(path), 2, "{path}");
    }
}

/// RFC 9111 §4.3: a stale entry is revalidated with If-None-Match; a 304 freshens it and the
/// stored body is served.
#[tokio::test]
async fn a_stale_entry_is_revalidated_and_freshened_by_304() {
    let (origin, proxy) = setup().await;
    let addr = proxy.addr;
    origin.set(
        "/v",
        answer(
            200,
            &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
            "body v1",
        ),
    );
    get(addr, "/v").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set(
        "/v",
        answer(
            304,
            &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
            "",
        ),
    );
    let revalidated = get(addr, "/v").await;
    assert_eq!(
        (revalidated.status, revalidated.body.as_str()),
        (200, "body v1")
    );
    assert!(
        revalidated.cache_status().contains("fwd-status=304"),
        "{}",
        revalidated.cache_status()
    );
    let seen = origin.last("/v");
    assert!(
        seen.headers
            .iter()
            .any(|(n, v)| n == "if-none-match" && v == "\"v1\""),
        "{seen:?}"
    );
    // Freshened with max-age=60: a hit now.
    let hit = get(addr, "/v").await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    assert_eq!(origin.count("/v"), 2);
}

/// RFC 9111 §4.4: a successful unsafe request invalidates the stored response; the method
/// override header is not forwarded.
#[tokio::test]
async fn an_unsafe_method_invalidates_and_overrides_are_stripped() {
    let (origin, proxy) = setup().await;
    let addr = proxy.addr;
    origin.set(
        "/doc",
        answer(200, &[("cache-control", "max-age=60")], "doc"),
    );
    get(addr, "/doc").await;
    assert!(get(addr, "/doc").await.cache_status().contains("hit"));
    let put = send(
        addr,
        "PUT",
        "/doc",
        &[
            ("content-type", "application/json"),
            ("x-http-method-override", "GET"),
        ],
        "{\"a\":1}",
    )
    .await;
    assert_eq!(put.status, 200);
    let seen = origin.last("/doc");
    assert_eq!(seen.method, "PUT");
    assert!(
        !seen
            .headers
            .iter()
            .any(|(n, _)| n == "x-http-method-override")
    );
    let after = get(addr, "/doc").await;
    assert!(
        after.cache_status().contains("fwd=miss"),
        "{}",
        after.cache_status()
    );
    assert_eq!(origin.count("/doc"), 3);
}

/// RFC 9111 §4.1: Vary keeps one response per value of the named request field.
#[tokio::test]
async fn vary_keeps_a_response_per_request_field_value() {
    let (origin, proxy) = setup().await;
    let addr = proxy.addr;
    origin.set(
        "/lang",
        answer(
            200,
            &[("cache-control", "max-age=60"), ("vary", "accept-language")],
            "text",
        ),
    );
    for _ in 0..2 {
        send(addr, "GET", "/lang", &[("accept-language", "en")], "").await;
        send(addr, "GET", "/lang", &[("accept-language", "fr")], "").await;
    }
    assert_eq!(origin.count("/lang"), 2);
    let fr = send(addr, "GET", "/lang", &[("accept-language", "fr")], "").await;
    assert!(fr.cache_status().contains("hit"));
}

/// Collapsing: 100 concurrent misses on one key reach the origin once.
#[tokio::test]
async fn concurrent_misses_reach_the_origin_once() {
    let (origin, proxy) = setup().await;
    let addr = proxy.addr;
    let mut slow = answer(200, &[("cache-control", "max-age=60")], "slow");
    slow.delay = Duration::from_millis(500);
    origin.set("/slow", slow);
    let all: Vec<_> = (0..100).map(|_| tokio::spawn(get(addr, "/slow"))).collect();
    for task in all {
        let got = task.await.unwrap();
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, "slow"),
            "{}",
            got.cache_status()
        );
    }
    assert_eq!(origin.count("/slow"), 1);
}

/// The key drops utm_* parameters and sorts the rest.
#[tokio::test]
async fn the_cache_key_is_normalized() {
    let (origin, proxy) = setup().await;
    let addr = proxy.addr;
    for path in ["/q?b=2&a=1", "/q?a=1&b=2&utm_source=x"] {
        origin.set(path, answer(200, &[("cache-control", "max-age=60")], "q"));
    }
    get(addr, "/q?b=2&a=1").await;
    let second = get(addr, "/q?a=1&b=2&utm_source=x").await;
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
}

/// Requests `path` twice; whether the second was a hit, and how many reached the origin.
async fn twice(origin: &Origin, addr: std::net::SocketAddr, path: &str) -> (bool, usize) {
    get(addr, path).await;
    let second = get(addr, path).await;
    (second.cache_status().contains("hit"), origin.count(path))
}

/// RFC 9111 §4.2.1: s-maxage over max-age (shared cache); max-age over Expires; else Expires
/// minus Date; an invalid Expires means already expired (§5.3).
#[tokio::test]
async fn freshness_lifetime_follows_s_maxage_max_age_expires() {
    let (origin, proxy) = setup().await;
    let now = SystemTime::now();
    let past = http_date(now - Duration::from_secs(3600));
    let soon = http_date(now + Duration::from_secs(60));
    let date = http_date(now);
    origin.set(
        "/s",
        answer(200, &[("cache-control", "max-age=0, s-maxage=60")], "s"),
    );
    origin.set(
        "/m",
        answer(
            200,
            &[("cache-control", "max-age=60"), ("expires", &past)],
            "m",
        ),
    );
    origin.set(
        "/e",
        answer(200, &[("date", &date), ("expires", &soon)], "e"),
    );
    origin.set(
        "/bad",
        answer(200, &[("date", &date), ("expires", "0")], "b"),
    );
    origin.set(
        "/old",
        answer(200, &[("date", &date), ("expires", &past)], "o"),
    );
    assert_eq!(
        twice(&origin, proxy.addr, "/s").await,
        (true, 1),
        "s-maxage"
    );
    assert_eq!(
        twice(&origin, proxy.addr, "/m").await,
        (true, 1),
        "max-age over Expires"
    );
    assert_eq!(
        twice(&origin, proxy.addr, "/e").await,
        (true, 1),
        "Expires - Date"
    );
    assert_eq!(
        twice(&origin, proxy.addr, "/bad").await,
        (false, 2),
        "invalid Expires"
    );
    assert_eq!(
        twice(&origin, proxy.addr, "/old").await,
        (false, 2),
        "Expires in the past"
    );
}

/// RFC 9111 §4.2.2: without explicit freshness, a heuristically cacheable status with
/// Last-Modified gets a fraction of its age; without Last-Modified it is not fresh.
#[tokio::test]
async fn heuristic_freshness_needs_last_modified() {
    let (origin, proxy) = setup().await;
    let modified = http_date(SystemTime::now() - Duration::from_secs(10 * 86_400));
    origin.set("/lm", answer(200, &[("last-modified", &modified)], "lm"));
    origin.set("/none", answer(200, &[], "none"));
    assert_eq!(twice(&origin, proxy.addr, "/lm").await, (true, 1));
    assert_eq!(twice(&origin, proxy.addr, "/none").await, (false, 2));
}

/// RFC 9111 §4.2.3: the Age a response arrives with counts; one older than its max-age is
/// stale at once.
#[tokio::test]
async fn the_age_a_response_arrives_with_counts() {
    let (origin, proxy) = setup().await;
    origin.set(
        "/young",
        answer(200, &[("cache-control", "max-age=60"), ("age", "30")], "y"),
    );
    origin.set(
        "/old",
        answer(200, &[("cache-control", "max-age=60"), ("age", "100")], "o"),
    );
    get(proxy.addr, "/young").await;
    let hit = get(proxy.addr, "/young").await;
    assert!(hit.cache_status().contains("hit"));
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((30..40).contains(&age), "age {age}");
    assert_eq!(twice(&origin, proxy.addr, "/old").await, (false, 2));
}

/// RFC 9111 §4.1: `Vary: *` never matches, so it is not stored.
#[tokio::test]
async fn vary_star_is_never_served_from_the_cache() {
    let (origin, proxy) = setup().await;
    origin.set(
        "/star",
        answer(200, &[("cache-control", "max-age=60"), ("vary", "*")], "x"),
    );
    assert_eq!(twice(&origin, proxy.addr, "/star").await, (false, 2));
}

/// RFC 9111 §5.2.2.4: a `no-cache` response is stored but validated before each use.
#[tokio::test]
async fn a_no_cache_response_is_revalidated_every_time() {
    let (origin, proxy) = setup().await;
    origin.set(
        "/nc",
        answer(
            200,
            &[("cache-control", "no-cache"), ("etag", "\"a\"")],
            "nc",
        ),
    );
    get(proxy.addr, "/nc").await;
    origin.set(
        "/nc",
        answer(304, &[("cache-control", "no-cache"), ("etag", "\"a\"")], ""),
    );
    let second = get(proxy.addr, "/nc").await;
    assert_eq!(second.body, "nc");
    assert_eq!(origin.count("/nc"), 2);
    let seen = origin.last("/nc");
    assert!(
        seen.headers
            .iter()
            .any(|(n, v)| n == "if-none-match" && v == "\"a\"")
    );
}

/// RFC 9111 §5.2.1.4 and §5.2.1.1: a request's `no-cache` or `max-age=0` makes the cache
/// validate; §5.2.1.7: `only-if-cached` on a miss is a 504.
#[tokio::test]
async fn request_directives_are_honoured() {
    let (origin, proxy) = setup().await;
    origin.set("/r", answer(200, &[("cache-control", "max-age=60")], "r"));
    get(proxy.addr, "/r").await;
    for directive in ["no-cache", "max-age=0"] {
        let got = send(proxy.addr, "GET", "/r", &[("cache-control", directive)], "").await;
        assert!(
            !got.cache_status().contains("hit"),
            "{directive}: {}",
            got.cache_status()
        );
    }
    assert_eq!(origin.count("/r"), 3);
    let got = send(
        proxy.addr,
        "GET",
        "/r",
        &[("cache-control", "max-stale=5")],
        "",
    )
    .await;
    assert!(got.cache_status().contains("hit"));
    let got = send(
        proxy.addr,
        "GET",
        "/never",
        &[("cache-control", "only-if-cached")],
        "",
    )
    .await;
    assert_eq!(got.status, 504);
    assert_eq!(origin.count("/never"), 0);
}

/// RFC 9111 §3.5: a response to a request with Authorization is stored only with `public`,
/// `must-revalidate` or `s-maxage`.
#[tokio::test]
async fn authorized_requests_are_stored_only_when_allowed() {
    let (origin, proxy) = setup().await;
    origin.set(
        "/auth",
        answer(200, &[("cache-control", "max-age=60")], "mine"),
    );
    origin.set(
        "/pub",
        answer(200, &[("cache-control", "public, max-age=60")], "ours"),
    );
    let auth = [("authorization", "Bearer x")];
    for path in ["/auth", "/pub"] {
        send(proxy.addr, "GET", path, &auth, "").await;
        send(proxy.addr, "GET", path, &auth, "").await;
    }
    assert_eq!(origin.count("/auth"), 2);
    assert_eq!(origin.count("/pub"), 1);
}

/// RFC 5861 §4 and RFC 9111 §5.2.2.2, §5.2.2.8: with stale-if-error a stale response is served when the
/// origin fails; with must-revalidate it never is.
#[tokio::test]
async fn stale_if_error_but_never_past_must_revalidate() {
    let (origin, proxy) = setup().await;
    origin.set(
        "/sie",
        answer(
            200,
            &[("cache-control", "max-age=1, stale-if-error=60")],
            "old",
        ),
    );
    origin.set(
        "/mr",
        answer(
            200,
            &[(
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=60",
            )],
            "old",
        ),
    );
    origin.set(
        "/pr",
        answer(
            200,
            &[(
                "cache-control",
                "max-age=1, proxy-revalidate, stale-if-error=60",
            )],
            "old",
        ),
    );
    for path in ["/sie", "/mr", "/pr"] {
        get(proxy.addr, path).await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for path in ["/sie", "/mr", "/pr"] {
        origin.set(path, answer(500, &[], "down"));
    }
    let sie = get(proxy.addr, "/sie").await;
    assert_eq!(
        (sie.status, sie.body.as_str()),
        (200, "old"),
        "{}",
        sie.cache_status()
    );
    assert!(sie.cache_status().contains("stale-if-error"));
    // §5.2.2.8: proxy-revalidate binds a shared cache as must-revalidate does.
    for path in ["/mr", "/pr"] {
        let got = get(proxy.addr, path).await;
        assert_eq!((got.status, got.body.as_str()), (500, "down"), "{path}");
    }
}

/// RFC 5861 §3: within stale-while-revalidate the stale response is served at once and
/// refreshed in the background (after the response is sent).
#[tokio::test]
async fn stale_while_revalidate_serves_then_refreshes() {
    let (origin, proxy) = setup().await;
    origin.set(
        "/swr",
        answer(
            200,
            &[("cache-control", "max-age=1, stale-while-revalidate=60")],
            "v1",
        ),
    );
    get(proxy.addr, "/swr").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set(
        "/swr",
        answer(200, &[("cache-control", "max-age=60")], "v2"),
    );
    let stale = get(proxy.addr, "/swr").await;
    assert_eq!(stale.body, "v1");
    assert!(
        stale.cache_status().contains("stale-while-revalidate"),
        "{}",
        stale.cache_status()
    );
    for _ in 0..50 {
        if origin.count("/swr") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = get(proxy.addr, "/swr").await;
    assert_eq!(
        fresh.body,
        "v2",
        "origin saw {} requests; {}",
        origin.count("/swr"),
        fresh.cache_status()
    );
    assert!(
        fresh.cache_status().contains("hit"),
        "{}",
        fresh.cache_status()
    );
    assert_eq!(origin.count("/swr"), 2);
}

/// RFC 9111 §4.4: Location and Content-Location of a successful unsafe request are
/// invalidated too (same origin only).
#[tokio::test]
async fn unsafe_methods_invalidate_location_targets() {
    let (origin, proxy) = setup().await;
    origin.set(
        "/item",
        answer(200, &[("cache-control", "max-age=60")], "item"),
    );
    origin.set("/items", answer(201, &[("location", "/item")], "created"));
    get(proxy.addr, "/item").await;
    assert!(
        get(proxy.addr, "/item")
            .await
            .cache_status()
            .contains("hit")
    );
    send(proxy.addr, "POST", "/items", &[], "new").await;
    assert!(
        get(proxy.addr, "/item")
            .await
            .cache_status()
            .contains("fwd=miss")
    );
}

/// Purging: by URL and by the origin's Cache-Tag, only with the token.
#[tokio::test]
async fn purge_by_url_and_tag_needs_the_token() {
    let (origin, proxy) = setup().await;
    origin.set(
        "/a",
        answer(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cache-tag", "news, front"),
            ],
            "a",
        ),
    );
    origin.set(
        "/b",
        answer(
            200,
            &[("cache-control", "max-age=60"), ("cache-tag", "news")],
            "b",
        ),
    );
    origin.set("/c", answer(200, &[("cache-control", "max-age=60")], "c"));
    for path in ["/a", "/b", "/c"] {
        let got = get(proxy.addr, path).await;
        assert!(
            got.header("cache-tag").is_none(),
            "Cache-Tag is not passed on"
        );
    }
    let refused = send(
        proxy.addr,
        "PURGE",
        "/c",
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(refused.status, 403);
    let auth = ("authorization", "Bearer secret");
    let by_tag = send(proxy.addr, "PURGE", "/", &[auth, ("cache-tag", "news")], "").await;
    assert_eq!(
        (by_tag.status, by_tag.body.trim()),
        (200, "purged 2 (tag news)")
    );
    let by_url = send(proxy.addr, "PURGE", "/c", &[auth], "").await;
    assert_eq!((by_url.status, by_url.body.trim()), (200, "purged 1"));
    for path in ["/a", "/b", "/c"] {
        assert!(
            get(proxy.addr, path)
                .await
                .cache_status()
                .contains("fwd=miss"),
            "{path}"
        );
    }
}

/// Isolation: one deployment cannot read another's entries, and filling one to its share
/// evicts none of the other's.
#[tokio::test]
async fn deployments_have_their_own_namespace_and_share() {
    let origin = Origin::default();
    let origin_addr = origin.start().await;
    let sites = [
        Site {
            name: "a",
            route: "a.test/*",
            quota: 1 << 20,
        },
        Site {
            name: "b",
            route: "b.test/*",
            quota: 1 << 20,
        },
    ];
    let proxy = start_proxy(origin_addr, 64 << 20, &sites, &[("purge_token", "t")]).await;
    let big = "x".repeat(100 * 1024);
    for i in 0..30 {
        origin.set(
            &format!("/fill{i}"),
            answer(200, &[("cache-control", "max-age=600")], &big),
        );
    }
    origin.set(
        "/shared",
        answer(200, &[("cache-control", "max-age=600")], "shared"),
    );
    let host = |h: &'static str| [("host", h)];
    send(proxy.addr, "GET", "/shared", &host("b.test"), "").await;
    let from_a = send(proxy.addr, "GET", "/shared", &host("a.test"), "").await;
    assert!(
        from_a.cache_status().contains("fwd=miss"),
        "A does not see B's entry"
    );
    for i in 0..30 {
        send(proxy.addr, "GET", &format!("/fill{i}"), &host("a.test"), "").await;
    }
    let from_b = send(proxy.addr, "GET", "/shared", &host("b.test"), "").await;
    assert!(
        from_b.cache_status().contains("hit"),
        "A filling its share evicts none of B's"
    );
    // A's purge of the same URL empties A's entry only.
    let purge = [("host", "a.test"), ("authorization", "Bearer t")];
    let purged = send(proxy.addr, "PURGE", "/shared", &purge, "").await;
    assert_eq!(purged.status, 200);
    let from_b = send(proxy.addr, "GET", "/shared", &host("b.test"), "").await;
    assert!(
        from_b.cache_status().contains("hit"),
        "A cannot purge B's entry"
    );
    assert_eq!(origin.count("/shared"), 2);
}

/// Bounds: inserting four times the cache's capacity keeps its accounted size, and the
/// process's resident memory, within the bound.
#[tokio::test]
async fn the_cache_stays_within_its_capacity() {
    let origin = Origin::default();
    let origin_addr = origin.start().await;
    let capacity: u64 = 64 << 20;
    let sites = [
        Site {
            name: "a",
            route: "a.test/*",
            quota: 128 << 20,
        },
        Site {
            name: "b",
            route: "b.test/*",
            quota: 128 << 20,
        },
    ];
    let proxy = start_proxy(origin_addr, capacity, &sites, &[]).await;
    let body = "y".repeat(1 << 20);
    for i in 0..128 {
        origin.set(
            &format!("/big{i}"),
            answer(200, &[("cache-control", "max-age=600")], &body),
        );
    }
    let rss = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    let before = rss();
    let mut stored = 0u64;
    for round in 0..2 {
        for i in 0..128 {
            let host = if (i + round) % 2 == 0 {
                "a.test"
            } else {
                "b.test"
            };
            let got = send(
                proxy.addr,
                "GET",
                &format!("/big{i}"),
                &[("host", host)],
                "",
            )
            .await;
            assert_eq!(got.status, 200);
            stored += got.body.len() as u64;
            assert!(
                proxy.cache.used() <= capacity,
                "used {} > {capacity}",
                proxy.cache.used()
            );
        }
    }
    let grown = rss().saturating_sub(before);
    println!(
        "cache bound: {} MiB through the cache, {} MiB held (capacity {} MiB), RSS grew {} MiB",
        stored >> 20,
        proxy.cache.used() >> 20,
        capacity >> 20,
        grown >> 20
    );
    assert!(stored >= 4 * capacity);
    assert!(grown < capacity + (96 << 20), "RSS grew {grown} bytes");
}

/// A body larger than one entry may be is not stored, and the client still gets all of it.
#[tokio::test]
async fn a_body_too_large_for_the_cache_is_served_but_not_stored() {
    let origin = Origin::default();
    let origin_addr = origin.start().await;
    let site = Site {
        name: "small",
        route: "*/*",
        quota: 1 << 20,
    };
    let proxy = start_proxy(origin_addr, 64 << 20, &[site], &[]).await;
    let big = "z".repeat(700 * 1024);
    origin.set(
        "/big",
        answer(200, &[("cache-control", "max-age=60")], &big),
    );
    for _ in 0..2 {
        let got = get(proxy.addr, "/big").await;
        assert_eq!((got.status, got.body.len()), (200, big.len()));
        assert!(!got.cache_status().contains("hit"));
    }
    assert_eq!(origin.count("/big"), 2);
}

/// Hostile or broken input never breaks the proxy: an over-long URL bypasses the cache,
/// malformed directives are read robustly (RFC 9111 §4.2.1, §1.2.2), a huge max-age is
/// clamped, garbage Age counts as 0.
#[tokio::test]
async fn malformed_requests_and_responses_are_handled() {
    let (origin, proxy) = setup().await;
    let long = format!("/long?{}", "a".repeat(10 * 1024));
    origin.set(
        &long,
        answer(200, &[("cache-control", "max-age=60")], "long"),
    );
    let got = get(proxy.addr, &long).await;
    assert_eq!((got.status, got.body.as_str()), (200, "long"));
    assert!(
        got.cache_status().contains("bypass"),
        "{}",
        got.cache_status()
    );

    origin.set(
        "/huge",
        answer(
            200,
            &[("cache-control", "max-age=99999999999999999999999")],
            "h",
        ),
    );
    origin.set(
        "/quoted",
        answer(200, &[("cache-control", "max-age=\"60\"")], "q"),
    );
    origin.set(
        "/junk",
        answer(
            200,
            &[
                ("cache-control", ",, =, max-age=60, foo=\"a,b\""),
                ("age", "abc"),
            ],
            "j",
        ),
    );
    origin.set("/neg", answer(200, &[("cache-control", "max-age=-5")], "n"));
    assert_eq!(twice(&origin, proxy.addr, "/huge").await, (true, 1));
    assert_eq!(twice(&origin, proxy.addr, "/quoted").await, (true, 1));
    assert_eq!(twice(&origin, proxy.addr, "/junk").await, (true, 1));
    assert_eq!(
        twice(&origin, proxy.addr, "/neg").await,
        (false, 2),
        "an invalid max-age is stale"
    );

    origin.set("/r", answer(200, &[("cache-control", "max-age=60")], "r"));
    let weird = [
        ("cache-control", "max-age=abc, no-cache=\", max-stale=-1"),
        ("vary", "x"),
    ];
    let got = send(proxy.addr, "GET", "/r", &weird, "").await;
    assert_eq!(got.status, 200);
}

/// Cache-poisoned denial of service (CPDoS: header oversize, meta characters, method
/// override): whatever error an attacker's request provokes is never served to the next
/// client; the proxy even refuses to store the origin's "cacheable" error pages.
#[tokio::test]
async fn attackers_cannot_poison_the_cache_with_error_pages() {
    let (origin, proxy) = setup().await;
    origin.be_strict();
    let big = "x".repeat(6000);
    // (attack, the status the attacker gets): the oversized header reaches the origin and gets
    // its 400; a control character is refused by Virga's HTTP parser; override headers are
    // stripped, so the origin never sees them and answers normally.
    let attacks: [(&str, &str, u16); 4] = [
        ("x-oversized", big.as_str(), 400),
        ("x-meta", "a\u{7}b", 400),
        ("x-http-method-override", "DELETE", 200),
        ("x-http-method", "POST", 200),
    ];
    for (i, (name, value, status)) in attacks.iter().enumerate() {
        let path = format!("/page{i}");
        origin.set(
            &path,
            answer(200, &[("cache-control", "max-age=600")], "page"),
        );
        let attacker = send(proxy.addr, "GET", &path, &[(name, value)], "").await;
        assert_eq!(attacker.status, *status, "{name}: {}", attacker.body);
        assert!(attacker.status == 200 || !attacker.cache_status().contains("stored"));
        let victim = get(proxy.addr, &path).await;
        assert_eq!(
            (victim.status, victim.body.as_str()),
            (200, "page"),
            "after {name}"
        );
    }
    assert!(
        !origin
            .seen_headers()
            .iter()
            .any(|n| n.starts_with("x-http-method")),
        "override headers never reach the origin"
    );
}
