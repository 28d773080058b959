//! A real OTLP receiver on loopback, built on the `opentelemetry-proto` types: OTLP/gRPC
//! (tonic) and OTLP/HTTP with protobuf bodies (hyper), keeping what it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What the receiver has been sent, over either transport.
#[derive(Default)]
pub struct Received {
    pub spans: Vec<Span>,
    pub logs: Vec<LogRecord>,
    /// Every metric of every export, in order (cumulative: the last one is the latest).
    pub metrics: Vec<Metric>,
    /// The paths HTTP exports came to.
    pub http_paths: Vec<String>,
    /// The `service.name` of every resource that exported.
    pub services: Vec<String>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub received: Arc<Mutex<Received>>,
}

pub struct Running {
    pub receiver: Receiver,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    fn take_traces(&self, request: ExportTraceServiceRequest) {
        let mut received = self.received.lock().unwrap();
        for resource in request.resource_spans {
            if let Some(name) = resource
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
            {
                received.services.push(name);
            }
            for scope in resource.scope_spans {
                received.spans.extend(scope.spans);
            }
        }
    }

    fn take_logs(&self, request: ExportLogsServiceRequest) {
        let mut received = self.received.lock().unwrap();
        for resource in request.resource_logs {
            for scope in resource.scope_logs {
                received.logs.extend(scope.log_records);
            }
        }
    }

    fn take_metrics(&self, request: ExportMetricsServiceRequest) {
        let mut received = self.received.lock().unwrap();
        for resource in request.resource_metrics {
            for scope in resource.scope_metrics {
                received.metrics.extend(scope.metrics);
            }
        }
    }

    /// OTLP/gRPC on a loopback port.
    pub async fn grpc() -> Running {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .add_service(LogsServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver.clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _ = router.serve_with_incoming(incoming).await;
        });
        Running {
            receiver,
            addr,
            task,
        }
    }

    /// OTLP/HTTP (protobuf bodies at `/v1/traces`, `/v1/logs`, `/v1/metrics`).
    pub async fn http() -> Running {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = receiver.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let receiver = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, Infallible>(receiver.http_export(request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Running {
            receiver,
            addr,
            task,
        }
    }

    async fn http_export(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        self.received.lock().unwrap().http_paths.push(path.clone());
        let status = if content_type != "application/x-protobuf" {
            400
        } else {
            let decoded = match path.as_str() {
                "/v1/traces" => {
                    ExportTraceServiceRequest::decode(body).map(|r| self.take_traces(r))
                }
                "/v1/logs" => ExportLogsServiceRequest::decode(body).map(|r| self.take_logs(r)),
                "/v1/metrics" => {
                    ExportMetricsServiceRequest::decode(body).map(|r| self.take_metrics(r))
                }
                _ => Ok(()),
            };
            if decoded.is_ok() { 200 } else { 400 }
        };
        http::Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take_traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.take_logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.take_metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Running {
    /// Waits (up to 10 s) until `ready` holds of what was received.
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&Received) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if ready(&self.receiver.received.lock().unwrap()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the OTLP receiver never got {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of attribute `key`, as text (ints and bools formatted).
pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    text(value)
}

pub fn text(value: &AnyValue) -> Option<String> {
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
