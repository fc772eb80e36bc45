//! Every change to a bucket is a [`BucketTxn`]: a pure function of the bucket's
//! current content. [`run_txn`] drives one with a bounded CAS retry: read,
//! `apply`, write with the version it read, and on a conflict read again
//! (unless the store's answer to the lost write said what the bucket holds). It
//! runs over [`Kv`], so the same transactions run on Envoy shared data (each
//! call answers at once) and on etcd (each call is a callout, the request
//! paused in between).

use crate::host::RandomUnavailable;
use crate::store::bucket::Bucket;
use sha2::{Digest, Sha256};

use crate::store::keys::{bucket_key, revlog_key};
use crate::store::kv::{Also, Kv, PutFailed, Stored, Unavailable};
use crate::store::revocation_feed::REVLOG_TTL_SECS;

/// Bounded retries on a CAS conflict before giving up with `Contended`.
pub const CAS_RETRIES: usize = 32;

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

impl From<Unavailable> for StoreError {
    fn from(_: Unavailable) -> Self {
        StoreError::Unavailable
    }
}

/// What a transaction decided after looking at the bucket.
pub enum Step<T> {
    /// Persist the (changed) bucket, then return `T`.
    Write(T),
    /// Persist it, and announce that a token of this bucket stopped being
    /// valid early: over etcd a revocation-log event in the same transaction
    /// (both happen, or neither), so every node's guard hears of it.
    Announce(T),
    /// Nothing to persist.
    Done(T),
}

pub trait BucketTxn {
    type Output;
    /// Called with live grants only (dead ones already reclaimed), perhaps more
    /// than once when a CAS conflict forces a retry: its decision must not
    /// depend on earlier calls (it may note what it wrote, for `applied`).
    fn apply(&mut self, bucket: &mut Bucket, now: u64) -> Step<Self::Output>;

    /// Whether [`BucketTxn::applied`] can tell this transaction's write in a
    /// bucket. If not (the default), a write whose outcome is unknown (its
    /// answer was lost: etcd may have applied it) ends the transaction as
    /// `Unavailable` (503, the client retries) rather than risk applying it
    /// twice (a second rotation would look like a reused refresh token).
    const RECOGNISES_OWN_WRITE: bool = false;

    /// After a write whose outcome is unknown: `Some(output)` if `bucket`
    /// shows that very write, recognised by the fresh random tokens it stored.
    fn applied(&mut self, _bucket: &mut Bucket) -> Option<Self::Output> {
        None
    }
}

/// The revocation-log event announcing a change to `bucket` (see
/// `revocation_feed`): its key names the minute and an ID derived from the
/// bucket, the value written and the time, so events of one minute differ.
fn revocation_event(bucket: u32, value: &[u8], now: u64) -> Also {
    let d = Sha256::new()
        .chain_update(bucket.to_be_bytes())
        .chain_update(now.to_be_bytes())
        .chain_update(value)
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    Also {
        key: revlog_key(now, &id),
        value: bucket.to_be_bytes().to_vec(),
        expires_at: now.saturating_add(REVLOG_TTL_SECS),
    }
}

/// Writes with an unknown outcome a transaction that can recognise its own
/// write goes through before it gives up (each costs a read and a write).
pub const UNKNOWN_OUTCOME_RETRIES: u32 = 2;

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

/// Runs `txn` on one bucket with bounded CAS retries.
pub async fn run_txn<T: BucketTxn>(
    kv: &Kv<'_>,
    bucket: u32,
    txn: &mut T,
    now: u64,
    report: &mut TxnReport,
) -> Result<T::Output, StoreError> {
    run_txn_from(kv, bucket, txn, now, report, None).await
}

/// [`run_txn`] starting from `believed` instead of a read: either the bucket
/// as the caller read it moments ago (a decision not to write then rests on that
/// read, as it would on `run_txn`'s own), or a guess that it is absent, for
/// transactions that write whatever they find (an insertion into a random
/// bucket; remote stores only, whose create is a true compare-and-swap).
/// Wrong or stale, it costs one lost compare (over etcd its answer carries the
/// bucket as it is): no more than the read it saves.
pub async fn run_txn_from<T: BucketTxn>(
    kv: &Kv<'_>,
    bucket: u32,
    txn: &mut T,
    now: u64,
    report: &mut TxnReport,
    believed: Option<Stored>,
) -> Result<T::Output, StoreError> {
    let key = bucket_key(bucket);
    // Locally a write without a version is unconditional: only a belief with
    // a version (a real read) is safe there.
    let mut known = believed.filter(|b| kv.is_remote() || b.version.is_some());
    // Writes so far whose answer was lost: from the first on, every bucket read
    // is first checked for that write (it may land later than the next read).
    let mut unknown = 0;
    for _ in 0..CAS_RETRIES {
        let current = match known.take() {
            Some(stored) => stored,
            None => kv.get(&key).await?,
        };
        // Lazy: only the grants the transaction touches are decoded (see `bucket`).
        let mut b = match Bucket::decode_lazy(current.value.as_deref().unwrap_or(&[])) {
            Ok(b) => b,
            Err(_) => {
                // Unreadable data is treated as absent (and counted), never trusted.
                report.corrupt_values += 1;
                Bucket::default()
            }
        };
        if unknown > 0 {
            if let Some(out) = txn.applied(&mut b) {
                return Ok(out);
            }
        }
        report.reclaimed += b.reclaim(now) as u32;
        let (out, announce) = match txn.apply(&mut b, now) {
            Step::Done(out) => return Ok(out),
            Step::Write(out) => (out, false),
            Step::Announce(out) => (out, true),
        };
        report.reclaimed += b.reclaim(now) as u32;
        // The key lives as long as its longest-lived grant (a remote store lets
        // it lapse then; shared data ignores this).
        let expires_at = b.expires_at().unwrap_or(now);
        let value = b.encode();
        let also = (announce && kv.is_remote()).then(|| revocation_event(bucket, &value, now));
        match kv
            .put_reporting(&key, value, current.version, expires_at, also)
            .await
        {
            Ok(()) => return Ok(out),
            Err(PutFailed::Conflict(now_stored)) => {
                report.cas_retries += 1;
                known = now_stored;
            }
            Err(PutFailed::Unavailable) => {
                // Recognisable: read the bucket again (another member if need
                // be) and look. Not: fail, never apply twice.
                unknown += 1;
                if !T::RECOGNISES_OWN_WRITE || unknown > UNKNOWN_OUTCOME_RETRIES {
                    return Err(StoreError::Unavailable);
                }
            }
        }
    }
    Err(StoreError::Contended)
}
