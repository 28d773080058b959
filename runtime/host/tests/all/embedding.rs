//! The library without our listeners: `Runtime::handle` from an embedder's own server.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use virga::{DeploymentConfig, Error, Runtime};
use virga_test_artifacts::{COUNTER, HELLO};

fn runtime_with_hello() -> Runtime {
    let runtime = Runtime::builder().build().unwrap();
    let component = runtime.compile(&std::fs::read(HELLO).unwrap()).unwrap();
    runtime
        .deploy(DeploymentConfig::new("hello", component).route("*/*".parse().unwrap()))
        .unwrap();
    runtime
}

#[tokio::test]
async fn handle_answers_without_any_listener() {
    let runtime = runtime_with_hello();
    let request = http::Request::get("http://example.com/embedded")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = runtime.handle(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello from virga\nGET /embedded\n");
}

#[tokio::test]
async fn a_request_without_a_host_is_a_clear_400() {
    let runtime = runtime_with_hello();
    let request = http::Request::get("/no-host")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let err = runtime.handle(request).await.unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)));
    let response = err.into_response();
    assert_eq!(response.status(), 400);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        b"bad request: the request names no host (no authority in the URI and no Host header)\n"
    );
}

#[test]
fn bad_components_are_refused_with_the_reason() {
    let runtime = Runtime::builder().build().unwrap();
    let cases: [(&[u8], &str); 4] = [
        (b"", "invalid component"),
        (b"\0asm\x0d\0\x01\0garbage", "invalid component"),
        // A core module is not a component.
        (b"(module)", "invalid component"),
        // A component that exports nothing.
        (b"(component)", "does not export wasi:http/incoming-handler"),
    ];
    for (bytes, expected) in cases {
        let err = runtime.compile(bytes).unwrap_err();
        assert!(matches!(err, Error::InvalidComponent { .. }), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(err.status(), 400);
    }
    // A component importing something the host does not provide.
    let wat = r#"(component (import "acme:missing/thing" (instance (export "f" (func)))))"#;
    let err = runtime.compile(wat.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("acme:missing/thing"), "{err}");
}

#[tokio::test]
async fn deploys_swap_atomically_and_routes_are_owned() {
    let runtime = runtime_with_hello();
    let counter = runtime.compile(&std::fs::read(COUNTER).unwrap()).unwrap();
    // Another deployment cannot take a route that is owned.
    let err = runtime
        .deploy(DeploymentConfig::new("other", counter.clone()).route("*/*".parse().unwrap()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "route '*/*' already belongs to deployment 'hello'"
    );
    // Redeploying the same name swaps the component and bumps the version.
    let info = runtime
        .deploy(DeploymentConfig::new("hello", counter).route("*/*".parse().unwrap()))
        .unwrap();
    assert_eq!(info.version, 2);
    let request = http::Request::get("http://example.com/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let body = runtime
        .handle(request)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    assert_eq!(&body.to_bytes()[..], b"1\n");
    runtime.remove("hello").unwrap();
    assert!(runtime.deployments().is_empty());
}
