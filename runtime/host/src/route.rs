//! Workers-style route patterns: `example.com/api/*`, `*.example.com/*`, `*/dns-query`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A route pattern: a host part and a path part, split at the first `/`.
///
/// - host: `example.com` (exact), `*.example.com` or `*example.com` (a leading `*` matches
///   any prefix), or `*` (any host). Compared case-insensitively, without the port.
/// - path: `/dns-query` (exact), or `/api/*` (a trailing `*` matches any suffix).
///
/// When several patterns match, the most specific wins: an exact host before a wildcard host
/// (longer suffix first) before `*`; then an exact path before a prefix, a longer prefix
/// before a shorter one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoutePattern {
    source: String,
    host: HostPattern,
    path: PathPattern,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HostPattern {
    Exact(String),
    Suffix(String),
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PathPattern {
    Exact(String),
    Prefix(String),
}

/// Why a route pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid route '{pattern}': {reason}")]
pub struct RouteError {
    pattern: String,
    reason: &'static str,
}

impl FromStr for RoutePattern {
    type Err = RouteError;

    fn from_str(pattern: &str) -> Result<Self, RouteError> {
        let fail = |reason| RouteError {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern.is_empty() || pattern.len() > 2048 {
            return Err(fail("must be 1 to 2048 characters"));
        }
        if pattern.contains("://") {
            return Err(fail("give host/path without a scheme"));
        }
        let (host, path) = match pattern.find('/') {
            Some(i) => pattern.split_at(i),
            None => return Err(fail("needs a path part, e.g. 'example.com/*'")),
        };
        if host.is_empty() {
            return Err(fail("needs a host part ('*' for any host)"));
        }
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix('*') {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(fail("'*' is allowed only at the start of the host"));
            }
            HostPattern::Suffix(suffix.to_owned())
        } else if host.contains('*') {
            return Err(fail("'*' is allowed only at the start of the host"));
        } else {
            HostPattern::Exact(host)
        };
        let path = match path.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => {
                return Err(fail("'*' is allowed only at the end of the path"));
            }
            Some(prefix) => PathPattern::Prefix(prefix.to_owned()),
            None if path.contains('*') => {
                return Err(fail("'*' is allowed only at the end of the path"));
            }
            None => PathPattern::Exact(path.to_owned()),
        };
        Ok(Self {
            source: pattern.to_owned(),
            host,
            path,
        })
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl RoutePattern {
    /// The catch-all route `*/*`.
    pub fn any() -> Self {
        "*/*".parse().expect("valid pattern")
    }

    /// Whether this pattern matches a request's host (without port, any case) and path.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() >= s.len()
                    && host.as_bytes()[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        };
        host_ok
            && match &self.path {
                PathPattern::Exact(p) => path == p,
                PathPattern::Prefix(p) => path.starts_with(p.as_str()),
            }
    }

    /// Orders patterns most specific first.
    pub(crate) fn specificity_cmp(&self, other: &Self) -> Ordering {
        fn host_key(h: &HostPattern) -> (u8, usize) {
            match h {
                HostPattern::Exact(s) => (0, usize::MAX - s.len()),
                HostPattern::Suffix(s) => (1, usize::MAX - s.len()),
                HostPattern::Any => (2, 0),
            }
        }
        fn path_key(p: &PathPattern) -> (usize, u8) {
            match p {
                PathPattern::Exact(s) => (usize::MAX - s.len(), 0),
                PathPattern::Prefix(s) => (usize::MAX - s.len(), 1),
            }
        }
        host_key(&self.host)
            .cmp(&host_key(&other.host))
            .then_with(|| path_key(&self.path).cmp(&path_key(&other.path)))
    }
}

/// The host of a request without its port: `Example.com:8443` → `Example.com`,
/// `[::1]:8080` → `[::1]`.
pub(crate) fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rfind(':') {
        Some(i) => &authority[..i],
        None => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RoutePattern {
        s.parse().unwrap()
    }

    #[test]
    fn exact_and_wildcard_hosts() {
        assert!(p("example.com/*").matches("EXAMPLE.com", "/x"));
        assert!(!p("example.com/*").matches("a.example.com", "/x"));
        assert!(p("*.example.com/*").matches("a.example.com", "/"));
        assert!(!p("*.example.com/*").matches("example.com", "/"));
        assert!(p("*example.com/*").matches("example.com", "/"));
        assert!(p("*/dns-query").matches("anything", "/dns-query"));
        assert!(!p("*/dns-query").matches("anything", "/dns-query/x"));
    }

    #[test]
    fn most_specific_sorts_first() {
        let mut routes = [
            p("*/*"),
            p("*.example.com/*"),
            p("example.com/api/*"),
            p("example.com/*"),
            p("example.com/api/v1"),
        ];
        routes.sort_by(RoutePattern::specificity_cmp);
        let order: Vec<String> = routes.iter().map(ToString::to_string).collect();
        assert_eq!(
            order,
            [
                "example.com/api/v1",
                "example.com/api/*",
                "example.com/*",
                "*.example.com/*",
                "*/*"
            ]
        );
    }

    #[test]
    fn bad_patterns_name_the_problem() {
        for (bad, reason) in [
            ("", "must be 1 to 2048 characters"),
            ("example.com", "needs a path part"),
            ("/x", "needs a host part"),
            ("a*b.com/x", "only at the start of the host"),
            ("example.com/a*/b", "only at the end of the path"),
            ("https://example.com/", "without a scheme"),
        ] {
            let err = bad.parse::<RoutePattern>().unwrap_err().to_string();
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("localhost"), "localhost");
    }
}
