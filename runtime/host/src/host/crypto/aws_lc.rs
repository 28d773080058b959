//! The few aws-lc calls that aws-lc-rs does not expose and RSA blind signatures (RFC 9474)
//! need: the raw RSA operations without padding and big-number arithmetic modulo `n`. Each
//! object is owned by a small type that frees it; nothing else in the host uses `unsafe`.
#![allow(unsafe_code)]

use std::ptr::{self, NonNull};

use aws_lc_sys as ffi;

/// What failed in aws-lc; the caller turns it into a guest-visible error.
#[derive(Debug)]
pub(crate) struct AwsLcError;

fn check(ok: std::os::raw::c_int) -> Result<(), AwsLcError> {
    if ok == 1 {
        Ok(())
    } else {
        // SAFETY: clears this thread's aws-lc error queue, so the failure does not linger
        // into an unrelated later call.
        unsafe { ffi::ERR_clear_error() };
        Err(AwsLcError)
    }
}

fn owned<T>(pointer: *mut T) -> Result<NonNull<T>, AwsLcError> {
    NonNull::new(pointer).ok_or_else(|| {
        // SAFETY: as in `check`.
        unsafe { ffi::ERR_clear_error() };
        AwsLcError
    })
}

/// The signature `RSA_verify_raw` and `RSA_sign_raw` share.
type RawOp = unsafe extern "C" fn(
    *mut ffi::RSA,
    *mut usize,
    *mut u8,
    usize,
    *const u8,
    usize,
    std::os::raw::c_int,
) -> std::os::raw::c_int;

/// An aws-lc `RSA` key: public, or private with its public part.
pub(crate) struct Rsa(NonNull<ffi::RSA>);

// SAFETY: aws-lc `RSA` objects may be used from several threads at once; what they build
// lazily (Montgomery contexts, blinding values) is guarded by the object's own lock. aws-lc-rs
// relies on the same for its key types.
unsafe impl Send for Rsa {}
// SAFETY: see `Send`.
unsafe impl Sync for Rsa {}

impl Drop for Rsa {
    fn drop(&mut self) {
        // SAFETY: we own this reference.
        unsafe { ffi::RSA_free(self.0.as_ptr()) }
    }
}

impl Rsa {
    /// A private key from PKCS#8 DER (nothing may follow it).
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, AwsLcError> {
        Self::parse(ffi::EVP_parse_private_key, der)
    }

    /// A public key from PKCS#1 `RSAPublicKey` DER.
    pub(crate) fn from_public_pkcs1(der: &[u8]) -> Result<Self, AwsLcError> {
        // SAFETY: reads `der` for the call; returns a new object or null.
        owned(unsafe { ffi::RSA_public_key_from_bytes(der.as_ptr(), der.len()) }).map(Self)
    }

    /// A public key from X.509 `SubjectPublicKeyInfo` DER (nothing may follow it).
    pub(crate) fn from_spki(der: &[u8]) -> Result<Self, AwsLcError> {
        Self::parse(ffi::EVP_parse_public_key, der)
    }

    /// An RSA key out of `der` by an EVP parser (`EVP_parse_private_key`,
    /// `EVP_parse_public_key`); nothing may follow it.
    fn parse(
        parser: unsafe extern "C" fn(*mut ffi::CBS) -> *mut ffi::EVP_PKEY,
        der: &[u8],
    ) -> Result<Self, AwsLcError> {
        let mut cbs = ffi::CBS {
            data: der.as_ptr(),
            len: der.len(),
        };
        // SAFETY: `cbs` borrows `der` for the call; the EVP_PKEY is ours and freed here, the
        // RSA reference taken from it is ours too.
        unsafe {
            let pkey = owned(parser(&mut cbs))?;
            let rsa = ffi::EVP_PKEY_get1_RSA(pkey.as_ptr());
            ffi::EVP_PKEY_free(pkey.as_ptr());
            let rsa = Self(owned(rsa)?);
            if cbs.len != 0 {
                return Err(AwsLcError);
            }
            Ok(rsa)
        }
    }

    /// The modulus length in bytes.
    pub(crate) fn size(&self) -> usize {
        // SAFETY: a valid key.
        unsafe { ffi::RSA_size(self.0.as_ptr()) as usize }
    }

    /// The modulus length in bits.
    pub(crate) fn bits(&self) -> usize {
        // SAFETY: a valid key.
        unsafe { ffi::RSA_bits(self.0.as_ptr()) as usize }
    }

    /// The modulus.
    fn n(&self) -> *const ffi::BIGNUM {
        // SAFETY: a valid key; the modulus lives as long as the key.
        unsafe { ffi::RSA_get0_n(self.0.as_ptr()) }
    }

    /// RSAVP1 (RFC 8017 §5.2.2): `input^e mod n`. `input` is `size()` bytes, below `n`.
    pub(crate) fn public_op(&self, input: &[u8]) -> Result<Vec<u8>, AwsLcError> {
        self.raw(ffi::RSA_verify_raw, input)
    }

    /// RSASP1 (RFC 8017 §5.2.1): `input^d mod n` with aws-lc's private-key operation (CRT,
    /// blinded, constant time). `input` is `size()` bytes, below `n`; needs a private key.
    pub(crate) fn private_op(&self, input: &[u8]) -> Result<Vec<u8>, AwsLcError> {
        self.raw(ffi::RSA_sign_raw, input)
    }

    /// One of aws-lc's raw RSA operations (`RSA_verify_raw`, `RSA_sign_raw`) without padding.
    fn raw(&self, op: RawOp, input: &[u8]) -> Result<Vec<u8>, AwsLcError> {
        let mut out = vec![0u8; self.size()];
        let mut written = 0usize;
        // SAFETY: `out` has room for `size()` bytes; `input` is read for the call.
        check(unsafe {
            op(
                self.0.as_ptr(),
                &mut written,
                out.as_mut_ptr(),
                out.len(),
                input.as_ptr(),
                input.len(),
                ffi::RSA_NO_PADDING,
            )
        })?;
        out.truncate(written);
        Ok(out)
    }
}

/// Arithmetic modulo an RSA key's `n`, for blinding and unblinding (RFC 9474 §4.2, §4.4).
pub(crate) struct Modulus<'a> {
    key: &'a Rsa,
    ctx: NonNull<ffi::BN_CTX>,
    mont: NonNull<ffi::BN_MONT_CTX>,
}

impl Drop for Modulus<'_> {
    fn drop(&mut self) {
        // SAFETY: we own both.
        unsafe {
            ffi::BN_MONT_CTX_free(self.mont.as_ptr());
            ffi::BN_CTX_free(self.ctx.as_ptr());
        }
    }
}

/// A big number, cleared when dropped (blinding values are secret).
pub(crate) struct Number(NonNull<ffi::BIGNUM>);

impl Drop for Number {
    fn drop(&mut self) {
        // SAFETY: we own it.
        unsafe { ffi::BN_clear_free(self.0.as_ptr()) }
    }
}

impl Number {
    fn new() -> Result<Self, AwsLcError> {
        // SAFETY: returns a new number or null.
        owned(unsafe { ffi::BN_new() }).map(Self)
    }
}

impl<'a> Modulus<'a> {
    /// Arithmetic modulo `key`'s modulus.
    pub(crate) fn of(key: &'a Rsa) -> Result<Self, AwsLcError> {
        // SAFETY: new objects or null; the Montgomery context copies what it needs of `n`.
        unsafe {
            let ctx = owned(ffi::BN_CTX_new())?;
            let mont = match owned(ffi::BN_MONT_CTX_new_for_modulus(key.n(), ctx.as_ptr())) {
                Ok(mont) => mont,
                Err(e) => {
                    ffi::BN_CTX_free(ctx.as_ptr());
                    return Err(e);
                }
            };
            Ok(Self { key, ctx, mont })
        }
    }

    /// The big-endian `bytes` as a number, if it is below `n`.
    pub(crate) fn number(&self, bytes: &[u8]) -> Result<Number, AwsLcError> {
        // SAFETY: reads `bytes` for the call; a new number or null.
        let number = Number(owned(unsafe {
            ffi::BN_bin2bn(bytes.as_ptr(), bytes.len(), ptr::null_mut())
        })?);
        // SAFETY: both valid.
        if unsafe { ffi::BN_ucmp(number.0.as_ptr(), self.key.n()) } >= 0 {
            return Err(AwsLcError);
        }
        Ok(number)
    }

    /// `x` as exactly `size()` big-endian bytes.
    pub(crate) fn bytes(&self, x: &Number) -> Result<Vec<u8>, AwsLcError> {
        let mut out = vec![0u8; self.key.size()];
        // SAFETY: `out` has room for the length given.
        check(unsafe { ffi::BN_bn2bin_padded(out.as_mut_ptr(), out.len(), x.0.as_ptr()) })?;
        Ok(out)
    }

    /// A uniformly random number in `[1, n)`.
    pub(crate) fn random(&self) -> Result<Number, AwsLcError> {
        let r = Number::new()?;
        // SAFETY: valid numbers.
        check(unsafe { ffi::BN_rand_range_ex(r.0.as_ptr(), 1, self.key.n()) })?;
        Ok(r)
    }

    /// Whether `gcd(x, n) = 1`.
    pub(crate) fn is_coprime(&self, x: &Number) -> Result<bool, AwsLcError> {
        let gcd = Number::new()?;
        // SAFETY: valid numbers and context.
        unsafe {
            check(ffi::BN_gcd(
                gcd.0.as_ptr(),
                x.0.as_ptr(),
                self.key.n(),
                self.ctx.as_ptr(),
            ))?;
            Ok(ffi::BN_is_one(gcd.0.as_ptr()) == 1)
        }
    }

    /// `x⁻¹ mod n`, computed blinded (its timing does not depend on `x`); `None` when `x` has
    /// no inverse.
    pub(crate) fn inverse(&self, x: &Number) -> Result<Option<Number>, AwsLcError> {
        let out = Number::new()?;
        let mut no_inverse = 0;
        // SAFETY: valid numbers and contexts; `x < n` as `number` and `random` ensure.
        let ok = unsafe {
            ffi::BN_mod_inverse_blinded(
                out.0.as_ptr(),
                &mut no_inverse,
                x.0.as_ptr(),
                self.mont.as_ptr(),
                self.ctx.as_ptr(),
            )
        };
        if no_inverse != 0 {
            // SAFETY: as in `check`.
            unsafe { ffi::ERR_clear_error() };
            return Ok(None);
        }
        check(ok)?;
        Ok(Some(out))
    }

    /// `a · b mod n`.
    pub(crate) fn mul(&self, a: &Number, b: &Number) -> Result<Number, AwsLcError> {
        let out = Number::new()?;
        // SAFETY: valid numbers and context.
        check(unsafe {
            ffi::BN_mod_mul(
                out.0.as_ptr(),
                a.0.as_ptr(),
                b.0.as_ptr(),
                self.key.n(),
                self.ctx.as_ptr(),
            )
        })?;
        Ok(out)
    }
}
