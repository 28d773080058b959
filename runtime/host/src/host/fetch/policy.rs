//! Which origins a deployment may fetch from, and which addresses are off limits unless an
//! origin is allowed exactly (SSRF protection).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An origin a deployment may fetch from: `scheme://host[:port]`.
///
/// The scheme is `http` or `https`; the port defaults to the scheme's (80, 443). The host is a
/// name, an IP address (IPv6 in brackets), `*.example.com` (any name under `example.com`, not
/// `example.com` itself) or `*` (any host). Only an origin without a wildcard lets requests
/// reach loopback, private, link-local or metadata addresses: wildcard origins reach public
/// addresses only, checked against the address the name resolves to.
///
/// ```
/// let origin: virga::AllowedOrigin = "https://*.example.com:8443".parse().unwrap();
/// assert_eq!(origin.to_string(), "https://*.example.com:8443");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedOrigin {
    https: bool,
    host: HostPattern,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HostPattern {
    /// A lower-case name or an IP address (IPv6 without brackets).
    Exact(String),
    /// `*.suffix`: stores `.suffix`.
    Subdomains(String),
    /// `*`.
    Any,
}

/// How an origin matched a request's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OriginMatch {
    /// Through a wildcard: public addresses only.
    Wildcard,
    /// Exactly: any address the name resolves to.
    Exact,
}

/// Why an origin string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin '{origin}': {reason}")]
pub struct InvalidOrigin {
    origin: String,
    reason: &'static str,
}

impl FromStr for AllowedOrigin {
    type Err = InvalidOrigin;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| InvalidOrigin {
            origin: text.to_owned(),
            reason,
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("write it as scheme://host[:port], e.g. https://api.example.com"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad("an origin has no path, query, fragment or user"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("the port is invalid"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_name(suffix) {
                return Err(bad("the host after '*.' is not a valid name"));
            }
            HostPattern::Subdomains(format!(".{suffix}"))
        } else if host.parse::<IpAddr>().is_ok() || is_name(&host) {
            HostPattern::Exact(host)
        } else {
            return Err(bad(
                "the host must be a name, an IP address, '*.name' or '*' (a '*' only leads)",
            ));
        };
        Ok(Self { https, host, port })
    }
}

/// Splits `host[:port]` / `[v6][:port]`; `None` if the port is not a number from 1 to 65535.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    match port {
        None => Some((host, None)),
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => Some((host, Some(port))),
            _ => None,
        },
    }
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
fn is_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl AllowedOrigin {
    /// How this origin matches `https`/`host`/`port` (host in lower case, IPv6 without
    /// brackets), if it does.
    pub(crate) fn matches(&self, https: bool, host: &str, port: u16) -> Option<OriginMatch> {
        if self.https != https || self.port != port {
            return None;
        }
        match &self.host {
            HostPattern::Exact(exact) if exact == host => Some(OriginMatch::Exact),
            HostPattern::Subdomains(suffix) if host.ends_with(suffix.as_str()) => {
                Some(OriginMatch::Wildcard)
            }
            HostPattern::Any => Some(OriginMatch::Wildcard),
            _ => None,
        }
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match &self.host {
            HostPattern::Exact(host) if host.contains(':') => write!(f, "{scheme}://[{host}]")?,
            HostPattern::Exact(host) => write!(f, "{scheme}://{host}")?,
            HostPattern::Subdomains(suffix) => write!(f, "{scheme}://*{suffix}")?,
            HostPattern::Any => write!(f, "{scheme}://*")?,
        }
        let default = if self.https { 443 } else { 80 };
        if self.port != default {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// The best match of `https://host:port` against `allow`: an exact origin wins over wildcards.
pub(crate) fn check(
    allow: &[AllowedOrigin],
    https: bool,
    host: &str,
    port: u16,
) -> Option<OriginMatch> {
    let mut best = None;
    for origin in allow {
        match origin.matches(https, host, port) {
            Some(OriginMatch::Exact) => return Some(OriginMatch::Exact),
            Some(OriginMatch::Wildcard) => best = Some(OriginMatch::Wildcard),
            None => {}
        }
    }
    best
}

/// The kind of a non-public address, or `None` for a public one. Covers loopback, RFC 1918
/// private, shared (RFC 6598), link-local (with the 169.254.169.254 metadata endpoint),
/// "this network", broadcast, multicast, documentation and benchmarking ranges; for IPv6
/// also unique-local (RFC 4193), link-local, and IPv4 addresses embedded in IPv4-mapped,
/// NAT64 (RFC 6052) and 6to4 addresses.
pub(crate) fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        _ if ip.is_private() => "private (RFC 1918)",
        _ if ip.is_link_local() => "link-local",
        (100, 64..=127, _) => "shared address space (RFC 6598)",
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        _ if ip.is_broadcast() => "broadcast",
        _ if ip.is_multicast() => "multicast",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match segments {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return non_public_v4(embedded(hi, lo)),
        // Local-use NAT64 (RFC 8215): reaches whatever the local translator reaches.
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (RFC 8215)",
        // Teredo hides an IPv4 address (obfuscated): never treat it as public.
        [0x2001, 0, ..] => "Teredo (RFC 4380)",
        [0x100, 0, 0, 0, ..] => "discard-only (RFC 6666)",
        [0x2002, hi, lo, ..] => return non_public_v4(embedded(hi, lo)),
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique local (RFC 4193)",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local (deprecated)",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0xdb8, ..] => "documentation",
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible (deprecated)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> AllowedOrigin {
        text.parse().unwrap()
    }

    #[test]
    fn origins_parse_and_print_canonically() {
        for (text, canonical) in [
            ("https://api.example.com", "https://api.example.com"),
            ("HTTPS://API.Example.com:443/", "https://api.example.com"),
            ("https://*.example.com:8443", "https://*.example.com:8443"),
            ("http://127.0.0.1:5353", "http://127.0.0.1:5353"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://*", "https://*"),
        ] {
            assert_eq!(origin(text).to_string(), canonical, "{text}");
        }
    }

    #[test]
    fn bad_origins_are_refused_with_the_reason() {
        for (text, reason) in [
            ("api.example.com", "scheme://host"),
            ("ftp://example.com", "http or https"),
            ("https://example.com/path", "no path"),
            ("https://user@example.com", "no path"),
            ("https://example.com:0", "port"),
            ("https://example.com:99999", "port"),
            ("https://exa mple.com", "must be a name"),
            ("https://a.*.example.com", "must be a name"),
            ("https://*.", "after '*.'"),
            ("https://", "must be a name"),
            ("https://[::1", "port"),
        ] {
            let e = text.parse::<AllowedOrigin>().unwrap_err().to_string();
            assert!(e.contains(reason) && e.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn matching_follows_scheme_host_and_port() {
        let allow = [
            origin("https://api.example.com"),
            origin("https://*.example.com:8443"),
            origin("http://127.0.0.1:5353"),
        ];
        let exact = Some(OriginMatch::Exact);
        let wildcard = Some(OriginMatch::Wildcard);
        assert_eq!(check(&allow, true, "api.example.com", 443), exact);
        assert_eq!(check(&allow, false, "api.example.com", 443), None);
        assert_eq!(check(&allow, true, "api.example.com", 8443), wildcard);
        assert_eq!(check(&allow, true, "a.b.example.com", 8443), wildcard);
        assert_eq!(check(&allow, true, "example.com", 8443), None);
        assert_eq!(check(&allow, true, "evilexample.com", 8443), None);
        assert_eq!(check(&allow, false, "127.0.0.1", 5353), exact);
        assert_eq!(check(&allow, false, "127.0.0.1", 5354), None);
        assert_eq!(check(&[origin("http://*")], false, "x.test", 80), wildcard);
    }

    #[test]
    fn non_public_ranges_are_named() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "metadata"),
            ("169.254.1.1", "link-local"),
            ("100.100.100.200", "shared"),
            ("0.0.0.0", "this network"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00:ec2::254", "unique local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "metadata"),
            ("2002:c0a8:0101::1", "private"),
            ("64:ff9b:1::a00:1", "local-use NAT64"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("fec0::1", "site-local"),
            ("100::1", "discard"),
        ] {
            let got = non_public(ip.parse().unwrap());
            assert!(got.is_some_and(|k| k.contains(kind)), "{ip}: {got:?}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::101:101",
        ] {
            assert_eq!(non_public(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
