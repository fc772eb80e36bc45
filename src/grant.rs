//! A grant: what one successful authorization produced, and the single record
//! that holds the hashes of its current access and refresh tokens. Rotation,
//! revocation and reuse detection each rewrite this one record, so they are
//! atomic under one CAS.

use crate::token::{GrantId, TokenHash, TokenKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub hash: TokenHash,
    pub expires_at: u64,
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
}

impl Grant {
    /// No token of the grant can be used any more: the record can be reclaimed.
    pub fn is_dead(&self, now: u64) -> bool {
        self.revoked
            || (now >= self.access_expires_at
                && self.refresh.as_ref().map_or(true, |r| now >= r.expires_at))
    }

    /// The presented token is this grant's current token of its kind and still valid.
    pub fn accepts(&self, kind: TokenKind, hash: &TokenHash, now: u64) -> bool {
        if self.revoked {
            return false;
        }
        match kind {
            TokenKind::Access => self.access_hash.matches(hash) && now < self.access_expires_at,
            TokenKind::Refresh => self
                .refresh
                .as_ref()
                .map_or(false, |r| r.hash.matches(hash) && now < r.expires_at),
        }
    }

    /// The presented token belongs to this grant, whatever its state (for revocation).
    pub fn owns(&self, kind: TokenKind, hash: &TokenHash) -> bool {
        match kind {
            TokenKind::Access => self.access_hash.matches(hash),
            TokenKind::Refresh => self
                .refresh
                .as_ref()
                .map_or(false, |r| r.hash.matches(hash)),
        }
    }
}
