//! Verifying a presented JWT access token (RFC 9068 §4, RFC 8725): size first,
//! then the header (ES256 only, `typ` at+jwt, a known `kid`), then the
//! signature, and only then the claims (issuer, audience, time).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::Signature;
use serde_json::Value;

use super::claims::AccessClaims;
use super::json::{self, JsonProblem};
use super::keys::{PublicKey, PublicKeySet, MAX_KID_LEN};
use super::{ALG, MAX_TOKEN_LEN};

/// What a token must match besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// `iss`, compared exactly.
    pub issuer: &'a str,
    /// Accepted audiences: one of the token's `aud` values must be among them.
    /// Empty accepts no token.
    pub audiences: &'a [String],
    /// Seconds since the Unix epoch.
    pub now: u64,
    /// Clock skew allowed, in seconds, on `exp`, `nbf` and `iat`.
    pub leeway: u64,
}

/// Why a token was refused. Every variant means `invalid_token` to a client;
/// the variant is for statistics and debug logs (it never quotes the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_LEN`] bytes (checked before anything is decoded).
    TooLarge,
    /// Not three dot-separated segments.
    Segments,
    /// A segment is not base64url without padding.
    Base64,
    /// The header or claims are not JSON.
    Json,
    /// The header or claims are JSON but not an object.
    NotObject,
    /// The header or claims name a member twice.
    DuplicateMember,
    /// `alg` is not `ES256` (`none`, `HS256`, … are refused).
    Algorithm,
    /// `typ` is not `at+jwt` (RFC 9068 §4).
    Type,
    /// The header has `crit`: no extension is understood here.
    Critical,
    /// No `kid` (or not a string).
    MissingKid,
    /// `kid` names no key of the set.
    UnknownKid,
    /// The signature is not 64 bytes (r || s).
    SignatureLength,
    /// The signature does not verify under the key named by `kid`.
    Signature,
    /// A required claim is missing or of the wrong type.
    Claims,
    Issuer,
    Audience,
    /// `exp` (plus leeway) has passed.
    Expired,
    /// `nbf` or `iat` is in the future (beyond leeway).
    NotYetValid,
}

impl VerifyError {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyError::TooLarge => "too_large",
            VerifyError::Segments => "segments",
            VerifyError::Base64 => "base64",
            VerifyError::Json => "json",
            VerifyError::NotObject => "not_object",
            VerifyError::DuplicateMember => "duplicate_member",
            VerifyError::Algorithm => "algorithm",
            VerifyError::Type => "type",
            VerifyError::Critical => "critical",
            VerifyError::MissingKid => "missing_kid",
            VerifyError::UnknownKid => "unknown_kid",
            VerifyError::SignatureLength => "signature_length",
            VerifyError::Signature => "signature",
            VerifyError::Claims => "claims",
            VerifyError::Issuer => "issuer",
            VerifyError::Audience => "audience",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
        }
    }
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<JsonProblem> for VerifyError {
    fn from(p: JsonProblem) -> Self {
        match p {
            JsonProblem::Syntax => VerifyError::Json,
            JsonProblem::NotObject => VerifyError::NotObject,
            JsonProblem::DuplicateKey => VerifyError::DuplicateMember,
        }
    }
}

/// The claims of `token` if it is an access token signed by a key of `keys`
/// and valid for `v`.
pub fn verify(
    token: &str,
    keys: &PublicKeySet,
    v: &Validation<'_>,
) -> Result<AccessClaims, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::TooLarge);
    }
    let (header_b64, payload_b64, signature_b64) = split(token)?;
    let header = json::parse_object(&decode(header_b64)?)?;
    if header.get("alg").and_then(Value::as_str) != Some(ALG) {
        return Err(VerifyError::Algorithm);
    }
    match header.get("typ").and_then(Value::as_str) {
        Some(t)
            if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => {
        }
        _ => return Err(VerifyError::Type),
    }
    if header.contains_key("crit") {
        return Err(VerifyError::Critical);
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) if k.len() <= MAX_KID_LEN => k,
        Some(Value::String(_)) => return Err(VerifyError::UnknownKid),
        _ => return Err(VerifyError::MissingKid),
    };
    let key = keys.find(kid).ok_or(VerifyError::UnknownKid)?;
    let signing_input = token
        .as_bytes()
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(VerifyError::Segments)?;
    verify_es256(signing_input, &decode(signature_b64)?, key)?;

    // Signed by us: now the claims can be read.
    let claims = json::parse_object(&decode(payload_b64)?)?;
    let claims: AccessClaims =
        serde_json::from_value(Value::Object(claims)).map_err(|_| VerifyError::Claims)?;
    if claims.iss != v.issuer {
        return Err(VerifyError::Issuer);
    }
    if !claims.aud.matches_any(v.audiences) {
        return Err(VerifyError::Audience);
    }
    if claims.exp.saturating_add(v.leeway) <= v.now {
        return Err(VerifyError::Expired);
    }
    let latest_start = v.now.saturating_add(v.leeway);
    if claims.iat > latest_start || claims.nbf.is_some_and(|nbf| nbf > latest_start) {
        return Err(VerifyError::NotYetValid);
    }
    Ok(claims)
}

/// The ES256 check alone (RFC 7518 §3.4): `signature` is r || s, 64 bytes, over
/// SHA-256 of `signing_input` (`base64url(header) "." base64url(payload)`).
pub fn verify_es256(
    signing_input: &[u8],
    signature: &[u8],
    key: &PublicKey,
) -> Result<(), VerifyError> {
    if signature.len() != 64 {
        return Err(VerifyError::SignatureLength);
    }
    let signature = Signature::from_slice(signature).map_err(|_| VerifyError::Signature)?;
    key.verifying_key()
        .verify(signing_input, &signature)
        .map_err(|_| VerifyError::Signature)
}

/// Does `text` have the shape of a JWS (three segments)? Lets a caller that also
/// accepts opaque tokens (which never contain a dot) pick the verifier.
pub fn looks_like_jwt(text: &str) -> bool {
    text.bytes().filter(|&b| b == b'.').count() == 2
}

fn split(token: &str) -> Result<(&str, &str, &str), VerifyError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(VerifyError::Segments),
    }
}

/// Strict base64url: the URL-safe alphabet, no padding, no stray trailing bits.
fn decode(segment: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| VerifyError::Base64)
}
