//! `virga:edge/crypto`: the guest's handles onto keys held by the host. Named keys come from
//! a [`KeyStore`] (default [`StaticKeys`], filled from the configuration) and are scoped to one
//! deployment: a guest opens its own deployment's keys by name, uses them, and can never read
//! them.

mod aws_lc;
mod blind_rsa;
mod der;
mod jwk;
mod keys;

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::Resource;

pub use keys::KeyHandle;

use crate::bindings::virga::edge::crypto::{
    Algorithm, Blinding, CryptoError, Hash, Host, HostKey, KeyFormat, SignatureEncoding,
};
use crate::state::RequestState;

/// Where named host keys come from. Embedders may swap in their own (a KMS, a vault).
pub trait KeyStore: Send + Sync + std::fmt::Debug + 'static {
    /// The key `name` of deployment `deployment`, if configured. The returned handle must not
    /// be extractable.
    fn open(&self, deployment: &str, name: &str) -> Option<KeyHandle>;
}

/// Named keys given at start: per deployment, per name.
#[derive(Debug, Default)]
pub struct StaticKeys {
    keys: HashMap<(String, String), KeyHandle>,
}

/// The algorithms a named key may be configured with, by their WIT names
/// (`ecdsa-p256-sha256`, `hmac-sha256`, ...).
pub fn algorithm_by_name(name: &str) -> Option<Algorithm> {
    keys::ALGORITHMS
        .into_iter()
        .find(|algorithm| keys::name(*algorithm) == name)
}

impl StaticKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds key `name` for `deployment`: `algorithm` by its WIT name, `material` a PKCS#8 DER
    /// private key (or SEC1 for EC, PKCS#1 for RSA, a 32-byte seed for Ed25519) or, for HMAC
    /// and AEAD, the secret bytes. The error names the problem, never the material.
    pub fn add(
        &mut self,
        deployment: &str,
        name: &str,
        algorithm: &str,
        material: &[u8],
    ) -> std::result::Result<(), crate::Error> {
        let bad = |m: String| crate::Error::Config(format!("key '{name}' of '{deployment}': {m}"));
        let algorithm = algorithm_by_name(algorithm)
            .ok_or_else(|| bad(format!("unknown algorithm '{algorithm}'")))?;
        let seed = algorithm == Algorithm::Ed25519 && material.len() == 32;
        let format = if seed || keys::is_secret(algorithm) {
            KeyFormat::Raw
        } else {
            KeyFormat::Pkcs8
        };
        let key = KeyHandle::import(algorithm, format, material, true, false)
            .map_err(|e| bad(describe(&e)))?;
        self.keys
            .insert((deployment.to_owned(), name.to_owned()), key);
        Ok(())
    }
}

impl KeyStore for StaticKeys {
    fn open(&self, deployment: &str, name: &str) -> Option<KeyHandle> {
        self.keys
            .get(&(deployment.to_owned(), name.to_owned()))
            .cloned()
    }
}

fn describe(e: &CryptoError) -> String {
    match e {
        CryptoError::Unsupported(m)
        | CryptoError::BadKey(m)
        | CryptoError::BadInput(m)
        | CryptoError::NotPermitted(m)
        | CryptoError::NotFound(m) => m.clone(),
    }
}

/// What the crypto interface needs of a request: whose keys it may open, and from where.
pub(crate) struct CryptoCtx {
    pub(crate) deployment: crate::deployment::SharedDeployment,
    pub(crate) keys: Arc<dyn KeyStore>,
}

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

type Result<T> = wasmtime::Result<std::result::Result<T, CryptoError>>;

/// Key material one request may hold through crypto handles at once: bounds the host memory
/// a guest can pin by importing keys in a loop.
const KEY_BUDGET: usize = 1 << 20;

impl RequestState {
    /// Runs `op` on a key, charging the time it takes to the guest's CPU time, in a span
    /// named `span` (when traces are on) that names the key's algorithm.
    fn with_key<T>(
        &mut self,
        span: &'static str,
        key: &Resource<KeyHandle>,
        op: impl FnOnce(&KeyHandle) -> T,
    ) -> wasmtime::Result<T> {
        let key = self.table_ref().get(key)?;
        let _span = self.telemetry.span(span, SpanKind::Internal, || {
            vec![KeyValue::new(
                "virga.crypto.algorithm",
                format!("{:?}", key.algorithm),
            )]
        });
        let started = std::time::Instant::now();
        let out = op(key);
        self.charge_host_work(started.elapsed())?;
        Ok(out)
    }

    /// Runs `op`, charging the time it takes to the guest's CPU time.
    fn timed<T>(&mut self, op: impl FnOnce() -> T) -> wasmtime::Result<T> {
        let started = std::time::Instant::now();
        let out = op();
        self.charge_host_work(started.elapsed())?;
        Ok(out)
    }

    fn new_key(
        &mut self,
        key: std::result::Result<KeyHandle, CryptoError>,
    ) -> Result<Resource<KeyHandle>> {
        let key = match key {
            Ok(key) => key,
            Err(e) => return Ok(Err(e)),
        };
        let cost = key.cost();
        if self.key_bytes + cost > KEY_BUDGET {
            return Ok(Err(CryptoError::NotPermitted(format!(
                "this request already holds {} KiB of keys (at most {} KiB); drop some first",
                self.key_bytes >> 10,
                KEY_BUDGET >> 10
            ))));
        }
        self.key_bytes += cost;
        Ok(Ok(self.table_mut().push(key)?))
    }
}

impl HostKey for RequestState {
    async fn import(
        &mut self,
        algorithm: Algorithm,
        format: KeyFormat,
        data: Vec<u8>,
        private: bool,
        extractable: bool,
    ) -> Result<Resource<KeyHandle>> {
        let key =
            self.timed(|| KeyHandle::import(algorithm, format, &data, private, extractable))?;
        self.new_key(key)
    }

    async fn generate(
        &mut self,
        algorithm: Algorithm,
        extractable: bool,
    ) -> Result<Resource<KeyHandle>> {
        let key = self.timed(|| KeyHandle::generate(algorithm, extractable))?;
        self.new_key(key)
    }

    async fn open(&mut self, name: String) -> Result<Resource<KeyHandle>> {
        let crypto = &self.crypto;
        let deployment = &crypto.deployment.name;
        let key = crypto.keys.open(deployment, &name).ok_or_else(|| {
            CryptoError::NotFound(format!(
                "no host key named '{name}' for deployment '{deployment}'"
            ))
        });
        let key = key.map(|mut key| {
            key.extractable = false;
            key
        });
        self.new_key(key)
    }

    async fn algorithm(&mut self, key: Resource<KeyHandle>) -> wasmtime::Result<Algorithm> {
        Ok(self.table_ref().get(&key)?.algorithm)
    }

    async fn is_private(&mut self, key: Resource<KeyHandle>) -> wasmtime::Result<bool> {
        Ok(self.table_ref().get(&key)?.is_private())
    }

    async fn export(&mut self, key: Resource<KeyHandle>, format: KeyFormat) -> Result<Vec<u8>> {
        self.with_key("crypto.export", &key, |k| k.export(format))
    }

    async fn public_key(&mut self, key: Resource<KeyHandle>, format: KeyFormat) -> Result<Vec<u8>> {
        self.with_key("crypto.public_key", &key, |k| k.public_key(format))
    }

    async fn sign(
        &mut self,
        key: Resource<KeyHandle>,
        data: Vec<u8>,
        encoding: SignatureEncoding,
    ) -> Result<Vec<u8>> {
        self.with_key("crypto.sign", &key, |k| k.sign(&data, encoding))
    }

    async fn verify(
        &mut self,
        key: Resource<KeyHandle>,
        data: Vec<u8>,
        signature: Vec<u8>,
        encoding: SignatureEncoding,
    ) -> Result<bool> {
        self.with_key("crypto.verify", &key, |k| {
            k.verify(&data, &signature, encoding)
        })
    }

    async fn blind(&mut self, key: Resource<KeyHandle>, message: Vec<u8>) -> Result<Blinding> {
        self.with_key("crypto.blind", &key, |k| k.blind(&message))
    }

    async fn blind_sign(&mut self, key: Resource<KeyHandle>, blinded: Vec<u8>) -> Result<Vec<u8>> {
        self.with_key("crypto.blind_sign", &key, |k| k.blind_sign(&blinded))
    }

    async fn finalize(
        &mut self,
        key: Resource<KeyHandle>,
        prepared: Vec<u8>,
        blind_signature: Vec<u8>,
        inverse: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.with_key("crypto.finalize", &key, |k| {
            k.finalize(&prepared, &blind_signature, &inverse)
        })
    }

    async fn seal(
        &mut self,
        key: Resource<KeyHandle>,
        nonce: Vec<u8>,
        aad: Vec<u8>,
        plaintext: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.with_key("crypto.seal", &key, |k| k.seal(&nonce, &aad, &plaintext))
    }

    async fn unseal(
        &mut self,
        key: Resource<KeyHandle>,
        nonce: Vec<u8>,
        aad: Vec<u8>,
        ciphertext: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.with_key("crypto.unseal", &key, |k| {
            k.unseal(&nonce, &aad, &ciphertext)
        })
    }

    async fn drop(&mut self, key: Resource<KeyHandle>) -> wasmtime::Result<()> {
        let key = self.table_mut().delete(key)?;
        self.key_bytes = self.key_bytes.saturating_sub(key.cost());
        Ok(())
    }
}

impl Host for RequestState {
    async fn digest(&mut self, hash: Hash, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        use aws_lc_rs::digest;
        let alg = match hash {
            Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        };
        self.timed(|| digest::digest(alg, &data).as_ref().to_vec())
    }

    async fn hkdf(
        &mut self,
        hash: Hash,
        ikm: Vec<u8>,
        salt: Vec<u8>,
        info: Vec<u8>,
        length: u32,
    ) -> Result<Vec<u8>> {
        use aws_lc_rs::hkdf;
        let alg = match hash {
            Hash::Sha256 => hkdf::HKDF_SHA256,
            Hash::Sha384 => hkdf::HKDF_SHA384,
            Hash::Sha512 => hkdf::HKDF_SHA512,
            Hash::Sha1 => {
                return Ok(Err(CryptoError::Unsupported(
                    "HKDF takes SHA-256, SHA-384 or SHA-512".into(),
                )));
            }
        };
        struct Len(usize);
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        let max = 255 * alg.hmac_algorithm().digest_algorithm().output_len;
        if length == 0 || length > max {
            return Ok(Err(keys::bad_input(format!(
                "HKDF output must be 1 to {max} bytes, not {length}"
            ))));
        }
        let prk = hkdf::Salt::new(alg, &salt).extract(&ikm);
        let info = [info.as_slice()];
        let mut out = vec![0u8; length];
        let filled = prk
            .expand(&info, Len(length))
            .and_then(|okm| okm.fill(&mut out));
        Ok(filled
            .map(|()| out)
            .map_err(|_| keys::bad_input("HKDF failed")))
    }

    async fn constant_time_equal(&mut self, a: Vec<u8>, b: Vec<u8>) -> wasmtime::Result<bool> {
        self.timed(|| aws_lc_rs::constant_time::verify_slices_are_equal(&a, &b).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_is_found_by_its_name() {
        for algorithm in keys::ALGORITHMS {
            assert_eq!(algorithm_by_name(keys::name(algorithm)), Some(algorithm));
        }
        assert_eq!(algorithm_by_name("rsa-md5"), None);
    }
}
