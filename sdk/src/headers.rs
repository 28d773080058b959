//! Header fields between the `http` crate and `wasi:http`, both ways.

use wasip2::http::types::{Fields, HeaderError};

/// `headers` as host fields; the error is the host refusing one (a forbidden or malformed
/// header).
pub(crate) fn to_fields(headers: &http::HeaderMap) -> Result<Fields, HeaderError> {
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&entries)
}

/// Appends host fields to `headers`, skipping any the `http` crate cannot represent.
pub(crate) fn append_fields(headers: &mut http::HeaderMap, fields: Fields) {
    for (name, value) in fields.entries() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
}
