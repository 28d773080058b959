//! The glue between the exported `wasi:http/incoming-handler` and a handler function.

use std::future::Future;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam, Scheme,
};

use crate::body::{BodyKind, IncomingBody, write_body};
use crate::headers::{append_fields, to_fields};
use crate::{Body, Env, Error, Request, Response, reactor};

/// What a handler may return: a response, or a result whose error converts into [`Error`].
pub trait IntoHandlerResult {
    /// The response, or the error to answer with.
    fn into_handler_result(self) -> Result<Response, Error>;
}

impl IntoHandlerResult for Response {
    fn into_handler_result(self) -> Result<Response, Error> {
        Ok(self)
    }
}

impl<E: Into<Error>> IntoHandlerResult for Result<Response, E> {
    fn into_handler_result(self) -> Result<Response, Error> {
        self.map_err(Into::into)
    }
}

/// Runs `handler` for one exported `handle` call.
pub fn run<F, Fut>(request: IncomingRequest, out: ResponseOutparam, handler: F)
where
    F: FnOnce(Request, Env) -> Fut,
    Fut: Future,
    Fut::Output: IntoHandlerResult,
{
    reactor::block_on(async move {
        let result = match convert_request(request) {
            Ok(request) => handler(request, Env::default()).await.into_handler_result(),
            Err(e) => Err(e),
        };
        let response = result.unwrap_or_else(|e| {
            let mut response = Response::new(Body::from(format!("{}\n", e.message())));
            *response.status_mut() = e.status();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        });
        send(response, out).await;
        reactor::run_after_response().await;
    });
}

fn convert_request(request: IncomingRequest) -> Result<Request, Error> {
    let method = match request.method() {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(other) => http::Method::from_bytes(other.as_bytes())
            .map_err(|_| Error::new(http::StatusCode::BAD_REQUEST, "invalid method"))?,
    };
    let scheme = match request.scheme() {
        Some(Scheme::Https) => "https".to_owned(),
        Some(Scheme::Other(s)) => s,
        _ => "http".to_owned(),
    };
    let authority = request.authority().unwrap_or_default();
    let path = request.path_with_query().unwrap_or_else(|| "/".to_owned());
    let uri = if authority.is_empty() {
        http::Uri::try_from(path)
    } else {
        http::Uri::try_from(format!("{scheme}://{authority}{path}"))
    }
    .map_err(|e| Error::new(http::StatusCode::BAD_REQUEST, format!("invalid URI: {e}")))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    if let Some(headers) = builder.headers_mut() {
        append_fields(headers, request.headers());
    }
    let body = IncomingBody::new(request);
    builder
        .body(body)
        .map_err(|e| Error::new(http::StatusCode::BAD_REQUEST, e.to_string()))
}

async fn send(response: Response, out: ResponseOutparam) {
    let (mut parts, body) = response.into_parts();
    // A body of known size is sent with Content-Length rather than chunked; the host checks
    // that exactly that many bytes are written.
    let known_len = match &body.kind {
        BodyKind::Bytes(bytes) => Some(bytes.len()),
        BodyKind::Empty => Some(0),
        _ => None,
    };
    let bodyless = parts.status.is_informational()
        || parts.status == http::StatusCode::NO_CONTENT
        || parts.status == http::StatusCode::NOT_MODIFIED;
    if let (Some(len), false) = (known_len, bodyless) {
        parts
            .headers
            .entry(http::header::CONTENT_LENGTH)
            .or_insert_with(|| http::HeaderValue::from(len));
    }
    let headers = match to_fields(&parts.headers) {
        Ok(headers) => headers,
        Err(e) => {
            let message = format!("the handler set a header the host refuses: {e:?}\n");
            let fallback = Fields::new();
            let _ = fallback.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
            let outgoing = OutgoingResponse::new(fallback);
            let _ = outgoing.set_status_code(500);
            let body = outgoing.body().expect("a new response has a body");
            ResponseOutparam::set(out, Ok(outgoing));
            let stream = body.write().expect("a new body has a stream");
            let written = stream.blocking_write_and_flush(message.as_bytes());
            drop(stream);
            return finish(body, written.map_err(|e| Error::msg(format!("{e:?}"))));
        }
    };
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(parts.status.as_u16());
    let outgoing_body = outgoing.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(outgoing));
    let stream = outgoing_body.write().expect("a new body has a stream");
    let written = write_body(stream, body).await;
    finish(outgoing_body, written);
}

/// Ends the body: `finish` on success; on failure, drop it unfinished so that the host treats
/// the response as broken rather than complete.
fn finish(body: OutgoingBody, result: Result<(), Error>) {
    match result {
        Ok(()) => {
            let _ = OutgoingBody::finish(body, None);
        }
        Err(e) => {
            eprintln!("virga-sdk: response body aborted: {e}");
            drop(body);
        }
    }
}
