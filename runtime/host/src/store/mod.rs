//! Where deployments live: component bytes by content hash, precompiled artifacts, and the
//! deployment metadata (names, versions, routes, settings).
//!
//! [`DeploymentStore`] is the seam for other backends; [`LocalStore`] (a directory) is the
//! embedded default, [`NatsStore`] (NATS JetStream, feature `nats`) the one a fleet of hosts
//! shares.

mod local;
#[cfg(feature = "nats")]
mod nats;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use local::LocalStore;
#[cfg(feature = "nats")]
pub use nats::{NatsStore, NatsStoreBuilder};

use crate::error::Error;

/// Persistent storage for deployments. Implementations must make every write crash-safe:
/// after a crash at any instant, [`load`](Self::load) returns either the state before or the
/// state after the interrupted [`save`](Self::save), and every component it references.
///
/// A store several hosts share orders their writes with revisions: [`save`](Self::save) is a
/// compare-and-set against the revision the host last read, and [`watch`](Self::watch) tells
/// the [`Runtime`](crate::Runtime) when another host committed, so that it converges.
pub trait DeploymentStore: Send + Sync + std::fmt::Debug {
    /// Stores a component's bytes under their SHA-256 digest (lower-case hex). Idempotent.
    fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), Error>;
    /// Reads a component's bytes by digest.
    fn get_component(&self, digest: &str) -> Result<Vec<u8>, Error>;
    /// The path of a precompiled artifact for `digest` built by an engine whose
    /// compatibility key is `engine_key`, if one is stored.
    fn precompiled(&self, digest: &str, engine_key: &str) -> Option<PathBuf>;
    /// Stores a precompiled artifact.
    fn put_precompiled(&self, digest: &str, engine_key: &str, bytes: &[u8]) -> Result<(), Error>;
    /// The last committed state and its revision (an empty state at revision 0 when nothing
    /// was ever saved).
    fn load(&self) -> Result<Snapshot, Error>;
    /// Commits a new state atomically, if the store is still at revision `base`; answers with
    /// the new revision. Fails with [`Error::StoreConflict`] when another writer committed
    /// since `base`, and [`Error::StoreUnavailable`] when the store cannot be reached. A
    /// store with one writer may count revisions from 0 each time it is opened.
    fn save(&self, state: &StoredState, base: u64) -> Result<u64, Error>;
    /// For a store that other hosts write too: the latest revision known to be committed,
    /// updated as other writers commit. The runtime follows it, applying each newer state.
    /// Default: `None`, this host is the only writer.
    fn watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Why the store is degraded (unreachable, say), or `None` when it is healthy. Default:
    /// always healthy.
    fn degraded(&self) -> Option<String> {
        None
    }
}

/// A deployment store's health as a runtime sees it ([`Runtime::store_health`](crate::Runtime::store_health)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreHealth {
    /// The store revision the runtime's deployments are at (0 without a shared store).
    pub revision: u64,
    /// Why the store is degraded, or `None` when it is healthy. A degraded host keeps
    /// serving the deployments it has; changes are refused until the store is back.
    pub degraded: Option<String>,
}

impl StoreHealth {
    /// Health at `revision`, degraded for `reason` if there is one.
    pub fn new(revision: u64, degraded: Option<String>) -> Self {
        Self { revision, degraded }
    }
}

/// A committed state and the revision it was committed as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The deployments.
    pub state: StoredState,
    /// Its revision in the store (0: nothing was ever committed).
    pub revision: u64,
}

impl Snapshot {
    /// A snapshot of `state` at `revision`.
    pub fn new(state: StoredState, revision: u64) -> Self {
        Self { state, revision }
    }
}

/// The persisted deployment metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoredState {
    /// Format version of this record.
    pub format: u32,
    /// Deployments by name.
    pub deployments: BTreeMap<String, StoredDeployment>,
}

/// One deployment's kept versions and which one is live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoredDeployment {
    /// The live version.
    pub live: u64,
    /// Kept versions, oldest first.
    pub versions: Vec<StoredVersion>,
}

/// One version of a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoredVersion {
    /// The version number (1, 2, ...).
    pub version: u64,
    /// SHA-256 of the component, lower-case hex.
    pub component: String,
    /// Route patterns.
    pub routes: Vec<String>,
    /// Variables given to the guest as environment variables.
    pub vars: BTreeMap<String, String>,
    /// CPU time limit, ms.
    pub cpu_ms: u64,
    /// Wall-clock limit, ms.
    pub wall_ms: u64,
    /// Memory limit, bytes.
    pub memory: u64,
    /// Every limit by its key ([`Limits::set`](crate::Limits::set)); absent keys take their
    /// defaults. Over `cpu_ms`, `wall_ms` and `memory`, which stay for older readers.
    #[serde(default)]
    pub limits: BTreeMap<String, u64>,
    /// Origins the deployment may fetch from.
    #[serde(default)]
    pub allow: Vec<String>,
    /// When it was deployed, seconds since the Unix epoch.
    pub created: u64,
}

/// SHA-256 of `bytes`, lower-case hex: the identity of a component in a store.
pub fn content_digest(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

/// Whether `digest` looks like what [`content_digest`] produces (guards paths built from it).
pub(crate) fn is_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
