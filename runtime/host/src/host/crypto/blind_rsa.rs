//! RSA blind signatures (RFC 9474): RSABSSA-SHA384-PSS-Randomized and -Deterministic. The
//! client blinds (§4.1 Prepare, §4.2 Blind) and finalizes (§4.4); the signer blind-signs with a
//! private key that never leaves the host (§4.3). The result is an ordinary RSASSA-PSS
//! signature (SHA-384, MGF1-SHA-384, 48-byte salt), checked with the key's `verify`.

use aws_lc_rs::digest::{self, SHA384};

use super::aws_lc::{Modulus, Rsa};
use super::keys::{KeyHandle, Material, bad_input, bad_key, name};
use crate::bindings::virga::edge::crypto::{Algorithm, Blinding, CryptoError, SignatureEncoding};

/// SHA-384's output length, which is also the salt length of both variants.
const HASH_LEN: usize = 48;
/// The randomized variant's message prefix (RFC 9474 §4.1).
const PREFIX_LEN: usize = 32;

fn failed(step: &str) -> impl Fn(super::aws_lc::AwsLcError) -> CryptoError + '_ {
    move |_| bad_input(format!("{step} failed"))
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with SHA-384, MGF1-SHA-384 and `salt`, into
/// `ceil(em_bits / 8)` bytes.
fn emsa_pss_encode(msg: &[u8], em_bits: usize, salt: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let em_len = em_bits.div_ceil(8);
    if em_len < HASH_LEN + salt.len() + 2 {
        return Err(bad_key("the modulus is too short for PSS with SHA-384"));
    }
    let m_hash = digest::digest(&SHA384, msg);
    let mut m_prime = digest::Context::new(&SHA384);
    m_prime.update(&[0u8; 8]);
    m_prime.update(m_hash.as_ref());
    m_prime.update(salt);
    let h = m_prime.finish();
    // EM = maskedDB || H || 0xbc, with DB = PS || 0x01 || salt.
    let db_len = em_len - HASH_LEN - 1;
    let mut em = vec![0u8; em_len];
    em[db_len - salt.len() - 1] = 0x01;
    em[db_len - salt.len()..db_len].copy_from_slice(salt);
    mgf1_xor(&mut em[..db_len], h.as_ref());
    em[0] &= 0xff >> (8 * em_len - em_bits);
    em[db_len..em_len - 1].copy_from_slice(h.as_ref());
    em[em_len - 1] = 0xbc;
    Ok(em)
}

/// XORs MGF1-SHA-384(`seed`) (RFC 8017 §B.2.1) into `out`.
fn mgf1_xor(out: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(HASH_LEN)) {
        let mut block = digest::Context::new(&SHA384);
        block.update(seed);
        block.update(&counter.to_be_bytes());
        for (byte, mask) in chunk.iter_mut().zip(block.finish().as_ref()) {
            *byte ^= mask;
        }
    }
}

/// RFC 9474 §4.2 Blind, with the salt and blinding factor `r` given: `(blinded, inverse)`.
fn blind_with(
    key: &Rsa,
    prepared: &[u8],
    salt: &[u8],
    r: impl FnOnce(&Modulus<'_>) -> Result<super::aws_lc::Number, CryptoError>,
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let encoded = emsa_pss_encode(prepared, key.bits() - 1, salt)?;
    let modulus = Modulus::of(key).map_err(failed("blinding"))?;
    let m = modulus.number(&encoded).map_err(failed("encoding"))?;
    if !modulus.is_coprime(&m).map_err(failed("blinding"))? {
        return Err(bad_input(
            "the encoded message is not coprime with the modulus",
        ));
    }
    let r = r(&modulus)?;
    let inverse = modulus
        .inverse(&r)
        .map_err(failed("blinding"))?
        .ok_or_else(|| bad_input("blinding error: the blinding factor has no inverse"))?;
    // x = RSAVP1(pk, r); z = m · x mod n.
    let x = key
        .public_op(&modulus.bytes(&r).map_err(failed("blinding"))?)
        .map_err(failed("blinding"))?;
    let x = modulus.number(&x).map_err(failed("blinding"))?;
    let z = modulus.mul(&m, &x).map_err(failed("blinding"))?;
    Ok((
        modulus.bytes(&z).map_err(failed("blinding"))?,
        modulus.bytes(&inverse).map_err(failed("blinding"))?,
    ))
}

impl KeyHandle {
    /// Whether this is an RSA blind-signature key of the randomized variant; an error for
    /// algorithms that do not blind.
    fn randomized(&self) -> Result<bool, CryptoError> {
        match self.algorithm {
            Algorithm::RsabssaSha384PssRandomized => Ok(true),
            Algorithm::RsabssaSha384PssDeterministic => Ok(false),
            other => Err(CryptoError::Unsupported(format!(
                "{} keys do not make blind signatures (rsabssa-sha384-pss-* keys do)",
                name(other)
            ))),
        }
    }

    /// Runs `op` on the key in aws-lc's raw form: the private key's (built once and shared),
    /// or the public key parsed for this call.
    fn with_raw<T>(
        &self,
        op: impl FnOnce(&Rsa) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        let unusable = |_| bad_key("the RSA key is unusable for blind signatures");
        match &self.material {
            Material::Rsa(pair) => op(pair.raw().map_err(unusable)?),
            Material::Public(pkcs1) => op(&Rsa::from_public_pkcs1(pkcs1).map_err(unusable)?),
            Material::PublicSpki(spki) => op(&Rsa::from_spki(spki).map_err(unusable)?),
            _ => Err(bad_key("not an RSA key")),
        }
    }

    /// RFC 9474 §4.1 Prepare and §4.2 Blind.
    pub(crate) fn blind(&self, message: &[u8]) -> Result<Blinding, CryptoError> {
        let mut prepared = Vec::with_capacity(PREFIX_LEN + message.len());
        let mut salt = [0u8; HASH_LEN];
        let random = |buf: &mut [u8]| {
            aws_lc_rs::rand::fill(buf).map_err(|_| bad_input("no randomness for blinding"))
        };
        if self.randomized()? {
            prepared.resize(PREFIX_LEN, 0);
            random(&mut prepared)?;
        }
        prepared.extend_from_slice(message);
        random(&mut salt)?;
        let (blinded_message, inverse) = self.with_raw(|key| {
            blind_with(key, &prepared, &salt, |modulus| {
                modulus.random().map_err(failed("blinding"))
            })
        })?;
        Ok(Blinding {
            prepared_message: prepared,
            blinded_message,
            inverse,
        })
    }

    /// RFC 9474 §4.3 BlindSign: `s = RSASP1(sk, m)`, checked against `RSAVP1(pk, s) = m`.
    pub(crate) fn blind_sign(&self, blinded: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.randomized()?;
        if !self.is_private() {
            return Err(CryptoError::NotPermitted(
                "a public key cannot blind-sign".to_owned(),
            ));
        }
        self.with_raw(|key| {
            if blinded.len() != key.size() {
                return Err(bad_input(format!(
                    "a blinded message is {} bytes (the modulus), not {}",
                    key.size(),
                    blinded.len()
                )));
            }
            let modulus = Modulus::of(key).map_err(failed("blind signing"))?;
            modulus
                .number(blinded)
                .map_err(|_| bad_input("the blinded message is not smaller than the modulus"))?;
            let signature = key.private_op(blinded).map_err(failed("blind signing"))?;
            // Step 3-4: a faulty computation must not leave the host.
            match key.public_op(&signature) {
                Ok(back) if back == blinded => Ok(signature),
                _ => Err(bad_key("signing failure: the signature does not check")),
            }
        })
    }

    /// RFC 9474 §4.4 Finalize: unblinds and checks the signature over `prepared`.
    pub(crate) fn finalize(
        &self,
        prepared: &[u8],
        blind_signature: &[u8],
        inverse: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.randomized()?;
        let signature = self.with_raw(|key| {
            let size = key.size();
            for (what, value) in [("blind signature", blind_signature), ("inverse", inverse)] {
                if value.len() != size {
                    return Err(bad_input(format!(
                        "the {what} is {size} bytes (the modulus), not {}",
                        value.len()
                    )));
                }
            }
            let modulus = Modulus::of(key).map_err(failed("finalizing"))?;
            let z = modulus
                .number(blind_signature)
                .map_err(|_| bad_input("the blind signature is not smaller than the modulus"))?;
            let inverse = modulus
                .number(inverse)
                .map_err(|_| bad_input("the inverse is not smaller than the modulus"))?;
            let s = modulus.mul(&z, &inverse).map_err(failed("finalizing"))?;
            modulus.bytes(&s).map_err(failed("finalizing"))
        })?;
        if self.verify(prepared, &signature, SignatureEncoding::Der)? {
            Ok(signature)
        } else {
            Err(bad_input(
                "invalid signature: the blind signature does not finalize into a signature \
                 over this message (another key, message or inverse)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::virga::edge::crypto::KeyFormat;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 9474 Appendix A, shared with the spec tests (which run them through a guest).
    fn vectors() -> serde_json::Value {
        let text = include_str!("../../../../../spec-tests/vectors/rfc9474.json");
        serde_json::from_str(text).unwrap()
    }

    /// Blind with the vector's salt and blinding factor (`r` = the inverse of `inv`): the
    /// encoded and blinded messages are the RFC's.
    #[test]
    fn blind_matches_rfc_9474_vectors() {
        let all = vectors();
        let pkcs8 = unhex(all["key"]["pkcs8"].as_str().unwrap());
        let key = Rsa::from_pkcs8(&pkcs8).unwrap();
        for vector in all["vectors"].as_array().unwrap() {
            let field = |name: &str| unhex(vector[name].as_str().unwrap());
            let prepared = field("prepared_msg");
            assert_eq!(
                emsa_pss_encode(&prepared, key.bits() - 1, &field("salt")).unwrap(),
                field("encoded_msg"),
                "{}",
                vector["name"]
            );
            let (blinded, inverse) = blind_with(&key, &prepared, &field("salt"), |modulus| {
                let inv = modulus.number(&field("inv")).unwrap();
                Ok(modulus.inverse(&inv).unwrap().unwrap())
            })
            .unwrap();
            assert_eq!(blinded, field("blinded_msg"), "{}", vector["name"]);
            assert_eq!(inverse, field("inv"), "{}", vector["name"]);
        }
    }

    #[test]
    fn a_signature_that_does_not_check_is_refused() {
        let all = vectors();
        let pkcs8 = unhex(all["key"]["pkcs8"].as_str().unwrap());
        let vector = &all["vectors"][1];
        let field = |name: &str| unhex(vector[name].as_str().unwrap());
        let key = KeyHandle::import(
            Algorithm::RsabssaSha384PssDeterministic,
            KeyFormat::Pkcs8,
            &pkcs8,
            true,
            false,
        )
        .unwrap();
        let sig = key
            .finalize(&field("prepared_msg"), &field("blind_sig"), &field("inv"))
            .unwrap();
        assert_eq!(sig, field("sig"));
        let mut other = field("prepared_msg");
        other[0] ^= 1;
        let err = key
            .finalize(&other, &field("blind_sig"), &field("inv"))
            .unwrap_err();
        assert!(matches!(err, CryptoError::BadInput(m) if m.contains("invalid signature")));
    }

    #[test]
    fn a_public_key_cannot_blind_sign() {
        let all = vectors();
        let pkcs8 = unhex(all["key"]["pkcs8"].as_str().unwrap());
        let alg = Algorithm::RsabssaSha384PssRandomized;
        let private = KeyHandle::import(alg, KeyFormat::Pkcs8, &pkcs8, true, false).unwrap();
        let spki = private.public_key(KeyFormat::Spki).unwrap();
        let public = KeyHandle::import(alg, KeyFormat::Spki, &spki, false, true).unwrap();
        let blinding = public.blind(b"message").unwrap();
        let err = public.blind_sign(&blinding.blinded_message).unwrap_err();
        assert!(matches!(err, CryptoError::NotPermitted(_)), "{err:?}");
        let blind_signature = private.blind_sign(&blinding.blinded_message).unwrap();
        let signature = public
            .finalize(
                &blinding.prepared_message,
                &blind_signature,
                &blinding.inverse,
            )
            .unwrap();
        assert!(
            public
                .verify(
                    &blinding.prepared_message,
                    &signature,
                    SignatureEncoding::Der
                )
                .unwrap()
        );
    }
}
