//! The token store: grants in buckets of a key-value store with compare-and-swap,
//! and the other shared state of the token service (revocation counters,
//! throttle counters, used login forms, the store's key, the last
//! `revoked_clients` sweep). The only code that names store keys (`keys`) and
//! the only code that reads or writes them. `txn` holds the pure bucket
//! transactions, `shared_data` the driver that runs them on a synchronous
//! store (Envoy shared data; an asynchronous driver can sit beside it); `grants` and
//! `codes` are what the endpoints can do to grants. May import `host`,
//! `oauth` and `token`; nothing here knows about HTTP.

pub mod bucket;
pub mod client_revocation;
mod codes;
pub mod grant;
mod grants;
pub mod keys;
pub mod refresh_grace;
pub mod server_key;
pub mod shared_data;
pub mod throttle;
pub mod used_forms;
pub mod txn;

pub use codes::{CodeBinding, CodeRedemption, RedeemError, CODE_INVALID};
pub use grants::*;
pub use keys::{bucket_key, revocation_key, REVOCATION_SHARDS};
pub use shared_data::{run_txn, CAS_RETRIES};
pub use txn::{BucketTxn, Step, StoreError, TxnReport};

/// Tokens name their bucket in 4 bytes; the store never reads beyond this.
pub const MAX_BUCKETS: u32 = 1 << 20;
pub const MAX_GRANTS_PER_BUCKET: u16 = 1024;

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
