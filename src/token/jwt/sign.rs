//! Issuing a JWT access token (RFC 9068): ES256, compact serialization.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::Signature;
use serde::Serialize;

use super::claims::AccessClaims;
use super::keys::SigningKey;
use super::{ALG, MAX_TOKEN_LEN, TYP};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// `aud` is empty: no resource server could accept the token.
    EmptyAudience,
    /// The token would be longer than verifiers accept ([`MAX_TOKEN_LEN`]).
    TooLarge,
    /// The claims could not be serialized, or the signer failed.
    Internal,
}

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignError::EmptyAudience => "the token has no audience",
            SignError::TooLarge => "the token would exceed the size verifiers accept",
            SignError::Internal => "the token could not be signed",
        })
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// `base64url(header) . base64url(claims) . base64url(r || s)`, header
/// `{"alg":"ES256","typ":"at+jwt","kid":…}`. The signature is deterministic
/// (RFC 6979), so signing needs no randomness.
pub fn sign(key: &SigningKey, claims: &AccessClaims) -> Result<String, SignError> {
    if claims.aud.values().is_empty() {
        return Err(SignError::EmptyAudience);
    }
    let header = serde_json::to_vec(&Header {
        alg: ALG,
        typ: TYP,
        kid: key.kid(),
    })
    .map_err(|_| SignError::Internal)?;
    let payload = serde_json::to_vec(claims).map_err(|_| SignError::Internal)?;
    let mut token = String::with_capacity((header.len() + payload.len() + 64) * 4 / 3 + 4);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    // Compact r || s (64 bytes) = 86 characters, plus the dot.
    if token.len() + 87 > MAX_TOKEN_LEN {
        return Err(SignError::TooLarge);
    }
    let signature: Signature = key
        .ecdsa()
        .try_sign(token.as_bytes())
        .map_err(|_| SignError::Internal)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    Ok(token)
}
