//! The bearer guard (RFC 6750): the decision for one request (`bearer`) and
//! the per-worker validation cache (`cache`). May import `host`, `oauth`, `config`,
//! `store` and `token`.

pub mod bearer;
pub mod cache;
