//! JWT access tokens as an [`AccessTokenFormat`]: tied to their grant record
//! exactly like an opaque token, so revocation, refresh rotation and
//! introspection use the store unchanged.
//!
//! `jti` names the grant's place: base64url of
//! `kind (1) | bucket (4, big-endian) | grant id (11) | 8 random bytes`
//! (24 bytes, 32 characters). The random bytes come from the `rng` handed to
//! [`AccessTokenFormat::mint`]: under a refresh grace period that rng is
//! derived from the presented refresh token, so a retry restates the same
//! claims, the same `jti` and (RFC 6979 signatures are deterministic) the same
//! token. The store keeps [`TokenHash::of_text`] of the token's text.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::claims::{AccessClaims, Audience};
use super::json;
use super::keys::{KeySet, PublicKeySet};
use super::sign::sign;
use super::verify::{verify, Validation, VerifyError};
use super::MAX_TOKEN_LEN;
use crate::host::{RandomUnavailable, Randomness};
use crate::token::{
    AccessTokenFacts, AccessTokenFormat, GrantId, MintedToken, ParsedToken, TokenHash, TokenKind,
    GRANT_ID_BYTES,
};

const JTI_BYTES: usize = 1 + 4 + GRANT_ID_BYTES + 8;
const JTI_CHARS: usize = 32;

/// How one client's JWT access tokens are minted: the keys (the first signs),
/// the `iss` and the `aud` they carry.
#[derive(Debug, Clone)]
pub struct JwtFormat {
    pub keys: Arc<KeySet>,
    pub issuer: String,
    pub audience: Vec<String>,
}

impl AccessTokenFormat for JwtFormat {
    fn mint(
        &self,
        facts: &AccessTokenFacts,
        rng: &dyn Randomness,
    ) -> Result<MintedToken, RandomUnavailable> {
        let mut raw = [0u8; JTI_BYTES];
        raw[0] = TokenKind::Access.tag();
        raw[1..5].copy_from_slice(&facts.bucket.to_be_bytes());
        raw[5..5 + GRANT_ID_BYTES].copy_from_slice(facts.grant_id);
        rng.fill(&mut raw[5 + GRANT_ID_BYTES..])?;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: facts.user.unwrap_or(facts.client_id).to_string(),
            aud: Audience(self.audience.clone()),
            client_id: facts.client_id.to_string(),
            scope: (!facts.scope.is_empty()).then(|| facts.scope.to_string()),
            iat: facts.issued_at,
            exp: facts.expires_at,
            nbf: None,
            jti: URL_SAFE_NO_PAD.encode(raw),
            auth_time: None,
        };
        // The configuration guarantees an audience and bounds every claim, so
        // signing does not fail; if it did, the issuance fails like a host
        // without randomness (503/500 to the client), never with a panic.
        let text = sign(self.keys.signing(), &claims).map_err(|_| RandomUnavailable)?;
        let hash = TokenHash::of_text(&text);
        Ok(MintedToken { text, hash })
    }
}

/// The grant a `jti` names, as a parsed access token with the hash of `text`.
fn from_jti(jti: &str, text: &str) -> Option<ParsedToken> {
    if jti.len() != JTI_CHARS {
        return None;
    }
    let mut raw = [0u8; JTI_BYTES];
    let n = URL_SAFE_NO_PAD
        .decode_slice(jti.as_bytes(), &mut raw)
        .ok()?;
    if n != JTI_BYTES || TokenKind::from_tag(raw[0])? != TokenKind::Access {
        return None;
    }
    let bucket = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
    let mut grant_id: GrantId = [0; GRANT_ID_BYTES];
    grant_id.copy_from_slice(&raw[5..5 + GRANT_ID_BYTES]);
    Some(ParsedToken {
        kind: TokenKind::Access,
        bucket,
        grant_id,
        hash: TokenHash::of_text(text),
        family: None,
    })
}

/// A presented JWT, verified (signature, `typ`, `iss`, `aud`, times: see
/// [`verify`]), as the grant it names. For the guard.
pub fn parse_verified(
    text: &str,
    keys: &PublicKeySet,
    v: &Validation<'_>,
) -> Result<(ParsedToken, AccessClaims), VerifyError> {
    let claims = verify(text, keys, v)?;
    let parsed = from_jti(&claims.jti, text).ok_or(VerifyError::Claims)?;
    Ok((parsed, claims))
}

/// A presented JWT as the grant its `jti` names, WITHOUT checking its
/// signature. Enough for /revoke and /introspect: the store accepts a token
/// only if the SHA-256 of its exact text matches the hash stored when this
/// server issued it, so a forged or altered token finds nothing. The guard
/// verifies ([`parse_verified`]) because it must also work against a cache.
pub fn parse_unverified(text: &str) -> Option<ParsedToken> {
    if text.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = text.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims = json::parse_object(&bytes).ok()?;
    match claims.get("jti") {
        Some(Value::String(jti)) => from_jti(jti, text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRandomness;
    use crate::token::jwt::SigningKey;

    struct Fixed(u8);
    impl Randomness for Fixed {
        fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable> {
            buf.fill(self.0);
            Ok(())
        }
    }

    fn format() -> JwtFormat {
        JwtFormat {
            keys: Arc::new(KeySet::single(
                SigningKey::generate(&HostRandomness).unwrap(),
            )),
            issuer: "https://issuer.example".into(),
            audience: vec!["api".into()],
        }
    }

    fn facts<'a>(id: &'a GrantId, user: Option<&'a str>) -> AccessTokenFacts<'a> {
        AccessTokenFacts {
            bucket: 0x0102_0304,
            grant_id: id,
            client_id: "c1",
            user,
            scope: "default PRODUCTION",
            issued_at: 1000,
            expires_at: 4600,
        }
    }

    fn validation(now: u64) -> Validation<'static> {
        static AUD: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        Validation {
            issuer: "https://issuer.example",
            audiences: AUD.get_or_init(|| vec!["api".into()]),
            now,
            leeway: 0,
        }
    }

    #[test]
    fn a_minted_jwt_states_rfc_9068_claims_and_names_its_grant() {
        let f = format();
        let id = [7u8; GRANT_ID_BYTES];
        let t = f
            .mint(&facts(&id, Some("admin@carbon.super")), &HostRandomness)
            .unwrap();
        assert!(t.hash.matches(&TokenHash::of_text(&t.text)));
        let (p, claims) = parse_verified(&t.text, f.keys.public(), &validation(1001)).unwrap();
        assert_eq!(
            (p.kind, p.bucket, p.grant_id),
            (TokenKind::Access, 0x0102_0304, id)
        );
        assert!(p.hash.matches(&t.hash) && p.family.is_none());
        assert_eq!(claims.sub, "admin@carbon.super");
        assert_eq!(claims.client_id, "c1");
        assert_eq!(claims.scope.as_deref(), Some("default PRODUCTION"));
        assert_eq!((claims.iat, claims.exp), (1000, 4600));
        assert_eq!(claims.aud, Audience::one("api"));
        assert_eq!(claims.jti.len(), JTI_CHARS);
        assert_eq!(parse_unverified(&t.text), Some(p));
        // An application token's subject is the client.
        let app = f.mint(&facts(&id, None), &HostRandomness).unwrap();
        let (_, claims) = parse_verified(&app.text, f.keys.public(), &validation(1001)).unwrap();
        assert_eq!(claims.sub, "c1");
    }

    #[test]
    fn the_same_rng_restates_the_same_token_and_another_does_not() {
        let f = format();
        let id = [1u8; GRANT_ID_BYTES];
        let a = f.mint(&facts(&id, None), &Fixed(3)).unwrap();
        let b = f.mint(&facts(&id, None), &Fixed(3)).unwrap();
        let c = f.mint(&facts(&id, None), &Fixed(4)).unwrap();
        assert_eq!(a.text, b.text);
        assert_ne!(a.text, c.text);
        assert!(!a.hash.matches(&c.hash));
    }

    #[test]
    fn a_jti_that_names_no_access_grant_is_refused() {
        let f = format();
        let id = [1u8; GRANT_ID_BYTES];
        let t = f.mint(&facts(&id, None), &HostRandomness).unwrap();
        assert!(parse_unverified(&format!("{}x", t.text)).is_some_and(|p| !p.hash.matches(&t.hash)));
        assert!(parse_unverified("a.b").is_none());
        assert!(parse_unverified("a.b.c.d").is_none());
        assert!(parse_unverified("e30.e30.e30").is_none()); // {} has no jti
        let jti = |raw: &[u8]| {
            let claims = format!(r#"{{"jti":"{}"}}"#, URL_SAFE_NO_PAD.encode(raw));
            format!("e30.{}.e30", URL_SAFE_NO_PAD.encode(claims))
        };
        let mut raw = [0u8; JTI_BYTES];
        raw[0] = TokenKind::Access.tag();
        assert!(parse_unverified(&jti(&raw)).is_some());
        raw[0] = TokenKind::Refresh.tag();
        assert!(parse_unverified(&jti(&raw)).is_none());
        assert!(parse_unverified(&jti(&raw[..JTI_BYTES - 1])).is_none());
        assert!(parse_unverified(&"a".repeat(MAX_TOKEN_LEN + 1)).is_none());
    }
}
