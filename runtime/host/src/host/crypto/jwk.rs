//! JSON Web Keys (RFC 7517, key types of RFC 7518 §6 and RFC 8037): import into aws-lc-rs
//! keys, and the public half written back as a JWK.

use std::sync::Arc;

use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::der;
use super::keys::{Material, bad_key, name};
use crate::bindings::virga::edge::crypto::{Algorithm, CryptoError};

fn field(jwk: &Map<String, Value>, key: &str) -> Result<Vec<u8>, CryptoError> {
    let text = jwk
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_key(format!("the JWK has no \"{key}\"")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| bad_key(format!("the JWK's \"{key}\" is not base64url")))
}

fn text<'a>(jwk: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    jwk.get(key).and_then(Value::as_str)
}

/// Left-pads `bytes` to `width` (a JWK coordinate may come without leading zeros).
fn padded(bytes: &[u8], width: usize) -> Result<Vec<u8>, CryptoError> {
    let bytes = bytes
        .iter()
        .position(|&b| b != 0)
        .map_or(&bytes[bytes.len()..], |i| &bytes[i..]);
    if bytes.len() > width {
        return Err(bad_key("a JWK coordinate is too long for its curve"));
    }
    let mut out = vec![0u8; width - bytes.len()];
    out.extend_from_slice(bytes);
    Ok(out)
}

/// Parses a JWK for `algorithm`. `private` asks for the private part (which must be there).
pub(super) fn import(
    algorithm: Algorithm,
    data: &[u8],
    private: bool,
) -> Result<Material, CryptoError> {
    let jwk: Map<String, Value> = serde_json::from_slice(data)
        .map_err(|e| bad_key(format!("not a JWK (JSON object): {e}")))?;
    let kty = text(&jwk, "kty").ok_or_else(|| bad_key("the JWK has no \"kty\""))?;
    let wrong = || {
        bad_key(format!(
            "a JWK of kty \"{kty}\"{} is not a {} key",
            text(&jwk, "crv")
                .map(|c| format!(" crv \"{c}\""))
                .unwrap_or_default(),
            name(algorithm)
        ))
    };
    use Algorithm as A;
    match (algorithm, kty, text(&jwk, "crv")) {
        (
            A::HmacSha256
            | A::HmacSha384
            | A::HmacSha512
            | A::Aes128Gcm
            | A::Aes256Gcm
            | A::Chacha20Poly1305,
            "oct",
            _,
        ) => Ok(Material::Secret(field(&jwk, "k")?.into())),
        (A::EcdsaP256Sha256 | A::EcdsaP384Sha384, "EC", Some(crv)) => {
            let (width, signing, want) = if algorithm == A::EcdsaP256Sha256 {
                (
                    32,
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    "P-256",
                )
            } else {
                (
                    48,
                    &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                    "P-384",
                )
            };
            if crv != want {
                return Err(wrong());
            }
            let mut point = vec![4u8];
            point.extend(padded(&field(&jwk, "x")?, width)?);
            point.extend(padded(&field(&jwk, "y")?, width)?);
            if !private {
                return Ok(Material::Public(point.into()));
            }
            let d = padded(&field(&jwk, "d")?, width)?;
            let pair = EcdsaKeyPair::from_private_key_and_public_key(signing, &d, &point)
                .map_err(|e| bad_key(format!("the JWK's EC key is inconsistent: {e}")))?;
            Ok(Material::Ecdsa(Arc::new(pair)))
        }
        (A::Ed25519, "OKP", Some("Ed25519")) => {
            let x = field(&jwk, "x")?;
            if !private {
                return Ok(Material::Public(x.into()));
            }
            let pair = Ed25519KeyPair::from_seed_and_public_key(&field(&jwk, "d")?, &x)
                .map_err(|e| bad_key(format!("the JWK's Ed25519 key is inconsistent: {e}")))?;
            Ok(Material::Ed25519(Arc::new(pair)))
        }
        (alg, "RSA", _) if super::keys::is_rsa(alg) => {
            let (n, e) = (field(&jwk, "n")?, field(&jwk, "e")?);
            if !private {
                return Ok(Material::Public(der::write_sequence(&[&n, &e]).into()));
            }
            let mut parts = vec![vec![0u8], n, e];
            for key in ["d", "p", "q", "dp", "dq", "qi"] {
                parts.push(field(&jwk, key)?);
            }
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let pair = RsaKeyPair::from_der(&der::write_sequence(&refs))
                .map_err(|e| bad_key(format!("the JWK's RSA key is unusable: {e}")))?;
            Ok(Material::Rsa(Arc::new(super::keys::RsaKey::new(pair))))
        }
        _ => Err(wrong()),
    }
}

/// The public half of `material` as a JWK (JSON text).
pub(super) fn public(algorithm: Algorithm, raw_public: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use Algorithm as A;
    let b64 = |bytes: &[u8]| Value::from(URL_SAFE_NO_PAD.encode(bytes));
    let mut jwk = Map::new();
    match algorithm {
        A::EcdsaP256Sha256 | A::EcdsaP384Sha384 => {
            let width = if algorithm == A::EcdsaP256Sha256 {
                32
            } else {
                48
            };
            let point = raw_public
                .strip_prefix(&[4])
                .filter(|p| p.len() == 2 * width)
                .ok_or_else(|| bad_key("the public key is not an uncompressed point"))?;
            jwk.insert("kty".into(), "EC".into());
            let crv = if width == 32 { "P-256" } else { "P-384" };
            jwk.insert("crv".into(), crv.into());
            jwk.insert("x".into(), b64(&point[..width]));
            jwk.insert("y".into(), b64(&point[width..]));
        }
        A::Ed25519 => {
            jwk.insert("kty".into(), "OKP".into());
            jwk.insert("crv".into(), "Ed25519".into());
            jwk.insert("x".into(), b64(raw_public));
        }
        alg if super::keys::is_rsa(alg) => {
            let (n, e) = rsa_public_parts(raw_public)
                .ok_or_else(|| bad_key("the public key is not PKCS#1 RSAPublicKey DER"))?;
            jwk.insert("kty".into(), "RSA".into());
            jwk.insert("n".into(), b64(n));
            jwk.insert("e".into(), b64(e));
        }
        _ => return Err(bad_key("a secret key has no public half")),
    }
    Ok(Value::Object(jwk).to_string().into_bytes())
}

/// `n` and `e` of a PKCS#1 `RSAPublicKey`, without sign padding.
fn rsa_public_parts(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = der::read_sequence(der)?;
    let (n, rest) = der::read_integer(body)?;
    let (e, _) = der::read_integer(rest)?;
    Some((n, e))
}
