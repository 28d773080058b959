//! The library's errors. Each says whose fault it was (client, guest, or host), which decides
//! the HTTP status a listener answers with.

use std::fmt;

use http::StatusCode;

use crate::limits::{Limit, Limits};

/// An error of the Virga library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes given as a component are not a usable `wasi:http/proxy` component.
    #[error("invalid component: {reason}")]
    InvalidComponent {
        /// What is wrong with it, as wasmtime or the linker reported it.
        reason: String,
    },
    /// The request could not be handed to a guest (for example it names no host).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No deployment serves this host and path.
    #[error("no deployment serves {host}{path}")]
    NoRoute {
        /// The request's host (authority), or empty when it had none.
        host: String,
        /// The request's path.
        path: String,
    },
    /// The guest failed to produce a response.
    #[error("deployment '{deployment}' failed: {failure}")]
    Guest {
        /// The deployment whose handler failed.
        deployment: String,
        /// How it failed.
        failure: GuestFailure,
    },
    /// A route of a new deployment already belongs to another deployment.
    #[error("route '{route}' already belongs to deployment '{owner}'")]
    RouteConflict {
        /// The contested route.
        route: String,
        /// The deployment that has it.
        owner: String,
    },
    /// A route pattern is malformed.
    #[error(transparent)]
    InvalidRoute(#[from] crate::route::RouteError),
    /// Every instance slot of the engine is in use.
    #[error("the host is at capacity: {0}")]
    Capacity(String),
    /// The wasmtime engine could not be set up.
    #[error("engine error: {0}")]
    Engine(String),
    /// Reading or writing a file or socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is malformed or has an unknown key.
    #[error("config: {0}")]
    Config(String),
    /// The deployment store failed or holds something unreadable.
    #[error("store: {0}")]
    Store(String),
    /// A shared deployment store cannot be reached now: changes are refused (the host keeps
    /// serving the state it has).
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// Another writer committed to a shared store since this host last read it (its
    /// compare-and-set failed); [`Runtime`](crate::Runtime) catches up and retries, so this
    /// surfaces only when writers keep racing.
    #[error(
        "store: another host changed the deployments at the same time (revision {base} is no longer current); try again"
    )]
    StoreConflict {
        /// The revision the write was based on.
        base: u64,
    },
    /// No deployment has this name.
    #[error("no deployment named '{0}'")]
    UnknownDeployment(String),
    /// A rollback target does not exist.
    #[error("deployment '{name}' has no version {version} to roll back to (kept: {kept})")]
    UnknownVersion {
        /// The deployment.
        name: String,
        /// The version asked for (0 when none was given and no earlier one exists).
        version: u64,
        /// The versions that are kept, e.g. "1, 2, 3".
        kept: String,
    },
    /// A deployment name is not acceptable.
    #[error("invalid deployment name '{0}': use 1-64 of a-z, 0-9, '-' and '_'")]
    InvalidName(String),
    /// TLS configuration failed (certificate, key, or provider).
    #[error("TLS: {0}")]
    Tls(String),
    /// Telemetry could not be set up or flushed (an OTLP exporter, say).
    #[error("telemetry: {0}")]
    Telemetry(String),
}

impl Error {
    /// The HTTP status a listener answers with when a request fails with this error:
    /// 4xx for the client's fault, 500/503/504 for the guest's, 5xx for the host's.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NoRoute { .. } => StatusCode::NOT_FOUND,
            Error::InvalidComponent { .. } | Error::InvalidRoute(_) => StatusCode::BAD_REQUEST,
            Error::RouteConflict { .. } => StatusCode::CONFLICT,
            Error::UnknownDeployment(_) | Error::UnknownVersion { .. } => StatusCode::NOT_FOUND,
            Error::InvalidName(_) | Error::Config(_) => StatusCode::BAD_REQUEST,
            Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::StoreConflict { .. } => StatusCode::CONFLICT,
            Error::Guest { failure, .. } => failure.status(),
            Error::Capacity(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Engine(_) | Error::Io { .. } | Error::Tls(_) | Error::Telemetry(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The limit that this error reports tripping, if any.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            Error::Guest {
                failure: GuestFailure::LimitExceeded { limit, .. },
                ..
            } => Some(*limit),
            _ => None,
        }
    }

    /// The response a listener sends for this error: its [`status`](Self::status) and a
    /// one-line plain-text body naming the problem. A CPU-time or concurrency limit adds
    /// `Retry-After: 1`.
    pub fn into_response(&self) -> http::Response<crate::Body> {
        let mut response = http::Response::new(crate::body::full(format!("{self}\n")));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self.limit(), Some(Limit::CpuTime | Limit::Concurrency))
            || matches!(self, Error::Capacity(_))
        {
            headers.insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// How a guest failed to answer a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestFailure {
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, ...).
    Trap(String),
    /// The guest went over one of its [`Limits`].
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The value of that limit, for the message.
        allowed: String,
    },
    /// The guest returned without setting a response.
    NoResponse,
    /// The guest answered with a `wasi:http` error code instead of a response.
    ErrorCode(String),
}

impl GuestFailure {
    pub(crate) fn limit(limit: Limit, limits: &Limits) -> Self {
        GuestFailure::LimitExceeded {
            limit,
            allowed: limits.describe(limit),
        }
    }

    /// 503 for CPU time and concurrency (the request may succeed on retry with less load),
    /// 504 for wall-clock time, 413 for the request body, 500 for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            GuestFailure::LimitExceeded {
                limit: Limit::CpuTime,
                ..
            }
            | GuestFailure::LimitExceeded {
                limit: Limit::Concurrency,
                ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            GuestFailure::LimitExceeded {
                limit: Limit::RequestBody,
                ..
            } => StatusCode::PAYLOAD_TOO_LARGE,
            GuestFailure::LimitExceeded {
                limit: Limit::WallTime,
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFailure::Trap(message) => write!(f, "the handler trapped: {message}"),
            GuestFailure::LimitExceeded { limit, allowed } => {
                write!(f, "the handler exceeded its {limit} limit of {allowed}")
            }
            GuestFailure::NoResponse => f.write_str("the handler returned without a response"),
            GuestFailure::ErrorCode(code) => write!(f, "the handler answered with error {code}"),
        }
    }
}
