//! The bearer guard (RFC 6750): the decision for one request (`bearer`) and
//! the per-worker validation cache (`cache`). May import `oauth`, `config`,
//! `store` and `token`.

pub mod bearer;
pub mod cache;
pub mod identity_headers;
