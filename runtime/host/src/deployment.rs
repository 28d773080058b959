//! Compiled components and the deployments that serve them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use wasmtime::component::Component;

use crate::bindings::HandlerPre;
use crate::host::fetch::AllowedOrigin;
use crate::limits::Limits;
use crate::route::RoutePattern;
use crate::state::RequestState;

/// A component compiled for this runtime's engine, its imports resolved against the host,
/// and checked to export `wasi:http/incoming-handler`. Cheap to clone.
#[derive(Clone)]
pub struct CompiledComponent {
    pub(crate) pre: HandlerPre<RequestState>,
    pub(crate) digest: Arc<str>,
}

impl CompiledComponent {
    /// SHA-256 of the component's bytes, lower-case hex: its identity in a store.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The underlying wasmtime component.
    pub fn component(&self) -> &Component {
        self.pre.instance_pre().component()
    }
}

impl fmt::Debug for CompiledComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledComponent")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// What to deploy: a named component, the routes it serves, and its limits.
///
/// ```no_run
/// # fn f(component: virga::CompiledComponent) -> Result<(), Box<dyn std::error::Error>> {
/// let config = virga::DeploymentConfig::new("hello", component)
///     .route("example.com/*".parse()?)
///     .limits(virga::Limits::default().memory(64 << 20));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeploymentConfig {
    /// The deployment's name: unique in a runtime; deploying the same name again replaces it.
    pub name: String,
    /// The component to run.
    pub component: CompiledComponent,
    /// The routes it serves. Default is none: add at least one.
    pub routes: Vec<RoutePattern>,
    /// Its limits. Default is [`Limits::default`].
    pub limits: Limits,
    /// Variables the guest reads as environment variables. Default is none.
    pub vars: BTreeMap<String, String>,
    /// Origins its handlers may fetch from. Default is none: every subrequest is refused.
    pub allow: Vec<AllowedOrigin>,
}

impl DeploymentConfig {
    /// A deployment of `component` named `name`, with no routes and default limits.
    pub fn new(name: impl Into<String>, component: CompiledComponent) -> Self {
        Self {
            name: name.into(),
            component,
            routes: Vec::new(),
            limits: Limits::default(),
            vars: BTreeMap::new(),
            allow: Vec::new(),
        }
    }

    /// Lets the handlers fetch from `origin` (see [`AllowedOrigin`] for the forms).
    pub fn allow(mut self, origin: AllowedOrigin) -> Self {
        self.allow.push(origin);
        self
    }

    /// Sets a variable the guest reads as an environment variable.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Adds a route the deployment serves.
    pub fn route(mut self, route: RoutePattern) -> Self {
        self.routes.push(route);
        self
    }

    /// Sets the deployment's limits. Default is [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// A live deployment: what a request routed to it runs.
#[derive(Debug)]
pub(crate) struct Deployment {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) component: CompiledComponent,
    pub(crate) routes: Vec<RoutePattern>,
    pub(crate) limits: Limits,
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) allow: Vec<AllowedOrigin>,
    /// Slots for requests running at once ([`Limits::concurrency`]), and their number.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pub(crate) slot_count: usize,
    /// `virga.deployment = name`, the attribute of its telemetry (cheap to clone).
    pub(crate) metric_name: opentelemetry::KeyValue,
    /// `vars` as the pairs WASI takes, built once.
    pub(crate) env: Vec<(String, String)>,
    /// Seconds since the Unix epoch.
    pub(crate) created: u64,
}

/// A summary of a live deployment, as listed by [`Runtime::deployments`](crate::Runtime::deployments).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeploymentInfo {
    /// The deployment's name.
    pub name: String,
    /// The live version: 1 for the first deploy of a name, incremented by each deploy.
    pub version: u64,
    /// The kept versions, oldest first; any of them can be made live again.
    pub versions: Vec<u64>,
    /// SHA-256 of the live component.
    pub component: String,
    /// The routes it serves.
    pub routes: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// Its variables.
    pub vars: BTreeMap<String, String>,
    /// The origins it may fetch from.
    pub allow: Vec<String>,
}

impl Deployment {
    pub(crate) fn new(config: DeploymentConfig, created: u64) -> Self {
        // Drop repeated routes, keeping the first of each (not only adjacent repeats).
        let mut routes = config.routes;
        let mut seen = std::collections::HashSet::new();
        routes.retain(|route| seen.insert(route.clone()));
        let mut allow = config.allow;
        let mut seen_origins = std::collections::HashSet::new();
        allow.retain(|origin| seen_origins.insert(origin.clone()));
        let slots = usize::try_from(config.limits.concurrency)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let name: Arc<str> = Arc::from(config.name.as_str());
        Self {
            allow,
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            slot_count: slots,
            metric_name: opentelemetry::KeyValue::new(
                "virga.deployment",
                opentelemetry::StringValue::from(name),
            ),
            env: config
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            name: config.name,
            version: 0,
            component: config.component,
            routes,
            limits: config.limits,
            vars: config.vars,
            created,
        }
    }

    pub(crate) fn info(&self, versions: &[SharedDeployment]) -> DeploymentInfo {
        DeploymentInfo {
            name: self.name.clone(),
            version: self.version,
            versions: versions.iter().map(|d| d.version).collect(),
            component: self.component.digest.to_string(),
            routes: self.routes.iter().map(ToString::to_string).collect(),
            limits: self.limits.clone(),
            vars: self.vars.clone(),
            allow: self.allow.iter().map(ToString::to_string).collect(),
        }
    }
}

pub(crate) type SharedDeployment = Arc<Deployment>;
