//! Every change to a bucket is a [`BucketTxn`]: a pure function of the bucket's
//! current content, with no I/O. The transactions on grants live here (those on
//! authorization codes in `codes`); a driver runs them against a store:
//! `shared_data` against a synchronous one (Envoy shared data) with a bounded
//! CAS retry. A remote store with asynchronous reads can drive the same
//! transactions: read, `apply`, write with the version it read, and on a
//! conflict read again.

use crate::host::RandomUnavailable;
use crate::oauth::scope;
use crate::store::bucket::Bucket;
use crate::store::grant::{Grant, RefreshState};
use crate::store::server_key::ServerKey;
use crate::token::{MintedToken, ParsedToken, TokenKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// CAS conflicts did not settle within the retry bound.
    Contended,
    /// Every bucket tried holds `grants_per_bucket` live grants.
    Full,
    /// The host refused a write or randomness.
    Unavailable,
}

impl From<RandomUnavailable> for StoreError {
    fn from(_: RandomUnavailable) -> Self {
        StoreError::Unavailable
    }
}

/// What a transaction decided after looking at the bucket.
pub enum Step<T> {
    /// Persist the (changed) bucket, then return `T`.
    Write(T),
    /// Nothing to persist.
    Done(T),
}

pub trait BucketTxn {
    type Output;
    /// Called with live grants only (dead ones already reclaimed), perhaps more
    /// than once when a CAS conflict forces a retry: it must not keep state
    /// between calls beyond what it returns.
    fn apply(&mut self, bucket: &mut Bucket, now: u64) -> Step<Self::Output>;
}

/// Counts of things the store noticed, for stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxnReport {
    pub cas_retries: u32,
    pub corrupt_values: u32,
    pub reclaimed: u32,
    /// Issuances refused because every bucket tried was full.
    pub full: u32,
    /// Grants revoked because a used refresh token came back (RFC 9700 §4.14.2).
    pub refresh_reuse_revoked: u32,
    /// Grants revoked because a redeemed authorization code came back (RFC 6749 §4.1.2).
    pub code_replay_revoked: u32,
}

/// What a revocation removed, for the reference product's response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedGrant {
    pub access_fingerprint: String,
    pub refresh_fingerprint: Option<String>,
    pub user: Option<String>,
}

pub(crate) struct Insert {
    pub(crate) grant: Grant,
    pub(crate) limit: usize,
}

impl BucketTxn for Insert {
    type Output = bool;
    fn apply(&mut self, bucket: &mut Bucket, _now: u64) -> Step<bool> {
        if bucket.grants.len() >= self.limit {
            return Step::Done(false);
        }
        bucket.grants.push(self.grant.clone());
        Step::Write(true)
    }
}

pub(crate) struct Rotate<'t> {
    pub(crate) grace_seconds: u64,
    pub(crate) key: &'t ServerKey,
    pub(crate) presented: &'t ParsedToken,
    pub(crate) client_id: &'t str,
    pub(crate) requested_scope: Option<&'t [&'t str]>,
    pub(crate) new_access: &'t MintedToken,
    pub(crate) new_refresh: &'t MintedToken,
    pub(crate) access_life: u64,
    pub(crate) refresh_life: u64,
}

pub(crate) enum RotateOutcome {
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
            return Step::Write(RotateOutcome::Rotated { scope });
        }
        let is_previous = g
            .previous_refresh
            .is_some_and(|p| p.matches(&self.presented.hash));
        // A retry within the grace period, once, and only if the grant still holds
        // the pair derived from this very token (nothing rotated it since).
        if is_previous
            && !g.grace_used
            && now < g.issued_at.saturating_add(self.grace_seconds)
            && g.access_hash.matches(&self.new_access.hash)
            && g.refresh
                .as_ref()
                .is_some_and(|r| r.hash.matches(&self.new_refresh.hash))
        {
            g.grace_used = true;
            return Step::Write(RotateOutcome::Rotated {
                scope: g.scope.clone(),
            });
        }
        // Any other refresh token minted here for this grant was rotated away
        // before: the previous one, or (proved by its family tag) an older one.
        let is_current = g
            .refresh
            .as_ref()
            .is_some_and(|r| r.hash.matches(&self.presented.hash));
        let minted_here = self
            .presented
            .family
            .as_ref()
            .is_some_and(|f| f.verifies(self.key));
        if !g.revoked && !is_current && (is_previous || minted_here) {
            g.revoked = true;
            return Step::Write(RotateOutcome::ReuseRevoked);
        }
        Step::Done(RotateOutcome::Invalid)
    }
}

pub(crate) struct RevokeClients<'t> {
    pub(crate) clients: &'t [String],
}

impl BucketTxn for RevokeClients<'_> {
    type Output = u32;
    fn apply(&mut self, bucket: &mut Bucket, _now: u64) -> Step<u32> {
        let mut revoked = 0;
        for g in bucket.grants.iter_mut() {
            if !g.revoked && self.clients.contains(&g.client_id) {
                g.revoked = true;
                revoked += 1;
            }
        }
        if revoked > 0 {
            Step::Write(revoked)
        } else {
            Step::Done(0)
        }
    }
}

pub(crate) struct Revoke<'t> {
    pub(crate) presented: &'t ParsedToken,
    pub(crate) client_id: &'t str,
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
        Step::Write(Some(RevokedGrant {
            access_fingerprint: g.access_hash.fingerprint(),
            refresh_fingerprint: g.refresh.as_ref().map(|r| r.hash.fingerprint()),
            user: g.user.clone(),
        }))
    }
}
