//! Fleet mode: a [`DeploymentStore`] many hosts share through NATS JetStream.
//!
//! ```text
//! object store  <object_bucket>/<sha256>   component bytes, content-addressed
//! key-value     <kv_bucket>/state          the deployment metadata (StoredState as JSON);
//!                                          its revision orders every change (compare-and-set)
//! CACHE_DIR/components, compiled/          this host's copies, as in LocalStore
//! CACHE_DIR/fleet-state.json               the last state this host read or wrote
//! ```
//!
//! Every host watches the `state` key and applies each newer revision (the runtime's follower
//! does, see [`DeploymentStore::watch`]). A host that cannot reach NATS keeps serving the last
//! state it had, starts from its cached copy, reports itself degraded, refuses changes, and
//! catches up when NATS is back.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv;
use async_nats::jetstream::object_store::{self, ObjectStore};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::{OnceCell, watch};

use crate::error::Error;
use crate::server::write_atomically;
use crate::store::{DeploymentStore, LocalStore, Snapshot, StoredState, is_digest};

/// The key holding the deployment metadata in the key-value bucket.
const STATE_KEY: &str = "state";

/// Configures a [`NatsStore`]. Every setter documents its default.
#[derive(Clone, Debug)]
pub struct NatsStoreBuilder {
    servers: Vec<String>,
    credentials: Option<PathBuf>,
    token: Option<String>,
    user: Option<(String, String)>,
    root_certificates: Vec<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
    require_tls: bool,
    kv_bucket: String,
    object_bucket: String,
    replicas: usize,
    timeout: Duration,
    poll: Duration,
    name: String,
}

impl Default for NatsStoreBuilder {
    fn default() -> Self {
        Self {
            servers: vec!["nats://127.0.0.1:4222".into()],
            credentials: None,
            token: None,
            user: None,
            root_certificates: Vec::new(),
            client_certificate: None,
            require_tls: false,
            kv_bucket: "virga-deployments".into(),
            object_bucket: "virga-components".into(),
            replicas: 1,
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            name: "virga".into(),
        }
    }
}

impl NatsStoreBuilder {
    /// The NATS servers to connect to (`nats://host:port`, `tls://host:port`); the client
    /// moves between them as they fail. Default: `nats://127.0.0.1:4222`.
    pub fn servers(&mut self, servers: impl IntoIterator<Item = impl Into<String>>) -> &mut Self {
        self.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Authenticates with a `.creds` file (user JWT and NKey seed). Default: none.
    pub fn credentials(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.credentials = Some(path.into());
        self
    }

    /// Authenticates with a token. Default: none.
    pub fn token(&mut self, token: impl Into<String>) -> &mut Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with a user name and password. Default: none.
    pub fn user_and_password(
        &mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> &mut Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Trusts the CA certificates in this PEM file for the servers' TLS. Default: the
    /// webpki roots only.
    pub fn root_certificates(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.root_certificates.push(path.into());
        self
    }

    /// Presents this client certificate and key (PEM files) for mutual TLS. Default: none.
    pub fn client_certificate(
        &mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> &mut Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// Refuses servers that do not speak TLS. Default: false (a `tls://` URL requires it).
    pub fn require_tls(&mut self, required: bool) -> &mut Self {
        self.require_tls = required;
        self
    }

    /// The key-value bucket of the deployment metadata, created if missing. Default:
    /// `virga-deployments`.
    pub fn kv_bucket(&mut self, bucket: impl Into<String>) -> &mut Self {
        self.kv_bucket = bucket.into();
        self
    }

    /// The object store bucket of the components, created if missing. Default:
    /// `virga-components`.
    pub fn object_bucket(&mut self, bucket: impl Into<String>) -> &mut Self {
        self.object_bucket = bucket.into();
        self
    }

    /// How many JetStream servers keep a copy of each bucket when this host creates them
    /// (1 to 5; 3 for a three-node cluster that must survive losing one). Default: 1.
    pub fn replicas(&mut self, replicas: usize) -> &mut Self {
        self.replicas = replicas.clamp(1, 5);
        self
    }

    /// How long one NATS operation may take, retries included, before it counts as failed
    /// (the store is then degraded): long enough to wait out a stream leader's election after
    /// its node is lost (5–7 s measured with nats-server 2.9). Default: 10 s.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout.max(Duration::from_millis(100));
        self
    }

    /// How often the store checks the current revision besides watching it (how soon a
    /// host notices that NATS is gone or back). Default: 1 s.
    pub fn poll_interval(&mut self, poll: Duration) -> &mut Self {
        self.poll = poll.max(Duration::from_millis(50));
        self
    }

    /// The connection name NATS monitoring shows for this host. Default: `virga`.
    pub fn connection_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = name.into();
        self
    }

    /// Opens the store, keeping this host's copies in `cache_dir`. Waits for NATS at most the
    /// [`timeout`](Self::timeout) (and 5 s): beyond, the client goes on connecting (and later
    /// reconnecting) in the background, and until it has, the store reads the cached state
    /// and reports itself degraded.
    pub fn open(&self, cache_dir: impl Into<PathBuf>) -> Result<NatsStore, Error> {
        let cache = LocalStore::open(cache_dir)?;
        if self.servers.is_empty() {
            return Err(Error::Config("store: give at least one NATS server".into()));
        }
        for bucket in [&self.kv_bucket, &self.object_bucket] {
            let valid = !bucket.is_empty()
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(Error::Config(format!(
                    "store: invalid bucket name '{bucket}' (use A-Z, a-z, 0-9, '-' and '_')"
                )));
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("virga-nats")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the NATS client", e))?;
        let builder = self.clone();
        let last_error = Arc::new(Mutex::new(None));
        let events = last_error.clone();
        // Spawned and waited for, not `block_on`: the caller may be on another runtime.
        let connecting = runtime.spawn(async move {
            let client = builder.connect(events).await?;
            // A host started while NATS is up should start from the current state, not its
            // cached copy: give the connection its timeout to come up.
            let connected = async {
                while client.connection_state() != async_nats::connection::State::Connected {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let wait = builder.timeout.min(Duration::from_secs(5));
            let _ = tokio::time::timeout(wait, connected).await;
            Ok::<_, Error>(client)
        });
        // On failure the runtime is shut down, not dropped: dropping a runtime from inside
        // another one panics.
        let client = match futures::executor::block_on(connecting) {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                runtime.shutdown_background();
                return Err(e);
            }
            Err(e) => {
                runtime.shutdown_background();
                return Err(Error::StoreUnavailable(format!(
                    "connecting to NATS failed: {e}"
                )));
            }
        };
        // The JetStream context spawns its acknowledgement task on the current runtime.
        let jetstream = {
            let _entered = runtime.enter();
            let mut jetstream = jetstream::new(client.clone());
            jetstream.set_timeout(self.timeout);
            jetstream
        };
        let cached = read_cached(&cache);
        let (revisions, receiver) = watch::channel(cached.revision);
        let shared = Arc::new(Shared {
            client,
            jetstream,
            buckets: OnceCell::new(),
            kv_bucket: self.kv_bucket.clone(),
            object_bucket: self.object_bucket.clone(),
            replicas: self.replicas,
            timeout: self.timeout,
            cache,
            degraded: Mutex::new(Some("connecting to NATS".into())),
            revisions,
            cached_revision: Mutex::new(cached.revision),
            patience: (self.poll * 4).clamp(Duration::from_secs(1), self.timeout),
            last_error,
        });
        runtime.spawn(watch_revisions(shared.clone(), self.poll));
        Ok(NatsStore {
            shared,
            runtime: Some(runtime),
            receiver,
        })
    }

    /// Connects (in the background); `last_error` keeps the latest connection error (a
    /// refused password, a TLS failure) until a connection succeeds, to name in health.
    async fn connect(
        &self,
        last_error: Arc<Mutex<Option<String>>>,
    ) -> Result<async_nats::Client, Error> {
        let mut options = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let last_error = last_error.clone();
                async move {
                    let mut last = last_error.lock().unwrap_or_else(|e| e.into_inner());
                    match event {
                        async_nats::Event::Connected => *last = None,
                        async_nats::Event::ServerError(e) => *last = Some(e.to_string()),
                        async_nats::Event::ClientError(e) => *last = Some(e.to_string()),
                        _ => {}
                    }
                }
            })
            .name(&self.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(self.timeout)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts.min(10) as u64)
            })
            .require_tls(self.require_tls);
        if let Some(path) = &self.credentials {
            options = options.credentials_file(path).await.map_err(|e| {
                Error::Config(format!("store: NATS credentials {}: {e}", path.display()))
            })?;
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some((user, password)) = &self.user {
            options = options.user_and_password(user.clone(), password.clone());
        }
        options = options.tls_client_config(self.tls_config()?);
        options
            .connect(self.servers.clone())
            .await
            .map_err(|e| Error::Config(format!("store: NATS servers: {e}")))
    }
}

impl NatsStoreBuilder {
    /// The TLS client configuration, with this crate's crypto provider (aws-lc-rs) named
    /// explicitly: the client would otherwise look for a process-wide default.
    fn tls_config(&self) -> Result<rustls::ClientConfig, Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| Error::Config(format!("store: reading {}: {e}", path.display())))
        };
        let certificates = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>, Error> {
            let pem = read(path)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    Error::Config(format!(
                        "store: {}: not a PEM certificate: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "store: {}: no PEM certificate in it",
                    path.display()
                )));
            }
            Ok(certs)
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in &self.root_certificates {
            for cert in certificates(path)? {
                roots.add(cert).map_err(|e| {
                    Error::Config(format!("store: {}: unusable CA: {e}", path.display()))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots);
        match &self.client_certificate {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| {
                    Error::Config(format!(
                        "store: {}: not a PEM private key: {e}",
                        key.display()
                    ))
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::Config(format!("store: client certificate: {e}")))
            }
        }
    }
}

/// A [`DeploymentStore`] in NATS JetStream, shared by a fleet of hosts. See the module
/// documentation for the layout and the failure behaviour.
pub struct NatsStore {
    shared: Arc<Shared>,
    /// The client's own runtime (the store's trait is blocking; it may be called from any
    /// thread). Shut down in the background when the store is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    receiver: watch::Receiver<u64>,
}

struct Shared {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    buckets: OnceCell<Buckets>,
    kv_bucket: String,
    object_bucket: String,
    replicas: usize,
    timeout: Duration,
    cache: LocalStore,
    degraded: Mutex<Option<String>>,
    revisions: watch::Sender<u64>,
    /// The revision of `fleet-state.json` (it only moves forward).
    cached_revision: Mutex<u64>,
    /// The latest connection error while not connected (from the client's events).
    last_error: Arc<Mutex<Option<String>>>,
    /// How long one read may go unanswered before it is sent again (a read sent during a
    /// leader election can be lost): four polls, at least 1 s, at most the timeout.
    patience: Duration,
}

struct Buckets {
    kv: kv::Store,
    objects: ObjectStore,
}

/// What `fleet-state.json` holds.
#[derive(Default, Serialize, Deserialize)]
struct Cached {
    revision: u64,
    state: StoredState,
}

impl NatsStore {
    /// A builder with every default.
    pub fn builder() -> NatsStoreBuilder {
        NatsStoreBuilder::default()
    }

    /// Runs a NATS operation on the client's runtime and waits for it, at most the timeout
    /// (the trait is blocking: callers are deploys on blocking threads and the follower).
    fn block<T: Send + 'static>(
        &self,
        operation: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        // Retries inside stop at the timeout; this bound is for an operation that hangs.
        self.block_for(self.shared.timeout * 2, operation)
    }

    /// [`block`](Self::block) with its own time limit.
    fn block_for<T: Send + 'static>(
        &self,
        timeout: Duration,
        operation: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        let Some(runtime) = &self.runtime else {
            return Err(Error::StoreUnavailable(
                "the NATS client is shut down".into(),
            ));
        };
        let task = runtime.spawn(async move {
            tokio::time::timeout(timeout, operation)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::StoreUnavailable(format!(
                        "NATS did not answer within {} ms",
                        timeout.as_millis()
                    )))
                })
        });
        futures::executor::block_on(task)
            .map_err(|e| Error::StoreUnavailable(format!("the NATS operation failed: {e}")))?
    }

    /// Fails at once, without queueing anything, when the client is known not to be
    /// connected. Only a hint: a connection that drops while a write is in flight leaves its
    /// outcome unknown (see [`save`](DeploymentStore::save)).
    fn connected(&self) -> Result<(), Error> {
        match self.shared.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(Error::StoreUnavailable(format!(
                "not connected to NATS ({}): this host keeps serving what it has, but changes \
                 are refused until NATS is back",
                self.shared.not_connected(state)
            ))),
        }
    }
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("kv_bucket", &self.shared.kv_bucket)
            .field("object_bucket", &self.shared.object_bucket)
            .field("cache", &self.shared.cache.dir())
            .finish_non_exhaustive()
    }
}

impl Drop for NatsStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl DeploymentStore for NatsStore {
    fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), Error> {
        self.shared.cache.put_component(digest, bytes)?;
        self.connected()?;
        let shared = self.shared.clone();
        let digest = digest.to_owned();
        let bytes = Bytes::copy_from_slice(bytes);
        // A large component on a slow link gets more than one operation's time: the timeout
        // plus a second per MiB.
        let timeout = self.shared.timeout * 2 + Duration::from_secs(bytes.len() as u64 >> 20);
        self.block_for(timeout, async move {
            let buckets = shared.open().await?;
            let info = shared
                .retrying(
                    || buckets.objects.info(&digest),
                    |e| e.kind() != object_store::InfoErrorKind::NotFound,
                )
                .await;
            match info {
                Ok(info) if !info.deleted => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => {}
                Err(e) => {
                    return Err(shared.unavailable(format!("looking up component {digest}: {e}")));
                }
            }
            // Idempotent (the same name, the same bytes): safe to send again.
            shared
                .retrying(
                    || async {
                        let mut reader: &[u8] = bytes.as_ref();
                        buckets.objects.put(digest.as_str(), &mut reader).await
                    },
                    |_| true,
                )
                .await
                .map_err(|e| shared.unavailable(format!("storing component {digest}: {e}")))?;
            Ok(())
        })
    }

    fn get_component(&self, digest: &str) -> Result<Vec<u8>, Error> {
        if !is_digest(digest) {
            return Err(Error::Store(format!("'{digest}' is not a SHA-256 digest")));
        }
        if let Ok(bytes) = self.shared.cache.get_component(digest) {
            return Ok(bytes);
        }
        let shared = self.shared.clone();
        let name = digest.to_owned();
        let bytes = self.block(async move {
            let buckets = shared.open().await?;
            let get = shared.retrying(
                || buckets.objects.get(&name),
                |e| e.kind() != object_store::GetErrorKind::NotFound,
            );
            let mut object = get.await.map_err(|e| {
                if e.kind() == object_store::GetErrorKind::NotFound {
                    Error::Store(format!(
                        "component {name} is not in the object store '{}'",
                        shared.object_bucket
                    ))
                } else {
                    shared.unavailable(format!("fetching component {name}: {e}"))
                }
            })?;
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| shared.unavailable(format!("fetching component {name}: {e}")))?;
            Ok(bytes)
        })?;
        self.shared.cache.put_component(digest, &bytes)?;
        Ok(bytes)
    }

    fn precompiled(&self, digest: &str, engine_key: &str) -> Option<PathBuf> {
        self.shared.cache.precompiled(digest, engine_key)
    }

    fn put_precompiled(&self, digest: &str, engine_key: &str, bytes: &[u8]) -> Result<(), Error> {
        self.shared.cache.put_precompiled(digest, engine_key, bytes)
    }

    /// The state in the key-value bucket; when NATS cannot be reached, the copy this host
    /// cached (the store is then degraded).
    fn load(&self) -> Result<Snapshot, Error> {
        let shared = self.shared.clone();
        let read = if self.connected().is_ok() {
            self.block(async move {
                let buckets = shared.open().await?;
                // Each try gets the poll's patience: a read lost in a leader election is
                // sent again rather than waited for.
                let attempt = || async {
                    match tokio::time::timeout(shared.patience, buckets.kv.entry(STATE_KEY)).await {
                        Ok(read) => read.map_err(|e| e.to_string()),
                        Err(_) => Err(format!(
                            "no answer within {} ms",
                            shared.patience.as_millis()
                        )),
                    }
                };
                let entry = shared
                    .retrying(attempt, |_| true)
                    .await
                    .map_err(|e| shared.unavailable(format!("reading '{STATE_KEY}': {e}")))?;
                Ok(entry)
            })
        } else {
            Err(Error::StoreUnavailable("not connected to NATS".into()))
        };
        match read {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                let state: StoredState = serde_json::from_slice(&entry.value).map_err(|e| {
                    Error::Store(format!(
                        "'{STATE_KEY}' at revision {} in bucket '{}' is unreadable: {e}",
                        entry.revision, self.shared.kv_bucket
                    ))
                })?;
                self.shared.healthy();
                self.shared.cache_state(&state, entry.revision);
                Ok(Snapshot::new(state, entry.revision))
            }
            Ok(_) => {
                self.shared.healthy();
                Ok(Snapshot::default())
            }
            Err(Error::StoreUnavailable(reason)) => {
                self.shared.set_degraded(&reason);
                let cached = read_cached(&self.shared.cache);
                Ok(Snapshot::new(cached.state, cached.revision))
            }
            Err(e) => Err(e),
        }
    }

    /// A compare-and-set of the `state` key against revision `base`.
    fn save(&self, state: &StoredState, base: u64) -> Result<u64, Error> {
        self.connected()?;
        let value = Bytes::from(
            serde_json::to_vec(state)
                .map_err(|e| Error::Store(format!("encoding the state: {e}")))?,
        );
        let shared = self.shared.clone();
        // A write is sent again only when no stream leader took it (a node lost, an
        // election under way): then nothing was stored.
        let result = self.block(async move {
            let buckets = shared.open().await?;
            if base == 0 {
                shared
                    .retrying(|| buckets.kv.create(STATE_KEY, value.clone()), leaderless)
                    .await
                    .map_err(|e| match e.kind() {
                        kv::CreateErrorKind::AlreadyExists => Error::StoreConflict { base },
                        _ => shared.unavailable(format!("writing '{STATE_KEY}': {e}")),
                    })
            } else {
                shared
                    .retrying(
                        || buckets.kv.update(STATE_KEY, value.clone(), base),
                        leaderless,
                    )
                    .await
                    .map_err(|e| match e.kind() {
                        kv::UpdateErrorKind::WrongLastRevision => Error::StoreConflict { base },
                        _ => shared.unavailable(format!("writing '{STATE_KEY}': {e}")),
                    })
            }
        });
        let revision = result.map_err(|e| match e {
            Error::StoreUnavailable(reason) => Error::StoreUnavailable(format!(
                "{reason} (a change already sent may still land: `virga list` shows what is live)"
            )),
            other => other,
        })?;
        self.shared.cache_state(state, revision);
        Ok(revision)
    }

    fn watch(&self) -> Option<watch::Receiver<u64>> {
        Some(self.receiver.clone())
    }

    fn degraded(&self) -> Option<String> {
        self.shared
            .degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Shared {
    /// The buckets, opened (and created when missing) on first use, retried while NATS is
    /// between leaders.
    async fn open(&self) -> Result<&Buckets, Error> {
        self.retrying(|| self.buckets(), |_| true).await
    }

    /// Runs `operation` again, after a pause, while it fails with an error `again` accepts
    /// and the timeout is not spent: a stream has no leader for a few seconds after losing
    /// the node that led it (until its election). The last error is kept, to name the cause.
    async fn retrying<T, E, F>(
        &self,
        mut operation: impl FnMut() -> F,
        again: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        const PAUSE: Duration = Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match operation().await {
                Err(e) if again(&e) && tokio::time::Instant::now() + PAUSE < deadline => {
                    tokio::time::sleep(PAUSE).await;
                }
                done => return done,
            }
        }
    }

    /// The buckets, opened (and created when missing) on first use.
    async fn buckets(&self) -> Result<&Buckets, Error> {
        self.buckets
            .get_or_try_init(|| async {
                // The bucket's stream is made here, as the client's `create_key_value` would
                // (same subjects and settings), because that first reads the account info,
                // which servers before 2.10 send without fields the client requires.
                let kv_stream = format!("KV_{}", self.kv_bucket);
                let kv = match self.jetstream.get_key_value(&self.kv_bucket).await {
                    Ok(kv) => kv,
                    Err(e) if !self.stream_missing(&kv_stream).await => {
                        return Err(
                            self.unavailable(format!("opening bucket '{}': {e}", self.kv_bucket))
                        );
                    }
                    Err(_) => {
                        self.jetstream
                            .create_stream(jetstream::stream::Config {
                                name: format!("KV_{}", self.kv_bucket),
                                description: Some("Virga deployments".into()),
                                subjects: vec![format!("$KV.{}.>", self.kv_bucket)],
                                max_messages_per_subject: 16,
                                storage: jetstream::stream::StorageType::File,
                                num_replicas: self.replicas,
                                allow_rollup: true,
                                deny_delete: true,
                                // Reads go to the stream leader: a lagging replica answering
                                // a direct get would hand out an old state.
                                allow_direct: false,
                                discard: jetstream::stream::DiscardPolicy::New,
                                ..Default::default()
                            })
                            .await
                            .map_err(|e| {
                                self.unavailable(format!(
                                    "creating bucket '{}': {e}",
                                    self.kv_bucket
                                ))
                            })?;
                        self.jetstream
                            .get_key_value(&self.kv_bucket)
                            .await
                            .map_err(|e| {
                                self.unavailable(format!(
                                    "opening bucket '{}': {e}",
                                    self.kv_bucket
                                ))
                            })?
                    }
                };
                let object_stream = format!("OBJ_{}", self.object_bucket);
                let objects = match self.jetstream.get_object_store(&self.object_bucket).await {
                    Ok(objects) => objects,
                    Err(e) if !self.stream_missing(&object_stream).await => {
                        return Err(self.unavailable(format!(
                            "opening object store '{}': {e}",
                            self.object_bucket
                        )));
                    }
                    Err(_) => self
                        .jetstream
                        .create_object_store(object_store::Config {
                            bucket: self.object_bucket.clone(),
                            description: Some("Virga components".into()),
                            num_replicas: self.replicas,
                            storage: jetstream::stream::StorageType::File,
                            ..object_store::Config::default()
                        })
                        .await
                        .map_err(|e| {
                            self.unavailable(format!(
                                "opening object store '{}': {e}",
                                self.object_bucket
                            ))
                        })?,
                };
                Ok(Buckets { kv, objects })
            })
            .await
    }

    /// Whether JetStream says the stream does not exist (and only then may it be created:
    /// a timeout or a leaderless moment is no reason to).
    async fn stream_missing(&self, name: &str) -> bool {
        match self.jetstream.get_stream(name).await {
            Err(e) => matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ),
            Ok(_) => false,
        }
    }

    /// Why the client is not connected: its latest connection error, or its state.
    fn not_connected(&self, state: async_nats::connection::State) -> String {
        let last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some(error) => format!("last error: {error}"),
            None => format!("{state:?}, reconnecting").to_lowercase(),
        }
    }

    /// An unavailability, also recorded as the reason the store is degraded.
    fn unavailable(&self, what: String) -> Error {
        let reason = format!("NATS JetStream: {what}");
        self.set_degraded(&reason);
        Error::StoreUnavailable(reason)
    }

    fn set_degraded(&self, reason: &str) {
        let mut degraded = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        if degraded.is_none() {
            tracing::warn!(
                reason,
                "the deployment store is degraded; serving the last state"
            );
        }
        *degraded = Some(reason.to_owned());
    }

    fn healthy(&self) {
        let mut degraded = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = degraded.take() {
            tracing::info!(was = %reason, "the deployment store is reachable again");
        }
    }

    /// Remembers a revision as committed (the follower applies it when it is newer).
    fn publish(&self, revision: u64) {
        self.revisions.send_if_modified(|known| {
            let newer = revision > *known;
            if newer {
                *known = revision;
            }
            newer
        });
    }

    /// Keeps the state on local disk for a start while NATS is away: only a newer revision
    /// than the one kept, and only once every component it needs is here too (a host
    /// restarted without NATS must be able to load it). A failure only costs that.
    fn cache_state(&self, state: &StoredState, revision: u64) {
        let mut cached_revision = self
            .cached_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let complete = state
            .deployments
            .values()
            .flat_map(|d| &d.versions)
            .all(|v| self.cache.has_component(&v.component));
        if revision <= *cached_revision || !complete {
            return;
        }
        let cached = Cached {
            revision,
            state: state.clone(),
        };
        let written = serde_json::to_vec(&cached)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                write_atomically(&self.cache.dir().join("fleet-state.json"), &bytes)
                    .map_err(|e| e.to_string())
            });
        match written {
            Ok(()) => *cached_revision = revision,
            Err(e) => tracing::warn!(error = %e, "cannot cache the deployment state on disk"),
        }
    }

    /// Caches a state read by the poll once this host has its components (it fetches them
    /// while applying the state).
    fn cache_entry(&self, entry: &kv::Entry) {
        let newer = entry.revision
            > *self
                .cached_revision
                .lock()
                .unwrap_or_else(|e| e.into_inner());
        if newer
            && entry.operation == kv::Operation::Put
            && let Ok(state) = serde_json::from_slice::<StoredState>(&entry.value)
        {
            self.cache_state(&state, entry.revision);
        }
    }
}

/// Whether a write failed because no stream leader answered it (so nothing was stored).
fn leaderless(error: &(impl std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<jetstream::context::PublishError>()
            .is_some_and(|p| p.kind() == jetstream::context::PublishErrorKind::StreamNotFound)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// The cached state (empty at revision 0 when there is none or it is unreadable).
fn read_cached(cache: &LocalStore) -> Cached {
    let path = cache.dir().join("fleet-state.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable cached state");
            Cached::default()
        }),
        Err(_) => Cached::default(),
    }
}

/// Follows the `state` key: a watch for prompt news of each commit, and a read every `poll`
/// to notice NATS going away or coming back (and commits a broken watch missed).
async fn watch_revisions(shared: Arc<Shared>, poll: Duration) {
    let mut watcher: Option<kv::Watch> = None;
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = async {
            match watcher.as_mut() {
                Some(w) => w.next().await,
                None => std::future::pending().await,
            }
        };
        let news = tokio::select! {
            entry = next => Some(entry),
            _ = ticker.tick() => None,
        };
        match news {
            Some(Some(Ok(entry))) => {
                shared.publish(entry.revision);
                continue;
            }
            Some(_) => {
                watcher = None;
                continue;
            }
            None => {}
        }
        let state = shared.client.connection_state();
        if state != async_nats::connection::State::Connected {
            shared.set_degraded(&format!(
                "NATS JetStream: not connected ({})",
                shared.not_connected(state)
            ));
            continue;
        }
        // A read sent while a stream elects its leader can go unanswered: give up on it soon
        // and read again, rather than sit out the whole timeout.
        let patience = shared.patience;
        let read = tokio::time::timeout(patience, async {
            let buckets = shared.buckets().await?;
            let entry = buckets
                .kv
                .entry(STATE_KEY)
                .await
                .map_err(|e| shared.unavailable(format!("reading '{STATE_KEY}': {e}")))?;
            if watcher.is_none() {
                watcher = buckets.kv.watch(STATE_KEY).await.ok();
            }
            if let Some(entry) = &entry {
                shared.cache_entry(entry);
            }
            Ok::<_, Error>(entry.map_or(0, |e| e.revision))
        })
        .await;
        match read {
            Ok(Ok(revision)) => {
                shared.healthy();
                shared.publish(revision);
            }
            Ok(Err(_)) => {}
            Err(_) => shared.set_degraded(&format!(
                "NATS JetStream: no answer within {} ms",
                patience.as_millis()
            )),
        }
    }
}
