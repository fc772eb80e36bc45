//! One file per URL the token filter answers: `/token`, `/revoke`,
//! `/introspect`, the RFC 8414 metadata and `/authorize` with its pages.
//! Pure functions of a request and the host traits; the glue only moves bytes.

pub mod audit;
pub mod authorize;
pub mod common;
pub mod introspect;
pub mod jwks;
pub mod metadata;
pub mod revoke;
pub mod token;
