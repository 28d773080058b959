//! The runtime's side of its deployment store: committing each change before it goes live,
//! restoring the deployments at start, and — with a store other hosts share — following
//! their commits, so that every host converges on the same table.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::deployment::{CompiledComponent, Deployment, DeploymentConfig};
use crate::error::Error;
use crate::host::fetch::InvalidOrigin;
use crate::limits::Limits;
use crate::registry::{Change, Entry};
use crate::runtime::{Inner, Runtime, first_line};
use crate::store::{
    DeploymentStore, StoreHealth, StoredDeployment, StoredState, StoredVersion, content_digest,
};

/// How long a host waits before trying again to apply a state it could not (a component it
/// could not fetch, say).
const RETRY: Duration = Duration::from_secs(1);

/// How many times a change is retried after losing a compare-and-set race to another host.
const RACE_RETRIES: usize = 8;

impl Runtime {
    /// Caches the compiled artifact; a failure only costs a recompile at the next restart.
    pub(crate) fn store_precompiled(
        &self,
        store: &dyn DeploymentStore,
        compiled: &CompiledComponent,
    ) {
        let artifact = compiled.component().serialize();
        let stored = artifact.map_err(|e| first_line(&e)).and_then(|bytes| {
            store
                .put_precompiled(&compiled.digest, self.engine_key(), &bytes)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = stored {
            tracing::warn!(digest = %compiled.digest, error = %e, "cannot cache the compiled component");
        }
    }

    /// Loads a stored component: from its precompiled artifact when there is a usable one,
    /// otherwise by compiling its bytes (and caching the result).
    fn load_stored(
        &self,
        store: &dyn DeploymentStore,
        digest: &str,
    ) -> Result<CompiledComponent, Error> {
        if let Some(path) = store.precompiled(digest, self.engine_key()) {
            match crate::runtime::deserialize(self.engine(), &path) {
                Ok(component) => return self.prepare(component, digest),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "recompiling"),
            }
        }
        let bytes = store.get_component(digest)?;
        if content_digest(&bytes) != digest {
            return Err(Error::Store(format!(
                "component {digest} is corrupt (hash mismatch)"
            )));
        }
        let compiled = self.prepare(self.new_component(&bytes)?, digest)?;
        self.store_precompiled(store, &compiled);
        Ok(compiled)
    }

    /// The table a stored state describes. Versions the live table already has unchanged
    /// (same name, number, component and settings) are reused as they are — still compiled,
    /// their running requests and slots carrying on; the others are loaded from the store.
    fn entries_from(
        &self,
        store: &dyn DeploymentStore,
        state: StoredState,
    ) -> Result<BTreeMap<String, Entry>, Error> {
        let live = self.inner.registry.table();
        let mut entries = BTreeMap::new();
        for (name, stored) in state.deployments {
            let known = live.by_name.get(&name);
            let mut versions = Vec::new();
            for v in &stored.versions {
                let same = known.and_then(|entry| {
                    entry
                        .versions
                        .iter()
                        .find(|d| d.version == v.version && stored_version(d) == *v)
                });
                match same {
                    Some(deployment) => versions.push(deployment.clone()),
                    None => versions.push(Arc::new(self.deployment_from(store, &name, v)?)),
                }
            }
            let live = versions
                .iter()
                .find(|d| d.version == stored.live)
                .cloned()
                .ok_or_else(|| {
                    Error::Store(format!(
                        "deployment '{name}' has no live version {}",
                        stored.live
                    ))
                })?;
            entries.insert(name, Entry { versions, live });
        }
        Ok(entries)
    }

    /// One stored version as a deployment, its component loaded from the store.
    fn deployment_from(
        &self,
        store: &dyn DeploymentStore,
        name: &str,
        v: &StoredVersion,
    ) -> Result<Deployment, Error> {
        let component = self.load_stored(store, &v.component)?;
        let mut limits = Limits::default()
            .cpu_time(Duration::from_millis(v.cpu_ms))
            .wall_time(Duration::from_millis(v.wall_ms))
            .memory(v.memory);
        for (key, value) in &v.limits {
            limits
                .set(key, *value)
                .map_err(|e| Error::Store(format!("deployment '{name}': {e}")))?;
        }
        let mut config = DeploymentConfig::new(name, component).limits(limits);
        for origin in &v.allow {
            config.allow.push(
                origin.parse().map_err(|e: InvalidOrigin| {
                    Error::Store(format!("deployment '{name}': {e}"))
                })?,
            );
        }
        for route in &v.routes {
            config.routes.push(route.parse()?);
        }
        config.vars = v.vars.clone();
        let mut deployment = Deployment::new(config, v.created);
        deployment.version = v.version;
        Ok(deployment)
    }

    /// Brings the table up to the store's committed state when the store has a newer
    /// revision than the table. The new state goes live at once, as a whole, after every
    /// component it needs is loaded and compiled.
    pub(crate) fn converge(&self) -> Result<(), Error> {
        let Some(store) = &self.inner.options.store else {
            return Ok(());
        };
        let snapshot = store.load()?;
        let before = self.inner.registry.revision();
        if snapshot.revision <= before {
            return Ok(());
        }
        let revision = snapshot.revision;
        self.restore_snapshot(store.as_ref(), snapshot)?;
        if self.inner.registry.revision() > before {
            tracing::info!(revision, "caught up with the store");
        }
        Ok(())
    }

    /// Restores the store's state into the (empty) table, when the runtime is built.
    pub(crate) fn restore(&self) -> Result<(), Error> {
        let Some(store) = &self.inner.options.store else {
            return Ok(());
        };
        self.restore_snapshot(store.as_ref(), store.load()?)
    }

    /// Makes a stored state the table (unless the table is already at its revision or a
    /// later one: see [`Change::Restore`]).
    fn restore_snapshot(
        &self,
        store: &dyn DeploymentStore,
        snapshot: crate::store::Snapshot,
    ) -> Result<(), Error> {
        let entries = self.entries_from(store, snapshot.state)?;
        let change = Change::Restore {
            entries,
            revision: snapshot.revision,
        };
        // A restore is not committed: the registry never calls this.
        self.inner.registry.apply(change, |_, base| Ok(base))?;
        Ok(())
    }

    /// Applies a change, committing it to the store first when there is one. When another
    /// host committed in between (the compare-and-set failed), catches up with its state and
    /// decides the change again on top of it: racing deploys from two hosts both land, one
    /// after the other, in the order the store took them.
    pub(crate) fn apply(
        &self,
        change: impl Fn() -> Change,
    ) -> Result<Option<crate::DeploymentInfo>, Error> {
        let mut attempt = 0;
        loop {
            let result = self
                .inner
                .registry
                .apply(change(), |by_name, base| self.persist(by_name, base));
            match result {
                Err(Error::StoreConflict { .. }) if attempt < RACE_RETRIES => {
                    attempt += 1;
                    // Writers that keep colliding back off, each by a different amount.
                    let jitter = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::from(d.subsec_nanos()) % 10);
                    std::thread::sleep(Duration::from_millis(
                        (5 << attempt.min(5)) + jitter * attempt as u64,
                    ));
                    self.converge()?;
                }
                other => return other,
            }
        }
    }

    /// Commits a new table to the store, if there is one, on top of revision `base`.
    fn persist(&self, by_name: &BTreeMap<String, Entry>, base: u64) -> Result<u64, Error> {
        let Some(store) = &self.inner.options.store else {
            return Ok(base);
        };
        let mut state = StoredState {
            format: 1,
            ..StoredState::default()
        };
        for (name, entry) in by_name {
            state.deployments.insert(
                name.clone(),
                StoredDeployment {
                    live: entry.live.version,
                    versions: entry.versions.iter().map(|d| stored_version(d)).collect(),
                },
            );
        }
        store.save(&state, base)
    }

    /// The store as this runtime sees it: the revision its table is at, and why the store
    /// is degraded (unreachable, or a committed state this host could not apply), if it is.
    pub fn store_health(&self) -> StoreHealth {
        let revision = self.inner.registry.revision();
        let store = self.inner.options.store.as_ref();
        let follow = self
            .inner
            .follow_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        StoreHealth::new(revision, store.and_then(|s| s.degraded()).or(follow))
    }
}

/// A deployment as the store keeps it.
fn stored_version(d: &Deployment) -> StoredVersion {
    StoredVersion {
        version: d.version,
        component: d.component.digest.to_string(),
        routes: d.routes.iter().map(ToString::to_string).collect(),
        vars: d.vars.clone(),
        cpu_ms: u64::try_from(d.limits.cpu_time.as_millis()).unwrap_or(u64::MAX),
        wall_ms: u64::try_from(d.limits.wall_time.as_millis()).unwrap_or(u64::MAX),
        memory: d.limits.memory,
        limits: d
            .limits
            .entries()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        allow: d.allow.iter().map(ToString::to_string).collect(),
        created: d.created,
    }
}

/// Follows a shared store: on its own thread, applies each newer revision the store reports
/// (retrying every second while one cannot be applied). Ends when the runtime is dropped.
pub(crate) fn follow(
    runtime: Weak<Inner>,
    mut revisions: tokio::sync::watch::Receiver<u64>,
) -> Result<(), Error> {
    let clock = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::io("starting the store follower", e))?;
    let task = async move {
        loop {
            let target = *revisions.borrow_and_update();
            let Some(inner) = runtime.upgrade() else {
                return;
            };
            let runtime_now = Runtime { inner };
            let failed = if target > runtime_now.inner.registry.revision() {
                // Short of the target after catching up (the store answered from its cached
                // copy, or a lagging replica): that is a failure too, retried.
                let result = runtime_now.converge().and_then(|()| {
                    let now = runtime_now.inner.registry.revision();
                    if now < target {
                        Err(Error::StoreUnavailable(format!(
                            "the store is at revision {target} but only revision {now} could \
                             be read"
                        )))
                    } else {
                        Ok(())
                    }
                });
                let mut error = runtime_now
                    .inner
                    .follow_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(_) => {
                        *error = None;
                        false
                    }
                    Err(e) => {
                        if error.is_none() {
                            tracing::warn!(revision = target, error = %e, "cannot apply the store's state; retrying");
                        }
                        *error = Some(format!("cannot apply revision {target}: {e}"));
                        true
                    }
                }
            } else {
                false
            };
            drop(runtime_now);
            if failed {
                tokio::time::sleep(RETRY).await;
                revisions.mark_changed();
            } else if revisions.changed().await.is_err() {
                return;
            }
        }
    };
    std::thread::Builder::new()
        .name("virga-store-follow".into())
        .spawn(move || clock.block_on(task))
        .map_err(|e| Error::io("starting the store follower", e))?;
    Ok(())
}
