//! Key material behind a `virga:edge/crypto/key` handle, and the operations on it. Plain
//! functions over aws-lc-rs; `crypto.rs` binds them to the guest.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use aws_lc_rs::{aead, hmac};

use crate::bindings::virga::edge::crypto::{Algorithm, CryptoError, KeyFormat, SignatureEncoding};

/// What a key handle holds. Private material is shared (`Arc`), never copied per request.
#[derive(Clone)]
pub(crate) enum Material {
    /// HMAC or AEAD secret.
    Secret(Arc<[u8]>),
    Ecdsa(Arc<EcdsaKeyPair>),
    Ed25519(Arc<Ed25519KeyPair>),
    Rsa(Arc<RsaKey>),
    /// A public key only, as imported (SPKI, point, or PKCS#1), already validated.
    Public(Arc<[u8]>),
    /// A public key imported as SPKI.
    PublicSpki(Arc<[u8]>),
}

/// An RSA private key: aws-lc-rs's, and the raw aws-lc form that blind signing needs, built
/// on first use and shared by every handle onto the key.
pub(crate) struct RsaKey {
    pair: RsaKeyPair,
    raw: OnceLock<Option<super::aws_lc::Rsa>>,
}

impl RsaKey {
    pub(crate) fn new(pair: RsaKeyPair) -> Self {
        Self {
            pair,
            raw: OnceLock::new(),
        }
    }

    /// The key in aws-lc's raw form (for RFC 9474 blind signing).
    pub(crate) fn raw(&self) -> Result<&super::aws_lc::Rsa, super::aws_lc::AwsLcError> {
        self.raw
            .get_or_init(|| {
                let der = AsDer::<Pkcs8V1Der<'static>>::as_der(&self.pair).ok()?;
                super::aws_lc::Rsa::from_pkcs8(der.as_ref()).ok()
            })
            .as_ref()
            .ok_or(super::aws_lc::AwsLcError)
    }
}

impl std::ops::Deref for RsaKey {
    type Target = RsaKeyPair;
    fn deref(&self) -> &RsaKeyPair {
        &self.pair
    }
}

/// A key: its algorithm, material, and whether the guest may export it.
#[derive(Clone)]
pub struct KeyHandle {
    pub(crate) algorithm: Algorithm,
    pub(crate) material: Material,
    pub(crate) extractable: bool,
}

impl std::fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the material.
        f.debug_struct("KeyHandle")
            .field("algorithm", &self.algorithm)
            .field("extractable", &self.extractable)
            .finish_non_exhaustive()
    }
}

pub(crate) fn bad_key(what: impl std::fmt::Display) -> CryptoError {
    CryptoError::BadKey(what.to_string())
}
pub(crate) fn bad_input(what: impl std::fmt::Display) -> CryptoError {
    CryptoError::BadInput(what.to_string())
}
fn unsupported(what: impl std::fmt::Display) -> CryptoError {
    CryptoError::Unsupported(what.to_string())
}

/// Every algorithm, in WIT order.
pub(crate) const ALGORITHMS: [Algorithm; 14] = [
    Algorithm::HmacSha256,
    Algorithm::HmacSha384,
    Algorithm::HmacSha512,
    Algorithm::EcdsaP256Sha256,
    Algorithm::EcdsaP384Sha384,
    Algorithm::Ed25519,
    Algorithm::RsaPssSha256,
    Algorithm::RsaPssSha384,
    Algorithm::RsaPkcs1Sha256,
    Algorithm::Aes128Gcm,
    Algorithm::Aes256Gcm,
    Algorithm::Chacha20Poly1305,
    Algorithm::RsabssaSha384PssRandomized,
    Algorithm::RsabssaSha384PssDeterministic,
];

/// Whether `algorithm` keys are secret bytes (HMAC, AEAD) rather than key pairs.
pub(crate) fn is_secret(algorithm: Algorithm) -> bool {
    hmac_algorithm(algorithm).is_some() || aead_algorithm(algorithm).is_some()
}

/// The WIT name of an algorithm, for messages and configuration: `ecdsa-p256-sha256`.
pub(crate) fn name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HmacSha256 => "hmac-sha256",
        Algorithm::HmacSha384 => "hmac-sha384",
        Algorithm::HmacSha512 => "hmac-sha512",
        Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        Algorithm::EcdsaP384Sha384 => "ecdsa-p384-sha384",
        Algorithm::Ed25519 => "ed25519",
        Algorithm::RsaPssSha256 => "rsa-pss-sha256",
        Algorithm::RsaPssSha384 => "rsa-pss-sha384",
        Algorithm::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
        Algorithm::Aes128Gcm => "aes128-gcm",
        Algorithm::Aes256Gcm => "aes256-gcm",
        Algorithm::Chacha20Poly1305 => "chacha20-poly1305",
        Algorithm::RsabssaSha384PssRandomized => "rsabssa-sha384-pss-randomized",
        Algorithm::RsabssaSha384PssDeterministic => "rsabssa-sha384-pss-deterministic",
    }
}

fn ecdsa_signing(algorithm: Algorithm) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match algorithm {
        Algorithm::EcdsaP256Sha256 => Some(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        Algorithm::EcdsaP384Sha384 => Some(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        _ => None,
    }
}

fn verification(
    algorithm: Algorithm,
    encoding: SignatureEncoding,
) -> Option<&'static dyn signature::VerificationAlgorithm> {
    use SignatureEncoding::{Der, P1363};
    Some(match (algorithm, encoding) {
        (Algorithm::EcdsaP256Sha256, Der) => &signature::ECDSA_P256_SHA256_ASN1,
        (Algorithm::EcdsaP256Sha256, P1363) => &signature::ECDSA_P256_SHA256_FIXED,
        (Algorithm::EcdsaP384Sha384, Der) => &signature::ECDSA_P384_SHA384_ASN1,
        (Algorithm::EcdsaP384Sha384, P1363) => &signature::ECDSA_P384_SHA384_FIXED,
        (Algorithm::Ed25519, _) => &signature::ED25519,
        (Algorithm::RsaPssSha256, _) => &signature::RSA_PSS_2048_8192_SHA256,
        (Algorithm::RsaPssSha384, _) => &signature::RSA_PSS_2048_8192_SHA384,
        // RFC 9474: a finalized blind signature is RSASSA-PSS, SHA-384, 48-byte salt.
        (Algorithm::RsabssaSha384PssRandomized | Algorithm::RsabssaSha384PssDeterministic, _) => {
            &signature::RSA_PSS_2048_8192_SHA384
        }
        (Algorithm::RsaPkcs1Sha256, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return None,
    })
}

fn hmac_algorithm(algorithm: Algorithm) -> Option<hmac::Algorithm> {
    match algorithm {
        Algorithm::HmacSha256 => Some(hmac::HMAC_SHA256),
        Algorithm::HmacSha384 => Some(hmac::HMAC_SHA384),
        Algorithm::HmacSha512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn aead_algorithm(algorithm: Algorithm) -> Option<&'static aead::Algorithm> {
    match algorithm {
        Algorithm::Aes128Gcm => Some(&aead::AES_128_GCM),
        Algorithm::Aes256Gcm => Some(&aead::AES_256_GCM),
        Algorithm::Chacha20Poly1305 => Some(&aead::CHACHA20_POLY1305),
        _ => None,
    }
}

pub(crate) fn is_rsa(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::RsaPssSha256
            | Algorithm::RsaPssSha384
            | Algorithm::RsaPkcs1Sha256
            | Algorithm::RsabssaSha384PssRandomized
            | Algorithm::RsabssaSha384PssDeterministic
    )
}

impl KeyHandle {
    /// Imports key material; see the WIT for what each format means.
    pub(crate) fn import(
        algorithm: Algorithm,
        format: KeyFormat,
        data: &[u8],
        private: bool,
        extractable: bool,
    ) -> Result<Self, CryptoError> {
        let alg_name = name(algorithm);
        let material = if format == KeyFormat::Jwk {
            let material = super::jwk::import(algorithm, data, private)?;
            match &material {
                Material::Public(bytes) => {
                    let alg = verification(algorithm, SignatureEncoding::Der)
                        .ok_or_else(|| bad_key(format!("{alg_name} has no public keys")))?;
                    signature::ParsedPublicKey::new(alg, bytes)
                        .map_err(|e| bad_key(format!("not a {alg_name} public key: {e}")))?;
                }
                Material::Secret(secret) => {
                    Self::import(algorithm, KeyFormat::Raw, secret, true, false)?;
                }
                _ => {}
            }
            material
        } else if hmac_algorithm(algorithm).is_some() || aead_algorithm(algorithm).is_some() {
            if format != KeyFormat::Raw {
                return Err(bad_key("a secret key is imported raw"));
            }
            if let Some(aead) = aead_algorithm(algorithm) {
                aead::UnboundKey::new(aead, data).map_err(|_| {
                    bad_key(format!(
                        "{alg_name} takes a {}-byte key, not {} bytes",
                        aead.key_len(),
                        data.len()
                    ))
                })?;
            } else if data.is_empty() {
                return Err(bad_key("an HMAC key must not be empty"));
            }
            Material::Secret(data.into())
        } else if format == KeyFormat::Spki || (format == KeyFormat::Raw && !private) {
            let alg = verification(algorithm, SignatureEncoding::Der)
                .ok_or_else(|| unsupported(format!("{alg_name} has no public keys")))?;
            signature::ParsedPublicKey::new(alg, data)
                .map_err(|e| bad_key(format!("not a {alg_name} public key: {e}")))?;
            if format == KeyFormat::Spki {
                Material::PublicSpki(data.into())
            } else {
                Material::Public(data.into())
            }
        } else if let Some(signing) = ecdsa_signing(algorithm) {
            let pair = EcdsaKeyPair::from_pkcs8(signing, data)
                .or_else(|_| EcdsaKeyPair::from_private_key_der(signing, data))
                .map_err(|e| bad_key(format!("not a {alg_name} private key: {e}")))?;
            Material::Ecdsa(Arc::new(pair))
        } else if algorithm == Algorithm::Ed25519 {
            let pair = match format {
                KeyFormat::Raw => Ed25519KeyPair::from_seed_unchecked(data),
                _ => Ed25519KeyPair::from_pkcs8_maybe_unchecked(data),
            }
            .map_err(|e| bad_key(format!("not an Ed25519 private key: {e}")))?;
            Material::Ed25519(Arc::new(pair))
        } else if is_rsa(algorithm) {
            let pair = RsaKeyPair::from_pkcs8(data)
                .or_else(|_| RsaKeyPair::from_der(data))
                .map_err(|e| bad_key(format!("not an RSA private key: {e}")))?;
            Material::Rsa(Arc::new(RsaKey::new(pair)))
        } else {
            return Err(unsupported(format!("cannot import {alg_name}")));
        };
        Ok(Self {
            algorithm,
            material,
            extractable,
        })
    }

    /// Generates a fresh key.
    pub(crate) fn generate(algorithm: Algorithm, extractable: bool) -> Result<Self, CryptoError> {
        let alg_name = name(algorithm);
        let failed = |_| bad_key(format!("generating a {alg_name} key failed"));
        let material = if let Some(alg) = hmac_algorithm(algorithm) {
            let mut secret = vec![0u8; alg.digest_algorithm().output_len];
            aws_lc_rs::rand::fill(&mut secret).map_err(failed)?;
            Material::Secret(secret.into())
        } else if let Some(alg) = aead_algorithm(algorithm) {
            let mut secret = vec![0u8; alg.key_len()];
            aws_lc_rs::rand::fill(&mut secret).map_err(failed)?;
            Material::Secret(secret.into())
        } else if let Some(signing) = ecdsa_signing(algorithm) {
            Material::Ecdsa(Arc::new(EcdsaKeyPair::generate(signing).map_err(failed)?))
        } else if algorithm == Algorithm::Ed25519 {
            Material::Ed25519(Arc::new(Ed25519KeyPair::generate().map_err(failed)?))
        } else if is_rsa(algorithm) {
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(failed)?;
            Material::Rsa(Arc::new(RsaKey::new(pair)))
        } else {
            return Err(unsupported(format!("cannot generate {alg_name}")));
        };
        Ok(Self {
            algorithm,
            material,
            extractable,
        })
    }

    /// What the key counts against a request's key budget: its secret, or a flat size for
    /// an asymmetric key (what aws-lc holds for it, roughly).
    pub(crate) fn cost(&self) -> usize {
        match &self.material {
            Material::Secret(secret) => secret.len() + 64,
            Material::Public(bytes) | Material::PublicSpki(bytes) => bytes.len() + 512,
            _ => 4096,
        }
    }

    pub(crate) fn is_private(&self) -> bool {
        !matches!(self.material, Material::Public(_) | Material::PublicSpki(_))
    }

    /// The secret or private part, if the key is extractable.
    pub(crate) fn export(&self, format: KeyFormat) -> Result<Vec<u8>, CryptoError> {
        if !self.extractable {
            return Err(CryptoError::NotPermitted(
                "the key is not extractable".to_owned(),
            ));
        }
        let encoded = |d: Option<Vec<u8>>| d.ok_or_else(|| bad_key("the key cannot be encoded"));
        match (&self.material, format) {
            (Material::Secret(secret), KeyFormat::Raw) => Ok(secret.to_vec()),
            (Material::Secret(secret), KeyFormat::Jwk) => {
                use base64::Engine;
                let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
                Ok(serde_json::json!({ "kty": "oct", "k": k })
                    .to_string()
                    .into_bytes())
            }
            (Material::Ecdsa(pair), KeyFormat::Pkcs8) => {
                encoded(pair.to_pkcs8v1().ok().map(|d| d.as_ref().to_vec()))
            }
            (Material::Ed25519(pair), KeyFormat::Pkcs8) => {
                encoded(pair.to_pkcs8v1().ok().map(|d| d.as_ref().to_vec()))
            }
            (Material::Rsa(pair), KeyFormat::Pkcs8) => encoded(
                AsDer::<Pkcs8V1Der<'static>>::as_der(&**pair.as_ref())
                    .ok()
                    .map(|d| d.as_ref().to_vec()),
            ),
            (Material::Public(_) | Material::PublicSpki(_), _) => {
                Err(unsupported("a public key has no private part"))
            }
            _ => Err(unsupported(format!(
                "{} keys do not export as {format:?}",
                name(self.algorithm)
            ))),
        }
    }

    /// The public half.
    pub(crate) fn public_key(&self, format: KeyFormat) -> Result<Vec<u8>, CryptoError> {
        let spki = |d: Result<PublicKeyX509Der<'static>, _>| {
            d.map(|d| d.as_ref().to_vec())
                .map_err(|_| bad_key("the public key cannot be encoded"))
        };
        match (&self.material, format) {
            (Material::Secret(_), _) => Err(unsupported("a secret key has no public half")),
            (_, KeyFormat::Pkcs8) => Err(unsupported("a public key is raw, spki or jwk")),
            (Material::PublicSpki(bytes), KeyFormat::Spki) => Ok(bytes.to_vec()),
            (Material::PublicSpki(_), _) => Err(unsupported(
                "a public key imported as SPKI is given back as SPKI",
            )),
            (Material::Public(bytes), KeyFormat::Jwk) => super::jwk::public(self.algorithm, bytes),
            (Material::Public(_), KeyFormat::Spki) => Err(unsupported(
                "a public key imported raw or as JWK is given back raw or as JWK",
            )),
            (Material::Public(bytes), _) => Ok(bytes.to_vec()),
            (_, KeyFormat::Jwk) => {
                super::jwk::public(self.algorithm, &self.public_key(KeyFormat::Raw)?)
            }
            (Material::Ecdsa(pair), KeyFormat::Raw) => Ok(pair.public_key().as_ref().to_vec()),
            (Material::Ecdsa(pair), KeyFormat::Spki) => spki(pair.public_key().as_der()),
            (Material::Ed25519(pair), KeyFormat::Raw) => Ok(pair.public_key().as_ref().to_vec()),
            (Material::Ed25519(pair), KeyFormat::Spki) => spki(pair.public_key().as_der()),
            (Material::Rsa(pair), KeyFormat::Raw) => Ok(pair.public_key().as_ref().to_vec()),
            (Material::Rsa(pair), KeyFormat::Spki) => spki(pair.public_key().as_der()),
        }
    }

    pub(crate) fn sign(
        &self,
        data: &[u8],
        encoding: SignatureEncoding,
    ) -> Result<Vec<u8>, CryptoError> {
        let failed = |_| bad_input("signing failed");
        match &self.material {
            Material::Secret(secret) => {
                let alg = hmac_algorithm(self.algorithm).ok_or_else(|| {
                    unsupported(format!("{} does not sign", name(self.algorithm)))
                })?;
                Ok(hmac::sign(&hmac::Key::new(alg, secret), data)
                    .as_ref()
                    .to_vec())
            }
            Material::Ecdsa(pair) => {
                let der = pair.sign(&SystemRandom::new(), data).map_err(failed)?;
                match encoding {
                    SignatureEncoding::Der => Ok(der.as_ref().to_vec()),
                    SignatureEncoding::P1363 => {
                        let width = if self.algorithm == Algorithm::EcdsaP256Sha256 {
                            32
                        } else {
                            48
                        };
                        der_to_p1363(der.as_ref(), width)
                            .ok_or_else(|| bad_input("re-encoding the signature failed"))
                    }
                }
            }
            Material::Ed25519(pair) => Ok(pair.sign(data).as_ref().to_vec()),
            Material::Rsa(pair) => {
                let padding: &dyn signature::RsaEncoding = match self.algorithm {
                    Algorithm::RsaPssSha256 => &signature::RSA_PSS_SHA256,
                    Algorithm::RsaPssSha384 => &signature::RSA_PSS_SHA384,
                    Algorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
                    _ => {
                        return Err(CryptoError::NotPermitted(format!(
                            "a {} key signs only blinded messages (blind-sign)",
                            name(self.algorithm)
                        )));
                    }
                };
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &SystemRandom::new(), data, &mut out)
                    .map_err(failed)?;
                Ok(out)
            }
            Material::Public(_) | Material::PublicSpki(_) => Err(CryptoError::NotPermitted(
                "a public key cannot sign".to_owned(),
            )),
        }
    }

    pub(crate) fn verify(
        &self,
        data: &[u8],
        sig: &[u8],
        encoding: SignatureEncoding,
    ) -> Result<bool, CryptoError> {
        if let Material::Secret(secret) = &self.material {
            let alg = hmac_algorithm(self.algorithm)
                .ok_or_else(|| unsupported(format!("{} does not verify", name(self.algorithm))))?;
            let full = hmac::sign(&hmac::Key::new(alg, secret), data);
            let full = full.as_ref();
            // A tag may be truncated to no less than half the hash (RFC 2104 §5).
            if sig.len() > full.len() || sig.len() < full.len() / 2 {
                return Ok(false);
            }
            return Ok(
                aws_lc_rs::constant_time::verify_slices_are_equal(&full[..sig.len()], sig).is_ok(),
            );
        }
        let alg = verification(self.algorithm, encoding)
            .ok_or_else(|| unsupported(format!("{} does not verify", name(self.algorithm))))?;
        let public = match &self.material {
            Material::Public(bytes) | Material::PublicSpki(bytes) => bytes.to_vec(),
            _ => self.public_key(KeyFormat::Raw)?,
        };
        let key = signature::ParsedPublicKey::new(alg, &public)
            .map_err(|e| bad_key(format!("unusable public key: {e}")))?;
        Ok(key.verify_sig(data, sig).is_ok())
    }

    fn aead_key(&self) -> Result<aead::LessSafeKey, CryptoError> {
        let (Material::Secret(secret), Some(alg)) =
            (&self.material, aead_algorithm(self.algorithm))
        else {
            return Err(unsupported(format!(
                "{} does not encrypt",
                name(self.algorithm)
            )));
        };
        let key = aead::UnboundKey::new(alg, secret).map_err(|_| bad_key("bad AEAD key"))?;
        Ok(aead::LessSafeKey::new(key))
    }

    pub(crate) fn seal(
        &self,
        nonce: &[u8],
        aad: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let key = self.aead_key()?;
        let nonce = aead_nonce(nonce)?;
        let mut out = plain.to_vec();
        key.seal_in_place_append_tag(nonce, aead::Aad::from(aad), &mut out)
            .map_err(|_| bad_input("sealing failed"))?;
        Ok(out)
    }

    pub(crate) fn unseal(
        &self,
        nonce: &[u8],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let key = self.aead_key()?;
        let nonce = aead_nonce(nonce)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, aead::Aad::from(aad), &mut buf)
            .map_err(|_| bad_input("the ciphertext does not authenticate"))?;
        Ok(plain.to_vec())
    }
}

/// A 96-bit AEAD nonce, or an error naming the wrong length.
fn aead_nonce(nonce: &[u8]) -> Result<aead::Nonce, CryptoError> {
    aead::Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| bad_input(format!("the nonce must be 12 bytes, not {}", nonce.len())))
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` to `r || s`, each left-padded to `width` bytes.
fn der_to_p1363(der: &[u8], width: usize) -> Option<Vec<u8>> {
    let body = super::der::read_sequence(der)?;
    let (r, body) = super::der::read_integer(body)?;
    let (s, _) = super::der::read_integer(body)?;
    let mut out = vec![0u8; width * 2];
    let (first, second) = out.split_at_mut(width);
    for (value, slot) in [(r, first), (s, second)] {
        if value.len() > width {
            return None;
        }
        slot[width - value.len()..].copy_from_slice(value);
    }
    Some(out)
}
