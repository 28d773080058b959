//! Compiled components and the deployments that serve them.

use std::fmt;
use std::sync::Arc;

use wasmtime::component::Component;

use crate::bindings::HandlerPre;
use crate::limits::Limits;
use crate::route::RoutePattern;
use crate::state::RequestState;

/// A component compiled for this runtime's engine, its imports resolved against the host,
/// and checked to export `wasi:http/incoming-handler`. Cheap to clone.
#[derive(Clone)]
pub struct CompiledComponent {
    pub(crate) pre: HandlerPre<RequestState>,
}

impl CompiledComponent {
    /// The underlying wasmtime component.
    pub fn component(&self) -> &Component {
        self.pre.instance_pre().component()
    }
}

impl fmt::Debug for CompiledComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledComponent").finish_non_exhaustive()
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
}

impl DeploymentConfig {
    /// A deployment of `component` named `name`, with no routes and default limits.
    pub fn new(name: impl Into<String>, component: CompiledComponent) -> Self {
        Self {
            name: name.into(),
            component,
            routes: Vec::new(),
            limits: Limits::default(),
        }
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
}

/// A summary of a live deployment, as listed by [`Runtime::deployments`](crate::Runtime::deployments).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeploymentInfo {
    /// The deployment's name.
    pub name: String,
    /// Its version: 1 for the first deploy of a name, incremented by each redeploy.
    pub version: u64,
    /// The routes it serves.
    pub routes: Vec<String>,
    /// Its limits.
    pub limits: Limits,
}

impl Deployment {
    pub(crate) fn info(&self) -> DeploymentInfo {
        DeploymentInfo {
            name: self.name.clone(),
            version: self.version,
            routes: self.routes.iter().map(ToString::to_string).collect(),
            limits: self.limits.clone(),
        }
    }
}

pub(crate) type SharedDeployment = Arc<Deployment>;
