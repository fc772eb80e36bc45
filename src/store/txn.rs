//! Every change to a bucket is a [`BucketTxn`]: a pure function of the bucket's
//! current content. [`run_txn`] drives one with a bounded CAS retry: read,
//! `apply`, write with the version it read, and on a conflict read again. It
//! runs over [`Kv`], so the same transactions run on Envoy shared data (each
//! call answers at once) and on etcd (each call is a callout, the request
//! paused in between).

use crate::host::{RandomUnavailable, WriteError};
use crate::store::bucket::Bucket;
use crate::store::keys::bucket_key;
use crate::store::kv::{Kv, Unavailable};

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

/// Runs `txn` on one bucket with bounded CAS retries.
pub async fn run_txn<T: BucketTxn>(
    kv: &Kv<'_>,
    bucket: u32,
    txn: &mut T,
    now: u64,
    report: &mut TxnReport,
) -> Result<T::Output, StoreError> {
    let key = bucket_key(bucket);
    for _ in 0..CAS_RETRIES {
        let current = kv.get(&key).await?;
        // Lazy: only the grants the transaction touches are decoded (see `bucket`).
        let mut b = match Bucket::decode_lazy(current.value.as_deref().unwrap_or(&[])) {
            Ok(b) => b,
            Err(_) => {
                // Unreadable data is treated as absent (and counted), never trusted.
                report.corrupt_values += 1;
                Bucket::default()
            }
        };
        report.reclaimed += b.reclaim(now) as u32;
        match txn.apply(&mut b, now) {
            Step::Done(out) => return Ok(out),
            Step::Write(out) => {
                report.reclaimed += b.reclaim(now) as u32;
                // The key lives as long as its longest-lived grant (a remote
                // store lets it lapse then; shared data ignores this).
                let expires_at = b.expires_at().unwrap_or(now);
                match kv.put(&key, b.encode(), current.version, expires_at).await {
                    Ok(()) => return Ok(out),
                    Err(WriteError::CasMismatch) => report.cas_retries += 1,
                    Err(WriteError::Failed) => return Err(StoreError::Unavailable),
                }
            }
        }
    }
    Err(StoreError::Contended)
}
