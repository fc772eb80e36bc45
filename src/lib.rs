//! OAuth2 token service and bearer guard for Envoy, as proxy-wasm filters.
//!
//! Everything but `wasm` is plain Rust over the traits in [`host`], so the
//! protocol and the store run and are tested natively; `wasm` is the thin glue
//! to the proxy-wasm ABI. Layers, lowest first: each may import only those
//! above it.

pub mod authn;
pub mod config;
pub mod endpoint;
pub mod grant;
pub mod guard;
pub mod host;
pub mod oauth;
pub mod store;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod wasm;
