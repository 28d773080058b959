//! RSA blind signatures (RFC 9474) through a guest: the RFC's Appendix A vectors for
//! RSABSSA-SHA384-PSS-Randomized and -Deterministic (blind-sign with an imported key and with
//! a named host key, finalize, verify), blind signatures made end to end in the guest checked
//! by an independent implementation (Python `cryptography`, i.e. OpenSSL), and bad inputs.
//! The blinding step itself, which draws a random salt and factor, is checked against the
//! vectors with both injected in the host's unit tests (`host::crypto::blind_rsa`).

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use virga::StaticKeys;

use crate::probe::{hex, probe, runtime, runtime_with_keys};

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/rfc9474.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The vectors' public key as a JWK, built from `n` and `e` alone.
fn public_jwk(key: &Value) -> Vec<u8> {
    let b64 = |name: &str| URL_SAFE_NO_PAD.encode(unhex(key[name].as_str().unwrap()));
    serde_json::json!({ "kty": "RSA", "n": b64("n"), "e": b64("e") })
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn rfc9474_vectors_pass_through_a_guest() {
    let all = vectors();
    let pkcs8 = unhex(all["key"]["pkcs8"].as_str().unwrap());
    let jwk = hex(&public_jwk(&all["key"]));
    let mut keys = StaticKeys::new();
    for vector in all["vectors"].as_array().unwrap() {
        let variant = vector["variant"].as_str().unwrap();
        keys.add("probe", variant, variant, &pkcs8).unwrap();
    }
    let runtime = runtime_with_keys(keys);
    for vector in all["vectors"].as_array().unwrap() {
        let (name, alg) = (vector["name"].as_str().unwrap(), &vector["variant"]);
        let alg = alg.as_str().unwrap();
        let v = |field: &str| vector[field].as_str().unwrap().to_owned();
        let mut wrong_message = unhex(&v("prepared_msg"));
        wrong_message[0] ^= 1;
        let lines = [
            format!(
                "op=blind-sign&alg={alg}&fmt=pkcs8&key={}&blinded={}",
                hex(&pkcs8),
                v("blinded_msg")
            ),
            format!(
                "op=named-blind-sign&name={alg}&blinded={}",
                v("blinded_msg")
            ),
            format!(
                "op=finalize&alg={alg}&fmt=jwk&key={jwk}&prepared={}&bsig={}&inv={}",
                v("prepared_msg"),
                v("blind_sig"),
                v("inv")
            ),
            format!(
                "op=verify&alg={alg}&fmt=jwk&key={jwk}&msg={}&sig={}",
                v("prepared_msg"),
                v("sig")
            ),
            format!(
                "op=verify&alg={alg}&fmt=jwk&key={jwk}&msg={}&sig={}",
                hex(&wrong_message),
                v("sig")
            ),
        ];
        let answers = probe(&runtime, &lines).await;
        let expected = [
            v("blind_sig"),
            v("blind_sig"),
            v("sig"),
            "valid".to_owned(),
            "invalid".to_owned(),
        ];
        for (what, (answer, expected)) in [
            "blind-sign",
            "blind-sign (host key)",
            "finalize",
            "verify",
            "verify (other message)",
        ]
        .iter()
        .zip(answers.iter().zip(&expected))
        {
            assert_eq!(answer, expected, "{name}: {what}");
        }
        println!("rfc9474 {name}: blind-sign (imported and host key), finalize, verify match");
    }
}

/// Runs a Python script with `cryptography` and returns its standard output.
pub(crate) fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (scripts/setup installs python3-cryptography)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Prints a fresh RSA-2048 private key, PKCS#8 DER in hex.
pub(crate) const NEW_KEY: &str = "
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization as s
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
print(k.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8, s.NoEncryption()).hex())
";

/// Verifies an RSASSA-PSS signature (SHA-384, MGF1-SHA-384, 48-byte salt) with OpenSSL.
const VERIFY: &str = "
import sys
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives import hashes, serialization as s
key = s.load_der_private_key(bytes.fromhex(sys.argv[1]), None).public_key()
pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
key.verify(bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[2]), pss, hashes.SHA384())
print('verified')
";

#[tokio::test]
async fn blind_signatures_made_in_a_guest_verify_with_openssl() {
    let runtime = runtime();
    let vector_key = vectors()["key"]["pkcs8"].as_str().unwrap().to_owned();
    let fresh_key = python(NEW_KEY, &[]);
    let msg = b"a token input".to_vec();
    for key in [&vector_key, &fresh_key] {
        for alg in [
            "rsabssa-sha384-pss-randomized",
            "rsabssa-sha384-pss-deterministic",
        ] {
            let line = format!(
                "op=blind-roundtrip&alg={alg}&fmt=pkcs8&key={key}&msg={}",
                hex(&msg)
            );
            let answers = probe(&runtime, &[line.clone(), line]).await;
            let mut prefixes = Vec::new();
            for answer in answers {
                let parts: Vec<&str> = answer.split(' ').collect();
                assert_eq!(parts.len(), 3, "{alg}: {answer}");
                assert_eq!(parts[0], "valid", "{alg}");
                let prepared = unhex(parts[1]);
                if alg.ends_with("randomized") {
                    assert_eq!(prepared.len(), 32 + msg.len(), "{alg}: a 32-byte prefix");
                    assert!(prepared.ends_with(&msg), "{alg}");
                    prefixes.push(prepared[..32].to_vec());
                } else {
                    assert_eq!(prepared, msg, "{alg}: the message as it is");
                }
                assert_eq!(python(VERIFY, &[key, parts[1], parts[2]]), "verified");
            }
            if alg.ends_with("randomized") {
                assert_ne!(prefixes[0], prefixes[1], "a fresh prefix each time");
            }
        }
    }
    // Blinding the same message twice gives unrelated blinded messages.
    let jwk = hex(&public_jwk(&vectors()["key"]));
    let line = format!(
        "op=blind&alg=rsabssa-sha384-pss-deterministic&fmt=jwk&key={jwk}&msg={}",
        hex(&msg)
    );
    let answers = probe(&runtime, &[line.clone(), line]).await;
    let blinded: Vec<&str> = answers
        .iter()
        .map(|a| a.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(blinded[0].len(), 1024, "{}", answers[0]);
    assert_ne!(blinded[0], blinded[1]);
}

#[tokio::test]
async fn bad_blind_signature_inputs_are_named_errors() {
    let runtime = runtime();
    let all = vectors();
    let pkcs8 = all["key"]["pkcs8"].as_str().unwrap();
    let jwk = hex(&public_jwk(&all["key"]));
    let vector = &all["vectors"][1];
    let v = |field: &str| vector[field].as_str().unwrap().to_owned();
    let alg = "rsabssa-sha384-pss-deterministic";
    let n = all["key"]["n"].as_str().unwrap();
    let mut wrong_inverse = unhex(&v("inv"));
    wrong_inverse[100] ^= 1;
    let ec_key = "3059301306072a8648ce3d020106082a8648ce3d03010703420004";
    let cases = [
        (
            format!("op=blind-sign&alg={alg}&fmt=pkcs8&key={pkcs8}&blinded=00ff"),
            "error bad input: a blinded message is 512 bytes (the modulus), not 2",
        ),
        (
            format!("op=blind-sign&alg={alg}&fmt=pkcs8&key={pkcs8}&blinded={n}"),
            "error bad input: the blinded message is not smaller than the modulus",
        ),
        (
            format!(
                "op=finalize&alg={alg}&fmt=jwk&key={jwk}&prepared={}&bsig={}&inv={}",
                v("prepared_msg"),
                v("blind_sig"),
                hex(&wrong_inverse)
            ),
            "error bad input: invalid signature",
        ),
        (
            format!(
                "op=finalize&alg={alg}&fmt=jwk&key={jwk}&prepared={}&bsig={}&inv={}",
                v("prepared_msg"),
                &v("blind_sig")[2..],
                v("inv")
            ),
            "error bad input: the blind signature is 512 bytes (the modulus), not 511",
        ),
        (
            format!(
                "op=finalize&alg={alg}&fmt=jwk&key={jwk}&prepared={}&bsig={}&inv={n}",
                v("prepared_msg"),
                v("blind_sig"),
            ),
            "error bad input: the inverse is not smaller than the modulus",
        ),
        (
            format!("op=sign&alg={alg}&fmt=pkcs8&key={pkcs8}&msg=00"),
            "error not permitted: a rsabssa-sha384-pss-deterministic key signs only blinded",
        ),
        (
            format!("op=blind&alg=rsa-pss-sha384&fmt=jwk&key={jwk}&msg=00"),
            "error unsupported: rsa-pss-sha384 keys do not make blind signatures",
        ),
        (
            format!("op=blind&alg=ecdsa-p256-sha256&fmt=spki&key={ec_key}&msg=00"),
            "error bad key",
        ),
        (
            format!("op=blind-sign&alg={alg}&fmt=jwk&key={jwk}&blinded=00"),
            "error bad key",
        ),
    ];
    let lines: Vec<String> = cases.iter().map(|(line, _)| line.clone()).collect();
    let answers = probe(&runtime, &lines).await;
    for ((line, expected), answer) in cases.iter().zip(&answers) {
        assert!(
            answer.starts_with(expected),
            "{line}\n  answered {answer}\n  expected {expected}…"
        );
    }
}
