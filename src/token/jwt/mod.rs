//! JWT access tokens (RFC 9068) signed with ES256 (ECDSA P-256, SHA-256), and the
//! JWK Set that publishes their keys (RFC 7517). Plain Rust, no host calls:
//!
//! - [`keys`]: the configured keys ([`KeyEntry`] → [`KeySet`] / [`PublicKeySet`]);
//! - [`claims`]: what a token says ([`AccessClaims`]);
//! - [`sign()`]: claims → compact JWS;
//! - [`verify()`]: compact JWS → claims, or a [`VerifyError`];
//! - [`jwks`]: the public keys as a JWK Set;
//! - [`format`]: [`JwtFormat`], the `AccessTokenFormat` whose `jti` names the grant.

pub mod claims;
pub mod format;
mod json;
pub mod jwks;
pub mod keys;
pub mod sign;
pub mod verify;

#[cfg(test)]
mod tests;

pub use claims::{AccessClaims, Audience};
pub use format::{parse_unverified, parse_verified, JwtFormat};
pub use jwks::{jwks_json, PublicJwk};
pub use keys::{KeyEntry, KeyError, KeySet, PublicKey, PublicKeySet, SigningKey};
pub use sign::{sign, SignError};
pub use verify::{looks_like_jwt, verify, verify_es256, Validation, VerifyError};

/// The only algorithm issued and accepted.
pub const ALG: &str = "ES256";
/// The `typ` header of an access token (RFC 9068 §2.1).
pub const TYP: &str = "at+jwt";
/// Longest token accepted, in bytes; checked before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
