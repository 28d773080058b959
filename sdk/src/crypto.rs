//! Cryptography done by the host (`virga:edge/crypto`): keys stay in the host as handles.
//!
//! ```ignore
//! use virga_sdk::crypto::{Key, Hash, digest};
//!
//! // A key the host was configured with: usable, never readable.
//! let issuer = Key::open("issuer")?;
//! let signature = issuer.sign(b"token")?;
//! assert!(issuer.verify(b"token", &signature)?);
//! let id = digest(Hash::Sha256, b"token");
//! ```

use std::fmt;

use crate::bindings::virga::edge::crypto as host;

pub use host::{Algorithm, Blinding, Hash, KeyFormat, SignatureEncoding};

/// Why a crypto call failed. Bad input is always an error, never a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The algorithm cannot do that.
    Unsupported(String),
    /// The key material is malformed, the wrong size, or for another algorithm.
    BadKey(String),
    /// An input is malformed, or an AEAD ciphertext does not authenticate.
    BadInput(String),
    /// Not allowed on this key (exporting a non-extractable key).
    NotPermitted(String),
    /// No host key of that name for this deployment.
    NotFound(String),
}

impl From<host::CryptoError> for CryptoError {
    fn from(e: host::CryptoError) -> Self {
        match e {
            host::CryptoError::Unsupported(m) => Self::Unsupported(m),
            host::CryptoError::BadKey(m) => Self::BadKey(m),
            host::CryptoError::BadInput(m) => Self::BadInput(m),
            host::CryptoError::NotPermitted(m) => Self::NotPermitted(m),
            host::CryptoError::NotFound(m) => Self::NotFound(m),
        }
    }
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, message) = match self {
            Self::Unsupported(m) => ("unsupported", m),
            Self::BadKey(m) => ("bad key", m),
            Self::BadInput(m) => ("bad input", m),
            Self::NotPermitted(m) => ("not permitted", m),
            Self::NotFound(m) => ("not found", m),
        };
        write!(f, "{kind}: {message}")
    }
}

impl std::error::Error for CryptoError {}

/// A key held by the host.
pub struct Key(host::Key);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Key").field(&self.0.algorithm()).finish()
    }
}

impl Key {
    /// Opens the host key `name` configured for this deployment. It can sign, verify,
    /// encrypt, decrypt and give its public half, never its private part.
    pub fn open(name: &str) -> Result<Self, CryptoError> {
        Ok(Self(host::Key::open(name)?))
    }

    /// Imports a private key: PKCS#8 DER (EC also SEC1, RSA also PKCS#1), or with
    /// [`KeyFormat::Raw`] an Ed25519 seed. Not extractable.
    pub fn import_private(
        algorithm: Algorithm,
        format: KeyFormat,
        data: &[u8],
    ) -> Result<Self, CryptoError> {
        Ok(Self(host::Key::import(
            algorithm, format, data, true, false,
        )?))
    }

    /// Imports a public key: SPKI DER, or with [`KeyFormat::Raw`] an EC point, an Ed25519
    /// point or a PKCS#1 RSA public key.
    pub fn import_public(
        algorithm: Algorithm,
        format: KeyFormat,
        data: &[u8],
    ) -> Result<Self, CryptoError> {
        Ok(Self(host::Key::import(
            algorithm, format, data, false, true,
        )?))
    }

    /// Imports an HMAC or AEAD secret. Not extractable.
    pub fn import_secret(algorithm: Algorithm, secret: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self(host::Key::import(
            algorithm,
            KeyFormat::Raw,
            secret,
            true,
            false,
        )?))
    }

    /// Generates a key that never leaves the host.
    pub fn generate(algorithm: Algorithm) -> Result<Self, CryptoError> {
        Ok(Self(host::Key::generate(algorithm, false)?))
    }

    /// Generates a key that [`export`](Self::export) can read.
    pub fn generate_extractable(algorithm: Algorithm) -> Result<Self, CryptoError> {
        Ok(Self(host::Key::generate(algorithm, true)?))
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }

    /// The private or secret part, for an extractable key.
    pub fn export(&self, format: KeyFormat) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.export(format)?)
    }

    /// The public half of an asymmetric key.
    pub fn public_key(&self, format: KeyFormat) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.public_key(format)?)
    }

    /// Signs (or MACs) `data`; ECDSA signatures are DER.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.sign(data, SignatureEncoding::Der)?)
    }

    /// Signs with ECDSA, the signature as fixed-width `r || s` (JOSE, WebCrypto).
    pub fn sign_p1363(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.sign(data, SignatureEncoding::P1363)?)
    }

    /// Whether `signature` (DER for ECDSA) is valid for `data`; MACs compare in constant time.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        Ok(self.0.verify(data, signature, SignatureEncoding::Der)?)
    }

    /// Whether a fixed-width `r || s` ECDSA signature is valid for `data`.
    pub fn verify_p1363(&self, data: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        Ok(self.0.verify(data, signature, SignatureEncoding::P1363)?)
    }

    /// RSA blind signatures (RFC 9474), client side: prepares and blinds `message` under this
    /// public key (an `Rsabssa*` algorithm). Send [`Blinding::blinded_message`] to the
    /// signer; keep the rest for [`finalize`](Self::finalize). A verifier needs
    /// [`Blinding::prepared_message`], which for the randomized variant is `message` with a
    /// 32-byte random prefix.
    ///
    /// ```ignore
    /// use virga_sdk::crypto::{Algorithm, Key, KeyFormat};
    ///
    /// let issuer = Key::import_public(Algorithm::RsabssaSha384PssDeterministic, KeyFormat::Spki, &spki)?;
    /// let blinding = issuer.blind(b"token input")?;
    /// let blind_signature = ask_the_issuer(&blinding.blinded_message)?;
    /// let signature = issuer.finalize(&blinding, &blind_signature)?;
    /// assert!(issuer.verify(&blinding.prepared_message, &signature)?);
    /// ```
    pub fn blind(&self, message: &[u8]) -> Result<Blinding, CryptoError> {
        Ok(self.0.blind(message)?)
    }

    /// RSA blind signatures (RFC 9474), signer side: signs a blinded message (as long as the
    /// modulus) with this private key. The signer learns nothing of the message.
    pub fn blind_sign(&self, blinded_message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.blind_sign(blinded_message)?)
    }

    /// RSA blind signatures (RFC 9474), client side: turns the signer's answer into a
    /// signature over [`Blinding::prepared_message`], checked before it is returned
    /// ([`CryptoError::BadInput`] if it does not verify).
    pub fn finalize(
        &self,
        blinding: &Blinding,
        blind_signature: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.finalize(
            &blinding.prepared_message,
            blind_signature,
            &blinding.inverse,
        )?)
    }

    /// AEAD encryption; the tag is appended. `nonce` is 12 bytes and must never repeat for
    /// a key.
    pub fn seal(&self, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.seal(nonce, aad, plaintext)?)
    }

    /// AEAD decryption; [`CryptoError::BadInput`] if it does not authenticate.
    pub fn unseal(
        &self,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        Ok(self.0.unseal(nonce, aad, ciphertext)?)
    }
}

/// A digest of `data`.
pub fn digest(hash: Hash, data: &[u8]) -> Vec<u8> {
    host::digest(hash, data)
}

/// HKDF (RFC 5869): `length` bytes derived from `ikm` with `salt` and `info`.
pub fn hkdf(
    hash: Hash,
    ikm: &[u8],
    salt: &[u8],
    info: &[u8],
    length: u32,
) -> Result<Vec<u8>, CryptoError> {
    Ok(host::hkdf(hash, ikm, salt, info, length)?)
}

/// Whether `a == b`, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    host::constant_time_equal(a, b)
}
