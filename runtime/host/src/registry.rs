//! The live set of deployments and their routes, replaced atomically on every change so that
//! a request always sees one consistent table and in-flight requests keep the version they
//! started with.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::deployment::{Deployment, DeploymentConfig, DeploymentInfo, SharedDeployment};
use crate::error::Error;
use crate::route::RoutePattern;

/// An immutable routing snapshot: routes sorted most specific first.
#[derive(Debug, Default)]
struct RouteTable {
    routes: Vec<(RoutePattern, SharedDeployment)>,
    by_name: BTreeMap<String, SharedDeployment>,
}

/// Deployments by name, and the route table built from them.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    table: ArcSwap<RouteTable>,
    /// Serialises writers; readers never take it.
    write: Mutex<()>,
}

impl Registry {
    /// The deployment serving `host` (without port) and `path`, if any.
    pub(crate) fn route(&self, host: &str, path: &str) -> Option<SharedDeployment> {
        let table = self.table.load();
        table
            .routes
            .iter()
            .find(|(pattern, _)| pattern.matches(host, path))
            .map(|(_, deployment)| deployment.clone())
    }

    /// Adds or replaces a deployment. Refused if one of its routes belongs to another.
    pub(crate) fn deploy(&self, config: DeploymentConfig) -> Result<DeploymentInfo, Error> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.table.load_full();
        for route in &config.routes {
            if let Some((_, owner)) = current
                .routes
                .iter()
                .find(|(p, owner)| p == route && owner.name != config.name)
            {
                return Err(Error::RouteConflict {
                    route: route.to_string(),
                    owner: owner.name.clone(),
                });
            }
        }
        let version = current
            .by_name
            .get(&config.name)
            .map_or(1, |d| d.version + 1);
        let mut routes = config.routes;
        routes.dedup();
        let deployment = Arc::new(Deployment {
            name: config.name,
            version,
            component: config.component,
            routes,
            limits: config.limits,
        });
        let info = deployment.info();
        let mut by_name = current.by_name.clone();
        by_name.insert(deployment.name.clone(), deployment);
        self.table.store(Arc::new(build_table(by_name)));
        Ok(info)
    }

    /// Removes a deployment; returns whether it existed.
    pub(crate) fn remove(&self, name: &str) -> bool {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.table.load_full();
        let mut by_name = current.by_name.clone();
        let existed = by_name.remove(name).is_some();
        if existed {
            self.table.store(Arc::new(build_table(by_name)));
        }
        existed
    }

    pub(crate) fn list(&self) -> Vec<DeploymentInfo> {
        self.table
            .load()
            .by_name
            .values()
            .map(|d| d.info())
            .collect()
    }
}

fn build_table(by_name: BTreeMap<String, SharedDeployment>) -> RouteTable {
    let mut routes: Vec<(RoutePattern, SharedDeployment)> = by_name
        .values()
        .flat_map(|d| d.routes.iter().map(move |r| (r.clone(), d.clone())))
        .collect();
    routes.sort_by(|a, b| a.0.specificity_cmp(&b.0));
    RouteTable { routes, by_name }
}
