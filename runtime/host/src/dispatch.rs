//! Request → fresh [`Store`] from the pre-instantiated component → response.

use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::body::{Body, GuestBody, declared_length, declared_response_length};
use crate::deployment::{Deployment, SharedDeployment};
use crate::error::{Error, GuestFailure};
use crate::host::cache::CacheCtx;
use crate::host::crypto::CryptoCtx;
use crate::host::fetch::OutboundHooks;
use crate::host::fetch::body::Guarded;
use crate::limits::Limit;
use crate::route::strip_port;
use crate::runtime::{GuestOutput, Runtime, first_line};
use crate::state::{HostContexts, RequestState};
use crate::telemetry::{GuestLog, GuestStats, RequestRecord};
use crate::trace::TraceContext;

/// Facts about the connection a request came in on, set by the listener as a request
/// extension. Embedders may set it too; without it a request counts as plain `http`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Whether the request arrived over TLS.
    pub tls: bool,
    /// The client's address, if known.
    pub remote_addr: Option<std::net::SocketAddr>,
}

impl ConnectionInfo {
    /// Facts for a connection: over TLS or not, from `remote_addr`.
    pub fn new(tls: bool, remote_addr: Option<std::net::SocketAddr>) -> Self {
        Self { tls, remote_addr }
    }
}

/// The request header that tells a handler which protocol its request came over:
/// `http/1.0`, `http/1.1`, `h2` or `h3` (the ALPN names). Set by the host on every request.
pub const PROTOCOL_HEADER: http::HeaderName = http::HeaderName::from_static("virga-protocol");

fn protocol_name(version: http::Version) -> http::HeaderValue {
    http::HeaderValue::from_static(match version {
        http::Version::HTTP_09 | http::Version::HTTP_10 => "http/1.0",
        http::Version::HTTP_2 => "h2",
        http::Version::HTTP_3 => "h3",
        _ => "http/1.1",
    })
}

pub(crate) async fn handle<B>(
    runtime: &Runtime,
    request: http::Request<B>,
) -> Result<http::Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path();
    let (host, routed) = match request_host(&request) {
        Ok(host) => (
            host,
            runtime
                .inner
                .registry
                .route(host, path)
                .ok_or_else(|| Error::NoRoute {
                    host: host.to_owned(),
                    path: path.to_owned(),
                }),
        ),
        Err(e) => ("", Err(e)),
    };
    let record = RequestRecord::start(
        &runtime.inner.telemetry,
        &request,
        host,
        routed.as_ref().ok().map(|d| &**d),
    );
    let deployment = match routed {
        Ok(deployment) => deployment,
        Err(e) => return Err(record.fail(e)),
    };
    run(runtime, deployment, request, record).await
}

/// The host a request names (without port): its URI's authority, else its Host header.
fn request_host<B>(request: &http::Request<B>) -> Result<&str, Error> {
    let authority = match request.uri().authority() {
        Some(a) => a.as_str(),
        None => match request.headers().get(http::header::HOST) {
            Some(h) => h
                .to_str()
                .map_err(|_| Error::BadRequest("the Host header is not valid ASCII".into()))?,
            None => {
                return Err(Error::BadRequest(
                    "the request names no host (no authority in the URI and no Host header)".into(),
                ));
            }
        },
    };
    Ok(strip_port(authority))
}

async fn run<B>(
    runtime: &Runtime,
    deployment: SharedDeployment,
    request: http::Request<B>,
    record: RequestRecord,
) -> Result<http::Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let inner = &runtime.inner;
    let scheme = match request.extensions().get::<ConnectionInfo>() {
        Some(info) if info.tls => Scheme::Https,
        _ => match request.uri().scheme_str() {
            Some("https") => Scheme::Https,
            _ => Scheme::Http,
        },
    };
    let telemetry = record.context();
    let wasi = match (inner.options.guest_output, deployment.env.is_empty()) {
        (GuestOutput::Discard, true) => WasiCtx::default(),
        (output, _) => {
            let mut builder = WasiCtx::builder();
            match output {
                GuestOutput::Inherit => {
                    builder.inherit_stdout().inherit_stderr();
                }
                GuestOutput::Log => {
                    let log = GuestLog::new(telemetry.clone());
                    builder.stderr(log.stderr()).stdout(log);
                }
                GuestOutput::Discard => {}
            }
            builder.envs(&deployment.env);
            builder.build()
        }
    };
    let limits = &deployment.limits;
    let limit_failure = |limit| Error::Guest {
        deployment: deployment.name.clone(),
        failure: GuestFailure::limit(limit, limits),
    };
    // A declared body over the limit is refused before any guest runs (an undeclared one
    // fails when the guest reads past the limit).
    if declared_length(request.headers()).is_some_and(|len| len > limits.request_body) {
        return Err(record.fail(limit_failure(Limit::RequestBody)));
    }
    let slot = match deployment.slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => {
            let wait = deployment.slots.clone().acquire_owned();
            match tokio::time::timeout(limits.queue_time, wait).await {
                Ok(Ok(slot)) => slot,
                _ => return Err(record.fail(limit_failure(Limit::Concurrency))),
            }
        }
    };
    let hooks = OutboundHooks::new(
        deployment.clone(),
        inner.fetch.clone(),
        TraceContext::from_headers(request.headers()),
        telemetry.clone(),
    );
    let mut store = Store::new(
        &inner.engine,
        RequestState::new(
            wasi,
            limits,
            inner.options.engine.epoch_tick,
            HostContexts {
                hooks,
                crypto: CryptoCtx {
                    deployment: deployment.clone(),
                    keys: inner.keys.clone(),
                },
                cache: CacheCtx {
                    backend: inner.cache.clone(),
                    collapser: inner.collapser.clone(),
                    deployment: deployment.clone(),
                },
                telemetry,
            },
            &inner.lanes,
        ),
    );
    store.limiter(|state| state.limiter());
    store.epoch_deadline_callback(RequestState::on_epoch_tick);
    store.call_hook(RequestState::on_call_hook);
    store.set_epoch_deadline(1);

    let head = request.method() == http::Method::HEAD;
    let mut request = request;
    // The guest can tell which protocol the request came over; a client's own value of
    // this header is replaced, never passed on.
    let protocol = protocol_name(request.version());
    request.headers_mut().insert(PROTOCOL_HEADER, protocol);
    let request_body = limits.request_body;
    let request = request.map(|body| {
        Guarded::new(
            body,
            Limit::RequestBody,
            request_body,
            "the request body",
            None,
            None,
        )
        .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
    });
    let (sender, receiver) = oneshot::channel();
    let incoming = match store
        .data_mut()
        .http()
        .new_incoming_request(scheme, request)
    {
        Ok(incoming) => incoming,
        Err(e) => return Err(record.fail(Error::BadRequest(first_line(&e)))),
    };
    let outparam = match store.data_mut().http().new_response_outparam(sender) {
        Ok(outparam) => outparam,
        Err(e) => return Err(record.fail(Error::Engine(first_line(&e)))),
    };

    let pre = deployment.component.pre.clone();
    let wall_time = limits.wall_time;
    let failure_note = Arc::new(OnceLock::new());
    let task_failure_note = failure_note.clone();
    let task_deployment = deployment.clone();
    let lane = store.data().lane_waits();
    let guest = async move {
        let limits = &task_deployment.limits;
        let mut instantiation = None;
        let call = async {
            let started = Instant::now();
            let handler = pre.instantiate_async(&mut store).await?;
            instantiation = Some(started.elapsed());
            handler
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await
        };
        // The wall-clock timer is armed only once the guest first has to wait: a guest that
        // runs to completion at once never touches the timer wheel.
        let deadline = tokio::time::Instant::now() + wall_time;
        // The time spent polling the guest is the time its code (and the host calls it
        // made) ran: waits for I/O are not in it.
        let mut cpu = Duration::ZERO;
        let outcome = {
            let mut call = std::pin::pin!(call);
            let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
            std::future::poll_fn(|cx| {
                let polled = Instant::now();
                let ready = call.as_mut().poll(cx);
                cpu += polled.elapsed();
                if let Poll::Ready(result) = ready {
                    return Poll::Ready(Some(result));
                }
                lane.waiting();
                let timer =
                    timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                timer.as_mut().poll(cx).map(|()| None)
            })
            .await
        };
        let outcome = match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(classify(&e, store.data(), &task_deployment)),
            None => Err(Error::Guest {
                deployment: task_deployment.name.clone(),
                failure: GuestFailure::limit(Limit::WallTime, limits),
            }),
        };
        if let Err(e) = &outcome {
            // Before the store (and with it the body's sender) is dropped: a body that ends
            // after this is reported as broken, not complete.
            let _ = task_failure_note.set(e.to_string());
        }
        let stats = GuestStats {
            instantiation,
            // The first poll instantiated too: that is reported on its own.
            cpu: cpu.saturating_sub(instantiation.unwrap_or_default()),
            peak_memory: store.data().peak_memory(),
        };
        drop(store);
        drop(slot);
        (outcome, stats)
    };

    // Run the guest inline, on this task, until it has set its response: a handler that
    // answers and finishes without waiting (the common case) never leaves this thread and
    // costs no task spawn. Whatever it still has to do after setting the response (stream
    // the body, post-response work) runs on a task of its own, bounded by its wall-clock
    // limit whether or not the client reads.
    let mut guest = Box::pin(guest);
    let mut receiver = receiver;
    let mut output = None;
    let answer = std::future::poll_fn(|cx| {
        if output.is_none()
            && let Poll::Ready(done) = guest.as_mut().poll(cx)
        {
            output = Some(done);
        }
        std::pin::Pin::new(&mut receiver).poll(cx)
    })
    .await;

    let failure = |failure| Error::Guest {
        deployment: deployment.name.clone(),
        failure,
    };
    match answer {
        Ok(Ok(response)) => {
            let max = deployment.limits.response_body;
            let status = response.status().as_u16();
            let declared = declared_response_length(response.headers(), response.status(), head);
            if declared.is_some_and(|len| len > max) {
                // Not spawned: dropping the guest stops it.
                return Err(record.fail(limit_failure(Limit::ResponseBody)));
            }
            let cut = Arc::new(OnceLock::new());
            let task = match output {
                Some((outcome, stats)) => {
                    record.finish(status, outcome.as_ref().err(), Some(&stats));
                    None
                }
                None => {
                    let mut record = record;
                    record.answered(status, cut.clone());
                    Some(tokio::spawn(async move {
                        let (outcome, stats) = guest.await;
                        record.finish(status, outcome.as_ref().err(), Some(&stats));
                    }))
                }
            };
            Ok(response.map(|body| {
                GuestBody::new(body, task, failure_note, cut, max, declared).boxed_unsync()
            }))
        }
        Ok(Err(code)) => {
            let error = failure(GuestFailure::ErrorCode(error_code_name(&code)));
            let stats = output.as_ref().map(|(_, stats)| *stats);
            record.finish(error.status().as_u16(), Some(&error), stats.as_ref());
            if output.is_none() {
                // Whatever the guest still does runs on, bounded by its wall-clock limit.
                tokio::spawn(guest);
            }
            Err(error)
        }
        Err(_) => {
            let done = match output {
                Some(done) => Ok(done),
                None => tokio::spawn(guest).await,
            };
            match done {
                Ok((outcome, stats)) => {
                    let error = outcome.err().unwrap_or(failure(GuestFailure::NoResponse));
                    record.finish(error.status().as_u16(), Some(&error), Some(&stats));
                    Err(error)
                }
                Err(_) => Err(record.fail(Error::Engine("the guest task was cancelled".into()))),
            }
        }
    }
}

/// Turns the error a guest call returned into what happened, in the user's terms.
fn classify(e: &wasmtime::Error, state: &RequestState, deployment: &Deployment) -> Error {
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return Error::Capacity("every instance slot is in use".into());
    }
    let failure = if let Some(limit) = state.tripped {
        GuestFailure::limit(limit, &deployment.limits)
    } else if state.memory_exceeded() {
        GuestFailure::limit(Limit::Memory, &deployment.limits)
    } else {
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => GuestFailure::Trap(trap.to_string()),
            // Past wasmtime's backtrace context, the cause names the problem
            // (e.g. "resource has children").
            None => GuestFailure::Trap(e.root_cause().to_string()),
        }
    };
    Error::Guest {
        deployment: deployment.name.clone(),
        failure,
    }
}

fn error_code_name(code: &ErrorCode) -> String {
    format!("{code:?}")
}
