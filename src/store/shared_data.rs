//! The driver of [`BucketTxn`]s on a synchronous key-value store with
//! compare-and-swap (Envoy shared data, through [`KvStore`]): read the bucket,
//! reclaim dead grants, apply, write with the version read, retry a bounded
//! number of times on a conflict. A driver for a remote store reached by
//! asynchronous callouts sits beside this one and runs the same transactions.

use crate::host::{KvStore, WriteError};
use crate::store::bucket::Bucket;
use crate::store::keys::bucket_key;
use crate::store::txn::{BucketTxn, Step, StoreError, TxnReport};

/// Bounded retries on a CAS conflict before giving up with `Contended`.
pub const CAS_RETRIES: usize = 32;

/// Runs `txn` on one bucket with bounded CAS retries.
pub fn run_txn<T: BucketTxn>(
    kv: &dyn KvStore,
    bucket: u32,
    txn: &mut T,
    now: u64,
    report: &mut TxnReport,
) -> Result<T::Output, StoreError> {
    let key = bucket_key(bucket);
    for _ in 0..CAS_RETRIES {
        let current = kv.get(&key);
        let mut b = match Bucket::decode(current.value.as_deref().unwrap_or(&[])) {
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
                match kv.set(&key, &b.encode(), current.cas) {
                    Ok(()) => return Ok(out),
                    Err(WriteError::CasMismatch) => report.cas_retries += 1,
                    Err(WriteError::Failed) => return Err(StoreError::Unavailable),
                }
            }
        }
    }
    Err(StoreError::Contended)
}
