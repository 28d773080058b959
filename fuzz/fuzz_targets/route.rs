//! Route patterns: parsing any text, and matching any host and path against what parsed.
//! Input: `pattern\nhost\npath` (seeds in `fuzz/seeds/route`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use virga::RoutePattern;

fuzz_target!(|text: &str| {
    let mut parts = text.splitn(3, '\n');
    let source = parts.next().unwrap_or("");
    let host = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let Ok(pattern) = source.parse::<RoutePattern>() else {
        return;
    };
    // The written form parses back to the same pattern.
    let again: RoutePattern = pattern
        .to_string()
        .parse()
        .expect("a pattern's text parses");
    assert_eq!(again, pattern);
    let matched = pattern.matches(host, path);
    // Hosts compare without regard to ASCII case.
    assert_eq!(matched, pattern.matches(&host.to_ascii_uppercase(), path));
    // The catch-all takes every request path (they start with '/').
    assert_eq!(
        RoutePattern::any().matches(host, path),
        path.starts_with('/')
    );
    // A pattern without wildcards matches exactly its own host and path.
    if !source.contains('*') {
        let (own_host, own_path) = source.split_at(source.find('/').expect("has a path"));
        assert!(
            pattern.matches(own_host, own_path),
            "{pattern} against itself"
        );
        assert_eq!(
            matched,
            host.eq_ignore_ascii_case(own_host) && path == own_path,
            "{pattern} against {host:?} {path:?}"
        );
    }
});
