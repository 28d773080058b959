//! Persistence: a runtime with a store comes back after a restart with every deployment and
//! version, from precompiled artifacts, and refuses unreadable state clearly.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use virga::store::LocalStore;
use virga::{DeploymentConfig, Runtime};
use virga_test_artifacts::{COUNTER, HELLO};

use crate::support::tempdir;

fn runtime(dir: &std::path::Path) -> Result<Runtime, virga::Error> {
    Runtime::builder()
        .store(Arc::new(LocalStore::open(dir).unwrap()))
        .build()
}

async fn body(runtime: &Runtime, path: &str) -> String {
    let request = http::Request::get(format!("http://example.com{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = runtime.handle(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn deploy_two_versions(dir: &std::path::Path) {
    let first = runtime(dir).unwrap();
    for (wasm, var) in [(HELLO, "one"), (COUNTER, "two")] {
        let component = first.compile(&std::fs::read(wasm).unwrap()).unwrap();
        first
            .deploy(
                DeploymentConfig::new("app", component)
                    .route("*/*".parse().unwrap())
                    .var("WHICH", var),
            )
            .unwrap();
    }
    first.rollback("app", None).unwrap();
}

fn overwrite_all(dir: &std::path::Path, contents: &[u8]) -> usize {
    let mut n = 0;
    for entry in walk(dir) {
        std::fs::write(entry, contents).unwrap();
        n += 1;
    }
    n
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_restart_restores_versions_from_precompiled_artifacts_without_recompiling() {
    let dir = tempdir();
    deploy_two_versions(&dir);
    // Spoil the component sources: a restart that recompiled anything would fail.
    assert_eq!(overwrite_all(&dir.join("components"), b"not wasm"), 2);

    let restored = runtime(&dir).unwrap();
    let list = restored.deployments();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].version, 1, "the rolled-back version stays live");
    assert_eq!(list[0].versions, [1, 2]);
    assert_eq!(list[0].vars["WHICH"], "one");
    assert_eq!(body(&restored, "/r").await, "hello from virga\nGET /r\n");
    restored.rollback("app", Some(2)).unwrap();
    assert_eq!(body(&restored, "/r").await, "1\n");
}

#[tokio::test]
async fn a_corrupt_precompiled_artifact_falls_back_to_the_source() {
    let dir = tempdir();
    deploy_two_versions(&dir);
    assert_eq!(overwrite_all(&dir.join("compiled"), b"garbage"), 2);
    let restored = runtime(&dir).unwrap();
    assert_eq!(body(&restored, "/c").await, "hello from virga\nGET /c\n");
}

#[test]
fn unreadable_state_is_a_clear_error() {
    let dir = tempdir();
    deploy_two_versions(&dir);
    std::fs::write(dir.join("deployments.json"), b"{ half a file").unwrap();
    let err = runtime(&dir).unwrap_err().to_string();
    assert!(err.contains("deployments.json is unreadable"), "{err}");

    let dir = tempdir();
    deploy_two_versions(&dir);
    overwrite_all(&dir.join("components"), b"not wasm");
    overwrite_all(&dir.join("compiled"), b"garbage");
    let err = runtime(&dir).unwrap_err().to_string();
    assert!(err.contains("is corrupt (hash mismatch)"), "{err}");
}
