//! The transactions the grant store runs on one bucket (pure functions of
//! its content, see `txn`): insert a grant, rotate a refresh token (with reuse
//! detection and the grace period), revoke a grant, revoke a client's grants.

use crate::oauth::scope;
use crate::store::bucket::Bucket;
use crate::store::grant::{Grant, RefreshState};
use crate::store::server_key::ServerKey;
use crate::store::txn::{BucketTxn, Step};
use crate::store::RevokedGrant;
use crate::token::{MintedToken, ParsedToken, TokenKind};

pub(super) struct Insert {
    pub(super) grant: Grant,
    pub(super) limit: usize,
    /// Look for the grant first (remote stores, where a write's answer can be
    /// lost after it was applied; locally a write's outcome is always known).
    pub(super) may_be_there: bool,
}

impl BucketTxn for Insert {
    type Output = bool;
    fn apply(&mut self, bucket: &mut Bucket, _now: u64) -> Step<bool> {
        // Already there: an earlier try of this very insert was applied though
        // its answer was lost (grant ids are random). Never twice.
        if self.may_be_there && self.applied(bucket).is_some() {
            return Step::Done(true);
        }
        if bucket.len() >= self.limit {
            return Step::Done(false);
        }
        bucket.push(self.grant.clone());
        Step::Write(true)
    }

    const RECOGNISES_OWN_WRITE: bool = true;

    fn applied(&mut self, bucket: &mut Bucket) -> Option<bool> {
        bucket.find_mut(&self.grant.id).map(|_| true)
    }
}

pub(super) struct Rotate<'t> {
    pub(super) grace_seconds: u64,
    pub(super) key: &'t ServerKey,
    pub(super) presented: &'t ParsedToken,
    pub(super) client_id: &'t str,
    pub(super) requested_scope: Option<&'t [&'t str]>,
    pub(super) new_access: &'t MintedToken,
    pub(super) new_refresh: &'t MintedToken,
    pub(super) access_life: u64,
    pub(super) refresh_life: u64,
}

pub(super) enum RotateOutcome {
    Rotated { scope: String },
    ReuseRevoked,
    Invalid,
    ScopeTooWide,
}

impl BucketTxn for Rotate<'_> {
    type Output = RotateOutcome;
    fn apply(&mut self, bucket: &mut Bucket, now: u64) -> Step<RotateOutcome> {
        let Some(g) = bucket.find_mut(&self.presented.grant_id) else {
            return Step::Done(RotateOutcome::Invalid);
        };
        let is_current = g
            .refresh
            .as_ref()
            .is_some_and(|r| r.hash.matches(&self.presented.hash));
        let is_previous = g
            .previous_refresh
            .is_some_and(|p| p.matches(&self.presented.hash));
        let minted_here = self
            .presented
            .family
            .as_ref()
            .is_some_and(|f| f.verifies(self.key));
        // Another client cannot use the token (and cannot revoke a grant it
        // is not party to); it gets nothing, within the window or after.
        if g.client_id != self.client_id {
            return Step::Done(RotateOutcome::Invalid);
        }
        if g.accepts(TokenKind::Refresh, &self.presented.hash, now) {
            let scope = match self.requested_scope {
                Some(req) if !req.is_empty() => {
                    if !scope::is_subset(req, &g.scope) {
                        return Step::Done(RotateOutcome::ScopeTooWide);
                    }
                    scope::join(req)
                }
                _ => g.scope.clone(),
            };
            g.previous_refresh = g.refresh.as_ref().map(|r| r.hash);
            g.grace_used = false;
            g.scope = scope.clone();
            g.issued_at = now;
            g.access_hash = self.new_access.hash;
            g.access_expires_at = now.saturating_add(self.access_life);
            g.refresh = Some(RefreshState {
                hash: self.new_refresh.hash,
                expires_at: now.saturating_add(self.refresh_life),
            });
            // The grant's previous access token dies now.
            return Step::Announce(RotateOutcome::Rotated { scope });
        }
        // A retry within the window, as often as the client needs (its first
        // tries may have been applied and answered 503), and only while the
        // grant holds the pair derived from this very token (nothing rotated
        // it since). It changes nothing, so it writes nothing: a read is enough.
        if is_previous
            && !g.revoked
            && now < g.issued_at.saturating_add(self.grace_seconds)
            && g.access_hash.matches(&self.new_access.hash)
            && g.refresh
                .as_ref()
                .is_some_and(|r| r.hash.matches(&self.new_refresh.hash))
        {
            return Step::Done(RotateOutcome::Rotated {
                scope: g.scope.clone(),
            });
        }
        // Any other refresh token minted here for this grant was rotated away
        // before: the previous one, or (proved by its family tag) an older one.
        if !g.revoked && !is_current && (is_previous || minted_here) {
            g.revoked = true;
            return Step::Announce(RotateOutcome::ReuseRevoked);
        }
        Step::Done(RotateOutcome::Invalid)
    }

    const RECOGNISES_OWN_WRITE: bool = true;

    /// The grant holds the pair this rotation minted (fresh random tokens).
    fn applied(&mut self, bucket: &mut Bucket) -> Option<RotateOutcome> {
        let g = bucket.find_mut(&self.presented.grant_id)?;
        let ours = g.access_hash.matches(&self.new_access.hash)
            && g.refresh
                .as_ref()
                .is_some_and(|r| r.hash.matches(&self.new_refresh.hash));
        ours.then(|| RotateOutcome::Rotated {
            scope: g.scope.clone(),
        })
    }
}

pub(super) struct RevokeClients<'t> {
    pub(super) clients: &'t [String],
}

impl BucketTxn for RevokeClients<'_> {
    type Output = u32;
    fn apply(&mut self, bucket: &mut Bucket, _now: u64) -> Step<u32> {
        let mut revoked = 0;
        for g in bucket.grants_mut().iter_mut() {
            if !g.revoked && self.clients.contains(&g.client_id) {
                g.revoked = true;
                revoked += 1;
            }
        }
        if revoked > 0 {
            Step::Announce(revoked)
        } else {
            Step::Done(0)
        }
    }
}

pub(super) struct Revoke<'t> {
    pub(super) presented: &'t ParsedToken,
    pub(super) client_id: &'t str,
    /// What the last write revoked, to recognise it (see `applied`).
    pub(super) written: Option<RevokedGrant>,
}

impl BucketTxn for Revoke<'_> {
    type Output = Option<RevokedGrant>;
    fn apply(&mut self, bucket: &mut Bucket, _now: u64) -> Step<Option<RevokedGrant>> {
        let Some(g) = bucket.find_mut(&self.presented.grant_id) else {
            return Step::Done(None);
        };
        if g.client_id != self.client_id || !g.owns(self.presented.kind, &self.presented.hash) {
            return Step::Done(None);
        }
        g.revoked = true;
        let revoked = RevokedGrant {
            access_fingerprint: g.access_hash.fingerprint(),
            refresh_fingerprint: g.refresh.as_ref().map(|r| r.hash.fingerprint()),
            user: g.user.clone(),
        };
        self.written = Some(revoked.clone());
        Step::Announce(Some(revoked))
    }

    const RECOGNISES_OWN_WRITE: bool = true;

    /// Revoking is idempotent: the grant the lost write revoked is now revoked,
    /// or gone (a revoked grant is reclaimed by the next write to its bucket).
    fn applied(&mut self, bucket: &mut Bucket) -> Option<Option<RevokedGrant>> {
        let written = self.written.clone()?;
        match bucket.find_mut(&self.presented.grant_id) {
            Some(g) if !g.revoked => None,
            _ => Some(Some(written)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::opaque::GRANT_ID_BYTES;
    use crate::token::TokenHash;

    fn grant(n: u8) -> Grant {
        Grant {
            id: [n; GRANT_ID_BYTES],
            client_id: "c".into(),
            user: None,
            scope: "default".into(),
            issued_at: 1000,
            access_hash: TokenHash([n; 16]),
            access_expires_at: 4600,
            refresh: None,
            previous_refresh: None,
            grace_used: false,
            revoked: false,
            code: None,
        }
    }

    #[test]
    fn an_insert_found_applied_already_is_not_applied_twice() {
        // The bucket as a lost compare brings it back, encoded: our earlier try is in it.
        let stored = Bucket::with_grants(vec![grant(1), grant(2)]).encode();
        let mut again = Insert {
            grant: grant(2),
            limit: 16,
            may_be_there: true,
        };
        let mut b = Bucket::decode_lazy(&stored).unwrap();
        assert!(matches!(again.apply(&mut b, 1001), Step::Done(true)));
        // A new grant goes in; a full bucket refuses it.
        let mut new = Insert {
            grant: grant(3),
            limit: 3,
            may_be_there: true,
        };
        assert!(matches!(new.apply(&mut b, 1001), Step::Write(true)));
        assert_eq!(b.len(), 3);
        let mut full = Insert {
            grant: grant(4),
            limit: 3,
            may_be_there: true,
        };
        assert!(matches!(full.apply(&mut b, 1001), Step::Done(false)));
    }
}
