//! Outbound fetch: a guest's `wasi:http/outgoing-handler` requests, checked against its
//! deployment's policy and limits, then sent by a [`FetchBackend`] (default [`HyperFetch`]).
//!
//! Every refusal a guest sees is `error-code.internal-error` with a message that starts with
//! the rule or limit it broke (`HTTP-request-denied`, `destination-IP-prohibited`,
//! `subrequests`, `outbound-body`, `connect-timeout`, `first-byte-timeout`,
//! `between-bytes-timeout`) and names the origin, address or value involved. Failures of the
//! network itself keep their standard codes (connection refused, DNS error, TLS errors).

pub(crate) mod body;
mod client;
mod policy;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderName};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

pub use client::HyperFetch;
pub use policy::{AllowedOrigin, InvalidOrigin};

use self::body::Guarded;
use self::policy::{OriginMatch, non_public};
use crate::body::declared_response_length;
use crate::deployment::SharedDeployment;
use crate::limits::Limit;
use crate::telemetry::{HostCallSpan, RequestTelemetry, method_name};
use crate::trace::TraceContext;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

/// A boxed error, as bodies carry them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a subrequest or of its response, as a [`FetchBackend`] sees it.
pub type FetchBody = UnsyncBoxBody<Bytes, BoxError>;

/// Sends subrequests that the policy has let through. Embedders may swap in their own (a
/// proxy, a service mesh, a test double); the policy, limits, timeouts and header rules are
/// applied around it either way.
pub trait FetchBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `request` (absolute URI, `Host` set) and resolves to the response head; the
    /// response body streams afterwards.
    fn send(
        &self,
        request: http::Request<FetchBody>,
        options: SendOptions,
    ) -> BoxFuture<'static, Result<http::Response<FetchBody>, FetchError>>;
}

/// How a [`FetchBackend`] must send one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendOptions {
    /// Whether the target may resolve to a loopback, private, link-local or metadata address
    /// (only for origins the deployment allows exactly). When false the backend must refuse
    /// such addresses, checking what the name resolves to, with [`FetchError::Prohibited`].
    pub allow_private: bool,
    /// Time allowed for DNS, TCP and TLS together.
    pub connect_timeout: Duration,
}

/// Why a subrequest failed in the backend.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The target resolved to an address the deployment may not reach.
    #[error(
        "destination-IP-prohibited: {}; only an origin allowed exactly (no wildcard) may reach it",
        prohibited(host, range)
    )]
    Prohibited {
        /// The host asked for.
        host: String,
        /// The address it resolved to.
        addr: IpAddr,
        /// What kind of address that is.
        range: &'static str,
    },
    /// The name did not resolve.
    #[error("DNS lookup of {host} failed: {message}")]
    Dns {
        /// The host asked for.
        host: String,
        /// What the resolver said.
        message: String,
    },
    /// No connection within the connect timeout.
    #[error("connect-timeout: no connection to {authority} within {} ms", timeout.as_millis())]
    ConnectTimeout {
        /// `host:port`.
        authority: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection failed (refused, unreachable, reset).
    #[error("connecting to {authority} failed: {message}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// Why.
        message: String,
    },
    /// TLS set-up or certificate verification failed.
    #[error("{0}")]
    Tls(String),
    /// The upstream spoke HTTP wrongly or hung up.
    #[error("HTTP exchange failed: {0}")]
    Protocol(String),
}

impl FetchError {
    /// What the guest sees: standard codes for network failures, a named internal error for
    /// policy decisions and timeouts.
    fn into_guest(self) -> wasmtime_wasi_http::Error {
        use wasmtime_wasi_http::Error as E;
        match self {
            FetchError::Connect { message, .. } if message.contains("refused") => {
                E::ConnectionRefused
            }
            FetchError::Dns { message, .. } => E::DnsError {
                rcode: Some(message),
                info_code: None,
            },
            FetchError::Tls(message) if message.contains("certificate") => {
                E::InternalError(Some(format!("TLS certificate error: {message}")))
            }
            other => E::InternalError(Some(other.to_string())),
        }
    }
}

/// `10.0.0.1 is a private (RFC 1918) address`, or for a name `db.test resolves to a private
/// (RFC 1918) address` — the address a name resolves to is not told to the guest (it would
/// map internal DNS); the host logs it at debug level.
fn prohibited(host: &str, range: &str) -> String {
    if host.parse::<IpAddr>().is_ok() {
        format!("{host} is a {range} address")
    } else {
        format!("{host} resolves to a {range} address")
    }
}

fn refuse(message: String) -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(Some(message))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction, with any
/// header the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // `TE: trailers` is end-to-end in practice (gRPC needs it); any other TE is not.
    if headers
        .get_all(header::TE)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
    for name in [
        header::CONNECTION,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The outbound policy of one request: its deployment's allow-list and limits, the backend,
/// and the count of subrequests made so far.
pub(crate) struct OutboundHooks {
    deployment: SharedDeployment,
    backend: Arc<dyn FetchBackend>,
    sent: u32,
    /// The request's slots for subrequests in flight ([`Limits::concurrent_subrequests`]),
    /// made at its first subrequest.
    ///
    /// [`Limits::concurrent_subrequests`]: crate::Limits::concurrent_subrequests
    in_flight: Option<Arc<Semaphore>>,
    trace: TraceContext,
    telemetry: RequestTelemetry,
}

impl OutboundHooks {
    pub(crate) fn new(
        deployment: SharedDeployment,
        backend: Arc<dyn FetchBackend>,
        trace: TraceContext,
        telemetry: RequestTelemetry,
    ) -> Self {
        Self {
            deployment,
            backend,
            sent: 0,
            in_flight: None,
            trace,
            telemetry,
        }
    }

    /// Checks a request against the policy, then prepares it for the backend.
    fn admit(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        span: &HostCallSpan,
    ) -> Result<(http::Request<FetchBody>, SendOptions, String), wasmtime_wasi_http::Error> {
        let deployment = &self.deployment;
        let limits = &deployment.limits;
        self.sent += 1;
        if self.sent > limits.subrequests {
            return Err(refuse(format!(
                "{}: this request may make at most {} subrequests (deployment '{}')",
                Limit::Subrequests,
                limits.subrequests,
                deployment.name
            )));
        }
        let uri = request.uri();
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(refuse(
                "HTTP-request-denied: a subrequest URI may not carry user information (user@host)"
                    .to_owned(),
            ));
        }
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let origin = format!("{}://{}", if https { "https" } else { "http" }, {
            match uri.authority() {
                Some(a) if a.port().is_some() => a.as_str().to_ascii_lowercase(),
                _ => format!("{}:{port}", uri.host().unwrap_or_default()),
            }
        });
        let matched = policy::check(&deployment.allow, https, &host, port).ok_or_else(|| {
            refuse(format!(
                "HTTP-request-denied: {origin} is not in the allow-list of deployment '{}'",
                deployment.name
            ))
        })?;
        if matched == OriginMatch::Wildcard
            && let Ok(ip) = host.parse::<IpAddr>()
            && let Some(range) = non_public(ip)
        {
            return Err(FetchError::Prohibited {
                host,
                addr: ip,
                range,
            }
            .into_guest());
        }
        strip_hop_by_hop(request.headers_mut());
        // W3C Trace Context §3: the subrequest continues the request's trace, with this
        // subrequest's span (when traces are recorded) as its parent. A traceparent the
        // guest set itself is left alone.
        if !request.headers().contains_key("traceparent") {
            self.trace.inject(request.headers_mut(), span.context());
        }
        let guest_connect = options.and_then(|o| o.connect_timeout);
        let send = SendOptions {
            allow_private: matched == OriginMatch::Exact,
            connect_timeout: shorter(limits.connect_timeout, guest_connect),
        };
        let outbound = limits.outbound_body;
        let to = Some(format!("to {origin}"));
        let request = request.map(|body| {
            Guarded::new(
                body,
                Limit::OutboundBody,
                outbound,
                "the request body sent",
                to,
                None,
            )
            .boxed_unsync()
        });
        Ok((request, send, origin))
    }
}

fn shorter(limit: Duration, asked: Option<Duration>) -> Duration {
    asked.map_or(limit, |asked| asked.min(limit))
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let head = request.method() == http::Method::HEAD;
        let mut span = self.telemetry.span("fetch", SpanKind::Client, || {
            let uri = request.uri();
            let host = uri.host().unwrap_or_default().to_owned();
            // Without user information (semantic conventions: `url.full` is redacted).
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            let full = format!(
                "{}://{host}{port}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.path()
            );
            vec![
                KeyValue::new("http.request.method", method_name(request.method())),
                KeyValue::new("server.address", host),
                KeyValue::new("url.full", full),
            ]
        });
        let (request, send, origin) = match self.admit(request, options, &span) {
            Ok(admitted) => admitted,
            Err(e) => {
                span.fail(|| format!("{e:?}"));
                return Box::new(async move { Err(e) });
            }
        };
        let telemetry = self.telemetry.clone();
        let limits = &self.deployment.limits;
        let first_byte = shorter(
            limits.first_byte_timeout,
            options.and_then(|o| o.first_byte_timeout),
        );
        let between_bytes = shorter(
            limits.between_bytes_timeout,
            options.and_then(|o| o.between_bytes_timeout),
        );
        let outbound = limits.outbound_body;
        let slots = (limits.concurrent_subrequests as usize).max(1);
        let in_flight = self
            .in_flight
            .get_or_insert_with(|| Arc::new(Semaphore::new(slots)))
            .clone();
        let backend = self.backend.clone();
        Box::new(async move {
            // Sent only once one of the request's slots is free, held until the response
            // head is in (or the subrequest failed).
            let Ok(slot) = in_flight.acquire_owned().await else {
                return Err(refuse("the request has ended".to_owned()));
            };
            let response = backend.send(request, send);
            let sent = std::time::Instant::now();
            // Counted from sending, connection set-up included (which also has its own
            // timeout inside the backend).
            let response = tokio::time::timeout(first_byte, response)
                .await
                .map_err(|_| {
                    refuse(format!(
                        "{}: no response from {origin} within {} ms",
                        Limit::FirstByteTimeout,
                        first_byte.as_millis()
                    ))
                })
                .and_then(|sent| sent.map_err(FetchError::into_guest));
            let response = match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    telemetry.fetched(sent.elapsed(), Some(status));
                    span.set(|| KeyValue::new("http.response.status_code", i64::from(status)));
                    response
                }
                Err(e) => {
                    telemetry.fetched(sent.elapsed(), None);
                    span.fail(|| format!("{e:?}"));
                    return Err(e);
                }
            };
            drop((span, slot));
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let declared = declared_response_length(&parts.headers, parts.status, head);
            let what = "the response body";
            let from = format!("from {origin}");
            if declared.is_some_and(|n| n > outbound) {
                let what = format!("{what} {from}");
                return Err(refuse(body::too_large(
                    Limit::OutboundBody,
                    &what,
                    outbound,
                )));
            }
            let idle = Some(between_bytes);
            let body = Guarded::new(body, Limit::OutboundBody, outbound, what, Some(from), idle)
                .map_err(|e| refuse(e.to_string()))
                .boxed_unsync();
            let io: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((http::Response::from_parts(parts, body), io))
        })
    }
}
