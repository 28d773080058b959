//! `virga:edge/crypto` through a guest: host keys are usable but never readable, not even
//! through guest memory, and scoped to their deployment; bad input is a named error.

use std::sync::Arc;

use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use bytes::Bytes;
use virga::{Runtime, StaticKeys};
use virga_test_artifacts::CRYPTO_PROBE;

use crate::support::{Proto, TestHost, full};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

struct Keys {
    pkcs8: Vec<u8>,
    scalar: Vec<u8>,
    public: Vec<u8>,
    secret: Vec<u8>,
}

/// Deployment `a` (at `/a/...`) has host keys `issuer` (ECDSA P-256) and `mac` (HMAC-SHA256);
/// deployment `b` (everything else) has none.
async fn host() -> (TestHost, Keys) {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .unwrap();
    let scalar: EcPrivateKeyBin<'_> = pair.private_key().as_be_bytes().unwrap();
    let mut secret = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).unwrap();
    let mut keys = StaticKeys::new();
    keys.add("a", "issuer", "ecdsa-p256-sha256", pkcs8.as_ref())
        .unwrap();
    keys.add("a", "mac", "hmac-sha256", &secret).unwrap();
    let runtime = Runtime::builder()
        .key_store(Arc::new(keys))
        .build()
        .unwrap();
    let host = TestHost::builder_with(runtime)
        .guest("a", CRYPTO_PROBE, "*/a/*")
        .guest("b", CRYPTO_PROBE, "*/*")
        .start()
        .await;
    let keys = Keys {
        pkcs8: pkcs8.as_ref().to_vec(),
        scalar: scalar.as_ref().to_vec(),
        public: pair.public_key().as_ref().to_vec(),
        secret,
    };
    (host, keys)
}

async fn run(host: &TestHost, path: &str, lines: &[&str]) -> Vec<String> {
    let reply = host
        .send(
            Proto::H1,
            http::Method::POST,
            path,
            full(Bytes::from(lines.join("\n"))),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text().lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_sign_but_never_leave_the_host_or_their_deployment() {
    let (host, keys) = host().await;
    let msg = hex(b"hello");
    let answers = run(
        &host,
        "/a/run",
        &[
            &format!("op=named-sign&name=issuer&msg={msg}"),
            "op=named-export&name=issuer",
            "op=named-export&name=mac",
            "op=named-public&name=issuer",
            &format!("op=named-sign&name=mac&msg={msg}"),
            "op=named-sign&name=nope&msg=00",
        ],
    )
    .await;
    // The signature is a real one, by the configured key.
    let verifier =
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &keys.public);
    verifier.verify(b"hello", &unhex(&answers[0])).unwrap();
    assert_eq!(
        answers[1],
        "error not permitted: the key is not extractable"
    );
    assert_eq!(
        answers[2],
        "error not permitted: the key is not extractable"
    );
    assert!(answers[3].starts_with("3059"), "an SPKI: {}", answers[3]);
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &keys.secret),
        b"hello",
    );
    assert_eq!(answers[4], hex(mac.as_ref()));
    assert_eq!(
        answers[5],
        "error not found: no host key named 'nope' for deployment 'a'"
    );

    // Another deployment cannot open them.
    let answers = run(&host, "/run", &["op=named-sign&name=issuer&msg=00"]).await;
    assert_eq!(
        answers[0],
        "error not found: no host key named 'issuer' for deployment 'b'"
    );

    // After using each key, the instance's whole memory holds none of their bytes.
    for name in ["issuer", "mac"] {
        let reply = host
            .get(Proto::H1, &format!("/a/dump?name={name}"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let memory = &reply.body[..];
        assert!(
            memory.len() > 1 << 16,
            "a whole memory: {} bytes",
            memory.len()
        );
        for (what, secret) in [
            ("PKCS#8", &keys.pkcs8[..]),
            ("private scalar", &keys.scalar[..]),
            ("HMAC secret", &keys.secret[..]),
        ] {
            assert!(
                !memory.windows(secret.len()).any(|w| w == secret),
                "the {what} is in guest memory after using '{name}'"
            );
        }
        // The check can fail: the public key the guest asked for is in there.
        if name == "issuer" {
            let spki_tail = &keys.public[1..];
            assert!(memory.windows(spki_tail.len()).any(|w| w == spki_tail));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_inputs_are_named_errors_not_traps() {
    let (host, _) = host().await;
    let p256 = EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, p256.as_ref())
        .unwrap();
    let point = hex(pair.public_key().as_ref());
    let sig = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), b"m")
        .unwrap();
    let sig = hex(sig.as_ref());
    let truncated = &sig[..sig.len() - 4];
    let rsa = {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        hex(der.as_ref())
    };
    let scalar: EcPrivateKeyBin<'_> = pair.private_key().as_be_bytes().unwrap();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let public = pair.public_key().as_ref();
    let private_jwk = hex(format!(
        r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","d":"{}"}}"#,
        b64(&public[1..33]),
        b64(&public[33..]),
        b64(scalar.as_ref())
    )
    .as_bytes());
    let wrong_d_jwk = hex(format!(
        r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","d":"{}"}}"#,
        b64(&public[1..33]),
        b64(&public[33..]),
        b64(&[7u8; 32])
    )
    .as_bytes());
    let key16 = "00".repeat(16);
    let nonce = "00".repeat(12);
    let cases: Vec<(String, &str)> = vec![
        (
            format!("op=verify&alg=ecdsa-p256-sha256&fmt=raw&key={point}&msg=6d&sig={sig}"),
            "valid",
        ),
        (
            format!("op=verify&alg=ecdsa-p256-sha256&fmt=raw&key={point}&msg=6d&sig={truncated}"),
            "invalid",
        ),
        (
            format!("op=verify&alg=ecdsa-p384-sha384&fmt=raw&key={point}&msg=6d&sig={sig}"),
            "error bad key: not a ecdsa-p384-sha384 public key",
        ),
        (
            "op=verify&alg=ed25519&fmt=spki&key=3000&msg=6d&sig=00".to_owned(),
            "error bad key: not a ed25519 public key",
        ),
        (
            format!(
                "op=verify&alg=ecdsa-p256-sha256&fmt=spki&key={}&msg=6d&sig={sig}",
                &point[..40]
            ),
            "error bad key",
        ),
        (
            "op=open&alg=aes256-gcm&key=0011&nonce=00&aad=&ct=00".to_owned(),
            "error bad key: aes256-gcm takes a 32-byte key, not 2 bytes",
        ),
        (
            format!(
                "op=open&alg=aes128-gcm&key={key16}&nonce=0000&aad=&ct={}",
                "00".repeat(20)
            ),
            "error bad input: the nonce must be 12 bytes, not 2",
        ),
        (
            format!(
                "op=open&alg=aes128-gcm&key={key16}&nonce={nonce}&aad=&ct={}",
                "00".repeat(20)
            ),
            "invalid",
        ),
        (
            format!("op=open&alg=aes128-gcm&key={key16}&nonce={nonce}&aad=&ct=00"),
            "invalid",
        ),
        (
            format!("op=mac&alg=ecdsa-p256-sha256&key={key16}&msg=00&tag=00"),
            "error bad key",
        ),
        (
            "op=mac&alg=hmac-sha256&key=&msg=00&tag=00".to_owned(),
            "error bad key: an HMAC key must not be empty",
        ),
        (
            "op=hkdf&hash=sha256&ikm=00&salt=&info=&len=9000".to_owned(),
            "error bad input: HKDF output must be 1 to 8160 bytes, not 9000",
        ),
        (
            "op=hkdf&hash=sha1&ikm=00&salt=&info=&len=10".to_owned(),
            "error unsupported: HKDF takes SHA-256, SHA-384 or SHA-512",
        ),
        ("op=generate-roundtrip&alg=ed25519".to_owned(), "valid"),
        (
            format!("op=private-roundtrip&alg=ecdsa-p256-sha256&fmt=jwk&key={private_jwk}"),
            "valid",
        ),
        (
            format!(
                "op=private-roundtrip&alg=ecdsa-p256-sha256&fmt=pkcs8&key={}",
                hex(p256.as_ref())
            ),
            "valid",
        ),
        (
            format!("op=private-roundtrip&alg=ecdsa-p256-sha256&fmt=jwk&key={wrong_d_jwk}"),
            "error bad key: the JWK's EC key is inconsistent",
        ),
        (
            format!("op=private-roundtrip&alg=ecdsa-p384-sha384&fmt=jwk&key={private_jwk}"),
            "error bad key: a JWK of kty \"EC\" crv \"P-256\" is not a ecdsa-p384-sha384 key",
        ),
        (
            format!(
                "op=private-roundtrip&alg=ed25519&fmt=jwk&key={}",
                hex(b"{\"kty\":")
            ),
            "error bad key: not a JWK (JSON object)",
        ),
        (
            format!(
                "op=private-roundtrip&alg=ed25519&fmt=jwk&key={}",
                hex(br#"{"kty":"OKP","crv":"Ed25519","x":"!!"}"#)
            ),
            "error bad key: the JWK's \"x\" is not base64url",
        ),
        (
            format!(
                "op=private-roundtrip&alg=ecdsa-p256-sha256&fmt=pkcs8&key={}",
                hex(&p256.as_ref()[..40])
            ),
            "error bad key: not a ecdsa-p256-sha256 private key",
        ),
        // RSA signing with an imported key (generating one costs more than the default 50 ms
        // of CPU, which host crypto counts against).
        (
            format!("op=private-roundtrip&alg=rsa-pss-sha256&fmt=pkcs8&key={rsa}"),
            "valid",
        ),
        (
            format!("op=private-roundtrip&alg=rsa-pkcs1-sha256&fmt=pkcs8&key={rsa}"),
            "valid",
        ),
        (
            "op=generate-roundtrip&alg=aes128-gcm".to_owned(),
            "error unsupported: aes128-gcm does not sign",
        ),
    ];
    let lines: Vec<&str> = cases.iter().map(|(line, _)| line.as_str()).collect();
    let answers = run(&host, "/run", &lines).await;
    for ((line, expected), answer) in cases.iter().zip(&answers) {
        assert!(
            answer.starts_with(expected),
            "{line}\n  expected {expected}\n  got      {answer}"
        );
    }
    // The host kept serving: the same deployment still answers.
    let answers = run(&host, "/run", &["op=digest&hash=sha256&msg=616263"]).await;
    assert_eq!(
        answers[0],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_crypto_work_counts_as_cpu_time_and_key_handles_are_bounded() {
    let (host, _) = host().await;
    // RSA key generation in the host is charged to the guest: the default 50 ms runs out.
    let reply = host
        .send(
            Proto::H1,
            http::Method::POST,
            "/run",
            full(Bytes::from("op=generate-many&alg=rsa-pss-sha256&n=1000")),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "deployment 'b' failed: the handler exceeded its cpu-time limit of 50 ms\n"
    );
    // Keys held at once are bounded: 64 KiB secrets fill the 1 MiB budget.
    let answers = run(
        &host,
        "/run",
        &[
            "op=import-many&alg=hmac-sha256&size=65536&n=100",
            "op=import-many&alg=hmac-sha256&size=1024&n=10",
        ],
    )
    .await;
    assert!(
        answers[0].starts_with("failed at 16: error not permitted: this request already holds"),
        "{}",
        answers[0]
    );
    assert_eq!(answers[1], "ok 10", "dropped keys give their budget back");
}
