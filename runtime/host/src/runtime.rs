//! [`Runtime`]: the embeddable entry point.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::bindings::HandlerPre;
use crate::body::Body;
use crate::deployment::{CompiledComponent, DeploymentConfig, DeploymentInfo};
use crate::engine::{EngineOptions, EpochTicker, build_engine};
use crate::error::Error;
use crate::registry::Registry;
use crate::state::RequestState;

/// Where a guest's stdout and stderr go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestOutput {
    /// Discarded.
    #[default]
    Discard,
    /// Written to the host process's stdout and stderr (handy in development).
    Inherit,
}

/// Configures and builds a [`Runtime`]. Every setter documents its default.
#[derive(Clone, Debug, Default)]
pub struct RuntimeBuilder {
    pub(crate) engine: EngineOptions,
    pub(crate) guest_output: GuestOutput,
}

impl RuntimeBuilder {
    /// Whether instances come from wasmtime's pooling allocator (pre-reserved slots and
    /// copy-on-write memory images: microseconds per sandbox). Default is true.
    pub fn pooling(&mut self, enabled: bool) -> &mut Self {
        self.engine.pooling = enabled;
        self
    }

    /// How many instances may exist at once across all deployments: the number of requests
    /// that can run concurrently. Beyond it, requests get 503. Default is 1000.
    pub fn max_instances(&mut self, count: u32) -> &mut Self {
        self.engine.max_instances = count.max(1);
        self
    }

    /// The largest linear memory any deployment may be given, in bytes; each pool slot
    /// reserves this much address space (not memory). Default is 4 GiB.
    pub fn max_memory(&mut self, bytes: u64) -> &mut Self {
        self.engine.max_memory = bytes;
        self
    }

    /// How often the engine's epoch advances: the granularity of CPU-time limits and of
    /// guest preemption. Default is 1 ms.
    pub fn epoch_tick(&mut self, tick: Duration) -> &mut Self {
        self.engine.epoch_tick = tick.max(Duration::from_micros(100));
        self
    }

    /// Where guests' stdout and stderr go. Default is [`GuestOutput::Discard`].
    pub fn guest_output(&mut self, output: GuestOutput) -> &mut Self {
        self.guest_output = output;
        self
    }

    /// Builds the runtime: creates the engine and starts its epoch thread.
    pub fn build(&self) -> Result<Runtime, Error> {
        let engine = build_engine(&self.engine)?;
        let ticker = EpochTicker::start(&engine, self.engine.epoch_tick)?;
        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| Error::Engine(format!("cannot link WASI: {e}")))?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                registry: Registry::default(),
                options: self.clone(),
                _ticker: ticker,
            }),
        })
    }
}

/// An embeddable Virga runtime: compiles components, holds deployments, and answers
/// requests by running the matching deployment's handler in a fresh sandbox.
///
/// Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    linker: Linker<RequestState>,
    pub(crate) registry: Registry,
    pub(crate) options: RuntimeBuilder,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.options)
            .field("deployments", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder with every default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The wasmtime engine shared by all deployments.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles a component (binary, or WAT text) and checks that the host can run it: its
    /// imports are all provided and it exports `wasi:http/incoming-handler`.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledComponent, Error> {
        let component =
            Component::new(&self.inner.engine, bytes).map_err(|e| Error::InvalidComponent {
                reason: first_line(&e),
            })?;
        self.prepare(component)
    }

    fn prepare(&self, component: Component) -> Result<CompiledComponent, Error> {
        let instance_pre =
            self.inner
                .linker
                .instantiate_pre(&component)
                .map_err(|e| Error::InvalidComponent {
                    reason: first_line(&e),
                })?;
        let pre = HandlerPre::new(instance_pre).map_err(|e| Error::InvalidComponent {
            reason: format!(
                "it does not export wasi:http/incoming-handler@0.2.x ({})",
                first_line(&e)
            ),
        })?;
        Ok(CompiledComponent { pre })
    }

    /// Deploys a component under a name, replacing any deployment of that name atomically:
    /// requests already running finish on the old version, new ones get the new version.
    pub fn deploy(&self, config: DeploymentConfig) -> Result<DeploymentInfo, Error> {
        self.inner.registry.deploy(config)
    }

    /// Removes a deployment; returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        self.inner.registry.remove(name)
    }

    /// The live deployments, by name.
    pub fn deployments(&self) -> Vec<DeploymentInfo> {
        self.inner.registry.list()
    }

    /// Answers a request with the deployment its host and path route to.
    ///
    /// The request's URI should carry the authority, or it should have a `Host` header. The
    /// body streams into the guest as it reads; the response body streams out as the guest
    /// writes. An `Err` says what went wrong and, through [`Error::status`], which status to
    /// answer with; [`Error::into_response`] builds that response.
    pub async fn handle<B>(&self, request: http::Request<B>) -> Result<http::Response<Body>, Error>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        crate::dispatch::handle(self, request).await
    }
}

/// The first line of an error chain, without wasmtime's multi-line backtrace.
pub(crate) fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_owned()
}
