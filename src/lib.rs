//! OAuth2 token service and bearer guard for Envoy, as proxy-wasm filters.
//!
//! Everything but `wasm` is plain Rust over the traits in [`host`], so the
//! protocol and the store run and are tested natively; `wasm` is the thin glue
//! to the proxy-wasm ABI. Layers, lowest first: each may import only those
//! above it.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
pub mod host;
pub mod oauth;
pub mod token;
pub mod store;
pub mod config;
pub mod authn;
pub mod grant;
pub mod guard;
pub mod endpoint;

#[cfg(target_arch = "wasm32")]
mod wasm;
