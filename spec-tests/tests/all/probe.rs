//! The `crypto-probe` guest, deployed alone in a runtime: each line sent is one
//! `virga:edge/crypto` operation, each answer line its result (see the probe's docs).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use virga::{DeploymentConfig, Runtime, StaticKeys};

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the probe's lines in one request (in batches) and returns its answers.
pub(crate) async fn probe(runtime: &Runtime, lines: &[String]) -> Vec<String> {
    let mut answers = Vec::new();
    for batch in lines.chunks(400) {
        let body = batch.join("\n");
        let request = http::Request::post("http://probe/run")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = runtime.handle(request).await.expect("the probe answers");
        assert_eq!(response.status(), 200);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        answers.extend(
            String::from_utf8(text.to_vec())
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    assert_eq!(answers.len(), lines.len(), "one answer per line");
    answers
}

pub(crate) fn runtime() -> Runtime {
    runtime_with_keys(StaticKeys::new())
}

/// A runtime with the probe deployed as `probe`, holding `keys` as its named host keys.
pub(crate) fn runtime_with_keys(keys: StaticKeys) -> Runtime {
    let runtime = Runtime::builder()
        .key_store(std::sync::Arc::new(keys))
        .build()
        .unwrap();
    let component = runtime
        .compile(&std::fs::read(virga_test_artifacts::CRYPTO_PROBE).unwrap())
        .unwrap();
    let limits = virga::Limits::default()
        .cpu_time(std::time::Duration::from_secs(60))
        .wall_time(std::time::Duration::from_secs(120));
    runtime
        .deploy(
            DeploymentConfig::new("probe", component)
                .route("*/*".parse().unwrap())
                .limits(limits),
        )
        .unwrap();
    runtime
}
