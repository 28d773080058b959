//! `POST /run`: each line of the body is one operation, `op=NAME&key=value&...` with byte
//! values in hex; the answer has one line per operation: `valid`, `invalid`, hex output, or
//! `error KIND: message`. Operations:
//! - `verify`: alg, enc (der|p1363), fmt (raw|spki|pkcs8), key, msg, sig — public key import
//! - `mac`: alg, key, msg, tag — HMAC verify (tags may be truncated)
//! - `open`: alg, key, nonce, aad, ct — AEAD decrypt (ct includes the tag) → plaintext
//! - `seal`: alg, key, nonce, aad, pt → ciphertext with tag
//! - `hkdf`: hash, ikm, salt, info, len → output
//! - `digest`: hash, msg → digest
//! - `named-sign`: name, msg → signature with a host key; `named-export`: name → must fail
//! - `named-public`: name → SPKI of a host key
//! - `generate-roundtrip`: alg → signs and verifies with a fresh key → valid
//! - `generate-many`: alg, n → generates n keys; `import-many`: alg, size, n → imports and
//!   keeps n secrets of `size` bytes → `ok N` or `failed at K: error ...`
//! - `sign`: alg, fmt (pkcs8|raw|jwk), key, msg → signature
//! - `private-roundtrip`: alg, fmt (pkcs8|raw|jwk), key → imports, signs, verifies through
//!   the public half written as a JWK → valid
//!
//! - `blind`: alg, fmt, key (public), msg → `prepared blinded inverse`
//! - `blind-sign`: alg, fmt, key (private), blinded → blind signature;
//!   `named-blind-sign`: name, blinded → the same with a host key
//! - `finalize`: alg, fmt, key (public), prepared, bsig, inv → signature
//! - `blind-roundtrip`: alg, fmt, key (private) , msg → blinds under the public half (as JWK),
//!   blind-signs, finalizes, verifies → `valid prepared signature`
//!
//! `GET /dump?name=N`: signs with host key N, then answers with the instance's whole memory.
use virga_sdk::crypto::{
    Algorithm, CryptoError, Hash, Key, KeyFormat, constant_time_eq, digest, hkdf,
};
use virga_sdk::{Request, Response, Result};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "hmac-sha256" => Algorithm::HmacSha256,
        "hmac-sha384" => Algorithm::HmacSha384,
        "hmac-sha512" => Algorithm::HmacSha512,
        "ecdsa-p256-sha256" => Algorithm::EcdsaP256Sha256,
        "ecdsa-p384-sha384" => Algorithm::EcdsaP384Sha384,
        "ed25519" => Algorithm::Ed25519,
        "rsa-pss-sha256" => Algorithm::RsaPssSha256,
        "rsa-pss-sha384" => Algorithm::RsaPssSha384,
        "rsa-pkcs1-sha256" => Algorithm::RsaPkcs1Sha256,
        "aes128-gcm" => Algorithm::Aes128Gcm,
        "aes256-gcm" => Algorithm::Aes256Gcm,
        "chacha20-poly1305" => Algorithm::Chacha20Poly1305,
        "rsabssa-sha384-pss-randomized" => Algorithm::RsabssaSha384PssRandomized,
        "rsabssa-sha384-pss-deterministic" => Algorithm::RsabssaSha384PssDeterministic,
        _ => return None,
    })
}

fn hash(name: &str) -> Option<Hash> {
    Some(match name {
        "sha1" => Hash::Sha1,
        "sha256" => Hash::Sha256,
        "sha384" => Hash::Sha384,
        "sha512" => Hash::Sha512,
        _ => return None,
    })
}

struct Line<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Line<'a> {
    fn get(&self, key: &str) -> std::result::Result<&'a str, String> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("error probe: missing {key}"))
    }
    fn bytes(&self, key: &str) -> std::result::Result<Vec<u8>, String> {
        unhex(self.get(key).unwrap_or("")).ok_or_else(|| format!("error probe: bad hex in {key}"))
    }
    fn alg(&self) -> std::result::Result<Algorithm, String> {
        let name = self.get("alg")?;
        algorithm(name).ok_or_else(|| format!("error probe: unknown alg {name}"))
    }
    /// `fmt`: raw, pkcs8, spki or jwk; anything else means `default`.
    fn format(&self, default: KeyFormat) -> std::result::Result<KeyFormat, String> {
        Ok(match self.get("fmt")? {
            "raw" => KeyFormat::Raw,
            "pkcs8" => KeyFormat::Pkcs8,
            "spki" => KeyFormat::Spki,
            "jwk" => KeyFormat::Jwk,
            _ => default,
        })
    }
    fn hash(&self) -> std::result::Result<Hash, String> {
        let name = self.get("hash")?;
        hash(name).ok_or_else(|| format!("error probe: unknown hash {name}"))
    }
}

fn failed(e: CryptoError) -> String {
    format!("error {e}")
}

fn verdict(ok: std::result::Result<bool, CryptoError>) -> String {
    match ok {
        Ok(true) => "valid".into(),
        Ok(false) => "invalid".into(),
        Err(e) => failed(e),
    }
}

fn run(line: &Line<'_>) -> std::result::Result<String, String> {
    Ok(match line.get("op")? {
        "verify" => {
            let format = line.format(KeyFormat::Spki)?;
            let key = match Key::import_public(line.alg()?, format, &line.bytes("key")?) {
                Ok(key) => key,
                Err(e) => return Ok(failed(e)),
            };
            let (msg, sig) = (line.bytes("msg")?, line.bytes("sig")?);
            verdict(match line.get("enc").unwrap_or("der") {
                "p1363" => key.verify_p1363(&msg, &sig),
                _ => key.verify(&msg, &sig),
            })
        }
        "mac" => match Key::import_secret(line.alg()?, &line.bytes("key")?) {
            Ok(key) => verdict(key.verify(&line.bytes("msg")?, &line.bytes("tag")?)),
            Err(e) => failed(e),
        },
        "open" => match Key::import_secret(line.alg()?, &line.bytes("key")?) {
            Ok(key) => {
                let opened = key.unseal(
                    &line.bytes("nonce")?,
                    &line.bytes("aad")?,
                    &line.bytes("ct")?,
                );
                match opened {
                    Ok(plain) => hex(&plain),
                    Err(CryptoError::BadInput(m)) if m.contains("authenticate") => "invalid".into(),
                    Err(e) => failed(e),
                }
            }
            Err(e) => failed(e),
        },
        "seal" => match Key::import_secret(line.alg()?, &line.bytes("key")?) {
            Ok(key) => key
                .seal(
                    &line.bytes("nonce")?,
                    &line.bytes("aad")?,
                    &line.bytes("pt")?,
                )
                .map_or_else(failed, |ct| hex(&ct)),
            Err(e) => failed(e),
        },
        "hkdf" => {
            let len: u32 = line
                .get("len")?
                .parse()
                .map_err(|_| "error probe: bad len")?;
            hkdf(
                line.hash()?,
                &line.bytes("ikm")?,
                &line.bytes("salt")?,
                &line.bytes("info")?,
                len,
            )
            .map_or_else(failed, |out| hex(&out))
        }
        "digest" => hex(&digest(line.hash()?, &line.bytes("msg")?)),
        "ct-eq" => constant_time_eq(&line.bytes("a")?, &line.bytes("b")?).to_string(),
        "named-sign" => {
            let msg = line.bytes("msg")?;
            Key::open(line.get("name")?)
                .and_then(|key| key.sign(&msg))
                .map_or_else(failed, |sig| hex(&sig))
        }
        "named-verify" => Key::open(line.get("name")?).map_or_else(failed, |key| {
            verdict(key.verify(
                &line.bytes("msg").unwrap_or_default(),
                &line.bytes("sig").unwrap_or_default(),
            ))
        }),
        "named-export" => Key::open(line.get("name")?)
            .and_then(|key| key.export(KeyFormat::Pkcs8))
            .map_or_else(failed, |der| hex(&der)),
        "named-public" => Key::open(line.get("name")?)
            .and_then(|key| key.public_key(KeyFormat::Spki))
            .map_or_else(failed, |spki| hex(&spki)),
        "sign" => {
            let format = line.format(KeyFormat::Pkcs8)?;
            let msg = line.bytes("msg")?;
            Key::import_private(line.alg()?, format, &line.bytes("key")?)
                .and_then(|key| key.sign(&msg))
                .map_or_else(failed, |sig| hex(&sig))
        }
        "generate-many" => {
            let n: usize = line.get("n")?.parse().map_err(|_| "error probe: bad n")?;
            for k in 1..=n {
                if let Err(e) = Key::generate(line.alg()?) {
                    return Ok(format!("failed at {k}: {}", failed(e)));
                }
            }
            format!("ok {n}")
        }
        "import-many" => {
            let n: usize = line.get("n")?.parse().map_err(|_| "error probe: bad n")?;
            let size: usize = line
                .get("size")?
                .parse()
                .map_err(|_| "error probe: bad size")?;
            let secret = vec![7u8; size];
            let mut kept = Vec::new();
            for k in 1..=n {
                match Key::import_secret(line.alg()?, &secret) {
                    Ok(key) => kept.push(key),
                    Err(e) => return Ok(format!("failed at {k}: {}", failed(e))),
                }
            }
            format!("ok {}", kept.len())
        }
        "private-roundtrip" => {
            let format = line.format(KeyFormat::Pkcs8)?;
            let key = match Key::import_private(line.alg()?, format, &line.bytes("key")?) {
                Ok(key) => key,
                Err(e) => return Ok(failed(e)),
            };
            let msg = b"roundtrip";
            match key.sign(msg) {
                Ok(sig) => match key.public_key(KeyFormat::Jwk) {
                    Ok(jwk) => {
                        let public = Key::import_public(key.algorithm(), KeyFormat::Jwk, &jwk);
                        verdict(public.and_then(|p| p.verify(msg, &sig)))
                    }
                    Err(e) => failed(e),
                },
                Err(e) => failed(e),
            }
        }
        "generate-roundtrip" => {
            let key = match Key::generate(line.alg()?) {
                Ok(key) => key,
                Err(e) => return Ok(failed(e)),
            };
            let msg = b"roundtrip";
            match key.sign(msg) {
                Ok(sig) => verdict(key.verify(msg, &sig)),
                Err(e) => failed(e),
            }
        }
        "blind" => {
            let format = line.format(KeyFormat::Spki)?;
            let msg = line.bytes("msg")?;
            Key::import_public(line.alg()?, format, &line.bytes("key")?)
                .and_then(|key| key.blind(&msg))
                .map_or_else(failed, |b| {
                    let (p, b, i) = (&b.prepared_message, &b.blinded_message, &b.inverse);
                    format!("{} {} {}", hex(p), hex(b), hex(i))
                })
        }
        "blind-sign" => {
            let format = line.format(KeyFormat::Pkcs8)?;
            let blinded = line.bytes("blinded")?;
            Key::import_private(line.alg()?, format, &line.bytes("key")?)
                .and_then(|key| key.blind_sign(&blinded))
                .map_or_else(failed, |sig| hex(&sig))
        }
        "named-blind-sign" => {
            let blinded = line.bytes("blinded")?;
            Key::open(line.get("name")?)
                .and_then(|key| key.blind_sign(&blinded))
                .map_or_else(failed, |sig| hex(&sig))
        }
        "finalize" => {
            let format = line.format(KeyFormat::Spki)?;
            let blinding = virga_sdk::crypto::Blinding {
                prepared_message: line.bytes("prepared")?,
                blinded_message: Vec::new(),
                inverse: line.bytes("inv")?,
            };
            let bsig = line.bytes("bsig")?;
            Key::import_public(line.alg()?, format, &line.bytes("key")?)
                .and_then(|key| key.finalize(&blinding, &bsig))
                .map_or_else(failed, |sig| hex(&sig))
        }
        "blind-roundtrip" => {
            let format = line.format(KeyFormat::Pkcs8)?;
            let (alg, msg, der) = (line.alg()?, line.bytes("msg")?, line.bytes("key")?);
            let roundtrip = || -> std::result::Result<String, CryptoError> {
                let signer = Key::import_private(alg, format, &der)?;
                let jwk = signer.public_key(KeyFormat::Jwk)?;
                let client = Key::import_public(signer.algorithm(), KeyFormat::Jwk, &jwk)?;
                let blinding = client.blind(&msg)?;
                let blind_signature = signer.blind_sign(&blinding.blinded_message)?;
                let signature = client.finalize(&blinding, &blind_signature)?;
                let spki = signer.public_key(KeyFormat::Spki)?;
                let verifier = Key::import_public(signer.algorithm(), KeyFormat::Spki, &spki)?;
                Ok(
                    match verifier.verify(&blinding.prepared_message, &signature)? {
                        true => format!(
                            "valid {} {}",
                            hex(&blinding.prepared_message),
                            hex(&signature)
                        ),
                        false => "invalid".into(),
                    },
                )
            };
            roundtrip().unwrap_or_else(failed)
        }
        other => return Err(format!("error probe: unknown op {other}")),
    })
}

/// Every byte of this instance's linear memory (from address 1; address 0 is never used).
fn memory_dump() -> Vec<u8> {
    let len = core::arch::wasm32::memory_size(0) * 65536;
    let mut dump = Vec::with_capacity(len);
    for address in 1..len {
        // SAFETY: every address below memory.size is readable in wasm32.
        dump.push(unsafe { core::ptr::read_volatile(address as *const u8) });
    }
    dump
}

#[virga_sdk::handler]
fn handle(request: Request) -> Result<Response> {
    if request.uri().path().ends_with("/dump") {
        // Uses the host key named by the query, then answers with the whole linear memory,
        // so a test can check that the key's bytes never entered it.
        let name = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("name="))
            .unwrap_or("");
        let key = Key::open(name)?;
        let signature = key.sign(b"probe")?;
        if !key.verify(b"probe", &signature)? {
            return Err(virga_sdk::Error::msg(
                "the host key's own signature did not verify",
            ));
        }
        // Kept alive through the dump: what the guest did receive must show up in it.
        let spki = key.public_key(KeyFormat::Spki);
        let _ = key.export(KeyFormat::Pkcs8);
        let _ = key.export(KeyFormat::Raw);
        let dump = memory_dump();
        std::hint::black_box(&spki);
        return Ok(Response::new(dump.into()));
    }
    let body = request.into_body().bytes()?;
    let text = String::from_utf8_lossy(&body);
    let mut out = String::new();
    for raw in text.lines().filter(|l| !l.is_empty()) {
        let line = Line(raw.split('&').filter_map(|kv| kv.split_once('=')).collect());
        match run(&line) {
            Ok(answer) | Err(answer) => out.push_str(&answer),
        }
        out.push('\n');
    }
    Ok(Response::new(out.into()))
}
