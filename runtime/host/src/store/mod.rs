//! Where deployments live: component bytes by content hash, precompiled artifacts, and the
//! deployment metadata (names, versions, routes, settings).
//!
//! [`DeploymentStore`] is the seam for other backends; [`LocalStore`] (a directory) is the
//! embedded default.

mod local;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use local::LocalStore;

use crate::error::Error;

/// Persistent storage for deployments. Implementations must make every write crash-safe:
/// after a crash at any instant, [`load`](Self::load) returns either the state before or the
/// state after the interrupted [`save`](Self::save), and every component it references.
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
    /// The last committed state (empty when nothing was ever saved).
    fn load(&self) -> Result<StoredState, Error>;
    /// Commits a new state atomically.
    fn save(&self, state: &StoredState) -> Result<(), Error>;
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
