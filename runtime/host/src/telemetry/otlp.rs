//! OTLP export (gRPC or HTTP/protobuf), configured in code or the standard way
//! (`OTEL_EXPORTER_OTLP_*` environment variables).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_otlp::{
    LogExporter, MetricExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::otlp_encode::SpanEncoder;
use super::queue::{QueueOptions, QueuedLogs, QueuedSpans, SpanQueue};
use super::server_span::ServerSpans;
use super::trace_export::TraceClient;
use crate::error::Error;
use opentelemetry_sdk::logs::LogExporter as _;

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// OTLP/gRPC (usually port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (usually port 4318): `/v1/traces`, `/v1/metrics`,
    /// `/v1/logs` under the endpoint.
    HttpProtobuf,
}

impl std::str::FromStr for OtlpProtocol {
    type Err = Error;

    /// The names `OTEL_EXPORTER_OTLP_PROTOCOL` uses: `grpc` or `http/protobuf`.
    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            other => Err(Error::Config(format!(
                "OTLP protocol '{other}' is not supported: use 'grpc' or 'http/protobuf'"
            ))),
        }
    }
}

/// Where and how to export over OTLP. Without an [`endpoint`](Self::endpoint), the
/// exporters read the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `..._HEADERS`, `..._TIMEOUT`, ...), then fall back to
/// the protocol's default on localhost.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OtlpExport {
    /// The transport.
    pub protocol: OtlpProtocol,
    /// The collector's base URL (`http://host:port`), if set in code.
    pub endpoint: Option<String>,
    /// Headers sent with every export (an API key, say).
    pub headers: Vec<(String, String)>,
    /// How long one export may take. Default: the exporter's (10 s, or `OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub timeout: Option<Duration>,
    /// Whether spans are exported. Default true.
    pub traces: bool,
    /// Whether metrics are exported. Default true.
    pub metrics: bool,
    /// Whether guest log records are exported. Default true.
    pub logs: bool,
}

impl OtlpExport {
    /// Export of all three signals over `protocol`, to the endpoint the environment names
    /// (or the default one).
    pub fn new(protocol: OtlpProtocol) -> Self {
        Self {
            protocol,
            endpoint: None,
            headers: Vec::new(),
            timeout: None,
            traces: true,
            metrics: true,
            logs: true,
        }
    }

    /// The export the standard environment variables ask for, if any: some
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` is set and `OTEL_SDK_DISABLED` is not `true`. The
    /// protocol comes from `OTEL_EXPORTER_OTLP_PROTOCOL` (default `http/protobuf`, as the
    /// specification says); `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER` and
    /// `OTEL_LOGS_EXPORTER` set to `none` turn one signal off.
    pub fn from_env() -> Result<Option<Self>, Error> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
        let configured = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        ]
        .iter()
        .any(|name| set(name));
        if !configured {
            return Ok(None);
        }
        let protocol = match var("OTEL_EXPORTER_OTLP_PROTOCOL") {
            Some(name) if !name.trim().is_empty() => name.trim().parse()?,
            _ => OtlpProtocol::HttpProtobuf,
        };
        let on = |name: &str| -> Result<bool, Error> {
            match var(name).as_deref().map(str::trim) {
                None | Some("" | "otlp") => Ok(true),
                Some("none") => Ok(false),
                Some(other) => Err(Error::Config(format!(
                    "{name}='{other}' is not supported: use 'otlp' or 'none'"
                ))),
            }
        };
        // Without the common endpoint, only the signals given their own endpoint are
        // exported (the others would go to the default port on localhost).
        let everything = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        let mut export = Self::new(protocol);
        export.traces = on("OTEL_TRACES_EXPORTER")?
            && (everything || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
        export.metrics = on("OTEL_METRICS_EXPORTER")?
            && (everything || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"));
        export.logs =
            on("OTEL_LOGS_EXPORTER")? && (everything || set("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"));
        for name in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        ] {
            if let Some(url) = var(name).filter(|v| !v.trim().is_empty()) {
                check_endpoint(&url).map_err(|e| Error::Config(format!("{name}: {e}")))?;
            }
        }
        Ok(Some(export))
    }

    /// Sends to the collector at `url` (`http://host:port`; for HTTP/protobuf the signal
    /// paths `/v1/traces`, `/v1/metrics` and `/v1/logs` are added). Overrides the
    /// environment.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Sends `name: value` with every export.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Bounds the time of one export.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks what was set in code: the endpoint and the headers.
    pub(crate) fn check(&self) -> Result<(), Error> {
        self.signal_endpoint("")?;
        self.metadata()?;
        Ok(())
    }

    /// The endpoint for one signal: for HTTP, the base URL with the signal's path.
    pub(super) fn signal_endpoint(&self, path: &str) -> Result<Option<String>, Error> {
        let Some(base) = &self.endpoint else {
            return Ok(None);
        };
        check_endpoint(base).map_err(|e| Error::Config(format!("OTLP endpoint: {e}")))?;
        Ok(Some(match self.protocol {
            OtlpProtocol::Grpc => base.clone(),
            OtlpProtocol::HttpProtobuf => format!("{}{path}", base.trim_end_matches('/')),
        }))
    }

    fn metadata(&self) -> Result<tonic::metadata::MetadataMap, Error> {
        let mut map = tonic::metadata::MetadataMap::new();
        for (name, value) in &self.headers {
            let key =
                tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| bad_header(name))?;
            let value = value.parse().map_err(|_| bad_header(name))?;
            map.insert(key, value);
        }
        Ok(map)
    }

    fn header_map(&self) -> HashMap<String, String> {
        self.headers.iter().cloned().collect()
    }

    /// Sets up a gRPC exporter builder: headers as metadata, endpoint, timeout.
    fn tonic<B: WithExportConfig + WithTonicConfig>(
        &self,
        builder: B,
        endpoint: Option<String>,
    ) -> Result<B, Error> {
        // tonic's channel lives on the runtime the telemetry is built in.
        tokio_runtime()?;
        Ok(self.export_config(builder.with_metadata(self.metadata()?), endpoint))
    }

    /// Sets up an HTTP exporter builder: the client, headers, endpoint, timeout.
    fn http<B: WithExportConfig + WithHttpConfig>(
        &self,
        builder: B,
        endpoint: Option<String>,
    ) -> Result<B, Error> {
        let builder = builder
            .with_http_client(OnTokio::new(self.timeout)?)
            .with_headers(self.header_map());
        Ok(self.export_config(builder, endpoint))
    }

    /// The endpoint (when set in code) and the timeout, for either transport.
    fn export_config<B: WithExportConfig>(&self, mut builder: B, endpoint: Option<String>) -> B {
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.with_timeout(timeout);
        }
        builder
    }

    /// The tracer provider of Virga's own span export (host calls' spans go through it),
    /// and what server spans are recorded with: both feed one queue whose thread encodes
    /// and sends the batches (see `otlp_encode` and `trace_export`).
    pub(super) fn tracer_provider(
        &self,
        resource: Resource,
        scope: opentelemetry::InstrumentationScope,
        queue: QueueOptions,
    ) -> Result<(SdkTracerProvider, ServerSpans), Error> {
        let client = TraceClient::new(self, |name| std::env::var(name).ok())?;
        let encoder = SpanEncoder::new(&resource, scope);
        let queue = SpanQueue::start(client, encoder, queue);
        // The sampler `OTEL_TRACES_SAMPLER` asks for, shared by both kinds of span.
        let sampler = opentelemetry_sdk::trace::Config::default().sampler;
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler.box_clone())
            .with_span_processor(QueuedSpans::new(queue.clone()))
            .with_resource(resource)
            .build();
        let server = ServerSpans {
            sampler,
            ids: opentelemetry_sdk::trace::RandomIdGenerator::default(),
            queue,
        };
        Ok((provider, server))
    }

    pub(super) fn logger_provider(
        &self,
        resource: Resource,
        queue: QueueOptions,
    ) -> Result<SdkLoggerProvider, Error> {
        let endpoint = self.signal_endpoint("/v1/logs")?;
        let mut exporter = match self.protocol {
            OtlpProtocol::Grpc => self
                .tonic(LogExporter::builder().with_tonic(), endpoint)?
                .build(),
            OtlpProtocol::HttpProtobuf => self
                .http(LogExporter::builder().with_http(), endpoint)?
                .build(),
        }
        .map_err(|e| exporter_failed("log", e))?;
        exporter.set_resource(&resource);
        Ok(SdkLoggerProvider::builder()
            .with_log_processor(QueuedLogs::new(exporter, queue))
            .with_resource(resource)
            .build())
    }

    pub(super) fn metric_reader(
        &self,
        interval: Duration,
    ) -> Result<PeriodicReader<MetricExporter>, Error> {
        let endpoint = self.signal_endpoint("/v1/metrics")?;
        let exporter = match self.protocol {
            OtlpProtocol::Grpc => self
                .tonic(MetricExporter::builder().with_tonic(), endpoint)?
                .build(),
            OtlpProtocol::HttpProtobuf => self
                .http(MetricExporter::builder().with_http(), endpoint)?
                .build(),
        }
        .map_err(|e| exporter_failed("metric", e))?;
        Ok(PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build())
    }
}

/// The HTTP client of OTLP/HTTP: hyper, run on the Tokio runtime the telemetry was built
/// in. The SDK's batch processors export from threads of their own, outside any runtime,
/// where hyper's timers and sockets would not work.
#[derive(Debug)]
struct OnTokio {
    client: std::sync::Arc<opentelemetry_http::hyper::HyperClient>,
    runtime: tokio::runtime::Handle,
}

impl OnTokio {
    fn new(timeout: Option<Duration>) -> Result<Self, Error> {
        let runtime = tokio_runtime()?;
        let timeout = timeout.unwrap_or(Duration::from_secs(10));
        Ok(Self {
            client: std::sync::Arc::new(
                opentelemetry_http::hyper::HyperClient::with_default_connector(timeout, None),
            ),
            runtime,
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnTokio {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// The Tokio runtime the exporters run on: the one the telemetry is built in.
pub(super) fn tokio_runtime() -> Result<tokio::runtime::Handle, Error> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        Error::Telemetry("OTLP export needs a Tokio runtime: build the telemetry inside one".into())
    })
}

/// An endpoint must be a plain `http://` URL with a host: export goes to a collector
/// nearby (TLS to the collector is not built yet).
pub(super) fn check_endpoint(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("'{url}' is not a URL ({e})"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(()),
        (Some("https"), _) => Err(format!(
            "'{url}': OTLP over TLS is not supported; export to a collector over http://"
        )),
        _ => Err(format!("'{url}' is not an http://host:port URL")),
    }
}

fn bad_header(name: &str) -> Error {
    Error::Config(format!("OTLP header '{name}' is not a valid header"))
}

fn exporter_failed(signal: &str, e: impl std::fmt::Display) -> Error {
    Error::Telemetry(format!("cannot set up the OTLP {signal} exporter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn nothing_is_exported_unless_an_endpoint_is_set() {
        assert!(OtlpExport::from_vars(vars(&[])).unwrap().is_none());
        let only_protocol = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        assert!(
            OtlpExport::from_vars(vars(&only_protocol))
                .unwrap()
                .is_none()
        );
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert!(OtlpExport::from_vars(vars(&disabled)).unwrap().is_none());
    }

    #[test]
    fn the_environment_chooses_protocol_and_signals() {
        let env = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4317",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ];
        let export = OtlpExport::from_vars(vars(&env)).unwrap().unwrap();
        assert_eq!(export.protocol, OtlpProtocol::Grpc);
        // Only traces have an endpoint.
        assert!(export.traces && !export.metrics && !export.logs);
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ];
        let export = OtlpExport::from_vars(vars(&env)).unwrap().unwrap();
        assert!(export.traces && export.metrics && !export.logs);
        let default = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
        let export = OtlpExport::from_vars(vars(&default)).unwrap().unwrap();
        assert_eq!(export.protocol, OtlpProtocol::HttpProtobuf);
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: [&[(&str, &str)]; 4] = [
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")],
            &[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://collector:4318")],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_TRACES_EXPORTER", "zipkin"),
            ],
        ];
        let names = [
            "http/json",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "TLS",
            "OTEL_TRACES_EXPORTER",
        ];
        for (env, name) in cases.iter().zip(names) {
            let error = OtlpExport::from_vars(vars(env)).unwrap_err().to_string();
            assert!(error.contains(name), "{error} should name {name}");
        }
    }
}
