//! Sends encoded span batches to the collector: OTLP/gRPC (`TraceService/Export` over
//! HTTP/2, cleartext) or OTLP/HTTP (`POST .../v1/traces`, `application/x-protobuf`), with
//! the endpoint, headers and timeout resolved as the OTLP exporter specification says:
//! what the code (or config file) set, else `OTEL_EXPORTER_OTLP_TRACES_*`, else
//! `OTEL_EXPORTER_OTLP_*`, else the defaults.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use super::otlp::{OtlpExport, OtlpProtocol, check_endpoint, tokio_runtime};
use crate::error::Error;

/// The gRPC method of OTLP trace export.
const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The most of a collector's answer read (a partial-success message is small).
const MAX_ANSWER: usize = 64 * 1024;

/// Where and how span batches go.
#[derive(Debug)]
pub(super) struct TraceClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    uri: Uri,
    grpc: bool,
    headers: HeaderMap,
    timeout: Duration,
}

impl TraceClient {
    /// The client `export` asks for, with what `var` (the environment) adds; its
    /// connections run on the current Tokio runtime.
    pub(super) fn new(
        export: &OtlpExport,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let runtime = tokio_runtime()?;
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let grpc = export.protocol == OtlpProtocol::Grpc;
        // A base URL from the common variable or the default gets the signal's path (HTTP).
        let with_path = |base: String| {
            if grpc {
                base
            } else {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
        };
        let (endpoint, source) = if let Some(url) = export.signal_endpoint("/v1/traces")? {
            (url, "OTLP endpoint")
        } else if let Some(url) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            (url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        } else if let Some(base) = set("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (with_path(base), "OTEL_EXPORTER_OTLP_ENDPOINT")
        } else {
            let default = if grpc {
                "http://localhost:4317"
            } else {
                "http://localhost:4318"
            };
            (with_path(default.to_owned()), "default endpoint")
        };
        check_endpoint(&endpoint).map_err(|e| Error::Config(format!("{source}: {e}")))?;
        let mut uri: Uri = endpoint
            .trim()
            .parse()
            .map_err(|e| Error::Config(format!("{source}: {e}")))?;
        if grpc {
            // gRPC has no path of its own: the method is the path.
            let mut parts = uri.into_parts();
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static(GRPC_PATH));
            uri = Uri::from_parts(parts).map_err(|e| Error::Config(format!("{source}: {e}")))?;
        }
        let mut headers = HeaderMap::new();
        let env_headers = set("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", v))
            .or_else(|| {
                set("OTEL_EXPORTER_OTLP_HEADERS").map(|v| ("OTEL_EXPORTER_OTLP_HEADERS", v))
            });
        if let Some((name, list)) = env_headers {
            for (key, value) in parse_headers(&list) {
                insert_header(&mut headers, key, &value)
                    .map_err(|e| Error::Config(format!("{name}: {e}")))?;
            }
        }
        // What the code set wins over the environment.
        for (key, value) in &export.headers {
            insert_header(&mut headers, key, value)
                .map_err(|e| Error::Config(format!("OTLP header: {e}")))?;
        }
        let env_timeout = |name: &str| {
            set(name).map(|ms| {
                ms.trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| {
                        Error::Config(format!("{name}='{ms}' is not a number of milliseconds"))
                    })
            })
        };
        let timeout = match export.timeout {
            Some(timeout) => timeout,
            None => env_timeout("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                .or_else(|| env_timeout("OTEL_EXPORTER_OTLP_TIMEOUT"))
                .transpose()?
                .unwrap_or(Duration::from_secs(10)),
        };
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ] {
            if let Some(value) = set(name).filter(|v| !v.trim().eq_ignore_ascii_case("none")) {
                return Err(Error::Config(format!(
                    "{name}='{value}' is not supported: spans are sent uncompressed ('none')"
                )));
            }
        }
        let client = Client::builder(TokioExecutor::new())
            .http2_only(grpc)
            .build_http();
        Ok(Self {
            client,
            runtime,
            uri,
            grpc,
            headers,
            timeout,
        })
    }

    /// Sends one encoded `ExportTraceServiceRequest` and waits for the collector's answer
    /// (at most the timeout). Called from the export thread, never from the runtime.
    pub(super) fn send(&self, message: &[u8]) -> OTelSdkResult {
        let body = if self.grpc {
            // A gRPC message: uncompressed flag, length, bytes.
            let mut framed = BytesMut::with_capacity(message.len() + 5);
            framed.put_u8(0);
            framed.put_u32(
                u32::try_from(message.len())
                    .map_err(|_| OTelSdkError::InternalFailure("span batch over 4 GiB".into()))?,
            );
            framed.put_slice(message);
            framed.freeze()
        } else {
            Bytes::copy_from_slice(message)
        };
        let mut request = Request::post(self.uri.clone());
        if let Some(headers) = request.headers_mut() {
            headers.clone_from(&self.headers);
            if self.grpc {
                headers.insert("content-type", HeaderValue::from_static("application/grpc"));
                headers.insert("te", HeaderValue::from_static("trailers"));
            } else {
                headers.insert(
                    "content-type",
                    HeaderValue::from_static("application/x-protobuf"),
                );
            }
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        let client = self.client.clone();
        let grpc = self.grpc;
        let timeout = self.timeout;
        let exchange = self.runtime.spawn(async move {
            tokio::time::timeout(timeout, answer(client, request, grpc))
                .await
                .unwrap_or(Err(OTelSdkError::Timeout(timeout)))
        });
        futures::executor::block_on(exchange)
            .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())))
    }
}

/// The collector's verdict on one export.
async fn answer(
    client: Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
    grpc: bool,
) -> OTelSdkResult {
    let failed = |message: String| Err(OTelSdkError::InternalFailure(message));
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(e) => return failed(format!("cannot reach the collector: {e}")),
    };
    let status = response.status();
    let head = response.headers().clone();
    let collected = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await;
    if !grpc {
        return if status.is_success() {
            Ok(())
        } else {
            failed(format!("the collector answered {status}"))
        };
    }
    if !status.is_success() {
        return failed(format!("the collector answered HTTP {status}"));
    }
    // grpc-status is in the trailers, or in the head of a trailers-only answer.
    let trailers = collected.ok().and_then(|body| body.trailers().cloned());
    let field = |name: &str| {
        trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| head.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match field("grpc-status").as_deref() {
        Some("0") => Ok(()),
        Some(code) => failed(format!(
            "the collector answered gRPC status {code}: {}",
            field("grpc-message").unwrap_or_default()
        )),
        None => failed("the collector's answer has no grpc-status".into()),
    }
}

/// `key=value` pairs separated by commas, values percent-decoded (the OTLP exporter
/// specification's `OTEL_EXPORTER_OTLP_HEADERS` format).
fn parse_headers(list: &str) -> impl Iterator<Item = (&str, String)> {
    list.split(',').filter_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let key = key.trim();
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8_lossy()
            .into_owned();
        (!key.is_empty()).then_some((key, value))
    })
}

fn insert_header(headers: &mut HeaderMap, key: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(key.trim().to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("'{key}' is not a valid header name"))?;
    let value = HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header '{key}' is not valid"))?;
    headers.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::TraceClient;
    use crate::telemetry::otlp::{OtlpExport, OtlpProtocol};

    fn client(export: OtlpExport, env: &[(&str, &str)]) -> Result<TraceClient, String> {
        TraceClient::new(&export, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_endpoint_comes_from_code_then_the_signal_then_the_common_variable() {
        let http = || OtlpExport::new(OtlpProtocol::HttpProtobuf);
        let grpc = || OtlpExport::new(OtlpProtocol::Grpc);
        let env = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:1/custom",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://common:2/"),
        ];
        let uri = |c: Result<TraceClient, String>| c.unwrap().uri.to_string();
        // Code wins; HTTP adds the signal's path to a base URL, gRPC uses the method.
        assert_eq!(
            uri(client(http().endpoint("http://code:3/"), &env)),
            "http://code:3/v1/traces"
        );
        assert_eq!(
            uri(client(grpc().endpoint("http://code:3"), &env)),
            "http://code:3/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        // The signal's own variable is taken as it is.
        assert_eq!(uri(client(http(), &env)), "http://traces:1/custom");
        assert_eq!(uri(client(http(), &env[1..])), "http://common:2/v1/traces");
        assert_eq!(uri(client(http(), &[])), "http://localhost:4318/v1/traces");
        assert_eq!(
            uri(client(grpc(), &[])),
            "http://localhost:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
    }

    #[tokio::test]
    async fn headers_and_timeout_come_from_the_environment_under_the_code() {
        let export = OtlpExport::new(OtlpProtocol::Grpc).header("X-Key", "from-code");
        let env = [
            ("OTEL_EXPORTER_OTLP_HEADERS", "ignored=1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "x-key=from-env, api-token = a%20b+c%2C ,tenant=7",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ];
        let client = client(export, &env).unwrap();
        assert_eq!(client.headers["x-key"], "from-code");
        assert_eq!(client.headers["api-token"], "a b+c,");
        assert_eq!(client.headers["tenant"], "7");
        assert!(!client.headers.contains_key("ignored"));
        assert_eq!(client.timeout, Duration::from_millis(2500));
    }

    #[tokio::test]
    async fn bad_settings_are_named() {
        let export = || OtlpExport::new(OtlpProtocol::HttpProtobuf);
        for (env, named) in [
            (
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon"),
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            ),
            (
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ),
            (
                ("OTEL_EXPORTER_OTLP_HEADERS", "bad header=1"),
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                ("OTEL_EXPORTER_OTLP_HEADERS", "k=line\nbreak"),
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c:1"), "TLS"),
            (
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
        ] {
            let error = client(export(), &[env]).map(|_| ()).unwrap_err();
            assert!(error.contains(named), "{env:?}: {error}");
        }
        // `none` is no compression: accepted.
        assert!(client(export(), &[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")]).is_ok());
    }

    #[test]
    fn outside_a_runtime_the_client_says_it_needs_one() {
        let error = client(OtlpExport::new(OtlpProtocol::Grpc), &[])
            .map(|_| ())
            .unwrap_err();
        assert!(error.contains("Tokio runtime"), "{error}");
    }
}
