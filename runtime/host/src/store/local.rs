//! The embedded default store: a directory.
//!
//! ```text
//! STATE_DIR/components/<sha256>.wasm           component bytes, content-addressed
//! STATE_DIR/compiled/<engine-key>/<sha256>.cwasm precompiled for one engine configuration
//! STATE_DIR/deployments.json                   metadata, replaced atomically
//! ```
//!
//! Every file is written to a temporary name, fsynced, renamed into place, and the directory
//! fsynced; a component is durable before any metadata that references it is committed.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::server::write_atomically;
use crate::store::{DeploymentStore, Snapshot, StoredState, is_digest};

/// A [`DeploymentStore`] in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) a store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        for sub in ["components", "compiled"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        // Temp files of writes a crash interrupted: never referenced, safe to drop.
        for sub in [dir.clone(), dir.join("components")] {
            for entry in std::fs::read_dir(&sub).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().contains(".tmp.") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the component with this digest is stored.
    #[cfg(feature = "nats")]
    pub(crate) fn has_component(&self, digest: &str) -> bool {
        self.component_path(digest).is_ok_and(|path| path.is_file())
    }

    fn component_path(&self, digest: &str) -> Result<PathBuf, Error> {
        if !is_digest(digest) {
            return Err(Error::Store(format!("'{digest}' is not a SHA-256 digest")));
        }
        Ok(self.dir.join("components").join(format!("{digest}.wasm")))
    }
}

impl DeploymentStore for LocalStore {
    fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.component_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    fn get_component(&self, digest: &str) -> Result<Vec<u8>, Error> {
        let path = self.component_path(digest)?;
        std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
    }

    fn precompiled(&self, digest: &str, engine_key: &str) -> Option<PathBuf> {
        let path = self
            .dir
            .join("compiled")
            .join(engine_key)
            .join(format!("{digest}.cwasm"));
        (is_digest(digest) && path.is_file()).then_some(path)
    }

    fn put_precompiled(&self, digest: &str, engine_key: &str, bytes: &[u8]) -> Result<(), Error> {
        if !is_digest(digest) {
            return Err(Error::Store(format!("'{digest}' is not a SHA-256 digest")));
        }
        let dir = self.dir.join("compiled").join(engine_key);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        write_atomically(&dir.join(format!("{digest}.cwasm")), bytes)
    }

    /// The state, at revision 0: this store has one writer, so it keeps no revisions.
    fn load(&self) -> Result<Snapshot, Error> {
        let path = self.dir.join("deployments.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Store(format!("{} is unreadable: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredState::default(),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok(Snapshot::new(state, 0))
    }

    /// Replaces the state; `base` is not checked (one writer), the answer is `base + 1`.
    fn save(&self, state: &StoredState, base: u64) -> Result<u64, Error> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::Store(format!("encoding the state: {e}")))?;
        write_atomically(&self.dir.join("deployments.json"), &bytes)?;
        Ok(base + 1)
    }
}
