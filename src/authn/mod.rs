//! Who is calling: client authentication (`client`), resource owners
//! (`user`), the per-worker cache of secret checks, and brute-force
//! throttling. May import `oauth`, `config` and `store`.

pub mod address;
pub mod client;
pub mod credential_cache;
pub mod env;
pub mod hash_budget;
pub mod slow_check;
pub mod throttle;
pub mod user;
