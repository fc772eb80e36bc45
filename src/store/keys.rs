//! Every key the token service writes, named in one place. The number of keys
//! is fixed by configuration, whatever the traffic: shared data has no delete.
//!
//! - `oauth2/g/<n>`, n in 0..`store.buckets`: one bucket of grants;
//! - `oauth2/rev/<n>`, n in 0..[`REVOCATION_SHARDS`]: revocation counters;
//! - `oauth2/throttle/<n>`, n in 0..[`THROTTLE_SHARDS`]: failed-authentication counters;
//! - `oauth2/p/<n>`, n in 0..[`USED_FORM_SLOTS`]: used login-form markers;
//! - `oauth2/key`: the store's own key;
//! - `oauth2/revoked_clients`: the `revoked_clients` list last applied.

/// Revocation counters, shared by buckets (`bucket % REVOCATION_SHARDS`).
pub const REVOCATION_SHARDS: u32 = 256;
/// Failed-authentication tables.
pub const THROTTLE_SHARDS: u32 = 64;
/// Used login-form marker slots.
pub const USED_FORM_SLOTS: u32 = 1024;

const BUCKET_PREFIX: &str = "oauth2/g/";

pub const SERVER_KEY: &str = "oauth2/key";
pub const REVOKED_CLIENTS: &str = "oauth2/revoked_clients";

pub fn bucket_key(bucket: u32) -> String {
    format!("{BUCKET_PREFIX}{bucket}")
}

pub fn is_bucket_key(key: &str) -> bool {
    key.starts_with(BUCKET_PREFIX)
}

pub fn revocation_key(bucket: u32) -> String {
    format!("oauth2/rev/{}", bucket % REVOCATION_SHARDS)
}

pub fn throttle_key(shard: u32) -> String {
    format!("oauth2/throttle/{}", shard % THROTTLE_SHARDS)
}

pub fn used_form_key(slot: u32) -> String {
    format!("oauth2/p/{}", slot % USED_FORM_SLOTS)
}
