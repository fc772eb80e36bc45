//! Who is calling: client authentication (`client`), resource owners
//! (`user`), secret hashes and their per-worker cache, and brute-force
//! throttling. May import `oauth`, `config` and `store`.

pub mod client;
pub mod credential_cache;
pub mod env;
pub mod secret_hash;
pub mod throttle;
pub mod user;
