//! Token format. A token is 48 random-looking bytes as 64 URL-safe characters:
//!
//! `kind (1) | bucket (4, big-endian) | grant id (11) | secret (32)`
//!
//! The grant id and secret (43 bytes, 344 bits) come from the host CSPRNG. The token
//! names the store bucket that holds its grant, so a lookup is one read and
//! needs no shared layout between the filters. The store keeps only
//! [`TokenHash`]es, never a token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::host::{RandomUnavailable, Randomness};

pub const TOKEN_BYTES: usize = 48;
pub const TOKEN_CHARS: usize = 64;
pub const GRANT_ID_BYTES: usize = 11;
const SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    fn tag(self) -> u8 {
        match self {
            TokenKind::Access => 0xa1,
            TokenKind::Refresh => 0xb1,
        }
    }
    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0xa1 => Some(TokenKind::Access),
            0xb1 => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

pub type GrantId = [u8; GRANT_ID_BYTES];

/// First 16 bytes of SHA-256 over the token's bytes: what the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenHash(pub [u8; 16]);

impl TokenHash {
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
    /// A non-secret identifier of the token, safe for headers and logs.
    pub fn fingerprint(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
        }
        s
    }
}

/// A decoded token, as presented by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    pub kind: TokenKind,
    pub bucket: u32,
    pub grant_id: GrantId,
    pub hash: TokenHash,
}

/// Parses a presented token. Anything that is not exactly our format is `None`.
pub fn parse(text: &str) -> Option<ParsedToken> {
    let (tag, bucket, grant_id, hash) = parse_raw(text)?;
    Some(ParsedToken {
        kind: TokenKind::from_tag(tag)?,
        bucket,
        grant_id,
        hash,
    })
}

fn parse_raw(text: &str) -> Option<(u8, u32, GrantId, TokenHash)> {
    if text.len() != TOKEN_CHARS {
        return None;
    }
    let mut raw = [0u8; TOKEN_BYTES];
    let n = URL_SAFE_NO_PAD
        .decode_slice(text.as_bytes(), &mut raw)
        .ok()?;
    if n != TOKEN_BYTES {
        return None;
    }
    let bucket = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
    let mut grant_id = [0u8; GRANT_ID_BYTES];
    grant_id.copy_from_slice(&raw[5..5 + GRANT_ID_BYTES]);
    Some((raw[0], bucket, grant_id, hash_bytes(&raw)))
}

/// Secrets in the token format that are not bearer tokens: [`parse`] refuses
/// them, so neither the guard nor introspection ever accepts one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleKind {
    /// An authorization code (RFC 6749 §4.1.2); `bucket | grant id` name its grant.
    Code,
    /// The one-time token of a login form; `bucket | id` name its pending request.
    LoginForm,
}

impl HandleKind {
    fn tag(self) -> u8 {
        match self {
            HandleKind::Code => 0xc1,
            HandleKind::LoginForm => 0xf1,
        }
    }
}

/// [`parse`] for a [`HandleKind`]: `None` unless it is exactly that kind.
pub fn parse_handle(text: &str, kind: HandleKind) -> Option<ParsedToken> {
    let (tag, bucket, grant_id, hash) = parse_raw(text)?;
    // `kind` of the result is irrelevant to callers of handles; Access is a
    // placeholder that never reaches a bearer check.
    (tag == kind.tag()).then_some(ParsedToken {
        kind: TokenKind::Access,
        bucket,
        grant_id,
        hash,
    })
}

/// [`mint`] for a [`HandleKind`].
pub fn mint_handle(
    kind: HandleKind,
    bucket: u32,
    grant_id: &GrantId,
    rng: &dyn Randomness,
) -> Result<MintedToken, RandomUnavailable> {
    mint_tagged(kind.tag(), bucket, grant_id, rng)
}

fn hash_bytes(raw: &[u8]) -> TokenHash {
    let digest = Sha256::digest(raw);
    let mut h = [0u8; 16];
    h.copy_from_slice(&digest[..16]);
    TokenHash(h)
}

/// A freshly minted token: the text goes to the client once, the hash to the store.
pub struct MintedToken {
    pub text: String,
    pub hash: TokenHash,
}

pub fn new_grant_id(rng: &dyn Randomness) -> Result<GrantId, RandomUnavailable> {
    let mut id = [0u8; GRANT_ID_BYTES];
    rng.fill(&mut id)?;
    Ok(id)
}

pub fn mint(
    kind: TokenKind,
    bucket: u32,
    grant_id: &GrantId,
    rng: &dyn Randomness,
) -> Result<MintedToken, RandomUnavailable> {
    mint_tagged(kind.tag(), bucket, grant_id, rng)
}

fn mint_tagged(
    tag: u8,
    bucket: u32,
    grant_id: &GrantId,
    rng: &dyn Randomness,
) -> Result<MintedToken, RandomUnavailable> {
    let mut raw = [0u8; TOKEN_BYTES];
    raw[0] = tag;
    raw[1..5].copy_from_slice(&bucket.to_be_bytes());
    raw[5..5 + GRANT_ID_BYTES].copy_from_slice(grant_id);
    rng.fill(&mut raw[5 + GRANT_ID_BYTES..])?;
    debug_assert_eq!(raw.len() - 5 - GRANT_ID_BYTES, SECRET_BYTES);
    Ok(MintedToken {
        text: URL_SAFE_NO_PAD.encode(raw),
        hash: hash_bytes(&raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRandomness;

    #[test]
    fn minted_tokens_parse_back_to_their_parts() {
        let id = new_grant_id(&HostRandomness).unwrap();
        let t = mint(TokenKind::Refresh, 77, &id, &HostRandomness).unwrap();
        assert_eq!(t.text.len(), TOKEN_CHARS);
        let p = parse(&t.text).unwrap();
        assert_eq!(p.kind, TokenKind::Refresh);
        assert_eq!(p.bucket, 77);
        assert_eq!(p.grant_id, id);
        assert!(p.hash.matches(&t.hash));
    }

    #[test]
    fn two_tokens_of_one_grant_differ() {
        let id = new_grant_id(&HostRandomness).unwrap();
        let a = mint(TokenKind::Access, 1, &id, &HostRandomness).unwrap();
        let b = mint(TokenKind::Access, 1, &id, &HostRandomness).unwrap();
        assert_ne!(a.text, b.text);
        assert!(!a.hash.matches(&b.hash));
    }

    #[test]
    fn garbage_is_not_a_token() {
        assert!(parse("").is_none());
        assert!(parse("abc").is_none());
        assert!(parse(&"A".repeat(64)).is_none()); // kind tag 0x00
        assert!(parse(&"!".repeat(64)).is_none());
        let id = [0u8; GRANT_ID_BYTES];
        let t = mint(TokenKind::Access, 1, &id, &HostRandomness).unwrap();
        assert!(parse(&format!("{}=", &t.text[..63])).is_none());
        assert!(parse(&format!("{}x", t.text)).is_none());
    }

    #[test]
    fn handles_are_never_bearer_tokens_and_kinds_do_not_mix() {
        let id = new_grant_id(&HostRandomness).unwrap();
        let code = mint_handle(HandleKind::Code, 9, &id, &HostRandomness).unwrap();
        assert!(parse(&code.text).is_none());
        assert!(parse_handle(&code.text, HandleKind::LoginForm).is_none());
        let p = parse_handle(&code.text, HandleKind::Code).unwrap();
        assert_eq!((p.bucket, p.grant_id), (9, id));
        assert!(p.hash.matches(&code.hash));
        let access = mint(TokenKind::Access, 9, &id, &HostRandomness).unwrap();
        assert!(parse_handle(&access.text, HandleKind::Code).is_none());
    }

    #[test]
    fn fingerprint_is_32_hex_chars() {
        let f = TokenHash([0xab; 16]).fingerprint();
        assert_eq!(f, "ab".repeat(16));
    }
}
