//! Who is calling: client authentication (`client`), resource owners
//! (`user`), the per-worker cache of secret checks, and brute-force
//! throttling (the policy; the counters are `store::throttle`'s), and
//! `ServiceEnv`, the host as request handlers see it. May import `host`,
//! `oauth`, `config` and `store`.

pub mod client;
pub mod credential_cache;
pub mod env;
pub mod throttle;
pub mod user;
