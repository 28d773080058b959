//! `virga.toml`: the host's configuration file. Unknown keys are refused with their name.
//! See `virga.example.toml` at the repository root for every key with its default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;
use crate::limits::Limits;
use crate::telemetry::{OtlpExport, OtlpProtocol, Telemetry, TelemetryBuilder};

mod store;

pub use store::{StoreConfig, StoreKind};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Listeners, TLS, admin API, state.
    #[serde(default)]
    pub server: ServerConfig,
    /// Default limits of deployments that do not set their own.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Deployments declared in the file, deployed at start.
    #[serde(default)]
    pub deployments: Vec<StaticDeployment>,
    /// Outbound fetch.
    #[serde(default)]
    pub fetch: FetchConfig,
    /// The host cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// OpenTelemetry export and guest logs.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Where deployments are kept: this host's state directory, or NATS JetStream.
    #[serde(default)]
    pub store: StoreConfig,
}

/// `[telemetry]`. Without `otlp_endpoint` the standard `OTEL_EXPORTER_OTLP_*` variables
/// decide (see [`OtlpExport::from_env`]); without either, nothing is exported.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// The OTLP collector (`http://host:port`). Default: none.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`. Default `http/protobuf`, or `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub otlp_protocol: Option<String>,
    /// Headers sent with every export. Default none.
    #[serde(default)]
    pub otlp_headers: BTreeMap<String, String>,
    /// Export spans. Default true.
    #[serde(default = "default_true")]
    pub traces: bool,
    /// Export metrics. Default true.
    #[serde(default = "default_true")]
    pub metrics: bool,
    /// Export guest log records. Default true.
    #[serde(default = "default_true")]
    pub logs: bool,
    /// How often metrics are exported, ms. Default 10000.
    #[serde(default = "TelemetryConfig::default_metric_interval_ms")]
    pub metric_interval_ms: u64,
    /// Lines of stdout/stderr one request may log. Default 100.
    #[serde(default = "TelemetryConfig::default_guest_log_lines")]
    pub guest_log_lines: u32,
    /// The longest guest log line kept, bytes. Default 4096.
    #[serde(default = "TelemetryConfig::default_guest_log_line_bytes")]
    pub guest_log_line_bytes: usize,
    /// Spans (and log records) that may wait for export; beyond, dropped and counted.
    /// Default 4096.
    #[serde(default = "TelemetryConfig::default_export_queue")]
    pub export_queue: usize,
}

impl TelemetryConfig {
    fn default_metric_interval_ms() -> u64 {
        10_000
    }

    fn default_guest_log_lines() -> u32 {
        100
    }

    fn default_guest_log_line_bytes() -> usize {
        4096
    }

    fn default_export_queue() -> usize {
        4096
    }

    /// The OTLP export this section (or, without an endpoint here, the environment) asks
    /// for, if any.
    pub fn otlp(&self) -> Result<Option<OtlpExport>, Error> {
        self.otlp_with_env(|name| std::env::var(name).ok())
    }

    fn otlp_with_env(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpExport>, Error> {
        let protocol = match &self.otlp_protocol {
            Some(name) => Some(name.parse::<OtlpProtocol>()?),
            None => None,
        };
        let mut export = match &self.otlp_endpoint {
            Some(endpoint) => OtlpExport::new(protocol.unwrap_or(OtlpProtocol::HttpProtobuf))
                .endpoint(endpoint.clone()),
            None => match OtlpExport::from_vars(var)? {
                Some(mut export) => {
                    if let Some(protocol) = protocol {
                        export.protocol = protocol;
                    }
                    export
                }
                None => return Ok(None),
            },
        };
        for (name, value) in &self.otlp_headers {
            export = export.header(name.clone(), value.clone());
        }
        export.check()?;
        export.traces &= self.traces;
        export.metrics &= self.metrics;
        export.logs &= self.logs;
        Ok(Some(export))
    }

    /// A telemetry builder set up as this section says.
    pub fn builder(&self) -> Result<TelemetryBuilder, Error> {
        let mut builder = Telemetry::builder()
            .guest_log_lines(self.guest_log_lines)
            .guest_log_line_bytes(self.guest_log_line_bytes)
            .export_queue(self.export_queue)
            .metric_interval(std::time::Duration::from_millis(self.metric_interval_ms));
        if let Some(export) = self.otlp()? {
            builder = builder.otlp(export);
        }
        Ok(builder)
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: None,
            otlp_headers: BTreeMap::new(),
            traces: true,
            metrics: true,
            logs: true,
            metric_interval_ms: Self::default_metric_interval_ms(),
            guest_log_lines: Self::default_guest_log_lines(),
            guest_log_line_bytes: Self::default_guest_log_line_bytes(),
            export_queue: Self::default_export_queue(),
        }
    }
}

/// `[cache]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// MiB the in-memory cache holds over all deployments (each also has its share, the
    /// `cache_mib` limit). Default 256.
    #[serde(default = "CacheConfig::default_capacity_mib")]
    pub capacity_mib: u64,
}

impl CacheConfig {
    fn default_capacity_mib() -> u64 {
        256
    }

    /// The capacity in bytes; an error naming the problem for 0 or an absurd size.
    pub fn capacity(&self) -> Result<u64, Error> {
        match self.capacity_mib.checked_mul(1 << 20) {
            Some(bytes) if bytes > 0 => Ok(bytes),
            _ => Err(Error::Config(format!(
                "[cache] capacity_mib must be between 1 and {}, not {}",
                u64::MAX >> 20,
                self.capacity_mib
            ))),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity_mib: Self::default_capacity_mib(),
        }
    }
}

/// `[fetch]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FetchConfig {
    /// PEM files of CA certificates trusted besides the webpki roots (relative to the
    /// config file). Default none.
    #[serde(default)]
    pub ca_certs: Vec<PathBuf>,
}

impl FetchConfig {
    /// Reads the CA certificates of `ca_certs`; the error names the file and the problem.
    pub fn load_ca_certs(&self) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Error> {
        use rustls::pki_types::pem::PemObject;
        let mut certs = Vec::new();
        for path in &self.ca_certs {
            let pem = std::fs::read(path)
                .map_err(|e| Error::io(format!("reading CA file {}", path.display()), e))?;
            let before = certs.len();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                certs.push(cert.map_err(|e| {
                    Error::Config(format!("{}: not a PEM certificate: {e}", path.display()))
                })?);
            }
            if certs.len() == before {
                return Err(Error::Config(format!(
                    "{}: no PEM certificate in it",
                    path.display()
                )));
            }
        }
        Ok(certs)
    }
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Plaintext listener (HTTP/1.1, h2c), or "off". Default "127.0.0.1:8080".
    #[serde(default = "default_http", deserialize_with = "listen")]
    pub http: Option<SocketAddr>,
    /// TLS listener (HTTP/1.1, HTTP/2), or "off". Default "127.0.0.1:8443".
    #[serde(default = "default_https", deserialize_with = "listen")]
    pub https: Option<SocketAddr>,
    /// PEM certificate chain; with `tls_key`. Default: a self-signed certificate for
    /// localhost kept in the state directory.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Admin API listener, or "off". Default "127.0.0.1:8081" (loopback only).
    #[serde(default = "default_admin", deserialize_with = "listen")]
    pub admin: Option<SocketAddr>,
    /// Admin bearer token. Default: `VIRGA_TOKEN`, else generated into
    /// `STATE_DIR/admin-token` (mode 0600) at first start.
    pub admin_token: Option<String>,
    /// Where deployments and the self-signed certificate live. Default ".virga".
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Largest component upload, MiB. Default 64.
    #[serde(default = "default_max_upload")]
    pub max_upload_mib: u64,
    /// Versions kept per deployment for rollback. Default 10.
    #[serde(default = "default_keep")]
    pub keep_versions: usize,
    /// Instances that may run at once (requests in flight). Default 1000.
    #[serde(default = "default_instances")]
    pub max_instances: u32,
    /// Guests past 2 ms of CPU time that may run at once; the others wait their turn
    /// ([`RuntimeBuilder::long_running_lanes`](crate::RuntimeBuilder::long_running_lanes)).
    /// Default: half the machine's cores, at least one.
    #[serde(default)]
    pub long_running_lanes: Option<usize>,
    /// Connections open at once over all listeners; more are closed when accepted.
    /// Default 10000.
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    /// Milliseconds a client may take to send a request head (slowloris). Default 30000.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    /// Bytes per second a request body must arrive at, after `body_grace_ms` (slow POST);
    /// 0 turns the check off. Default 500.
    #[serde(default = "default_body_rate")]
    pub min_body_rate: u64,
    /// Milliseconds of waiting for a request body granted before `min_body_rate` applies.
    /// Default 10000.
    #[serde(default = "default_body_grace")]
    pub body_grace_ms: u64,
    /// HTTP/3 (QUIC) on the UDP port of `https`, with its certificate; needs `https`.
    /// Default true.
    #[serde(default = "default_true")]
    pub http3: bool,
    /// Milliseconds after which a silent HTTP/3 connection is closed. Default 30000.
    #[serde(default = "default_h3_idle")]
    pub h3_idle_timeout_ms: u64,
    /// Request streams one HTTP/3 connection may have open at once. Default 100.
    #[serde(default = "default_h3_streams")]
    pub h3_max_streams: u64,
    /// Whether new HTTP/3 connections first prove their address with a stateless Retry.
    /// Default true.
    #[serde(default = "default_true")]
    pub h3_address_validation: bool,
}

impl ServerConfig {
    /// The HTTP/3 options these keys describe.
    pub fn http3_options(&self) -> crate::server::Http3 {
        crate::server::Http3::default()
            .idle_timeout(std::time::Duration::from_millis(self.h3_idle_timeout_ms))
            .max_concurrent_streams(self.h3_max_streams)
            .address_validation(self.h3_address_validation)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: default_http(),
            https: default_https(),
            tls_cert: None,
            tls_key: None,
            admin: default_admin(),
            admin_token: None,
            state_dir: default_state_dir(),
            max_upload_mib: default_max_upload(),
            keep_versions: default_keep(),
            max_instances: default_instances(),
            long_running_lanes: None,
            max_connections: default_connections(),
            header_timeout_ms: default_header_timeout(),
            min_body_rate: default_body_rate(),
            body_grace_ms: default_body_grace(),
            http3: true,
            h3_idle_timeout_ms: default_h3_idle(),
            h3_max_streams: default_h3_streams(),
            h3_address_validation: true,
        }
    }
}

/// Limits as written in the file: keys of [`Limits::set`] (`cpu_ms = 100`,
/// `memory_mib = 64`, `subrequests = 10`, ...). Unset keys fall back to `[limits]`, then to the
/// built-in defaults documented on [`Limits`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Values by key.
    pub values: BTreeMap<String, u64>,
}

impl LimitsConfig {
    /// These limits over `base`. Keys and values are checked when the file is parsed, so
    /// this only fails for a `LimitsConfig` built by hand.
    pub fn over(&self, base: &Limits) -> Result<Limits, Error> {
        let mut limits = base.clone();
        for (key, value) in &self.values {
            limits.set(key, *value).map_err(Error::Config)?;
        }
        Ok(limits)
    }

    /// The value set for `key`, if any.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.values.get(key).copied()
    }
}

/// `[[deployments]]`: a deployment declared in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StaticDeployment {
    /// Its name.
    pub name: String,
    /// Path of the component (`.wasm`), relative to the config file.
    pub module: PathBuf,
    /// Route patterns.
    pub routes: Vec<String>,
    /// Variables for the guest.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Its limits, over `[limits]`.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Origins it may fetch from (see [`AllowedOrigin`](crate::AllowedOrigin)).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Host keys its handlers open by name (`virga:edge/crypto`): usable, never readable.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyConfig>,
}

/// `[deployments.keys] NAME = { algorithm = "...", file = "..." }` (or `env = "VAR"`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyConfig {
    /// The algorithm, by its WIT name: `ecdsa-p256-sha256`, `ed25519`, `rsa-pss-sha256`,
    /// `hmac-sha256`, `aes256-gcm`, ...
    pub algorithm: String,
    /// A PEM file (relative to the config file): a private key (`PRIVATE KEY`, `EC PRIVATE
    /// KEY`, `RSA PRIVATE KEY`).
    pub file: Option<PathBuf>,
    /// An environment variable holding a PEM private key, or a base64 secret (HMAC, AEAD).
    pub env: Option<String>,
}

impl KeyConfig {
    /// Reads the key material: DER of a PEM private key, or the decoded secret. The error
    /// names the file or variable, never the material.
    pub fn load(&self) -> Result<Vec<u8>, Error> {
        let (text, origin) = match (&self.file, &self.env) {
            (Some(path), None) => (
                std::fs::read(path)
                    .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?,
                path.display().to_string(),
            ),
            (None, Some(var)) => (
                std::env::var(var)
                    .map_err(|_| Error::Config(format!("environment variable {var} is not set")))?
                    .into_bytes(),
                format!("${var}"),
            ),
            _ => return Err(Error::Config("a key takes either file or env".into())),
        };
        if text.windows(10).any(|w| w == b"-----BEGIN") {
            use rustls::pki_types::PrivateKeyDer;
            use rustls::pki_types::pem::PemObject;
            let key = PrivateKeyDer::from_pem_slice(&text)
                .map_err(|e| Error::Config(format!("{origin}: no usable PEM private key ({e})")))?;
            return Ok(key.secret_der().to_vec());
        }
        use base64::Engine;
        let trimmed = String::from_utf8_lossy(&text).trim().to_owned();
        base64::engine::general_purpose::STANDARD
            .decode(&trimmed)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&trimmed))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&trimmed))
            .map_err(|_| Error::Config(format!("{origin}: neither PEM nor base64")))
    }
}

impl Config {
    /// The host keys of every `[[deployments]]`, loaded and checked; the error names the
    /// deployment, the key and the problem.
    pub fn load_keys(&self) -> Result<crate::StaticKeys, Error> {
        let mut keys = crate::StaticKeys::new();
        for d in &self.deployments {
            for (name, key) in &d.keys {
                let material = key
                    .load()
                    .map_err(|e| Error::Config(format!("key '{name}' of '{}': {e}", d.name)))?;
                keys.add(&d.name, name, &key.algorithm, &material)?;
            }
        }
        Ok(keys)
    }
}

impl Config {
    /// Parses a configuration; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let config: Config = toml::from_str(text)
            .map_err(|e| Error::Config(format!("{origin}: {}", e.message())))?;
        config.check(origin)?;
        Ok(config)
    }

    /// Reads and parses a file; relative module paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.store.resolve(base);
        for ca in &mut config.fetch.ca_certs {
            if ca.is_relative() {
                *ca = base.join(&*ca);
            }
        }
        for deployment in &mut config.deployments {
            for key in deployment.keys.values_mut() {
                if let Some(file) = &mut key.file
                    && file.is_relative()
                {
                    *file = base.join(&*file);
                }
            }
            if deployment.module.is_relative() {
                deployment.module = base.join(&deployment.module);
            }
        }
        Ok(config)
    }

    /// The default limits: `[limits]` over the built-in defaults.
    pub fn default_limits(&self) -> Limits {
        // Checked at parse time.
        self.limits.over(&Limits::default()).unwrap_or_default()
    }

    fn check(&self, origin: &str) -> Result<(), Error> {
        let fail = |m: String| Err(Error::Config(format!("{origin}: {m}")));
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return fail("set both tls_cert and tls_key, or neither".into());
        }
        if self.server.max_upload_mib == 0 {
            return fail("max_upload_mib must be at least 1".into());
        }
        if self.server.max_connections == 0 || self.server.header_timeout_ms == 0 {
            return fail("max_connections and header_timeout_ms must be at least 1".into());
        }
        if let Err(Error::Config(e)) = self.cache.capacity() {
            return fail(e);
        }
        self.store.check().or_else(fail)?;
        // The environment is not consulted here: only what the file says is checked.
        if let Err(Error::Config(e)) = self.telemetry.otlp_with_env(|_| None) {
            return fail(format!("[telemetry]: {e}"));
        }
        let t = &self.telemetry;
        if t.metric_interval_ms == 0 {
            return fail("[telemetry]: metric_interval_ms must be at least 1".into());
        }
        for (name, value, max) in [
            (
                "export_queue",
                t.export_queue,
                crate::telemetry::MAX_EXPORT_QUEUE,
            ),
            (
                "guest_log_line_bytes",
                t.guest_log_line_bytes,
                crate::telemetry::MAX_GUEST_LOG_LINE,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return fail(format!(
                    "[telemetry]: {name} must be between 1 and {max}, not {value}"
                ));
            }
        }
        if let Err(Error::Config(e)) = self.limits.over(&Limits::default()) {
            return fail(format!("[limits]: {e}"));
        }
        for d in &self.deployments {
            if let Err(Error::Config(e)) = d.limits.over(&Limits::default()) {
                return fail(format!("deployment '{}': {e}", d.name));
            }
            for origin in &d.allow {
                if let Err(e) = origin.parse::<crate::AllowedOrigin>() {
                    return fail(format!("deployment '{}': {e}", d.name));
                }
            }
            for (name, key) in &d.keys {
                if crate::algorithm_by_name(&key.algorithm).is_none() {
                    return fail(format!(
                        "deployment '{}': key '{name}' has unknown algorithm '{}'",
                        d.name, key.algorithm
                    ));
                }
                if key.file.is_some() == key.env.is_some() {
                    return fail(format!(
                        "deployment '{}': key '{name}' takes either file or env",
                        d.name
                    ));
                }
            }
            if d.routes.is_empty() {
                return fail(format!("deployment '{}' has no routes", d.name));
            }
            for route in &d.routes {
                if let Err(e) = route.parse::<crate::RoutePattern>() {
                    return fail(format!("deployment '{}': {e}", d.name));
                }
            }
        }
        Ok(())
    }
}

fn listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "'{text}' is not an address like 127.0.0.1:8080 or \"off\""
        ))
    })
}

fn default_http() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 8080)))
}
fn default_https() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 8443)))
}
fn default_admin() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 8081)))
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(".virga")
}
fn default_max_upload() -> u64 {
    64
}
// The listener defaults are the server's own (`ServerBuilder`'s documented defaults).
fn default_connections() -> usize {
    crate::server::ConnectionLimits::default().max_connections
}
fn default_header_timeout() -> u64 {
    let timeout = crate::server::ConnectionLimits::default().header_read_timeout;
    u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
}
fn default_body_rate() -> u64 {
    crate::server::ConnectionLimits::default()
        .body_rate
        .min_rate
}
fn default_body_grace() -> u64 {
    let grace = crate::server::ConnectionLimits::default().body_rate.grace;
    u64::try_from(grace.as_millis()).unwrap_or(u64::MAX)
}
fn default_true() -> bool {
    true
}
fn default_h3_idle() -> u64 {
    30_000
}
fn default_h3_streams() -> u64 {
    100
}
fn default_keep() -> usize {
    10
}
fn default_instances() -> u32 {
    1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../../virga.example.toml");
        let config = Config::parse(text, "virga.example.toml").unwrap();
        assert_eq!(config.server.admin, default_admin());
        assert_eq!(config.deployments.len(), 1);
        assert_eq!(config.deployments[0].limits.get("cpu_ms"), Some(100));
    }

    #[test]
    fn the_samples_config_parses() {
        let config =
            Config::parse(include_str!("../../../../samples/virga.toml"), "samples").unwrap();
        assert_eq!(config.deployments[0].name, "hello");
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = Config::parse("", "empty").unwrap();
        assert_eq!(config.server.http, default_http());
        assert_eq!(config.server.state_dir, PathBuf::from(".virga"));
        assert_eq!(config.default_limits(), Limits::default());
    }

    #[test]
    fn bad_configs_name_the_problem() {
        for (text, expected) in [
            ("[server]\nlisten = \"x\"", "unknown field `listen`"),
            ("[limit]\ncpu_ms = 1", "unknown field `limit`"),
            (
                "[server]\nhttp = \"nowhere\"",
                "'nowhere' is not an address",
            ),
            ("[limits]\ncpu_ms = \"fast\"", "invalid type"),
            (
                "[server]\ntls_cert = \"c.pem\"",
                "set both tls_cert and tls_key",
            ),
            (
                "[[deployments]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = []",
                "has no routes",
            ),
            (
                "[[deployments]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = [\"nohost\"]",
                "needs a path part",
            ),
            (
                "[[deployments]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = [\"*/*\"]\nallow = [\"ftp://x\"]",
                "invalid origin 'ftp://x'",
            ),
            ("[limits]\ncpu = 5", "unknown limit 'cpu'"),
            (
                "[[deployments]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = [\"*/*\"]\nkeys.k = { algorithm = \"rsa-md5\", env = \"K\" }",
                "key 'k' has unknown algorithm 'rsa-md5'",
            ),
            (
                "[[deployments]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = [\"*/*\"]\nkeys.k = { algorithm = \"ed25519\" }",
                "key 'k' takes either file or env",
            ),
            (
                "[limits]\nmemory_mib = 0",
                "'memory_mib' must be greater than 0",
            ),
            (
                "[[deployments]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = [\"*/*\"]\n[deployments.limits]\nsubrequests = -1",
                "invalid value",
            ),
            ("[server", "unclosed table"),
            ("[store]\nkind = \"redis\"", "unknown variant `redis`"),
            ("[store]\nbucket = \"x\"", "unknown field `bucket`"),
            (
                "[store]\nservers = [\"nats://n1:4222\"]",
                "NATS settings need kind = \"nats\"",
            ),
            (
                "[store]\nkind = \"nats\"\nservers = []",
                "servers must name at least one NATS server",
            ),
            (
                "[store]\nkind = \"nats\"\nreplicas = 7",
                "replicas must be between 1 and 5, not 7",
            ),
            (
                "[store]\nkind = \"nats\"\ntimeout_ms = 0",
                "timeout_ms and poll_ms must be at least 1",
            ),
            (
                "[store]\nkind = \"nats\"\nuser = \"u\"",
                "set both user and password",
            ),
            (
                "[store]\nkind = \"nats\"\ntls_cert = \"c.pem\"",
                "[store]: set both tls_cert and tls_key",
            ),
            ("[store]\nreplicas = -1", "invalid value"),
            (
                "[cache]\ncapacity_mib = 0",
                "capacity_mib must be between 1",
            ),
            ("[cache]\nsize = 5", "unknown field `size`"),
            (
                "[server]\nmax_connections = 0",
                "max_connections and header_timeout_ms",
            ),
            (
                "[limits]\ncache_mib = 0",
                "'cache_mib' must be greater than 0",
            ),
            ("[server]\nmin_body_rate = \"fast\"", "invalid type"),
            ("[server]\nbody_grace_ms = -1", "invalid value"),
            ("[server]\nlong_running_lanes = -2", "invalid value"),
            ("[server]\nhttp3 = \"yes\"", "invalid type"),
            ("[server]\nh3_max_streams = -1", "invalid value"),
            ("[server]\nh3_idle_timeout_ms = \"1s\"", "invalid type"),
            (
                "[telemetry]\notlp_endpoint = \"nowhere\"",
                "[telemetry]: OTLP endpoint",
            ),
            (
                "[telemetry]\notlp_endpoint = \"https://c:4318\"",
                "OTLP over TLS is not supported",
            ),
            (
                "[telemetry]\notlp_endpoint = \"http://c:4317\"\notlp_protocol = \"udp\"",
                "OTLP protocol 'udp' is not supported",
            ),
            (
                "[telemetry]\notlp_endpoint = \"http://c:4317\"\notlp_headers = { \"bad name\" = \"v\" }",
                "OTLP header 'bad name'",
            ),
            ("[telemetry]\nmetric_interval_ms = 0", "metric_interval_ms"),
            (
                "[telemetry]\nexport_queue = 0",
                "export_queue must be between 1 and",
            ),
            (
                "[telemetry]\nexport_queue = 1000000000000",
                "export_queue must be between 1 and 1048576",
            ),
            (
                "[telemetry]\nguest_log_line_bytes = 99999999",
                "guest_log_line_bytes must be between",
            ),
            ("[telemetry]\nguest_log_lines = -1", "invalid value"),
            (
                "[telemetry]\ncollector = \"x\"",
                "unknown field `collector`",
            ),
        ] {
            let err = Config::parse(text, "test.toml").unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.contains("test.toml"), "{err}");
        }
    }
}
