//! The `jwt` sections: the token endpoint's signing keys, issuer and default
//! audience (`access_token_format: "jwt"`), and the guard's verification keys.
//! A key error names its field (`jwt.keys[0].pem`) and never quotes the key.

use std::sync::Arc;

use serde::Deserialize;

use super::error::{check_header_text, err, ConfigError};
use super::issuer::Issuer;
use crate::token::jwt::{jwks_json, Audience, KeyEntry, KeyError, KeySet, PublicKeySet};

/// `access_token_format`, at the top level (the default) and per client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatName {
    /// Random tokens that only the store can read (the default).
    #[default]
    Opaque,
    /// ES256-signed JWTs (RFC 9068), also verifiable by Envoy's `jwt_authn`.
    Jwt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenJwtFile {
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<Audience>,
    #[serde(default)]
    keys: Vec<KeyEntry>,
    #[serde(default = "default_jwks_max_age")]
    jwks_max_age_seconds: u64,
}

fn default_jwks_max_age() -> u64 {
    300
}

/// The token endpoint's JWT keys, parsed, and the JWKS it serves.
#[derive(Debug, Clone)]
pub struct TokenJwt {
    pub keys: Arc<KeySet>,
    /// The top-level `issuer` when it is fixed (`jwt.issuer` may only repeat it).
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    /// `{"keys":[…]}`: public keys only, rendered once.
    pub jwks_json: String,
    pub jwks_max_age: u64,
}

fn key_error(e: KeyError) -> ConfigError {
    err(e.field, e.message)
}

pub(super) fn check_audience(field: &str, aud: &Audience) -> Result<Vec<String>, ConfigError> {
    if aud.values().is_empty() {
        return Err(err(field, "at least one audience is required"));
    }
    for (i, a) in aud.values().iter().enumerate() {
        check_header_text(&format!("{field}[{i}]"), a)?;
    }
    Ok(aud.values().to_vec())
}

pub(super) fn parse_token_jwt(f: &TokenJwtFile, issuer: &Issuer) -> Result<TokenJwt, ConfigError> {
    let keys = KeySet::from_entries(&f.keys, "jwt.keys").map_err(key_error)?;
    // One source of truth: the tokens' `iss` is the issuer the metadata names.
    if let Some(i) = &f.issuer {
        if issuer.fixed() != Some(i.as_str()) {
            return Err(err(
                "jwt.issuer",
                "differs from the top-level `issuer`, which is the tokens' `iss`: remove `jwt.issuer`",
            ));
        }
    }
    let audience = match &f.audience {
        Some(a) => Some(check_audience("jwt.audience", a)?),
        None => None,
    };
    if !(0..=86400).contains(&f.jwks_max_age_seconds) {
        return Err(err(
            "jwt.jwks_max_age_seconds",
            "must be between 0 and 86400",
        ));
    }
    Ok(TokenJwt {
        jwks_json: jwks_json(keys.public()),
        keys: Arc::new(keys),
        issuer: issuer.fixed().map(String::from),
        audience,
        jwks_max_age: f.jwks_max_age_seconds,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GuardJwtFile {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<KeyEntry>,
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
}

fn default_leeway() -> u64 {
    30
}

/// What the guard needs to accept JWT access tokens.
#[derive(Debug, Clone)]
pub struct GuardJwt {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: PublicKeySet,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
}

pub(super) fn parse_guard_jwt(f: &GuardJwtFile) -> Result<GuardJwt, ConfigError> {
    check_header_text("jwt.issuer", &f.issuer)?;
    let audiences = check_audience("jwt.audiences", &Audience(f.audiences.clone()))?;
    for (i, k) in f.keys.iter().enumerate() {
        // The guard only verifies: a private key has no business in its configuration.
        let private = k.pem.as_deref().is_some_and(|p| p.contains("PRIVATE KEY"))
            || k.jwk.as_ref().is_some_and(|j| j.get("d").is_some());
        if private {
            return Err(err(
                format!("jwt.keys[{i}]"),
                "the guard needs public keys only (a JWK without `d`, or a `PUBLIC KEY` PEM)",
            ));
        }
    }
    let keys = PublicKeySet::from_entries(&f.keys, "jwt.keys").map_err(key_error)?;
    if f.leeway_seconds > 300 {
        return Err(err("jwt.leeway_seconds", "must be between 0 and 300"));
    }
    Ok(GuardJwt {
        issuer: f.issuer.clone(),
        audiences,
        keys,
        leeway: f.leeway_seconds,
    })
}
