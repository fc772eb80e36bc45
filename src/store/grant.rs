//! A grant: what one successful authorization produced, and the single record
//! that holds the hashes of its current access and refresh tokens. Rotation,
//! revocation and reuse detection each rewrite this one record, so they are
//! atomic under one CAS.

use crate::oauth::pkce;
use crate::token::{GrantId, TokenHash, TokenKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub hash: TokenHash,
    pub expires_at: u64,
}

/// The authorization code a grant started from (RFC 6749 §4.1). Until it is
/// redeemed the grant has no usable token: `access_hash` holds the code's hash
/// and `access_expires_at` the code's expiry. After redemption the record keeps
/// the code's hash, so a second presentation is recognised and revokes the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeState {
    pub hash: TokenHash,
    /// The redirect URI the code is bound to.
    pub redirect_uri: String,
    /// The authorization request named `redirect_uri` (then the token request must too).
    pub redirect_given: bool,
    /// PKCE challenge and method (RFC 7636), if the request carried one.
    pub challenge: Option<(pkce::Method, String)>,
    pub redeemed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: GrantId,
    pub client_id: String,
    /// `user@tenant` for user grants, `None` for application (client_credentials) grants.
    pub user: Option<String>,
    /// Space-delimited scope of the current tokens.
    pub scope: String,
    /// Issue time of the current access token.
    pub issued_at: u64,
    pub access_hash: TokenHash,
    pub access_expires_at: u64,
    pub refresh: Option<RefreshState>,
    /// The refresh token this grant's current one replaced: presenting it again
    /// means a stolen or replayed token (RFC 9700 §4.14.2).
    pub previous_refresh: Option<TokenHash>,
    pub revoked: bool,
    /// Set by earlier versions, whose grace period allowed one retry; no
    /// longer set (a retry within the window writes nothing), kept so their
    /// records decode and encode unchanged.
    pub grace_used: bool,
    /// Set for grants from an authorization code.
    pub code: Option<CodeState>,
}

impl Grant {
    /// No token of the grant can be used any more: the record can be reclaimed.
    pub fn is_dead(&self, now: u64) -> bool {
        self.revoked
            || (now >= self.access_expires_at
                && self.refresh.as_ref().is_none_or(|r| now >= r.expires_at))
    }

    /// The presented token is this grant's current token of its kind and still valid.
    pub fn accepts(&self, kind: TokenKind, hash: &TokenHash, now: u64) -> bool {
        if self.revoked || self.awaits_redemption() {
            return false;
        }
        match kind {
            TokenKind::Access => self.access_hash.matches(hash) && now < self.access_expires_at,
            TokenKind::Refresh => self
                .refresh
                .as_ref()
                .is_some_and(|r| r.hash.matches(hash) && now < r.expires_at),
        }
    }

    /// An authorization code grant whose code was not redeemed yet: no token.
    pub fn awaits_redemption(&self) -> bool {
        self.code.as_ref().is_some_and(|c| !c.redeemed)
    }

    /// The presented token belongs to this grant, whatever its state (for revocation).
    pub fn owns(&self, kind: TokenKind, hash: &TokenHash) -> bool {
        match kind {
            TokenKind::Access => !self.awaits_redemption() && self.access_hash.matches(hash),
            TokenKind::Refresh => self.refresh.as_ref().is_some_and(|r| r.hash.matches(hash)),
        }
    }
}
