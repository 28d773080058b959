//! Virga: an embeddable, Workers-like edge runtime.
//!
//! Handlers are WASI 0.2 components exporting `wasi:http/incoming-handler` (the standard
//! `wasi:http/proxy` world). Each request runs in a fresh, limited sandbox instantiated from
//! a pre-compiled, pre-linked component in microseconds.
//!
//! # Embedding, step by step
//!
//! 1. Build a [`Runtime`] with [`Runtime::builder`]; every setter documents its default.
//! 2. Compile a component with [`Runtime::compile`]: it is checked to be a `wasi:http/proxy`
//!    handler whose imports the host provides.
//! 3. Deploy it under a name with routes and [`Limits`] via [`DeploymentConfig`].
//! 4. Hand requests to [`Runtime::handle`] from any server (hyper, axum, ...), or run Virga's
//!    own listeners with [`server::Server`].
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use virga::{DeploymentConfig, Limits, Runtime};
//!
//! let runtime = Runtime::builder().build()?;
//! let component = runtime.compile(&std::fs::read("hello.wasm")?)?;
//! runtime.deploy(
//!     DeploymentConfig::new("hello", component)
//!         .route("*/*".parse()?)
//!         .limits(Limits::default().memory(64 << 20)),
//! )?;
//!
//! let request = http::Request::get("http://example.com/hi")
//!     .body(http_body_util::Empty::<bytes::Bytes>::new())?;
//! let response = match runtime.handle(request).await {
//!     Ok(response) => response,
//!     Err(error) => error.into_response(), // 4xx/5xx with a message naming the problem
//! };
//! println!("{}", response.status());
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod bindings;
mod body;
pub mod config;
mod deployment;
mod dispatch;
mod engine;
mod error;
mod host;
mod lanes;
mod limits;
mod persist;
mod registry;
mod route;
mod runtime;
pub mod server;
mod state;
pub mod store;
pub mod telemetry;
mod trace;

pub use body::{Body, BodyError, full};
pub use deployment::{CompiledComponent, DeploymentConfig, DeploymentInfo};
pub use dispatch::{ConnectionInfo, PROTOCOL_HEADER};
pub use error::{Error, GuestFailure};
pub use host::cache::{
    CacheBackend, CacheEntry, CacheFull, CacheWriter, CachedResponses, FillToken, MokaCache,
};
pub use host::crypto::{KeyHandle, KeyStore, StaticKeys, algorithm_by_name};
pub use host::fetch::{
    AllowedOrigin, BoxError, FetchBackend, FetchBody, FetchError, HyperFetch, InvalidOrigin,
    SendOptions,
};
pub use limits::{Limit, Limits};
pub use route::{RouteError, RoutePattern};
pub use runtime::{GuestOutput, Runtime, RuntimeBuilder};
