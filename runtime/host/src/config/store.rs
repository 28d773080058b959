//! `[store]`: where deployments are kept — the state directory (one host), or NATS
//! JetStream shared by a fleet of hosts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::Error;
use crate::store::{DeploymentStore, LocalStore};

/// Which store keeps the deployments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StoreKind {
    /// The state directory of this host (the default).
    #[default]
    Local,
    /// NATS JetStream, shared by every host configured with the same servers and buckets.
    Nats,
}

/// `[store]`. The NATS keys apply only with `kind = "nats"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `local` or `nats`. Default `local`.
    #[serde(default)]
    pub kind: StoreKind,
    /// NATS servers (`nats://host:port`, `tls://host:port`). Default `["nats://127.0.0.1:4222"]`.
    #[serde(default = "default_servers")]
    pub servers: Vec<String>,
    /// A NATS `.creds` file (user JWT and NKey seed). Default: none.
    pub credentials: Option<PathBuf>,
    /// A NATS token. Default: none.
    pub token: Option<String>,
    /// A NATS user name; with `password`. Default: none.
    pub user: Option<String>,
    /// The password of `user`.
    pub password: Option<String>,
    /// A PEM file of CA certificates trusted for the servers' TLS. Default: the webpki roots.
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate for mutual TLS; with `tls_key`. Default: none.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Refuse servers without TLS. Default false.
    #[serde(default)]
    pub tls_required: bool,
    /// The key-value bucket of the deployment metadata. Default `virga-deployments`.
    #[serde(default = "default_kv_bucket")]
    pub kv_bucket: String,
    /// The object store bucket of the components. Default `virga-components`.
    #[serde(default = "default_object_bucket")]
    pub object_bucket: String,
    /// Copies JetStream keeps of each bucket when this host creates them, 1 to 5. Default 1
    /// (3 for a three-node cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Milliseconds one NATS operation may take, retries included: long enough to wait out
    /// a stream leader's election after its node is lost (5–7 s measured). Default 10000.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Milliseconds between checks of the current revision. Default 1000.
    #[serde(default = "default_poll")]
    pub poll_ms: u64,
}

fn default_servers() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}

fn default_kv_bucket() -> String {
    "virga-deployments".into()
}

fn default_object_bucket() -> String {
    "virga-components".into()
}

fn default_replicas() -> usize {
    1
}

fn default_timeout() -> u64 {
    10_000
}

fn default_poll() -> u64 {
    1000
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Local,
            servers: default_servers(),
            credentials: None,
            token: None,
            user: None,
            password: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            kv_bucket: default_kv_bucket(),
            object_bucket: default_object_bucket(),
            replicas: default_replicas(),
            timeout_ms: default_timeout(),
            poll_ms: default_poll(),
        }
    }
}

impl StoreConfig {
    /// Checks the values (called when the file is parsed).
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.kind == StoreKind::Local {
            let defaults = Self::default();
            let nats_keys = self.servers != defaults.servers
                || self.credentials.is_some()
                || self.token.is_some()
                || self.user.is_some()
                || self.tls_ca.is_some()
                || self.tls_cert.is_some()
                || self.kv_bucket != defaults.kv_bucket;
            if nats_keys {
                return Err("[store]: NATS settings need kind = \"nats\"".into());
            }
            return Ok(());
        }
        if self.servers.is_empty() {
            return Err("[store]: servers must name at least one NATS server".into());
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!(
                "[store]: replicas must be between 1 and 5, not {}",
                self.replicas
            ));
        }
        if self.timeout_ms == 0 || self.poll_ms == 0 {
            return Err("[store]: timeout_ms and poll_ms must be at least 1".into());
        }
        if self.user.is_some() != self.password.is_some() {
            return Err("[store]: set both user and password, or neither".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("[store]: set both tls_cert and tls_key, or neither".into());
        }
        Ok(())
    }

    /// Resolves relative file paths against `base` (the configuration file's directory).
    pub(crate) fn resolve(&mut self, base: &Path) {
        for path in [
            &mut self.credentials,
            &mut self.tls_ca,
            &mut self.tls_cert,
            &mut self.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Opens the store this section describes; `state_dir` holds the local store, or this
    /// host's cache of the shared one. `host_name` names the NATS connection.
    pub fn open(
        &self,
        state_dir: &Path,
        host_name: &str,
    ) -> Result<Arc<dyn DeploymentStore>, Error> {
        match self.kind {
            StoreKind::Local => Ok(Arc::new(LocalStore::open(state_dir)?)),
            StoreKind::Nats => self.open_nats(state_dir, host_name),
        }
    }

    #[cfg(feature = "nats")]
    fn open_nats(
        &self,
        state_dir: &Path,
        host_name: &str,
    ) -> Result<Arc<dyn DeploymentStore>, Error> {
        let mut builder = crate::store::NatsStore::builder();
        builder
            .servers(self.servers.iter().cloned())
            .kv_bucket(self.kv_bucket.clone())
            .object_bucket(self.object_bucket.clone())
            .replicas(self.replicas)
            .timeout(std::time::Duration::from_millis(self.timeout_ms))
            .poll_interval(std::time::Duration::from_millis(self.poll_ms))
            .require_tls(self.tls_required)
            .connection_name(host_name);
        if let Some(path) = &self.credentials {
            builder.credentials(path.clone());
        }
        if let Some(token) = &self.token {
            builder.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            builder.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &self.tls_ca {
            builder.root_certificates(path.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            builder.client_certificate(cert.clone(), key.clone());
        }
        Ok(Arc::new(builder.open(state_dir)?))
    }

    #[cfg(not(feature = "nats"))]
    fn open_nats(&self, _: &Path, _: &str) -> Result<Arc<dyn DeploymentStore>, Error> {
        Err(Error::Config(
            "[store]: kind = \"nats\" needs Virga built with the `nats` feature".into(),
        ))
    }
}
