//! Authorization codes (RFC 6749 §4.1) in the grant store. A code is a grant
//! record that holds the code's hash and its binding (client, user, scope,
//! redirect URI, PKCE challenge) and no usable token. Redeeming it turns the
//! same record into a normal grant with an access (and maybe refresh) token in
//! one CAS; the record keeps the code's hash and binding, so a second
//! presentation is recognised in one CAS as well and, when it carries the
//! same proof a redemption needs, revokes what the code produced (§4.1.2).

use super::grants::{GrantStore, IssuedTokens, Lifetimes, PLACEMENT_TRIES};
use super::txn::{run_txn_from, StoreError};
use super::MAX_BUCKETS;
use crate::oauth::pkce;
use crate::store::bucket::Bucket;
use crate::store::grant::{CodeState, Grant, RefreshState};
use crate::store::{BucketTxn, Step};
use crate::token::{self, AccessTokenFacts, HandleKind, MintedToken, ParsedToken, TokenHash};

/// What a new authorization code is bound to.
#[derive(Debug, Clone)]
pub struct CodeBinding {
    pub client_id: String,
    /// `user@tenant` who approved.
    pub user: String,
    pub scope: String,
    pub redirect_uri: String,
    /// The authorization request named `redirect_uri` explicitly.
    pub redirect_given: bool,
    pub challenge: Option<(pkce::Method, String)>,
}

/// What the token request presents with the code.
#[derive(Debug, Clone, Copy)]
pub struct CodeRedemption<'a> {
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub verifier: Option<&'a str>,
    pub lifetimes: Lifetimes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemError {
    /// Refused; the text is the `error_description`.
    Invalid(&'static str),
    /// The code was already redeemed: its grant is now revoked.
    Replayed,
    Store(StoreError),
}

pub const CODE_INVALID: &str = "the authorization code is invalid, expired or already used";

impl GrantStore<'_> {
    /// Stores a new code grant; returns the code (once).
    pub async fn issue_code(
        &mut self,
        binding: &CodeBinding,
        lifetime: u64,
        now: u64,
    ) -> Result<String, StoreError> {
        for _ in 0..PLACEMENT_TRIES {
            let mut pick = [0u8; 4];
            self.rng.fill(&mut pick)?;
            let bucket = u32::from_be_bytes(pick) % self.layout.buckets.max(1);
            let grant_id = token::new_grant_id(self.rng)?;
            let code = token::mint_handle(HandleKind::Code, bucket, &grant_id, self.rng)?;
            let grant = Grant {
                id: grant_id,
                client_id: binding.client_id.clone(),
                user: Some(binding.user.clone()),
                scope: binding.scope.clone(),
                issued_at: now,
                access_hash: code.hash,
                access_expires_at: now.saturating_add(lifetime),
                refresh: None,
                previous_refresh: None,
                revoked: false,
                grace_used: false,
                code: Some(CodeState {
                    hash: code.hash,
                    redirect_uri: binding.redirect_uri.clone(),
                    redirect_given: binding.redirect_given,
                    challenge: binding.challenge.clone(),
                    redeemed: false,
                }),
            };
            if self.insert(bucket, grant, now).await? {
                return Ok(code.text);
            }
        }
        self.report.full += 1;
        Err(StoreError::Full)
    }

    /// Exchanges a code for tokens, in one CAS on its grant.
    pub async fn redeem_code(
        &mut self,
        code: &ParsedToken,
        r: &CodeRedemption<'_>,
        now: u64,
    ) -> Result<IssuedTokens, RedeemError> {
        if code.bucket >= MAX_BUCKETS {
            return Err(RedeemError::Invalid(CODE_INVALID));
        }
        let store_err = |e: crate::host::RandomUnavailable| RedeemError::Store(e.into());
        // The code's record says whose token this is and for what.
        let (grant, read) = self.peek(code).await.map_err(RedeemError::Store)?;
        let Some(grant) = grant else {
            return Err(RedeemError::Invalid(CODE_INVALID));
        };
        let facts = AccessTokenFacts {
            bucket: code.bucket,
            grant_id: &code.grant_id,
            client_id: r.client_id,
            user: grant.user.as_deref(),
            scope: &grant.scope,
            issued_at: now,
            expires_at: now.saturating_add(r.lifetimes.access),
        };
        let access = self.format.mint(&facts, self.rng).map_err(store_err)?;
        let refresh = match r.lifetimes.refresh {
            Some(_) => {
                let key = self.key().await.map_err(RedeemError::Store)?;
                Some(
                    token::mint_refresh(code.bucket, &code.grant_id, self.rng, &key)
                        .map_err(store_err)?,
                )
            }
            None => None,
        };
        let mut txn = Redeem {
            presented: code.hash,
            grant_id: code.grant_id,
            r,
            access: &access,
            refresh: refresh.as_ref(),
        };
        // From the bucket just read (see `run_txn_from`).
        let out = run_txn_from(
            &self.kv,
            code.bucket,
            &mut txn,
            now,
            &mut self.report,
            Some(read),
        )
        .await
        .map_err(RedeemError::Store)?;
        match out {
            Ok(scope) => Ok(IssuedTokens {
                access_token: access.text,
                refresh_token: refresh.map(|t| t.text),
                expires_in: r.lifetimes.access,
                scope,
            }),
            Err(RedeemError::Replayed) => {
                self.report.code_replay_revoked += 1;
                self.bump_revocation(code.bucket);
                Err(RedeemError::Replayed)
            }
            Err(e) => Err(e),
        }
    }
}

struct Redeem<'t> {
    presented: TokenHash,
    grant_id: token::GrantId,
    r: &'t CodeRedemption<'t>,
    access: &'t MintedToken,
    refresh: Option<&'t MintedToken>,
}

impl BucketTxn for Redeem<'_> {
    type Output = Result<String, RedeemError>;
    fn apply(&mut self, bucket: &mut Bucket, now: u64) -> Step<Self::Output> {
        let invalid = |why| Step::Done(Err(RedeemError::Invalid(why)));
        let Some(g) = bucket.find_mut(&self.grant_id) else {
            return invalid(CODE_INVALID);
        };
        let Some(c) = g.code.as_mut() else {
            return invalid(CODE_INVALID);
        };
        if !c.hash.matches(&self.presented) {
            return invalid(CODE_INVALID);
        }
        if c.redeemed {
            // RFC 6749 §4.1.2: a code used twice revokes what it produced, but
            // only for a request that proves it is the code's client (the same
            // proof a redemption needs); a bare code, which leaks through
            // logs, referrers and browser history, must not end the session.
            if proves_binding(&g.client_id, c, self.r).is_err() {
                return invalid(CODE_INVALID);
            }
            g.revoked = true;
            return Step::Announce(Err(RedeemError::Replayed));
        }
        if now >= g.access_expires_at {
            return invalid(CODE_INVALID);
        }
        if let Err(why) = proves_binding(&g.client_id, c, self.r) {
            return invalid(why);
        }
        c.redeemed = true;
        g.issued_at = now;
        g.access_hash = self.access.hash;
        g.access_expires_at = now.saturating_add(self.r.lifetimes.access);
        g.refresh = self
            .refresh
            .zip(self.r.lifetimes.refresh)
            .map(|(t, life)| RefreshState {
                hash: t.hash,
                expires_at: now.saturating_add(life),
            });
        Step::Write(Ok(g.scope.clone()))
    }

    const RECOGNISES_OWN_WRITE: bool = true;

    /// The code is redeemed into the access token this redemption minted.
    fn applied(&mut self, bucket: &mut Bucket) -> Option<Self::Output> {
        let g = bucket.find_mut(&self.grant_id)?;
        let redeemed = g.code.as_ref().is_some_and(|c| c.redeemed);
        (redeemed && !g.revoked && g.access_hash.matches(&self.access.hash))
            .then(|| Ok(g.scope.clone()))
    }
}

/// Whether the request presents what the code is bound to: the client it was
/// issued to (already authenticated: a confidential client by its secret),
/// the redirect URI of the authorization request, and the PKCE verifier of
/// its challenge (a public client's only proof). `Err`: the
/// `error_description` of a fresh code's refusal.
fn proves_binding(
    code_client: &str,
    c: &CodeState,
    r: &CodeRedemption<'_>,
) -> Result<(), &'static str> {
    if code_client != r.client_id {
        return Err(CODE_INVALID);
    }
    let redirect_ok = match r.redirect_uri {
        Some(p) => p == c.redirect_uri,
        None => !c.redirect_given,
    };
    if !redirect_ok {
        return Err("redirect_uri does not match the authorization request");
    }
    match (&c.challenge, r.verifier) {
        (Some((method, challenge)), Some(v)) if !pkce::verify(*method, challenge, v) => {
            Err("code_verifier does not match the code_challenge")
        }
        (Some(_), Some(_)) | (None, None) => Ok(()),
        (Some(_), None) => Err("code_verifier is required"),
        // RFC 9700 §2.1.1: a verifier without a challenge is refused
        // (a PKCE downgrade attempt).
        (None, Some(_)) => {
            Err("code_verifier sent, but the authorization request had no code_challenge")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    use crate::host::HostRandomness;
    #[allow(unused_imports)]
    use crate::store::kv::{Kv, Sync_};
    use crate::store::StoreLayout;

    const LAYOUT: StoreLayout = StoreLayout {
        buckets: 4,
        grants_per_bucket: 8,
    };
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const LIFE: Lifetimes = Lifetimes {
        access: 3600,
        refresh: Some(86400),
    };

    fn binding(challenge: bool) -> CodeBinding {
        CodeBinding {
            client_id: "app".into(),
            user: "admin@carbon.super".into(),
            scope: "default".into(),
            redirect_uri: "https://app/cb".into(),
            redirect_given: true,
            challenge: challenge.then(|| (pkce::Method::S256, pkce::s256_challenge(VERIFIER))),
        }
    }

    fn redemption<'a>(client: &'a str, verifier: Option<&'a str>) -> CodeRedemption<'a> {
        CodeRedemption {
            client_id: client,
            redirect_uri: Some("https://app/cb"),
            verifier,
            lifetimes: LIFE,
        }
    }

    fn code(t: &str) -> ParsedToken {
        token::parse_handle(t, HandleKind::Code).unwrap()
    }

    #[test]
    fn a_code_is_no_token_and_redeems_once_into_a_normal_grant() {
        let kv = MemoryKv::default();
        let mut s = GrantStore::new(&kv, &HostRandomness, LAYOUT);
        s.ensure_created().unwrap();
        let c = s.issue_code(&binding(true), 60, 1000).sync().unwrap();
        let p = code(&c);
        // Not a bearer token, and the pending grant accepts no token.
        assert!(token::parse(&c).is_none());
        let as_access = ParsedToken {
            kind: token::TokenKind::Access,
            ..p.clone()
        };
        assert!(s.lookup(&as_access, 1001).sync().unwrap().is_none());
        let t = s
            .redeem_code(&p, &redemption("app", Some(VERIFIER)), 1001)
            .sync()
            .unwrap();
        let g = s
            .lookup(&token::parse(&t.access_token).unwrap(), 1002)
            .sync()
            .unwrap()
            .unwrap();
        assert_eq!(
            (g.user.as_deref(), g.scope.as_str()),
            (Some("admin@carbon.super"), "default")
        );
        assert!(t.refresh_token.is_some());
        // Replay: refused, and the tokens it produced die.
        assert_eq!(
            s.redeem_code(&p, &redemption("app", Some(VERIFIER)), 1003)
                .sync()
                .err(),
            Some(RedeemError::Replayed)
        );
        assert_eq!(s.report.code_replay_revoked, 1);
        assert!(s
            .lookup(&token::parse(&t.access_token).unwrap(), 1004)
            .sync()
            .unwrap()
            .is_none());
        assert!(s
            .lookup(
                &token::parse(t.refresh_token.as_deref().unwrap()).unwrap(),
                1004
            )
            .sync()
            .unwrap()
            .is_none());
        // A third time it is simply unknown.
        assert_eq!(
            s.redeem_code(&p, &redemption("app", Some(VERIFIER)), 1005)
                .sync()
                .err(),
            Some(RedeemError::Invalid(CODE_INVALID))
        );
    }

    #[test]
    fn every_binding_is_checked_and_failures_do_not_consume_the_code() {
        let kv = MemoryKv::default();
        let mut s = GrantStore::new(&kv, &HostRandomness, LAYOUT);
        s.ensure_created().unwrap();
        let c = s.issue_code(&binding(true), 60, 1000).sync().unwrap();
        let p = code(&c);
        let is_invalid =
            |r: Result<IssuedTokens, RedeemError>| matches!(r, Err(RedeemError::Invalid(_)));
        assert!(is_invalid(
            s.redeem_code(&p, &redemption("other", Some(VERIFIER)), 1001)
                .sync()
        ));
        assert!(is_invalid(
            s.redeem_code(&p, &redemption("app", None), 1001).sync()
        ));
        let wrong = VERIFIER.replace('d', "e");
        assert!(is_invalid(
            s.redeem_code(&p, &redemption("app", Some(&wrong)), 1001)
                .sync()
        ));
        let mut r = redemption("app", Some(VERIFIER));
        r.redirect_uri = Some("https://app/cb2");
        assert!(is_invalid(s.redeem_code(&p, &r, 1001).sync()));
        r.redirect_uri = None;
        assert!(is_invalid(s.redeem_code(&p, &r, 1001).sync()));
        // A forged code for the same grant.
        let forged =
            token::mint_handle(HandleKind::Code, p.bucket, &p.grant_id, &HostRandomness).unwrap();
        assert!(is_invalid(
            s.redeem_code(
                &code(&forged.text),
                &redemption("app", Some(VERIFIER)),
                1001
            )
            .sync()
        ));
        // Expired.
        assert!(is_invalid(
            s.redeem_code(&p, &redemption("app", Some(VERIFIER)), 1060)
                .sync()
        ));
        // A fresh one still works after all of these.
        let c2 = s.issue_code(&binding(true), 60, 2000).sync().unwrap();
        let p2 = code(&c2);
        for _ in 0..3 {
            let _ = s.redeem_code(&p2, &redemption("app", None), 2001).sync();
        }
        assert!(s
            .redeem_code(&p2, &redemption("app", Some(VERIFIER)), 2001)
            .sync()
            .is_ok());
    }

    #[test]
    fn without_a_challenge_a_verifier_is_refused_and_omitted_redirect_may_stay_omitted() {
        let kv = MemoryKv::default();
        let mut s = GrantStore::new(&kv, &HostRandomness, LAYOUT);
        s.ensure_created().unwrap();
        let mut b = binding(false);
        b.redirect_given = false;
        let p = code(&s.issue_code(&b, 60, 1000).sync().unwrap());
        assert!(matches!(
            s.redeem_code(&p, &redemption("app", Some(VERIFIER)), 1001)
                .sync(),
            Err(RedeemError::Invalid(_))
        ));
        let mut r = redemption("app", None);
        r.redirect_uri = None;
        r.lifetimes.refresh = None;
        let t = s.redeem_code(&p, &r, 1001).sync().unwrap();
        assert!(t.refresh_token.is_none());
    }

    #[test]
    fn a_replay_without_the_codes_proof_revokes_nothing() {
        let kv = MemoryKv::default();
        let mut s = GrantStore::new(&kv, &HostRandomness, LAYOUT);
        s.ensure_created().unwrap();
        let p = code(&s.issue_code(&binding(true), 60, 1000).sync().unwrap());
        let t = s
            .redeem_code(&p, &redemption("app", Some(VERIFIER)), 1001)
            .sync()
            .unwrap();
        let wrong = VERIFIER.replace('d', "e");
        let mut other_redirect = redemption("app", Some(VERIFIER));
        other_redirect.redirect_uri = Some("https://app/cb2");
        for r in [
            redemption("app", None),
            redemption("app", Some(&wrong)),
            redemption("other", Some(VERIFIER)),
            other_redirect,
        ] {
            // The same answer as an unknown code: nothing tells it was redeemed.
            assert_eq!(
                s.redeem_code(&p, &r, 1002).sync().err(),
                Some(RedeemError::Invalid(CODE_INVALID))
            );
        }
        assert_eq!(s.report.code_replay_revoked, 0);
        let access = token::parse(&t.access_token).unwrap();
        assert!(s.lookup(&access, 1003).sync().unwrap().is_some());
        // The code's own client with its verifier: a real replay, which revokes.
        assert_eq!(
            s.redeem_code(&p, &redemption("app", Some(VERIFIER)), 1004)
                .sync()
                .err(),
            Some(RedeemError::Replayed)
        );
        assert!(s.lookup(&access, 1005).sync().unwrap().is_none());
    }

    #[test]
    fn a_confidential_client_without_pkce_proves_a_replay_by_its_authentication() {
        let kv = MemoryKv::default();
        let mut s = GrantStore::new(&kv, &HostRandomness, LAYOUT);
        s.ensure_created().unwrap();
        let p = code(&s.issue_code(&binding(false), 60, 1000).sync().unwrap());
        let t = s
            .redeem_code(&p, &redemption("app", None), 1001)
            .sync()
            .unwrap();
        assert_eq!(
            s.redeem_code(&p, &redemption("other", None), 1002)
                .sync()
                .err(),
            Some(RedeemError::Invalid(CODE_INVALID))
        );
        let access = token::parse(&t.access_token).unwrap();
        assert!(s.lookup(&access, 1003).sync().unwrap().is_some());
        assert_eq!(
            s.redeem_code(&p, &redemption("app", None), 1004)
                .sync()
                .err(),
            Some(RedeemError::Replayed)
        );
        assert!(s.lookup(&access, 1005).sync().unwrap().is_none());
    }

    #[test]
    fn concurrent_redemptions_have_one_winner() {
        use std::sync::Arc;
        let kv = Arc::new(MemoryKv::default());
        GrantStore::new(&*kv, &HostRandomness, LAYOUT)
            .ensure_created()
            .unwrap();
        let c = GrantStore::new(&*kv, &HostRandomness, LAYOUT)
            .issue_code(&binding(true), 60, 1000)
            .sync()
            .unwrap();
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let kv = kv.clone();
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut s = GrantStore::new(&*kv, &HostRandomness, LAYOUT);
                    s.ensure_created().unwrap();
                    s.redeem_code(&code(&c), &redemption("app", Some(VERIFIER)), 1001)
                        .sync()
                        .is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1);
    }
}
