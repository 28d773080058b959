//! Write Virga edge handlers in Rust.
//!
//! A handler is a function from an [`http::Request`] to an [`http::Response`], marked with
//! [`#[virga_sdk::handler]`](handler). It compiles to a standard `wasi:http/proxy` component
//! (target `wasm32-wasip2`) that runs on Virga and on any other `wasi:http` host.
//!
//! ```ignore
//! use virga_sdk::{Request, Response, Result};
//!
//! #[virga_sdk::handler]
//! async fn handle(req: Request) -> Result<Response> {
//!     Ok(Response::new(format!("hello from virga\n{} {}\n", req.method(), req.uri().path()).into()))
//! }
//! ```
//!
//! Bodies stream both ways: read the request with [`IncomingBody::chunk`] or
//! [`IncomingBody::bytes`]; answer with bytes, with the request body itself (spliced on the
//! host without entering guest memory), or with [`Body::stream`] for output written piece by
//! piece. A handler's `Err` becomes a response with the error's status (500 unless set) and
//! its message as a plain-text body.

#![deny(missing_docs)]

mod bindings;
mod body;
pub mod cache;
pub mod crypto;
mod error;
mod fetch;
mod headers;
mod reactor;
mod run;

pub use body::{Body, BodyWriter, IncomingBody};
pub use bytes::Bytes;
pub use error::Error;
pub use fetch::{FetchError, fetch};
pub use http;
pub use reactor::{join_all, wait_until};
pub use virga_sdk_macro::handler;

/// A request as a handler receives it.
pub type Request = http::Request<IncomingBody>;

/// A response as a handler returns it.
pub type Response = http::Response<Body>;

/// A handler's result; `Err` becomes an error response.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// What the host gives a handler besides the request.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Env {}

impl Env {
    /// A variable of the deployment (from its configuration), if set.
    pub fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// Sends a subrequest: the same as [`fetch`].
    pub async fn fetch(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Response<IncomingBody>, FetchError> {
        fetch(request).await
    }
}

/// What `#[handler]` expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::run::{IntoHandlerResult, run};
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::proxy::export;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};
}
