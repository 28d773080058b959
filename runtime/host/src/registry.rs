//! The live set of deployments, their kept versions and their routes, replaced atomically on
//! every change: a request always sees one consistent table, and in-flight requests keep the
//! version they started with (they hold an `Arc` to it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::deployment::{Deployment, DeploymentInfo, SharedDeployment};
use crate::error::Error;
use crate::route::RoutePattern;

/// One deployment: its kept versions (oldest first) and the live one.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) versions: Vec<SharedDeployment>,
    pub(crate) live: SharedDeployment,
}

/// An immutable snapshot: routes of live versions, most specific first.
#[derive(Debug, Default)]
pub(crate) struct Table {
    routes: Vec<(RoutePattern, SharedDeployment)>,
    pub(crate) by_name: BTreeMap<String, Entry>,
}

/// Deployments by name, and the route table built from them.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    table: ArcSwap<Table>,
    /// Serialises writers (readers never take it) and holds the store revision the table
    /// was committed as or restored from (0 without a store).
    write: Mutex<u64>,
    /// That revision, readable without the lock (health and metrics must not wait for a
    /// commit in progress).
    revision: AtomicU64,
}

/// What a change does to the table, decided under the write lock.
pub(crate) enum Change {
    /// Add a new version (its `version` field is assigned here) and make it live, keeping at
    /// most `keep` versions.
    Deploy {
        deployment: Box<Deployment>,
        keep: usize,
    },
    /// Make an earlier kept version live: a given one, or the one before the live one.
    Rollback { name: String, to: Option<u64> },
    /// Remove a deployment and all its versions.
    Remove { name: String },
    /// Replace everything with a state read from the store at `revision`; ignored when the
    /// table is already at that revision or a later one (a stale read, or this host's own
    /// commit coming back from a shared store).
    Restore {
        entries: BTreeMap<String, Entry>,
        revision: u64,
    },
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

    /// Instances running now, by deployment (all its versions together).
    pub(crate) fn live_instances(&self) -> Vec<(opentelemetry::KeyValue, i64)> {
        self.table
            .load()
            .by_name
            .values()
            .map(|entry| {
                let running: usize = entry
                    .versions
                    .iter()
                    .map(|d| d.slot_count - d.slots.available_permits())
                    .sum();
                (
                    entry.live.metric_name.clone(),
                    i64::try_from(running).unwrap_or(i64::MAX),
                )
            })
            .collect()
    }

    pub(crate) fn list(&self) -> Vec<DeploymentInfo> {
        self.table
            .load()
            .by_name
            .values()
            .map(|e| e.live.info(&e.versions))
            .collect()
    }

    /// The store revision of the live table.
    pub(crate) fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The live table.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Applies a change. `commit` sees the new table and the revision the live one is at
    /// before it goes live, and answers with the new table's revision; it may refuse (e.g.
    /// persisting failed): then nothing changes. Restores are not committed.
    pub(crate) fn apply(
        &self,
        change: Change,
        commit: impl FnOnce(&BTreeMap<String, Entry>, u64) -> Result<u64, Error>,
    ) -> Result<Option<DeploymentInfo>, Error> {
        let mut revision = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.table.load_full();
        let mut by_name = current.by_name.clone();
        let changed = match change {
            Change::Deploy {
                mut deployment,
                keep,
            } => {
                check_routes(&by_name, &deployment.name, &deployment.routes)?;
                let entry = by_name.get(&deployment.name);
                deployment.version = entry
                    .and_then(|e| e.versions.iter().map(|d| d.version).max())
                    .map_or(1, |v| v + 1);
                let deployment = Arc::new(*deployment);
                let mut versions = entry.map(|e| e.versions.clone()).unwrap_or_default();
                versions.push(deployment.clone());
                let excess = versions.len().saturating_sub(keep.max(1));
                versions.drain(..excess);
                by_name.insert(
                    deployment.name.clone(),
                    Entry {
                        versions,
                        live: deployment.clone(),
                    },
                );
                Some(deployment.name.clone())
            }
            Change::Rollback { name, to } => {
                let entry = by_name
                    .get(&name)
                    .ok_or_else(|| Error::UnknownDeployment(name.clone()))?;
                let target = match to {
                    Some(v) => entry.versions.iter().find(|d| d.version == v),
                    None => entry
                        .versions
                        .iter()
                        .rev()
                        .find(|d| d.version < entry.live.version),
                };
                let target = target.cloned().ok_or_else(|| Error::UnknownVersion {
                    name: name.clone(),
                    version: to.unwrap_or(0),
                    kept: entry
                        .versions
                        .iter()
                        .map(|d| d.version.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
                check_routes(&by_name, &name, &target.routes)?;
                let versions = entry.versions.clone();
                by_name.insert(
                    name.clone(),
                    Entry {
                        versions,
                        live: target,
                    },
                );
                Some(name)
            }
            Change::Remove { name } => {
                by_name
                    .remove(&name)
                    .ok_or_else(|| Error::UnknownDeployment(name.clone()))?;
                None
            }
            Change::Restore {
                entries,
                revision: restored,
            } => {
                if restored <= *revision && !(restored == 0 && current.by_name.is_empty()) {
                    return Ok(None);
                }
                *revision = restored;
                self.table.store(Arc::new(build_table(entries)));
                self.revision.store(restored, Ordering::Release);
                return Ok(None);
            }
        };
        *revision = commit(&by_name, *revision)?;
        let info = changed.and_then(|name| by_name.get(&name).map(|e| e.live.info(&e.versions)));
        self.table.store(Arc::new(build_table(by_name)));
        self.revision.store(*revision, Ordering::Release);
        Ok(info)
    }
}

/// Refuses routes that a live version of another deployment serves.
fn check_routes(
    by_name: &BTreeMap<String, Entry>,
    name: &str,
    routes: &[RoutePattern],
) -> Result<(), Error> {
    for route in routes {
        if let Some(owner) = by_name
            .values()
            .find(|e| e.live.name != name && e.live.routes.contains(route))
        {
            return Err(Error::RouteConflict {
                route: route.to_string(),
                owner: owner.live.name.clone(),
            });
        }
    }
    Ok(())
}

fn build_table(by_name: BTreeMap<String, Entry>) -> Table {
    let mut routes: Vec<(RoutePattern, SharedDeployment)> = by_name
        .values()
        .flat_map(|e| {
            e.live
                .routes
                .iter()
                .map(move |r| (r.clone(), e.live.clone()))
        })
        .collect();
    routes.sort_by(|a, b| a.0.specificity_cmp(&b.0));
    Table { routes, by_name }
}
