//! The token store: grants in buckets of a key-value store with compare-and-swap.
//! The only code that names store keys (`keys`). `txn` runs pure bucket
//! transactions on a synchronous store (Envoy shared data); `grants` and
//! `codes` are what the endpoints can do to grants. May import `host`,
//! `oauth` and `token`; nothing here knows about HTTP.

pub mod bucket;
pub mod etcd;
pub mod client_revocation;
mod codes;
pub mod grant;
mod grant_txns;
mod grants;
pub mod keys;
pub mod kv;
pub mod refresh_grace;
pub mod revocation_feed;
pub mod server_key;
pub mod txn;

pub use codes::{CodeBinding, CodeRedemption, RedeemError, CODE_INVALID};
pub use grants::*;
pub use keys::{bucket_key, revocation_key};
pub use txn::{run_txn, BucketTxn, Step, StoreError, TxnReport, CAS_RETRIES};

/// Tokens name their bucket in 4 bytes; the store never reads beyond this.
pub const MAX_BUCKETS: u32 = 1 << 20;
pub const MAX_GRANTS_PER_BUCKET: u16 = 1024;
pub const REVOCATION_SHARDS: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLayout {
    pub buckets: u32,
    pub grants_per_bucket: u16,
}

impl StoreLayout {
    pub fn capacity(&self) -> u64 {
        self.buckets as u64 * self.grants_per_bucket as u64
    }
}
