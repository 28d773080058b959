//! The admin API: HTTP/JSON on the admin address, bearer-token authenticated.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/v1/health` | `{"status":"ok","store":{"revision":N}}`, or `"degraded"` with the store's reason (no token needed, for probes; 200 either way: a degraded host still serves) |
//! | GET | `/v1/deployments` | list deployments with their kept versions |
//! | PUT | `/v1/deployments/{name}?route=R&route=R2&var=K=V&allow=ORIGIN&LIMIT=N` | body: the component; deploys it as a new version (LIMIT: any key of `Limits::set`, e.g. `cpu_ms`, `memory_mib`, `subrequests`) |
//! | POST | `/v1/deployments/{name}/rollback[?to=N]` | makes version N (default: the previous one) live |
//! | DELETE | `/v1/deployments/{name}` | removes the deployment |
//! | GET | `/metrics` | the runtime's metrics, Prometheus text format 0.0.4 (scrape with the token as bearer credentials) |
//!
//! Every other call needs `Authorization: Bearer TOKEN`; without it (or with a wrong one) the
//! answer is 401 and nothing changes. Errors are `{"error": "..."}` with the status of
//! [`Error::status`](crate::Error::status).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::body::{Body, full};
use crate::deployment::{DeploymentConfig, DeploymentInfo};
use crate::error::Error;
use crate::limits::Limits;
use crate::runtime::Runtime;

/// How the admin API is guarded.
#[derive(Clone)]
pub struct AdminOptions {
    token: Arc<str>,
    max_upload: usize,
    default_limits: Limits,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("token", &"<hidden>")
            .field("max_upload", &self.max_upload)
            .field("default_limits", &self.default_limits)
            .finish()
    }
}

impl AdminOptions {
    /// Admin calls must carry `Authorization: Bearer {token}`. Uploads up to 64 MiB.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into().into(),
            max_upload: 64 << 20,
            default_limits: Limits::default(),
        }
    }

    /// Limits of uploads that do not set their own. Default is [`Limits::default`].
    pub fn default_limits(mut self, limits: Limits) -> Self {
        self.default_limits = limits;
        self
    }

    /// The largest component upload accepted; larger ones get 413. Default is 64 MiB.
    pub fn max_upload(mut self, bytes: usize) -> Self {
        self.max_upload = bytes;
        self
    }
}

/// Reads the admin token from `path`, or creates one there (32 random bytes, hex, file mode
/// 0600) if there is none.
pub fn load_or_create_token(path: &std::path::Path) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Engine("no randomness".into()))?;
    let token = crate::store::hex(&bytes);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    super::write_atomically(path, token.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("restricting {}", path.display()), e))?;
    }
    Ok(token)
}

fn reply(status: StatusCode, value: Value) -> Response<Body> {
    let mut response = Response::new(full(format!("{value}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    reply(status, json!({ "error": message.to_string() }))
}

fn from_error(e: &Error) -> Response<Body> {
    error(e.status(), e)
}

fn info_json(info: &DeploymentInfo) -> Value {
    json!({
        "name": info.name,
        "version": info.version,
        "versions": info.versions,
        "component": info.component,
        "routes": info.routes,
        "limits": info
            .limits
            .entries()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), Value::from(value)))
            .collect::<serde_json::Map<String, Value>>(),
        "allow": info.allow,
    })
}

fn authorized(options: &AdminOptions, request: &http::Request<impl Sized>) -> bool {
    let Some(value) = request.headers().get(http::header::AUTHORIZATION) else {
        return false;
    };
    let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    aws_lc_rs::constant_time::verify_slices_are_equal(given, options.token.as_bytes()).is_ok()
}

/// Answers one admin API request (the table above): what the admin listener of
/// [`Server`](crate::server::Server) serves, for embedders that mount the API in their own
/// server. Never fails: every problem is an error response naming it.
pub async fn handle<B>(
    runtime: Runtime,
    options: AdminOptions,
    request: http::Request<B>,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if method == Method::GET && path == "/v1/health" {
        return health(&runtime);
    }
    if !authorized(&options, &request) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer TOKEN)",
        );
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            let mut response = Response::new(full(runtime.telemetry().prometheus()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        (_, ["metrics"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        (&Method::GET, ["v1", "deployments"]) => {
            let list: Vec<Value> = runtime.deployments().iter().map(info_json).collect();
            reply(StatusCode::OK, json!({ "deployments": list }))
        }
        (&Method::PUT, ["v1", "deployments", name]) => {
            let name = (*name).to_owned();
            deploy(runtime, options, name, request).await
        }
        (&Method::POST, ["v1", "deployments", name, "rollback"]) => {
            let mut to = None;
            for (key, value) in query(&request) {
                match (key.as_str(), value.parse::<u64>()) {
                    ("to", Ok(v)) => to = Some(v),
                    ("to", Err(_)) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("'to' must be a version number, not '{value}'"),
                        );
                    }
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("unknown parameter '{key}'"),
                        );
                    }
                }
            }
            let name = (*name).to_owned();
            // A shared store makes this a network round trip: off the async workers.
            match blocking(move || runtime.rollback(&name, to)).await {
                Ok(info) => reply(StatusCode::OK, info_json(&info)),
                Err(e) => from_error(&e),
            }
        }
        (&Method::DELETE, ["v1", "deployments", name]) => {
            let owned = (*name).to_owned();
            match blocking(move || runtime.remove(&owned)).await {
                Ok(()) => reply(StatusCode::OK, json!({ "deleted": name })),
                Err(e) => from_error(&e),
            }
        }
        (
            _,
            ["v1", "deployments"] | ["v1", "deployments", _] | ["v1", "deployments", _, "rollback"],
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no admin endpoint {path}")),
    }
}

/// Runs a change on a blocking thread (a shared store commits over the network).
async fn blocking<T: Send + 'static>(
    change: impl FnOnce() -> Result<T, crate::Error> + Send + 'static,
) -> Result<T, crate::Error> {
    tokio::task::spawn_blocking(change)
        .await
        .unwrap_or_else(|e| Err(crate::Error::Engine(format!("the change failed: {e}"))))
}

/// `GET /v1/health`: 200 while the host serves, `"degraded"` (with the reason) when its
/// deployment store cannot be reached or followed: it still serves its last state.
fn health(runtime: &Runtime) -> Response<Body> {
    let store = runtime.store_health();
    let body = match &store.degraded {
        None => json!({ "status": "ok", "store": { "revision": store.revision } }),
        Some(reason) => json!({
            "status": "degraded",
            "store": { "revision": store.revision, "degraded": reason },
        }),
    };
    reply(StatusCode::OK, body)
}

/// Reads a body whole if it is at most `limit` bytes; `None` (having stopped reading) when
/// it is larger.
async fn read_up_to<B>(
    mut body: std::pin::Pin<&mut B>,
    limit: usize,
) -> Result<Option<Bytes>, B::Error>
where
    B: http_body::Body<Data = Bytes>,
{
    let mut all = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if all.len().saturating_add(data.len()) > limit {
                return Ok(None);
            }
            all.extend_from_slice(&data);
        }
    }
    Ok(Some(all.freeze()))
}

/// Reads and drops up to `cap` more bytes of a body.
async fn drain_up_to<B>(mut body: std::pin::Pin<&mut B>, cap: usize)
where
    B: http_body::Body<Data = Bytes>,
{
    let mut seen = 0usize;
    while seen <= cap {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

fn query<B>(request: &http::Request<B>) -> Vec<(String, String)> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

async fn deploy<B>(
    runtime: Runtime,
    options: AdminOptions,
    name: String,
    request: http::Request<B>,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut routes = Vec::new();
    let mut vars = Vec::new();
    let mut allow = Vec::new();
    let mut limits = options.default_limits.clone();
    for (key, value) in query(&request) {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("'{key}' must be a whole number, not '{value}'"))
        };
        let parsed: Result<(), String> = match key.as_str() {
            "route" => value
                .parse()
                .map(|r| routes.push(r))
                .map_err(|e: crate::RouteError| e.to_string()),
            "var" => match value.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    vars.push((k.to_owned(), v.to_owned()));
                    Ok(())
                }
                _ => Err(format!("'var' must be NAME=VALUE, not '{value}'")),
            },
            "allow" => value
                .parse()
                .map(|o| allow.push(o))
                .map_err(|e: crate::InvalidOrigin| e.to_string()),
            key if Limits::is_key(key) => number().and_then(|n| limits.set(key, n)),
            _ => Err(format!(
                "unknown parameter '{key}' (takes route, var, allow, and limits such as \
                 cpu_ms, memory_mib, subrequests)"
            )),
        };
        if let Err(message) = parsed {
            return error(StatusCode::BAD_REQUEST, message);
        }
    }
    if routes.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "give at least one route (?route=host/path)",
        );
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the component is larger than the upload limit of {} bytes",
                options.max_upload
            ),
        )
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = std::pin::pin!(request.into_body());
    // An oversized upload is still read (and dropped) up to 4x the limit, so that a client
    // that is still sending gets to read the 413 rather than a broken pipe; a larger one is
    // cut off at once.
    let drain_cap = options.max_upload.saturating_mul(4);
    if declared.is_some_and(|n| n > options.max_upload as u64) {
        if declared.is_some_and(|n| n <= drain_cap as u64) {
            drain_up_to(body.as_mut(), drain_cap).await;
        }
        return too_large();
    }
    let bytes = match read_up_to(body.as_mut(), options.max_upload).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            drain_up_to(body.as_mut(), drain_cap).await;
            return too_large();
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("reading the upload failed: {e}"),
            );
        }
    };
    if bytes.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "the request body must be the component (.wasm)",
        );
    }
    // Compiling is CPU-bound: keep it off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let component = runtime.compile(&bytes)?;
        let mut config = DeploymentConfig::new(name, component).limits(limits);
        config.routes = routes;
        config.vars.extend(vars);
        config.allow = allow;
        runtime.deploy(config)
    })
    .await;
    match result {
        Ok(Ok(info)) => reply(StatusCode::CREATED, info_json(&info)),
        Ok(Err(e)) => from_error(&e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("deploy task failed: {e}"),
        ),
    }
}
