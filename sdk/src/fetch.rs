//! Outbound requests over `wasi:http/outgoing-handler`: `fetch(request).await`.

use std::fmt;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, IncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme,
};

use crate::body::{IncomingBody, write_body};
use crate::headers::{append_fields, to_fields};
use crate::{Body, reactor};

/// Why a subrequest failed: the host's `wasi:http` error code. Virga's refusals (an origin
/// not allowed, an address not reachable, a limit) carry a message naming the rule.
#[derive(Clone)]
pub struct FetchError {
    code: ErrorCode,
}

impl FetchError {
    /// The `wasi:http` error code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// Whether the upstream took too long: to resolve, to connect, to answer, or between
    /// two pieces of its body (the host's `connect-timeout`, `first-byte-timeout` and
    /// `between-bytes-timeout` limits included).
    pub fn is_timeout(&self) -> bool {
        match &self.code {
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => true,
            ErrorCode::InternalError(Some(message)) => message
                .split(':')
                .next()
                .is_some_and(|rule| rule.ends_with("-timeout")),
            _ => false,
        }
    }
}

impl fmt::Debug for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.code)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            ErrorCode::InternalError(Some(message)) => f.write_str(message),
            code => write!(f, "{code:?}"),
        }
    }
}

impl std::error::Error for FetchError {}

fn failed(message: impl Into<String>) -> FetchError {
    FetchError {
        code: ErrorCode::InternalError(Some(message.into())),
    }
}

/// Sends `request` (an absolute URI: `https://host/path`) and resolves to the response head;
/// its body streams as it is read. Bodies of the request stream too: bytes, another incoming
/// body (spliced in the host), or a writer. Several fetches may be awaited together with
/// [`join_all`](crate::join_all).
pub async fn fetch(
    request: http::Request<Body>,
) -> Result<http::Response<IncomingBody>, FetchError> {
    let (parts, body) = request.into_parts();
    let headers =
        to_fields(&parts.headers).map_err(|e| failed(format!("a header was refused: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match parts.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    };
    let invalid = |what: &str| failed(format!("the request's {what} was refused"));
    outgoing
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    let scheme = match parts.uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") | None => Scheme::Https,
        Some(other) => Scheme::Other(other.to_owned()),
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    let authority = parts
        .uri
        .authority()
        .ok_or_else(|| failed(format!("{} is not an absolute URI", parts.uri)))?;
    outgoing
        .set_authority(Some(authority.as_str()))
        .map_err(|()| invalid("authority"))?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let outgoing_body = outgoing.body().map_err(|()| invalid("body"))?;
    let future = outgoing_handler::handle(outgoing, None).map_err(|code| FetchError { code })?;
    // The body goes up alongside: an upstream may answer while it is still reading it.
    reactor::spawn(send_body(outgoing_body, body));
    let response = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(FetchError { code }),
            Some(Err(())) => return Err(failed("the response was already taken")),
            None => reactor::ready(future.subscribe()).await,
        }
    };
    Ok(convert_response(response))
}

/// Writes the request body and finishes it; a failure leaves it unfinished, which the host
/// reports on the response.
async fn send_body(outgoing: OutgoingBody, body: Body) {
    let Ok(stream) = outgoing.write() else {
        return;
    };
    if write_body(stream, body).await.is_ok() {
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

fn convert_response(response: IncomingResponse) -> http::Response<IncomingBody> {
    let mut builder = http::Response::builder().status(response.status());
    if let Some(headers) = builder.headers_mut() {
        append_fields(headers, response.headers());
    }
    builder
        .body(IncomingBody::from_response(response))
        .unwrap_or_else(|_| http::Response::new(IncomingBody::empty()))
}
