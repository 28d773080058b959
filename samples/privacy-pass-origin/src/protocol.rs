//! Privacy Pass wire formats for token type 0x0002, Blind RSA with a 2048-bit key (RFC 9578
//! §6), and the `PrivateToken` HTTP authentication scheme (RFC 9577 §2). Shared by the origin
//! and issuer samples.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

/// Blind RSA (RFC 9578 §6).
pub const TOKEN_TYPE: u16 = 0x0002;
/// `Nk`: the authenticator and blind signature length of an RSA-2048 key.
pub const NK: usize = 256;
/// `Nid`: the token key ID length (SHA-256).
pub const NID: usize = 32;
/// `token_type || nonce || challenge_digest || token_key_id` (RFC 9577 §2.2).
pub const TOKEN_INPUT_LEN: usize = 2 + 32 + 32 + NID;
/// A whole type-2 token.
pub const TOKEN_LEN: usize = TOKEN_INPUT_LEN + NK;
/// A type-2 TokenRequest: `token_type || truncated_token_key_id || blinded_msg` (§6.1).
pub const REQUEST_LEN: usize = 2 + 1 + NK;

/// base64url, with or without padding (RFC 9577 §2.2.2 lets clients send either).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .ok()
}

/// base64url with padding: RFC 4648 §5 as it stands (RFC 9577 does not drop the padding),
/// and what strict parsers such as Cloudflare's privacypass-ts require.
pub fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE.encode(bytes)
}

/// A TokenChallenge (RFC 9577 §2.1.1), encoded.
pub fn challenge(
    issuer_name: &str,
    redemption_context: &[u8],
    origin_info: &str,
) -> Result<Vec<u8>, String> {
    if issuer_name.is_empty() || issuer_name.len() > 0xffff || origin_info.len() > 0xffff {
        return Err("issuer_name must be 1 to 65535 bytes, origin_info at most 65535".into());
    }
    if !matches!(redemption_context.len(), 0 | 32) {
        return Err("redemption_context must be empty or 32 bytes".into());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&TOKEN_TYPE.to_be_bytes());
    out.extend_from_slice(&(issuer_name.len() as u16).to_be_bytes());
    out.extend_from_slice(issuer_name.as_bytes());
    out.push(redemption_context.len() as u8);
    out.extend_from_slice(redemption_context);
    out.extend_from_slice(&(origin_info.len() as u16).to_be_bytes());
    out.extend_from_slice(origin_info.as_bytes());
    Ok(out)
}

/// A type-2 token's parts (RFC 9577 §2.2).
#[derive(Debug)]
pub struct Token<'a> {
    /// What the authenticator signs: everything before it.
    pub input: &'a [u8],
    pub nonce: &'a [u8],
    pub challenge_digest: &'a [u8],
    pub token_key_id: &'a [u8],
    pub authenticator: &'a [u8],
}

/// Splits a token, checking its type first, then its length.
pub fn parse_token(bytes: &[u8]) -> Result<Token<'_>, String> {
    let Some(kind) = bytes.get(..2) else {
        return Err(format!("the token is {} bytes, too short", bytes.len()));
    };
    let kind = u16::from_be_bytes([kind[0], kind[1]]);
    if kind != TOKEN_TYPE {
        return Err(format!(
            "token type {kind:#06x} is not accepted here (only {TOKEN_TYPE:#06x}, Blind RSA)"
        ));
    }
    if bytes.len() != TOKEN_LEN {
        return Err(format!(
            "a token of type 0x0002 is {TOKEN_LEN} bytes, not {}",
            bytes.len()
        ));
    }
    Ok(Token {
        input: &bytes[..TOKEN_INPUT_LEN],
        nonce: &bytes[2..34],
        challenge_digest: &bytes[34..66],
        token_key_id: &bytes[66..TOKEN_INPUT_LEN],
        authenticator: &bytes[TOKEN_INPUT_LEN..],
    })
}

/// The token from an `Authorization: PrivateToken token="..."` field (RFC 9577 §2.2.2): the
/// scheme is case-insensitive, the value quoted or not, base64url padded or not.
pub fn token_from_authorization(value: &str) -> Result<Vec<u8>, String> {
    const MAX: usize = 4096;
    if value.len() > MAX {
        return Err(format!("the Authorization field is over {MAX} bytes"));
    }
    let value = value.trim();
    let (scheme, params) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("PrivateToken") {
        return Err(format!(
            "the Authorization scheme is '{scheme}', not PrivateToken"
        ));
    }
    let token = params
        .split(',')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("token"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .ok_or("the PrivateToken authorization has no token parameter")?;
    b64_decode(token).ok_or_else(|| "the token is not base64url".to_owned())
}

/// The `WWW-Authenticate` value challenging for a token (RFC 9577 §2.1).
pub fn www_authenticate(challenge: &[u8], token_key: &[u8]) -> String {
    format!(
        "PrivateToken challenge=\"{}\", token-key=\"{}\"",
        b64_encode(challenge),
        b64_encode(token_key)
    )
}

fn der_len(len: usize) -> Vec<u8> {
    match len {
        0..0x80 => vec![len as u8],
        0x80..0x100 => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

/// The RSASSA-PSS AlgorithmIdentifier with SHA-384, MGF1-SHA-384 and a 48-byte salt
/// (RFC 9578 §6.5, RFC 4055).
const PSS_SHA384_ALGORITHM: [u8; 63] = [
    0x30, 0x3d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x30, 0xa0,
    0x0d, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0xa1, 0x1a,
    0x30, 0x18, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0b, 0x06,
    0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0xa2, 0x03, 0x02, 0x01, 0x30,
];

/// The issuer key as RFC 9578 §6.5 publishes it: a SubjectPublicKeyInfo with the
/// RSASSA-PSS OID and parameters around the PKCS#1 `RSAPublicKey`.
pub fn pss_spki(pkcs1: &[u8]) -> Vec<u8> {
    let mut bit_string = vec![0x03];
    bit_string.extend(der_len(pkcs1.len() + 1));
    bit_string.push(0);
    bit_string.extend_from_slice(pkcs1);
    let body_len = PSS_SHA384_ALGORITHM.len() + bit_string.len();
    let mut out = vec![0x30];
    out.extend(der_len(body_len));
    out.extend_from_slice(&PSS_SHA384_ALGORITHM);
    out.extend(bit_string);
    out
}
