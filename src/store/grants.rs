//! The token store: grants in a fixed number of buckets in a CAS key-value store.
//!
//! Keys: `oauth2/g/<bucket>` holds a [`Bucket`]; `oauth2/rev/<shard>` holds a
//! revocation generation (u64) that goes up whenever a token of a bucket in
//! that shard stops being valid early, so per-worker caches can notice;
//! `oauth2/key` holds the store's key (`server_key`).
//! The number of keys is `buckets + 257` whatever the traffic: shared data has
//! no delete, so dead grants are reclaimed inside their bucket on every write.
//!
//! Every change runs as a pure transaction (`txn`), and the transactions of
//! this file and `codes` are what the store can do to a grant.

use crate::host::{KvStore, Randomness, WriteError};
use crate::oauth::scope;
use crate::store::bucket::{Bucket, Corrupt};
use crate::store::grant::{Grant, RefreshState};
pub(super) use crate::store::grant_txns::{Insert, Revoke, RevokeClients, Rotate, RotateOutcome};
use crate::store::keys::{
    bucket_key, bucket_of_key, revocation_key, BUCKET_PREFIX, BUCKET_RANGE_END,
};
use crate::store::kv::{Kv, Stored};
use crate::store::refresh_grace::DerivedSecret;
use crate::store::server_key::{self, ServerKey};
use crate::store::txn::{run_txn, run_txn_from, StoreError, TxnReport, CAS_RETRIES};
use crate::store::{StoreLayout, MAX_BUCKETS, REVOCATION_SHARDS};
use crate::token::{
    self, AccessTokenFacts, AccessTokenFormat, Opaque, ParsedToken, TokenHash, TokenKind,
};

/// How many random buckets an issuance tries before the store counts as full.
pub(super) const PLACEMENT_TRIES: usize = 4;

/// Bucket keys per page of a remote scan (`revoke_clients`): a page of full
/// 16-grant buckets stays under a few hundred kilobytes.
const SCAN_PAGE: u32 = 128;

/// Why a lookup found nothing to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFailed {
    /// The stored value is unreadable (never trusted).
    Corrupt,
    /// The store did not answer.
    Unavailable,
}

/// Lifetimes of the tokens of one issuance, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub access: u64,
    /// `None`: no refresh token (client_credentials).
    pub refresh: Option<u64>,
}

/// What a new grant is for.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    pub client_id: String,
    pub user: Option<String>,
    pub scope: String,
    pub lifetimes: Lifetimes,
}

/// Tokens handed to the client, once.
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub scope: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// Unknown, expired, revoked, another client's, or already used.
    InvalidGrant,
    /// Asked for a scope the grant does not have.
    InvalidScope,
    Store(StoreError),
}

/// What a revocation removed, for the reference product's response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedGrant {
    pub access_fingerprint: String,
    pub refresh_fingerprint: Option<String>,
    pub user: Option<String>,
}

pub struct GrantStore<'a> {
    pub(super) kv: Kv<'a>,
    pub(super) rng: &'a dyn Randomness,
    pub(super) layout: StoreLayout,
    /// How access tokens look (opaque unless the caller says otherwise).
    pub(super) format: &'a dyn AccessTokenFormat,
    pub report: TxnReport,
}

impl<'a> GrantStore<'a> {
    /// A store over Envoy shared data (or memory, in tests).
    pub fn new(kv: &'a dyn KvStore, rng: &'a dyn Randomness, layout: StoreLayout) -> Self {
        Self::over(Kv::Local(kv), rng, layout)
    }

    /// A store over any [`Kv`]: local, or remote (etcd).
    pub fn over(kv: Kv<'a>, rng: &'a dyn Randomness, layout: StoreLayout) -> Self {
        GrantStore {
            kv,
            rng,
            layout,
            format: &Opaque,
            report: TxnReport::default(),
        }
    }

    /// Mints access tokens in `format` from now on.
    pub fn with_format(&mut self, format: &'a dyn AccessTokenFormat) -> &mut Self {
        self.format = format;
        self
    }

    /// Puts a new grant into `bucket`; false if the bucket is full.
    pub(super) async fn insert(
        &mut self,
        bucket: u32,
        grant: Grant,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut txn = Insert {
            grant,
            limit: self.layout.grants_per_bucket as usize,
            may_be_there: self.kv.is_remote(),
        };
        // Remotely, most of the 2^20 buckets are empty: write believing so, and
        // save the read (a lost compare brings the bucket back).
        let believed = self.kv.is_remote().then(Stored::default);
        run_txn_from(&self.kv, bucket, &mut txn, now, &mut self.report, believed).await
    }

    /// The grant record `token` names, whatever its state: what a new access
    /// token of it will state (its user, scope and times); and the bucket as
    /// read (a transaction that follows can start from it instead of reading again).
    pub(super) async fn peek(
        &self,
        token: &ParsedToken,
    ) -> Result<(Option<Grant>, Stored), StoreError> {
        let current = self.kv.get(&bucket_key(token.bucket)).await?;
        let grant = Bucket::decode_one(current.value.as_deref().unwrap_or(&[]), &token.grant_id)
            .ok()
            .flatten();
        Ok((grant, current))
    }

    /// Creates every bucket and revocation key, and the store's key, that does not exist yet. Run once
    /// at configuration, before requests: Envoy accepts any write to a missing
    /// key, so a key first created while another worker writes it could lose that
    /// write. Returns how many keys it created.
    /// A remote store creates nothing up front: it has create-if-absent.
    pub fn ensure_created(&self) -> Result<u32, StoreError> {
        let Kv::Local(kv) = &self.kv else {
            return Ok(0);
        };
        let kv = *kv;
        let mut created = 0;
        let keys = (0..self.layout.buckets)
            .map(bucket_key)
            .chain((0..REVOCATION_SHARDS).map(revocation_key));
        for key in keys {
            if kv.get(&key).cas.is_none() {
                let empty: &[u8] = if key.starts_with("oauth2/g/") {
                    &[]
                } else {
                    &[0; 8]
                };
                kv.set(&key, empty, None)
                    .map_err(|_| StoreError::Unavailable)?;
                created += 1;
            }
        }
        if server_key::ensure_key(kv, self.rng).map_err(|_| StoreError::Unavailable)? {
            created += 1;
        }
        Ok(created)
    }

    /// The store's key, which refresh tokens need (see `server_key::load`).
    pub(super) async fn key(&self) -> Result<ServerKey, StoreError> {
        server_key::load(&self.kv, self.rng).await
    }

    /// Issues a new grant with its tokens.
    pub async fn issue(
        &mut self,
        req: &GrantRequest,
        now: u64,
    ) -> Result<IssuedTokens, StoreError> {
        let key = match req.lifetimes.refresh {
            Some(_) => Some(self.key().await?),
            None => None,
        };
        for _ in 0..PLACEMENT_TRIES {
            let mut pick = [0u8; 4];
            self.rng.fill(&mut pick)?;
            let bucket = u32::from_be_bytes(pick) % self.layout.buckets.max(1);
            let grant_id = token::new_grant_id(self.rng)?;
            let facts = AccessTokenFacts {
                bucket,
                grant_id: &grant_id,
                client_id: &req.client_id,
                user: req.user.as_deref(),
                scope: &req.scope,
                issued_at: now,
                expires_at: now.saturating_add(req.lifetimes.access),
            };
            let access = self.format.mint(&facts, self.rng)?;
            let refresh = match &key {
                Some(key) => Some(token::mint_refresh(bucket, &grant_id, self.rng, key)?),
                None => None,
            };
            let grant = Grant {
                id: grant_id,
                client_id: req.client_id.clone(),
                user: req.user.clone(),
                scope: req.scope.clone(),
                issued_at: now,
                access_hash: access.hash,
                access_expires_at: now.saturating_add(req.lifetimes.access),
                refresh: refresh
                    .as_ref()
                    .zip(req.lifetimes.refresh)
                    .map(|(t, life)| RefreshState {
                        hash: t.hash,
                        expires_at: now.saturating_add(life),
                    }),
                previous_refresh: None,
                revoked: false,
                grace_used: false,
                code: None,
            };
            if self.insert(bucket, grant, now).await? {
                return Ok(IssuedTokens {
                    access_token: access.text,
                    refresh_token: refresh.map(|t| t.text),
                    expires_in: req.lifetimes.access,
                    scope: req.scope.clone(),
                });
            }
        }
        self.report.full += 1;
        Err(StoreError::Full)
    }

    /// The live grant that accepts this token, if any. Read-only.
    pub async fn lookup(
        &mut self,
        token: &ParsedToken,
        now: u64,
    ) -> Result<Option<Grant>, StoreError> {
        match Self::lookup_in(&self.kv, token, now).await {
            Ok(g) => Ok(g),
            Err(LookupFailed::Corrupt) => {
                self.report.corrupt_values += 1;
                Ok(None)
            }
            Err(LookupFailed::Unavailable) => Err(StoreError::Unavailable),
        }
    }

    /// [`GrantStore::lookup`] for readers without a store handle (the guard).
    pub async fn lookup_in(
        kv: &Kv<'_>,
        token: &ParsedToken,
        now: u64,
    ) -> Result<Option<Grant>, LookupFailed> {
        if token.bucket >= MAX_BUCKETS {
            return Ok(None);
        }
        let current = kv
            .get(&bucket_key(token.bucket))
            .await
            .map_err(|_| LookupFailed::Unavailable)?;
        let grant = Bucket::decode_one(current.value.as_deref().unwrap_or(&[]), &token.grant_id)
            .map_err(|Corrupt| LookupFailed::Corrupt)?;
        Ok(grant.filter(|g| g.accepts(token.kind, &token.hash, now)))
    }

    /// Rotates a refresh token: the presented one dies, the grant's access token is
    /// replaced, and a new pair is returned. Any refresh token of the grant's
    /// rotation chain already rotated away revokes the whole grant (reuse detection).
    pub async fn refresh(
        &mut self,
        token: &ParsedToken,
        client_id: &str,
        requested_scope: Option<&[&str]>,
        lifetimes: Lifetimes,
        grace_seconds: u64,
        now: u64,
    ) -> Result<IssuedTokens, RefreshError> {
        if token.kind != TokenKind::Refresh || token.bucket >= MAX_BUCKETS {
            return Err(RefreshError::InvalidGrant);
        }
        let refresh_life = lifetimes.refresh.unwrap_or(0);
        let key = self.key().await.map_err(RefreshError::Store)?;
        // With a grace period the new pair is a function of the presented token, so
        // a retry of it recomputes the same pair (see `refresh_grace`).
        let derived = |label| DerivedSecret {
            key: &key,
            seed: &token.hash,
            label,
        };
        let (access_rng, refresh_rng): (&dyn Randomness, &dyn Randomness) = if grace_seconds > 0 {
            (&derived(1), &derived(2))
        } else {
            (self.rng, self.rng)
        };
        // What the new access token states; a retry within the grace period
        // restates the rotation it repeats, so it mints the same token.
        let (grant, read) = self.peek(token).await.map_err(RefreshError::Store)?;
        let Some(grant) = grant else {
            return Err(RefreshError::InvalidGrant);
        };
        let retry = grant
            .previous_refresh
            .is_some_and(|p| p.matches(&token.hash));
        let scope = match requested_scope {
            Some(req) if !req.is_empty() && !retry => scope::join(req),
            _ => grant.scope.clone(),
        };
        let (issued_at, expires_at) = if retry {
            (grant.issued_at, grant.access_expires_at)
        } else {
            (now, now.saturating_add(lifetimes.access))
        };
        let facts = AccessTokenFacts {
            bucket: token.bucket,
            grant_id: &token.grant_id,
            client_id,
            user: grant.user.as_deref(),
            scope: &scope,
            issued_at,
            expires_at,
        };
        let access = self
            .format
            .mint(&facts, access_rng)
            .map_err(|e| RefreshError::Store(e.into()))?;
        let refresh = token::mint_refresh(token.bucket, &token.grant_id, refresh_rng, &key)
            .map_err(|e| RefreshError::Store(e.into()))?;
        let mut txn = Rotate {
            grace_seconds,
            key: &key,
            presented: token,
            client_id,
            requested_scope,
            new_access: &access,
            new_refresh: &refresh,
            access_life: lifetimes.access,
            refresh_life,
        };
        // The rotation starts from the bucket just read: if it changed since,
        // the compare loses (over etcd its answer brings the bucket back).
        let outcome = run_txn_from(
            &self.kv,
            token.bucket,
            &mut txn,
            now,
            &mut self.report,
            Some(read),
        )
        .await
        .map_err(RefreshError::Store)?;
        match outcome {
            RotateOutcome::Rotated { scope } => {
                // The grant's previous access token is now invalid.
                self.bump_revocation(token.bucket);
                Ok(IssuedTokens {
                    access_token: access.text,
                    refresh_token: Some(refresh.text),
                    expires_in: lifetimes.access,
                    scope,
                })
            }
            RotateOutcome::ReuseRevoked => {
                self.report.refresh_reuse_revoked += 1;
                self.bump_revocation(token.bucket);
                Err(RefreshError::InvalidGrant)
            }
            RotateOutcome::Invalid => Err(RefreshError::InvalidGrant),
            RotateOutcome::ScopeTooWide => Err(RefreshError::InvalidScope),
        }
    }

    /// Revokes the grant a token belongs to, if it belongs to `client_id`.
    /// `Ok(None)`: unknown, dead, or another client's token: indistinguishable.
    pub async fn revoke(
        &mut self,
        token: &ParsedToken,
        client_id: &str,
        now: u64,
    ) -> Result<Option<RevokedGrant>, StoreError> {
        if token.bucket >= MAX_BUCKETS {
            return Ok(None);
        }
        let mut txn = Revoke {
            presented: token,
            client_id,
            written: None,
        };
        let out = run_txn(&self.kv, token.bucket, &mut txn, now, &mut self.report).await?;
        if out.is_some() {
            self.bump_revocation(token.bucket);
        }
        Ok(out)
    }

    /// Revokes every grant of these clients, in every bucket that exists (also
    /// buckets beyond the current layout, left by an earlier one: tokens name
    /// their bucket). Run at configuration; returns how many grants it revoked.
    pub async fn revoke_clients(
        &mut self,
        clients: &[String],
        now: u64,
    ) -> Result<u32, StoreError> {
        if self.kv.is_remote() {
            return self.revoke_clients_remote(clients, now).await;
        }
        let mut total = 0;
        for bucket in 0..MAX_BUCKETS {
            // Buckets are created as 0..n: the first missing one ends the scan.
            if self.kv.get(&bucket_key(bucket)).await?.version.is_none() {
                break;
            }
            let revoked = run_txn(
                &self.kv,
                bucket,
                &mut RevokeClients { clients },
                now,
                &mut self.report,
            )
            .await?;
            if revoked > 0 {
                total += revoked;
                self.bump_revocation(bucket);
            }
        }
        Ok(total)
    }

    /// Remotely, bucket keys exist only where grants were written (among
    /// `MAX_BUCKETS` possible): a paged scan finds them, and only buckets that
    /// hold a live grant of a listed client are rewritten, by the same CAS
    /// transaction as locally. Every page moves past the last key, so the scan ends.
    async fn revoke_clients_remote(
        &mut self,
        clients: &[String],
        now: u64,
    ) -> Result<u32, StoreError> {
        let mut from = BUCKET_PREFIX.to_string();
        let mut total = 0;
        for _ in 0..=MAX_BUCKETS / SCAN_PAGE {
            let page = self
                .kv
                .scan(&from, BUCKET_RANGE_END, SCAN_PAGE)
                .await
                .map_err(|_| StoreError::Unavailable)?;
            for (key, stored) in &page.entries {
                let Some(bucket) = bucket_of_key(key) else {
                    continue;
                };
                // A corrupt bucket is never trusted by lookups: nothing to revoke.
                let holds_listed = stored
                    .value
                    .as_deref()
                    .and_then(|v| Bucket::decode(v).ok())
                    .is_some_and(|mut b| {
                        b.grants_mut()
                            .iter()
                            .any(|g| !g.revoked && clients.contains(&g.client_id))
                    });
                if !holds_listed {
                    continue;
                }
                let revoked = run_txn(
                    &self.kv,
                    bucket,
                    &mut RevokeClients { clients },
                    now,
                    &mut self.report,
                )
                .await?;
                if revoked > 0 {
                    total += revoked;
                    self.bump_revocation(bucket);
                }
            }
            match page.entries.last() {
                Some((last, _)) if page.more => from = format!("{last}\0"),
                _ => return Ok(total),
            }
        }
        Ok(total)
    }

    /// Current revocation generation of the shard of `bucket` (shared data).
    pub fn revocation_generation(kv: &dyn KvStore, bucket: u32) -> u64 {
        read_generation(&kv.get(&revocation_key(bucket)).value)
    }

    /// Tells this node's caches that a token of `bucket` stopped being valid
    /// early: the shard's generation goes up (one shared-data counter every
    /// worker reads). Other nodes hear it from the revocation-log event the
    /// transaction wrote with the revocation (`Step::Announce`). Best effort
    /// with bounded retries: if this fails, caches fall back to their TTL.
    pub(super) fn bump_revocation(&mut self, bucket: u32) {
        // This node's caches need not wait for the log.
        if let Some(kv) = self.kv.node_local() {
            self.report.cas_retries += bump_local_generation(kv, bucket);
        }
    }
}

/// Moves the revocation generation of `bucket`'s shard in shared data, with
/// bounded CAS retries (best effort: caches fall back to their TTL). Returns
/// the retries it took. Fleet mode calls it for revocations heard from etcd.
pub fn bump_local_generation(kv: &dyn KvStore, bucket: u32) -> u32 {
    let key = revocation_key(bucket);
    let mut retries = 0;
    for _ in 0..CAS_RETRIES {
        let cur = kv.get(&key);
        let next = read_generation(&cur.value).wrapping_add(1);
        match kv.set(&key, &next.to_be_bytes(), cur.cas) {
            Err(WriteError::CasMismatch) => retries += 1,
            _ => break,
        }
    }
    retries
}

pub fn read_generation(value: &Option<Vec<u8>>) -> u64 {
    match value.as_deref() {
        Some(v) if v.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(v);
            u64::from_be_bytes(a)
        }
        _ => 0,
    }
}

/// Exposed for tests of callers: the hash a token text would be stored under.
pub fn stored_hash(token_text: &str) -> Option<TokenHash> {
    token::parse(token_text).map(|t| t.hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    use crate::host::HostRandomness;
    #[allow(unused_imports)]
    use crate::store::kv::{Kv, Sync_};
    use crate::store::*;

    const LAYOUT: StoreLayout = StoreLayout {
        buckets: 8,
        grants_per_bucket: 4,
    };

    fn user_grant(client: &str) -> GrantRequest {
        GrantRequest {
            client_id: client.into(),
            user: Some("admin@carbon.super".into()),
            scope: "default PRODUCTION".into(),
            lifetimes: Lifetimes {
                access: 3600,
                refresh: Some(86400),
            },
        }
    }

    /// A store over `kv` with its keys made, as configuration does.
    fn created(kv: &MemoryKv) -> GrantStore<'_> {
        let store = GrantStore::new(kv, &HostRandomness, LAYOUT);
        store.ensure_created().unwrap();
        store
    }

    fn parsed(t: &str) -> ParsedToken {
        token::parse(t).unwrap()
    }

    #[test]
    fn layout_is_created_once_with_a_bounded_key_count() {
        let kv = MemoryKv::default();
        let store = GrantStore::new(&kv, &HostRandomness, LAYOUT);
        // Buckets, revocation shards and the store's key.
        assert_eq!(store.ensure_created().unwrap(), 8 + REVOCATION_SHARDS + 1);
        assert_eq!(store.ensure_created().unwrap(), 0);
        assert_eq!(kv.key_count(), 8 + REVOCATION_SHARDS as usize + 1);
    }

    #[test]
    fn issued_tokens_are_found_by_kind_and_nothing_else_is() {
        let kv = MemoryKv::default();
        let mut store = created(&kv);
        let t = store.issue(&user_grant("c1"), 1000).sync().unwrap();
        let access = parsed(&t.access_token);
        let refresh = parsed(t.refresh_token.as_deref().unwrap());
        let g = store.lookup(&access, 1001).sync().unwrap().unwrap();
        assert_eq!(g.client_id, "c1");
        assert_eq!(g.scope, "default PRODUCTION");
        assert!(store.lookup(&refresh, 1001).sync().unwrap().is_some());
        // Expired.
        assert!(store.lookup(&access, 1000 + 3600).sync().unwrap().is_none());
        // Same grant id and bucket, wrong secret.
        let forged = token::mint_access(access.bucket, &access.grant_id, &HostRandomness).unwrap();
        assert!(store
            .lookup(&parsed(&forged.text), 1001)
            .sync()
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_store_keeps_only_hashes() {
        let kv = MemoryKv::default();
        let mut store = created(&kv);
        let t = store.issue(&user_grant("c1"), 1000).sync().unwrap();
        let b = parsed(&t.access_token).bucket;
        let raw = kv.get(&bucket_key(b)).value.unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains(&t.access_token));
        let access_bytes = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &t.access_token,
        )
        .unwrap();
        assert!(
            !raw.windows(32).any(|w| w == &access_bytes[16..48]),
            "secret stored in clear"
        );
    }

    #[test]
    fn refresh_rotates_once_and_kills_the_old_access_token() {
        let kv = MemoryKv::default();
        let mut store = created(&kv);
        let life = Lifetimes {
            access: 3600,
            refresh: Some(86400),
        };
        let t = store.issue(&user_grant("c1"), 1000).sync().unwrap();
        let old_access = parsed(&t.access_token);
        let r1 = parsed(t.refresh_token.as_deref().unwrap());
        let gen_before = GrantStore::revocation_generation(&kv, r1.bucket);
        let n = store
            .refresh(&r1, "c1", Some(&["PRODUCTION"]), life, 0, 2000)
            .sync()
            .unwrap();
        assert_eq!(n.scope, "PRODUCTION");
        assert!(store.lookup(&old_access, 2001).sync().unwrap().is_none());
        assert_eq!(
            store
                .lookup(&parsed(&n.access_token), 2001)
                .sync()
                .unwrap()
                .unwrap()
                .scope,
            "PRODUCTION"
        );
        assert!(GrantStore::revocation_generation(&kv, r1.bucket) > gen_before);
        // Wider scope than the grant now has.
        let r2 = parsed(n.refresh_token.as_deref().unwrap());
        assert_eq!(
            store
                .refresh(&r2, "c1", Some(&["default"]), life, 0, 2001)
                .sync()
                .err(),
            Some(RefreshError::InvalidScope)
        );
        // Another client cannot use it.
        assert_eq!(
            store.refresh(&r2, "c2", None, life, 0, 2001).sync().err(),
            Some(RefreshError::InvalidGrant)
        );
        // r2 still works for its own client after the failed attempts.
        assert!(store.refresh(&r2, "c1", None, life, 0, 2002).sync().is_ok());
    }

    #[test]
    fn replaying_a_used_refresh_token_revokes_the_whole_grant() {
        let kv = MemoryKv::default();
        let mut store = created(&kv);
        let life = Lifetimes {
            access: 3600,
            refresh: Some(86400),
        };
        let t = store.issue(&user_grant("c1"), 1000).sync().unwrap();
        let r1 = parsed(t.refresh_token.as_deref().unwrap());
        let n = store
            .refresh(&r1, "c1", None, life, 0, 1001)
            .sync()
            .unwrap();
        assert_eq!(
            store.refresh(&r1, "c1", None, life, 0, 1002).sync().err(),
            Some(RefreshError::InvalidGrant)
        );
        assert!(store
            .lookup(&parsed(&n.access_token), 1003)
            .sync()
            .unwrap()
            .is_none());
        let r2 = parsed(n.refresh_token.as_deref().unwrap());
        assert_eq!(
            store.refresh(&r2, "c1", None, life, 0, 1003).sync().err(),
            Some(RefreshError::InvalidGrant)
        );
    }

    #[test]
    fn replaying_any_older_refresh_token_of_the_chain_revokes_the_grant() {
        let kv = MemoryKv::default();
        let mut store = created(&kv);
        let life = Lifetimes {
            access: 3600,
            refresh: Some(86400),
        };
        let t = store.issue(&user_grant("c1"), 1000).sync().unwrap();
        let mut chain = vec![t.refresh_token.unwrap()];
        let mut access = t.access_token;
        for now in 1001..1005 {
            let n = store
                .refresh(&parsed(chain.last().unwrap()), "c1", None, life, 0, now)
                .sync()
                .unwrap();
            chain.push(n.refresh_token.unwrap());
            access = n.access_token;
        }
        // A token that only names the grant (right bucket and grant id, a secret
        // and tag of its own) proves nothing and revokes nothing.
        let first = parsed(&chain[0]);
        let forged =
            token::mint_refresh(first.bucket, &first.grant_id, &HostRandomness, &[9; 32]).unwrap();
        assert_eq!(
            store
                .refresh(&parsed(&forged.text), "c1", None, life, 0, 1010)
                .sync()
                .err(),
            Some(RefreshError::InvalidGrant)
        );
        assert!(store
            .lookup(&parsed(&access), 1010)
            .sync()
            .unwrap()
            .is_some());
        // Neither does a genuine old token presented by another client.
        assert_eq!(
            store
                .refresh(&first, "c2", None, life, 0, 1010)
                .sync()
                .err(),
            Some(RefreshError::InvalidGrant)
        );
        assert!(store
            .lookup(&parsed(&access), 1010)
            .sync()
            .unwrap()
            .is_some());
        // The first token of the chain, four rotations old: reuse.
        let gen_before = GrantStore::revocation_generation(&kv, first.bucket);
        assert_eq!(
            store
                .refresh(&first, "c1", None, life, 0, 1010)
                .sync()
                .err(),
            Some(RefreshError::InvalidGrant)
        );
        assert!(GrantStore::revocation_generation(&kv, first.bucket) > gen_before);
        assert_eq!(store.report.refresh_reuse_revoked, 1);
        assert!(store
            .lookup(&parsed(&access), 1011)
            .sync()
            .unwrap()
            .is_none());
        let last = parsed(chain.last().unwrap());
        assert!(store.lookup(&last, 1011).sync().unwrap().is_none());
        assert_eq!(
            store.refresh(&last, "c1", None, life, 0, 1011).sync().err(),
            Some(RefreshError::InvalidGrant)
        );
    }

    #[test]
    fn an_expired_current_refresh_token_is_refused_without_revoking() {
        let kv = MemoryKv::default();
        let mut store = created(&kv);
        let req = GrantRequest {
            lifetimes: Lifetimes {
                access: 3600,
                refresh: Some(60),
            },
            ..user_grant("c1")
        };
        let t = store.issue(&req, 1000).sync().unwrap();
        let life = req.lifetimes;
        let r = parsed(t.refresh_token.as_deref().unwrap());
        assert_eq!(
            store.refresh(&r, "c1", None, life, 0, 1060).sync().err(),
            Some(RefreshError::InvalidGrant)
        );
        // The access token outlives the refresh token and stays valid.
        assert!(store
            .lookup(&parsed(&t.access_token), 1061)
            .sync()
            .unwrap()
            .is_some());
    }

    #[test]
    fn revoking_either_token_revokes_both_for_the_owner_only() {
        let kv = MemoryKv::default();
        let mut store = created(&kv);
        let t = store.issue(&user_grant("c1"), 1000).sync().unwrap();
        let access = parsed(&t.access_token);
        let refresh = parsed(t.refresh_token.as_deref().unwrap());
        assert_eq!(store.revoke(&refresh, "c2", 1001).sync().unwrap(), None);
        assert!(store.lookup(&access, 1001).sync().unwrap().is_some());
        let r = store.revoke(&refresh, "c1", 1001).sync().unwrap().unwrap();
        assert_eq!(r.access_fingerprint, access.hash.fingerprint());
        assert_eq!(r.refresh_fingerprint, Some(refresh.hash.fingerprint()));
        assert_eq!(r.user.as_deref(), Some("admin@carbon.super"));
        assert!(store.lookup(&access, 1001).sync().unwrap().is_none());
        assert!(store.lookup(&refresh, 1001).sync().unwrap().is_none());
        assert_eq!(store.revoke(&access, "c1", 1002).sync().unwrap(), None);
    }

    #[test]
    fn full_buckets_refuse_and_expired_grants_are_reclaimed() {
        let kv = MemoryKv::default();
        let layout = StoreLayout {
            buckets: 2,
            grants_per_bucket: 3,
        };
        let mut store = GrantStore::new(&kv, &HostRandomness, layout);
        store.ensure_created().unwrap();
        let app = GrantRequest {
            client_id: "c".into(),
            user: None,
            scope: "default".into(),
            lifetimes: Lifetimes {
                access: 10,
                refresh: None,
            },
        };
        let mut issued = 0;
        let mut full = 0;
        for _ in 0..40 {
            match store.issue(&app, 100).sync() {
                Ok(_) => issued += 1,
                Err(StoreError::Full) => full += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        // 40 tries of 4 random buckets each fill both buckets.
        assert_eq!(issued, 6);
        assert!(full > 0);
        // After expiry the space comes back, and the key count never grew.
        let again = (0..40)
            .filter(|_| store.issue(&app, 200).sync().is_ok())
            .count();
        assert_eq!(again, 6);
        assert_eq!(kv.key_count(), 2 + REVOCATION_SHARDS as usize + 1);
        assert!(store.report.reclaimed >= 5);
    }

    #[test]
    fn churn_keeps_memory_flat() {
        let kv = MemoryKv::default();
        let layout = StoreLayout {
            buckets: 64,
            grants_per_bucket: 32,
        };
        let mut store = GrantStore::new(&kv, &HostRandomness, layout);
        store.ensure_created().unwrap();
        let app = GrantRequest {
            client_id: "c".into(),
            user: None,
            scope: "default".into(),
            lifetimes: Lifetimes {
                access: 10,
                refresh: None,
            },
        };
        let mut sizes = Vec::new();
        // 100 tokens a second living 10 s: ~1000 live, the store turns over 10 times.
        for second in 0..100u64 {
            for _ in 0..100 {
                store.issue(&app, 1000 + second).sync().unwrap();
            }
            sizes.push(kv.total_value_bytes());
        }
        let warm = sizes[20];
        let max_after = *sizes[20..].iter().max().unwrap();
        assert!(max_after < warm * 2, "warm {warm} max {max_after}");
        assert_eq!(kv.key_count(), 64 + REVOCATION_SHARDS as usize + 1);
    }

    #[test]
    fn concurrent_refreshes_of_one_token_have_exactly_one_winner() {
        use std::sync::Arc;
        let kv = Arc::new(MemoryKv::default());
        let t = {
            let mut store = GrantStore::new(&*kv, &HostRandomness, LAYOUT);
            store.ensure_created().unwrap();
            store.issue(&user_grant("c1"), 1000).sync().unwrap()
        };
        let refresh = t.refresh_token.unwrap();
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let kv = kv.clone();
                let refresh = refresh.clone();
                std::thread::spawn(move || {
                    let mut store = GrantStore::new(&*kv, &HostRandomness, LAYOUT);
                    store.ensure_created().unwrap();
                    let life = Lifetimes {
                        access: 60,
                        refresh: Some(60),
                    };
                    store
                        .refresh(&parsed(&refresh), "c1", None, life, 0, 1001)
                        .sync()
                        .is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1);
    }

    #[test]
    fn corrupt_buckets_read_as_empty_and_are_counted() {
        let kv = MemoryKv::default();
        let mut store = GrantStore::new(
            &kv,
            &HostRandomness,
            StoreLayout {
                buckets: 1,
                grants_per_bucket: 4,
            },
        );
        store.ensure_created().unwrap();
        let t = store.issue(&user_grant("c1"), 1000).sync().unwrap();
        kv.set(&bucket_key(0), b"\x01garbage", None).unwrap();
        assert!(store
            .lookup(&parsed(&t.access_token), 1001)
            .sync()
            .unwrap()
            .is_none());
        assert_eq!(store.report.corrupt_values, 1);
        store.issue(&user_grant("c1"), 1002).sync().unwrap();
        assert_eq!(store.report.corrupt_values, 2);
    }
}
