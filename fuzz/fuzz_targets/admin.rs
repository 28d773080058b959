//! The admin API: any sequence of calls (methods, paths, queries, tokens, bodies) gets an
//! answer with a JSON body, a refused call changes nothing, and the host never answers 5xx.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use virga::Runtime;
use virga::server::{AdminOptions, handle_admin};

const TOKEN: &str = "fuzz-token";
/// A real component (wit-bindgen, no SDK), also the seed of the `component` target.
const COMPONENT: &[u8] = include_bytes!("../seeds/component/raw_bindgen.wasm");

#[derive(Arbitrary, Debug)]
enum Target<'a> {
    Health,
    List,
    Deployment(&'a str),
    Rollback(&'a str),
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Token<'a> {
    Right,
    Missing,
    Wrong(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Upload<'a> {
    Empty,
    Bytes(&'a [u8]),
    Component,
    /// The component with one byte changed.
    Corrupted(u32, u8),
}

#[derive(Arbitrary, Debug)]
struct Call<'a> {
    method: u8,
    target: Target<'a>,
    query: &'a str,
    token: Token<'a>,
    upload: Upload<'a>,
    declared_length: Option<u32>,
}

struct Host {
    tokio: tokio::runtime::Runtime,
    runtime: Runtime,
    options: AdminOptions,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host {
        tokio: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio"),
        runtime: Runtime::builder().build().expect("runtime"),
        options: AdminOptions::new(TOKEN).max_upload(1 << 20),
    })
}

fn request(call: &Call<'_>) -> Option<http::Request<Full<Bytes>>> {
    let method = match call.method % 6 {
        0 => http::Method::GET,
        1 => http::Method::PUT,
        2 => http::Method::POST,
        3 => http::Method::DELETE,
        4 => http::Method::PATCH,
        _ => http::Method::HEAD,
    };
    let path = match call.target {
        Target::Health => "/v1/health".to_owned(),
        Target::List => "/v1/deployments".to_owned(),
        Target::Deployment(name) => format!("/v1/deployments/{name}"),
        Target::Rollback(name) => format!("/v1/deployments/{name}/rollback"),
        Target::Raw(path) => path.to_owned(),
    };
    let uri = if call.query.is_empty() {
        path
    } else {
        format!("{path}?{}", call.query)
    };
    let body = match call.upload {
        Upload::Empty => Bytes::new(),
        Upload::Bytes(bytes) => Bytes::copy_from_slice(bytes),
        Upload::Component => Bytes::from_static(COMPONENT),
        Upload::Corrupted(at, value) => {
            let mut bytes = COMPONENT.to_vec();
            let at = at as usize % bytes.len();
            bytes[at] = value;
            Bytes::from(bytes)
        }
    };
    let mut builder = http::Request::builder().method(method).uri(uri);
    builder = match call.token {
        Token::Right => builder.header("authorization", format!("Bearer {TOKEN}")),
        Token::Missing => builder,
        Token::Wrong(token) => builder.header("authorization", token),
    };
    if let Some(length) = call.declared_length {
        builder = builder.header("content-length", length);
    }
    // What hyper would refuse before the admin API sees it is not a case here.
    builder.body(Full::new(body)).ok()
}

fuzz_target!(|calls: Vec<Call<'_>>| {
    let host = host();
    for call in calls.iter().take(4) {
        let Some(request) = request(call) else {
            continue;
        };
        let health = request.method() == http::Method::GET && request.uri().path() == "/v1/health";
        let authorized = matches!(call.token, Token::Right);
        let before = host.runtime.deployments();
        let response = host.tokio.block_on(handle_admin(
            host.runtime.clone(),
            host.options.clone(),
            request,
        ));
        let status = response.status();
        let body = host
            .tokio
            .block_on(response.into_body().collect())
            .expect("admin bodies do not fail")
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("the body is JSON");
        assert!(!status.is_server_error(), "{status}: {json}");
        if !health && !authorized {
            assert_eq!(status, http::StatusCode::UNAUTHORIZED, "{json}");
        }
        if status.is_client_error() {
            let message = json["error"].as_str().expect("an error names the problem");
            assert!(!message.is_empty());
            assert_eq!(
                host.runtime.deployments(),
                before,
                "a refused call changed nothing"
            );
        }
    }
    // Bounded memory over a long run: each deployment holds a compiled component.
    let live = host.runtime.deployments();
    if live.len() > 8 {
        for deployment in live {
            host.runtime
                .remove(&deployment.name)
                .expect("a listed deployment");
        }
    }
});
