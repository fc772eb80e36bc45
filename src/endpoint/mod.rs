//! One file per URL the token filter answers: `/token`, `/revoke`,
//! `/introspect`, the RFC 8414 metadata and `/authorize` with its pages.
//! Pure functions of a request and the host traits; the glue only moves bytes.
//! What every endpoint shares (the request, reading the form, the outcome for
//! stats, creating the shared-data keys) is in `common`. May import every
//! layer below it (`oauth`, `token`, `store`, `config`, `authn`, `grant`);
//! nothing imports it but `wasm`.

pub mod authorize;
pub mod common;
pub mod introspect;
pub mod metadata;
pub mod revoke;
pub mod token;
