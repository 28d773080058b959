//! TLS: the hybrid post-quantum key exchange is offered by default.

use virga_test_artifacts::HELLO;

use crate::support::TestHost;

#[tokio::test]
async fn a_client_restricted_to_x25519mlkem768_completes_the_handshake() {
    let host = TestHost::builder()
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    let tcp = tokio::net::TcpStream::connect(host.https).await.unwrap();
    let group = rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768;
    let tls = host.tls_connect(tcp, Some(vec![group])).await.unwrap();
    let negotiated = tls.get_ref().1.negotiated_key_exchange_group().unwrap();
    assert_eq!(negotiated.name(), rustls::NamedGroup::X25519MLKEM768);
}

#[tokio::test]
async fn the_self_signed_certificate_is_reused_across_restarts() {
    let dir = crate::support::tempdir();
    let (_, first) = virga::server::TlsIdentity::self_signed(&dir).unwrap();
    let pem = std::fs::read(&first).unwrap();
    let (_, second) = virga::server::TlsIdentity::self_signed(&dir).unwrap();
    assert_eq!(first, second);
    assert_eq!(std::fs::read(&second).unwrap(), pem);
}

#[test]
fn bad_certificate_files_are_refused_with_a_clear_error() {
    let dir = crate::support::tempdir();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let err = virga::server::TlsIdentity::from_pem_files(&cert, &key).unwrap_err();
    assert!(err.to_string().contains("no certificate found"), "{err}");
    let missing =
        virga::server::TlsIdentity::from_pem_files(&dir.join("nope.pem"), &key).unwrap_err();
    assert!(missing.to_string().contains("nope.pem"), "{missing}");
}

#[test]
fn concurrent_hosts_sharing_a_state_dir_get_a_matching_certificate_and_key() {
    for _ in 0..5 {
        let dir = crate::support::tempdir();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let (identity, _) = virga::server::TlsIdentity::self_signed(&dir).unwrap();
                    identity.server_config(&[b"h2"]).map(|_| ())
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap().expect("certificate and key match");
        }
    }
}
