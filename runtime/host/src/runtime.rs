//! [`Runtime`]: the embeddable entry point.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::HandlerPre;
use crate::body::Body;
use crate::deployment::{CompiledComponent, Deployment, DeploymentConfig, DeploymentInfo};
use crate::engine::{EngineOptions, EpochTicker, build_engine};
use crate::error::Error;
use crate::host::cache::{CacheBackend, Collapser, MokaCache};
use crate::host::crypto::{KeyStore, StaticKeys};
use crate::host::fetch::{FetchBackend, HyperFetch};
use crate::registry::{Change, Registry};
use crate::state::RequestState;
use crate::store::{DeploymentStore, content_digest};
use crate::telemetry::Telemetry;

/// Where a guest's stdout and stderr go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestOutput {
    /// Discarded.
    #[default]
    Discard,
    /// Written to the host process's stdout and stderr (handy in development).
    Inherit,
    /// Line by line as log records tagged with the deployment and the request's trace and
    /// span ids: exported with the runtime's [`Telemetry`] when it has a logger, otherwise
    /// `tracing` events (target `virga::guest`). Bounded per request
    /// ([`TelemetryBuilder::guest_log_lines`](crate::telemetry::TelemetryBuilder::guest_log_lines)).
    Log,
}

/// Configures and builds a [`Runtime`]. Every setter documents its default.
#[derive(Clone, Debug)]
pub struct RuntimeBuilder {
    pub(crate) engine: EngineOptions,
    pub(crate) guest_output: GuestOutput,
    pub(crate) store: Option<Arc<dyn DeploymentStore>>,
    keep_versions: usize,
    fetch: Option<Arc<dyn FetchBackend>>,
    keys: Option<Arc<dyn KeyStore>>,
    cache: Option<Arc<dyn CacheBackend>>,
    cache_capacity: u64,
    long_running_lanes: usize,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    telemetry: Option<Telemetry>,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            engine: EngineOptions::default(),
            guest_output: GuestOutput::Discard,
            store: None,
            keep_versions: 10,
            fetch: None,
            keys: None,
            cache: None,
            cache_capacity: 256 << 20,
            long_running_lanes: crate::lanes::Lanes::default_count(),
            extra_roots: Vec::new(),
            telemetry: None,
        }
    }
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

    /// Persists deployments in `store` and restores them from it when the runtime is built.
    /// Default is none: deployments live in memory only.
    pub fn store(&mut self, store: Arc<dyn DeploymentStore>) -> &mut Self {
        self.store = Some(store);
        self
    }

    /// How many versions of each deployment are kept for rollback. Default is 10.
    pub fn keep_versions(&mut self, count: usize) -> &mut Self {
        self.keep_versions = count.max(1);
        self
    }

    /// Sends guests' subrequests with `backend` (after the policy has allowed them). Default
    /// is [`HyperFetch`] trusting the webpki roots and
    /// [`extra_root_certificates`](Self::extra_root_certificates).
    pub fn fetch_backend(&mut self, backend: Arc<dyn FetchBackend>) -> &mut Self {
        self.fetch = Some(backend);
        self
    }

    /// Where the host cache (`virga:edge/cache`) keeps entries. Default: a [`MokaCache`] in
    /// memory of [`cache_capacity`](Self::cache_capacity) bytes.
    pub fn cache_backend(&mut self, backend: Arc<dyn CacheBackend>) -> &mut Self {
        self.cache = Some(backend);
        self
    }

    /// Bytes the default in-memory cache holds over all deployments (each also has its own
    /// share, [`Limits::cache`](crate::Limits::cache)). Default 256 MiB.
    pub fn cache_capacity(&mut self, bytes: u64) -> &mut Self {
        self.cache_capacity = bytes;
        self
    }

    /// Where named host keys come from (`virga:edge/crypto` `key.open`). Default is none:
    /// every open fails with `not-found`.
    pub fn key_store(&mut self, keys: Arc<dyn KeyStore>) -> &mut Self {
        self.keys = Some(keys);
        self
    }

    /// How many guests that have run for more than 2 ms of CPU time may run at once: the
    /// others wait their turn, so that however many busy guests there are, short requests
    /// keep the rest of the machine's workers (see the epoch tick). Default is half the
    /// machine's cores, at least one.
    pub fn long_running_lanes(&mut self, lanes: usize) -> &mut Self {
        self.long_running_lanes = lanes.max(1);
        self
    }

    /// CA certificates the default fetch backend trusts besides the webpki roots (a private
    /// CA, a test CA). Default is none.
    pub fn extra_root_certificates(
        &mut self,
        certificates: impl IntoIterator<Item = rustls::pki_types::CertificateDer<'static>>,
    ) -> &mut Self {
        self.extra_roots.extend(certificates);
        self
    }

    /// Records spans, metrics and guest logs with `telemetry`. Default: a
    /// [`Telemetry::default`], which exports nothing and keeps metrics for
    /// [`Telemetry::prometheus`].
    pub fn telemetry(&mut self, telemetry: Telemetry) -> &mut Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Builds the runtime: creates the engine, starts its epoch thread, and restores the
    /// deployments of the store, if one is set (from precompiled artifacts: no recompiling).
    pub fn build(&self) -> Result<Runtime, Error> {
        warm_up_randomness();
        let engine = build_engine(&self.engine)?;
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = EpochTicker::start(&engine, self.engine.epoch_tick, epoch.clone())?;
        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| {
                crate::bindings::virga::edge::crypto::add_to_linker::<_, HasSelf<RequestState>>(
                    &mut linker,
                    |state| state,
                )
            })
            .and_then(|()| {
                crate::bindings::virga::edge::cache::add_to_linker::<_, HasSelf<RequestState>>(
                    &mut linker,
                    |state| state,
                )
            })
            .map_err(|e| Error::Engine(format!("cannot link WASI: {e}")))?;
        let engine_key = engine_key(&engine);
        let fetch = match &self.fetch {
            Some(backend) => backend.clone(),
            None => {
                Arc::new(HyperFetch::new(&self.extra_roots).map_err(|e| Error::Tls(e.to_string()))?)
            }
        };
        let keys = self
            .keys
            .clone()
            .unwrap_or_else(|| Arc::new(StaticKeys::new()));
        let cache = self
            .cache
            .clone()
            .unwrap_or_else(|| Arc::new(MokaCache::new(self.cache_capacity)));
        let telemetry = self.telemetry.clone().unwrap_or_default();
        let runtime = Runtime {
            inner: Arc::new(Inner {
                telemetry: telemetry.clone(),
                engine,
                fetch,
                keys,
                cache,
                collapser: Arc::default(),
                lanes: crate::lanes::Lanes::new(
                    self.long_running_lanes,
                    self.engine.epoch_tick,
                    epoch,
                ),
                engine_key,
                linker,
                registry: Registry::default(),
                follow_error: std::sync::Mutex::new(None),
                options: self.clone(),
                _ticker: ticker,
            }),
        };
        telemetry.observe_instances(Arc::downgrade(&runtime.inner));
        runtime.restore()?;
        if let Some(revisions) = self.store.as_ref().and_then(|store| store.watch()) {
            crate::persist::follow(Arc::downgrade(&runtime.inner), revisions)?;
        }
        Ok(runtime)
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
    pub(crate) telemetry: Telemetry,
    pub(crate) engine: Engine,
    pub(crate) fetch: Arc<dyn FetchBackend>,
    pub(crate) keys: Arc<dyn KeyStore>,
    pub(crate) cache: Arc<dyn CacheBackend>,
    pub(crate) collapser: Arc<Collapser>,
    pub(crate) lanes: crate::lanes::Lanes,
    engine_key: String,
    linker: Linker<RequestState>,
    pub(crate) registry: Registry,
    /// Why the last committed state of a shared store could not be applied, until one is.
    pub(crate) follow_error: std::sync::Mutex<Option<String>>,
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

    /// The runtime's telemetry (for its Prometheus text, or to flush it at exit).
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The wasmtime engine shared by all deployments.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles a component (binary, or WAT text) and checks that the host can run it: its
    /// imports are all provided and it exports `wasi:http/incoming-handler`.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledComponent, Error> {
        let digest = content_digest(bytes);
        let compiled = self.prepare(self.new_component(bytes)?, &digest)?;
        if let Some(store) = &self.inner.options.store {
            store.put_component(&digest, bytes)?;
            self.store_precompiled(store.as_ref(), &compiled);
        }
        Ok(compiled)
    }

    /// The compatibility key of artifacts this runtime's engine can load.
    pub(crate) fn engine_key(&self) -> &str {
        &self.inner.engine_key
    }

    /// Compiles component bytes for this runtime's engine.
    pub(crate) fn new_component(&self, bytes: &[u8]) -> Result<Component, Error> {
        Component::new(&self.inner.engine, bytes).map_err(|e| Error::InvalidComponent {
            reason: first_line(&e),
        })
    }

    pub(crate) fn prepare(
        &self,
        component: Component,
        digest: &str,
    ) -> Result<CompiledComponent, Error> {
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
        Ok(CompiledComponent {
            pre,
            digest: digest.into(),
        })
    }

    /// Deploys a component under a name as a new version and makes it live atomically:
    /// requests already running finish on the old version, new ones get the new version.
    /// Refused, with nothing changed, if a route belongs to another deployment. With a store,
    /// the new state is committed before it goes live.
    pub fn deploy(&self, config: DeploymentConfig) -> Result<DeploymentInfo, Error> {
        validate_name(&config.name)?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let keep = self.inner.options.keep_versions;
        let change = || Change::Deploy {
            deployment: Box::new(Deployment::new(config.clone(), created)),
            keep,
        };
        let info = self
            .apply(change)?
            .ok_or_else(|| Error::Engine("a deploy produced no deployment".into()))?;
        tracing::info!(
            deployment = %info.name,
            version = info.version,
            component = %info.component,
            "deployed"
        );
        Ok(info)
    }

    /// Makes an earlier kept version live again, instantly (it is still compiled): version
    /// `to`, or the one before the live version when `to` is `None`.
    pub fn rollback(&self, name: &str, to: Option<u64>) -> Result<DeploymentInfo, Error> {
        self.apply(|| Change::Rollback {
            name: name.to_owned(),
            to,
        })?
        .ok_or_else(|| Error::Engine("a rollback produced no deployment".into()))
    }

    /// Removes a deployment and all its versions.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        self.apply(|| Change::Remove {
            name: name.to_owned(),
        })
        .map(|_| ())
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

/// Seeds aws-lc's random generator now, not in some guest's first request: its first use in
/// a process gathers jitter entropy for tens of milliseconds, and a guest whose host call
/// (a subrequest's trace id, a crypto call) paid for it would be charged that as CPU time.
fn warm_up_randomness() {
    let mut byte = [0u8; 1];
    // A failure here shows again, and is handled, where randomness is used.
    let _ = aws_lc_rs::rand::fill(&mut byte);
}

/// Deployment names: 1 to 64 of `a-z`, `0-9`, `-`, `_` (they appear in paths and logs).
fn validate_name(name: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

/// A stable key for "artifacts this engine can load".
fn engine_key(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[allow(unsafe_code)]
pub(crate) fn deserialize(engine: &Engine, path: &std::path::Path) -> Result<Component, Error> {
    // SAFETY: `path` is a precompiled artifact that this host wrote into its own store with
    // `Component::serialize` (see `store_precompiled`); wasmtime also checks the header
    // against the engine's configuration before using it.
    let result = unsafe { Component::deserialize_file(engine, path) };
    result.map_err(|e| Error::InvalidComponent {
        reason: format!(
            "precompiled artifact {}: {}",
            path.display(),
            first_line(&e)
        ),
    })
}

/// The first line of an error chain, without wasmtime's multi-line backtrace.
pub(crate) fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_owned()
}
