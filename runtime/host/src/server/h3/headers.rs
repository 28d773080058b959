//! HTTP/3 field sections to and from `http` types, with the request checks of RFC 9114 §4.3.

use quiche::h3::{Header, NameValue};

/// A request head taken from a HEADERS frame, or the reason it is malformed.
pub(super) fn request_head(fields: &[Header]) -> Result<http::request::Builder, String> {
    let mut method = None;
    let mut scheme = None;
    let mut authority = None;
    let mut path = None;
    let mut builder = http::Request::builder().version(http::Version::HTTP_3);
    let mut regular_seen = false;
    for field in fields {
        let (name, value) = (field.name(), field.value());
        // RFC 9114 §4.2: field names are lowercase; §4.3: pseudo-header fields come first,
        // each at most once, and only the defined ones.
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err(format!(
                "the field name {:?} has uppercase letters",
                String::from_utf8_lossy(name)
            ));
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular_seen {
                return Err("a pseudo-header field follows a regular field".into());
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"authority" => &mut authority,
                b"path" => &mut path,
                other => {
                    return Err(format!(
                        "unknown pseudo-header field :{}",
                        String::from_utf8_lossy(other)
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(format!(
                    "the pseudo-header field {} appears twice",
                    String::from_utf8_lossy(name)
                ));
            }
            continue;
        }
        regular_seen = true;
        // RFC 9114 §4.2: connection-specific fields are malformed in HTTP/3.
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => {
                return Err(format!(
                    "the connection-specific field {} is not allowed in HTTP/3",
                    String::from_utf8_lossy(name)
                ));
            }
            b"te" if value != b"trailers" => {
                return Err("the te field may only be \"trailers\" in HTTP/3".into());
            }
            _ => {}
        }
        let name = http::HeaderName::from_bytes(name)
            .map_err(|_| format!("bad field name {:?}", String::from_utf8_lossy(name)))?;
        let value = http::HeaderValue::from_bytes(value)
            .map_err(|_| format!("bad value for the field {name}"))?;
        builder = builder.header(name, value);
    }
    let method = method.ok_or("the request has no :method")?;
    let method = http::Method::from_bytes(method).map_err(|_| "bad :method".to_owned())?;
    if method == http::Method::CONNECT {
        return Err("CONNECT is not supported".into());
    }
    let scheme = scheme.ok_or("the request has no :scheme")?;
    let path = path.ok_or("the request has no :path")?;
    if path.is_empty() {
        return Err("the :path is empty".into());
    }
    // RFC 9114 §4.3.1: without :authority, the Host field names the target.
    let uri = match authority {
        Some(authority) => http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build(),
        None => http::Uri::builder().path_and_query(path).build(),
    }
    .map_err(|e| format!("bad request target: {e}"))?;
    Ok(builder.method(method).uri(uri))
}

/// The HEADERS of a response: `:status` first, then the fields (RFC 9114 §4.3.2).
pub(super) fn response_head(parts: &http::response::Parts) -> Vec<Header> {
    let mut fields = Vec::with_capacity(parts.headers.len() + 1);
    fields.push(Header::new(b":status", parts.status.as_str().as_bytes()));
    fields.extend(fields_of(&parts.headers));
    fields
}

/// Header fields minus the connection-specific ones HTTP/3 forbids (RFC 9114 §4.2).
pub(super) fn fields_of(headers: &http::HeaderMap) -> impl Iterator<Item = Header> + '_ {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
            )
        })
        .map(|(name, value)| Header::new(name.as_str().as_bytes(), value.as_bytes()))
}

/// Trailer fields received after a request body, as a header map.
pub(super) fn trailers(fields: &[Header]) -> Result<http::HeaderMap, String> {
    let mut map = http::HeaderMap::with_capacity(fields.len());
    for field in fields {
        if field.name().starts_with(b":") {
            return Err("a pseudo-header field in trailers".into());
        }
        let name = http::HeaderName::from_bytes(field.name()).map_err(|_| "bad trailer name")?;
        let value =
            http::HeaderValue::from_bytes(field.value()).map_err(|_| "bad trailer value")?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Vec<Header> {
        list.iter()
            .map(|(n, v)| Header::new(n.as_bytes(), v.as_bytes()))
            .collect()
    }

    #[test]
    fn a_well_formed_request_becomes_an_http_request() {
        let head = request_head(&fields(&[
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "example.com:8443"),
            (":path", "/a?b=c"),
            ("content-type", "text/plain"),
        ]))
        .unwrap()
        .body(())
        .unwrap();
        assert_eq!(head.method(), http::Method::POST);
        assert_eq!(head.uri(), "https://example.com:8443/a?b=c");
        assert_eq!(head.headers()["content-type"], "text/plain");
        assert_eq!(head.version(), http::Version::HTTP_3);
    }

    #[test]
    fn malformed_requests_are_named() {
        let base = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "a"),
            (":path", "/"),
        ];
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&base[1..], "no :method"),
            (&[base[0], base[2], base[3]], "no :scheme"),
            (&base[..3], "no :path"),
            (
                &[base[0], base[1], base[2], (":path", "")],
                ":path is empty",
            ),
            (&[base[0], base[0], base[1], base[3]], "appears twice"),
            (
                &[base[0], (":protocol", "x"), base[1], base[3]],
                "unknown pseudo",
            ),
            (
                &[base[0], ("x", "1"), base[1], base[3]],
                "follows a regular",
            ),
            (&[base[0], base[1], base[3], ("X-Up", "1")], "uppercase"),
            (
                &[base[0], base[1], base[3], ("connection", "close")],
                "connection",
            ),
            (&[base[0], base[1], base[3], ("te", "gzip")], "te field"),
            (&[base[0], base[1], base[3], ("x", "a\nb")], "bad value"),
            (&[(":method", "CONNECT"), base[2]], "CONNECT"),
        ];
        for (list, expected) in cases {
            let err = request_head(&fields(list)).map(|_| ()).unwrap_err();
            assert!(err.contains(expected), "{list:?}: {err}");
        }
    }

    #[test]
    fn response_heads_lead_with_status_and_drop_connection_fields() {
        let response = http::Response::builder()
            .status(404)
            .header("content-type", "text/plain")
            .header("connection", "close")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let head = response_head(&parts);
        assert_eq!(head[0].name(), b":status");
        assert_eq!(head[0].value(), b"404");
        assert_eq!(head.len(), 2);
        assert_eq!(head[1].name(), b"content-type");
    }
}
