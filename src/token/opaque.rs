//! Token format. An access token (and a code or form handle) is 48 bytes as 64
//! URL-safe characters:
//!
//! `kind (1) | bucket (4, big-endian) | grant id (11) | secret (32)`
//!
//! The grant id and secret (43 bytes, 344 bits) come from the host CSPRNG. The token
//! names the store bucket that holds its grant, so a lookup is one read and
//! needs no shared layout between the filters. The store keeps only
//! [`TokenHash`]es, never a token.
//!
//! A refresh token is 60 bytes as 80 characters: the same 48 bytes, then a
//! 96-bit *family tag*, HMAC-SHA256 of those 48 bytes under the store's key.
//! The store forgets a refresh token's hash once it is rotated away; the tag
//! still proves that an old token was minted here for its grant, so presenting
//! any used token of a rotation chain revokes the chain (RFC 9700 §4.14.2), and a
//! forged token that merely names a grant id revokes nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keyed_tag::{self, ServerKey};
use crate::host::{RandomUnavailable, Randomness};

pub const TOKEN_BYTES: usize = 48;
pub const TOKEN_CHARS: usize = 64;
pub const REFRESH_BYTES: usize = TOKEN_BYTES + FAMILY_TAG_BYTES;
pub const REFRESH_CHARS: usize = 80;
pub const GRANT_ID_BYTES: usize = 11;
const SECRET_BYTES: usize = 32;
const FAMILY_TAG_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub(crate) fn tag(self) -> u8 {
        match self {
            TokenKind::Access => 0xa1,
            TokenKind::Refresh => 0xb1,
        }
    }
    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
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
    /// The hash of a token given as text (a JWT: its compact serialization, as
    /// sent), where the opaque format hashes its decoded bytes.
    pub fn of_text(text: &str) -> TokenHash {
        hash_bytes(text.as_bytes())
    }
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
    /// Refresh tokens only: the proof that this server minted the token for its grant.
    pub family: Option<FamilyTag>,
}

/// The family tag of a refresh token and the bytes it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyTag {
    signed: [u8; TOKEN_BYTES],
    tag: [u8; FAMILY_TAG_BYTES],
}

impl FamilyTag {
    /// The token was minted by this store (under `key`): constant-time check.
    pub fn verifies(&self, key: &ServerKey) -> bool {
        match family_tag(key, &self.signed) {
            Some(expected) => expected.ct_eq(&self.tag).into(),
            None => false,
        }
    }
}

fn family_tag(key: &ServerKey, signed: &[u8; TOKEN_BYTES]) -> Option<[u8; FAMILY_TAG_BYTES]> {
    keyed_tag::tag(key, b"oauth2 refresh family", signed)
}

/// Parses a presented token. Anything that is not exactly our format is `None`.
pub fn parse(text: &str) -> Option<ParsedToken> {
    if text.len() == REFRESH_CHARS {
        return parse_refresh(text);
    }
    let (tag, bucket, grant_id, hash) = parse_raw(text)?;
    Some(ParsedToken {
        kind: TokenKind::from_tag(tag)?,
        bucket,
        grant_id,
        hash,
        family: None,
    })
}

fn parse_refresh(text: &str) -> Option<ParsedToken> {
    let mut raw = [0u8; REFRESH_BYTES];
    let n = URL_SAFE_NO_PAD
        .decode_slice(text.as_bytes(), &mut raw)
        .ok()?;
    if n != REFRESH_BYTES || TokenKind::from_tag(raw[0])? != TokenKind::Refresh {
        return None;
    }
    let mut signed = [0u8; TOKEN_BYTES];
    signed.copy_from_slice(&raw[..TOKEN_BYTES]);
    let mut tag = [0u8; FAMILY_TAG_BYTES];
    tag.copy_from_slice(&raw[TOKEN_BYTES..]);
    let (bucket, grant_id) = layout(&signed);
    Some(ParsedToken {
        kind: TokenKind::Refresh,
        bucket,
        grant_id,
        hash: hash_bytes(&raw),
        family: Some(FamilyTag { signed, tag }),
    })
}

fn layout(raw: &[u8; TOKEN_BYTES]) -> (u32, GrantId) {
    let bucket = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
    let mut grant_id = [0u8; GRANT_ID_BYTES];
    grant_id.copy_from_slice(&raw[5..5 + GRANT_ID_BYTES]);
    (bucket, grant_id)
}

/// A 64-character token. (A 64-character refresh token is the format before family
/// tags: still accepted while it is current, it just cannot prove old ones.)
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
    let (bucket, grant_id) = layout(&raw);
    Some((raw[0], bucket, grant_id, hash_bytes(&raw)))
}

/// Secrets in the token format that are not bearer tokens: [`parse`] refuses
/// them, so neither the guard nor introspection ever accepts one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleKind {
    /// An authorization code (RFC 6749 §4.1.2); `bucket | grant id` name its grant.
    Code,
}

impl HandleKind {
    fn tag(self) -> u8 {
        match self {
            HandleKind::Code => 0xc1,
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
        family: None,
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

pub fn mint_access(
    bucket: u32,
    grant_id: &GrantId,
    rng: &dyn Randomness,
) -> Result<MintedToken, RandomUnavailable> {
    mint_tagged(TokenKind::Access.tag(), bucket, grant_id, rng)
}

/// A refresh token, with its family tag under the store's `key`.
pub fn mint_refresh(
    bucket: u32,
    grant_id: &GrantId,
    rng: &dyn Randomness,
    key: &ServerKey,
) -> Result<MintedToken, RandomUnavailable> {
    let signed = raw_token(TokenKind::Refresh.tag(), bucket, grant_id, rng)?;
    let tag = family_tag(key, &signed).ok_or(RandomUnavailable)?;
    let mut raw = [0u8; REFRESH_BYTES];
    raw[..TOKEN_BYTES].copy_from_slice(&signed);
    raw[TOKEN_BYTES..].copy_from_slice(&tag);
    Ok(MintedToken {
        text: URL_SAFE_NO_PAD.encode(raw),
        hash: hash_bytes(&raw),
    })
}

fn mint_tagged(
    tag: u8,
    bucket: u32,
    grant_id: &GrantId,
    rng: &dyn Randomness,
) -> Result<MintedToken, RandomUnavailable> {
    let raw = raw_token(tag, bucket, grant_id, rng)?;
    Ok(MintedToken {
        text: URL_SAFE_NO_PAD.encode(raw),
        hash: hash_bytes(&raw),
    })
}

fn raw_token(
    tag: u8,
    bucket: u32,
    grant_id: &GrantId,
    rng: &dyn Randomness,
) -> Result<[u8; TOKEN_BYTES], RandomUnavailable> {
    let mut raw = [0u8; TOKEN_BYTES];
    raw[0] = tag;
    raw[1..5].copy_from_slice(&bucket.to_be_bytes());
    raw[5..5 + GRANT_ID_BYTES].copy_from_slice(grant_id);
    rng.fill(&mut raw[5 + GRANT_ID_BYTES..])?;
    debug_assert_eq!(raw.len() - 5 - GRANT_ID_BYTES, SECRET_BYTES);
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRandomness;

    const KEY: ServerKey = [5; 32];

    #[test]
    fn minted_tokens_parse_back_to_their_parts() {
        let id = new_grant_id(&HostRandomness).unwrap();
        let a = mint_access(77, &id, &HostRandomness).unwrap();
        assert_eq!(a.text.len(), TOKEN_CHARS);
        let p = parse(&a.text).unwrap();
        assert_eq!((p.kind, p.bucket, p.grant_id), (TokenKind::Access, 77, id));
        assert!(p.hash.matches(&a.hash));
        assert!(p.family.is_none());
        let r = mint_refresh(78, &id, &HostRandomness, &KEY).unwrap();
        assert_eq!(r.text.len(), REFRESH_CHARS);
        let p = parse(&r.text).unwrap();
        assert_eq!((p.kind, p.bucket, p.grant_id), (TokenKind::Refresh, 78, id));
        assert!(p.hash.matches(&r.hash));
        assert!(p.family.unwrap().verifies(&KEY));
    }

    #[test]
    fn a_family_tag_proves_the_key_and_every_signed_byte() {
        let id = new_grant_id(&HostRandomness).unwrap();
        let r = mint_refresh(3, &id, &HostRandomness, &KEY).unwrap();
        assert!(!parse(&r.text).unwrap().family.unwrap().verifies(&[6; 32]));
        let mut raw = URL_SAFE_NO_PAD.decode(&r.text).unwrap();
        for i in [5, 20, TOKEN_BYTES - 1, TOKEN_BYTES, REFRESH_BYTES - 1] {
            raw[i] ^= 1;
            let p = parse(&URL_SAFE_NO_PAD.encode(&raw)).unwrap();
            assert!(!p.family.unwrap().verifies(&KEY), "byte {i}");
            raw[i] ^= 1;
        }
        // Only refresh tokens come in the long form.
        raw[0] = TokenKind::Access.tag();
        assert!(parse(&URL_SAFE_NO_PAD.encode(&raw)).is_none());
    }

    #[test]
    fn two_tokens_of_one_grant_differ() {
        let id = new_grant_id(&HostRandomness).unwrap();
        let a = mint_access(1, &id, &HostRandomness).unwrap();
        let b = mint_access(1, &id, &HostRandomness).unwrap();
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
        let t = mint_access(1, &id, &HostRandomness).unwrap();
        assert!(parse(&format!("{}=", &t.text[..63])).is_none());
        assert!(parse(&format!("{}x", t.text)).is_none());
    }

    #[test]
    fn handles_are_never_bearer_tokens_and_kinds_do_not_mix() {
        let id = new_grant_id(&HostRandomness).unwrap();
        let code = mint_handle(HandleKind::Code, 9, &id, &HostRandomness).unwrap();
        assert!(parse(&code.text).is_none());
        let p = parse_handle(&code.text, HandleKind::Code).unwrap();
        assert_eq!((p.bucket, p.grant_id), (9, id));
        assert!(p.hash.matches(&code.hash));
        let access = mint_access(9, &id, &HostRandomness).unwrap();
        assert!(parse_handle(&access.text, HandleKind::Code).is_none());
    }

    #[test]
    fn fingerprint_is_32_hex_chars() {
        let f = TokenHash([0xab; 16]).fingerprint();
        assert_eq!(f, "ab".repeat(16));
    }
}
